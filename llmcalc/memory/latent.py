"""Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434, section 2.1) in memory: what its KV
cache holds, two ways. No torch here.

    latent        per position and layer kv_lora_rank + qk_rope_head_dim elements: the normed
                  latent and the one RoPE key head every query head shares; what DeepSeek's
                  inference code, vLLM, SGLang and transformers 5 cache (and llmcalc's KVCache)
    decompressed  n_heads·(qk_nope_head_dim + qk_rope_head_dim) key and n_heads·v_head_dim value
                  elements: the keys and values after kv_b_proj, what transformers 4 and naive
                  implementations cache
"""

from __future__ import annotations

from llmcalc.config.experts import cached_sizes, is_latent
from llmcalc.config.schema import ModelConfig

KV_FORMS = ("latent", "decompressed")


def kv_sizes(cfg: ModelConfig, form: str = "latent") -> tuple[int, int, int]:
    """(heads, key features, value features) per cached position and layer. Without MLA both
    forms are the n_kv_heads keys and values."""
    if form == "decompressed" and is_latent(cfg):
        return cfg.n_heads, cfg.qk_nope_head_dim + cfg.qk_rope_head_dim, cfg.v_head_dim
    return cached_sizes(cfg)


def kv_elements(cfg: ModelConfig, form: str = "latent") -> int:
    """Elements cached per token and layer."""
    heads, key, value = kv_sizes(cfg, form)
    return heads * (key + value)


def latent_refusal(cfg: ModelConfig, option: str) -> str:
    """Why --mha, --gqa N and --mqa do not apply to an MLA model, with both of its figures."""
    h, nope, rope, v = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    return (
        f"{option}: {cfg.name} uses multi-head latent attention (kv_lora_rank), which caches a "
        f"latent, not per-head keys and values: kv_lora_rank + qk_rope_head_dim = "
        f"{cfg.kv_lora_rank} + {rope} = {kv_elements(cfg):,} elements per token and layer "
        f"(decompressed, n_heads·(qk_nope_head_dim + qk_rope_head_dim + v_head_dim) = "
        f"{h}·({nope} + {rope} + {v}) = {kv_elements(cfg, 'decompressed'):,}); `llmcalc memory` "
        "without it shows both"
    )
