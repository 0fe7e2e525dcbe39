"""The dense MLP and the activations that every MLP (and expert) uses."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmcalc.config.schema import ModelConfig
from llmcalc.model.layers import Linear


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation as GPT-2's code writes it (transformers' gelu_new), op by op and
    in its order: backward keeps x, 0.5·x, the tanh and 1 + tanh, where torch's fused F.gelu
    keeps x; without autograd at most 4 tensors of x's size are alive at once."""
    return (
        0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    )


SQRT_2_OVER_PI = 0.79788456  # the rounded constants of Megatron-DeepSpeed's bias_gelu


class GeluRecomputed(torch.autograd.Function):
    """GELU's tanh approximation as BLOOM trained it (Megatron-DeepSpeed's bias_gelu, without the
    bias; transformers' GeLUFunction): forward keeps only x, and backward recomputes the tanh
    and writes the derivative out op by op,
        d/dx = 0.5·x·(1 − tanh²)·(√(2/π) + 3·0.044715·√(2/π)·x²) + 0.5·(1 + tanh),
    in the order below, so at most 5 tensors of x's size are alive beside the incoming one."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * 0.5 * (1.0 + torch.tanh(SQRT_2_OVER_PI * x * (1 + 0.044715 * x * x)))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        tanh = torch.tanh(SQRT_2_OVER_PI * x * (1 + 0.044715 * x * x))
        slope = 0.5 * x * ((1 - tanh * tanh) * (SQRT_2_OVER_PI + 0.1070322243 * x * x))
        return (slope + 0.5 * (1 + tanh)) * grad


_ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": gelu_new,
    "gelu_recomputed": GeluRecomputed.apply,
    "silu": F.silu,
}
_GLU_GATES = {"swiglu": F.silu, "geglu": F.gelu, "reglu": F.relu}  # Shazeer 2020, GLU variants


def mlp_activation(cfg: ModelConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation, or with a GLU the gate's activation."""
    return _GLU_GATES[cfg.activation] if cfg.is_glu else _ACTIVATIONS[cfg.activation]


class MLP(nn.Module):
    """down(act(up(x))) with two matrices, or down(act(gate(x)) * up(x)) with three for *GLU;
    `width` d_ff, or a shared expert's d_ff_shared."""

    def __init__(self, cfg: ModelConfig, width: int | None = None) -> None:
        super().__init__()
        width = cfg.d_ff if width is None else width
        self.glu, self.act = cfg.is_glu, mlp_activation(cfg)
        if self.glu:
            self.gate_proj = Linear(cfg.d_model, width, bias=cfg.mlp_bias)
        self.up_proj = Linear(cfg.d_model, width, bias=cfg.mlp_bias)
        self.down_proj = Linear(width, cfg.d_model, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.glu:
            return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(self.act(self.up_proj(x)))
