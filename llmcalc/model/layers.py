"""The model's building blocks: linear and embedding layers that skip their init on meta, the
norms, and the parameter-free position tables (RoPE, sinusoidal, ALiBi)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmcalc.config.schema import ModelConfig

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


class CastRMSNorm(nn.Module):
    """RMSNorm as Meta's LLaMA writes it (and transformers' Llama, Mistral, Qwen2): normalise in
    fp32, cast the normalised rows to the input dtype, then weight them in that dtype. In bf16 its
    backward keeps those rows in bf16, where nn.RMSNorm keeps them in fp32; in fp32 the two are
    the same computation."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.float()
        rows = rows * torch.rsqrt(rows.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * rows.to(x.dtype)


class OffsetRMSNorm(nn.Module):
    """Gemma's RMSNorm: x / rms(x) · (1 + w), computed in fp32 and cast back, with w starting at
    zero (transformers' GemmaRMSNorm). The same parameter count as RMSNorm's w."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).type_as(x)


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm run on an fp32 copy of its input and cast back (transformers' OLMo): in bf16
    its backward keeps the fp32 copy and fp32 statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


def ops_layer_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """LayerNorm over the last dimension written op by op in fp32, mean and variance apart, then
    weighted in fp32 and cast back (transformers' CohereLayerNorm; the weight may broadcast over
    more than the last dimension). Its backward keeps x − mean twice, the normalised rows and
    1/std: three fp32 copies of x where torch's kernel keeps x."""
    h = x.float()
    mean = h.mean(-1, keepdim=True)
    variance = (h - mean).pow(2).mean(-1, keepdim=True)
    h = (h - mean) * torch.rsqrt(variance + eps)
    if weight is not None:
        h = weight.float() * h
    return h.to(x.dtype)


class OpsLayerNorm(nn.LayerNorm):
    """LayerNorm as ops_layer_norm computes it (Cohere), with nn.LayerNorm's parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = ops_layer_norm(x, self.weight, self.eps)
        return out if self.bias is None else out + self.bias.float().to(x.dtype)


def make_norm(cfg: ModelConfig, size: int | None = None, affine: bool | None = None) -> nn.Module:
    """The config's norm over `size` features (d_model); without weight and bias where
    norm_affine is false (OLMo 1's LayerNorm), or where `affine` says so."""
    size = cfg.d_model if size is None else size
    affine = cfg.norm_affine if affine is None else affine
    if cfg.norm == "rmsnorm" and cfg.norm_offset and affine:
        return OffsetRMSNorm(size, cfg.norm_eps)
    if cfg.norm == "rmsnorm" and cfg.norm_cast == "before_weight" and affine:
        return CastRMSNorm(size, cfg.norm_eps)
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(size, eps=cfg.norm_eps, elementwise_affine=affine)
    layer_norm = {"native": nn.LayerNorm, "fp32": Fp32LayerNorm, "ops": OpsLayerNorm}
    cls = layer_norm[cfg.layernorm_compute]
    return cls(size, eps=cfg.norm_eps, elementwise_affine=affine, bias=cfg.norm_bias)


class PerHeadNorm(nn.Module):
    """A norm over head_dim with its own weight for each head, and no bias: a weight of shape
    (heads, head_dim), on q or k laid out (B, T, heads, head_dim). StableLM's qk_layernorm: one
    LayerNorm without bias per head, each on its slice, joined by a cat. Cohere's use_qk_norm
    (layernorm_compute: ops): one op-by-op LayerNorm whose weight has that shape. With norm:
    rmsnorm, the RMSNorm of each head times the weight."""

    def __init__(self, cfg: ModelConfig, heads: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = make_norm(cfg, cfg.head_dim, affine=False)
        self.weight = nn.Parameter(torch.empty(heads, cfg.head_dim))
        if not self.weight.is_meta:
            nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.norm == "layernorm" and cfg.layernorm_compute == "ops":
            return ops_layer_norm(x, self.weight, cfg.norm_eps)
        if cfg.norm == "layernorm" and cfg.layernorm_compute == "native":
            heads = [
                F.layer_norm(x[:, :, head], (cfg.head_dim,), self.weight[head], None, cfg.norm_eps)
                for head in range(x.shape[2])
            ]
            return torch.stack(heads, dim=2)
        return self.norm(x) * self.weight


def maybe_norm(cfg: ModelConfig, wanted: bool) -> nn.Module:
    """A norm where the layout has one, else Identity (no parameters, no name in the table)."""
    return make_norm(cfg) if wanted else nn.Identity()


# --- positions (only `learned` has parameters: it lives in Transformer) -------------------------

# Position tables are computed in forward for the positions in use, never stored: they hold no
# parameters, cost O(T·d) to make, and building the model then runs no tensor op at all on meta.


def rope_tables(
    cfg: ModelConfig, start: int, seq: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of rotary embedding (Su et al. 2021) at positions start..start+seq-1, each
    (seq, rotary_dim): made once per forward and shared by every layer, as transformers' rotary
    embedding does, in the activation dtype (the angles in fp32)."""
    rotary = cfg.rotary_dim
    exponents = torch.arange(0, rotary, 2, device=device, dtype=torch.float32) / rotary
    positions = torch.arange(start, start + seq, device=device, dtype=torch.float32)
    angles = torch.outer(positions, cfg.rope_theta**-exponents)  # (seq, rotary_dim / 2)
    angles = torch.cat((angles, angles), dim=-1)  # half-split layout (GPT-NeoX, HF LLaMA)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, concat: bool = False
) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin on x of shape (B, heads, T, head_dim), the leading
    rotary_dim features of each head (partial rotary: the rest pass through, joined back by a
    cat). Written as transformers writes it: the element-wise result keeps x's memory layout, so
    a (B, T, heads, head_dim) projection stays in that order through attention and the output's
    transpose back is a view, not a copy. With `concat` the result is joined by a cat even when
    every feature rotates (transformers' Phi-3), which writes it head-major instead."""
    rotary = cos.shape[-1]
    if rotary == x.shape[-1] and not concat:
        return x * cos + rotate_half(x) * sin
    rotated = x[..., :rotary]
    return torch.cat((rotated * cos + rotate_half(rotated) * sin, x[..., rotary:]), dim=-1)


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
