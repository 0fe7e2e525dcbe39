"""Context parallelism on llmcalc's model: the sequence split into cp contiguous chunks, one per
rank of the CP group; each rank runs every layer on its T/cp tokens and, in attention, gathers
the keys and values of all ranks before attending (all-gather-KV, Llama 3: Dubey et al. 2024,
section 3.3.2). The gather is autograd-aware (torch's functional collectives): its backward
reduce-scatters dK and dV, so each rank gets back the gradients of its own keys and values.

Contiguous chunks, not Llama 3's load-balanced head+tail pairs: rank r's queries are positions
r·c .. (r+1)·c − 1 (c = T/cp), so the model's own offset positions (RoPE, the causal mask of a
continued sequence) apply unchanged; the cost is that the last rank attends to the most keys.
Attention runs on the gathered keys up to its own last position (views of the gathered
tensors): rank 0 is plainly causal, rank r > 0 is masked (c × (r+1)·c).

torch's own torch.distributed.tensor.experimental.context_parallel (ring attention) does not run
here: on the CPU, SDPA dispatches to _scaled_dot_product_flash_attention_for_cpu, which has no
DTensor sharding strategy (NotImplementedError, torch 2.13).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._functional_collectives import all_gather_single_autograd
from torch.distributed.device_mesh import init_device_mesh

from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.memory.trace import StorageTracker
from llmcalc.memory.train_step import precision_dtype
from llmcalc.model.attention import Attention
from llmcalc.model.transformer import build_model
from llmcalc.parallel.collectives import CollectiveRecorder
from llmcalc.parallel.context import check_context


class GatherKeys:
    """Called by Attention (its `context`) on this rank's keys and values (B, h_kv, c, d_h):
    returns every rank's up to this rank's last position, and this rank's first position."""

    def __init__(self, group: dist.ProcessGroup) -> None:
        self.group = group
        self.rank = dist.get_rank(group)

    def __call__(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        chunk = k.shape[2]
        start = self.rank * chunk
        end = start + chunk
        k = all_gather_single_autograd(k, 2, self.group)[:, :, :end]
        v = all_gather_single_autograd(v, 2, self.group)[:, :, :end]
        return k, v, start


def apply_context_parallel(model: torch.nn.Module, cp_mesh) -> torch.nn.Module:  # noqa: ANN001
    """Make `model` (model.transformer.Transformer) run this rank's chunk of every sequence over
    the 1-D DeviceMesh `cp_mesh`: its tokens are then the rank's T/cp contiguous tokens (see
    `split_sequence`). Returns the model, changed in place."""
    if cp_mesh.ndim != 1:
        raise LLMCalcError(f"--cp: a 1-D device mesh is needed, got {cp_mesh.ndim}-D")
    group = cp_mesh.get_group()
    gather = GatherKeys(group)
    for block in model.layers:
        if not isinstance(block.attn, Attention):
            raise LLMCalcError(
                "--cp: latent attention (MLA) has no context-parallel path; "
                "only multi-head, GQA and MQA attention"
            )
        block.attn.context = gather
    model.chunk = gather.rank
    return model


def split_sequence(tokens: torch.Tensor, cp: int, rank: int) -> torch.Tensor:
    """Rank `rank`'s contiguous chunk of (B, T) tokens (or targets): T/cp of them."""
    seq = tokens.shape[1]
    if seq % cp:
        raise LLMCalcError(f"--cp {cp} must divide the sequence length (seq {seq})")
    chunk = seq // cp
    return tokens[:, rank * chunk : (rank + 1) * chunk]


@dataclass(frozen=True)
class ContextTrace:
    saved: int  # activation bytes kept for backward, as the backward begins
    all_gather: int  # all-gather output bytes, forward and backward
    reduce_scatter: int  # reduce-scatter input bytes


def trace_context(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    cp: int,
    rank: int = 0,
    precision: str = "fp32",
    checkpointing: str = "none",
    attention: str = "sdpa",
) -> ContextTrace:
    """One forward and backward of rank `rank`'s chunk on fake tensors over torch's fake process
    group of cp ranks (made here, unless one exists): its saved activations and its collectives'
    bytes."""
    check_context(cfg, seq, cp, attention)
    own_group = not dist.is_initialized()
    if own_group:
        from torch.testing._internal.distributed.fake_pg import FakeStore

        dist.init_process_group("fake", rank=rank, world_size=cp, store=FakeStore())
    try:
        mesh = init_device_mesh("cpu", (cp,))  # outside FakeTensorMode
        tracker, comms = StorageTracker(), CollectiveRecorder()
        with FakeTensorMode():
            model = build_model(cfg, "cpu", precision_dtype(precision), attention)
            apply_context_parallel(model, mesh)
            model.checkpointing = checkpointing == "full"
            for param in model.parameters():
                tracker.track(param, "weights")
            chunk = seq // cp
            tokens = torch.randint(0, cfg.vocab_size, (batch, chunk))
            targets = torch.randint(0, cfg.vocab_size, (batch, chunk))
            hooks = torch.autograd.graph.saved_tensors_hooks(tracker.pack_saved, lambda t: t)
            with comms, tracker, hooks:
                loss = model(tokens, targets)
                saved = tracker.totals["activations"]
                loss.backward()
    finally:
        if own_group:
            dist.destroy_process_group()
    moved = comms.bytes_by_kind()
    return ContextTrace(saved, moved.get("all-gather", 0), moved.get("reduce-scatter", 0))
