"""Causal self-attention (MHA, GQA, MQA; fused SDPA or eager) and the KV cache it fills when
decoding incrementally."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmcalc.config.experts import cached_sizes
from llmcalc.config.schema import ModelConfig
from llmcalc.config.window import cached_positions, is_local
from llmcalc.model.layers import Linear, PerHeadNorm, alibi_slopes, apply_rope, make_norm


class KVCache:
    """Keys and values of every layer for `batch` sequences of up to `max_len` tokens, filled by a
    prefill and extended by decode steps (the layout of gpt-fast's cache). A global layer holds
    every position; a local layer (sliding window W) the last W − 1, as transformers' sliding
    cache does: all the next token needs beside its own. Its bytes are exactly
    2 · batch · n_kv_heads · head_dim · element size · Σ positions held
    (memory/formula.py: kv_cache_bytes): with GQA or MQA only the n_kv_heads shared heads. With
    latent attention it holds what DeepSeek's inference code and transformers 5 hold: the
    normed latent (kv_lora_rank) as the "key" and the one shared RoPE key head
    (qk_rope_head_dim) as the "value", per position."""

    def __init__(
        self, cfg: ModelConfig, batch: int, max_len: int, device: str, dtype: torch.dtype
    ) -> None:
        self.sizes = [
            cached_positions(cfg, is_local(cfg, layer), max_len) for layer in range(cfg.n_layers)
        ]
        heads, key_dim, value_dim = cached_sizes(cfg)
        self.keys = [
            torch.zeros((batch, heads, size, key_dim), device=device, dtype=dtype)
            for size in self.sizes
        ]
        self.values = [
            torch.zeros((batch, heads, size, value_dim), device=device, dtype=dtype)
            for size in self.sizes
        ]
        self.length = 0  # tokens already stored; the next token's position

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Store this layer's new keys and values; return the keys and values to attend to (the
        stored ones, then the new) and the position of the first of them."""
        keys, values, size = self.keys[layer], self.values[layer], self.sizes[layer]
        end = self.length + k.shape[2]
        if end <= size:  # room for every position so far: write in place
            keys[:, :, self.length : end] = k
            values[:, :, self.length : end] = v
            return keys[:, :, :end], values[:, :, :end], 0
        held = min(self.length, size)  # a local layer: the last `held` positions, in order
        k_all = torch.cat((keys[:, :, :held], k), dim=2) if held else k
        v_all = torch.cat((values[:, :, :held], v), dim=2) if held else v
        keys[:, :, :size] = k_all[:, :, -size:]
        values[:, :, :size] = v_all[:, :, -size:]
        return k_all, v_all, end - k_all.shape[2]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


class Attention(nn.Module):
    """Causal self-attention with n_heads query heads sharing n_kv_heads key/value heads
    (MHA when equal, MQA at 1, GQA between) and an explicit head_dim.

    impl 'sdpa' calls torch's fused scaled_dot_product_attention (it keeps O(T) per head for the
    backward pass); 'eager' spells the same maths out and materialises the T x T scores; 'math'
    runs SDPA's math path, which torch takes when no fused kernel accepts the call (transformers'
    Falcon: a materialised mask and one key/value head broadcast to every query head)."""

    def __init__(self, cfg: ModelConfig, layer: int = 0, impl: str = "sdpa") -> None:
        super().__init__()
        self._setup(cfg, layer, impl)
        if cfg.fused_qkv:  # one matrix, its output sliced into q, k and v (views)
            self.qkv_proj = Linear(cfg.d_model, cfg.q_dim + 2 * cfg.kv_dim, bias=cfg.qkv_bias)
        else:
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

    def _setup(self, cfg: ModelConfig, layer: int, impl: str) -> None:
        """What every attention shares: its layer, window, implementation and sinks."""
        self.cfg, self.layer = cfg, layer
        # soft-capped scores and sinks need them spelled out: SDPA has neither (transformers)
        spelled_out = cfg.attn_softcap is not None or cfg.attention_sinks
        self.impl = "eager" if spelled_out else impl
        self.local = is_local(cfg, layer)
        if cfg.attention_sinks:  # gpt-oss: one learned logit per head joins its softmax
            self.sinks = nn.Parameter(torch.zeros(cfg.n_heads))
        # the scores' scale: attention_multiplier (Granite), else SDPA's own 1/sqrt(head_dim)
        self.scale = cfg.attention_multiplier
        self.context = None  # context parallelism's key/value gather (parallel/context_plan.py)

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
        if cfg.fused_qkv:
            q, k, v = self.qkv_proj(x).split((cfg.q_dim, cfg.kv_dim, cfg.kv_dim), dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if cfg.qk_norm == "full":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(batch, seq, -1, cfg.head_dim)  # -1: the local heads under TP
        k = k.view(batch, seq, -1, cfg.head_dim)
        if cfg.qk_norm == "per_head":  # on (B, T, H, d_h): q and k keep the projections' layout
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.view(batch, seq, -1, cfg.head_dim).transpose(1, 2)
        if cfg.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope, cfg.rope_concat), apply_rope(k, *rope, cfg.rope_concat)
        first_key = 0  # position of the first key attended to
        if cache is not None:
            k, v, first_key = cache.update(self.layer, k, v)
        if self.context is not None:  # this rank's queries, the keys of every rank before it
            k, v, start = self.context(k, v)
        out = self._attend(q, k, v, start, first_key)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, first_key: int
    ) -> torch.Tensor:
        """softmax(q kᵀ · scale + mask) v over (B, heads, T, dims) with the mask this layer needs
        and its implementation: (B, heads, T, v's dims)."""
        cfg = self.cfg
        batch, _, seq, _ = q.shape
        mask = self._mask(seq, start, first_key, q.dtype, q.device)
        gqa = cfg.n_kv_heads != cfg.n_heads
        causal = mask is None and start == 0  # SDPA's own causal mask is exact then
        if self.impl == "math":  # SDPA's math path, taken explicitly (see memory/activations.py)
            out = torch.ops.aten._scaled_dot_product_attention_math(
                q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale, enable_gqa=gqa
            )[0]
        elif self.impl == "eager":
            sinks = getattr(self, "sinks", None)
            out = eager_attention(
                q, k, v, mask, self.scale, cfg.attn_softcap, cfg.attn_upcast, sinks
            )
        else:
            if mask is not None and mask.dtype == torch.bool:
                # as transformers hands it a mask: one per sequence, (B, 1, T, keys), and k and v
                # repeated for every query head (it uses enable_gqa only without a mask)
                mask = mask.expand(batch, 1, *mask.shape)
                if gqa:
                    k, v = repeat_kv(k, v, cfg.n_heads // cfg.n_kv_heads)
                    gqa = False
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa, scale=self.scale
            )
        return out

    def _mask(
        self, seq: int, start: int, first_key: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor | None:
        """Queries at positions start..start+seq-1 see keys first_key..their own position (in a
        local layer, only the last W of them). None where SDPA needs no mask (plain causal from
        position 0 within the window, or one decode query seeing all its keys); a boolean mask
        (True = attend) or, for ALiBi, an additive bias otherwise."""
        cfg, alibi = self.cfg, self.cfg.position == "alibi"
        # from W keys on, as transformers (it skips the mask only below the window's size)
        window_bites = self.local and start + seq - first_key >= cfg.sliding_window
        if not alibi and self.impl == "sdpa" and not window_bites and (start == 0 or seq == 1):
            return None
        query_pos = torch.arange(start, start + seq, device=device).view(-1, 1)
        key_pos = torch.arange(first_key, start + seq, device=device).view(1, -1)
        allowed = key_pos <= query_pos
        if self.local:
            allowed = allowed & (key_pos > query_pos - cfg.sliding_window)
        if not alibi:
            return allowed
        distance = (query_pos - key_pos).to(dtype)
        bias = -alibi_slopes(self.cfg.n_heads, device).to(dtype).view(-1, 1, 1) * distance
        return bias.masked_fill(~allowed, float("-inf"))


def repeat_kv(k: torch.Tensor, v: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GQA's shared key/value heads copied to each of their `groups` query heads (new tensors)."""
    if groups == 1:
        return k, v
    return k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    scale: float | None = None,
    softcap: float | None = None,
    upcast: bool = False,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(head_dim) + mask) v (or q kᵀ · scale), spelled out: the (B, heads,
    T, T) scores and probabilities are real tensors, and GQA's shared k and v are copied to every
    query head. With a softcap c the scores become c·tanh(scores / c) first (Gemma 2). The
    softmax runs in fp32 and its probabilities return to q's dtype, as transformers' eager
    attention writes it (eager_attention_forward in its Llama and every family since). With
    `upcast`, q and k are cast to fp32 first and the scores are fp32 (GPT-J). With `sinks` (one
    logit per head, gpt-oss) each row's softmax has one more column, dropped after it."""
    dtype = q.dtype
    k, v = repeat_kv(k, v, q.shape[1] // k.shape[1])
    if upcast:
        q, k = q.float(), k.float()
    if scale is None:
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    else:
        scores = (q @ k.transpose(-2, -1)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask
    if sinks is None:
        return scores.softmax(dim=-1, dtype=torch.float32).to(dtype) @ v
    sink = sinks.to(scores.dtype).view(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
    probs = torch.cat((scores, sink), dim=-1).softmax(dim=-1, dtype=torch.float32)
    return probs[..., :-1].to(dtype) @ v
