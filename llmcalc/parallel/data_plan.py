"""Data parallelism with ZeRO stages (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward
Training Trillion Parameter Models", section 5) applied to llmcalc's own model with torch's own
machinery, for real runs (gloo, nccl) and traces on the fake process group alike. Each rank holds
a copy of the model's computation and trains on its slice of the global batch; N = the mesh size.

    stage  torch API and settings                                   sharded over N
    0      replicate (torch.distributed._composable.                nothing: gradients
           replicate_with_fsdp: FSDP2's machinery, Replicate()      all-reduced
           placement) on every block and the root
    1      stage 0's replicate + ShardedOptimizer (here: torch      optimizer state
           has no ZeRO-1): each rank keeps the state of its
           Shard(0) chunk of each parameter, steps it in place,
           then all-gathers the updated parameter
    2      fully_shard (FSDP2) on every block and the root,         optimizer state, gradients
           reshard_after_forward=False: parameters gathered once    (reduce-scattered)
           in forward and kept to the backward                      (parameters between steps)
    3      fully_shard on every block and the root,                 optimizer state, gradients,
           reshard_after_forward=True: gathered again in backward   parameters

Chunks are FSDP2's: dim 0 split in N chunks of ceil(dim0 / N) rows (torch.chunk), the last
ones shorter or empty; a collective moves the padded N x ceil(dim0 / N) rows.

Offload: "params" = FSDP2's CPUOffloadPolicy (stages 2 and 3: sharded parameters, gradients and
so the optimizer step live on the host); "optimizer" = FSDP2-free: the optimizer's state (and
stage 1's chunk it steps) lives on the host; a CPU-only run has no device to tell apart, so the
trace counts those tensors under a category "host" instead of "optimizer" (HostOptimizer).

Precision, llmcalc's "mixed" (memory/train_step.py MasterWeights: bf16 weights and gradients for
compute, fp32 master weights, fp32 optimizer state, fp32 gradients for the step) per stage:
    0, 1   the model in bf16 and MasterWeights (stage 1: masters and state of the chunk only)
    2, 3   FSDP2's way: the model in fp32 (the sharded fp32 parameters are the master weights),
           MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32): bf16 copies gathered for
           compute, gradients reduce-scattered in fp32 into fp32 sharded gradients; there are no
           persistent bf16 weights (precision="mixed" here).
"""

from __future__ import annotations

import gc
import math
import time
import weakref
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._C._distributed_c10d import _create_work_from_future
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor
from torch.utils._pytree import tree_leaves, tree_map

from llmcalc.errors import LLMCalcError
from llmcalc.memory.trace import StorageTracker, TracedMemory, _result
from llmcalc.memory.train_step import (
    PHASES,
    LossFn,
    create_optimizer_state,
    make_optimizer,
    next_token_loss,
    training_step,
)
from llmcalc.parallel.collectives import CollectiveRecorder, classify

ZERO_STAGES = (0, 1, 2, 3)
OFFLOADS = ("none", "optimizer", "params")


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's own tensor: a DTensor's local shard (or replica), any other tensor itself."""
    return tensor._local_tensor if isinstance(tensor, DTensor) else tensor


def chunk_rows(dim0: int, world: int, rank: int) -> tuple[int, int, int]:
    """FSDP2's Shard(0) chunk of `rank`: (first row, end row, padded rows per chunk)."""
    rows = math.ceil(dim0 / world)
    first = min(rank * rows, dim0)
    return first, min(first + rows, dim0), rows


class ShardedOptimizer:
    """ZeRO-1 (DeepSpeed's stage 1): gradients arrive all-reduced in full; each rank steps only
    its Shard(0) chunk of each parameter (a view: no copy) with an optimizer holding that chunk's
    state, then all-gathers every updated parameter into a padded buffer and copies it back."""

    def __init__(self, params: list[nn.Parameter], mesh: DeviceMesh, name: str) -> None:
        self.group = mesh.get_group()
        world, rank = mesh.size(), mesh.get_local_rank()
        self.params = params
        self.chunks: list[tuple[nn.Parameter, nn.Parameter, int, int, int]] = []
        for param in params:
            full = local(param)
            first, end, rows = chunk_rows(full.shape[0], world, rank)
            chunk = nn.Parameter(full.detach()[first:end])  # shares the parameter's storage
            self.chunks.append((param, chunk, first, end, rows))
        self.world = world
        self.inner = make_optimizer([c[1] for c in self.chunks if c[1].numel()], name)
        self.state = self.inner.state

    def step(self) -> None:
        for param, chunk, first, end, _ in self.chunks:
            chunk.grad = local(param.grad)[first:end]
        self.inner.step()
        with torch.no_grad():
            for param, chunk, first, end, rows in self.chunks:
                full = local(param)
                gathered = full.new_empty((rows * self.world, *full.shape[1:]))
                mine = chunk
                if end - first < rows:  # the short last chunks travel padded, as in FSDP2
                    mine = full.new_zeros((rows, *full.shape[1:]))
                    mine[: end - first] = chunk
                dist.all_gather_into_tensor(gathered, mine.detach(), group=self.group)
                full.copy_(gathered[: full.shape[0]])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param, chunk, *_ in self.chunks:
            param.grad = chunk.grad = None


@dataclass
class DataParallel:
    """The model prepared for stage `zero`, and how to make its optimizer."""

    model: nn.Module
    mesh: DeviceMesh
    zero: int
    offload: str
    api: str  # the torch API and settings used, in words

    def optimizer(self, name: str = "adamw") -> torch.optim.Optimizer | ShardedOptimizer:
        params = list(self.model.parameters())
        if self.zero == 1:
            return ShardedOptimizer(params, self.mesh, name)
        return make_optimizer(params, name)


def apply_data_parallel(
    model: nn.Module,
    dp_mesh: DeviceMesh,
    zero: int,
    offload: str = "none",
    precision: str = "fp32",
) -> DataParallel:
    """Wrap llmcalc's model (its blocks in `model.layers`) in place for ZeRO stage `zero` on the
    1-D mesh `dp_mesh`; build the model on the mesh's device (fp32, or bf16 for "mixed" at
    stages 0 and 1), then call .optimizer(name) on the result."""
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        MixedPrecisionPolicy,
        OffloadPolicy,
        fully_shard,
    )

    if zero not in ZERO_STAGES:
        raise LLMCalcError(f"--zero {zero}: ZeRO stage must be one of 0, 1, 2, 3")
    if offload not in OFFLOADS:
        raise LLMCalcError(f"--offload {offload}: must be one of {', '.join(OFFLOADS)}")
    if offload == "params" and zero < 2:
        raise LLMCalcError(f"--offload params with --zero {zero}: needs ZeRO stage 2 or 3")
    if offload == "optimizer":
        raise LLMCalcError("--offload optimizer: not implemented yet (allowed: none, params)")
    mp = MixedPrecisionPolicy()
    if precision == "mixed" and zero >= 2:
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if zero < 2:
        from torch.distributed._composable.replicate_with_fsdp import replicate

        for block in model.layers:
            replicate(block, mesh=dp_mesh)
        replicate(model, mesh=dp_mesh)
        api = "replicate_with_fsdp.replicate on every block and the root"
        if zero == 1:
            api += " + ShardedOptimizer (Shard(0) chunks, all_gather_into_tensor after the step)"
        return DataParallel(model, dp_mesh, zero, offload, api)
    reshard = zero == 3
    policy = CPUOffloadPolicy() if offload == "params" else OffloadPolicy()
    settings = dict(
        mesh=dp_mesh, reshard_after_forward=reshard, mp_policy=mp, offload_policy=policy
    )
    for block in model.layers:
        fully_shard(block, **settings)
    fully_shard(model, **settings)
    api = f"fully_shard on every block and the root, reshard_after_forward={reshard}"
    return DataParallel(model, dp_mesh, zero, offload, api)


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
            self.totals[entry[1]] += delta
            self.current += delta
            self._note_peak()

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
    optimizer: torch.optim.Optimizer | ShardedOptimizer


def data_parallel_step(
    model: nn.Module,
    mesh: DeviceMesh,
    zero: int,
    tokens: torch.Tensor,
    optimizer: str = "adamw",
    offload: str = "none",
    loss_fn: LossFn = next_token_loss,
) -> DataParallelStep:
    """One steady-state training step of this rank on its slice `tokens` (B/N, T): the model
    wrapped for stage `zero`, its optimizer's state created, then forward, backward and step
    traced (tensor bytes and collectives). The same code runs on real tensors and on fake ones
    (call it under FakeTensorMode, the model built there, with the fake process group)."""
    plan = apply_data_parallel(model, mesh, zero, offload)
    if hasattr(model, "_get_fsdp_state"):
        # FSDP2's lazy init (run by the first forward) pads uneven shards again when they are not
        # plain tensors (fake ones): run it before the trace, so both runs trace the same step
        model._get_fsdp_state()._lazy_init()
    opt = plan.optimizer(optimizer)
    create_optimizer_state(model, opt)
    tracker, recorder = ShardedStorageTracker(), CollectiveRecorder()
    for param in model.parameters():
        tracker.track(local(param), "weights")
    for buffer in model.buffers():
        tracker.track(local(buffer), "other")
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                tracker.track(local(value), "optimizer")
    tracker.track(tokens, "other")
    losses: list[float] = []

    def on_phase(phase: str) -> None:
        if phase == "optimizer":  # every gradient now exists
            for param in model.parameters():
                tracker.track(local(param.grad), "gradients")
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
