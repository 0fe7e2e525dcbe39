"""Causal self-attention (MHA, GQA, MQA; fused SDPA or eager) and the KV cache it fills when
decoding incrementally."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmcalc.config.schema import ModelConfig
from llmcalc.model.layers import Linear, PerHeadNorm, alibi_slopes, apply_rope, make_norm


class KVCache:
    """Keys and values of every layer for `batch` sequences of up to `max_len` tokens, filled by a
    prefill and extended by decode steps (the layout of gpt-fast's cache). Its bytes are exactly
    2 · n_layers · batch · n_kv_heads · max_len · head_dim · element size (memory/formula.py: kv_cache_bytes):
    with GQA or MQA only the n_kv_heads shared heads are stored."""

    def __init__(
        self, cfg: ModelConfig, batch: int, max_len: int, device: str, dtype: torch.dtype
    ) -> None:
        shape = (batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.length = 0  # tokens already stored; the next token's position

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys and values; return all keys and values so far."""
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


class Attention(nn.Module):
    """Causal self-attention with n_heads query heads sharing n_kv_heads key/value heads
    (MHA when equal, MQA at 1, GQA between) and an explicit head_dim.

    impl 'sdpa' calls torch's fused scaled_dot_product_attention (it keeps O(T) per head for the
    backward pass); 'eager' spells the same maths out and materialises the T x T scores."""

    def __init__(self, cfg: ModelConfig, layer: int = 0, impl: str = "sdpa") -> None:
        super().__init__()
        self.cfg, self.layer, self.impl = cfg, layer, impl
        self.q_proj = Linear(cfg.d_model, cfg.q_dim, bias=cfg.qkv_bias)
        self.k_proj = Linear(cfg.d_model, cfg.kv_dim, bias=cfg.qkv_bias)
        self.v_proj = Linear(cfg.d_model, cfg.kv_dim, bias=cfg.qkv_bias)
        self.o_proj = Linear(cfg.q_dim, cfg.d_model, bias=cfg.out_bias)
        if cfg.qk_norm == "head":  # one norm over head_dim, shared by all heads (Qwen3, Gemma 3)
            self.q_norm = make_norm(cfg, cfg.head_dim)
            self.k_norm = make_norm(cfg, cfg.head_dim)
        elif cfg.qk_norm == "full":  # over the whole q and k projections (OLMo 2)
            self.q_norm = make_norm(cfg, cfg.q_dim)
            self.k_norm = make_norm(cfg, cfg.kv_dim)
        elif cfg.qk_norm == "per_head":  # over head_dim, a weight per head (StableLM, Cohere)
            self.q_norm = PerHeadNorm(cfg, cfg.n_heads)
            self.k_norm = PerHeadNorm(cfg, cfg.n_kv_heads)
        # the scores' scale: attention_multiplier (Granite), else SDPA's own 1/sqrt(head_dim)
        self.scale = cfg.attention_multiplier

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x (B, T, d) -> (B, T, d); `rope` is the model's (cos, sin) for these positions."""
        cfg = self.cfg
        batch, seq, _ = x.shape
        start = cache.length if cache is not None else 0  # position of this chunk's first token
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if cfg.qk_norm == "full":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(batch, seq, cfg.n_heads, cfg.head_dim)
        k = k.view(batch, seq, cfg.n_kv_heads, cfg.head_dim)
        if cfg.qk_norm == "per_head":  # on (B, T, H, d_h): q and k keep the projections' layout
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.view(batch, seq, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        if cfg.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)

        mask = self._mask(seq, start, q.dtype, q.device)
        if self.impl == "eager":
            out = eager_attention(q, k, v, mask, self.scale)
        else:
            gqa = cfg.n_kv_heads != cfg.n_heads
            causal = mask is None and start == 0  # SDPA's own causal mask is exact then
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa, scale=self.scale
            )
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, cfg.q_dim))

    def _mask(
        self, seq: int, start: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor | None:
        """Queries at positions start..start+seq-1 see keys 0..their own position. None where
        SDPA needs no mask (plain causal from position 0, or one decode query seeing all keys);
        a boolean mask (True = attend) or, for ALiBi, an additive bias otherwise."""
        alibi = self.cfg.position == "alibi"
        if not alibi and self.impl == "sdpa" and (start == 0 or seq == 1):
            return None
        query_pos = torch.arange(start, start + seq, device=device).view(-1, 1)
        key_pos = torch.arange(start + seq, device=device).view(1, -1)
        allowed = key_pos <= query_pos
        if not alibi:
            return allowed
        distance = (query_pos - key_pos).to(dtype)
        bias = -alibi_slopes(self.cfg.n_heads, device).to(dtype).view(-1, 1, 1) * distance
        return bias.masked_fill(~allowed, float("-inf"))


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(head_dim) + mask) v (or q kᵀ · scale), spelled out: the (B, heads,
    T, T) scores and probabilities are real tensors, and GQA's shared k and v are copied to every
    query head."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if scale is None:
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    else:
        scores = (q @ k.transpose(-2, -1)) * scale
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask
    return scores.softmax(dim=-1) @ v
