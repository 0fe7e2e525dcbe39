"""The best-first search behind `llmcalc plan` (plan.py): which candidates to evaluate, in which
order, and when to stop. No torch.

Every candidate's step time is at least its bound, compute + bubble (communication only adds).
Candidates come in groups (one per degrees, schedule and recomputation, each its micro-batches
× ZeRO stages), a group's bound the smallest of its candidates'. One heap holds groups by bound,
candidates by bound, and candidates by exact time; at equal seconds groups come out first, then
bounds, then exact times, so a candidate is accepted only when nothing left can beat it:

    group out      -> the first time, its floor (plan.py: the traffic every candidate of the
                      group sends whatever its micro-batch and ZeRO stage) raises its bound and
                      it goes back in; the second time, its candidates go in by their bounds
    bound out      -> its memory is checked: if it does not fit, it rules out the larger
                      micro-batches and lower ZeRO stages of its layout; if it fits, its
                      communication is costed and it goes in by its exact time
    exact time out -> the best of its degrees and schedule

(Memory first: on llama-3.1-405b over 1,024 GPUs it took 1,247 memory and 657 communication
evaluations where communication first took 863 and 9,165.)

A candidate the closed forms refuse (an LLMCalcError: a combination they do not model) is left
out with its reason. The search ends when `top` layouts are found, or the heap is empty.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmcalc.errors import LLMCalcError
from llmcalc.parallel.layout import Layout


@dataclass(frozen=True)
class Group:
    """The candidates of one (degrees, schedule, recomputation)."""

    degrees: tuple[int, int, int, int, int, str, int]  # dp, tp, pp, cp, ep, schedule, v
    # (the first six are degrees(layout) of each of its layouts)
    recompute: str
    batches: list[int]  # micro-batch sizes the schedule allows, smallest first
    zeros: tuple[int, ...]
    sequences: int
    flops: int  # per GPU per step
    compute: float  # seconds

    def bubble(self, batch: int) -> float:
        """(pp − 1) / (v · M) of the compute (Narayanan et al. 2021, section 2.2)."""
        dp, _, pp, *_, v = self.degrees
        return (pp - 1) / (v * (self.sequences // dp // batch)) * self.compute

    @property
    def bound(self) -> float:
        return self.compute + self.bubble(self.batches[0])

    @property
    def size(self) -> int:
        return len(self.batches) * len(self.zeros)

    def layout(self, batch: int, zero: int) -> Layout:
        dp, tp, pp, cp, ep, schedule, v = self.degrees
        return Layout(
            dp=dp, zero=zero, tp=tp, sp=tp > 1, pp=pp, schedule=schedule,
            microbatches=self.sequences // dp // batch, virtual_stages=v, cp=cp, ep=ep,
        )  # fmt: skip

    def layouts(self) -> list[tuple[Layout, int]]:
        return [(self.layout(b, zero), b) for b in self.batches for zero in self.zeros]


@dataclass
class Search:
    """One search's state; `memory(layout, batch, group)` returns a candidate with .memory.peak
    (bytes on the busiest GPU), `timing(candidate, group)` the same with .step (seconds)."""

    top: int
    capacity: int  # bytes a GPU has
    memory: Callable[[Layout, int, Group], Any]
    timing: Callable[[Any, Group], Any]
    # seconds every candidate of a group spends at least in traffic that does not depend on its
    # micro-batch or ZeRO stage (or None: no such floor)
    floor: Callable[[Group], float] | None = None
    on_progress: Callable[[int, int], None] | None = None
    best: dict[tuple, Any] = field(default_factory=dict)  # degrees + schedule -> accepted
    too_big: dict[tuple, list[tuple[int, int]]] = field(default_factory=dict)
    smallest: tuple[int, Any] | None = None  # (peak, candidate) of the least memory seen
    unmodelled: dict[str, int] = field(default_factory=dict)  # reason -> layouts left out
    refused: set[tuple] = field(default_factory=set)  # families the closed forms refuse
    total: int = 0
    memory_checked: int = 0
    timed: int = 0
    floored: int = 0

    def run(self, groups: list[Group]) -> list[Any]:
        order = itertools.count()  # unique: equal keys never compare the items
        heap = [(group.bound, 0, 0, 0, next(order), (group, None)) for group in groups]
        heapq.heapify(heap)
        self.total = sum(group.size for group in groups)
        done = 0
        while heap and len(self.best) < self.top:
            _, kind, *_, item = heapq.heappop(heap)
            if kind == 0:  # a group: first its floor, then its candidates, by bound
                group, extra = item
                if group.degrees[:6] in self.best or self._family(group) in self.refused:
                    done += group.size
                    continue
                if extra is None and self.floor is not None:
                    extra = self._floor(group)
                    if extra is None:
                        done += group.size
                        continue
                    heapq.heappush(
                        heap, (group.bound + extra, 0, 0, 0, next(order), (group, extra))
                    )
                    continue
                for layout, batch in group.layouts():
                    seconds = group.compute + group.bubble(batch) + (extra or 0.0)
                    key = (seconds, 1, batch, -layout.zero, next(order))
                    heapq.heappush(heap, (*key, (layout, batch, group)))
                continue
            if kind == 2:
                self.best.setdefault(degrees(item.layout), item)
                continue
            done += 1
            if self.on_progress and done % 64 == 0:
                self.on_progress(done, self.total)
            candidate = self._evaluate(*item)
            if candidate is not None:
                key = (candidate.step, 2, -candidate.batch, -candidate.layout.zero, next(order))
                heapq.heappush(heap, (*key, candidate))
        if self.on_progress:
            self.on_progress(self.total, self.total)
        return list(self.best.values())

    def _family(self, layout: Layout, group: Group) -> tuple:
        return degrees(layout), group.recompute

    def _open(self, layout: Layout, batch: int, group: Group) -> bool:
        """Still worth evaluating: its degrees not yet taken, its memory not ruled out."""
        if degrees(layout) in self.best or self._family(layout, group) in self.refused:
            return False
        failures = self.too_big.get(self._family(layout, group), [])
        return not any(layout.zero <= z and batch >= b for z, b in failures)

    @staticmethod
    def _family(group: Group) -> tuple:
        return group.degrees[:6], group.recompute

    def _floor(self, group: Group) -> float | None:
        try:
            self.floored += 1
            return self.floor(group)  # type: ignore[misc]
        except LLMCalcError as exc:
            self._refuse(group, exc)
            return None

    def _refuse(self, group: Group, exc: LLMCalcError) -> None:
        """A layout the closed forms do not model: left out, with its micro-batches and ZeRO
        stages (the refusals are about the degrees, the model and the sequence)."""
        self.refused.add(self._family(group))
        self.unmodelled[str(exc)] = self.unmodelled.get(str(exc), 0) + 1

    def _evaluate(self, layout: Layout, batch: int, group: Group) -> Any:
        """The candidate with its memory and time, or None: taken, ruled out, too big or not
        modelled."""
        family = self._family(group)
        if degrees(layout) in self.best or family in self.refused:
            return None
        if any(layout.zero <= z and batch >= b for z, b in self.too_big.get(family, [])):
            return None
        try:
            candidate = self.memory(layout, batch, group)
            self.memory_checked += 1
            peak = candidate.memory.peak
            if self.smallest is None or peak < self.smallest[0]:
                self.smallest = (peak, candidate)
            if peak > self.capacity:
                self.too_big.setdefault(family, []).append((layout.zero, batch))
                return None
            self.timed += 1
            return self.timing(candidate, group)
        except LLMCalcError as exc:
            self._refuse(group, exc)
            return None


def degrees(layout: Layout) -> tuple:
    """What tells two layouts apart in the answer: the degrees and the schedule."""
    return (layout.dp, layout.tp, layout.pp, layout.cp, layout.ep, layout.schedule)
