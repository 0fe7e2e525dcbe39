"""Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434, section 2.1; transformers'
DeepseekV2/V3Attention): keys and values are decompressed from a small latent, which is what the
KV cache holds.

    q      = q_b(norm(q_a(x)))  (or q_proj(x) without q_lora_rank)      h·(nope + rope)
    latent, k_rope = kv_a(x)                                              kv_lora_rank + rope
    k, v   = kv_b(norm(latent))                                           h·(nope + v_head_dim)
    q·k    = q_nope·k_nope + RoPE(q_rope)·RoPE(k_rope), k_rope one head shared by every query head

This is the computation as trained: the keys and values of every cached position are
decompressed again at each forward (transformers does the same). Absorbing kv_b into the query
and the output projection (for decode) is a FLOP convention in flops/formula.py.
"""

from __future__ import annotations

import torch

from llmcalc.config.schema import ModelConfig
from llmcalc.model.attention import Attention, KVCache
from llmcalc.model.layers import Linear, apply_rope, make_norm


class LatentAttention(Attention):
    def __init__(self, cfg: ModelConfig, layer: int = 0, impl: str = "sdpa") -> None:
        torch.nn.Module.__init__(self)
        self._setup(cfg, layer, impl)
        d, heads = cfg.d_model, cfg.n_heads
        if cfg.q_lora_rank is None:  # never a bias here (qkv_bias is on q_a_proj, kv_a_proj)
            self.q_proj = Linear(d, cfg.q_dim, bias=False)
        else:
            self.q_a_proj = Linear(d, cfg.q_lora_rank, bias=cfg.qkv_bias)
            self.q_a_norm = make_norm(cfg, cfg.q_lora_rank)
            self.q_b_proj = Linear(cfg.q_lora_rank, cfg.q_dim, bias=False)
        self.kv_a_proj = Linear(d, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=cfg.qkv_bias)
        self.kv_a_norm = make_norm(cfg, cfg.kv_lora_rank)
        kv_width = heads * (cfg.qk_nope_head_dim + cfg.v_head_dim)
        self.kv_b_proj = Linear(cfg.kv_lora_rank, kv_width, bias=False)
        self.o_proj = Linear(heads * cfg.v_head_dim, d, bias=cfg.out_bias)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        cfg = self.cfg
        batch, seq, _ = x.shape
        heads, nope, rot = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
        start = cache.length if cache is not None else 0
        if cfg.q_lora_rank is None:
            q = self.q_proj(x)
        else:
            q = self.q_b_proj(self.q_a_norm(self.q_a_proj(x)))
        q = q.view(batch, seq, heads, nope + rot).transpose(1, 2)
        q_nope, q_rope = q.split((nope, rot), dim=-1)
        latent, k_rope = self.kv_a_proj(x).split((cfg.kv_lora_rank, rot), dim=-1)
        latent = self.kv_a_norm(latent).unsqueeze(1)  # (B, 1, T, kv_lora_rank)
        k_rope = k_rope.unsqueeze(1)  # (B, 1, T, rope): one head for all
        if rope is not None:
            q_rope, k_rope = apply_rope(q_rope, *rope), apply_rope(k_rope, *rope)
        first_key = 0
        if cache is not None:
            latent, k_rope, first_key = cache.update(self.layer, latent, k_rope)
        keys = latent.shape[2]
        kv = self.kv_b_proj(latent.squeeze(1)).view(batch, keys, heads, nope + cfg.v_head_dim)
        k_nope, v = kv.transpose(1, 2).split((nope, cfg.v_head_dim), dim=-1)
        k = torch.cat((k_nope, k_rope.expand(batch, heads, keys, rot)), dim=-1)
        q = torch.cat((q_nope, q_rope), dim=-1)
        out = self._attend(q, k, v, start, first_key)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, heads * cfg.v_head_dim))
