"""The storage tracker of memory/trace.py taught about sharded training, for real process groups
(gloo, nccl) and the fake one alike:
- a DTensor counts as its local shard (DTensor ops pass on to DTensor's dispatch, whose ops on
  the shards come back here, as torch's CommDebugMode sees them);
- storages that FSDP2 frees and grows in place (`UntypedStorage.resize_`, which no dispatch mode
  sees: its unsharded parameters) are followed through each resize, counted as `gathered`;
- DTensor's shape inference, which runs each op on fake tensors of the global shape in the
  trace's own FakeTensorMode (on a GPU: on the meta device, holding nothing), is not counted;
- tensors in the category `host` (offloaded) are followed but are not in the device's total;
- each c10d collective runs on private copies of its tensors (_private_collective): a real
  backend releases a finished collective on its own thread when that thread next gets the GIL,
  which would free the program's tensors at racy times.
"""

from __future__ import annotations

import time
import weakref

import torch
from torch._C._distributed_c10d import _create_work_from_future
from torch.distributed.tensor import DTensor
from torch.utils._pytree import tree_leaves, tree_map

from llmcalc.memory.trace import StorageTracker
from llmcalc.parallel.collectives import classify

GATHERED = "gathered"  # FSDP2's unsharded parameters: the communication buffers of ZeRO-3
HOST = "host"


def local(tensor: torch.Tensor) -> torch.Tensor:
    """What this rank holds of a tensor: a DTensor's local shard, else the tensor."""
    return tensor._local_tensor if isinstance(tensor, DTensor) else tensor


class ShardedTracker(StorageTracker):
    def __init__(self) -> None:
        super().__init__()
        self.totals[GATHERED] = 0
        self.totals[HOST] = 0  # offloaded tensors: in host memory, not in the device's total
        self.shadow = False

    # -- bookkeeping ---------------------------------------------------------------------------

    def track(self, tensor: torch.Tensor, category: str, move: bool = True) -> None:
        storage = local(tensor).untyped_storage()
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

    def category_of(self, tensor: torch.Tensor) -> str | None:
        return super().category_of(local(tensor))

    def _add(self, entry: list, nbytes: int) -> None:
        self.totals[entry[1]] += nbytes
        if entry[1] != HOST:
            self.current += nbytes
            self._note_peak()

    def _free(self, key: int) -> None:
        entry = self.live.pop(key)
        self._add(entry, -entry[0])

    def resized(self, storage: torch.UntypedStorage) -> None:
        """A storage resized in place (FSDP2's unsharded parameters): its new size, gathered."""
        key = id(storage)
        entry = self.live.get(key)
        if entry is None:
            if not storage.nbytes():
                return
            ref = weakref.ref(storage, lambda _, key=key: self._free(key))
            entry = self.live[key] = [0, GATHERED, ref]
        if entry[1] == "other":
            self._add(entry, -entry[0])
            entry[1] = GATHERED
            self._add(entry, entry[0])
        delta = storage.nbytes() - entry[0]
        if delta:
            entry[0] += delta
            self._add(entry, delta)

    # -- hooks ---------------------------------------------------------------------------------

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if any(t is DTensor for t in types):
            return NotImplemented
        if self.shadow:
            return func(*args, **kwargs)
        if func._schema.name.startswith("c10d::") and classify(func._schema.name, args):
            return _private_collective(func, args, kwargs)
        out = func(*args, **kwargs)
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.track(leaf, "other", move=False)
        return out

    def pack_saved(self, tensor: torch.Tensor) -> torch.Tensor:
        super().pack_saved(local(tensor))
        return tensor

    def __enter__(self):  # noqa: ANN204
        from torch.distributed.tensor._sharding_prop import ShardingPropagator

        storage, propagator = torch.UntypedStorage, ShardingPropagator
        self._own_resize = storage.__dict__.get("resize_")
        resize, propagate = storage.resize_, propagator._propagate_tensor_meta_non_cached
        self._propagate = propagate

        def resize_(store: torch.UntypedStorage, size: int) -> torch.UntypedStorage:
            out = resize(store, size)
            self.resized(store)
            return out

        def shape_inference(sharding, op_schema):  # noqa: ANN001, ANN202
            self.shadow = True
            try:
                return propagate(sharding, op_schema)
            finally:
                self.shadow = False

        storage.resize_ = resize_
        propagator._propagate_tensor_meta_non_cached = shape_inference
        return super().__enter__()

    def __exit__(self, *exc):  # noqa: ANN002
        from torch.distributed.tensor._sharding_prop import ShardingPropagator

        if self._own_resize is None:
            del torch.UntypedStorage.resize_
        else:
            torch.UntypedStorage.resize_ = self._own_resize
        ShardingPropagator._propagate_tensor_meta_non_cached = self._propagate
        return super().__exit__(*exc)


def _is_work(value: object) -> bool:
    return not isinstance(value, torch.Tensor) and hasattr(value, "wait")


def _wait_and_copy_back(out: object, written: object, private: object) -> None:
    """Wait for the collective, then copy what it wrote (every c10d collective writes its first
    argument: all-gather's and reduce-scatter's output, all-reduce's and broadcast's tensors,
    recv's buffer) back to the program's tensors. A function of its own, so that no local
    name outlives it holding a private copy."""
    for leaf in tree_leaves(out):
        if _is_work(leaf):
            leaf.wait()
    for mine, theirs in zip(tree_leaves(written), tree_leaves(private), strict=True):
        mine.copy_(theirs)


def _private_collective(func, args: tuple, kwargs: dict):  # noqa: ANN001, ANN202
    """Run a c10d collective on private copies of its tensors, wait for it, write what it wrote
    back, and wait until the backend has let go of it (see the module docstring). The copies are
    made with the tracker off (inside its handler); the caller gets the program's tensors and an
    already completed Work."""
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
