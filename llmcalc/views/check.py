"""`llmcalc check`: formula against counted, parameters and FLOPs, for the presets and a grid of
variants that turns each axis of the schema on and off."""

from __future__ import annotations

from dataclasses import dataclass

from llmcalc.config.schema import ModelConfig
from llmcalc.flops.analysis import FlopsAnalysis, analyze_flops
from llmcalc.params.analysis import ParamsAnalysis, analyze_params

_GRID_BASE = dict(
    vocab_size=96, d_model=64, n_layers=2, n_heads=8, max_seq_len=32, activation="swiglu"
)


# Each entry flips one axis (or a pair that interacts) away from the base config.
_GRID_AXES: list[dict] = [
    {},
    {"bias": True},
    {"qkv_bias": True},
    {"out_bias": True},
    {"mlp_bias": True},
    {"bias": True, "activation": "gelu"},
    {"lm_head_bias": True},
    {"tie_embeddings": True},
    {"tie_embeddings": True, "lm_head_bias": True},
    {"norm": "layernorm"},
    {"norm": "layernorm", "norm_bias": False},
    *[
        {"block": block, "norm_position": position, "norm": "layernorm"}
        for block in ("serial", "parallel", "parallel_shared_norm")
        for position in ("pre", "post", "sandwich", "output")
    ],
    {"norm_cast": "before_weight"},
    {"norm_cast": "before_weight", "qk_norm": "head", "norm_position": "sandwich"},
    {"qk_norm": "head"},
    {"qk_norm": "full"},
    {"qk_norm": "full", "norm": "layernorm", "n_kv_heads": 2},
    *[{"position": p} for p in ("learned", "sinusoidal", "alibi", "none")],
    *[
        {"activation": a}
        for a in ("relu", "gelu", "gelu_new", "gelu_recomputed", "silu", "geglu", "reglu")
    ],
    {"fused_qkv": True},  # GPT-2's c_attn: no rotation, q, k, v all slices
    {"fused_qkv": True, "n_kv_heads": 2, "rope_fraction": 0.5},  # GPT-NeoX
    {"fused_qkv": True, "n_kv_heads": 2, "rope_concat": True},  # Phi-3
    {"fused_qkv": True, "qk_norm": "head", "qkv_bias": True},
    {"norm": "layernorm", "layernorm_compute": "fp32", "norm_affine": False},  # OLMo 1
    {"norm": "layernorm", "layernorm_compute": "fp32", "qk_norm": "head"},
    {"norm": "layernorm", "layernorm_compute": "ops", "norm_bias": False},  # Cohere
    {"norm": "layernorm", "layernorm_compute": "ops", "qk_norm": "per_head", "n_kv_heads": 2},
    {"attn_upcast": True, "n_kv_heads": 2},  # GPT-J (in eager attention)
    {"n_kv_heads": 2},
    {"n_kv_heads": 1},
    {"n_kv_heads": 2, "sliding_window": 8},  # CHECK_SEQ 16: past the window
    {"head_dim": 12},
    {"head_dim": 12, "n_kv_heads": 2, "qk_norm": "full"},
    {"norm_affine": False},
    {"norm_affine": False, "norm": "layernorm", "qk_norm": "head"},  # OLMo 1's norms
    {"embedding_norm": True, "norm": "layernorm", "position": "alibi"},  # BLOOM
    {"embedding_norm": True, "position": "learned", "position_offset": 2},  # OPT's offset
    {"qk_norm": "per_head", "rope_fraction": 0.5},  # StableLM
    {"qk_norm": "per_head", "norm": "layernorm", "norm_bias": False, "n_kv_heads": 2},
    {"qk_norm": "per_head", "norm": "layernorm", "block": "parallel_shared_norm"},  # Cohere
    # Granite's multipliers; Cohere's logit scale on a tied head in a parallel block
    {"embedding_multiplier": 12.0, "residual_multiplier": 0.22, "attention_multiplier": 0.015625},
    {
        "logit_scale": 0.0625,
        "tie_embeddings": True,
        "residual_multiplier": 0.5,
        "block": "parallel",
    },
    {"multiple_of": 32, "ffn_multiplier": 1.3},
    {"d_ff": 100},
    {"final_norm": False},
    {"sliding_window": 8},
    {"sliding_window": 8, "sliding_window_pattern": 2, "n_kv_heads": 2},
    {"sliding_window": 8, "attn_softcap": 30.0, "logit_softcap": 20.0},
    {"scale_embeddings": True, "norm_offset": True, "norm_position": "sandwich"},
    {"norm_offset": True, "qk_norm": "head"},  # Gemma 3: its offset norm keeps q's layout
]


_MOE = {"n_experts": 4, "experts_per_token": 2, "d_ff_expert": 24}
_MLA = {"kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 6}
# Mixture of experts and latent attention, one axis each: `llmcalc check` runs them after the
# grid (parameters and FLOPs), and tests/memory checks their memory against the trace.
EXPERT_AXES: list[dict] = [
    _MOE,
    {**_MOE, "n_experts": 3, "n_shared_experts": 1, "shared_expert_gate": True},  # Qwen2-MoE
    {**_MOE, "activation": "gelu", "expert_bias": True, "router_bias": True},
    {**_MOE, "n_layers": 3, "first_dense_layers": 1, "n_shared_experts": 1},  # DeepSeek's layout
    {**_MOE, "moe_every": 2, "router_score": "topk_sigmoid", "normalize_topk": True},  # Llama 4
    {  # gpt-oss: sinks (eager attention), biases, alternating windows
        **_MOE,
        "router_score": "topk_softmax",
        "expert_bias": True,
        "router_bias": True,
        "attention_sinks": True,
        "n_kv_heads": 2,
        "sliding_window": 8,
        "sliding_window_pattern": 2,
    },
    {**_MLA, "q_lora_rank": 24},  # q_lora: v_head_dim below q's head size, SDPA's math path
    {**_MLA, "v_head_dim": 12, "bias": True},  # biases on kv_a and o, none on q_proj
    {**_MLA, "v_head_dim": 12},  # one head size: the fused kernel
    {**_MLA, "v_head_dim": 12, "norm": "layernorm", "sliding_window": 8},
    {  # DeepSeek-V3
        **_MLA,
        **_MOE,
        "q_lora_rank": 24,
        "router_score": "sigmoid",
        "score_correction_bias": True,
        "normalize_topk": True,
        "routed_scaling": 2.5,
        "n_shared_experts": 1,
        "n_layers": 3,
        "first_dense_layers": 1,
    },
]


def grid_configs(axes_list: list[dict] | None = None) -> list[ModelConfig]:
    """The grid's configs (_GRID_AXES), or those of another list of axes (EXPERT_AXES)."""
    configs = []
    for axes in _GRID_AXES if axes_list is None else axes_list:
        label = ",".join(f"{k}={v}" for k, v in axes.items()) or "base"
        data = {**_GRID_BASE, **axes, "name": f"grid[{label}]"}
        configs.append(ModelConfig.from_dict(data, origin=f"grid[{label}]"))
    return configs


@dataclass(frozen=True)
class CheckResult:
    params: ParamsAnalysis
    flops: FlopsAnalysis  # a small step: matmul FLOPs are exact at any size, and traced fast

    @property
    def exact(self) -> bool:
        return self.params.exact and not self.flops.mismatches


CHECK_BATCH, CHECK_SEQ = 2, 16


def check_configs(configs: list[ModelConfig]) -> list[CheckResult]:
    """Parameters per component, and matmul FLOPs of the forward, the backward and the forward
    recomputed under full checkpointing (with torch's early stop off and on), formula against
    counted."""
    return [
        CheckResult(
            analyze_params(cfg),
            analyze_flops(cfg, batch=CHECK_BATCH, seq=CHECK_SEQ, recompute="full"),
        )
        for cfg in configs
    ]
