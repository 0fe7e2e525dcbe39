"""Writes the mixture-of-experts config.json files the tests read (run from the repository root
with transformers 5 installed; the tests that only map them need no transformers):

  tests/data/hf/moe/tiny/<model_type>.json   TINY below, as transformers 5 saves it:
                                             AutoConfig.for_model(type, **fields).save_pretrained
                                             (v5 fields: layer_types, rope_parameters, aliases
                                             such as qwen3_moe's num_local_experts)
  tests/data/hf/moe/published/<name>.json     PUBLISHED below, the config.json of the full-size
                                             model as published on the Hugging Face Hub (the
                                             fields that size the model verbatim; auto_map and
                                             quantization_config dropped)

Each tiny config exercises what its type has: GQA, a sliding or chunked window shorter than the
tests' prefill, dense layers beside MoE ones (first_k_dense_replace, decoder_sparse_step with
mlp_only_layers, interleave_moe_layer_step), shared experts, biases, MLA with and without a
query latent. The Hub cannot be reached from here: the published files are written from the
published values (Llama 4 Scout's attn_temperature_tuning is 4 there, which transformers 5's
strict config rejects: written as true, which changes no count).
"""

import json
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_SMALL = dict(vocab_size=256, hidden_size=64, num_attention_heads=4, max_position_embeddings=128)
TINY = {
    "mixtral": dict(
        _SMALL, intermediate_size=96, num_hidden_layers=2, num_key_value_heads=2,
        num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
    ),
    "qwen2_moe": dict(
        _SMALL, intermediate_size=160, moe_intermediate_size=32,
        shared_expert_intermediate_size=48, num_hidden_layers=4, num_key_value_heads=2,
        num_experts=4, num_experts_per_tok=2, decoder_sparse_step=2, mlp_only_layers=[3],
        norm_topk_prob=True,
    ),
    "qwen3_moe": dict(
        _SMALL, intermediate_size=160, moe_intermediate_size=32, head_dim=24,
        num_hidden_layers=2, num_key_value_heads=2, num_experts=8, num_experts_per_tok=2,
        norm_topk_prob=True, attention_bias=True,
    ),
    "deepseek_v2": dict(
        _SMALL, intermediate_size=160, moe_intermediate_size=32, num_hidden_layers=3,
        n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2, first_k_dense_replace=1,
        q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
        v_head_dim=12, mlp_bias=True, routed_scaling_factor=1.0,
    ),
    "deepseek_v3": dict(
        _SMALL, intermediate_size=160, moe_intermediate_size=32, num_hidden_layers=3,
        num_key_value_heads=4, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
        n_group=4, topk_group=2, first_k_dense_replace=1, q_lora_rank=48, kv_lora_rank=32,
        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12,
    ),
    "gpt_oss": dict(
        _SMALL, intermediate_size=48, head_dim=16, num_hidden_layers=4, num_key_value_heads=2,
        num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
    ),
    "llama4_text": dict(
        _SMALL, intermediate_size=32, intermediate_size_mlp=96, head_dim=16,
        num_hidden_layers=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=1,
        interleave_moe_layer_step=2, attention_chunk_size=8, no_rope_layer_interval=4,
    ),
}  # fmt: skip

_GPT_OSS = {
    "architectures": ["GptOssForCausalLM"],
    "attention_bias": True,
    "attention_dropout": 0.0,
    "eos_token_id": 200002,
    "experts_per_token": 4,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2880,
    "initial_context_length": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 2880,
    "max_position_embeddings": 131072,
    "model_type": "gpt_oss",
    "num_attention_heads": 64,
    "num_experts_per_tok": 4,
    "num_key_value_heads": 8,
    "output_router_logits": False,
    "pad_token_id": 199999,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "factor": 32.0,
        "original_max_position_embeddings": 4096,
        "rope_type": "yarn",
        "truncate": False,
    },
    "rope_theta": 150000,
    "router_aux_loss_coef": 0.9,
    "sliding_window": 128,
    "swiglu_limit": 7.0,
    "tie_word_embeddings": False,
    "use_cache": True,
    "vocab_size": 201088,
}
_SCOUT_TEXT = {
    "attention_bias": False,
    "attention_chunk_size": 8192,
    "attention_dropout": 0.0,
    "attn_scale": 0.1,
    "attn_temperature_tuning": True,
    "bos_token_id": 200000,
    "eos_token_id": [200001, 200007, 200008],
    "floor_scale": 8192,
    "for_llm_compressor": False,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 5120,
    "initializer_range": 0.02,
    "interleave_moe_layer_step": 1,
    "intermediate_size": 8192,
    "intermediate_size_mlp": 16384,
    "max_position_embeddings": 262144,
    "model_type": "llama4_text",
    "moe_layers": list(range(48)),
    "no_rope_layers": [1, 1, 1, 0] * 12,
    "num_attention_heads": 40,
    "num_experts_per_tok": 1,
    "num_hidden_layers": 48,
    "num_key_value_heads": 8,
    "num_local_experts": 16,
    "output_router_logits": False,
    "pad_token_id": 200018,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "router_aux_loss_coef": 0.001,
    "router_jitter_noise": 0.0,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_qk_norm": True,
    "vocab_size": 202048,
}
PUBLISHED = {
    "Mixtral-8x7B-v0.1": {
        "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
        "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": False,
        "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
        "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "use_cache": True, "vocab_size": 32000,
    },
    "Qwen1.5-MoE-A2.7B": {
        "architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0,
        "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151643,
        "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
        "intermediate_size": 5632, "max_position_embeddings": 8192, "max_window_layers": 21,
        "model_type": "qwen2_moe", "moe_intermediate_size": 1408, "norm_topk_prob": False,
        "num_attention_heads": 16, "num_experts": 60, "num_experts_per_tok": 4,
        "num_hidden_layers": 24, "num_key_value_heads": 16, "output_router_logits": False,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
        "shared_expert_intermediate_size": 5632, "sliding_window": 32768,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 151936,
    },
    "Qwen3-30B-A3B": {
        "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 151643, "decoder_sparse_step": 1,
        "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 2048,
        "initializer_range": 0.02, "intermediate_size": 6144, "max_position_embeddings": 40960,
        "max_window_layers": 48, "mlp_only_layers": [], "model_type": "qwen3_moe",
        "moe_intermediate_size": 768, "norm_topk_prob": True, "num_attention_heads": 32,
        "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
        "num_key_value_heads": 4, "output_router_logits": False, "rms_norm_eps": 1e-06,
        "rope_scaling": None, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
        "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
    },
    "DeepSeek-V2-Lite": {
        "architectures": ["DeepseekV2ForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "aux_loss_alpha": 0.001, "bos_token_id": 100000,
        "eos_token_id": 100001, "first_k_dense_replace": 1, "hidden_act": "silu",
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 10944,
        "kv_lora_rank": 512, "max_position_embeddings": 163840, "model_type": "deepseek_v2",
        "moe_intermediate_size": 1408, "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64,
        "n_shared_experts": 2, "norm_topk_prob": False, "num_attention_heads": 16,
        "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_key_value_heads": 16,
        "pretraining_tp": 1, "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                         "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                         "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax",
        "seq_aux": True, "tie_word_embeddings": False, "topk_group": 1, "topk_method": "greedy",
        "torch_dtype": "bfloat16", "use_cache": True, "v_head_dim": 128, "vocab_size": 102400,
    },
    "DeepSeek-V3": {
        "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "aux_loss_alpha": 0.001, "bos_token_id": 0, "eos_token_id": 1,
        "ep_size": 1, "first_k_dense_replace": 3, "hidden_act": "silu", "hidden_size": 7168,
        "initializer_range": 0.02, "intermediate_size": 18432, "kv_lora_rank": 512,
        "max_position_embeddings": 163840, "model_type": "deepseek_v3",
        "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256,
        "n_shared_experts": 1, "norm_topk_prob": True, "num_attention_heads": 128,
        "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
        "num_nextn_predict_layers": 1, "pretraining_tp": 1, "q_lora_rank": 1536,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                         "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                         "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
        "seq_aux": True, "tie_word_embeddings": False, "topk_group": 4, "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16", "use_cache": True, "v_head_dim": 128, "vocab_size": 129280,
    },
    "gpt-oss-20b": {
        **_GPT_OSS, "num_hidden_layers": 24, "num_local_experts": 32,
        "layer_types": ["sliding_attention", "full_attention"] * 12,
    },
    "Llama-4-Scout-17B-16E-text": _SCOUT_TEXT,
    "Llama-4-Scout-17B-16E": {
        "architectures": ["Llama4ForConditionalGeneration"], "boi_token_index": 200080,
        "eoi_token_index": 200081, "image_token_index": 200092, "model_type": "llama4",
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "text_config": _SCOUT_TEXT,
        "vision_config": {
            "attention_dropout": 0.0, "hidden_act": "gelu", "hidden_size": 1408,
            "image_size": 336, "initializer_range": 0.02, "intermediate_size": 5632,
            "model_type": "llama4_vision_model", "multi_modal_projector_bias": False,
            "norm_eps": 1e-05, "num_attention_heads": 16, "num_channels": 3,
            "num_hidden_layers": 34, "patch_size": 14, "pixel_shuffle_ratio": 0.5,
            "projector_dropout": 0.0, "projector_input_dim": 4096, "projector_output_dim": 4096,
            "rope_theta": 10000, "vision_feature_layer": -1,
            "vision_feature_select_strategy": "default", "vision_output_dim": 4096,
        },
    },
}  # fmt: skip


def saved(config) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        return json.loads((Path(folder) / "config.json").read_text())


def main() -> None:
    from transformers import AutoConfig

    (HERE / "tiny").mkdir(exist_ok=True)
    (HERE / "published").mkdir(exist_ok=True)
    for model_type, fields in TINY.items():
        config = AutoConfig.for_model(model_type, **fields)
        (HERE / "tiny" / f"{model_type}.json").write_text(
            json.dumps(saved(config), indent=2) + "\n"
        )
    for name, fields in PUBLISHED.items():
        (HERE / "published" / f"{name}.json").write_text(json.dumps(fields, indent=2) + "\n")


if __name__ == "__main__":
    main()
