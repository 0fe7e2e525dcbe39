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

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.trace import PhasePeak, track_model_state
from llmcalc.memory.train_step import precision_dtype, training_step
from llmcalc.model.limits import check_step
from llmcalc.model.transformer import build_model
from llmcalc.parallel.layout import Layout
from llmcalc.parallel.tracker import ShardedTracker


@dataclass(frozen=True)
class TracedParallel:
    peak: int  # bytes on the traced rank at its busiest moment
    peak_phase: str
    phases: dict[str, PhasePeak]
    comm: dict[tuple[str, str], int]  # (collective, mesh dimension) -> bytes this rank moved

    @property
    def categories(self) -> dict[str, int]:
        return self.phases[self.peak_phase].categories


@contextmanager
def fake_world(world: int) -> Iterator[None]:
    """torch.distributed's fake process group of `world` ranks, this process rank 0."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group("fake", rank=0, world_size=world, store=FakeStore())
    try:
        yield
    finally:
        dist.destroy_process_group()


def layout_mesh(layout: Layout) -> DeviceMesh:
    """The device mesh (dp, cp, tp); made outside FakeTensorMode (it reads real rank lists)."""
    shape = (layout.dp, layout.cp, layout.tp)
    return init_device_mesh("cpu", shape, mesh_dim_names=("dp", "cp", "tp"))


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
    """Rank 0's peak memory and collectives in one training step under `layout` (no pipeline)."""
    from llmcalc.parallel.collectives import record_collectives
    from llmcalc.parallel.data_plan import apply_data_parallel

    check_step(cfg, batch, seq, attention)
    tracker = ShardedTracker()
    with fake_world(layout.world):
        mesh = layout_mesh(layout)
        with FakeTensorMode(allow_non_fake_inputs=True):
            model = build_model(cfg, "cpu", precision_dtype(precision), attention)
            opt = apply_data_parallel(model, mesh["dp"], layout.zero, precision, optimizer)
            tokens = torch.randint(0, cfg.vocab_size, (batch, seq // layout.cp))
            training_step(model, opt, tokens, checkpointing)  # warm-up
            track_model_state(tracker, model, opt)
            tracker.track(tokens, "other")

            def on_phase(phase: str) -> None:
                if phase == "optimizer":
                    for param in model.parameters():
                        tracker.track(param.grad, "gradients")
                tracker.enter_phase(phase)

            hooks = torch.autograd.graph.saved_tensors_hooks(tracker.pack_saved, lambda t: t)
            with record_collectives(mesh) as comm, tracker, hooks, tracker.following_resizes():
                training_step(model, opt, tokens, checkpointing, on_phase)
    phases = {phase: tracker.peaks[phase] for phase in ("forward", "backward", "optimizer")}
    top = max(phases, key=lambda phase: phases[phase].total)
    return TracedParallel(phases[top].total, top, phases, comm.bytes_by_kind())
