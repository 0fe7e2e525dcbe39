"""`llmcalc plan`'s output: the best layouts' time and memory tables, the assumptions under them,
the --json dict, and the progress bar of a long search. No computation beyond sums and ratios."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from llmcalc.parallel.plan import Candidate, Plan
from llmcalc.units import format_bytes

PROGRESS_AFTER = 1.0  # seconds of search before the bar appears


def _table(title: str, *columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for index, name in enumerate(columns):
        left = index in (1,)
        table.add_column(name, justify="left" if left else "right", no_wrap=not left)
    return table


def _seconds(value: float) -> str:
    return f"{value:,.2f} s" if value >= 1 else f"{value * 1e3:.1f} ms"


def _tokens(value: float) -> str:
    return f"{value:,.0f}"


def _pipeline(candidate: Candidate) -> str:
    return f"{candidate.batch} × {candidate.layout.microbatches}"


def time_table(result: Plan) -> Table:
    table = _table(
        f"Fastest layouts that fit: {result.config.name} on {result.gpus:,} × {result.machine.gpu}"
        f", seq {result.seq:,}, {result.global_batch:,} tokens a step",
        "#",
        "layout",
        "micro-batch × M",
        "recompute",
        "compute",
        "exposed comm",
        "bubble",
        "step",
        "tokens/s",
        "peak / GPU",
    )
    for index, candidate in enumerate(result.best, 1):
        table.add_row(
            str(index),
            candidate.layout.describe(),
            _pipeline(candidate),
            candidate.checkpointing,
            _seconds(candidate.compute),
            _seconds(candidate.exposed_comm),
            _seconds(candidate.bubble),
            _seconds(candidate.step),
            _tokens(result.tokens_per_second(candidate)),
            format_bytes(candidate.memory.peak),
        )
    return table


def comm_table(result: Plan) -> Table:
    groups = [
        g for g in ("tp", "cp", "ep", "dp", "pp") if any(g in c.comm_bytes for c in result.best)
    ]
    table = _table(
        "Communication per GPU per step: bytes it sends (link) -> time not overlapped",
        "#",
        *groups,
    )
    for index, candidate in enumerate(result.best, 1):
        cells = []
        for group in groups:
            if group not in candidate.comm_bytes:
                cells.append("-")
                continue
            link = candidate.links[group].split("-")[0]
            cells.append(
                f"{format_bytes(candidate.comm_bytes[group])} ({link})"
                f" -> {_seconds(candidate.exposed[group])}"
            )
        table.add_row(str(index), *cells)
    return table


def memory_table(result: Plan) -> Table:
    categories: list[str] = []
    for candidate in result.best:
        busiest = candidate.memory.ranks[candidate.memory.peak_rank]
        categories += [name for name in busiest.categories if name not in categories]
    table = _table(
        f"Memory on the busiest GPU (of {format_bytes(result.machine.memory)})",
        "#",
        "rank",
        *categories,
        "peak",
        "at",
    )
    for index, candidate in enumerate(result.best, 1):
        busiest = candidate.memory.ranks[candidate.memory.peak_rank]
        table.add_row(
            str(index),
            candidate.memory.peak_rank,
            *(format_bytes(busiest.categories.get(name, 0)) for name in categories),
            format_bytes(candidate.memory.peak),
            busiest.at,
        )
    return table


def assumptions_text(result: Plan) -> Group:
    machine = result.machine
    lines = [
        Text(
            f"Searched {result.candidates:,} candidates (layout, ZeRO stage, recomputation,"
            f" micro-batch): memory checked for {result.memory_checked:,}, time for"
            f" {result.timed:,}, {result.floored:,} layouts bounded by their fixed traffic; the"
            " best ZeRO stage, recomputation and micro-batch shown per layout.",
        ),
        *_unmodelled(result),
        Text(
            f"{machine.gpu}: {result.dtype} peak {result.peak_flops / 1e12:,.1f} TFLOP/s × MFU"
            f" {result.mfu:g}; {format_bytes(machine.memory)} a GPU; precision {result.precision},"
            f" optimizer {result.optimizer}, attention {result.attention}.",
        ),
        Text("Assumptions:"),
        *(Text(f"  - {line}") for line in result.assumptions),
        Text("Sources:"),
        *(Text(f"  - {source}") for source in machine.sources),
    ]
    return Group(*lines)


def _unmodelled(result: Plan) -> list[Text]:
    if not result.unmodelled:
        return []
    reasons = list(result.unmodelled)
    shown = "; ".join(reasons[:3])
    more = f"; {len(reasons) - 3} more reasons in --json" if len(reasons) > 3 else ""
    count = sum(result.unmodelled.values())
    return [Text(f"Left out {count:,} layouts the closed forms do not model: {shown}{more}.")]


def plan_renderables(result: Plan) -> list[RenderableType]:
    return [time_table(result), comm_table(result), memory_table(result), assumptions_text(result)]


def _candidate_json(result: Plan, candidate: Candidate) -> dict[str, Any]:
    return {
        "layout": asdict(candidate.layout),
        "describe": candidate.layout.describe(),
        "micro_batch": candidate.batch,
        "microbatches": candidate.layout.microbatches,
        "checkpointing": candidate.checkpointing,
        "flops_per_gpu": candidate.flops,
        "time_s": {
            "compute": candidate.compute,
            "exposed_comm": candidate.exposed_comm,
            "bubble": candidate.bubble,
            "step": candidate.step,
        },
        "tokens_per_s": result.tokens_per_second(candidate),
        "communication": {
            group: {
                "bytes_sent": candidate.comm_bytes[group],
                "link": candidate.links[group],
                "exposed_s": candidate.exposed[group],
            }
            for group in candidate.comm_bytes
        },
        "comm_rows": [
            {"collective": r.collective, "cause": r.cause, "group": r.group, "bytes": r.bytes}
            for r in candidate.comm.rows  # sizes as torch's collectives take them (comm.py)
        ],
        "memory": {
            "peak": candidate.memory.peak,
            "peak_rank": candidate.memory.peak_rank,
            "ranks": {
                name: {"peak": rank.peak, "at": rank.at, "categories": dict(rank.categories)}
                for name, rank in candidate.memory.ranks.items()
            },
        },
    }


def plan_json(result: Plan) -> dict[str, Any]:
    machine = result.machine
    return {
        "model": result.config.name,
        "gpus": result.gpus,
        "seq": result.seq,
        "global_batch_tokens": result.global_batch,
        "sequences": result.sequences,
        "precision": result.precision,
        "optimizer": result.optimizer,
        "attention": result.attention,
        "machine": {
            "gpu": machine.gpu,
            "memory": machine.memory,
            "intra_node_bytes_per_s": machine.intra_node,
            "inter_node_bytes_per_s": machine.inter_node,
            "gpus_per_node": machine.gpus_per_node,
            "peak_flops": result.peak_flops,
            "peak_dtype": result.dtype,
            "sources": list(machine.sources),
        },
        "mfu": result.mfu,
        "search": {
            "candidates": result.candidates,
            "memory_checked": result.memory_checked,
            "timed": result.timed,
            "floored": result.floored,
            "unmodelled": result.unmodelled,
        },
        "best": [_candidate_json(result, c) for c in result.best],
        "assumptions": result.assumptions,
    }


@contextlib.contextmanager
def search_progress(quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr once the search has run PROGRESS_AFTER seconds; none for JSON,
    Markdown or CSV, NO_COLOR, or when stdout or stderr is not a terminal."""
    console = Console(stderr=True, highlight=False, markup=False)
    plain = bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"
    if quiet or plain or not console.is_terminal or not sys.stdout.isatty():
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    start = time.monotonic()
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            if time.monotonic() - start < PROGRESS_AFTER:
                return
            bar = Progress(
                TextColumn("llmcalc plan: searching layouts"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
                transient=True,
            )
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task("search", total=total)
        state["bar"].update(state["task"], completed=done, total=total)

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].stop()
