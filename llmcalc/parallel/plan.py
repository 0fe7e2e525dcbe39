"""`llmcalc plan`: the layouts of a training job on N GPUs that fit in their memory, ranked by an
estimated step time. No torch.

A layout is dp × tp × pp × cp (= the GPUs; ep borrows its ranks from dp · cp, layout.py), a ZeRO
stage, full recomputation or none, a micro-batch size and a pipeline schedule. Its memory is
parallel_memory's closed form on the busiest GPU; its step time

    step = compute + exposed communication + pipeline bubble
    compute = FLOPs per GPU / (peak · MFU),  FLOPs per GPU = step FLOPs / (dp · tp · pp · cp)
    bubble = (pp − 1) / (v · M) · compute     (1F1B and interleaved 1F1B; Narayanan et al. 2021,
                                               "Efficient Large-Scale Language Model Training on
                                               GPU Clusters Using Megatron-LM", section 2.2)

with step FLOPs flops/formula.py's training step (forward, backward and the recomputed forward,
every T×T attention product counted as torch's FlopCounterMode counts it) and the communication
of comm.py's closed form, each collective's bytes over the bandwidth of the link its group spans
(interconnect.py). ASSUMPTIONS says each simplification in words; the report prints them.

The search (search.py) is best-first on a lower bound of the step time, so it evaluates the
closed forms only for the candidates that could make the answer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llmcalc.config.experts import is_moe
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.flops.formula import forward_flops, step_flops
from llmcalc.parallel.interconnect import Machine, link, peak, wire_bytes
from llmcalc.parallel.layout import Layout
from llmcalc.parallel.search import Group, Search
from llmcalc.units import format_bytes

RECOMPUTE = ("none", "full")
GROUPS = ("tp", "cp", "ep", "dp", "pp")
ASSUMPTIONS = (
    "compute = FLOPs per GPU / (peak × MFU); FLOPs per GPU = the step's counted FLOPs (forward,"
    " backward, recomputed forward; full T×T attention products) / (dp·tp·pp·cp): evenly"
    " split, the pipeline stage holding the LM head is not made slower",
    "MFU is the same for every layout and micro-batch size; ties go to the larger micro-batch",
    "ranks in Megatron-LM's order, tp innermost, then cp, dp, pp ({node} GPUs a node): a group"
    " uses the intra-node link ({intra}/s per GPU) if its ranks share a node, else the network"
    " ({inter}/s per GPU)",
    "each collective's size as torch takes it (comm.py) becomes the bytes a GPU sends on a ring"
    " of n ranks: (n − 1)/n of it for all-gather, reduce-scatter and all-to-all, 2(n − 1)/n for"
    " all-reduce, all of a point-to-point send; time = those bytes / the link's per-direction"
    " bandwidth; no latency term, no contention between groups",
    "tensor-, context- and expert-parallel collectives and pipeline sends are not overlapped",
    "data-parallel collectives (gradient reduction, ZeRO parameter gathers) run behind compute"
    " bucket by bucket: all but one layer's share is hidden, as long as the compute lasts",
    "pipeline bubble = (pp − 1) / (v · M) of compute (1F1B; interleaved with v = 2 chunks per"
    " rank); GPipe is left out (the same bubble, more memory)",
    "sequence parallelism is on whenever tp > 1 (the same bytes as tensor parallelism alone, less"
    " activation memory: Korthikanti et al. 2022); nothing is offloaded",
    "the search takes memory to grow with the micro-batch and to shrink with the ZeRO stage (a"
    " candidate that does not fit rules out the larger micro-batches and lower stages of its"
    " layout), and the tensor-, context-, expert- and pipeline-parallel bytes never to shrink"
    " with more micro-batches nor to depend on the ZeRO stage; ZeRO 1-3 only where dp·cp > 1",
    "memory is the closed form's peak on the busiest GPU; CUDA context, NCCL buffers and"
    " allocator fragmentation are not counted (leave room for them with --gpu-mem)",
)


@dataclass(frozen=True)
class Candidate:
    layout: Layout
    batch: int  # sequences per data-parallel rank per micro-batch
    checkpointing: str
    flops: int  # per GPU per step
    compute: float  # seconds
    bubble: float
    memory: Any  # ParallelMemory
    comm: Any = None  # Communication
    comm_bytes: dict[str, int] = field(default_factory=dict)  # group -> bytes a GPU sends
    exposed: dict[str, float] = field(default_factory=dict)  # group -> seconds not overlapped
    links: dict[str, str] = field(default_factory=dict)  # group -> "intra-node" / "inter-node"

    @property
    def exposed_comm(self) -> float:
        return sum(self.exposed.values())

    @property
    def step(self) -> float:
        return self.compute + self.exposed_comm + self.bubble


@dataclass(frozen=True)
class Plan:
    config: ModelConfig
    machine: Machine
    gpus: int
    seq: int
    global_batch: int  # tokens per step
    mfu: float
    precision: str
    optimizer: str
    attention: str
    peak_flops: float
    dtype: str
    best: list[Candidate]
    candidates: int  # every (layout, ZeRO, recomputation, micro-batch) the GPUs allow
    memory_checked: int
    timed: int
    floored: int  # groups whose fixed traffic was costed to bound them
    unmodelled: dict[str, int]  # why the closed forms refused some layouts -> how many
    assumptions: list[str]

    @property
    def sequences(self) -> int:
        return self.global_batch // self.seq

    def tokens_per_second(self, candidate: Candidate) -> float:
        return self.global_batch / candidate.step


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def check_request(cfg: ModelConfig, gpus: int, seq: int, global_batch: int) -> int:
    """The sequences a step trains on; refuses a batch that is not whole sequences."""
    for option, value in (("--gpus", gpus), ("--seq", seq), ("--global-batch", global_batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise LLMCalcError(f"{option} {value!r}: must be a whole number of at least 1")
    if global_batch % seq:
        raise LLMCalcError(
            f"--global-batch {global_batch}: not a multiple of --seq {seq}; a step trains on whole"
            f" sequences (e.g. {max(1, global_batch // seq) * seq} tokens)"
        )
    return global_batch // seq


def degrees(
    cfg: ModelConfig, gpus: int, seq: int, sequences: int | None, node: int
) -> Iterator[tuple[int, int, int, int, int]]:
    """(dp, tp, pp, cp, ep) with dp·tp·pp·cp = gpus: tp inside a node dividing the heads and KV
    heads, pp at most the layers, cp dividing seq, dp dividing the sequences (unless None); ep
    (MoE only) dividing the experts and dp·cp."""
    for tp in divisors(gpus):
        if tp > node or cfg.n_heads % tp or cfg.n_kv_heads % tp:
            continue
        for pp in divisors(gpus // tp):
            if pp > cfg.n_layers:
                continue
            for cp in divisors(gpus // (tp * pp)):
                dp = gpus // (tp * pp * cp)
                if seq % cp or (sequences is not None and sequences % dp):
                    continue
                eps = divisors(math.gcd(cfg.n_experts, dp * cp)) if is_moe(cfg) else [1]
                for ep in eps:
                    yield dp, tp, pp, cp, ep


def schedules(cfg: ModelConfig, pp: int) -> list[tuple[str, int]]:
    if pp == 1:
        return [("1f1b", 1)]
    return [("1f1b", 1)] + ([("interleaved", 2)] if 2 * pp <= cfg.n_layers else [])


def exposed_time(
    machine: Machine, layout: Layout, cfg: ModelConfig, comm: Any, compute: float
) -> tuple[dict[str, int], dict[str, float], dict[str, str]]:
    """(bytes sent, seconds not overlapped, link) per group (ASSUMPTIONS)."""
    sent: dict[str, int] = {}
    for row in comm.rows:
        sent[row.group] = sent.get(row.group, 0) + wire_bytes(row, layout)
    layers = math.ceil(cfg.n_layers / layout.pp)
    exposed, links = {}, {}
    for group, nbytes in sent.items():
        bandwidth, links[group] = link(machine, layout, group)
        seconds = nbytes / bandwidth
        if group == "dp":
            seconds = max(seconds / layers, seconds - compute)
        exposed[group] = seconds
    return sent, exposed, links


def plan(
    cfg: ModelConfig,
    gpus: int,
    machine: Machine,
    seq: int,
    global_batch: int,
    mfu: float = 0.4,
    precision: str = "mixed",
    optimizer: str = "adamw",
    attention: str = "sdpa",
    top: int = 5,
    on_progress: Callable[[int, int], None] | None = None,
) -> Plan:
    """The `top` fastest layouts that fit, one per (degrees, schedule), best first."""
    from llmcalc.parallel.comm import communication
    from llmcalc.parallel.memory import parallel_memory

    sequences = check_request(cfg, gpus, seq, global_batch)
    if not 0 < mfu <= 1:
        raise LLMCalcError(f"--mfu {mfu}: must be in (0, 1]")
    if top < 1:
        raise LLMCalcError(f"--top {top}: must be at least 1")
    flops_per_second, dtype = peak(machine, precision)
    forward = forward_flops(cfg, sequences, seq)
    step = {recompute: step_flops(cfg, forward, recompute).hardware for recompute in RECOMPUTE}

    found = list(degrees(cfg, gpus, seq, sequences, machine.gpus_per_node))
    if not found:
        _refuse_batch(cfg, gpus, seq, sequences, machine.gpus_per_node)

    def memory(layout: Layout, batch: int, group: Group) -> Candidate:
        need = parallel_memory(
            cfg, layout, batch, seq, precision, optimizer, group.recompute, attention
        )
        bubble = group.bubble(batch)
        return Candidate(layout, batch, group.recompute, group.flops, group.compute, bubble, need)

    def timing(candidate: Candidate, group: Group) -> Candidate:
        comm = communication(
            cfg, candidate.layout, candidate.batch, seq, precision, group.recompute
        )
        sent, exposed, links = exposed_time(machine, candidate.layout, cfg, comm, group.compute)
        return dataclasses.replace(
            candidate, comm=comm, comm_bytes=sent, exposed=exposed, links=links
        )

    def floor(group: Group) -> float:
        """Seconds of tensor-, context-, expert- and pipeline-parallel traffic not overlapped at
        the group's largest micro-batch: none of it shrinks with more micro-batches, none of it
        depends on the ZeRO stage, so every candidate of the group spends at least as long."""
        batch = group.batches[-1]
        layout = group.layout(batch, group.zeros[-1])
        comm = communication(cfg, layout, batch, seq, precision, group.recompute)
        _, exposed, _ = exposed_time(machine, layout, cfg, comm, group.compute)
        return sum(seconds for name, seconds in exposed.items() if name != "dp")

    search = Search(top, machine.memory, memory, timing, floor, on_progress)
    best = search.run(list(groups(cfg, found, sequences, step, flops_per_second * mfu)))
    if not best:
        _refuse_memory(cfg, gpus, machine, search)
    return Plan(
        cfg, machine, gpus, seq, global_batch, mfu, precision, optimizer, attention,
        flops_per_second, dtype, best, search.total, search.memory_checked, search.timed,
        search.floored, dict(search.unmodelled), assumptions(machine),
    )  # fmt: skip


def groups(
    cfg: ModelConfig,
    found: list[tuple[int, int, int, int, int]],
    sequences: int,
    step: dict[str, int],
    flops_per_second: float,
) -> Iterator[Group]:
    """Every (degrees, schedule, recomputation) with a micro-batch the schedule allows (1F1B:
    at least pp micro-batches; interleaved: a multiple of pp). ZeRO stages 1-3 only where there
    is more than one rank to shard over."""
    for dp, tp, pp, cp, ep in found:
        share = dp * tp * pp * cp
        zeros = (3, 2, 1, 0) if dp * cp > 1 else (0,)
        for schedule, v in schedules(cfg, pp):
            batches = []
            for batch in divisors(sequences // dp):
                m = sequences // dp // batch
                if pp == 1 or (m >= pp and (schedule != "interleaved" or m % pp == 0)):
                    batches.append(batch)
            if not batches:
                continue
            for recompute in RECOMPUTE:
                flops = step[recompute] // share
                degrees = (dp, tp, pp, cp, ep, schedule, v)
                yield Group(
                    degrees, recompute, batches, zeros, sequences, flops, flops / flops_per_second
                )


def assumptions(machine: Machine) -> list[str]:
    words = dict(
        node=machine.gpus_per_node,
        intra=_rate(machine.intra_node),
        inter=_rate(machine.inter_node),
    )
    return [line.format(**words) for line in ASSUMPTIONS]


def _rate(bytes_per_second: float) -> str:
    return f"{bytes_per_second / 1e9:g} GB"


def _refuse_batch(cfg: ModelConfig, gpus: int, seq: int, sequences: int, node: int) -> None:
    """No data-parallel degree the GPUs allow divides the sequences of the global batch."""
    smallest = min((dp for dp, *_ in degrees(cfg, gpus, seq, None, node)), default=None)
    if smallest is None:
        raise LLMCalcError(
            f"--gpus {gpus}: no layout of {cfg.name} over {gpus} GPUs (tp at most {node} and"
            f" dividing the heads, pp at most {cfg.n_layers} layers, cp dividing --seq {seq})"
        )
    raise LLMCalcError(
        f"--global-batch {sequences * seq}: {sequences} sequences of {seq} tokens cannot be split"
        f" evenly over the data-parallel ranks of {gpus} GPUs (at least dp {smallest}); give a"
        f" multiple of {smallest * seq} tokens"
    )


def _refuse_memory(cfg: ModelConfig, gpus: int, machine: Machine, search: Search) -> None:
    if search.smallest is None:
        reasons = "; ".join(search.unmodelled) or "none"
        raise LLMCalcError(
            f"--gpus {gpus}: the closed forms model no layout of {cfg.name} on {gpus} GPUs"
            f" ({reasons})"
        )
    need, where = search.smallest
    raise LLMCalcError(
        f"--gpu-mem {format_bytes(machine.memory)}: no layout fits; the smallest need found is"
        f" {format_bytes(need)} per GPU ({where.layout.describe()}, micro-batch {where.batch},"
        f" recompute {where.checkpointing})"
    )
