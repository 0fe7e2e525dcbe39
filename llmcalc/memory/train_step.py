"""One training step of the real model, the same code for the traced (fake tensors) and the measured
(CUDA or CPU) runs: build the model in the chosen precision, create the optimizer, then forward,
backward and optimizer step, telling an observer when each phase begins.

Precisions (memory/formula.py states the bytes per parameter of each):
    fp32   fp32 weights, gradients and optimizer state
    bf16   everything in bf16 (optimizer state takes the parameters' dtype)
    mixed  bf16 weights and gradients for compute, fp32 master weights and optimizer state; the
           gradients become fp32 for the update (bf16 weights + fp32 grads: Megatron-LM's layout)
Optimizers use torch's fused kernels: no temporaries beyond their state. The step takes any
nn.Module and a loss function (llmcalc's model by default; views/parity.py passes transformers'
own model and its loss).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from llmcalc.config.schema import ModelConfig
from llmcalc.model.transformer import Transformer, build_model

PHASES = ("forward", "backward", "optimizer")  # on_phase also marks 'zero_grad', the step's end


def make_optimizer(params: list[torch.nn.Parameter], name: str) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4, fused=True)
    momentum = 0.9 if name == "sgd-momentum" else 0.0
    # the single-tensor loop, in place like the fused kernel (no extra memory), because fused
    # SGD has no fake-tensor kernel: on fake tensors torch ran it on real zeros (12 GB of RSS
    # for a 6.4 GB model), and `--trace --optimizer sgd` of an 8B model was killed
    return torch.optim.SGD(params, lr=1e-3, momentum=momentum, foreach=False)


class MasterWeights:
    """Mixed precision: the model computes in bf16; the optimizer updates fp32 copies of the
    weights (the master weights) with fp32 gradients, then writes the result back in bf16."""

    def __init__(self, params: list[torch.nn.Parameter], optimizer: str) -> None:
        self.params = params
        self.masters = [torch.nn.Parameter(p.detach().float()) for p in params]
        self.inner = make_optimizer(self.masters, optimizer)
        self.state = self.inner.state
        self.on_fp32_grad: Callable[[torch.nn.Parameter], None] = lambda master: None

    def step(self) -> None:
        for param, master in zip(self.params, self.masters, strict=True):
            master.grad = param.grad.float()
            self.on_fp32_grad(master)
            param.grad = None  # each bf16 gradient is freed as its fp32 copy is made
        self.inner.step()
        with torch.no_grad():
            for param, master in zip(self.params, self.masters, strict=True):
                param.copy_(master)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none)


Optimizer = torch.optim.Optimizer | MasterWeights


def precision_dtype(precision: str) -> torch.dtype:
    """The dtype the model is built in: fp32, or bf16 (bf16 and mixed)."""
    return torch.float32 if precision == "fp32" else torch.bfloat16


def optimizer_for(model: torch.nn.Module, precision: str, optimizer: str) -> Optimizer:
    params = list(model.parameters())
    if precision == "mixed":
        return MasterWeights(params, optimizer)
    return make_optimizer(params, optimizer)


def build_for_training(
    cfg: ModelConfig, precision: str, optimizer: str, device: str, attention: str = "sdpa"
) -> tuple[Transformer, Optimizer]:
    model = build_model(cfg, device=device, dtype=precision_dtype(precision), attention=attention)
    return model, optimizer_for(model, precision, optimizer)


def create_optimizer_state(model: torch.nn.Module, optimizer: Optimizer) -> None:
    """Steady state: optimizers create their state on the first step, so take one step on zero
    gradients before the step that is traced or measured."""
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# (model, tokens, targets) -> the loss
LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def next_token_loss(
    model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """llmcalc's model: the mean cross-entropy of each next token, inside its forward."""
    return model(tokens, targets)


def training_step(
    model: torch.nn.Module,
    optimizer: Optimizer,
    tokens: torch.Tensor,
    checkpointing: str = "none",
    on_phase: Callable[[str], None] = lambda phase: None,
    loss_fn: LossFn = next_token_loss,
) -> None:
    """Forward (loss included), backward, optimizer step, zero_grad: one step of training on
    `tokens` (B, T), predicting each next token (targets are the tokens shifted by one; the
    loop holds both all step, as a data loader's batch). Checkpointing is llmcalc's model's own
    switch (other models: none)."""
    targets = tokens.roll(-1, dims=1)
    if hasattr(model, "checkpointing"):
        model.checkpointing = checkpointing == "full"
    on_phase("forward")
    loss = loss_fn(model, tokens, targets)
    on_phase("backward")
    loss.backward()
    del loss
    on_phase("optimizer")
    optimizer.step()
    on_phase("zero_grad")
    optimizer.zero_grad(set_to_none=True)
