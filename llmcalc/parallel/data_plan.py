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

ZeRO-0 uses replicate_with_fsdp, not DDP: it works on the fake process group and gloo alike, and
is FSDP2's own code; its cost (measured, tests/parallel/test_gloo.py): it gathers the replicated
parameters into unsharded copies for compute like FSDP2 does, so a rank's forward and backward
hold the parameters twice (tiny model, fp32: +115,584 B = 1x the weights over a single-GPU step);
its gradients are all-reduced per block (c10d allreduce_ of each block's gradients).

Chunks are FSDP2's: dim 0 split in N chunks of ceil(dim0 / N) rows (torch.chunk), the last
ones shorter or empty; a collective moves the padded N x ceil(dim0 / N) rows.

Offload (Ren et al. 2021, ZeRO-Offload):
    "optimizer"  FSDP2-free (HostOptimizer): a copy of the parameters this rank updates (fp32
                 when mixed) and the optimizer's state live on the host; each step copies the
                 gradients there, steps, and copies the parameters back; any stage
    "params"     FSDP2's CPUOffloadPolicy (stages 2 and 3): the sharded parameters, their
                 gradients and so the optimizer step live on the host; each block's parameters
                 are copied to the device and all-gathered when used
A CPU-only run has no device to tell apart: the trace counts the host's tensors under a category
"host" that is not in a phase's total (the device's bytes).

Precision, llmcalc's "mixed" (memory/train_step.py MasterWeights: bf16 weights and gradients for
compute, fp32 master weights, fp32 optimizer state, fp32 gradients for the step) per stage:
    0, 1   the model in bf16 and MasterWeights (stage 1: masters and state of the chunk only);
           gradients all-reduced in bf16
    2, 3   FSDP2's way: the model in fp32 (the sharded fp32 parameters are the master weights),
           MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32): bf16 copies gathered for
           compute (all-gather bytes halve), gradients reduce-scattered in fp32 into fp32 sharded
           gradients; no persistent bf16 weights, so per parameter 4/N (fp32 shard) + 4/N
           (gradient) + 8/N (state) instead of llmcalc's 2 + 2 + 4 + 8 split by stage
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor

from llmcalc.errors import LLMCalcError
from llmcalc.memory.train_step import MasterWeights, make_optimizer
from llmcalc.parallel.tracker import local

ZERO_STAGES = (0, 1, 2, 3)
PRECISIONS = ("fp32", "bf16", "mixed")
OFFLOADS = ("none", "optimizer", "params")


def chunk_rows(dim0: int, world: int, rank: int) -> tuple[int, int, int]:
    """FSDP2's Shard(0) chunk of `rank`: (first row, end row, padded rows per chunk)."""
    rows = math.ceil(dim0 / world)
    first = min(rank * rows, dim0)
    return first, min(first + rows, dim0), rows


class HostOptimizer:
    """--offload optimizer (ZeRO-Offload, Ren et al. 2021): an fp32 copy of the parameters this
    rank updates and the optimizer's state live on the host; each step copies the gradients to
    the host, steps there and copies the updated parameters back. On a CPU-only run the host is
    the same memory: the trace counts these tensors under "host" (data_parallel_step)."""

    def __init__(
        self, params: list[nn.Parameter], name: str, mixed: bool = False, host: str = "cpu"
    ) -> None:
        self.params = params
        dtype = torch.float32 if mixed else None  # mixed: the fp32 master weights are these
        self.masters = [nn.Parameter(local(p).detach().to(host, dtype, copy=True)) for p in params]
        self.inner = make_optimizer(self.masters, name)
        self.state = self.inner.state
        self.on_host: Callable[[torch.Tensor], None] = lambda tensor: None

    def step(self) -> None:
        for param, master in zip(self.params, self.masters, strict=True):
            master.grad = local(param.grad).detach().to(master.device, master.dtype, copy=True)
            self.on_host(master.grad)
        self.inner.step()
        with torch.no_grad():
            for param, master in zip(self.params, self.masters, strict=True):
                local(param).copy_(master)
                master.grad = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            param.grad = None


class ShardedOptimizer:
    """ZeRO-1 (DeepSpeed's stage 1): gradients arrive all-reduced in full; each rank steps only
    its Shard(0) chunk of each parameter (a view: no copy) with an optimizer holding that chunk's
    state, then all-gathers every updated parameter into a padded buffer and copies it back."""

    def __init__(
        self,
        params: list[nn.Parameter],
        mesh: DeviceMesh,
        name: str,
        host: bool = False,
        mixed: bool = False,
    ) -> None:
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
        mine = [c[1] for c in self.chunks if c[1].numel()]
        self.inner = rank_optimizer(mine, name, host, mixed)
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


Optimizer = torch.optim.Optimizer | MasterWeights | HostOptimizer | ShardedOptimizer


def param_groups(params: list[nn.Parameter]) -> list[dict]:
    """DTensors and plain tensors in groups of their own: torch's fused optimizers do not mix
    them in one call (tensor parallelism's replicated norms, expert parallelism's experts)."""
    sharded = [p for p in params if isinstance(p, DTensor)]
    plain = [p for p in params if not isinstance(p, DTensor)]
    return [{"params": group} for group in (sharded, plain) if group]


def rank_optimizer(
    params: list[nn.Parameter], name: str, host: bool = False, mixed: bool = False
) -> Optimizer:
    """The optimizer of the tensors a rank updates itself: on the host (offload), with fp32
    master weights (mixed: MasterWeights, or the host's fp32 copies), or torch's as it is."""
    if host:
        return HostOptimizer(params, name, mixed)
    return MasterWeights(params, name) if mixed else make_optimizer(param_groups(params), name)


@dataclass
class DataParallel:
    """The model prepared for stage `zero`, and how to make its optimizer."""

    model: nn.Module
    mesh: DeviceMesh
    zero: int
    offload: str
    precision: str
    api: str  # the torch API and settings used, in words

    def optimizer(self, name: str = "adamw") -> Optimizer:
        params = list(self.model.parameters())
        host = self.offload == "optimizer"
        mixed = self.precision == "mixed" and self.zero < 2  # 2, 3: FSDP2's own mixed precision
        if self.zero == 1:
            return ShardedOptimizer(params, self.mesh, name, host, mixed)
        return rank_optimizer(params, name, host, mixed)


def apply_data_parallel(
    model: nn.Module,
    dp_mesh: DeviceMesh,
    zero: int,
    offload: str = "none",
    precision: str = "fp32",
    ignored: set[nn.Parameter] | None = None,
) -> DataParallel:
    """Wrap llmcalc's model (its blocks in `model.layers`) in place for ZeRO stage `zero` on the
    1-D mesh `dp_mesh`; build the model on the mesh's device (fp32, or bf16 for "mixed" at
    stages 0 and 1), then call .optimizer(name) on the result. `ignored`: parameters data
    parallelism leaves alone (FSDP2's ignored_params: the rank's own experts under expert
    parallelism over every data rank)."""
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
    if precision not in PRECISIONS:
        raise LLMCalcError(f"--precision {precision}: must be one of {', '.join(PRECISIONS)}")
    mp = MixedPrecisionPolicy()
    if precision == "mixed" and zero >= 2:
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if zero < 2:
        from torch.distributed._composable.replicate_with_fsdp import replicate

        for block in model.layers:
            replicate(block, mesh=dp_mesh, ignored_params=ignored)
        replicate(model, mesh=dp_mesh, ignored_params=ignored)
        api = "replicate_with_fsdp.replicate on every block and the root"
        if zero == 1:
            api += " + ShardedOptimizer (Shard(0) chunks, all_gather_into_tensor after the step)"
        return DataParallel(model, dp_mesh, zero, offload, precision, api)
    reshard = zero == 3
    pin = dp_mesh.device_type != "cpu"  # pinned host memory speeds copies to a GPU
    policy = CPUOffloadPolicy(pin_memory=pin) if offload == "params" else OffloadPolicy()
    settings = dict(
        mesh=dp_mesh,
        reshard_after_forward=reshard,
        mp_policy=mp,
        offload_policy=policy,
        ignored_params=ignored,
    )
    for block in model.layers:
        fully_shard(block, **settings)
    fully_shard(model, **settings)
    api = f"fully_shard on every block and the root, reshard_after_forward={reshard}"
    return DataParallel(model, dp_mesh, zero, offload, precision, api)
