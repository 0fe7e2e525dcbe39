"""ModelConfig: every field of the preset schema (DESIGN.md), its defaults, derived sizes and validation.

No torch here: loading and validating a config is instant and works without a model.
A config is built from a plain mapping (a YAML preset after `--set` overrides) by `from_dict`, which
checks names and types; `__post_init__` checks values and fills the derived sizes, so a ModelConfig
that exists is always valid and fully resolved (n_kv_heads, head_dim, d_ff and the per-part biases
are concrete).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmcalc.config.conflicts import CONFLICTS, check_conflicts
from llmcalc.config.dtypes import DTYPE_BYTES
from llmcalc.config.experts import ROUTER_SCORES, check_experts, check_latent
from llmcalc.config.field_types import check_type, likeness
from llmcalc.config.sizes import (
    MAX_SIZE,
    check_positive_number,
    check_size,
    llama_d_ff,
    scaled,
)
from llmcalc.config.window import check_window
from llmcalc.errors import LLMCalcError, quote

ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_recomputed", "silu", "swiglu", "geglu", "reglu")
GLU_ACTIVATIONS = ("swiglu", "geglu", "reglu")  # three matrices: gate, up, down
NORMS = ("rmsnorm", "layernorm")
NORM_POSITIONS = ("pre", "post", "sandwich", "output")
BLOCKS = ("serial", "parallel", "parallel_shared_norm")
QK_NORMS = ("none", "head", "full", "per_head")
NORM_CASTS = ("after_weight", "before_weight")  # where RMSNorm returns to the activation dtype
# how LayerNorm is computed: torch's kernel in the activation dtype, on an fp32 copy, or op by op
LAYERNORM_COMPUTES = ("native", "fp32", "ops")
POSITIONS = ("rope", "learned", "sinusoidal", "alibi", "none")

# Fields whose value must be one of a fixed set of strings.
ENUMS: dict[str, tuple[str, ...]] = {
    "activation": ACTIVATIONS,
    "norm": NORMS,
    "norm_position": NORM_POSITIONS,
    "block": BLOCKS,
    "qk_norm": QK_NORMS,
    "norm_cast": NORM_CASTS,
    "layernorm_compute": LAYERNORM_COMPUTES,
    "position": POSITIONS,
    "router_score": ROUTER_SCORES,
    "dtype": tuple(DTYPE_BYTES),  # or null: none given
}


def _kind(type_name: str) -> str:
    """'int | None' -> 'int': the value kind a field accepts (None is allowed where it is optional)."""
    return type_name.split("|")[0].strip()


@dataclass(frozen=True)
class ModelConfig:
    # --- identity -------------------------------------------------------------------------------
    name: str = "custom"
    source: str | None = None  # where the numbers come from: model card, config.json, paper

    # --- sizes ----------------------------------------------------------------------------------
    vocab_size: int = 0  # 0 = not given: required, checked in __post_init__
    d_model: int = 0
    n_layers: int = 0
    n_heads: int = 0
    n_kv_heads: int | None = None  # None -> n_heads (MHA); 1 = MQA; between = GQA
    head_dim: int | None = None  # None -> d_model / n_heads, which must then divide exactly
    max_seq_len: int = 4096

    # --- MLP ------------------------------------------------------------------------------------
    d_ff: int | None = None  # None -> 4*d_model, or the LLaMA rule for GLU activations
    ffn_multiplier: float | None = None  # LLaMA's ffn_dim_multiplier
    multiple_of: int | None = None  # LLaMA's rounding of the hidden size
    activation: str = "swiglu"

    # --- norms and block layout -----------------------------------------------------------------
    norm: str = "rmsnorm"
    norm_position: str = "pre"
    block: str = "serial"
    norm_bias: bool = True  # LayerNorm's beta; rmsnorm has none
    norm_affine: bool = True  # False: norms without weight (or bias), OLMo 1's LayerNorm
    norm_eps: float = 1e-5
    # RMSNorm in bf16: after_weight weights in fp32, then casts (nn.RMSNorm, Gemma, OLMo 2);
    # before_weight casts, then weights in the activation dtype (LLaMA, Mistral, Qwen2)
    norm_cast: str = "after_weight"
    layernorm_compute: str = "native"  # or on an fp32 copy (OLMo), op by op (Cohere)
    qk_norm: str = "none"
    final_norm: bool = True
    embedding_norm: bool = False  # a norm right after the embeddings (BLOOM)

    # --- biases: `bias` is the default for every block linear; a per-part flag wins -------------
    bias: bool = False
    qkv_bias: bool | None = None
    out_bias: bool | None = None
    mlp_bias: bool | None = None
    lm_head_bias: bool = False  # separate from `bias`: few models have one (phi-2)
    fused_qkv: bool = False  # q, k, v as one matrix, its output sliced (GPT-2, GPT-NeoX, Phi-3)

    # --- positions and embeddings ---------------------------------------------------------------
    position: str = "rope"
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0  # partial rotary: the leading share of head_dim that rotates
    rope_concat: bool = False  # the rotated part joined by a cat even when it is all (Phi-3)
    position_offset: int = 0  # learned positions: extra leading rows of the table (OPT: 2)
    tie_embeddings: bool = False
    scale_embeddings: bool = False  # embeddings × sqrt(d_model) (Gemma): no parameter

    # --- attention window, soft-capping (config/window.py), GPT-J's fp32 scores ---------------
    sliding_window: int | None = None  # W: a local layer sees the last W positions (itself too)
    sliding_window_pattern: int | None = None  # every p-th layer global; none given: all local
    global_layers: list[int] | None = None  # or the global layers' indices (other patterns)
    attn_softcap: float | None = None  # scores -> c·tanh(scores / c) (Gemma 2)
    attn_upcast: bool = False
    logit_softcap: float | None = None  # final logits likewise
    norm_offset: bool = False  # RMSNorm scales by 1 + w (Gemma): the same parameters

    # --- scalar multipliers: no parameters, one multiply per element (Granite, Cohere) ------------
    embedding_multiplier: float | None = None  # the embeddings times this (Granite)
    residual_multiplier: float | None = None  # each branch's output times this before its add
    attention_multiplier: float | None = None  # the score scale in place of 1/sqrt(head_dim)
    logit_scale: float | None = None  # the logits times this (Cohere; Granite 1/logits_scaling)

    # --- mixture of experts (config/experts.py); n_experts 0: every layer dense -----------------
    n_experts: int = 0  # routed experts in each MoE layer
    experts_per_token: int | None = None  # top-k: routed experts per token
    n_shared_experts: int = 0  # experts every token passes (DeepSeek, Qwen2-MoE, Llama 4)
    d_ff_expert: int | None = None  # a routed expert's hidden size; None -> d_ff
    d_ff_shared: int | None = (
        None  # the shared experts' hidden size; None -> n_shared · d_ff_expert
    )
    shared_expert_gate: bool = False  # sigmoid(x·w) scales the shared experts (Qwen2-MoE)
    first_dense_layers: int = 0  # the first k layers dense (DeepSeek's first_k_dense_replace)
    moe_every: int = 1  # layer i is MoE when (i + 1) % moe_every == 0 (Qwen, Llama 4)
    moe_layers: list[int] | None = None  # or the MoE layers' indices
    router_score: str = "softmax"  # softmax | sigmoid, over all experts or the top-k (topk_*)
    normalize_topk: bool = False  # the top-k weights divided by their sum
    routed_scaling: float | None = None  # the routed experts' weights × this (DeepSeek)
    router_bias: bool = False
    expert_bias: bool = False  # biases on every expert's matrices (gpt-oss)
    score_correction_bias: bool = False  # DeepSeek-V3's selection bias: a buffer, as transformers

    # --- multi-head latent attention (DeepSeek-V2/V3; config/experts.py): kv_lora_rank = MLA ----
    q_lora_rank: int | None = None  # None: one q projection; else q through a normed rank-r latent
    kv_lora_rank: int | None = None  # the cached latent: keys and values decompressed from it
    qk_nope_head_dim: int | None = None  # per-head q, k features without RoPE
    qk_rope_head_dim: int | None = None  # per-head q features with RoPE; k's are one shared head
    v_head_dim: int | None = None
    attention_sinks: bool = False  # a learned logit per head joins each softmax (gpt-oss)

    # --- the published weights -----------------------------------------------------------------
    dtype: str | None = None  # fp32, bf16, fp16 (config.json torch_dtype): memory's --dtype default

    # Not schema fields: where the config came from, for error messages; which of the DERIVED
    # fields were given rather than derived (set by __post_init__, which then resolves them).
    origin: str = field(default="config", compare=False, repr=False)
    given: frozenset[str] = field(default=frozenset(), init=False, compare=False, repr=False)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name not in ("origin", "given")]

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], origin: str = "config", given: Iterable[str] | None = None
    ) -> ModelConfig:
        """Check names and types of a plain mapping, then build (and value-check) the config.
        `given`: the fields stated explicitly (default: every key of `data`), checked for
        conflicts (a field that has no effect under another: CONFLICTS)."""
        names = cls.field_names()
        types = {f.name: _kind(str(f.type)) for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                near = difflib.get_close_matches(str(key)[:100], names, n=3, cutoff=0.5)
                if near and likeness(str(key), near[0]) >= 0.85:  # one clear match: only it
                    near = near[:1]
                hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
                raise LLMCalcError(f"{origin}: unknown field {quote(key)}{hint}")
            values[key] = check_type(
                origin, key, value, types[key], ENUMS.get(key), key in _OPTIONAL
            )
        for required in ("vocab_size", "d_model", "n_layers", "n_heads"):
            if required not in values:
                raise LLMCalcError(f"{origin}: missing required field {required!r}")
        cfg = cls(**values, origin=origin)
        check_conflicts(cfg, given=set(values) if given is None else set(given))
        return cfg

    def __post_init__(self) -> None:
        where = self.origin
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            check_size(where, name, getattr(self, name))
        for name in ("n_kv_heads", "head_dim", "d_ff", "multiple_of"):
            if getattr(self, name) is not None:
                check_size(where, name, getattr(self, name))
        check_size(where, "position_offset", self.position_offset, least=0)
        for name in (
            "norm_eps",
            "rope_theta",
            "ffn_multiplier",
            "attn_softcap",
            "logit_softcap",
            *MULTIPLIERS,
        ):
            check_positive_number(where, name, getattr(self, name))
        for name, allowed in ENUMS.items():
            value = getattr(self, name)
            if value not in allowed and not (value is None and name in _OPTIONAL):
                raise LLMCalcError(
                    f"{where}: field {name!r} = {quote(value)}: allowed values are {', '.join(allowed)}"
                )

        check_window(self)
        if self.qk_norm == "per_head" and not self.norm_affine:
            raise LLMCalcError(
                f"{where}: qk_norm 'per_head' gives each head its own norm weight, and "
                "norm_affine = false leaves none: use qk_norm 'head'"
            )

        latent_head_dim = check_latent(self)
        n_kv = self.n_heads if self.n_kv_heads is None else self.n_kv_heads
        if self.n_heads % n_kv:
            raise LLMCalcError(
                f"{where}: field 'n_kv_heads' = {n_kv} must divide n_heads = {self.n_heads} "
                f"(1 = MQA, n_heads = MHA, a divisor in between = GQA)"
            )
        head_dim = self.head_dim if latent_head_dim is None else latent_head_dim
        if head_dim is None:
            if self.d_model % self.n_heads:
                raise LLMCalcError(
                    f"{where}: d_model = {self.d_model} is not divisible by n_heads = "
                    f"{self.n_heads}; set 'head_dim' explicitly"
                )
            head_dim = self.d_model // self.n_heads

        if self.position == "rope" and head_dim % 2 and latent_head_dim is None:
            raise LLMCalcError(
                f"{where}: position 'rope' needs an even head_dim (features rotate in pairs); "
                f"head_dim = {head_dim}"
            )
        rotary = scaled(head_dim, self.rope_fraction)
        fraction_ok = 0 < self.rope_fraction <= 1
        rotary_bad = self.position == "rope" and (rotary % 2 or rotary == 0)
        if not fraction_ok or (rotary_bad and latent_head_dim is None):
            raise LLMCalcError(
                f"{where}: field 'rope_fraction' = {self.rope_fraction!r}: must be in (0, 1] and "
                f"rotate an even, non-zero number of the {head_dim} head features "
                f"(here int({head_dim} * {self.rope_fraction}) = {rotary})"
            )

        given = {name for name in DERIVED if getattr(self, name) is not None}
        if self.multiple_of is not None or self.ffn_multiplier is not None:
            given.discard("d_ff")  # the rule gives it (and a d_ff beside it must agree)
        object.__setattr__(self, "given", frozenset(given))
        object.__setattr__(self, "n_kv_heads", n_kv)
        object.__setattr__(self, "head_dim", head_dim)
        d_ff = self._resolve_d_ff()
        if not 0 < d_ff <= MAX_SIZE:  # only a derived d_ff can be out of range here
            rule = self.multiple_of is not None or self.ffn_multiplier is not None
            how = (
                f"the LLaMA rule (ffn_multiplier = {self.ffn_multiplier}, multiple_of = "
                f"{self.multiple_of})"
                if rule
                else ("int(8·d_model/3)" if self.is_glu else "4·d_model")
            )
            raise LLMCalcError(
                f"{where}: d_ff derived by {how} = {quote(d_ff)}: must be in 1 .. 10**30"
            )
        object.__setattr__(self, "d_ff", d_ff)
        d_ff_expert, d_ff_shared = check_experts(self)
        object.__setattr__(self, "d_ff_expert", d_ff_expert)
        object.__setattr__(self, "d_ff_shared", d_ff_shared)
        for part in ("qkv_bias", "out_bias", "mlp_bias"):
            if getattr(self, part) is None:
                object.__setattr__(self, part, self.bias)

    def _resolve_d_ff(self) -> int:
        uses_rule = self.multiple_of is not None or self.ffn_multiplier is not None
        if not uses_rule:
            if self.d_ff is not None:
                return self.d_ff
            # Without a rule: the classic 4*d MLP, or int(8d/3) that keeps a GLU MLP at 8*d^2.
            return llama_d_ff(self.d_model, None, 1) if self.is_glu else 4 * self.d_model
        rule = llama_d_ff(self.d_model, self.ffn_multiplier, self.multiple_of or 1)
        if self.d_ff is not None and self.d_ff != rule:
            raise LLMCalcError(
                f"{self.origin}: field 'd_ff' = {self.d_ff} disagrees with the LLaMA rule "
                f"(ffn_multiplier = {self.ffn_multiplier}, multiple_of = {self.multiple_of}), "
                f"which gives {rule}; give d_ff or the rule, not both"
            )
        return rule

    # --- derived properties (the resolved fields above are the sizes) -----------------------------
    @property
    def is_glu(self) -> bool:
        return self.activation in GLU_ACTIVATIONS

    @property
    def q_dim(self) -> int:
        """Width of the concatenated query heads (= d_model unless head_dim is explicit)."""
        return self.n_heads * self.head_dim

    @property
    def rotary_dim(self) -> int:
        """Head features that RoPE rotates (all of them unless rope_fraction < 1; with latent
        attention the qk_rope_head_dim part)."""
        if self.qk_rope_head_dim is not None:
            return self.qk_rope_head_dim
        return scaled(self.head_dim, self.rope_fraction)

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def attention_kind(self) -> str:
        if self.n_kv_heads == self.n_heads:
            return "MHA"
        return "MQA" if self.n_kv_heads == 1 else "GQA"

    def seq_warning(self, option: str, length: int, positions: int | None = None) -> str | None:
        """Check a sequence length: past a learned position table is an error; past
        max_seq_len with other positions is counted as asked, with this warning. `positions`:
        how many positions `length` takes when that differs (a decode at position p: p + 1)."""
        needed = length if positions is None else positions
        if needed <= self.max_seq_len:
            return None
        asked = f"{option} {length}" + (
            "" if positions is None else f" (positions 0..{positions - 1:,})"
        )
        if self.position == "learned":
            raise LLMCalcError(
                f"{asked}: above max_seq_len = {self.max_seq_len}, the size of the "
                "learned position table; raise it with --set max_seq_len=N"
            )
        return (
            f"Warning: {asked} is above max_seq_len = {self.max_seq_len}: counted as "
            f"asked ({self.position} positions have no table to run out of)"
        )

    def to_dict(self) -> dict[str, Any]:
        """All schema fields, resolved, in schema order, except those without effect here (such
        as rope_theta under learned positions): round-trips through from_dict."""
        idle = self.without_effect()
        return {name: getattr(self, name) for name in self.field_names() if name not in idle}

    def without_effect(self) -> dict[str, str]:
        """Fields whose value has no effect in this config -> the field that overrides them
        (stating one of these explicitly is a conflict: CONFLICTS)."""
        return {
            name: other
            for name, other, no_effect in CONFLICTS
            if no_effect(self) and getattr(self, name) is not None
        }

    def given_dict(self) -> dict[str, Any]:
        """The fields as given: a DERIVED field only where it was given, not derived, so that
        changing what it derives from (d_model, n_heads, bias) changes it as its rule says."""
        return {
            name: getattr(self, name)
            for name in self.field_names()
            if name not in DERIVED or name in self.given
        }

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed, re-validated (`--set` on an already loaded config):
        derived fields that were not given are derived again."""
        data = self.given_dict()
        data.update(changes)
        return ModelConfig.from_dict(data, origin=self.origin, given=changes)


# Scalars that multiply a tensor where they are given (None: no multiply at all).
MULTIPLIERS = ("embedding_multiplier", "residual_multiplier", "attention_multiplier", "logit_scale")

# Fields that are derived when not given (None), and how: `show` writes them only where given.
DERIVED = {
    "n_kv_heads": "n_heads, MHA",
    "head_dim": "d_model / n_heads",
    "d_ff": "4·d_model, int(8·d_model/3) with a GLU, or the LLaMA rule",
    "qkv_bias": "bias",
    "out_bias": "bias",
    "mlp_bias": "bias",
    "d_ff_expert": "d_ff",
    "d_ff_shared": "n_shared_experts · d_ff_expert",
}


_OPTIONAL = {
    f.name for f in dataclasses.fields(ModelConfig) if "None" in str(f.type) or f.name == "source"
}
