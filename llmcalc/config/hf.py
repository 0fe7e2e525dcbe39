"""Hugging Face `config.json` -> the preset schema, offline. One small function per model_type
maps its field names to ours; anything it cannot map is an error that names it.

Sources: the `configuration_<type>.py` files of transformers (field names and defaults) and the
modelling files (which norms, biases and layouts each type uses).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmcalc.errors import LLMCalcError

# HF activation names -> ours; a GLU model type turns silu/gelu into swiglu/geglu
_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_new",
    "gelu_fast": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
_GLU = {"silu": "swiglu", "gelu": "geglu", "relu": "reglu"}


class _Fields:
    """Reads a config.json mapping; a missing required field is an error naming it."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def need(self, *names: str) -> Any:
        for name in names:
            if self.data.get(name) is not None:
                return self.data[name]
        raise LLMCalcError(
            f"{self.where}: missing field {names[0]!r} (needed for model_type "
            f"{self.data.get('model_type')!r})"
        )

    def get(self, name: str, default: Any) -> Any:
        value = self.data.get(name)
        return default if value is None else value

    def activation(self, name: str = "hidden_act", default: str = "silu", glu: bool = True) -> str:
        raw = self.get(name, default)
        if raw not in _ACTIVATIONS:
            raise LLMCalcError(
                f"{self.where}: field {name!r} = {raw!r}: supported: {', '.join(_ACTIVATIONS)}"
            )
        act = _ACTIVATIONS[raw]
        return _GLU[{"gelu_new": "gelu"}.get(act, act)] if glu else act


def _llama_like(f: _Fields, **extra: Any) -> dict[str, Any]:
    """LLaMA, Mistral, Qwen2, Gemma, OLMo 2: RMSNorm, gated MLP, RoPE, GQA."""
    heads = f.need("num_attention_heads")
    cfg = {
        "vocab_size": f.need("vocab_size"),
        "d_model": f.need("hidden_size"),
        "n_layers": f.need("num_hidden_layers"),
        "n_heads": heads,
        "n_kv_heads": f.get("num_key_value_heads", heads),
        "d_ff": f.need("intermediate_size"),
        "activation": f.activation(),
        "norm": "rmsnorm",
        "norm_eps": float(f.get("rms_norm_eps", 1e-6)),
        "position": "rope",
        "rope_theta": float(f.get("rope_theta", 10000.0)),
        "max_seq_len": f.get("max_position_embeddings", 4096),
        "tie_embeddings": bool(f.get("tie_word_embeddings", False)),
        "qkv_bias": bool(f.get("attention_bias", False)),
        "out_bias": bool(f.get("attention_bias", False)),
        "mlp_bias": bool(f.get("mlp_bias", False)),
    }
    if f.data.get("head_dim") is not None:
        cfg["head_dim"] = f.data["head_dim"]
    cfg.update(extra)
    return cfg


def _llama(f: _Fields) -> dict[str, Any]:
    # RMSNorm casts the normalised rows to the activation dtype before the weight (LlamaRMSNorm)
    return _llama_like(f, norm_cast="before_weight")


def _mistral(f: _Fields) -> dict[str, Any]:
    # a sliding window on every layer: 4096 when the field is absent (MistralConfig), none if null
    window = f.data["sliding_window"] if "sliding_window" in f.data else 4096
    return _llama_like(f, norm_cast="before_weight", sliding_window=window)


def _qwen2(f: _Fields) -> dict[str, Any]:
    # biases on q, k, v only; LLaMA's RMSNorm; with use_sliding_window, the layers from
    # max_window_layers on use the window (Qwen2Config.layer_types): every layer or none here
    layers = f.need("num_hidden_layers")
    window = None
    if f.get("use_sliding_window", False):
        first = f.get("max_window_layers", 28)
        if 0 < first < layers:
            raise LLMCalcError(
                f"{f.where}: use_sliding_window with max_window_layers = {first} windows layers "
                f"{first} to {layers - 1} only; llmcalc windows every layer or none"
            )
        window = f.get("sliding_window", 4096) if first == 0 else None
    return _llama_like(
        f, qkv_bias=True, out_bias=False, norm_cast="before_weight", sliding_window=window
    )


def _gemma(f: _Fields) -> dict[str, Any]:
    act = f.activation("hidden_activation", f.get("hidden_act", "gelu_pytorch_tanh"))
    return _llama_like(f, activation=act, tie_embeddings=bool(f.get("tie_word_embeddings", True)))


def _olmo2(f: _Fields) -> dict[str, Any]:
    # norms after attention and MLP (inside the residual), and over the whole q and k
    return _llama_like(f, norm_position="output", qk_norm="full")


def _gpt2(f: _Fields) -> dict[str, Any]:
    d = f.need("n_embd", "hidden_size")
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": d,
        "n_layers": f.need("n_layer", "num_hidden_layers"),
        "n_heads": f.need("n_head", "num_attention_heads"),
        "d_ff": f.get("n_inner", 4 * d),
        "activation": f.activation("activation_function", "gelu_new", glu=False),
        "norm": "layernorm",
        "norm_eps": float(f.get("layer_norm_epsilon", 1e-5)),
        "bias": True,
        "position": "learned",
        "max_seq_len": f.need("n_positions", "max_position_embeddings"),
        "tie_embeddings": bool(f.get("tie_word_embeddings", True)),
    }


def _gpt_neox(f: _Fields) -> dict[str, Any]:
    parallel = bool(f.get("use_parallel_residual", True))
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": f.need("hidden_size"),
        "n_layers": f.need("num_hidden_layers"),
        "n_heads": f.need("num_attention_heads"),
        "d_ff": f.need("intermediate_size"),
        "activation": f.activation(default="gelu", glu=False),
        "norm": "layernorm",
        "norm_eps": float(f.get("layer_norm_eps", 1e-5)),
        "block": "parallel" if parallel else "serial",
        "bias": bool(f.get("attention_bias", True)),
        "mlp_bias": True,
        "position": "rope",
        "rope_theta": float(f.get("rotary_emb_base", f.get("rope_theta", 10000.0))),
        "rope_fraction": float(f.get("rotary_pct", f.get("partial_rotary_factor", 1.0))),
        "max_seq_len": f.get("max_position_embeddings", 2048),
        "tie_embeddings": bool(f.get("tie_word_embeddings", False)),
    }


def _falcon(f: _Fields) -> dict[str, Any]:
    heads = f.need("num_attention_heads")
    new_arch = bool(f.get("new_decoder_architecture", False))
    if new_arch:
        kv_heads = f.get("num_kv_heads", heads)
    else:
        kv_heads = 1 if f.get("multi_query", True) else heads
    parallel = bool(f.get("parallel_attn", True))
    # the new architecture has two input norms (ln_attn, ln_mlp); the 7B one shares one
    block = "serial" if not parallel else ("parallel" if new_arch else "parallel_shared_norm")
    d = f.need("hidden_size")
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": d,
        "n_layers": f.need("num_hidden_layers", "n_layer"),
        "n_heads": heads,
        "n_kv_heads": kv_heads,
        "d_ff": f.get("ffn_hidden_size", 4 * d),
        "activation": "gelu",
        "norm": "layernorm",
        "norm_eps": float(f.get("layer_norm_epsilon", 1e-5)),
        "block": block,
        "bias": bool(f.get("bias", False)),
        "position": "alibi" if f.get("alibi", False) else "rope",
        "rope_theta": float(f.get("rope_theta", 10000.0)),
        "max_seq_len": f.get("max_position_embeddings", 2048),
        "tie_embeddings": bool(f.get("tie_word_embeddings", True)),
    }


def _phi(f: _Fields) -> dict[str, Any]:
    if f.get("qk_layernorm", False):
        raise LLMCalcError(f"{f.where}: field 'qk_layernorm' = true is not supported for phi")
    heads = f.need("num_attention_heads")
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": f.need("hidden_size"),
        "n_layers": f.need("num_hidden_layers"),
        "n_heads": heads,
        "n_kv_heads": f.get("num_key_value_heads", heads),
        "d_ff": f.need("intermediate_size"),
        "activation": f.activation(default="gelu_new", glu=False),
        "norm": "layernorm",
        "norm_eps": float(f.get("layer_norm_eps", 1e-5)),
        "block": "parallel_shared_norm",  # one input norm feeds attention and MLP
        "bias": True,
        "lm_head_bias": True,
        "position": "rope",
        "rope_theta": float(f.get("rope_theta", 10000.0)),
        "rope_fraction": float(f.get("partial_rotary_factor", 0.5)),
        "max_seq_len": f.get("max_position_embeddings", 2048),
        "tie_embeddings": bool(f.get("tie_word_embeddings", False)),
    }


MODEL_TYPES: dict[str, Callable[[_Fields], dict[str, Any]]] = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "gemma": _gemma,
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
    "falcon": _falcon,
    "phi": _phi,
    "olmo2": _olmo2,
}


def is_hf_config(path: Path) -> bool:
    return path.name == "config.json" or path.suffix == ".json" or (path / "config.json").is_file()


def read_hf_config(path: Path) -> dict[str, Any]:
    """A config.json (or a folder holding one) -> a preset mapping."""
    file = path / "config.json" if path.is_dir() else path
    where = str(file)
    if not file.is_file():
        raise LLMCalcError(f"{where}: file not found")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LLMCalcError(f"{where}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LLMCalcError(f"{where}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise LLMCalcError(f"{where}: expected a JSON object, found {type(data).__name__}")
    model_type = data.get("model_type")
    if model_type not in MODEL_TYPES:
        raise LLMCalcError(
            f"{where}: model_type {model_type!r} is not supported; supported: "
            f"{', '.join(MODEL_TYPES)}"
        )
    fields = _Fields(data, where)
    mapped = MODEL_TYPES[model_type](fields)
    _check_consistent(fields, mapped)
    name = data.get("_name_or_path") or (file.parent.name if file.parent.name else model_type)
    return {"name": str(name), "source": where, **mapped, **_weight_dtype(data)}


_TORCH_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _weight_dtype(data: dict[str, Any]) -> dict[str, str]:
    """The weights' dtype, `dtype` (transformers' newer name) or `torch_dtype`, when it is one
    llmcalc builds weights in; any other value ('auto', float64) gives none, and the memory
    default stays bf16. Common to every model_type."""
    for key in ("dtype", "torch_dtype"):
        value = data.get(key)
        if isinstance(value, str) and value.removeprefix("torch.") in _TORCH_DTYPES:
            return {"dtype": _TORCH_DTYPES[value.removeprefix("torch.")]}
    return {}


def _check_consistent(f: _Fields, mapped: dict[str, Any]) -> None:
    """Fields that state the same size twice must agree."""
    head_dim = f.data.get("head_dim")
    d, heads = mapped["d_model"], mapped["n_heads"]
    if head_dim is None and d % heads:
        raise LLMCalcError(
            f"{f.where}: hidden_size = {d} is not divisible by num_attention_heads = {heads} "
            "and no head_dim is given"
        )
    kv = mapped.get("n_kv_heads")
    if kv is not None and heads % kv:
        raise LLMCalcError(
            f"{f.where}: num_key_value_heads = {kv} does not divide num_attention_heads = {heads}"
        )
