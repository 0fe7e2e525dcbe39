"""The one configurable decoder-only Transformer that every llmcalc figure is counted from.

Read top to bottom: norms and positions, attention, MLP, the block (where norm_position and the
serial/parallel layout live), the full model, and `build_model`. Each config field maps to one
branch here; to add a variant: a field in config.py, a branch here, a term in formulas.py, a test.

Parameter names are part of the output (the per-tensor table) and are mapped to components in
count.py: tok_embeddings, pos_embeddings, layers.N.{attn,mlp}.*, layers.N.*_norm, final_norm, lm_head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from llmcalc.config import ModelConfig

# --- layers that skip their init on meta ------------------------------------------------------


class SkipInitOnMeta:
    """Meta tensors hold no values, so initialising them is pure cost: for 126 layers of Linear
    about half of the build time, and Embedding's normal_ runs a Python meta kernel whose first
    call imports torch._dynamo (about 0.9 s and 100 MB). On a real device init runs as usual."""

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class Linear(SkipInitOnMeta, nn.Linear):
    pass


class Embedding(SkipInitOnMeta, nn.Embedding):
    pass


# --- norms ------------------------------------------------------------------------------------


def make_norm(cfg: ModelConfig, size: int | None = None) -> nn.Module:
    size = cfg.d_model if size is None else size
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(size, eps=cfg.norm_eps)
    return nn.LayerNorm(size, eps=cfg.norm_eps, bias=cfg.norm_bias)


def maybe_norm(cfg: ModelConfig, wanted: bool) -> nn.Module:
    """A norm where the layout has one, else Identity (no parameters, no name in the table)."""
    return make_norm(cfg) if wanted else nn.Identity()


# --- positions (only `learned` has parameters: it lives in Transformer) -------------------------


# Position tables are computed in forward for the positions in use, never stored: they hold no
# parameters, cost O(T·d) to make, and building the model then runs no tensor op at all on meta.


def rope_rotate(x: torch.Tensor, theta: float, offset: int) -> torch.Tensor:
    """Rotary embedding (Su et al. 2021) on x of shape (B, heads, T, head_dim), half-split layout
    as in GPT-NeoX and Hugging Face LLaMA."""
    head_dim = x.shape[-1]
    exponents = torch.arange(0, head_dim, 2, device=x.device, dtype=torch.float32) / head_dim
    inv_freq = theta**-exponents
    positions = torch.arange(offset, offset + x.shape[-2], device=x.device, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)  # (T, head_dim/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def sinusoidal_table(seq: int, d_model: int, device: torch.device) -> torch.Tensor:
    """The fixed position table of Vaswani et al. 2017, section 3.5 (no parameters)."""
    position = torch.arange(seq, dtype=torch.float32, device=device).unsqueeze(1)
    steps = torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
    div = torch.exp(steps * (-math.log(1e4) / d_model))
    table = torch.zeros(seq, d_model, device=device)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
    return table


def alibi_slopes(n_heads: int, device: torch.device) -> torch.Tensor:
    """ALiBi head slopes (Press et al. 2022): a geometric sequence, interleaved past a power of 2."""
    closest = 2 ** math.floor(math.log2(n_heads))
    base = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    extra = [2 ** (-4 * (2 * i + 1) / closest) for i in range(n_heads - closest)]
    return torch.tensor(base + extra, device=device)


# --- attention -------------------------------------------------------------------------------


class KVCache:
    """Keys and values of every layer for `batch` sequences of up to `max_len` tokens, filled by a
    prefill and extended by decode steps (the layout of gpt-fast's cache). Its bytes are exactly
    2 · n_layers · batch · n_kv_heads · max_len · head_dim · element size (memory.kv_cache_bytes):
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

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        cfg = self.cfg
        batch, seq, _ = x.shape
        start = cache.length if cache is not None else 0  # position of this chunk's first token
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if cfg.qk_norm == "full":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(batch, seq, cfg.n_heads, cfg.head_dim).transpose(1, 2)
        k = k.view(batch, seq, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        v = v.view(batch, seq, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        if cfg.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        if cfg.position == "rope" and cfg.rotary_dim == cfg.head_dim:
            q = rope_rotate(q, cfg.rope_theta, start)
            k = rope_rotate(k, cfg.rope_theta, start)
        elif cfg.position == "rope":  # partial rotary (GPT-NeoX, Phi): the rest passes through
            r = cfg.rotary_dim
            q = torch.cat((rope_rotate(q[..., :r], cfg.rope_theta, start), q[..., r:]), dim=-1)
            k = torch.cat((rope_rotate(k[..., :r], cfg.rope_theta, start), k[..., r:]), dim=-1)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)

        mask = self._mask(seq, start, q.dtype, q.device)
        if self.impl == "eager":
            out = eager_attention(q, k, v, mask)
        else:
            gqa = cfg.n_kv_heads != cfg.n_heads
            causal = mask is None and start == 0  # SDPA's own causal mask is exact then
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa
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
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(head_dim) + mask) v, spelled out: the (B, heads, T, T) scores and
    probabilities are real tensors, and GQA's shared k and v are copied to every query head."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask
    return scores.softmax(dim=-1) @ v


# --- MLP -------------------------------------------------------------------------------------

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}
_GLU_GATES = {"swiglu": F.silu, "geglu": F.gelu, "reglu": F.relu}  # Shazeer 2020, GLU variants


class MLP(nn.Module):
    """down(act(up(x))) with two matrices, or down(act(gate(x)) * up(x)) with three for *GLU."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.glu = cfg.is_glu
        self.act = _GLU_GATES[cfg.activation] if self.glu else _ACTIVATIONS[cfg.activation]
        if self.glu:
            self.gate_proj = Linear(cfg.d_model, cfg.d_ff, bias=cfg.mlp_bias)
        self.up_proj = Linear(cfg.d_model, cfg.d_ff, bias=cfg.mlp_bias)
        self.down_proj = Linear(cfg.d_ff, cfg.d_model, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.glu:
            return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(self.act(self.up_proj(x)))


# --- the block: norm_position x block layout -------------------------------------------------


class Block(nn.Module):
    """One layer. Where its norms sit (f = attention or MLP):
        pre       x + f(norm(x))           input norms
        post      norm(x + f(x))           a norm after the residual add
        sandwich  x + norm(f(norm(x)))     input and output norms
        output    x + norm(f(x))           output norms
    serial runs attention then MLP; parallel adds both to the same x, each branch with its own
    norms, except the post norm, of which there is one over x + attn + mlp;
    parallel_shared_norm has one norm wherever parallel has two (the output norm is then applied
    to attn + mlp)."""

    def __init__(self, cfg: ModelConfig, layer: int = 0, attention: str = "sdpa") -> None:
        super().__init__()
        self.parallel = cfg.block != "serial"
        self.shared_norm = shared = cfg.block == "parallel_shared_norm"
        position = cfg.norm_position
        has_input = position in ("pre", "sandwich")
        has_output = position in ("sandwich", "output")

        self.attn_norm = maybe_norm(cfg, has_input)
        self.attn = Attention(cfg, layer, attention)
        self.attn_out_norm = maybe_norm(cfg, has_output)
        self.mlp_norm = self.attn_norm if shared else maybe_norm(cfg, has_input)
        self.mlp = MLP(cfg)
        self.mlp_out_norm = maybe_norm(cfg, has_output and not shared)
        if self.parallel:
            self.post_norm = maybe_norm(cfg, position == "post")
        else:
            self.attn_post_norm = maybe_norm(cfg, position == "post")
            self.mlp_post_norm = maybe_norm(cfg, position == "post")

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if not self.parallel:
            h = self.attn_post_norm(x + self.attn_out_norm(self.attn(self.attn_norm(x), cache)))
            return self.mlp_post_norm(h + self.mlp_out_norm(self.mlp(self.mlp_norm(h))))
        attn_in = self.attn_norm(x)
        attn_out = self.attn(attn_in, cache)
        mlp_out = self.mlp(attn_in if self.shared_norm else self.mlp_norm(x))
        if self.shared_norm:  # one output norm (if any) over the sum of both branches
            branches = self.attn_out_norm(attn_out + mlp_out)
        else:
            branches = self.attn_out_norm(attn_out) + self.mlp_out_norm(mlp_out)
        return self.post_norm(x + branches)


# --- the model -------------------------------------------------------------------------------


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, attention: str = "sdpa") -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.position == "learned":
            self.pos_embeddings = Embedding(cfg.max_seq_len, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, i, attention) for i in range(cfg.n_layers))
        self.final_norm = maybe_norm(cfg, cfg.final_norm)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=cfg.lm_head_bias)
        if cfg.tie_embeddings:  # one tensor, counted once (named_parameters de-duplicates)
            self.lm_head.weight = self.tok_embeddings.weight
        # Full activation checkpointing: each block keeps only its input for the backward pass
        # and runs its forward again there (torch.utils.checkpoint, non-reentrant).
        self.checkpointing = False

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab), or the mean cross-entropy loss when targets are given. With a
        cache, the tokens continue the sequences it holds (prefill when it is empty, then one
        token per decode step) and their keys and values are added to it."""
        seq = tokens.shape[1]
        start = cache.length if cache is not None else 0
        x = self.tok_embeddings(tokens)
        if self.cfg.position == "learned":
            x = x + self.pos_embeddings(torch.arange(start, start + seq, device=tokens.device))
        elif self.cfg.position == "sinusoidal":
            table = sinusoidal_table(start + seq, self.cfg.d_model, x.device)
            x = x + table[start:].to(x.dtype)
        for layer in self.layers:
            if self.checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, cache, use_reentrant=False)
            else:
                x = layer(x, cache)
        if cache is not None:
            cache.length += seq
        logits = self.lm_head(self.final_norm(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def build_model(
    cfg: ModelConfig,
    device: str = "meta",
    dtype: torch.dtype = torch.float32,
    attention: str = "sdpa",
) -> Transformer:
    """The model on `device`. On meta, tensors have shapes and no storage: any size is free, and
    PyTorch's init functions are no-ops there. Callers that build on a real device check first
    that the weights fit (resources.check_weights_fit)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in its dtype: no fp32 copy first, and works on fakes
    try:
        with torch.device(device):
            return Transformer(cfg, attention)
    finally:
        torch.set_default_dtype(previous)
