"""The model's building blocks: linear and embedding layers that skip their init on meta, the
norms, and the parameter-free position tables (RoPE, sinusoidal, ALiBi)."""

from __future__ import annotations

import math

import torch
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
