"""Closed-form parameter counts, per component, written out with the config's numbers substituted.

Symbols: V vocab_size, P max_seq_len, d d_model, L n_layers, h n_heads, h_kv n_kv_heads,
d_h head_dim, f d_ff, o position_offset; with experts E n_experts, k experts_per_token, f_e
d_ff_expert, f_s d_ff_shared, L_moe and L_dense the MoE and dense layers; with latent attention
r_q q_lora_rank, r_kv kv_lora_rank, n qk_nope_head_dim, r qk_rope_head_dim, d_v v_head_dim.
A linear layer a -> b has a·b weights and b biases; an RMSNorm over n has n weights, a LayerNorm
2·n with its bias (Zhang & Sennrich 2019; Ba et al. 2016), and either none without norm_affine.

Every figure is an `Expr` (expr.py), so what is printed is what is summed. No torch here.
relatives.py sets the famous 12·d² and the per-layer polynomial beside these terms.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.experts import dense_layer_count, is_latent, moe_layer_count
from llmcalc.config.schema import ModelConfig
from llmcalc.params.expr import ZERO, Expr, const, grouped, sum_exprs


def symbols(cfg: ModelConfig) -> dict[str, Expr]:
    values = {
        "V": cfg.vocab_size,
        "P": cfg.max_seq_len,
        "d": cfg.d_model,
        "L": cfg.n_layers,
        "h": cfg.n_heads,
        "h_kv": cfg.n_kv_heads,
        "d_h": cfg.head_dim,
        "f": cfg.d_ff,
        "o": cfg.position_offset,
        "E": cfg.n_experts,
        "k": cfg.experts_per_token,
        "f_e": cfg.d_ff_expert,
        "f_s": cfg.d_ff_shared,
        "r_q": cfg.q_lora_rank,
        "r_kv": cfg.kv_lora_rank,
        "n": cfg.qk_nope_head_dim,
        "r": cfg.qk_rope_head_dim,
        "d_v": cfg.v_head_dim,
    }
    return {
        name: Expr(name, str(value), value) for name, value in values.items() if value is not None
    }


# --- the terms -------------------------------------------------------------------------------

# Fine-grained components: the unit that `check` compares formula against counted.
COMPONENTS = (
    "token_embedding",
    "position_embedding",
    "embedding_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_q_a",
    "attn_q_b",
    "attn_kv_a",
    "attn_kv_b",
    "attn_o",
    "attn_sinks",
    "mlp",
    "router",
    "experts",
    "shared_experts",
    "block_norms",
    "qk_norm",
    "latent_norms",
    "final_norm",
    "lm_head",
)
ATTENTION = ("attn_q", "attn_k", "attn_v", "attn_qkv", "attn_q_a", "attn_q_b", "attn_kv_a")
ATTENTION += ("attn_kv_b", "attn_o", "attn_sinks")
MOE = ("router", "experts", "shared_experts")  # in MoE layers only; "mlp" in dense layers only
PER_LAYER = (*ATTENTION, "mlp", *MOE, "block_norms", "qk_norm", "latent_norms")

# The summary groups shown to users (and their keys in --json).
GROUPS = {
    "token_embedding": ("token_embedding",),
    "position_embedding": ("position_embedding",),
    "attention": ATTENTION,
    "mlp": ("mlp",),
    "router": ("router",),
    "experts": ("experts",),
    "shared_experts": ("shared_experts",),
    "norms": ("embedding_norm", "block_norms", "qk_norm", "latent_norms", "final_norm"),
    "lm_head": ("lm_head",),
}


def norms_per_layer(cfg: ModelConfig) -> int:
    """How many d-sized norms one block has (see model.Block for the layouts)."""
    per_branch = 1 if cfg.block == "parallel_shared_norm" else 2
    count = 0
    if cfg.norm_position in ("pre", "sandwich"):
        count += per_branch  # input norms
    if cfg.norm_position in ("sandwich", "output"):
        count += per_branch  # output norms
    if cfg.norm_position == "post":
        count += 2 if cfg.block == "serial" else 1  # after each residual add
    return count


def norm_width(cfg: ModelConfig) -> Expr:
    """Parameters per normalised feature: 2 for LayerNorm with bias, else 1; 0 without
    norm_affine (a norm with neither weight nor bias)."""
    if not cfg.norm_affine:
        return ZERO
    return const(2 if cfg.norm == "layernorm" and cfg.norm_bias else 1)


def _linear(inputs: Expr, outputs: Expr, bias: bool) -> Expr:
    weight = inputs * outputs
    return weight + outputs if bias else weight


def _with_width(width: Expr, expr: Expr) -> Expr:
    if width.value == 0:
        return ZERO
    return expr if width.value == 1 else width * expr


def param_terms(cfg: ModelConfig) -> dict[str, Expr]:
    """Component -> closed form. Per-layer components are for one layer."""
    s = symbols(cfg)
    d, f = s["d"], s["f"]
    q_width = grouped(s["h"] * s["d_h"])
    kv_width = grouped(s["h_kv"] * s["d_h"])
    width = norm_width(cfg)
    mlp = _mlp(cfg, d, f)

    n_norms = norms_per_layer(cfg)
    block_norms = _with_width(width, const(n_norms) * d) if n_norms else ZERO
    if cfg.qk_norm == "head":
        qk_norm = _with_width(width, const(2) * s["d_h"])
    elif cfg.qk_norm == "full":
        qk_norm = _with_width(width, q_width + kv_width)
    elif cfg.qk_norm == "per_head":  # a d_h-wide weight for each head, no bias
        qk_norm = q_width + kv_width
    else:
        qk_norm = ZERO

    if cfg.tie_embeddings:
        lm_head = s["V"] if cfg.lm_head_bias else ZERO  # the weight is the token embedding
    else:
        lm_head = s["V"] * d + s["V"] if cfg.lm_head_bias else s["V"] * d

    rows = grouped(s["P"] + s["o"]) if cfg.position_offset else s["P"]
    q, k, v = (
        _linear(d, q_width, cfg.qkv_bias),
        _linear(d, kv_width, cfg.qkv_bias),
        _linear(d, kv_width, cfg.qkv_bias),
    )
    # fused: one matrix of q + 2·kv rows, the same count as the three
    qkv_rows = s["h"] * s["d_h"] + const(2) * s["h_kv"] * s["d_h"]
    qkv = _linear(d, qkv_rows, cfg.qkv_bias)
    if cfg.fused_qkv:
        q = k = v = ZERO
    else:
        qkv = ZERO
    attention = dict.fromkeys(ATTENTION, ZERO) | {"attn_q": q, "attn_k": k, "attn_v": v}
    attention["attn_qkv"] = qkv
    attention["attn_o"] = _linear(q_width, d, cfg.out_bias)
    latent_norms = ZERO
    if is_latent(cfg):
        attention, latent_norms = _latent_terms(cfg, s, width)
    return {
        "token_embedding": s["V"] * d,
        "position_embedding": rows * d if cfg.position == "learned" else ZERO,
        "embedding_norm": _with_width(width, d) if cfg.embedding_norm else ZERO,
        **attention,
        "attn_sinks": s["h"] if cfg.attention_sinks else ZERO,  # one logit per head
        "mlp": mlp if dense_layer_count(cfg) else ZERO,
        **_expert_terms(cfg, s),
        "block_norms": block_norms,
        "qk_norm": qk_norm,
        "latent_norms": latent_norms,
        "final_norm": _with_width(width, d) if cfg.final_norm else ZERO,
        "lm_head": lm_head,
    }


def _mlp(cfg: ModelConfig, d: Expr, f: Expr) -> Expr:
    """A dense MLP of width f: 3 matrices with a GLU (gate, up, down), else 2; with mlp_bias the
    up (and gate) biases are f wide, the down bias d wide."""
    mlp = const(3 if cfg.is_glu else 2) * d * f
    if cfg.mlp_bias:
        mlp = mlp + ((const(2) * f if cfg.is_glu else f) + d)
    return mlp


def _expert_terms(cfg: ModelConfig, s: dict[str, Expr]) -> dict[str, Expr]:
    """One MoE layer: the router d -> E, E routed experts of width f_e (each a GLU MLP's
    matrices, with biases under expert_bias), and the shared experts as one MLP of width f_s (and
    its d -> 1 gate). Zero in a dense model."""
    if not cfg.n_experts:
        return {"router": ZERO, "experts": ZERO, "shared_experts": ZERO}
    d, experts = s["d"], s["E"]
    expert = const(3 if cfg.is_glu else 2) * d * s["f_e"]
    if cfg.expert_bias:
        expert = expert + ((const(2) * s["f_e"] if cfg.is_glu else s["f_e"]) + d)
    shared = ZERO
    if cfg.n_shared_experts:
        shared = _mlp(cfg, d, s["f_s"])
        if cfg.shared_expert_gate:
            shared = shared + d
    return {
        "router": _linear(d, experts, cfg.router_bias),
        "experts": experts * expert,
        "shared_experts": shared,
    }


def _latent_terms(
    cfg: ModelConfig, s: dict[str, Expr], width: Expr
) -> tuple[dict[str, Expr], Expr]:
    """Multi-head latent attention (DeepSeek-V2, section 2.1): q through the rank-r_q latent
    (or one d -> h·(n + r) matrix), the kv latent plus the shared RoPE key head d -> r_kv + r,
    its decompression r_kv -> h·(n + d_v), and o from h·d_v; a norm over each latent. qkv_bias
    puts biases on q_a and kv_a only, as attention_bias does in transformers' DeepSeek."""
    d, h = s["d"], s["h"]
    q_head = s["n"] + s["r"]
    terms = dict.fromkeys(ATTENTION, ZERO)
    norms = _with_width(width, s["r_kv"])
    if cfg.q_lora_rank is None:
        terms["attn_q"] = h * q_head * d  # no bias: qkv_bias is on the latents' projections
    else:
        terms["attn_q_a"] = _linear(d, s["r_q"], cfg.qkv_bias)
        terms["attn_q_b"] = s["r_q"] * h * q_head
        norms = _with_width(width, s["r_q"]) + norms
    terms["attn_kv_a"] = _linear(d, s["r_kv"] + s["r"], cfg.qkv_bias)
    terms["attn_kv_b"] = s["r_kv"] * h * (s["n"] + s["d_v"])
    terms["attn_o"] = _linear(h * s["d_v"], d, cfg.out_bias)
    return terms, norms


@dataclass(frozen=True)
class LayerKind:
    symbol: str  # L, L_dense or L_moe
    label: str  # how the total names one such layer
    count: int
    layer: Expr  # one such layer


@dataclass(frozen=True)
class ParamFormula:
    terms: dict[str, Expr]  # component -> closed form (per layer for PER_LAYER components)
    per_layer: Expr  # one layer: a dense one, or in a model with experts an MoE one
    total: Expr  # embeddings + L·per_layer (or L_dense·dense + L_moe·MoE) + final norm + head
    components: dict[str, int]  # component -> count over the whole model
    non_embedding: int  # total minus the vocabulary and position matrices (Kaplan et al. 2020)
    dense_layer: Expr  # one dense layer (attention, norms, MLP)
    active: int  # parameters one token uses: k of the E routed experts in each MoE layer
    active_without_input_embedding: int  # the same without the token (and position) table
    layer_kinds: list[LayerKind]  # L of one kind, or L_dense dense and L_moe MoE layers

    @property
    def inactive(self) -> int:
        return self.total.value - self.active


def layer_multiplier(cfg: ModelConfig, component: str) -> int:
    """How many layers have this per-layer component: the MLP only dense layers, the router and
    experts only MoE layers, everything else every layer."""
    if component == "mlp":
        return dense_layer_count(cfg)
    return moe_layer_count(cfg) if component in MOE else cfg.n_layers


def param_formula(cfg: ModelConfig) -> ParamFormula:
    terms = param_terms(cfg)
    dense_layer = sum_exprs([terms[c] for c in PER_LAYER if c not in MOE])
    n_moe, n_dense = moe_layer_count(cfg), dense_layer_count(cfg)
    if n_moe:
        moe_layer = sum_exprs([terms[c] for c in PER_LAYER if c != "mlp"])
        kinds = [LayerKind("L_moe", "MoE layer", n_moe, moe_layer)]
        if n_dense:
            kinds.insert(0, LayerKind("L_dense", "dense layer", n_dense, dense_layer))
        per_layer = moe_layer
    else:
        kinds = [LayerKind("L", "per layer", cfg.n_layers, dense_layer)]
        per_layer = dense_layer
    layers = [Expr(kind.symbol, str(kind.count), kind.count) * kind.layer for kind in kinds]
    outside = [terms[c] for c in COMPONENTS if c not in PER_LAYER]
    total = sum_exprs(outside[:2] + layers + outside[2:])
    components = {
        c: terms[c].value * (layer_multiplier(cfg, c) if c in PER_LAYER else 1) for c in COMPONENTS
    }
    embedding = components["token_embedding"] + components["position_embedding"]
    if not cfg.tie_embeddings:
        embedding += components["lm_head"]
    active = total.value
    if n_moe:  # each token passes k of the E experts (all of their biases included)
        per_expert = terms["experts"].value // cfg.n_experts
        active -= n_moe * (cfg.n_experts - cfg.experts_per_token) * per_expert
    input_table = components["position_embedding"]
    if not cfg.tie_embeddings:  # a tied table is also the head, which every token uses
        input_table += components["token_embedding"]
    return ParamFormula(
        terms,
        per_layer,
        total,
        components,
        total.value - embedding,
        dense_layer,
        active,
        active - input_table,
        kinds,
    )


# components only some models have: listed only where they are not zero
FEATURE_COMPONENTS = ("attn_q_a", "attn_q_b", "attn_kv_a", "attn_kv_b", "attn_sinks", *MOE)
FEATURE_COMPONENTS += ("latent_norms",)


def shown_components(components: dict[str, int]) -> dict[str, int]:
    return {c: n for c, n in components.items() if n or c not in FEATURE_COMPONENTS}


def group_counts(components: dict[str, int]) -> dict[str, int]:
    """Group -> count; the expert groups only where the model has experts."""
    counts = {group: sum(components[c] for c in parts) for group, parts in GROUPS.items()}
    if not counts["experts"]:
        for group in MOE:
            del counts[group]
    return counts


def weight_bytes(cfg: ModelConfig, bytes_per_param: int) -> int:
    return param_formula(cfg).total.value * bytes_per_param
