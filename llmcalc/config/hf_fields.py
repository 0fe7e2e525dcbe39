"""Reading the fields of a Hugging Face config.json strictly: each field llmcalc reads has one JSON
type (a bool must be true or false, not "false"; an int a JSON integer, not "2048" or 2048.0), and
a field that changes a count, a FLOP or a byte but that llmcalc does not model is named in a
warning rather than dropped without a word."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from llmcalc.errors import LLMCalcError, quote

# The type of every config.json field llmcalc reads. 'size': a positive JSON integer.
FIELD_TYPES: dict[str, str] = {
    **dict.fromkeys(
        (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "intermediate_size",
            "max_position_embeddings",
            "head_dim",
            "n_embd",
            "n_layer",
            "n_head",
            "n_inner",
            "n_positions",
            "num_kv_heads",
            "sliding_window",
            "sliding_window_pattern",
            "_sliding_window_pattern",
            "ffn_hidden_size",
            "num_ln_in_parallel_attn",
            "n_embed",
            "ffn_dim",
            "word_embed_proj_dim",
            "rotary_dim",
            # mixture of experts and latent attention (hf_moe.py)
            "num_local_experts",
            "num_experts",
            "n_routed_experts",
            "num_experts_per_tok",
            "moe_intermediate_size",
            "shared_expert_intermediate_size",
            "intermediate_size_mlp",
            "decoder_sparse_step",
            "interleave_moe_layer_step",
            "no_rope_layer_interval",
            "attention_chunk_size",
            "q_lora_rank",
            "kv_lora_rank",
            "qk_nope_head_dim",
            "qk_rope_head_dim",
            "v_head_dim",
        ),
        "size",
    ),
    **dict.fromkeys(
        (
            "rms_norm_eps",
            "layer_norm_epsilon",
            "layer_norm_eps",
            "rope_theta",
            "rotary_emb_base",
            "rotary_pct",
            "partial_rotary_factor",
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "query_pre_attn_scalar",
            "norm_epsilon",
            "logit_scale",
            "logits_scaling",
            "embedding_multiplier",
            "residual_multiplier",
            "attention_multiplier",
            "clip_qkv",
            "rope_parameters.rope_theta",
            "rope_parameters.partial_rotary_factor",
            "routed_scaling_factor",
        ),
        "number",
    ),
    **dict.fromkeys(
        (
            "tie_word_embeddings",
            "attention_bias",
            "mlp_bias",
            "use_parallel_residual",
            "new_decoder_architecture",
            "multi_query",
            "parallel_attn",
            "bias",
            "alibi",
            "qk_layernorm",
            "use_sliding_window",
            "add_cross_attention",
            "use_bias",
            "use_qkv_bias",
            "use_qk_norm",
            "do_layer_norm_before",
            "_remove_final_layer_norm",
            "enable_bias",
            "layer_norm_elementwise_affine",
            "apply_residual_connection_post_layernorm",
            "scale_attn_weights",
            "qkv_bias",
            "norm_topk_prob",
        ),
        "bool",
    ),
    **dict.fromkeys(
        (
            "model_type",
            "hidden_act",
            "hidden_activation",
            "activation_function",
            "_name_or_path",
            "rope_parameters.rope_type",
        ),
        "string",
    ),
    "max_window_layers": "count",
    "n_shared_experts": "count",
    "first_k_dense_replace": "count",
    # transformers v5: rope_theta, rope_type and partial_rotary_factor live in this object (or,
    # for Gemma 3, in one such object per layer type)
    "rope_parameters": "object",
}

_EXPECTED = {
    "size": "a positive JSON integer",
    "count": "a JSON integer, 0 or more",
    "number": "a JSON number",
    "bool": "a JSON bool (true or false)",
    "string": "a JSON string",
    "object": "a JSON object",
}


def _is(kind: str, value: Any) -> bool:
    if kind in ("size", "count"):
        whole = isinstance(value, int) and not isinstance(value, bool)
        return whole and (value > 0 if kind == "size" else value >= 0)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    return isinstance(value, str)


def typed(where: str, name: str, value: Any) -> Any:
    """The value of config.json field `name` if it has the field's JSON type, else an error that
    names the field, the value and the type expected."""
    kind = FIELD_TYPES[name]
    if not _is(kind, value):
        found = "null" if value is None else type(value).__name__
        raise LLMCalcError(
            f"{where}: field {name!r} = {quote(value)} ({found}): expected {_EXPECTED[kind]}"
        )
    return float(value) if kind == "number" else value


# --- fields llmcalc does not model ---------------------------------------------------------------
# Reported when they are on (the rule: present with a value other than null, false, 0 or an
# empty list, or as the predicate below says), because they change what llmcalc counts:
def _ON(value: Any, data: dict[str, Any]) -> bool:
    return value not in (None, False, 0, [])


_SLIDING = "attention FLOPs and the KV cache are counted as if every token sees the whole sequence"
_MOE = "a mixture of experts has more MLP parameters and FLOPs than the one dense MLP counted"
# sliding_window and layer_types are modelled where the family maps them (hf_window.py); a
# family that does not map them gets the warning.
WINDOW_FIELDS = ("sliding_window", "layer_types")
UNMODELLED: dict[str, tuple[Callable[[Any, dict[str, Any]], bool], str]] = {
    "sliding_window": (_ON, _SLIDING),
    "attention_chunk_size": (_ON, _SLIDING),
    "layer_types": (
        lambda value, data: isinstance(value, list) and any(t != "full_attention" for t in value),
        "layers of other kinds than full attention are counted as full attention",
    ),
    "num_experts": (_ON, _MOE),
    "num_local_experts": (_ON, _MOE),
    "n_routed_experts": (_ON, _MOE),
    "num_experts_per_tok": (_ON, _MOE),
    "moe_intermediate_size": (_ON, _MOE),
    "add_cross_attention": (_ON, "cross-attention layers add parameters and FLOPs not counted"),
}
# Per model_type, where a field means something else there.
_QWEN_WINDOW = {
    "sliding_window": (
        lambda value, data: _ON(value, data) and data.get("use_sliding_window") is True,
        _SLIDING,
    ),
}
UNMODELLED_BY_TYPE: dict[str, dict[str, tuple[Callable[[Any, dict[str, Any]], bool], str]]] = {
    # Qwen2 and Qwen3 state a window always and use it only with use_sliding_window: true
    "qwen2": _QWEN_WINDOW,
    "qwen3": _QWEN_WINDOW,
}
# Read as nothing, on purpose, because they change no count, FLOP or byte: rope_scaling (how the
# rotary frequencies stretch to a longer context), pretraining_tp (a sharding of the same
# matmuls), dropouts, initializer_range, token ids, torch_dtype (the checkpoint's storage dtype;
# --dtype chooses), use_cache, architectures.


def warn_unmodelled(
    where: str,
    model_type: str,
    data: dict[str, Any],
    window_mapped: bool = False,
    mapped: tuple[str, ...] = (),
) -> None:
    """One `Warning:` line on stderr for each field that is on and not modelled
    (`window_mapped`: the family's mapping read the window fields; `mapped`: other fields of
    the table above that it read, such as a mixture of experts' sizes)."""
    table = {**UNMODELLED, **UNMODELLED_BY_TYPE.get(model_type, {})}
    skip = (*WINDOW_FIELDS, *mapped) if window_mapped else mapped
    table = {name: rule for name, rule in table.items() if name not in skip}
    for name in ("use_sliding_window", "add_cross_attention"):
        if data.get(name) is not None:
            typed(where, name, data[name])
    for name, (is_on, consequence) in table.items():
        if name in data and is_on(data[name], data):
            print(
                f"Warning: {where}: field {name!r} = {quote(data[name])} is not modelled: "
                f"{consequence}",
                file=sys.stderr,
            )


class Fields:
    """Reads a config.json mapping; a missing required field is an error naming it, and every
    value read is checked against its JSON type (FIELD_TYPES)."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def need(self, *names: str) -> Any:
        for name in names:
            if self.data.get(name) is not None:
                return typed(self.where, name, self.data[name])
        raise LLMCalcError(
            f"{self.where}: missing field {names[0]!r} (needed for model_type "
            f"{self.data.get('model_type')!r})"
        )

    def get(self, name: str, default: Any) -> Any:
        value = self.data.get(name)
        return default if value is None else typed(self.where, name, value)

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def refuse(self, name: str, why: str, on: Callable[[Any], bool] | None = None) -> None:
        """One `Error:` line when field `name` is on (as warn_unmodelled's rule says, or `on`):
        it changes a count, a FLOP or a byte in a way llmcalc does not model."""
        value = self.data.get(name)
        if value is None:
            return
        value = typed(self.where, name, value)
        if (on or (lambda v: _ON(v, self.data)))(value):
            raise LLMCalcError(
                f"{self.where}: field {name!r} = {quote(value)} is not supported for model_type "
                f"{self.data.get('model_type')!r}: {why}"
            )

    def rope(
        self,
        partial: float | None = None,
        theta: tuple[str, ...] = ("rope_theta",),
        fraction: tuple[str, ...] = ("partial_rotary_factor",),
    ) -> dict[str, float]:
        """RoPE's base and rotary share, from transformers v4's top-level fields (`theta`,
        `fraction`: their names, first found wins) or v5's `rope_parameters` (rope_theta,
        partial_rotary_factor; its rope_type, like v4's rope_scaling, changes no count). Both
        given must agree. `partial`: the type's default share where it rotates part of each head;
        None where it rotates all of it (a share other than 1 is refused: transformers' model of
        that type cannot run it). -> {"rope_theta": ..., "rope_fraction": ...} for the preset."""
        nested = self._rope_parameters()
        base = self._rope_value(nested, "rope_theta", theta, 10000.0)
        share = self._rope_value(
            nested, "partial_rotary_factor", fraction, 1.0 if partial is None else partial
        )
        if partial is not None:
            return {"rope_theta": base, "rope_fraction": share}
        if share != 1.0:
            raise LLMCalcError(
                f"{self.where}: a partial_rotary_factor of {quote(share)} is not supported for "
                f"model_type {self.data.get('model_type')!r}, which rotates every head feature"
            )
        return {"rope_theta": base}

    def _rope_parameters(self) -> dict[str, Any]:
        value = self.data.get("rope_parameters")
        if value is None:
            return {}
        value = typed(self.where, "rope_parameters", value)
        if value and all(isinstance(v, dict) for v in value.values()):
            # one per layer type (Gemma 3): the full-attention layers' base, which RoPE FLOPs
            # and memory do not depend on, any more than on the local layers' base
            if "full_attention" not in value:
                raise LLMCalcError(
                    f"{self.where}: field 'rope_parameters' has one object per layer type "
                    f"({', '.join(quote(k) for k in value)}) and none for 'full_attention'"
                )
            value = value["full_attention"]
        if value.get("rope_type") is not None:
            typed(self.where, "rope_parameters.rope_type", value["rope_type"])
        return value

    def _rope_value(
        self, nested: dict[str, Any], key: str, names: tuple[str, ...], default: float
    ) -> float:
        inner = nested.get(key)
        if inner is not None:
            inner = typed(self.where, f"rope_parameters.{key}", inner)
        outer = next(((n, self.get(n, None)) for n in names if self.has(n)), None)
        if inner is not None and outer is not None and inner != outer[1]:
            raise LLMCalcError(
                f"{self.where}: field {outer[0]!r} = {quote(outer[1])} and "
                f"'rope_parameters.{key}' = {quote(inner)} disagree"
            )
        if inner is not None:
            return inner
        return default if outer is None else outer[1]

    def activation(self, name: str = "hidden_act", default: str = "silu", glu: bool = True) -> str:
        raw = self.get(name, default)
        if raw not in ACTIVATIONS:
            raise LLMCalcError(
                f"{self.where}: field {name!r} = {quote(raw)}: supported: {', '.join(ACTIVATIONS)}"
            )
        act = ACTIVATIONS[raw]
        return GLU[{"gelu_new": "gelu"}.get(act, act)] if glu else act


# HF activation names -> ours; a GLU model type turns silu/gelu into swiglu/geglu
ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_new",  # GPT-2's tanh GELU written op by op (what backward keeps differs)
    "gelu_fast": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
GLU = {"silu": "swiglu", "gelu": "geglu", "relu": "reglu"}


def language_model(f: Fields, model_type: str, extra: dict[str, Any] | None = None) -> Fields:
    """The `text_config` of a model with vision (gemma3, llama4), its fields as read; the vision
    tower and its projector are not counted, and a warning says so."""
    text = f.data.get("text_config")
    if not isinstance(text, dict):
        raise LLMCalcError(f"{f.where}: model_type {model_type!r} needs a 'text_config' object")
    print(
        f"Warning: {f.where}: only the language model (text_config) is counted, not the "
        "vision tower or its projector",
        file=sys.stderr,
    )
    return Fields({**(extra or {}), **text}, f"{f.where} text_config")
