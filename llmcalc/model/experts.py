"""A mixture-of-experts MLP: a router picks the top-k of n_experts routed experts for each token,
beside shared experts that every token passes (Shazeer et al. 2017; Mixtral, DeepSeekMoE).

The experts are grouped 3-D parameters, as transformers stores them: gate_up_proj (E, 2·f, d)
(gate rows first; (E, f, d) without a GLU) and down_proj (E, d, f), out × in like nn.Linear.

Dispatch: the T·k (token, expert) assignments are sorted by expert, their token rows gathered,
and each run of experts that got the same number of rows multiplies them in one bmm. On a real
device the rows per expert are the router's; on meta and fake tensors (no values to route by) the
balanced rule gives them: every expert T·k // E rows and the first T·k mod E experts one more, so
every count below is exact for any T. Either way the experts multiply exactly T·k rows, so their
FLOPs and activation bytes do not depend on where the router sends the tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmcalc.config.schema import ModelConfig
from llmcalc.model.layers import Linear
from llmcalc.model.mlp import MLP, mlp_activation


def balanced_counts(assignments: int, experts: int) -> list[int]:
    """Rows per expert under the balanced rule: as even as integers allow, the extra rows first."""
    base, extra = divmod(assignments, experts)
    return [base + 1] * extra + [base] * (experts - extra)


def equal_runs(counts: list[int]) -> list[tuple[int, int, int]]:
    """(first expert, experts, rows each) for each run of consecutive experts with the same
    non-zero row count: one bmm each."""
    runs: list[tuple[int, int, int]] = []
    for expert, rows in enumerate(counts):
        if rows and runs and runs[-1][2] == rows and runs[-1][0] + runs[-1][1] == expert:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, rows)
        elif rows:
            runs.append((expert, 1, rows))
    return runs


def has_values(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    return not (t.is_meta or is_fake(t))


def route(
    cfg: ModelConfig, logits: torch.Tensor, correction: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits (N, E) -> (weights, experts), each (N, k): the score rule of router_score,
    in fp32 as transformers' routers compute it."""
    k = cfg.experts_per_token
    logits = logits.float()
    if cfg.router_score in ("topk_softmax", "topk_sigmoid"):  # gpt-oss, Llama 4
        top, experts = logits.topk(k, dim=-1)
        weights = top.softmax(-1) if cfg.router_score == "topk_softmax" else top.sigmoid()
    else:
        scores = logits.softmax(-1) if cfg.router_score == "softmax" else logits.sigmoid()
        # DeepSeek-V3: the correction bias picks the experts; the weights stay the scores
        choice = scores if correction is None else scores + correction
        experts = choice.topk(k, dim=-1).indices
        weights = scores.gather(-1, experts)
    if cfg.normalize_topk:
        weights = weights / weights.sum(-1, keepdim=True)
    if cfg.routed_scaling is not None:
        weights = weights * cfg.routed_scaling
    return weights, experts


class Experts(nn.Module):
    """n_experts MLPs of width d_ff_expert as two grouped weights (and biases with expert_bias)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.glu, self.act = cfg.is_glu, mlp_activation(cfg)
        experts, d, f = cfg.n_experts, cfg.d_model, cfg.d_ff_expert
        up = 2 * f if self.glu else f
        self.gate_up_proj = nn.Parameter(torch.empty(experts, up, d))
        self.down_proj = nn.Parameter(torch.empty(experts, d, f))
        if cfg.expert_bias:
            self.gate_up_bias = nn.Parameter(torch.empty(experts, up))
            self.down_bias = nn.Parameter(torch.empty(experts, d))
        for weight in self.parameters():
            if not weight.is_meta:
                nn.init.normal_(weight, std=0.02)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor
    ) -> torch.Tensor:
        """x (N, d), weights and experts (N, k) -> Σ over each token's k experts of weight ·
        expert(x), (N, d)."""
        cfg, k = self.cfg, experts.shape[-1]
        flat = experts.flatten()
        order = flat.argsort(stable=True)  # assignments sorted by expert
        token = order // k
        if has_values(flat):
            counts = torch.bincount(flat, minlength=cfg.n_experts).tolist()
        else:
            counts = balanced_counts(int(flat.shape[0]), cfg.n_experts)  # int: under a JIT trace
        rows = x[token]  # (N·k, d), grouped by expert
        outputs, start = [], 0
        for first, n, each in equal_runs(counts):
            end = start + n * each
            outputs.append(self._run(rows[start:end].view(n, each, -1), first, n).flatten(0, 1))
            start = end
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        out = out * weights.flatten()[order].unsqueeze(-1).to(out.dtype)
        return torch.zeros_like(x).index_add_(0, token, out)

    def _run(self, x: torch.Tensor, first: int, n: int) -> torch.Tensor:
        """Experts first .. first + n − 1, each on its own `each` rows: x (n, each, d)."""
        span = slice(first, first + n)
        h = torch.bmm(x, self.gate_up_proj[span].transpose(1, 2))
        if self.cfg.expert_bias:
            h = h + self.gate_up_bias[span].unsqueeze(1)
        if self.glu:
            gate, up = h.chunk(2, dim=-1)
            h = self.act(gate) * up
        else:
            h = self.act(h)
        out = torch.bmm(h, self.down_proj[span].transpose(1, 2))
        if self.cfg.expert_bias:
            out = out + self.down_bias[span].unsqueeze(1)
        return out


class MoE(nn.Module):
    """The router, the routed experts and the shared experts of one MoE layer: x (B, T, d)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.router = Linear(cfg.d_model, cfg.n_experts, bias=cfg.router_bias)
        if cfg.score_correction_bias:  # a buffer in transformers: not a parameter
            self.register_buffer("score_correction", torch.zeros(cfg.n_experts))
        self.experts = Experts(cfg)
        if cfg.n_shared_experts:
            self.shared_experts = MLP(cfg, cfg.d_ff_shared)
            if cfg.shared_expert_gate:
                self.shared_gate = Linear(cfg.d_model, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        correction = getattr(self, "score_correction", None)
        weights, experts = route(self.cfg, self.router(x), correction)
        out = self.experts(x, weights, experts)
        if self.cfg.n_shared_experts:
            shared = self.shared_experts(x)
            if self.cfg.shared_expert_gate:
                shared = F.sigmoid(self.shared_gate(x)) * shared
            out = out + shared
        return out.view(shape)
