"""Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434, section 2.1) in memory: what its KV
cache holds, two ways. No torch here.

    latent        per position and layer kv_lora_rank + qk_rope_head_dim elements: the normed
                  latent and the one RoPE key head every query head shares; what DeepSeek's
                  inference code, vLLM, SGLang and transformers 5 cache (and llmcalc's KVCache)
    decompressed  n_heads·(qk_nope_head_dim + qk_rope_head_dim) key and n_heads·v_head_dim value
                  elements: the keys and values after kv_b_proj, what transformers 4 and naive
                  implementations cache
"""

from __future__ import annotations

from collections.abc import Callable

from llmcalc.config.experts import cached_sizes, is_latent, is_moe
from llmcalc.config.schema import ModelConfig
from llmcalc.memory.activations import Saved, _norm, attention_impl

KV_FORMS = ("latent", "decompressed")


def kv_sizes(cfg: ModelConfig, form: str = "latent") -> tuple[int, int, int]:
    """(heads, key features, value features) per cached position and layer. Without MLA both
    forms are the n_kv_heads keys and values."""
    if form == "decompressed" and is_latent(cfg):
        return cfg.n_heads, cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    return cached_sizes(cfg)


def kv_elements(cfg: ModelConfig, form: str = "latent") -> int:
    """Elements cached per token and layer."""
    heads, key, value = kv_sizes(cfg, form)
    return heads * (key + value)


def latent_refusal(cfg: ModelConfig, option: str) -> str:
    """Why --mha, --gqa N and --mqa do not apply to an MLA model, with both of its figures."""
    h, nope, rope, v = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    return (
        f"{option}: {cfg.name} uses multi-head latent attention (kv_lora_rank), which caches a "
        f"latent, not per-head keys and values: kv_lora_rank + qk_rope_head_dim = "
        f"{cfg.kv_lora_rank} + {rope} = {kv_elements(cfg):,} elements per token and layer "
        f"(decompressed, n_heads·(qk_nope_head_dim + qk_rope_head_dim + v_head_dim) = "
        f"{h}·({nope} + {rope} + {v}) = {kv_elements(cfg, 'decompressed'):,}); `llmcalc memory` "
        "without it shows both"
    )


def latent_attention_sizes(
    cfg: ModelConfig,
    norm: Callable[[int], list[int]],
    linear: Callable[[int, int, bool], list[int]],
) -> list[int]:
    """model/latent_attention.py's tensors in order: q_proj, or q_a_proj, q_a_norm and q_b_proj;
    kv_a_proj, kv_a_norm, kv_b_proj; o_proj."""
    d, h = cfg.d_model, cfg.n_heads
    if cfg.q_lora_rank is None:
        sizes = linear(d, cfg.q_dim, False)  # no bias on q_proj (transformers)
    else:
        sizes = linear(d, cfg.q_lora_rank, cfg.qkv_bias) + norm(cfg.q_lora_rank)
        sizes += linear(cfg.q_lora_rank, cfg.q_dim, False)
    sizes += linear(d, cfg.kv_lora_rank + cfg.qk_rope_head_dim, cfg.qkv_bias)
    sizes += norm(cfg.kv_lora_rank)
    sizes += linear(cfg.kv_lora_rank, h * (cfg.qk_nope_head_dim + cfg.v_head_dim), False)
    return sizes + linear(h * cfg.v_head_dim, d, cfg.out_bias)


def latent_takes_math_path(cfg: ModelConfig, impl: str) -> bool:
    """SDPA's math path: asked for, or SDPA on a query/key head size other than v_head_dim, which
    torch's fused CPU kernel does not take (it needs one head size for q, k and v)."""
    return impl == "math" or (
        impl == "sdpa" and cfg.v_head_dim != cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    )


def latent_attention_saved(
    saved: Saved, cfg: ModelConfig, p: str, batch: int, seq: int, a: int, impl: str, local: bool
) -> None:
    """What model/latent_attention.py keeps (its input is kept by the caller): q_a_proj's output
    (the q norm's input) and the q norm; kv_a_proj's output, of which the latent is a view (kept
    whole where the norm keeps its input itself, in fp32) and the kv norm; the normed latent
    (kv_b_proj's input); q and k as the cats of their no-RoPE and RoPE parts; then attention as
    activations.py's dense one does, with H·(nope + rope) for q and k and H·v_head_dim for v."""
    n, h = batch * seq, cfg.n_heads
    d_qk, d_v = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    if cfg.q_lora_rank is not None:
        _norm(saved, cfg, f"{p}.q_a_norm", f"{p}.q_a_proj", n, cfg.q_lora_rank, a)
        saved.add(f"{p}.q_a_norm.out", n * cfg.q_lora_rank * a)
    kv_a = (f"{p}.kv_a_proj", n * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * a)
    saved.views[f"{p}.latent"] = kv_a
    _norm(saved, cfg, f"{p}.kv_a_norm", f"{p}.latent", n, cfg.kv_lora_rank, a)
    saved.add(f"{p}.kv_a_norm.out", n * cfg.kv_lora_rank * a)
    q_bytes, v_bytes = n * h * d_qk * a, n * h * d_v * a
    scores = batch * h * seq * seq
    if latent_takes_math_path(cfg, impl):  # fp32 scaled q and k, fp32 v and probabilities
        saved.add(f"{p}.q_scaled", n * h * d_qk * 4)
        saved.add(f"{p}.k_scaled", n * h * d_qk * 4)
        saved.add(f"{p}.v_fp32", n * h * d_v * 4)
        saved.add(f"{p}.probs", scores * 4)
        saved.add(f"{p}.out_copy", v_bytes)
        return
    saved.add(f"{p}.q_cat", q_bytes)
    saved.add(f"{p}.k_cat", q_bytes)
    if impl == "eager":  # v, a strided view of kv_b's output, copied by the matmul
        saved.add(f"{p}.v_copy", v_bytes)
        # the softmax in fp32 (gpt-oss's sinks: one more column), then cast back
        saved.add(f"{p}.probs_fp32", batch * h * seq * (seq + cfg.attention_sinks) * 4)
        if a != 4:
            saved.add(f"{p}.probs", scores * a)
        saved.add(f"{p}.causal_mask", seq * seq)
        saved.add(f"{p}.out_copy", v_bytes)
        return
    # fused SDPA: v is a view of kv_b's output, which it keeps whole
    saved.add(f"{p}.kv_b_proj", n * h * (cfg.qk_nope_head_dim + d_v) * a)
    saved.add(f"{p}.out", v_bytes)
    saved.add(f"{p}.logsumexp", scores // seq * 4)
    if local and seq >= cfg.sliding_window:  # the window's mask, additive in q's dtype
        saved.add(f"{p}.window_mask", batch * seq * seq * a)
    saved.add(f"{p}.out_copy", v_bytes)  # (B, H, T, d_v) -> (B, T, H·d_v)


def latent_prefill_transient(
    cfg: ModelConfig, batch: int, seq: int, a: int, impl: str = "sdpa", windowed: bool = False
) -> int:
    """Latent attention's largest set of live tensors in a prefill (the cache then holds the
    latent and the RoPE key). Through the fused kernel, at o_proj: the block's input and the
    norm's output, q's projection (q_nope a view of it), the rotated q_rope, kv_b's output
    (k_nope and v views of it), the cats q and k, the attention's output, its copy as
    (B, T, H·v_head_dim) and o_proj's output, or, where a window bites (`windowed`), at the
    kernel with its masks. Through SDPA's math path (latent_math_transient) the same up to the
    cats, then the math path's own."""
    n, h = batch * seq, cfg.n_heads
    d_qk, d_v = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    before = 2 * n * cfg.d_model * a
    before += n * h * (d_qk + cfg.qk_rope_head_dim + cfg.qk_nope_head_dim + d_v + 2 * d_qk) * a
    after = n * cfg.d_model * a + 2 * n * h * d_v * a
    if not latent_takes_math_path(cfg, impl):
        if windowed:  # at the kernel: the window's boolean mask, made additive per sequence
            mask = seq * seq + batch * seq * seq * a
            after = max(after, mask + n * h * d_v * a + batch * h * seq * 4)
        return before + after
    return before + max(after, latent_math_transient(cfg, batch, seq, a, impl))


def math_mask_bytes(seq: int, impl: str) -> int:
    """The causal mask SDPA's math path holds: made additive in fp32 from is_causal (SDPA), or
    the model's boolean one (the math path asked for)."""
    return seq * seq * (1 if impl == "math" else 4)


def latent_math_transient(cfg: ModelConfig, batch: int, seq: int, a: int, impl: str) -> int:
    """Inside SDPA's math path without autograd (torch's CPU kernel, causal): fp32 copies of q, k
    and v where they are not fp32, q scaled, the causal mask made additive in fp32 (T x T); then
    at the largest of: k scaled beside the scores (B·H·T·T, fp32), the scores and their masked
    sum, or the probabilities (fp32, and cast back where not fp32) beside v made contiguous and
    the product (then cast back)."""
    n, h = batch * seq, cfg.n_heads
    q = n * h * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim) * 4
    v = n * h * cfg.v_head_dim * 4
    scores = batch * h * seq * seq * 4
    held = q + math_mask_bytes(seq, impl) + (2 * q + v if a != 4 else 0)
    cast = batch * h * seq * seq * a if a != 4 else 0
    # v, a view of kv_b's output, is copied for the batched product unless its batch and head
    # dimensions merge (one sequence, one head or one token); the product is cast back last
    copied = batch > 1 and h > 1 and seq > 1
    last = max(v if copied else 0, v * a // 4 if a != 4 else 0)
    return held + max(q + scores, 2 * scores, scores + cast + v + last)


def unmodelled(cfg: ModelConfig, checkpointing: str = "none", impl: str = "sdpa") -> str | None:
    """What of this config's memory the closed forms do not model yet (None: all of it): the
    prefill (and a checkpointed block's forward) of windowed latent attention through SDPA's
    math path, which latent attention takes on the CPU when v_head_dim differs from q's and
    k's head size (its mask is not the causal one the math path makes), and the eager
    attention that sinks force on it (their T x T transients)."""
    windowed = cfg.sliding_window is not None
    if is_latent(cfg) and latent_takes_math_path(cfg, "sdpa") and windowed:
        d_qk = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        return (
            "the prefill of windowed latent attention through SDPA's math path (v_head_dim "
            f"{cfg.v_head_dim} differs from qk_nope_head_dim + qk_rope_head_dim = {d_qk}, and "
            "torch's fused CPU kernel needs one head size)"
        )
    if cfg.attention_sinks and is_latent(cfg):
        return "the prefill of latent attention with sinks (eager attention's T x T transients)"
    impl = attention_impl(cfg, impl)  # soft-capped scores run eager
    math = impl == "math" or cfg.position == "alibi"
    t_by_t = impl == "eager" if is_latent(cfg) else (impl == "eager" or math)
    if (
        checkpointing == "full"
        and (is_moe(cfg) or is_latent(cfg))
        and t_by_t
        and not cfg.attention_sinks
    ):
        return (
            f"the checkpointed forward of a block with {impl} attention (its T x T transients, "
            "without autograd)"
        )
    return None


# what the head keeps from the blocks' end on: not alive while the last block runs
HEAD_AFTER_BLOCKS = ("final_norm", "last_layer_out", "logits_tanh", "log_softmax", "loss.")


def math_path_forward_moment(
    cfg: ModelConfig, batch: int, seq: int, a: int, impl: str, layer_saved: dict[str, int]
) -> int:
    """Latent attention through SDPA's math path in a training forward, as the masked scores
    are made: beyond everything kept before this layer, its own tensors kept so far (up to
    k scaled) and those alive but not kept: the layer's input where its norm keeps a copy,
    q's projection, the rotated q_rope and k_rope, kv_b's output, the cats q and k, fp32
    copies of q, k and v where they are not fp32, the additive causal mask and the scores
    twice (the product and the masked sum)."""
    n, h = batch * seq, cfg.n_heads
    d_qk, d_v = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    names = list(layer_saved)
    so_far = sum(layer_saved[k] for k in names[: names.index("attn.k_scaled") + 1])
    stream_saved = (
        "x" in layer_saved or cfg.norm == "layernorm" and cfg.layernorm_compute == "native"
    )
    alive = 0 if stream_saved else n * cfg.d_model * a
    alive += n * h * (d_qk + cfg.qk_rope_head_dim + cfg.qk_nope_head_dim + d_v + 2 * d_qk) * a
    alive += n * cfg.qk_rope_head_dim * a
    if a != 4:
        alive += n * h * (2 * d_qk + d_v) * 4
    return so_far + alive + math_mask_bytes(seq, impl) + 2 * batch * h * seq * seq * 4
