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
import time
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch._C._distributed_c10d import _create_work_from_future
from torch.distributed.device_mesh import DeviceMesh
from torch.utils._pytree import tree_leaves, tree_map

from llmcalc.memory.trace import StorageTracker, TracedMemory, _result
from llmcalc.memory.train_step import (
    PHASES,
    LossFn,
    MasterWeights,
    create_optimizer_state,
    next_token_loss,
    training_step,
)
from llmcalc.parallel.collectives import CollectiveRecorder, classify
from llmcalc.parallel.data_plan import (
    DataParallel,
    HostOptimizer,
    Optimizer,
    apply_data_parallel,
    local,
)


def _is_work(value: object) -> bool:
    return not isinstance(value, torch.Tensor) and hasattr(value, "wait")


def _wait_and_copy_back(out: object, written: object, private: object) -> None:
    for leaf in tree_leaves(out):
        if _is_work(leaf):
            leaf.wait()
    # every c10d collective writes its first argument (all-gather's and reduce-scatter's output,
    # all-reduce's and broadcast's tensors, recv's buffer; send's come back unchanged)
    for mine, theirs in zip(tree_leaves(written), tree_leaves(private), strict=True):
        mine.copy_(theirs)


def _private_collective(func, args: tuple, kwargs: dict):  # noqa: ANN001, ANN202
    """Run a c10d collective on private copies of its tensors, wait for it, write what it wrote
    back, and wait until the backend has let go of it: a real backend (gloo) releases a finished
    collective on its own thread, when that thread next gets the GIL, and what it releases would
    free the program's tensors at racy times. The copies are made with the tracker off (inside
    its handler); the caller gets the program's tensors and an already completed Work."""
    copies, refs = {}, []

    def private(value):  # noqa: ANN001, ANN202
        if isinstance(value, torch.Tensor):
            copy = value.clone()
            copies[id(copy)] = value
            refs.append(weakref.ref(copy))
            return copy
        return value

    private_args, private_kwargs = tree_map(private, (args, kwargs))
    out = func(*private_args, **private_kwargs)
    _wait_and_copy_back(out, args[0], private_args[0])
    done = torch.futures.Future()
    done.set_result(None)
    work = _create_work_from_future(done).boxed()  # as the dispatcher returns a Work
    result = tree_map(lambda v: copies.get(id(v), work if _is_work(v) else v), out)
    del out, private_args, private_kwargs
    deadline = time.monotonic() + 30
    while any(ref() is not None for ref in refs):  # the backend's thread still holds them
        if time.monotonic() > deadline:
            raise RuntimeError(f"{func._schema.name}: the backend never released its tensors")
        time.sleep(0.0001)
    return result


class ShardedStorageTracker(StorageTracker):
    """StorageTracker for sharded training: a DTensor counts as its local tensor, a storage
    resized in place (FSDP2 frees and re-allocates each unsharded parameter's storage with
    UntypedStorage.resize_, which no dispatch mode sees) is counted at its new size, and
    collectives run on private copies (_private_collective): the same trace on a real backend
    as on the fake process group."""

    def __init__(self) -> None:
        super().__init__()
        self.totals["host"] = 0  # offloaded tensors: in host memory, not in the device's total

    def track(self, tensor: torch.Tensor, category: str, move: bool = True) -> None:
        """StorageTracker.track, but tensors in the category "host" are not in `current`."""
        storage = tensor.untyped_storage()
        key = id(storage)
        entry = self.live.get(key)
        if entry is None:
            ref = weakref.ref(storage, lambda _, key=key: self._free(key))
            entry = self.live[key] = [storage.nbytes(), category, ref]
            self._add(entry, entry[0])
        elif move and entry[1] != category:
            self._add(entry, -entry[0])
            entry[1] = category
            self._add(entry, entry[0])

    def _add(self, entry: list, nbytes: int) -> None:
        self.totals[entry[1]] += nbytes
        if entry[1] != "host":
            self.current += nbytes
            self._note_peak()

    def _free(self, key: int) -> None:
        entry = self.live.pop(key)
        self._add(entry, -entry[0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func._schema.name.startswith("c10d::") and classify(func._schema.name, args):
            return _private_collective(func, args, kwargs or {})
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.track(local(leaf), "other", move=False)
        return out

    def pack_saved(self, tensor: torch.Tensor) -> torch.Tensor:
        super().pack_saved(local(tensor))
        return tensor

    def resized(self, storage: torch.UntypedStorage) -> None:
        entry = self.live.get(id(storage))
        if entry is not None and storage.nbytes() != entry[0]:
            delta = storage.nbytes() - entry[0]
            entry[0] += delta
            self._add(entry, delta)

    def __enter__(self):  # noqa: ANN204
        cls = torch.UntypedStorage
        self._own = cls.__dict__.get("resize_")
        original = cls.resize_

        def resize_(storage: torch.UntypedStorage, size: int) -> torch.UntypedStorage:
            out = original(storage, size)
            self.resized(storage)
            return out

        cls.resize_ = resize_
        return super().__enter__()

    def __exit__(self, *exc):  # noqa: ANN002
        if self._own is None:
            del torch.UntypedStorage.resize_
        else:
            torch.UntypedStorage.resize_ = self._own
        return super().__exit__(*exc)


@dataclass
class DataParallelStep:
    memory: TracedMemory  # this rank's tensor bytes, phase by phase
    collectives: CollectiveRecorder  # what this rank issued in the step, by phase
    losses: list[float]  # this rank's loss (real runs; empty on fake tensors)
    plan: DataParallel
    optimizer: Optimizer


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
    tracker, recorder = ShardedStorageTracker(), CollectiveRecorder()
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
    return DataParallelStep(_result(tracker, PHASES), recorder, losses, plan, opt)
