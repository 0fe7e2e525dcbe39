"""The storage tracker of memory/trace.py taught about sharded training: a DTensor counts as its
local shard (what the rank holds), and storages that FSDP2 grows and frees in place
(`UntypedStorage.resize_`, its all-gathered parameters) are followed through each resize.

Categories beyond one GPU's: `gathered` for the unsharded parameters FSDP2 all-gathers (the
communication buffers of ZeRO-3), which matmuls save for the backward without their becoming
activations.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.distributed.tensor import DTensor

from llmcalc.memory.trace import StorageTracker

GATHERED = "gathered"


def local(tensor: torch.Tensor) -> torch.Tensor:
    """What this rank holds of a tensor: a DTensor's local shard, else the tensor."""
    return tensor._local_tensor if isinstance(tensor, DTensor) else tensor


class ShardedTracker(StorageTracker):
    def __init__(self) -> None:
        super().__init__()
        self.totals[GATHERED] = 0
        self.shadow = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        # DTensor ops pass on to DTensor's own dispatch, whose ops on the local shards come
        # back here (as torch's CommDebugMode sees them)
        if any(t is DTensor for t in types):
            return NotImplemented
        if self.shadow:  # DTensor's shape inference: global-shape tensors no device holds
            return func(*args, **(kwargs or {}))
        return super().__torch_dispatch__(func, types, args, kwargs)

    def pack_saved(self, tensor: torch.Tensor) -> torch.Tensor:
        super().pack_saved(local(tensor))
        return tensor

    def track(self, tensor: torch.Tensor, category: str, move: bool = True) -> None:
        super().track(local(tensor), category, move)

    def category_of(self, tensor: torch.Tensor) -> str | None:
        return super().category_of(local(tensor))

    def resized(self, storage: torch.UntypedStorage, nbytes: int) -> None:
        """A storage resized in place (FSDP2's all-gather outputs): its entry grows or shrinks,
        and counts as gathered parameters."""
        key = id(storage)
        entry = self.live.get(key)
        if entry is None:
            ref = weakref.ref(storage, lambda _, key=key: self._free(key))
            entry = self.live[key] = [0, GATHERED, ref]
        self.totals[entry[1]] -= entry[0]
        entry[0], entry[1] = nbytes, GATHERED
        self.totals[GATHERED] += nbytes
        self.current = sum(self.totals.values())
        self._note_peak()

    @contextmanager
    def without_shape_inference(self) -> Iterator[None]:
        """DTensor infers each op's global output shape by running it on fake tensors of the
        global shape (ShardingPropagator), in the trace's own FakeTensorMode: on a GPU that runs
        on the meta device and holds nothing, so it is not counted."""
        from torch.distributed.tensor._sharding_prop import ShardingPropagator

        original = ShardingPropagator._propagate_tensor_meta_non_cached
        tracker = self

        def propagate(propagator, op_schema):  # noqa: ANN001, ANN202
            tracker.shadow = True
            try:
                return original(propagator, op_schema)
            finally:
                tracker.shadow = False

        ShardingPropagator._propagate_tensor_meta_non_cached = propagate
        try:
            yield
        finally:
            ShardingPropagator._propagate_tensor_meta_non_cached = original

    @contextmanager
    def following_resizes(self) -> Iterator[None]:
        original = torch.UntypedStorage.resize_
        tracker = self

        def resize_(storage: torch.UntypedStorage, nbytes: int) -> torch.UntypedStorage:
            out = original(storage, nbytes)
            tracker.resized(storage, nbytes)
            return out

        torch.UntypedStorage.resize_ = resize_
        try:
            yield
        finally:
            torch.UntypedStorage.resize_ = original
