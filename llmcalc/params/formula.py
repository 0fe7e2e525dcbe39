"""Closed-form parameter counts, per component, written out with the config's numbers substituted.

Symbols: V vocab_size, P max_seq_len, d d_model, L n_layers, h n_heads, h_kv n_kv_heads,
d_h head_dim, f d_ff, o position_offset. A linear layer a -> b has a·b weights and b biases; an
RMSNorm over n has n weights, a LayerNorm 2·n with its bias (Zhang & Sennrich 2019; Ba et al.
2016), and either none without norm_affine.

Every figure is an `Expr` (expr.py), so what is printed is what is summed. No torch here.
relatives.py sets the famous 12·d² and the per-layer polynomial beside these terms.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    }
    return {name: Expr(name, str(value), value) for name, value in values.items()}


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
    "attn_o",
    "mlp",
    "block_norms",
    "qk_norm",
    "final_norm",
    "lm_head",
)
PER_LAYER = ("attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o", "mlp", "block_norms", "qk_norm")

# The summary groups shown to users (and their keys in --json).
GROUPS = {
    "token_embedding": ("token_embedding",),
    "position_embedding": ("position_embedding",),
    "attention": ("attn_q", "attn_k", "attn_v", "attn_qkv", "attn_o"),
    "mlp": ("mlp",),
    "norms": ("embedding_norm", "block_norms", "qk_norm", "final_norm"),
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
    mlp_matrices = const(3 if cfg.is_glu else 2)

    mlp = mlp_matrices * d * f
    if cfg.mlp_bias:  # up (and gate) biases are f wide, the down bias is d wide
        mlp = mlp + ((const(2) * f if cfg.is_glu else f) + d)

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
    return {
        "token_embedding": s["V"] * d,
        "position_embedding": rows * d if cfg.position == "learned" else ZERO,
        "embedding_norm": _with_width(width, d) if cfg.embedding_norm else ZERO,
        "attn_q": q,
        "attn_k": k,
        "attn_v": v,
        "attn_qkv": qkv,
        "attn_o": _linear(q_width, d, cfg.out_bias),
        "mlp": mlp,
        "block_norms": block_norms,
        "qk_norm": qk_norm,
        "final_norm": _with_width(width, d) if cfg.final_norm else ZERO,
        "lm_head": lm_head,
    }


@dataclass(frozen=True)
class ParamFormula:
    terms: dict[str, Expr]  # component -> closed form (per layer for PER_LAYER components)
    per_layer: Expr
    total: Expr  # embeddings + L·per_layer + final norm + head
    components: dict[str, int]  # component -> count over the whole model
    non_embedding: int  # total minus the vocabulary and position matrices (Kaplan et al. 2020)


def param_formula(cfg: ModelConfig) -> ParamFormula:
    terms = param_terms(cfg)
    per_layer = sum_exprs([terms[c] for c in PER_LAYER])
    layers = Expr("L", str(cfg.n_layers), cfg.n_layers) * per_layer
    outside = [terms[c] for c in COMPONENTS if c not in PER_LAYER]
    total = sum_exprs(outside[:2] + [layers] + outside[2:])
    components = {c: terms[c].value * (cfg.n_layers if c in PER_LAYER else 1) for c in COMPONENTS}
    embedding = components["token_embedding"] + components["position_embedding"]
    if not cfg.tie_embeddings:
        embedding += components["lm_head"]
    return ParamFormula(terms, per_layer, total, components, total.value - embedding)


def group_counts(components: dict[str, int]) -> dict[str, int]:
    return {group: sum(components[c] for c in parts) for group, parts in GROUPS.items()}


def weight_bytes(cfg: ModelConfig, bytes_per_param: int) -> int:
    return param_formula(cfg).total.value * bytes_per_param
