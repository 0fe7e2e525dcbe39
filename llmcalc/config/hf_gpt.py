"""config.json -> preset fields for the GPT-style model_types (LayerNorm with bias, biases on
the linears, a plain 2-matrix MLP): gpt2 (whose reader gpt_bigcode builds on) and those added
for issue 12: gptj, bloom, opt, gpt_bigcode (hf.py registers them in MODEL_TYPES).

Each function follows transformers' configuration_<type>.py (field names, and the class default
where a field is missing) and modeling_<type>.py; a field that changes a count, a FLOP or a byte is
mapped, or refused with one error naming it.
"""

from __future__ import annotations

import math
from typing import Any

from llmcalc.config.hf_fields import Fields
from llmcalc.config.sizes import scaled
from llmcalc.errors import LLMCalcError, quote


def gpt2_like(f: Fields, activation: str = "gelu_new") -> dict[str, Any]:
    """GPT-2 (and gpt_bigcode's base): LayerNorm, biases everywhere, a 2-matrix MLP of n_inner
    (4·d by default), learned positions, tied embeddings by default."""
    d = f.need("n_embd", "hidden_size")
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": d,
        "n_layers": f.need("n_layer", "num_hidden_layers"),
        "n_heads": f.need("n_head", "num_attention_heads"),
        "d_ff": f.get("n_inner", 4 * d),
        "activation": f.activation("activation_function", activation, glu=False),
        "norm": "layernorm",
        "norm_eps": f.get("layer_norm_epsilon", 1e-5),
        "bias": True,
        "fused_qkv": True,  # c_attn
        "position": "learned",
        "max_seq_len": f.need("n_positions", "max_position_embeddings"),
        "tie_embeddings": f.get("tie_word_embeddings", True),
    }


def _gptj(f: Fields) -> dict[str, Any]:
    # one LayerNorm feeds attention and the MLP, both added to x (a parallel block); q, k, v and
    # out_proj without bias, the MLP (fc_in, fc_out) and the LM head with one; RoPE (base 10000,
    # fixed in the modelling file) on the first rotary_dim features of each head (64 by default)
    d, heads = f.need("n_embd", "hidden_size"), f.need("n_head", "num_attention_heads")
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": d,
        "n_layers": f.need("n_layer", "num_hidden_layers"),
        "n_heads": heads,
        "d_ff": f.get("n_inner", 4 * d),
        "activation": f.activation("activation_function", "gelu_new", glu=False),
        "norm": "layernorm",
        "norm_eps": f.get("layer_norm_epsilon", 1e-5),
        "block": "parallel_shared_norm",
        "attn_upcast": True,  # GPTJAttention._attn: q and k in fp32 for the scores
        "qkv_bias": False,
        "out_bias": False,
        "mlp_bias": True,
        "lm_head_bias": True,
        "position": "rope",
        "rope_fraction": _share(f, f.get("rotary_dim", 64), d, heads),
        "max_seq_len": f.get("n_positions", 2048),
        "tie_embeddings": f.get("tie_word_embeddings", False),
    }


def _share(f: Fields, rotary: int, d: int, heads: int) -> float:
    """GPT-J's absolute rotary_dim as the share of head_dim that rope_fraction states: the float
    whose int(head_dim · share) gives rotary_dim back."""
    head_dim = d // heads
    if d % heads or rotary > head_dim or rotary % 2:
        raise LLMCalcError(
            f"{f.where}: field 'rotary_dim' = {quote(rotary)}: must be even and at most the "
            f"head size n_embd / n_head = {d} / {heads}"
        )
    share = rotary / head_dim
    while scaled(head_dim, share) < rotary:  # rounded just under rotary / head_dim: step up
        share = math.nextafter(share, 1.0)
    return share


def _bloom(f: Fields) -> dict[str, Any]:
    # a LayerNorm on the embeddings (word_embeddings_layernorm), ALiBi, LayerNorm with bias,
    # biases on every linear (query_key_value: q, k and v fused), an MLP of 4·hidden_size
    # always, tied embeddings by default
    f.refuse(
        "apply_residual_connection_post_layernorm",
        "the residual stream would carry the norms' outputs, not the blocks' inputs",
    )
    d = f.need("hidden_size", "n_embed")
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": d,
        "n_layers": f.need("n_layer", "num_hidden_layers"),
        "n_heads": f.need("n_head", "num_attention_heads"),
        "d_ff": 4 * d,
        "activation": "gelu_recomputed",  # BloomGelu: GeLUFunction, Megatron's bias_gelu
        "norm": "layernorm",
        "norm_eps": f.get("layer_norm_epsilon", 1e-5),
        "embedding_norm": True,
        "bias": True,
        "fused_qkv": True,
        "position": "alibi",
        "tie_embeddings": f.get("tie_word_embeddings", True),
    }


def _opt(f: Fields) -> dict[str, Any]:
    # learned positions with 2 extra rows (OPTLearnedPositionalEmbedding's offset), biases on
    # every linear unless enable_bias is false, ReLU; do_layer_norm_before: pre-norm with a final
    # norm (unless _remove_final_layer_norm), else post-norm without one;
    # layer_norm_elementwise_affine false: LayerNorms without weight and bias
    d = f.need("hidden_size")
    projected = f.get("word_embed_proj_dim", d)
    if projected != d:
        raise LLMCalcError(
            f"{f.where}: field 'word_embed_proj_dim' = {projected} differs from hidden_size = "
            f"{d}: the embeddings' project_in and project_out matrices are not modelled"
        )
    pre = f.get("do_layer_norm_before", True)
    affine = f.get("layer_norm_elementwise_affine", True)
    return {
        "vocab_size": f.need("vocab_size"),
        "d_model": d,
        "n_layers": f.need("num_hidden_layers"),
        "n_heads": f.need("num_attention_heads"),
        "d_ff": f.need("ffn_dim"),
        "activation": f.activation("activation_function", "relu", glu=False),
        "norm": "layernorm",
        "norm_position": "pre" if pre else "post",
        **({} if affine else {"norm_affine": False}),
        "final_norm": pre and not f.get("_remove_final_layer_norm", False),
        "bias": f.get("enable_bias", True),
        "position": "learned",
        "position_offset": 2,
        "max_seq_len": f.get("max_position_embeddings", 2048),
        "tie_embeddings": f.get("tie_word_embeddings", True),
    }


def _gpt_bigcode(f: Fields) -> dict[str, Any]:
    # GPT-2 with multi-query attention (multi_query, on by default: c_attn makes q and one k, v
    # head); scale_attn_weights false: scores unscaled
    cfg = gpt2_like(f, activation="gelu_pytorch_tanh")
    if f.get("multi_query", True):
        cfg["n_kv_heads"] = 1
    if not f.get("scale_attn_weights", True):
        cfg["attention_multiplier"] = 1.0
    return cfg


GPT_TYPES = {"gptj": _gptj, "bloom": _bloom, "opt": _opt, "gpt_bigcode": _gpt_bigcode}
