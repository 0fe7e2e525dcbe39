"""Closed-form parameter counts, per component, written out with the config's numbers substituted.

Symbols: V vocab_size, P max_seq_len, d d_model, L n_layers, h n_heads, h_kv n_kv_heads,
d_h head_dim, f d_ff. A linear layer a -> b has a·b weights and b biases; an RMSNorm over n has n
weights, a LayerNorm 2·n with its bias (Zhang & Sennrich 2019; Ba et al. 2016).

Every figure is an `Expr`: the symbolic form, the substituted form and the integer value are built
from the same factors, so what is printed is what is summed. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config import ModelConfig

# --- a tiny expression type: symbolic text, substituted text, exact integer ----------------------


@dataclass(frozen=True)
class Expr:
    sym: str
    num: str
    value: int

    def __add__(self, other: Expr) -> Expr:
        if self.value == 0 and self.sym == "0":
            return other
        return Expr(
            f"{self.sym} + {other.sym}", f"{self.num} + {other.num}", self.value + other.value
        )

    def __mul__(self, other: Expr) -> Expr:
        return Expr(
            f"{_wrap(self.sym)}·{_wrap(other.sym)}",
            f"{_wrap(self.num)}·{_wrap(other.num)}",
            self.value * other.value,
        )


ZERO = Expr("0", "0", 0)


def _wrap(text: str) -> str:
    return f"({text})" if " + " in text else text


def grouped(expr: Expr) -> Expr:
    """The same expression, parenthesised as one factor: d·(h·d_h)."""
    return Expr(f"({expr.sym})", f"({expr.num})", expr.value)


def const(n: int) -> Expr:
    return Expr(str(n), str(n), n)


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
    }
    return {name: Expr(name, str(value), value) for name, value in values.items()}


# --- the terms -------------------------------------------------------------------------------

# Fine-grained components: the unit that `check` compares formula against counted.
COMPONENTS = (
    "token_embedding",
    "position_embedding",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_o",
    "mlp",
    "block_norms",
    "qk_norm",
    "final_norm",
    "lm_head",
)
PER_LAYER = ("attn_q", "attn_k", "attn_v", "attn_o", "mlp", "block_norms", "qk_norm")

# The summary groups shown to users (and their keys in --json).
GROUPS = {
    "token_embedding": ("token_embedding",),
    "position_embedding": ("position_embedding",),
    "attention": ("attn_q", "attn_k", "attn_v", "attn_o"),
    "mlp": ("mlp",),
    "norms": ("block_norms", "qk_norm", "final_norm"),
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


def _norm_width(cfg: ModelConfig) -> Expr:
    """Parameters per normalised feature: 2 for LayerNorm with bias, else 1."""
    return const(2 if cfg.norm == "layernorm" and cfg.norm_bias else 1)


def _linear(inputs: Expr, outputs: Expr, bias: bool) -> Expr:
    weight = inputs * outputs
    return weight + outputs if bias else weight


def _with_width(width: Expr, expr: Expr) -> Expr:
    return expr if width.value == 1 else width * expr


def param_terms(cfg: ModelConfig) -> dict[str, Expr]:
    """Component -> closed form. Per-layer components are for one layer."""
    s = symbols(cfg)
    d, f = s["d"], s["f"]
    q_width = grouped(s["h"] * s["d_h"])
    kv_width = grouped(s["h_kv"] * s["d_h"])
    width = _norm_width(cfg)
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
    else:
        qk_norm = ZERO

    if cfg.tie_embeddings:
        lm_head = s["V"] if cfg.lm_head_bias else ZERO  # the weight is the token embedding
    else:
        lm_head = s["V"] * d + s["V"] if cfg.lm_head_bias else s["V"] * d

    return {
        "token_embedding": s["V"] * d,
        "position_embedding": s["P"] * d if cfg.position == "learned" else ZERO,
        "attn_q": _linear(d, q_width, cfg.qkv_bias),
        "attn_k": _linear(d, kv_width, cfg.qkv_bias),
        "attn_v": _linear(d, kv_width, cfg.qkv_bias),
        "attn_o": _linear(q_width, d, cfg.out_bias),
        "mlp": mlp,
        "block_norms": block_norms,
        "qk_norm": qk_norm,
        "final_norm": _with_width(width, d) if cfg.final_norm else ZERO,
        "lm_head": lm_head,
    }


def sum_exprs(exprs: list[Expr]) -> Expr:
    total = ZERO
    for expr in exprs:
        if expr.value or expr.sym != "0":
            total = total + expr
    return total


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


# --- 12·d² and its exact relatives ------------------------------------------------------------


@dataclass(frozen=True)
class TwelveD2:
    approx_per_layer: int  # 12·d²
    exact_per_layer: int
    rel_error: float  # (12·d² − exact) / exact
    attn_matrices_d2: float  # attention matrices in units of d²
    mlp_matrices_d2: float
    rest: int  # biases and norms in one layer
    exact_when: str


def twelve_d2(cfg: ModelConfig) -> TwelveD2:
    """The classic per-layer estimate 12·d² (Kaplan et al. 2020, section 2.1, with d_attn = d and
    d_ff = 4d): 4·d² of attention matrices plus 8·d² of MLP matrices."""
    d2 = cfg.d_model**2
    attn = 2 * cfg.d_model * cfg.q_dim + 2 * cfg.d_model * cfg.kv_dim
    mlp = (3 if cfg.is_glu else 2) * cfg.d_model * cfg.d_ff
    exact = param_formula(cfg).per_layer.value
    ideal_ff = "8/3·d" if cfg.is_glu else "4·d"
    exact_when = (
        f"12·d² counts the matrices exactly when attention is MHA with h·d_h = d (4·d²) and "
        f"d_ff = {ideal_ff} for a {'3' if cfg.is_glu else '2'}-matrix MLP (8·d²); biases and "
        f"norms add lower-order terms in d"
    )
    return TwelveD2(
        approx_per_layer=12 * d2,
        exact_per_layer=exact,
        rel_error=(12 * d2 - exact) / exact,
        attn_matrices_d2=attn / d2,
        mlp_matrices_d2=mlp / d2,
        rest=exact - attn - mlp,
        exact_when=exact_when,
    )


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

    d = (1, ("d",))
    f = as_multiple_of_d(cfg.d_ff, "f")
    q = as_multiple_of_d(cfg.q_dim, "(h·d_h)")
    kv = as_multiple_of_d(cfg.kv_dim, "(h_kv·d_h)")
    width = _norm_width(cfg).value
    add(2, d, q)
    add(2, d, kv)
    if cfg.qkv_bias:
        add(1, q)
        add(2, kv)
    if cfg.out_bias:
        add(1, d)
    add(3 if cfg.is_glu else 2, d, f)
    if cfg.mlp_bias:
        add(2 if cfg.is_glu else 1, f)
        add(1, d)
    add(norms_per_layer(cfg) * width, d)
    if cfg.qk_norm == "head":
        add(2 * width, (1, ("d_h",)))
    elif cfg.qk_norm == "full":
        add(width, q)
        add(width, kv)

    values = {
        "d": cfg.d_model,
        "f": cfg.d_ff,
        "(h·d_h)": cfg.q_dim,
        "(h_kv·d_h)": cfg.kv_dim,
        "d_h": cfg.head_dim,
    }
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


def weight_bytes(cfg: ModelConfig, bytes_per_param: int) -> int:
    return param_formula(cfg).total.value * bytes_per_param
