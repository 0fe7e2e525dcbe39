"""Hugging Face `config.json` -> the preset schema, offline. One small function per model_type
maps its field names to ours; anything it cannot map is an error that names it. The types here
and in hf_llama.py (the LLaMA-like ones), hf_gpt.py (the GPT-style ones) and hf_moe.py (the
mixtures of experts) make MODEL_TYPES.
transformers v4 and v5 files are both read: v5 moves rope_theta and partial_rotary_factor into
rope_parameters (Fields.rope reads either) and writes dtype beside torch_dtype.

Sources: the `configuration_<type>.py` files of transformers (field names and defaults) and the
modelling files (which norms, biases and layouts each type uses).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmcalc.config.hf_fields import Fields as _Fields
from llmcalc.config.hf_fields import language_model, typed, warn_unmodelled
from llmcalc.config.hf_gpt import GPT_TYPES, gpt2_like
from llmcalc.config.hf_llama import LLAMA_TYPES
from llmcalc.config.hf_llama import llama_like as _llama_like
from llmcalc.config.hf_moe import MOE_MAPPED, MOE_TYPES, MOE_WINDOWED
from llmcalc.config.hf_window import nullable, qwen_window, window_fields
from llmcalc.config.reading import load_json, read_text, shown
from llmcalc.errors import LLMCalcError, quote

# transformers' LlamaRMSNorm (and its copies in Mistral, Qwen2, Qwen3, Phi-3, Granite) casts the
# normalised rows to the activation dtype before the weight: bf16 backward keeps them in bf16
LLAMA_NORM = {"norm_cast": "before_weight"}


def _llama(f: _Fields) -> dict[str, Any]:
    return _llama_like(f, **LLAMA_NORM)


def _mistral(f: _Fields) -> dict[str, Any]:
    # every layer behind the window; MistralConfig defaults it to 4096 when the file has none,
    # and num_key_value_heads to 8
    return _llama_like(f, kv_heads=8, **LLAMA_NORM, **window_fields(f, default_window=4096))


def _qwen2(f: _Fields) -> dict[str, Any]:
    # biases on q, k, v only
    return _llama_like(
        f, kv_heads=32, qkv_bias=True, out_bias=False, **LLAMA_NORM, **qwen_window(f)
    )


def _gemma(f: _Fields) -> dict[str, Any]:
    """Gemma: RMSNorm scaled by 1 + w, embeddings × sqrt(d_model), tied, GeGLU."""
    act = f.activation("hidden_activation", f.get("hidden_act", "gelu_pytorch_tanh"))
    tied = f.get("tie_word_embeddings", True)
    return _llama_like(
        f, activation=act, tie_embeddings=tied, norm_offset=True, scale_embeddings=True
    )


def _gemma2(f: _Fields) -> dict[str, Any]:
    """Gemma 2: norms before and after each sublayer, soft-capped scores and logits, every other
    layer (0, 2, ...) local (Gemma2Config's defaults where the file is silent)."""
    return {
        **_gemma(f),
        "norm_position": "sandwich",
        "attn_softcap": nullable(f, "attn_logit_softcapping", 50.0),
        "logit_softcap": nullable(f, "final_logit_softcapping", 30.0),
        **window_fields(f, default_window=4096, pattern=2),
    }


# Gemma3TextConfig's defaults: the Hub's gemma-3 files leave most of them out.
_GEMMA3_DEFAULTS = {
    "vocab_size": 262208,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,  # the global layers'; the local ones' (10,000) changes no count
}


def _gemma3_text(f: _Fields) -> dict[str, Any]:
    """Gemma 3 (text): Gemma 2's layout with q/k norms over head_dim, no soft-caps by default,
    and every `sliding_window_pattern`-th layer global (6)."""
    defaults = dict(_GEMMA3_DEFAULTS)
    if "rope_parameters" in f.data:  # v5 states the thetas there
        del defaults["rope_theta"]
    f = _Fields({**defaults, **{k: v for k, v in f.data.items() if v is not None}}, f.where)
    pattern = f.get("sliding_window_pattern", f.get("_sliding_window_pattern", 6))
    return {
        **_gemma(f),
        "norm_position": "sandwich",
        "qk_norm": "head",
        "attn_softcap": nullable(f, "attn_logit_softcapping", None),
        "logit_softcap": nullable(f, "final_logit_softcapping", None),
        **window_fields(f, default_window=4096, pattern=pattern),
    }


def _gemma3(f: _Fields) -> dict[str, Any]:
    """Gemma 3 with vision: the language model is its `text_config` (the vision tower and the
    projector are not counted; a warning says so)."""
    return _gemma3_text(language_model(f, "gemma3"))


def _olmo2(f: _Fields) -> dict[str, Any]:
    # norms after attention and MLP (inside the residual), and over the whole q and k
    return _llama_like(f, norm_position="output", qk_norm="full")


def _gpt_neox(f: _Fields) -> dict[str, Any]:
    parallel = f.get("use_parallel_residual", True)
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": f.need("hidden_size"),
        "n_layers": f.need("num_hidden_layers"),
        "n_heads": f.need("num_attention_heads"),
        "d_ff": f.need("intermediate_size"),
        "activation": f.activation(default="gelu", glu=False),
        "norm": "layernorm",
        "norm_eps": f.get("layer_norm_eps", 1e-5),
        "block": "parallel" if parallel else "serial",
        "bias": f.get("attention_bias", True),
        "fused_qkv": True,  # query_key_value
        "mlp_bias": True,
        "position": "rope",
        # v4: rotary_emb_base (older) or rope_theta, rotary_pct; v5: rope_parameters
        **f.rope(
            partial=1.0,
            theta=("rotary_emb_base", "rope_theta"),
            fraction=("rotary_pct", "partial_rotary_factor"),
        ),
        "max_seq_len": f.get("max_position_embeddings", 2048),
        "tie_embeddings": f.get("tie_word_embeddings", False),
    }


def _falcon(f: _Fields) -> dict[str, Any]:
    heads = f.need("num_attention_heads")
    new_arch = f.get("new_decoder_architecture", False)
    if new_arch:
        kv_heads = f.get("num_kv_heads", heads)
    else:
        kv_heads = 1 if f.get("multi_query", True) else heads
    parallel = f.get("parallel_attn", True)
    # the new architecture has two input norms (ln_attn, ln_mlp) unless num_ln_in_parallel_attn
    # is 1 (Falcon 2 11B); the 7B one shares one
    two_norms = new_arch and f.get("num_ln_in_parallel_attn", 2) == 2
    block = "serial" if not parallel else ("parallel" if two_norms else "parallel_shared_norm")
    d = f.need("hidden_size")
    alibi = f.get("alibi", False)
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": d,
        "n_layers": f.need("num_hidden_layers", "n_layer"),
        "n_heads": heads,
        "n_kv_heads": kv_heads,
        "d_ff": f.get("ffn_hidden_size", 4 * d),
        "activation": "gelu",
        "norm": "layernorm",
        "norm_eps": f.get("layer_norm_epsilon", 1e-5),
        "block": block,
        "bias": f.get("bias", False),
        "fused_qkv": True,  # query_key_value
        "position": "alibi" if alibi else "rope",
        **({} if alibi else f.rope()),
        "max_seq_len": f.get("max_position_embeddings", 2048),
        "tie_embeddings": f.get("tie_word_embeddings", True),
    }


def _phi(f: _Fields) -> dict[str, Any]:
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
        "norm_eps": f.get("layer_norm_eps", 1e-5),
        "block": "parallel_shared_norm",  # one input norm feeds attention and MLP
        "bias": True,
        "lm_head_bias": True,
        # qk_layernorm: one LayerNorm (with bias) over head_dim for q, one for k
        "qk_norm": "head" if f.get("qk_layernorm", False) else "none",
        "position": "rope",
        **f.rope(partial=0.5),
        "max_seq_len": f.get("max_position_embeddings", 2048),
        "tie_embeddings": f.get("tie_word_embeddings", False),
    }


# The families whose mapping reads the sliding window (hf_window.py); others warn about it.
WINDOWED = (
    "mistral",
    "qwen2",
    "qwen3",
    "phi3",
    "starcoder2",
    "gemma2",
    "gemma3_text",
    "gemma3",
    *MOE_WINDOWED,
)

MODEL_TYPES: dict[str, Callable[[_Fields], dict[str, Any]]] = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "gemma": _gemma,
    "gemma2": _gemma2,
    "gemma3_text": _gemma3_text,
    "gemma3": _gemma3,
    "gpt2": gpt2_like,
    "gpt_neox": _gpt_neox,
    "falcon": _falcon,
    "phi": _phi,
    "olmo2": _olmo2,
    **LLAMA_TYPES,
    **GPT_TYPES,
    **MOE_TYPES,
}


def read_hf_config(path: Path) -> dict[str, Any]:
    """A config.json (or a folder holding one) -> a preset mapping, named by its _name_or_path,
    else by the file's stem (a config.json by its folder). Fields that are on and not modelled
    are named in a warning on stderr."""
    file = path / "config.json" if path.suffix != ".json" else path
    where = shown(file)
    data = load_json(read_text(file), where)
    if not isinstance(data, dict):
        raise LLMCalcError(f"{where}: expected a JSON object, found {type(data).__name__}")
    model_type = data.get("model_type")
    if model_type is None:
        raise LLMCalcError(
            f"{where}: missing field 'model_type'; supported: {', '.join(MODEL_TYPES)}"
        )
    typed(where, "model_type", model_type)
    if model_type not in MODEL_TYPES:
        raise LLMCalcError(
            f"{where}: model_type {quote(model_type)} is not supported; supported: "
            f"{', '.join(MODEL_TYPES)}"
        )
    fields = _Fields(data, where)
    mapped = MODEL_TYPES[model_type](fields)
    _check_consistent(fields, mapped)
    warn_unmodelled(
        where,
        model_type,
        data,
        window_mapped=model_type in WINDOWED,
        mapped=MOE_MAPPED.get(model_type, ()),
    )
    name = fields.get("_name_or_path", "")
    if not name:
        folder = file.parent.name if file.parent.name else model_type
        name = folder if file.name == "config.json" else file.stem
    return {"name": name, "source": str(file), **mapped, **_weight_dtype(data)}


_TORCH_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _weight_dtype(data: dict[str, Any]) -> dict[str, str]:
    """The weights' dtype, `dtype` (transformers' newer name) or `torch_dtype`, when it is one
    llmcalc builds weights in; any other value ('auto', float64) gives none, and the memory
    default stays bf16. Common to every model_type."""
    for key in ("dtype", "torch_dtype"):
        value = data.get(key)
        if isinstance(value, str) and value.removeprefix("torch.") in _TORCH_DTYPES:
            return {"dtype": _TORCH_DTYPES[value.removeprefix("torch.")]}
        if value is not None and value != "auto":
            print(
                f"Warning: field {key!r} = {quote(value)}: not a dtype llmcalc builds weights in "
                f"({', '.join(_TORCH_DTYPES)}); inference memory uses bf16 unless --dtype says",
                file=sys.stderr,
            )
            return {}
    return {}


def _check_consistent(f: _Fields, mapped: dict[str, Any]) -> None:
    """Fields that state the same size twice must agree."""
    head_dim = mapped.get("head_dim")
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
