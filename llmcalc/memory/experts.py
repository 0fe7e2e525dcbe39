"""Mixture of experts in memory: which layers are MoE as runs (never a list n_layers long), and
the parameter tensors of an MoE layer's MLP in the model's order (model/experts.py). No torch
here."""

from __future__ import annotations

import math
from collections.abc import Callable

from llmcalc.config.experts import is_moe, is_moe_layer, moe_layer_count
from llmcalc.config.schema import ModelConfig
from llmcalc.config.window import is_local
from llmcalc.memory.activations import INT64, Saved, _mlp

Linear = Callable[[int, int, bool], list[int]]


def layer_runs(cfg: ModelConfig) -> list[tuple[list[bool], int]]:
    """The layers in order as (pattern, times): `pattern` lists whether each layer of a period
    is MoE, repeated `times` times. Layer i is MoE when i >= first_dense_layers and
    (i + 1) % moe_every == 0 (config/experts.py), so past the first MoE layer the layers repeat
    with period moe_every; an explicit moe_layers list gives one run per listed layer."""
    layers = cfg.n_layers
    if not is_moe(cfg):
        return [([False], layers)]
    if cfg.moe_layers is not None:
        runs: list[tuple[list[bool], int]] = []
        previous = -1
        for layer in sorted(cfg.moe_layers):
            runs += [([False], layer - previous - 1), ([True], 1)]
            previous = layer
        return [run for run in [*runs, ([False], layers - previous - 1)] if run[1]]
    every = cfg.moe_every
    first = cfg.first_dense_layers + (-(cfg.first_dense_layers + 1)) % every  # first MoE layer
    count = moe_layer_count(cfg)
    runs = [([False], first), ([True] + [False] * (every - 1), count - 1), ([True], 1)]
    runs.append(([False], layers - first - (count - 1) * every - 1))
    return [run for run in runs if run[1]]


def layer_kinds(cfg: ModelConfig, upto: int | None = None) -> dict[tuple[bool, bool], int]:
    """How many layers of each kind (local, MoE) there are among layers 0 .. upto (all by
    default), by arithmetic on the patterns (lists are walked: they are given in full)."""
    m = cfg.n_layers if upto is None else upto + 1
    last = m - 1
    if cfg.sliding_window is None:
        local = 0
    elif cfg.global_layers is not None:
        local = m - sum(1 for g in cfg.global_layers if g <= last)
    elif cfg.sliding_window_pattern is not None:
        local = m - m // cfg.sliding_window_pattern
    else:
        local = m
    if not is_moe(cfg):
        moe = 0
    elif cfg.moe_layers is not None:
        moe = sum(1 for j in cfg.moe_layers if j <= last)
    else:  # j in [k, last] with (j + 1) % q == 0
        moe = max(0, m // cfg.moe_every - cfg.first_dense_layers // cfg.moe_every)
    both = _local_and_moe(cfg, local, moe, m)
    kinds = {
        (False, False): m - local - moe + both,
        (True, False): local - both,
        (False, True): moe - both,
        (True, True): both,
    }
    return {kind: count for kind, count in kinds.items() if count}


def layer_kind(cfg: ModelConfig, layer: int) -> tuple[bool, bool]:
    return is_local(cfg, layer), is_moe_layer(cfg, layer)


def _local_and_moe(cfg: ModelConfig, local: int, moe: int, m: int) -> int:
    """MoE layers that are local among the first m: from the lists where a list is given,
    else arithmetic (a global layer is one with (i + 1) % p == 0, an MoE one i >= k with
    (i + 1) % q == 0)."""
    if not local or not moe:
        return 0
    if local == m or moe == m:
        return min(local, moe)
    if cfg.moe_layers is not None:
        return sum(is_local(cfg, i) for i in cfg.moe_layers if i < m)
    if cfg.global_layers is not None:
        return moe - sum(is_moe_layer(cfg, i) for i in cfg.global_layers if i < m)
    period = math.lcm(cfg.sliding_window_pattern, cfg.moe_every)
    return moe - max(0, m // period - cfg.first_dense_layers // period)


def candidate_layers(cfg: ModelConfig) -> list[int]:
    """Layers where the backward can peak. Memory at layer i's backward is the gradients of the
    layers after it, the saved tensors of those up to it and its own peak: along a run of equal
    periods it moves by the same step each period, so each position of a period peaks in the
    run's first or last period (for a dense model: the first and the last layer)."""
    layers, start = set(), 0
    for pattern, times in layer_runs(cfg):
        for period in {0, times - 1}:
            layers.update(start + period * len(pattern) + j for j in range(len(pattern)))
        start += times * len(pattern)
    return sorted(layers, reverse=True)


def check_runs(cfg: ModelConfig, runs: list[tuple[list[bool], int]]) -> bool:
    """The runs against config/experts.py's rule, layer by layer (tests; small n_layers)."""
    flat = [moe for pattern, times in runs for _ in range(times) for moe in pattern]
    return flat == [is_moe_layer(cfg, i) for i in range(cfg.n_layers)]


def moe_sizes(cfg: ModelConfig, linear: Linear, pad: int = 1) -> list[int]:
    """An MoE layer's MLP tensors: the router (and its bias), the grouped experts' gate_up_proj
    (E, 2f or f, d) and down_proj (E, d, f), their biases (expert_bias), the shared experts
    as one MLP of width d_ff_shared, and its sigmoid gate. DeepSeek-V3's score correction is a
    buffer, not a parameter. With `pad`: first dimensions padded to a multiple of it."""
    d, experts, f = cfg.d_model, cfg.n_experts, cfg.d_ff_expert
    up = 2 * f if cfg.is_glu else f
    rows = -(-experts // pad) * pad
    sizes = linear(d, experts, cfg.router_bias) + [rows * up * d, rows * d * f]
    if cfg.expert_bias:
        sizes += [rows * up, rows * d]
    if cfg.n_shared_experts:
        sizes += dense_mlp_sizes(cfg, linear, cfg.d_ff_shared)
        if cfg.shared_expert_gate:
            sizes += linear(d, 1, False)  # a (1, d) weight
    return sizes


def dense_mlp_sizes(cfg: ModelConfig, linear: Linear, width: int) -> list[int]:
    """model/mlp.py's MLP: gate (with a GLU), up, down."""
    d = cfg.d_model
    return (2 if cfg.is_glu else 1) * linear(d, width, cfg.mlp_bias) + linear(
        width, d, cfg.mlp_bias
    )


def moe_saved(saved: Saved, cfg: ModelConfig, p: str, n: int, a: int) -> None:
    """What model/experts.py's MoE keeps for backward beyond its input (the router's and every
    expert's input, kept by the caller), for n tokens and k experts each:
    the router's scores in fp32 (softmax or sigmoid over all E logits, or over the top k), the
    top-k indices (int64) and, with normalize_topk, the weights and their sum; the sort of the
    n·k assignments and their token indices (int64); the gathered rows (n·k, d); each expert's
    MLP on its rows (as a dense MLP of width d_ff_expert on n·k rows, but a GLU's gate and up
    are halves of one gate_up output, kept whole); the experts' outputs (the last bmm's, or
    their cat), the weights in the activation dtype, and the weighted rows, which index_add_
    keeps (torch's derivative of index_add_ refers to its source). Shared experts: a dense MLP
    of width d_ff_shared on the n tokens, with a sigmoid gate keeping its output and theirs."""
    k, d, experts = cfg.experts_per_token, cfg.d_model, cfg.n_experts
    top = cfg.router_score.startswith("topk_")
    saved.add(f"{p}.router.scores", n * (k if top else experts) * 4)
    saved.add(f"{p}.router.topk_indices", n * k * INT64)
    if cfg.normalize_topk:  # weights / weights.sum(): keeps both
        saved.add(f"{p}.router.scores" if top else f"{p}.router.weights", n * k * 4)
        saved.add(f"{p}.router.weights_sum", n * 4)
    rows = n * k
    saved.add(f"{p}.experts.order", rows * INT64)
    saved.add(f"{p}.experts.token", rows * INT64)
    saved.add(f"{p}.experts.rows", rows * d * a)
    if cfg.is_glu:
        f = rows * cfg.d_ff_expert * a
        saved.add(f"{p}.experts.gate_up", 2 * f)
        saved.add(f"{p}.experts.act", f)
        saved.add(f"{p}.experts.product", f)
    else:
        _mlp(saved, cfg, f"{p}.experts", rows, a, cfg.d_ff_expert)
    saved.add(f"{p}.experts.out", rows * d * a)
    saved.add(f"{p}.experts.weights", rows * a)
    saved.add(f"{p}.experts.weighted", rows * d * a)
    if cfg.n_shared_experts:
        _mlp(saved, cfg, f"{p}.shared_experts", n, a, cfg.d_ff_shared)
        if cfg.shared_expert_gate:
            saved.add(f"{p}.shared_gate.sigmoid", n * a)
            saved.add(f"{p}.shared_experts.out", n * d * a)


def buffer_bytes(cfg: ModelConfig, weight_bytes: int) -> int:
    """The model's buffers: DeepSeek-V3's score correction, E values per MoE layer in the
    weights' dtype (a buffer, as in transformers)."""
    return moe_layer_count(cfg) * cfg.n_experts * weight_bytes if cfg.score_correction_bias else 0


def balanced_runs(assignments: int, experts: int) -> list[tuple[int, int]]:
    """(experts, rows each) of each bmm the dispatch runs on meta and fake tensors: the balanced
    rule (model/experts.py), every expert assignments // E rows, the first assignments mod E
    one more; experts with no rows run nothing."""
    base, extra = divmod(assignments, experts)
    runs = [(extra, base + 1), (experts - extra, base)]
    return [(count, rows) for count, rows in runs if count and rows]


def moe_transient(cfg: ModelConfig, n: int, a: int) -> int:
    """Largest set of tensors alive inside an MoE MLP's forward without autograd (a prefill),
    beyond the block's input, mid-stream and norm output: the router's (n, E) logits, fp32
    copy and scores beside the top k; then, with the routing (weights fp32, indices, the sort
    and token indices) and the gathered rows held, each bmm run's hidden tensors (a GLU's
    gate_up output stays referenced by its halves while the product and the down projection
    are made) beside the outputs of the runs before it; then the weighting and index_add_;
    last the shared experts beside the routed output."""
    k, d, f, experts = cfg.experts_per_token, cfg.d_model, cfg.d_ff_expert, cfg.n_experts
    rows = n * k
    route = n * experts * (a + (4 if a != 4 else 0) + 4) + rows * (4 + 8 + 4)
    held = rows * (4 + 8 + 8 + 8) + rows * d * a
    if cfg.is_glu:
        hidden, after = 4 * f, 3 * f
    else:
        hidden = {"gelu_new": 4, "gelu_recomputed": 5}.get(cfg.activation, 2) * f
        after = f
    down = after + d * (2 if cfg.expert_bias else 1)
    runs, before, stage = balanced_runs(rows, experts), 0, 0
    for count, each in runs:
        stage = max(stage, before * d * a + count * each * max(hidden, down) * a)
        before += count * each
    # at the product: the outputs, their cat (several runs), the weights and the product; at
    # index_add_: the outputs, the product and the zeros (the cat, rebound, is gone)
    cat = rows * d * a if len(runs) > 1 else 0
    weighted = 2 * rows * d * a + max(cat + rows * a, n * d * a)
    shared = 0
    if cfg.n_shared_experts:
        glu_hidden = (
            3 if cfg.is_glu else {"gelu_new": 4, "gelu_recomputed": 5}.get(cfg.activation, 2)
        )
        width = cfg.d_ff_shared
        gated = 2 * n * d * a + n * a if cfg.shared_expert_gate else 2 * n * d * a
        shared = rows * 12 + n * d * a + max(glu_hidden * n * width * a, gated)
    return max(route, held + stage, held + weighted, shared)


def moe_backward_in_flight(cfg: ModelConfig, n: int, a: int) -> int:
    """An estimate of what an MoE layer's backward holds beyond its saved tensors, at the
    experts' first bmm: the layer's expert weight gradients (in the activation dtype, as the
    weights) and gate_up's once more (the bmm makes the slice's gradient, then slicing's
    backward copies it into a zero gradient of the whole (E, 2f, d) parameter), and the
    gradient of the gathered rows."""
    d, f, experts = cfg.d_model, cfg.d_ff_expert, cfg.n_experts
    up = 2 * f if cfg.is_glu else f
    weights = experts * (2 * up * d + d * f)
    weights += experts * (up + d) if cfg.expert_bias else 0
    return weights * a + n * cfg.experts_per_token * d * a
