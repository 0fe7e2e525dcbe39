"""config.json -> preset fields for the LLaMA-like model_types (RoPE, a gated or plain MLP, no
position table): the shared reader `llama_like`, and the types added for issue 12: qwen3, phi3,
olmo, granite, cohere, stablelm, starcoder2 (hf.py registers them in MODEL_TYPES).

Each function follows transformers' configuration_<type>.py (field names, and the class default
where a field is missing) and modeling_<type>.py (which norms, biases and layouts the type builds);
a field that changes a count, a FLOP or a byte is mapped, or refused with one error naming it.
"""

from __future__ import annotations

from typing import Any

from llmcalc.config.hf_fields import Fields
from llmcalc.config.hf_window import qwen_window, window_fields
from llmcalc.errors import LLMCalcError, quote


def llama_like(
    f: Fields, partial: float | None = None, kv_heads: int | None = None, **extra: Any
) -> dict[str, Any]:
    """LLaMA, Mistral, Qwen2, Gemma, OLMo 2 and the types below: RMSNorm, gated MLP, RoPE, GQA.
    `partial`: the type's default rotary share where it rotates part of each head (else RoPE
    covers all of it); `kv_heads`: the type's default num_key_value_heads where it has one (else
    num_attention_heads); `extra` overrides the mapping."""
    heads = f.need("num_attention_heads")
    cfg = {
        "vocab_size": f.need("vocab_size"),
        "d_model": f.need("hidden_size"),
        "n_layers": f.need("num_hidden_layers"),
        "n_heads": heads,
        "n_kv_heads": f.get("num_key_value_heads", kv_heads or heads),
        "d_ff": f.need("intermediate_size"),
        "activation": f.activation(),
        "norm": "rmsnorm",
        "norm_eps": f.get("rms_norm_eps", 1e-6),
        "position": "rope",
        **f.rope(partial),
        "max_seq_len": f.get("max_position_embeddings", 4096),
        "tie_embeddings": f.get("tie_word_embeddings", False),
        "qkv_bias": f.get("attention_bias", False),
        "out_bias": f.get("attention_bias", False),
        "mlp_bias": f.get("mlp_bias", False),
    }
    if f.has("head_dim"):
        cfg["head_dim"] = f.get("head_dim", None)
    cfg.update(extra)
    return cfg


def _qwen3(f: Fields) -> dict[str, Any]:
    # Qwen2 plus RMSNorms of q and k over head_dim (one weight shared by the heads), attention_bias
    # on q, k, v and o alike, and head_dim 128 unless given; a window only with use_sliding_window,
    # as Qwen2's
    return llama_like(
        f,
        kv_heads=32,
        qk_norm="head",
        head_dim=f.get("head_dim", 128),
        norm_cast="before_weight",  # LlamaRMSNorm's copy
        **qwen_window(f),
    )


def _phi3(f: Fields) -> dict[str, Any]:
    # qkv_proj is q, k, v fused (fused_qkv); gate_up_proj is gate and up fused, counted as
    # llmcalc's gate_proj and up_proj (its slices keep what the two outputs keep); no biases;
    # partial rotary from partial_rotary_factor (Phi-4-mini); sliding_window (2047 in
    # Phi-3-mini-4k) is every layer's window
    return llama_like(
        f,
        **window_fields(f),
        norm_cast="before_weight",  # LlamaRMSNorm's copy
        partial=1.0,
        norm_eps=f.get("rms_norm_eps", 1e-5),
        fused_qkv=True,
        rope_concat=True,  # Phi3's apply_rotary_pos_emb cats rotated and passed parts always
        qkv_bias=False,
        out_bias=False,
        mlp_bias=False,
    )


def _olmo(f: Fields) -> dict[str, Any]:
    # OLMo 1: LayerNorm without weight or bias (OlmoLayerNorm, eps 1e-5 fixed); no MLP biases
    f.refuse(
        "clip_qkv",
        "clamping q, k and v adds element-wise work and saved tensors that llmcalc does not count",
    )
    # computed on an fp32 copy of its input (OlmoLayerNorm)
    return llama_like(
        f,
        norm="layernorm",
        norm_affine=False,
        layernorm_compute="fp32",
        norm_eps=1e-5,
        mlp_bias=False,
    )


def _granite(f: Fields) -> dict[str, Any]:
    # LLaMA with four scalars (each 1.0 by default, multiplied all the same): embeddings times
    # embedding_multiplier, each branch times residual_multiplier before its residual add, scores
    # times attention_multiplier (in place of 1/sqrt(head_dim)), logits divided by logits_scaling
    # (logit_scale = 1 / logits_scaling)
    scaling = f.get("logits_scaling", 1.0)
    if not scaling > 0:
        raise LLMCalcError(
            f"{f.where}: field 'logits_scaling' = {quote(scaling)}: must be a positive number"
        )
    return llama_like(
        f,
        embedding_multiplier=f.get("embedding_multiplier", 1.0),
        residual_multiplier=f.get("residual_multiplier", 1.0),
        attention_multiplier=f.get("attention_multiplier", 1.0),
        logit_scale=1 / scaling,
        norm_cast="before_weight",  # LlamaRMSNorm's copy
    )


def _cohere(f: Fields) -> dict[str, Any]:
    # a parallel block with one input norm (CohereLayerNorm: a LayerNorm without bias) whose
    # output feeds attention and the MLP, both added to x; use_qk_norm: a LayerNorm of q and k
    # over head_dim with a (heads, head_dim) weight; logits times logit_scale; tied by default
    return llama_like(
        f,
        norm="layernorm",
        norm_bias=False,
        layernorm_compute="ops",  # CohereLayerNorm: mean and variance op by op, in fp32
        norm_eps=f.get("layer_norm_eps", 1e-5),
        block="parallel_shared_norm",
        qk_norm="per_head" if f.get("use_qk_norm", False) else "none",
        mlp_bias=False,
        logit_scale=f.get("logit_scale", 0.0625),
        tie_embeddings=f.get("tie_word_embeddings", True),
    )


def _stablelm(f: Fields) -> dict[str, Any]:
    # LayerNorm with bias; biases on q, k, v with use_qkv_bias, none on o or the MLP; partial
    # rotary (0.25 by default); qk_layernorm: a bias-free LayerNorm per head over head_dim;
    # use_parallel_residual: one input norm feeds attention and the MLP (no second norm)
    parallel = f.get("use_parallel_residual", False)
    return llama_like(
        f,
        partial=0.25,
        kv_heads=32,
        head_dim=None,  # hidden_size / num_attention_heads, whatever head_dim says
        norm="layernorm",
        norm_eps=f.get("layer_norm_eps", 1e-5),
        qkv_bias=f.get("use_qkv_bias", False),
        out_bias=False,
        mlp_bias=False,
        qk_norm="per_head" if f.get("qk_layernorm", False) else "none",
        block="parallel_shared_norm" if parallel else "serial",
    )


def _starcoder2(f: Fields) -> dict[str, Any]:
    # LayerNorm with bias, a plain 2-matrix MLP (c_fc, c_proj: up_proj, down_proj here), biases
    # on every linear unless use_bias is false, tied embeddings by default, GQA (2 kv heads by
    # default); sliding_window is the window of every layer
    bias = f.get("use_bias", True)
    return llama_like(
        f,
        **window_fields(f),
        kv_heads=2,
        activation=f.activation(default="gelu_pytorch_tanh", glu=False),
        norm="layernorm",
        norm_eps=f.get("norm_epsilon", 1e-5),
        qkv_bias=bias,
        out_bias=bias,
        mlp_bias=bias,
        tie_embeddings=f.get("tie_word_embeddings", True),
    )


LLAMA_TYPES = {
    "qwen3": _qwen3,
    "phi3": _phi3,
    "olmo": _olmo,
    "granite": _granite,
    "cohere": _cohere,
    "stablelm": _stablelm,
    "starcoder2": _starcoder2,
}
