"""Mixture of experts and multi-head latent attention, from the config alone: which layers are MoE,
the resolved expert widths, and the checks on both field groups. Counts are arithmetic, never a
list n_layers long, so the closed forms stay instant at any depth. No torch here.

Layer i is MoE when it is in `moe_layers`, or, without that list, when i >= first_dense_layers and
(i + 1) % moe_every == 0: DeepSeek's first_k_dense_replace, Qwen's decoder_sparse_step and Llama 4's
interleave_moe_layer_step are each one of these. Other layers keep the dense MLP of width d_ff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmcalc.config.sizes import check_size
from llmcalc.errors import LLMCalcError, quote

if TYPE_CHECKING:
    from llmcalc.config.schema import ModelConfig

# softmax or sigmoid over every expert's logit, then the top-k (Mixtral, Qwen, DeepSeek), or the
# top-k logits first, then softmax or sigmoid over those k (gpt-oss, Llama 4)
ROUTER_SCORES = ("softmax", "sigmoid", "topk_softmax", "topk_sigmoid")

# MoE fields and their dense defaults: stating one on a dense config is an error (no effect)
_MOE_DEFAULTS = {
    "experts_per_token": None,
    "n_shared_experts": 0,
    "d_ff_expert": None,
    "d_ff_shared": None,
    "shared_expert_gate": False,
    "first_dense_layers": 0,
    "moe_every": 1,
    "moe_layers": None,
    "router_score": "softmax",
    "normalize_topk": False,
    "routed_scaling": None,
    "router_bias": False,
    "expert_bias": False,
    "score_correction_bias": False,
}
LATENT_SIZES = ("q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")


def dormant_fields(cfg: ModelConfig) -> list[str]:
    """The fields of a feature this config does not use (every MoE field but n_experts on a
    dense model, the latent sizes without kv_lora_rank), all at their defaults."""
    names = [] if is_moe(cfg) else list(_MOE_DEFAULTS)
    return names + ([] if is_latent(cfg) else list(LATENT_SIZES))


def is_moe(cfg: ModelConfig) -> bool:
    return cfg.n_experts > 0


def is_latent(cfg: ModelConfig) -> bool:
    """Multi-head latent attention (DeepSeek-V2, section 2.1)."""
    return cfg.kv_lora_rank is not None


def is_moe_layer(cfg: ModelConfig, layer: int) -> bool:
    if not cfg.n_experts:
        return False
    if cfg.moe_layers is not None:
        return layer in cfg.moe_layers
    return layer >= cfg.first_dense_layers and (layer + 1) % cfg.moe_every == 0


def moe_layer_count(cfg: ModelConfig) -> int:
    """MoE layers: the i in [first_dense_layers, L) with (i + 1) a multiple of moe_every."""
    if not cfg.n_experts:
        return 0
    if cfg.moe_layers is not None:
        return len(cfg.moe_layers)
    return cfg.n_layers // cfg.moe_every - cfg.first_dense_layers // cfg.moe_every


def dense_layer_count(cfg: ModelConfig) -> int:
    return cfg.n_layers - moe_layer_count(cfg)


def cached_sizes(cfg: ModelConfig) -> tuple[int, int, int]:
    """(heads, key features, value features) a KV cache holds per position and layer: the
    n_kv_heads keys and values, or MLA's latent and its one shared RoPE key head."""
    if is_latent(cfg):
        return 1, cfg.kv_lora_rank, cfg.qk_rope_head_dim
    return cfg.n_kv_heads, cfg.head_dim, cfg.head_dim


def check_experts(cfg: ModelConfig) -> tuple[int | None, int | None]:
    """Check the MoE fields; return the resolved (d_ff_expert, d_ff_shared) with d_ff resolved
    (None for a dense config)."""
    where, experts = cfg.origin, cfg.n_experts
    check_size(where, "n_experts", experts, least=0)
    if cfg.router_score not in ROUTER_SCORES:
        raise LLMCalcError(
            f"{where}: field 'router_score' = {quote(cfg.router_score)}: allowed values are "
            f"{', '.join(ROUTER_SCORES)}"
        )
    if not experts:
        if cfg.n_shared_experts:
            raise LLMCalcError(
                f"{where}: field 'n_shared_experts' = {quote(cfg.n_shared_experts)} without "
                "routed experts: shared experts sit beside routed ones; set n_experts >= 1, or "
                "widen d_ff for a dense model"
            )
        for name, default in _MOE_DEFAULTS.items():
            if getattr(cfg, name) != default:
                raise LLMCalcError(
                    f"{where}: field {name!r} = {quote(getattr(cfg, name))} has no effect with "
                    "n_experts = 0 (a dense model); set n_experts or remove it"
                )
        return None, None
    top_k = cfg.experts_per_token
    if top_k is None:
        raise LLMCalcError(
            f"{where}: field 'experts_per_token' is required with n_experts = {experts}: the "
            f"top-k, in 1 .. {experts}"
        )
    if not 1 <= top_k <= experts:
        raise LLMCalcError(
            f"{where}: field 'experts_per_token' = {quote(top_k)}: the top-k must be in "
            f"1 .. n_experts = {experts}"
        )
    check_size(where, "n_shared_experts", cfg.n_shared_experts, least=0)
    check_size(where, "first_dense_layers", cfg.first_dense_layers, least=0)
    check_size(where, "moe_every", cfg.moe_every)
    for name in ("d_ff_expert", "d_ff_shared"):
        if getattr(cfg, name) is not None:
            check_size(where, name, getattr(cfg, name))
    if cfg.routed_scaling is not None and not cfg.routed_scaling > 0:
        raise LLMCalcError(
            f"{where}: field 'routed_scaling' = {quote(cfg.routed_scaling)}: must be positive"
        )
    _check_moe_layers(cfg)
    if not cfg.n_shared_experts:
        for name in ("d_ff_shared", "shared_expert_gate"):
            if getattr(cfg, name) not in (None, False):
                raise LLMCalcError(
                    f"{where}: field {name!r} = {quote(getattr(cfg, name))} has no effect with "
                    "n_shared_experts = 0; set n_shared_experts or remove it"
                )
    if cfg.normalize_topk and cfg.router_score == "topk_softmax":
        raise LLMCalcError(
            f"{where}: field 'normalize_topk' = true has no effect with router_score "
            "'topk_softmax': a softmax over the k chosen logits already sums to 1; remove it"
        )
    if cfg.score_correction_bias and cfg.router_score != "sigmoid":
        raise LLMCalcError(
            f"{where}: field 'score_correction_bias' = true biases the choice among sigmoid "
            f"scores (DeepSeek-V3); it needs router_score 'sigmoid', not "
            f"{quote(cfg.router_score)}"
        )
    expert = cfg.d_ff_expert if cfg.d_ff_expert is not None else cfg.d_ff
    shared = cfg.d_ff_shared
    if shared is None and cfg.n_shared_experts:
        shared = cfg.n_shared_experts * expert
    return expert, shared


def _check_moe_layers(cfg: ModelConfig) -> None:
    where, layers = cfg.origin, cfg.moe_layers
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < cfg.n_layers]
        if bad or not layers or len(set(layers)) != len(layers):
            raise LLMCalcError(
                f"{where}: field 'moe_layers' = {quote(layers)}: indices of distinct layers, "
                f"at least one, each in 0 .. {cfg.n_layers - 1}"
            )
        if cfg.first_dense_layers or cfg.moe_every != 1:
            raise LLMCalcError(
                f"{where}: fields 'moe_layers' and 'first_dense_layers'/'moe_every' both say "
                "which layers are MoE; give one"
            )
    elif moe_layer_count(cfg) == 0:
        raise LLMCalcError(
            f"{where}: no layer is MoE: first_dense_layers = {cfg.first_dense_layers} and "
            f"moe_every = {cfg.moe_every} leave none of the {cfg.n_layers} layers "
            "(layer i is MoE when i >= first_dense_layers and (i + 1) % moe_every == 0)"
        )


def check_latent(cfg: ModelConfig) -> int | None:
    """Check the latent-attention fields; return MLA's query/key head size (nope + rope), or None
    without MLA."""
    where = cfg.origin
    if not is_latent(cfg):
        for name in LATENT_SIZES:
            if getattr(cfg, name) is not None:
                raise LLMCalcError(
                    f"{where}: field {name!r} = {quote(getattr(cfg, name))} is a latent-attention "
                    "size and has no effect without kv_lora_rank; set kv_lora_rank or remove it"
                )
        return None
    for name in ("kv_lora_rank", *LATENT_SIZES):
        value = getattr(cfg, name)
        if value is None and name != "q_lora_rank":
            raise LLMCalcError(
                f"{where}: field {name!r} is required with kv_lora_rank (multi-head latent "
                "attention needs kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim)"
            )
        if value is not None:
            check_size(where, name, value)
    nope, rope = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
    if rope % 2:
        raise LLMCalcError(
            f"{where}: field 'qk_rope_head_dim' = {rope}: RoPE rotates features in pairs; "
            "it must be even"
        )
    compressed = cfg.n_heads * (nope + cfg.v_head_dim)
    if cfg.kv_lora_rank >= min(cfg.d_model, compressed):
        raise LLMCalcError(
            f"{where}: field 'kv_lora_rank' = {cfg.kv_lora_rank}: the latent must be smaller than "
            f"d_model = {cfg.d_model} and than the keys and values it compresses, n_heads·"
            f"(qk_nope_head_dim + v_head_dim) = {compressed}"
        )
    if cfg.q_lora_rank is not None and cfg.q_lora_rank >= cfg.d_model:
        raise LLMCalcError(
            f"{where}: field 'q_lora_rank' = {cfg.q_lora_rank}: the query latent must be "
            f"smaller than d_model = {cfg.d_model} (leave it out for one q projection)"
        )
    if cfg.n_kv_heads not in (None, cfg.n_heads):
        raise LLMCalcError(
            f"{where}: field 'n_kv_heads' = {quote(cfg.n_kv_heads)}: latent attention "
            f"decompresses keys and values for every query head; n_kv_heads must be n_heads = "
            f"{cfg.n_heads} or left out (the cache holds one latent, not kv heads)"
        )
    clashes = {
        "head_dim": cfg.head_dim not in (None, nope + rope),
        "position": cfg.position != "rope",
        "rope_fraction": cfg.rope_fraction != 1.0,
        "fused_qkv": cfg.fused_qkv,
        "qk_norm": cfg.qk_norm != "none",
    }
    for name, clash in clashes.items():
        if clash:
            raise LLMCalcError(
                f"{where}: field {name!r} = {quote(getattr(cfg, name))} does not apply to "
                "latent attention (kv_lora_rank): its head sizes are qk_nope_head_dim + "
                "qk_rope_head_dim for q and k, v_head_dim for v, every head decompressed from "
                "the latent, RoPE on the qk_rope_head_dim part"
            )
    return nope + rope
