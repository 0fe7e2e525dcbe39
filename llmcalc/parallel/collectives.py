"""Collectives this rank issues, with their bytes: a dispatch-level recorder that sees every
c10d op (torch.distributed's eager API: FSDP2's all_gather_into_tensor and reduce_scatter_tensor,
DDP's and replicate's all_reduce, send/recv/isend/irecv) and every _c10d_functional op (DTensor
and traced code: funcol all_gather_into_tensor, reduce_scatter_tensor, all_reduce,
all_to_all_single), on any backend: real (gloo, nccl) or the fake process group.

Byte convention (per collective, as this rank sees it; the bus traffic is derived from these, e.g.
ring all-gather moves (N-1)/N of the gathered bytes, Thakur et al. 2005):

    all-gather      the gathered output bytes (N x the input)
    reduce-scatter  the input bytes (N x the output)
    all-reduce      the tensor bytes
    all-to-all      the input bytes
    point-to-point  the tensor bytes (send and recv each recorded on the rank that issues it)
    broadcast       the tensor bytes (also reduce, gather, scatter: the tensor bytes on this rank)

Coalesced ops (one call for many tensors) are one record with the sum of the tensors' bytes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch.distributed.tensor import DTensor
from torch.utils._python_dispatch import TorchDispatchMode

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "point-to-point")


def _bytes(tensors: object) -> int:
    if isinstance(tensors, torch.Tensor):
        return tensors.numel() * tensors.element_size()
    return sum(_bytes(t) for t in tensors)  # lists, and lists of lists


# op name -> (kind, which argument holds the tensors the convention counts, multiplier arg)
_C10D = {
    "c10d::_allgather_base_": ("all-gather", 0),
    "c10d::allgather_": ("all-gather", 0),
    "c10d::allgather_coalesced_": ("all-gather", 0),
    "c10d::allgather_into_tensor_coalesced_": ("all-gather", 0),
    "c10d::_reduce_scatter_base_": ("reduce-scatter", 1),
    "c10d::reduce_scatter_": ("reduce-scatter", 1),
    "c10d::reduce_scatter_tensor_coalesced_": ("reduce-scatter", 1),
    "c10d::allreduce_": ("all-reduce", 0),
    "c10d::allreduce_coalesced_": ("all-reduce", 0),
    "c10d::alltoall_": ("all-to-all", 1),
    "c10d::alltoall_base_": ("all-to-all", 1),
    "c10d::send": ("point-to-point", 0),
    "c10d::recv_": ("point-to-point", 0),
    "c10d::recv_any_source_": ("point-to-point", 0),
    "c10d::broadcast_": ("broadcast", 0),
    "c10d::reduce_": ("reduce", 0),
    "c10d::gather_": ("gather", 1),
    "c10d::scatter_": ("scatter", 0),
}
# functional collectives return their output: the input is argument 0; all-gather's output is
# the input times the group size (argument 1)
_FUNCTIONAL = {
    "all_gather_into_tensor": "all-gather",
    "all_gather_into_tensor_out": "all-gather",
    "all_gather_into_tensor_coalesced": "all-gather",
    "reduce_scatter_tensor": "reduce-scatter",
    "reduce_scatter_tensor_coalesced": "reduce-scatter",
    "all_reduce": "all-reduce",
    "all_reduce_": "all-reduce",
    "all_reduce_coalesced": "all-reduce",
    "all_reduce_coalesced_": "all-reduce",
    "all_to_all_single": "all-to-all",
    "broadcast": "broadcast",
    "broadcast_": "broadcast",
}
_FUNCTIONAL_NAMESPACES = ("_c10d_functional", "_c10d_functional_autograd")


@dataclass(frozen=True)
class Collective:
    kind: str  # one of KINDS, or broadcast / reduce / gather / scatter
    nbytes: int  # by the convention above
    op: str  # the op as dispatched, e.g. 'c10d::_allgather_base_'
    phase: str  # the recorder's phase when it was issued


def classify(op_name: str, args: tuple) -> tuple[str, int] | None:
    """(kind, bytes) of a collective op called with `args`, or None for any other op."""
    if op_name in _C10D:
        kind, index = _C10D[op_name]
        return kind, _bytes(args[index])
    namespace, _, name = op_name.partition("::")
    if namespace in _FUNCTIONAL_NAMESPACES and name in _FUNCTIONAL:
        kind = _FUNCTIONAL[name]
        nbytes = _bytes(args[0])
        return kind, nbytes * args[1] if kind == "all-gather" else nbytes
    return None


class CollectiveRecorder(TorchDispatchMode):
    """`with CollectiveRecorder() as rec:` records every collective this rank issues inside,
    tagged with `rec.phase` (set it as the step moves on)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[Collective] = []
        self.phase = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if any(t is DTensor for t in types):  # DTensor's dispatch issues its collectives here
            return NotImplemented
        kwargs = kwargs or {}
        named = [*args, *(kwargs.get(a.name) for a in func._schema.arguments[len(args) :])]
        found = classify(func._schema.name, tuple(named))
        if found is not None:
            self.records.append(Collective(*found, func._schema.name, self.phase))
        return func(*args, **kwargs)

    def bytes_by_kind(self, phase: str | None = None) -> dict[str, int]:
        """Total bytes of each kind (in `phase` only, if given)."""
        totals: Counter[str] = Counter()
        for record in self.records:
            if phase is None or record.phase == phase:
                totals[record.kind] += record.nbytes
        return dict(totals)

    def summary(self) -> list[tuple[str, str, int]]:
        """(phase, kind, bytes) of each record, in order: comparable across runs."""
        return [(r.phase, r.kind, r.nbytes) for r in self.records]
