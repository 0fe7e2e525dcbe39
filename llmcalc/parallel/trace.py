"""Traced per-GPU memory and communication: one steady-state training step of llmcalc's real
model, sharded by torch's own machinery (FSDP2's `fully_shard`, DTensor's `parallelize_module`,
functional collectives) on torch.distributed's fake process group under FakeTensorMode, so a
world of any size costs no memory: the traced process is rank 0 of that world, and the fake
group answers every collective at once with tensors of the right shapes.

A warm-up step first (FSDP2 initialises lazily; optimizers create their state), then the traced
step, followed by parallel/tracker.py (per category, phase by phase) and
parallel/collectives.py (every collective's bytes).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.memory.trace import PhasePeak
from llmcalc.memory.train_step import (
    precision_dtype,
    training_step,
)
from llmcalc.model.limits import check_step
from llmcalc.model.transformer import build_model
from llmcalc.parallel.layout import Layout
from llmcalc.parallel.tracker import ShardedTracker


@dataclass(frozen=True)
class TracedParallel:
    peak: int  # bytes on the traced rank at its busiest moment
    peak_phase: str
    phases: dict[str, PhasePeak]
    comm: dict[str, int]  # collective -> bytes this rank issued (parallel/collectives.py)

    @property
    def categories(self) -> dict[str, int]:
        return self.phases[self.peak_phase].categories


@contextmanager
def fake_world(world: int, rank: int = 0) -> Iterator[None]:
    """torch.distributed's fake process group of `world` ranks, this process `rank`."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group("fake", rank=rank, world_size=world, store=FakeStore())
    try:
        yield
    finally:
        dist.destroy_process_group()


def layout_mesh(layout: Layout) -> DeviceMesh:
    """The device mesh (dp, cp, tp), and its flattened dp × cp dimension (the ZeRO shard group);
    made outside FakeTensorMode (it reads real rank lists)."""
    shape = (layout.dp, layout.cp, layout.tp)
    mesh = init_device_mesh("cpu", shape, mesh_dim_names=("dp", "cp", "tp"))
    mesh["dp", "cp"]._flatten("dp_cp")
    return mesh


def traced_rank(layout: Layout) -> int:
    """The rank traced: the last context-parallel rank (it attends to every key: the peak),
    data- and tensor-parallel rank 0."""
    return (layout.cp - 1) * layout.tp


def trace_parallel(
    cfg: ModelConfig,
    layout: Layout,
    batch: int,
    seq: int,
    precision: str = "fp32",
    optimizer: str = "adamw",
    checkpointing: str = "none",
    attention: str = "sdpa",
) -> TracedParallel:
    """One rank's peak memory and collectives in one training step under `layout` (no
    pipeline, no experts: parallel/pipeline_trace.py and expert_plan.py trace those)."""
    from torch.distributed.tensor.parallel import loss_parallel

    from llmcalc.model.experts import Experts
    from llmcalc.parallel.collectives import CollectiveRecorder
    from llmcalc.parallel.context_plan import apply_context_parallel
    from llmcalc.parallel.data_plan import apply_data_parallel, rank_optimizer
    from llmcalc.parallel.data_trace import track_states
    from llmcalc.parallel.expert_plan import apply_expert_parallel
    from llmcalc.parallel.tensor_plan import apply_tensor_parallel

    check_step(cfg, batch, seq, attention)
    if layout.pp > 1:
        raise LLMCalcError(
            f"--trace with --pp {layout.pp}: pipelines are traced stage by stage, alone "
            "(benchmarks/bench_parallel_grid.py, parallel/pipeline_trace.py), not from memory"
        )
    if layout.ep > 1 and layout.zero == 1:
        raise LLMCalcError(
            f"--trace with --ep {layout.ep} and --zero 1: not traced (ZeRO-1's optimizer does "
            "not leave the experts alone); allowed with --zero 0, 2 or 3"
        )
    tracker = ShardedTracker()
    recorder = CollectiveRecorder()
    with fake_world(layout.world, traced_rank(layout)), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes on fake tensors and flattened meshes
        mesh = layout_mesh(layout)
        parallel_loss = loss_parallel() if layout.tp > 1 else nullcontext()
        with FakeTensorMode(allow_non_fake_inputs=True), parallel_loss:
            dtype = torch.float32 if precision == "mixed" and layout.zero >= 2 else None
            model = build_model(cfg, "cpu", dtype or precision_dtype(precision), attention)
            if layout.tp > 1:
                apply_tensor_parallel(model, mesh["tp"], layout.sp)
            if layout.cp > 1:
                apply_context_parallel(model, mesh["cp"])
            experts = set()
            if layout.ep > 1:  # over every data rank (parallel/memory.py refuses otherwise)
                apply_expert_parallel(model, mesh["dp_cp"])
                experts = {
                    p
                    for m in model.modules()
                    if isinstance(m, Experts)
                    for p in m.parameters(recurse=False)
                }
            if layout.shard_group > 1:
                # FSDP2 builds meshes from real rank lists: out of fake mode (the parameters
                # stay fake tensors)
                with unset_fake_temporarily():
                    wrapped = apply_data_parallel(
                        model, mesh["dp_cp"], layout.zero, layout.offload, precision, experts
                    )
                opt = wrapped.optimizer(optimizer)
            else:
                params = list(model.parameters())
                opt = rank_optimizer(params, optimizer, mixed=precision == "mixed")
            tokens = torch.randint(0, cfg.vocab_size, (batch, seq // layout.cp))
            training_step(model, opt, tokens, checkpointing)  # warm-up
            track_states(tracker, model, opt, layout.offload)
            tracker.track(tokens, "other")

            def on_phase(phase: str) -> None:
                if phase == "optimizer":
                    where = "host" if layout.offload == "params" else "gradients"
                    for param in model.parameters():
                        tracker.track(param.grad, where)
                tracker.enter_phase(phase)
                recorder.phase = phase

            hooks = torch.autograd.graph.saved_tensors_hooks(tracker.pack_saved, lambda t: t)
            with recorder, tracker, hooks:
                training_step(model, opt, tokens, checkpointing, on_phase)
    phases = {phase: tracker.peaks[phase] for phase in ("forward", "backward", "optimizer")}
    top = max(phases, key=lambda phase: phases[phase].total)
    return TracedParallel(phases[top].total, top, phases, recorder.bytes_by_kind())
