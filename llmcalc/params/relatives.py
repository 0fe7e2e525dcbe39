"""12·d² and its exact relatives: the classic per-layer estimate beside the exact count, the
per-layer count reduced to a polynomial in d (12·d² + 13·d for GPT-2), and the forms with every
block bias on and off. Derived independently of formula.param_terms; `check` compares the two.
No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmcalc.config.schema import ModelConfig
from llmcalc.params.expr import Expr
from llmcalc.params.formula import norm_width, norms_per_layer, param_formula


@dataclass(frozen=True)
class TwelveD2:
    approx_per_layer: int  # 12·d²
    exact_per_layer: int
    rel_error: float  # (12·d² − exact) / exact
    attn_matrices_d2: float  # attention matrices in units of d²
    mlp_matrices_d2: float  # an MoE layer's: router, every expert and the shared experts
    rest: int  # biases, norms and sinks in one layer
    exact_when: str
    here: str  # what this layer's matrices are, in units of d²


def twelve_d2(cfg: ModelConfig) -> TwelveD2:
    """The classic per-layer estimate 12·d² (Kaplan et al. 2020, section 2.1, with d_attn = d and
    d_ff = 4d): 4·d² of attention matrices plus 8·d² of MLP matrices. In a model with experts
    the layer compared is an MoE layer, whose MLP is E experts (k of them used per token)."""
    d, d2, matrices = cfg.d_model, cfg.d_model**2, 3 if cfg.is_glu else 2
    attn = _attention_matrices(cfg)
    exact = param_formula(cfg).per_layer.value
    ideal_ff = "8/3·d" if cfg.is_glu else "4·d"
    exact_when = (
        f"12·d² counts the matrices exactly when attention is MHA with h·d_h = d (4·d²) and "
        f"d_ff = {ideal_ff} for a {matrices}-matrix MLP (8·d²); biases and "
        f"norms add lower-order terms in d"
    )
    if cfg.n_experts:
        expert = matrices * d * cfg.d_ff_expert
        shared = matrices * d * (cfg.d_ff_shared or 0) + (d if cfg.shared_expert_gate else 0)
        mlp = d * cfg.n_experts + cfg.n_experts * expert + shared
        here = (
            f"attention matrices {attn / d2:.4g}·d²; MLP: {cfg.n_experts} experts of "
            f"{expert / d2:.4g}·d² (f_e = {cfg.d_ff_expert / d:.4g}·d), {cfg.experts_per_token} "
            f"used per token ({cfg.experts_per_token * expert / d2:.4g}·d²), router "
            f"{cfg.n_experts / d:.4g}·d², shared experts {shared / d2:.4g}·d²"
        )
        exact_when += (
            f". An MoE layer stores every expert: 12·d² stands for its attention and one dense "
            f"MLP, so it undercounts the stored layer, and matches the active one only when "
            f"k·f_e + f_s = {ideal_ff}"
        )
    else:
        mlp = matrices * d * cfg.d_ff
        here = (
            f"attention matrices {attn / d2:.4g}·d², MLP matrices {mlp / d2:.4g}·d² (f = "
            f"{cfg.d_ff / d:.4g}·d)"
        )
    return TwelveD2(
        approx_per_layer=12 * d2,
        exact_per_layer=exact,
        rel_error=(12 * d2 - exact) / exact,
        attn_matrices_d2=attn / d2,
        mlp_matrices_d2=mlp / d2,
        rest=exact - attn - mlp,
        exact_when=exact_when,
        here=here,
    )


def _attention_matrices(cfg: ModelConfig) -> int:
    """One layer's attention weight matrices (no biases, norms or sinks)."""
    d = cfg.d_model
    if cfg.kv_lora_rank is None:
        return 2 * d * cfg.q_dim + 2 * d * cfg.kv_dim
    q = d * cfg.q_dim if cfg.q_lora_rank is None else cfg.q_lora_rank * (d + cfg.q_dim)
    kv = d * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)
    kv += cfg.kv_lora_rank * cfg.n_heads * (cfg.qk_nope_head_dim + cfg.v_head_dim)
    return q + kv + cfg.n_heads * cfg.v_head_dim * d


def bias_variants(cfg: ModelConfig) -> dict[str, Expr]:
    """Per-layer closed form (as a reduced polynomial) with every block bias on and off."""
    forms = {}
    for label, flag in (("with bias", True), ("without bias", False)):
        variant = cfg.replace(bias=flag, qkv_bias=None, out_bias=None, mlp_bias=None)
        forms[label] = per_layer_polynomial(variant)
    return forms


# --- the per-layer count as a polynomial: 12·d² + 13·d for GPT-2 -------------------------------

Monomial = tuple[str, ...]  # sorted factor names; () is the constant


def per_layer_polynomial(cfg: ModelConfig) -> Expr:
    """One layer's count reduced to a polynomial in d (and f, h·d_h, h_kv·d_h, d_h where those are
    not multiples of d). Derived independently of param_terms; `check` compares the two."""
    poly: dict[Monomial, int] = {}

    def add(coefficient: int, *factors: tuple[int, Monomial]) -> None:
        monomial: Monomial = ()
        for scale, names in factors:
            coefficient *= scale
            monomial += names
        key = tuple(
            sorted(monomial, key=lambda name: (name != "d", name))
        )  # d·(h·d_h), not (h·d_h)·d
        poly[key] = poly.get(key, 0) + coefficient

    def as_multiple_of_d(size: int, name: str) -> tuple[int, Monomial]:
        if size % cfg.d_model == 0:
            return size // cfg.d_model, ("d",)
        return 1, (name,)

    values = {"d": cfg.d_model, "d_h": cfg.head_dim}

    def size(value: int, name: str) -> tuple[int, Monomial]:
        values[name] = value
        return as_multiple_of_d(value, name)

    d = (1, ("d",))
    q = size(cfg.q_dim, "(h·d_h)")
    kv = size(cfg.kv_dim, "(h_kv·d_h)")
    width = norm_width(cfg).value
    matrices = 3 if cfg.is_glu else 2

    def mlp(f: tuple[int, Monomial], bias: bool, copies: int = 1) -> None:
        add(copies * matrices, d, f)
        if bias:
            add(copies * (matrices - 1), f)
            add(copies, d)

    if cfg.kv_lora_rank is not None:
        _latent_polynomial(cfg, add, size, width)
    else:
        add(2, d, q)
        add(2, d, kv)
        if cfg.qkv_bias:
            add(1, q)
            add(2, kv)
    if cfg.out_bias:
        add(1, d)
    if cfg.attention_sinks:
        add(cfg.n_heads)
    if cfg.n_experts:  # the representative layer of a model with experts is an MoE layer
        add(cfg.n_experts, d)
        if cfg.router_bias:
            add(cfg.n_experts)
        mlp(size(cfg.d_ff_expert, "f_e"), cfg.expert_bias, cfg.n_experts)
        if cfg.n_shared_experts:
            mlp(size(cfg.d_ff_shared, "f_s"), cfg.mlp_bias)
        if cfg.shared_expert_gate:
            add(1, d)
    else:
        mlp(size(cfg.d_ff, "f"), cfg.mlp_bias)
    add(norms_per_layer(cfg) * width, d)
    if cfg.qk_norm == "head":
        add(2 * width, (1, ("d_h",)))
    elif cfg.qk_norm == "full":
        add(width, q)
        add(width, kv)
    elif cfg.qk_norm == "per_head":  # d_h weights for each of the h + h_kv heads, no bias
        add(1, q)
        add(1, kv)

    sym_parts, num_parts, total = [], [], 0
    for monomial, coefficient in sorted(poly.items(), key=lambda kv: (-len(kv[0]), kv[0])):
        if coefficient == 0:
            continue
        value = coefficient
        for name in monomial:
            value *= values[name]
        total += value
        sym_parts.append(_monomial_text(coefficient, monomial))
        num_parts.append(_monomial_text(coefficient, tuple(str(values[n]) for n in monomial)))
    return Expr(" + ".join(sym_parts) or "0", " + ".join(num_parts) or "0", total)


def _latent_polynomial(cfg: ModelConfig, add: Any, size: Any, width: int) -> None:
    """Multi-head latent attention's matrices, biases and latent norms (o's bias is the
    caller's): q through r_q (or one matrix), d -> r_kv + r, r_kv -> h·(n + d_v), h·d_v -> d."""
    d = (1, ("d",))
    heads = cfg.n_heads
    q_heads = size(heads * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim), "(h·(n + r))")
    if cfg.q_lora_rank is None:
        add(1, d, q_heads)  # no bias on this one
    else:
        r_q = size(cfg.q_lora_rank, "r_q")
        add(1, d, r_q)
        add(1, r_q, q_heads)
        add(width + int(cfg.qkv_bias), r_q)
    r_kv = size(cfg.kv_lora_rank, "r_kv")
    kv_a = size(cfg.kv_lora_rank + cfg.qk_rope_head_dim, "(r_kv + r)")
    add(1, d, kv_a)
    if cfg.qkv_bias:
        add(1, kv_a)
    add(1, r_kv, size(heads * (cfg.qk_nope_head_dim + cfg.v_head_dim), "(h·(n + d_v))"))
    add(width, r_kv)
    add(1, size(heads * cfg.v_head_dim, "(h·d_v)"), d)


def _monomial_text(coefficient: int, factors: tuple[str, ...]) -> str:
    if len(factors) == 2 and factors[0] == factors[1] and not factors[0].isdigit():
        body = f"{factors[0]}²"
    else:
        body = "·".join(factors)
    if not body:
        return str(coefficient)
    return body if coefficient == 1 else f"{coefficient}·{body}"


def bias_label(cfg: ModelConfig) -> str:
    """'with bias', 'without bias' or the per-part mix this config has."""
    parts = {"qkv": cfg.qkv_bias, "out": cfg.out_bias, "mlp": cfg.mlp_bias}
    if all(parts.values()):
        return "with bias"
    if not any(parts.values()):
        return "without bias"
    return "bias on " + ", ".join(name for name, on in parts.items() if on)
