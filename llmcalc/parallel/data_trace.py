"""One steady-state training step of a rank under data parallelism (data_plan.py), traced: its
tensor bytes phase by phase (memory/trace.py's StorageTracker, made to follow sharded training)
and the collectives it issues (collectives.py). The same code runs in a real process group
(gloo, nccl) and on the fake process group with fake tensors, and gives the same figures, byte
for byte and phase by phase (tests/parallel/test_gloo.py), once two sources of timing are taken
out of a real run: Python's cyclic garbage collector (off during the step: tensors are freed by
reference counts only) and the backend's threads (gloo's pt_gloo_runloop releases a finished
collective when it next holds the GIL, which freed the program's buffers at random points of the
backward: _private_collective). Each rank traces its own tensors: a DTensor counts as its local
shard."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from llmcalc.memory.trace import TracedMemory, traced_result
from llmcalc.memory.train_step import (
    PHASES,
    LossFn,
    MasterWeights,
    create_optimizer_state,
    next_token_loss,
    training_step,
)
from llmcalc.parallel.collectives import CollectiveRecorder
from llmcalc.parallel.data_plan import (
    DataParallel,
    HostOptimizer,
    Optimizer,
    apply_data_parallel,
    local,
)
from llmcalc.parallel.tracker import ShardedTracker


@dataclass
class DataParallelStep:
    memory: TracedMemory  # this rank's tensor bytes, phase by phase
    collectives: CollectiveRecorder  # what this rank issued in the step, by phase
    losses: list[float]  # this rank's loss (real runs; empty on fake tensors)
    plan: DataParallel
    optimizer: Optimizer


def track_states(tracker: ShardedTracker, model: nn.Module, opt: Optimizer, offload: str) -> None:
    """Count the weights, buffers and optimizer state that exist before the step, on the device
    or, offloaded, on the host (and follow what HostOptimizer and MasterWeights make later)."""
    for param in model.parameters():
        tracker.track(local(param), "host" if offload == "params" else "weights")
    for buffer in model.buffers():
        tracker.track(local(buffer), "other")
    host = opt if isinstance(opt, HostOptimizer) else getattr(opt, "inner", None)
    host = host if isinstance(host, HostOptimizer) else None
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                tracker.track(local(value), "host" if host or offload == "params" else "optimizer")
    if host:
        for master in host.masters:
            tracker.track(master, "host")
        host.on_host = lambda tensor: tracker.track(tensor, "host")
    masters = opt if isinstance(opt, MasterWeights) else getattr(opt, "inner", None)
    if isinstance(masters, MasterWeights):  # mixed at stages 0 and 1: as memory/trace.py
        for master in masters.masters:
            tracker.track(master, "optimizer")
        masters.on_fp32_grad = lambda master: tracker.track(master.grad, "gradients")


def data_parallel_step(
    model: nn.Module,
    mesh: DeviceMesh,
    zero: int,
    tokens: torch.Tensor,
    optimizer: str = "adamw",
    offload: str = "none",
    precision: str = "fp32",
    loss_fn: LossFn = next_token_loss,
) -> DataParallelStep:
    """One steady-state training step of this rank on its slice `tokens` (B/N, T): the model
    wrapped for stage `zero`, its optimizer's state created, then forward, backward and step
    traced (tensor bytes and collectives). The same code runs on real tensors and on fake ones
    (call it under FakeTensorMode, the model built there, with the fake process group). Build
    the model in bf16 for "mixed" at stages 0 and 1, in fp32 at 2 and 3 (data_plan.py)."""
    plan = apply_data_parallel(model, mesh, zero, offload, precision)
    if hasattr(model, "_get_fsdp_state"):
        # FSDP2's lazy init (run by the first forward) pads uneven shards again when they are not
        # plain tensors (fake ones): run it before the trace, so both runs trace the same step
        model._get_fsdp_state()._lazy_init()
    opt = plan.optimizer(optimizer)
    create_optimizer_state(model, opt)
    tracker, recorder = ShardedTracker(), CollectiveRecorder()
    track_states(tracker, model, opt, offload)
    tracker.track(tokens, "other")
    losses: list[float] = []

    def on_phase(phase: str) -> None:
        if phase == "optimizer":  # every gradient now exists
            for param in model.parameters():
                tracker.track(local(param.grad), "host" if offload == "params" else "gradients")
        tracker.enter_phase(phase)
        recorder.phase = phase

    def loss_and_value(module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor):  # noqa: ANN202
        loss = loss_fn(module, inputs, targets)
        if not isinstance(loss, torch._subclasses.FakeTensor):
            losses.append(loss.item())
        return loss

    hooks = torch.autograd.graph.saved_tensors_hooks(tracker.pack_saved, lambda t: t)
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()  # tensors freed by reference counts only, never at a collection's whim
    try:
        with tracker, recorder, hooks:
            training_step(model, opt, tokens, "none", on_phase, loss_and_value)
    finally:
        if collecting:
            gc.enable()
    return DataParallelStep(traced_result(tracker, PHASES), recorder, losses, plan, opt)
