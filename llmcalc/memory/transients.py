"""What a block's forward holds without autograd (a prefill, or a checkpointed block's first
forward), at its largest moment: in its MLP (dense or MoE) or, where it can be the larger, in
its attention (eager with sinks, latent). No torch here."""

from __future__ import annotations

from llmcalc.config.experts import is_latent
from llmcalc.config.schema import ModelConfig
from llmcalc.config.window import cached_positions, local_layer_count
from llmcalc.memory.experts import moe_transient
from llmcalc.memory.latent import latent_prefill_transient


def block_transient(
    cfg: ModelConfig, batch: int, seq: int, a: int, moe: bool = False, *more: bool | str
) -> int:
    """A block's forward without autograd: its MLP's or its attention's largest moment (`more`:
    attention_transient's cached and impl)."""
    return max(
        mlp_transient(cfg, batch, seq, a, moe), attention_transient(cfg, batch, seq, a, *more)
    )


def mlp_transient(cfg: ModelConfig, batch: int, seq: int, a: int, moe: bool = False) -> int:
    """In a block's MLP: input, mid-stream, norm output, and the hidden tensors (three of n·f
    while a GLU multiplies, four inside gelu_new, five inside gelu_recomputed, else two), or an
    MoE layer's (memory/experts.py)."""
    n = batch * seq
    if moe:
        return 3 * n * cfg.d_model * a + moe_transient(cfg, n, a)
    hidden = 3 if cfg.is_glu else {"gelu_new": 4, "gelu_recomputed": 5}.get(cfg.activation, 2)
    return 3 * n * cfg.d_model * a + hidden * n * cfg.d_ff * a


def attention_transient(
    cfg: ModelConfig, batch: int, seq: int, a: int, cached: bool = True, impl: str = "sdpa"
) -> int:
    """In attention, where it can outgrow the MLP: eager attention with sinks, or latent
    attention, where without a cache (a checkpointed block) the latent and RoPE key stay too.
    0 for the others (their MLP's moment is the larger)."""
    if cfg.attention_sinks:
        return eager_transient(cfg, batch, seq, a, cached)
    if not is_latent(cfg):
        return eager_transient(cfg, batch, seq, a, cached) if impl == "eager" and not cached else 0
    # without a cache, or where a local layer's cache holds fewer positions than the chunk, the
    # new latent and RoPE key stay (the cache hands them back)
    local = local_layer_count(cfg) > 0
    kept = not cached or (local and cached_positions(cfg, True, seq) < seq)
    uncached = batch * seq * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * a if kept else 0
    windowed = local and seq >= cfg.sliding_window  # the mask from W keys on (model/attention)
    return latent_prefill_transient(cfg, batch, seq, a, impl, windowed) + uncached


def eager_transient(cfg: ModelConfig, batch: int, seq: int, a: int, cached: bool) -> int:
    """Eager attention without autograd (a checkpointed block's first forward, or a prefill
    with sinks), at its softmax: the block's input and the norm's output, the rotated q, the
    new k and v where no cache takes them (or a local layer's cache keeps fewer positions), the
    T x T boolean mask, GQA's k and v repeated per query head, the scores and their fp32 softmax
    (an fp32 copy of the scores first when they are not fp32: model/attention.py,
    eager_attention). With sinks (gpt-oss) the softmax is over the scores' cat with the sink
    column, one column more, and the scores stay beside it."""
    n, h = batch * seq, cfg.n_heads
    kept = not cached or (local_layer_count(cfg) and cached_positions(cfg, True, seq) < seq)
    size = 2 * n * cfg.d_model * a + n * cfg.q_dim * a + seq * seq
    size += 2 * n * cfg.kv_dim * a if kept else 0
    size += 2 * n * cfg.q_dim * a if cfg.n_kv_heads != h else 0
    columns = seq + 1 if cfg.attention_sinks else seq
    size += batch * h * seq * seq * a if cfg.attention_sinks else 0
    return size + batch * h * seq * columns * (a + 4 + (4 if a != 4 else 0))
