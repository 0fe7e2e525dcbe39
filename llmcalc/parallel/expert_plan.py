"""Expert parallelism on torch.distributed: the real model's routed experts split over an ep
mesh (torchtitan's ExpertParallel, Megatron-Core's expert model parallel), and one training step
of it traced on fake tensors, storage by storage and collective by collective.

Each rank keeps experts [r·E/ep, (r+1)·E/ep) of every MoE layer as plain local slices of
gate_up_proj, down_proj (and their biases), dim 0. Every rank routes its own tokens, sorts the
n·k assignments by expert, exchanges the per-expert counts with an all-to-all (int64, E each
way; torchtitan does the same), sends each row to the rank of its expert
(all_to_all_single_autograd), regroups the received rows by local expert, runs its experts,
scatters the results back to the received order and returns them with a second all-to-all; the
weighting and the sum over each token's k experts are the single-GPU code's. The backward runs
both all-to-alls transposed (torch's autograd all-to-all). On meta and fake tensors the counts
are model/experts.py's balanced rule on every rank (the exchange still runs: its bytes are the
real step's).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import torch
import torch.distributed._functional_collectives as funcol
from torch import nn

from llmcalc.config.schema import ModelConfig
from llmcalc.memory.trace import StorageTracker, TracedMemory, trace_module_training
from llmcalc.memory.train_step import (
    precision_dtype,
)
from llmcalc.model.experts import Experts, balanced_counts, equal_runs, has_values
from llmcalc.model.transformer import build_model
from llmcalc.parallel.expert import check_expert_parallel

SHARDED = ("gate_up_proj", "down_proj", "gate_up_bias", "down_bias")


class ExpertParallelExperts(Experts):
    """Experts holding E / ep of the routed experts, tokens dispatched by all-to-all."""

    ep_group: object  # a c10d ProcessGroup
    ep_rank: int
    ep_size: int

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor
    ) -> torch.Tensor:
        cfg, k, ep, group = self.cfg, experts.shape[-1], self.ep_size, self.ep_group
        held, first = cfg.n_experts // ep, self.ep_rank * (cfg.n_experts // ep)
        flat = experts.flatten()
        order = flat.argsort(stable=True)  # assignments sorted by expert, so by rank
        token = order // k
        sent, received = self._exchange_counts(flat, int(flat.shape[0]), held, first)
        to_rank = [sum(sent[r * held : (r + 1) * held]) for r in range(ep)]
        from_rank = [sum(received[s * held : (s + 1) * held]) for s in range(ep)]
        rows = x[token]  # (n·k, d), grouped by expert
        got = funcol.all_to_all_single_autograd(rows, from_rank, to_rank, group)
        got = funcol.wait_tensor(got)  # (R, d): by source rank, then local expert
        counts = [sum(received[s * held + j] for s in range(ep)) for j in range(held)]
        permutation = None
        if held > 1:  # regroup by local expert
            permutation = _by_expert(received, ep, held, got.device)
            got = got[permutation]
        outputs, start = [], 0
        for run_first, n, each in equal_runs(counts):
            end = start + n * each
            outputs.append(self._run(got[start:end].view(n, each, -1), run_first, n).flatten(0, 1))
            start = end
        if not outputs:  # no rows here: send nothing back, keeping the graph
            out = got
        else:
            out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        if permutation is not None:  # back to the received order
            where = permutation.unsqueeze(-1).expand_as(out)  # a view: keeps the permutation only
            out = torch.empty_like(out).scatter_(0, where, out)
        back = funcol.wait_tensor(funcol.all_to_all_single_autograd(out, to_rank, from_rank, group))
        back = back * weights.flatten()[order].unsqueeze(-1).to(back.dtype)
        return torch.zeros_like(x).index_add_(0, token, back)

    def _exchange_counts(
        self, flat: torch.Tensor, assignments: int, held: int, first: int
    ) -> tuple[list[int], list[int]]:
        """(rows this rank sends to each expert, rows each rank sends to each local expert, by
        rank then local expert): the router's, exchanged by an all-to-all, or on meta and fake
        tensors the balanced rule on every rank (the exchange runs all the same)."""
        experts, ep = self.cfg.n_experts, self.ep_size
        splits = [held] * ep
        if has_values(flat):
            counts = torch.bincount(flat, minlength=experts)
            got = funcol.all_to_all_single(counts, splits, splits, self.ep_group)
            return counts.tolist(), funcol.wait_tensor(got).tolist()
        sent = balanced_counts(assignments, experts)
        counts = torch.tensor(sent, dtype=torch.int64, device=flat.device)
        funcol.wait_tensor(funcol.all_to_all_single(counts, splits, splits, self.ep_group))
        return sent, sent[first : first + held] * ep


def _by_expert(received: list[int], ep: int, held: int, device: torch.device) -> torch.Tensor:
    """Indices that reorder rows laid out by (source rank, local expert) as (local expert,
    source rank), int64."""
    starts = [0, *accumulate(received)]
    pieces = [
        torch.arange(starts[s * held + j], starts[s * held + j + 1], device=device)
        for j in range(held)
        for s in range(ep)
    ]
    return torch.cat(pieces)


def apply_expert_parallel(model: nn.Module, ep_mesh: object) -> nn.Module:
    """Split every MoE layer's routed experts over the 1-D DeviceMesh `ep_mesh` (in place):
    rank r keeps experts [r·E/ep, (r+1)·E/ep) as local parameter slices and dispatches its
    tokens by all-to-all. Returns the model. Raises LLMCalcError if ep does not divide
    n_experts or the model is dense."""
    ep, rank, group = ep_mesh.size(), ep_mesh.get_local_rank(), ep_mesh.get_group()
    layers = [module for module in model.modules() if isinstance(module, Experts)]
    check_expert_parallel(layers[0].cfg if layers else model.cfg, ep)
    for module in layers:
        held = module.cfg.n_experts // ep
        for name in SHARDED:
            whole = getattr(module, name, None)
            if whole is None:
                continue
            local = whole.detach()[rank * held : (rank + 1) * held].clone()
            setattr(module, name, nn.Parameter(local, requires_grad=whole.requires_grad))
        module.__class__ = ExpertParallelExperts
        module.ep_group, module.ep_rank, module.ep_size = group, rank, ep
    return model


# --- tracing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collective:
    """One collective a rank ran: its op, the step's phase, input and output bytes."""

    op: str  # e.g. "all_to_all_single"
    phase: str
    sent: int
    received: int


class CollectiveTracker(StorageTracker):
    """StorageTracker that also records every c10d functional collective (wait_tensor aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.collectives: list[Collective] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = super().__torch_dispatch__(func, types, args, kwargs)
        name = func.overloadpacket.__name__
        if func.namespace.startswith(("_c10d_functional", "c10d")) and name != "wait_tensor":
            sent = args[0].untyped_storage().nbytes() if isinstance(args[0], torch.Tensor) else 0
            self.collectives.append(Collective(name, self.phase, sent, _nbytes(out)))
        return out


def _nbytes(out: object) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    return sum(_nbytes(o) for o in out) if isinstance(out, (list, tuple)) else 0


def trace_expert_parallel(
    cfg: ModelConfig,
    ep_mesh: object,
    batch: int,
    seq: int,
    precision: str = "fp32",
    optimizer: str = "adamw",
    checkpointing: str = "none",
    attention: str = "sdpa",
) -> tuple[TracedMemory, list[Collective]]:
    """One steady-state training step of this rank of the expert-parallel model on its own
    (batch, seq) tokens, on fake tensors (the fake process group: collectives move nothing):
    the memory trace (memory/trace.py) and the collectives it ran, in order. The mesh is made
    before, outside FakeTensorMode."""
    tracker = CollectiveTracker()

    def build() -> torch.nn.Module:
        model = build_model(cfg, "cpu", precision_dtype(precision), attention)
        return apply_expert_parallel(model, ep_mesh)

    traced = trace_module_training(
        build, cfg.vocab_size, batch, seq, precision, optimizer, checkpointing, tracker=tracker
    )
    return traced, tracker.collectives
