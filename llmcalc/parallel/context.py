"""Context parallelism (CP), closed form: what one rank of a CP group of `cp` ranks keeps and
sends in one training step when the sequence is split into cp contiguous chunks of c = T/cp
tokens and attention all-gathers the keys and values (Llama 3: Dubey et al. 2024, section
3.3.2; our model: parallel/context_plan.py). No torch here.

Symbols as in memory/activations.py: B batch, T seq, c = T/cp, a bytes per activation element,
kv = h_kv·d_h, q = h·d_h, L layers. Rank r's queries are positions r·c .. (r+1)·c − 1 and attend
to keys 0 .. (r+1)·c − 1: k_r = (r+1)·c keys.

Saved activations of one layer at rank r: the single-GPU layer at c tokens (layer_activations),
except the keys and values SDPA keeps:
    r = 0            the gathered K and V, whole: 2·B·T·kv·a (the slice it attends to is a view)
    r > 0, MHA       the same, and the (B, 1, c, k_r) causal mask made additive: B·c·k_r·a
    r > 0, GQA/MQA   K and V repeated per query head (the masked SDPA call, as transformers
                     makes it): 2·B·k_r·q·a, and the mask B·c·k_r·a

Communication per rank and step (tensor bytes; an all-gather counts its output, a reduce-scatter
its input; a ring moves (cp − 1)/cp of that per rank): per attention layer, the forward
all-gathers K and V, 2·B·T·kv·a, again in the backward with full checkpointing; the backward
reduce-scatters dK and dV, 2·B·T·kv·a. The gradients of the weights, replicated across the CP
group, are reduced by the data-parallel wrapper (FSDP over dp × cp), not counted here.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.experts import is_latent
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.memory.activations import attention_impl, head_activations, layer_activations
from llmcalc.memory.experts import layer_kinds


def check_context(cfg: ModelConfig, seq: int, cp: int, impl: str = "sdpa") -> int:
    """The chunk c = T/cp, or an LLMCalcError naming what context parallelism does not model."""
    if cp < 1 or seq % cp:
        raise LLMCalcError(f"--cp {cp} must be a positive divisor of the sequence (seq {seq})")
    if attention_impl(cfg, impl) != "sdpa" or cfg.position == "alibi":
        raise LLMCalcError(f"--cp {cp}: only fused SDPA attention is modelled (not {impl})")
    if is_latent(cfg) or cfg.fused_qkv or cfg.sliding_window is not None:
        raise LLMCalcError(
            f"--cp {cp}: {cfg.name} has latent attention, a fused qkv or a sliding window; "
            "only separate q/k/v projections over global attention are modelled"
        )
    return seq // cp


def context_layer_activations(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    cp: int,
    rank: int,
    a: int,
    impl: str = "sdpa",
    moe: bool = False,
) -> dict[str, int]:
    """Bytes one block keeps for backward at rank `rank` of `cp`, by tensor name (see the module
    docstring); `seq` is the whole sequence T."""
    chunk = check_context(cfg, seq, cp, impl)
    if not 0 <= rank < cp:
        raise LLMCalcError(f"--cp {cp}: rank {rank} is not one of 0 .. {cp - 1}")
    saved = dict(layer_activations(cfg, batch, chunk, a, impl, moe=moe))
    # this rank's own keys and values, as SDPA would keep them on one GPU, are replaced
    k_name = (
        "attn.k_rope"
        if cfg.position == "rope"
        else "attn.k_norm.out"
        if cfg.qk_norm != "none"
        else "attn.k_proj"
    )
    del saved[k_name], saved["attn.v_proj"]
    keys = (rank + 1) * chunk
    if rank > 0 and cfg.n_kv_heads != cfg.n_heads:
        saved["attn.k_repeated"] = saved["attn.v_repeated"] = batch * keys * cfg.q_dim * a
    else:
        saved["attn.k_gathered"] = saved["attn.v_gathered"] = batch * seq * cfg.kv_dim * a
    if rank > 0:
        saved["attn.causal_mask"] = batch * chunk * keys * a
    return saved


def context_saved_activations(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    cp: int,
    rank: int,
    a: int,
    impl: str = "sdpa",
    checkpointing: str = "none",
) -> int:
    """Everything rank `rank` keeps for backward in one step: its layers and, outside them,
    the head at c tokens (its tokens, targets, RoPE tables, logits' log-softmax). With full
    checkpointing each block keeps its input, B·c·d·a, and the RoPE tables are held as the
    blocks' inputs, not saved (as memory/formula.py: training_memory)."""
    chunk = check_context(cfg, seq, cp, impl)
    head = head_activations(cfg, batch, chunk, a)
    total = sum(head.values())
    if checkpointing == "full":
        return total - head.get("rope_tables", 0) + cfg.n_layers * batch * chunk * cfg.d_model * a
    for (_, moe), count in layer_kinds(cfg).items():
        layer = context_layer_activations(cfg, batch, seq, cp, rank, a, impl, moe=moe)
        total += count * sum(layer.values())
    return total


@dataclass(frozen=True)
class ContextComm:
    """Bytes one rank's collectives carry in one training step (tensor bytes, see above)."""

    all_gather: int  # K and V gathered: forward (and the checkpointed recompute)
    reduce_scatter: int  # dK and dV reduced and scattered back: backward
    cp: int

    @property
    def total(self) -> int:
        return self.all_gather + self.reduce_scatter

    @property
    def sent(self) -> int:
        """What a ring implementation sends from each rank: (cp − 1)/cp of each collective."""
        return self.total * (self.cp - 1) // self.cp


def context_comm(
    cfg: ModelConfig,
    batch: int,
    seq: int,
    cp: int,
    a: int,
    checkpointing: str = "none",
    impl: str = "sdpa",
) -> ContextComm:
    """One rank's CP traffic per training step: per layer 2·B·T·kv·a gathered (twice with full
    checkpointing, which reruns each block's forward in the backward) and as much
    reduce-scattered."""
    check_context(cfg, seq, cp, impl)
    per_layer = 2 * batch * seq * cfg.kv_dim * a
    gathers = 2 if checkpointing == "full" else 1
    return ContextComm(gathers * cfg.n_layers * per_layer, cfg.n_layers * per_layer, cp)
