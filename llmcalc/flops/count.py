"""FLOPs counted on the real module on the meta device, two independent ways.

1. torch's FlopCounterMode: dispatch-level, forward and backward, attributed to modules.
2. fvcore's FlopCountAnalysis: a JIT trace of the forward pass. fvcore counts MACs, so its figures
   are doubled here (one MAC = 2 FLOPs). It has no handle for scaled_dot_product_attention; the
   one registered below counts it as QKᵀ plus softmax·V over every query head (GQA-aware: the
   h_kv key/value heads are shared, the scores are not fewer).

Identical blocks give identical counts, so by default one block is traced and its FLOPs multiplied
by n_layers (the output says so; a test proves it equal to the full trace). Only matmul FLOPs are
compared: both counters count matmuls exactly; element-wise work they count differently or not
at all.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

from llmcalc.config.experts import dense_layer_count, is_latent, moe_layer_count
from llmcalc.config.schema import ModelConfig
from llmcalc.params.count import LATENT_PROJECTIONS, PROJECTIONS

_PROJECTIONS = PROJECTIONS | LATENT_PROJECTIONS
# an MoE layer's children (model/experts.py) -> components
_EXPERT_PARTS = {
    "router": "router",
    "experts": "experts",
    "shared_experts": "shared_experts",
    "shared_gate": "shared_experts",
}

# The counters cannot tell QKᵀ from softmax·V inside SDPA: they are compared as one component.
ATTENTION_CORE = "attn_scores+values"


@dataclass(frozen=True)
class CountedFlops:
    torch_forward: dict[str, int]  # component -> forward matmul FLOPs, whole model
    torch_backward: int
    # forward FLOPs rerun under full checkpointing, every op / torch's default early stop;
    # None when not asked for
    torch_recompute: int | None
    torch_recompute_early_stop: int | None
    fvcore_forward: dict[str, int] | None  # None when fvcore could not trace
    fvcore_error: str | None
    blocks_traced: int  # 1: one block traced, per-layer figures multiplied by n_layers


def merge_attention_core(components: dict[str, int]) -> dict[str, int]:
    """Analytic components -> the counters' granularity (scores and values summed)."""
    merged = {k: v for k, v in components.items() if k not in ("attn_scores", "attn_values")}
    merged[ATTENTION_CORE] = components["attn_scores"] + components["attn_values"]
    return merged


def _components(per_module: dict[str, int], cfg: ModelConfig, scales: list[int]) -> dict[str, int]:
    """Hierarchical per-module FLOPs (names relative to the model) -> components, whole model;
    `scales[i]`: how many of the model's layers traced layer i stands for."""
    result = dict.fromkeys(component_names(cfg), 0)
    for name, flops in per_module.items():
        parts = name.split(".")
        if parts[0] == "lm_head" and len(parts) == 1:
            result["lm_head"] += flops
            continue
        if parts[0] != "layers" or len(parts) < 3:
            continue
        scaled = flops * scales[int(parts[1])]
        if len(parts) == 3 and parts[2] == "mlp":
            if f"{name}.router" not in per_module:  # an MoE layer's parts are counted apart
                result["mlp"] += scaled
        elif len(parts) == 4 and parts[2] == "mlp" and parts[3] in _EXPERT_PARTS:
            result[_EXPERT_PARTS[parts[3]]] += scaled
        elif len(parts) == 3 and parts[2] == "attn":
            result[ATTENTION_CORE] += scaled  # children subtracted below
        elif len(parts) == 4 and parts[2] == "attn":
            # every child (projections, and q/k norms, which fvcore counts) leaves the core
            result[ATTENTION_CORE] -= scaled
            if parts[3] in _PROJECTIONS:
                result[_PROJECTIONS[parts[3]]] += scaled
    return result


def component_names(cfg: ModelConfig) -> list[str]:
    """The counters' components for this model: the projections it has, the attention core,
    the MLP, the experts' parts where it has experts, and the LM head."""
    names = [*PROJECTIONS.values(), ATTENTION_CORE, "mlp", "lm_head"]
    if is_latent(cfg):
        names[5:5] = LATENT_PROJECTIONS.values()
    if cfg.n_experts:
        names[-1:-1] = ["router", "experts", "shared_experts"]
    return names


def probe_layers(cfg: ModelConfig) -> tuple[ModelConfig, list[int]]:
    """The model traced for one_block, and how many layers each of its layers stands for: one
    layer of a model whose layers are all alike, else one dense layer and one MoE layer."""
    moe, dense = moe_layer_count(cfg), dense_layer_count(cfg)
    if not moe or not dense:
        return cfg.replace(n_layers=1, **_one_kind(cfg)), [cfg.n_layers]
    probe = cfg.replace(n_layers=2, moe_layers=[1], first_dense_layers=0, moe_every=1)
    if cfg.global_layers is not None:
        probe = probe.replace(sliding_window=None, global_layers=None)
    return probe, [dense, moe]


def _one_kind(cfg: ModelConfig) -> dict[str, object]:
    """Fields that name layers beyond the first, reset for a one-layer probe: an all-MoE model's
    MoE layers, and the global layers of a windowed one (a window masks scores that the counters
    count all the same: the matmuls are T×T in every layer)."""
    reset: dict[str, object] = {"moe_layers": None, "moe_every": 1} if cfg.n_experts else {}
    if cfg.global_layers is not None:
        reset |= {"sliding_window": None, "global_layers": None}
    return reset


def count_flops(
    cfg: ModelConfig, batch: int, seq: int, one_block: bool = True, recompute: bool = False
) -> CountedFlops:
    """Forward per component (FlopCounterMode and fvcore) and backward total (FlopCounterMode).
    With one_block, a 1-layer model is traced; per-layer forward FLOPs come from the modules, and
    the backward of one block is measured by running backward through that block alone
    (FlopCounterMode does not attribute backward FLOPs to modules reliably).
    With recompute, the step also runs with the model's full activation checkpointing on, with
    torch's early stop off and on; each backward's excess over the plain one is what was rerun.
    Counting never compiles, so it runs without importing torch._dynamo (see defer_dynamo.py);
    an fvcore failure is retried with torch as it is before it is reported. Checkpointing reads
    torch._dynamo's config, so the recompute traces run with the real one."""
    from llmcalc.model.limits import check_buildable, check_step

    probe, scales = probe_layers(cfg) if one_block else (cfg, None)
    # before torch is imported: a model or a step torch cannot represent is refused in a blink
    check_buildable(probe)
    check_step(cfg, batch, seq)
    scales = scales or [1] * cfg.n_layers  # every layer traced: each stands for itself

    from llmcalc.flops.defer_dynamo import run_deferring_dynamo

    model, tokens = _probe(probe, batch, seq)  # builds without a meta op: no dynamo
    counted, probe_backward = run_deferring_dynamo(
        lambda: _count(model, tokens, cfg, scales),
        failed=lambda result: bool(result[0].fvcore_error),
    )
    if not recompute:
        return counted
    every_op, early_stop = _recomputed(model, tokens, probe_backward, scales)
    return replace(counted, torch_recompute=every_op, torch_recompute_early_stop=early_stop)


def _probe(probe: ModelConfig, batch: int, seq: int) -> tuple[Any, Any]:
    """The model to trace (on meta: shapes only) and its tokens."""
    import torch

    from llmcalc.model.transformer import build_model

    tokens = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    return build_model(probe), tokens


def _count(
    model: Any, tokens: Any, cfg: ModelConfig, scales: list[int]
) -> tuple[CountedFlops, int]:
    """The counts for the whole model, and the traced model's own backward FLOPs."""
    batch, seq = tokens.shape
    per_module, probe_backward = _trace_torch(model, tokens)
    backward_total = probe_backward
    for layer, scale in zip(model.layers, scales, strict=True):
        if scale > 1:
            backward_total += _block_backward(layer, batch, seq, cfg) * (scale - 1)
    torch_forward = _components(per_module, cfg, scales)

    fvcore_forward, fvcore_error = None, None
    try:
        fvcore_forward = _fvcore_components(model, tokens, cfg, scales)
    except Exception as exc:  # fvcore's JIT trace depends on the torch version
        fvcore_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    counted = CountedFlops(
        torch_forward, backward_total, None, None, fvcore_forward, fvcore_error, len(scales)
    )
    return counted, probe_backward


def _recomputed(model: Any, tokens: Any, plain_backward: int, scales: list[int]) -> tuple[int, int]:
    """Backward FLOPs with the model's checkpointing on, minus those without (plain_backward):
    the rerun forward, without and with torch's early stop (the default), for the whole model
    (`scales`: layers per traced layer)."""
    from torch.utils.checkpoint import set_checkpoint_early_stop

    model.checkpointing = True
    try:
        with set_checkpoint_early_stop(False):
            _, every_op = _trace_torch(model, tokens)
        _, early_stop = _trace_torch(model, tokens)
    finally:
        model.checkpointing = False
    if len(set(scales)) > 1:  # one dense and one MoE layer: rerun each kind apart
        return _recomputed_by_layer(model, tokens, plain_backward, scales)
    scale = scales[0]
    return (every_op - plain_backward) * scale, (early_stop - plain_backward) * scale


def _trace_torch(model: Any, tokens: Any) -> tuple[dict[str, int], int]:
    """FlopCounterMode over forward (per module, names relative to the model) and backward."""
    from torch.utils.flop_counter import FlopCounterMode

    model.zero_grad(set_to_none=True)  # each trace starts as the first: no gradient to add to
    with FlopCounterMode(display=False) as forward:
        loss = model(tokens, targets=tokens)
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    root = type(model).__name__ + "."
    per_module = {
        name.removeprefix(root): sum(ops.values())
        for name, ops in forward.get_flop_counts().items()
        if name.startswith(root)
    }
    return per_module, backward.get_total_flops()


def _block_backward(
    block: Any, batch: int, seq: int, cfg: ModelConfig, checkpointed: bool = False
) -> int:
    """Backward FLOPs of one block: gradients for its weights and its input, as every block
    of the full model computes them (the embedding below it is trainable); `checkpointed`: the
    block run under torch.utils.checkpoint as the model runs it, its rerun included."""
    import torch
    from torch.utils.checkpoint import checkpoint
    from torch.utils.flop_counter import FlopCounterMode

    from llmcalc.model.layers import rope_tables

    x = torch.empty(batch, seq, cfg.d_model, device="meta", requires_grad=True)
    rope = rope_tables(cfg, 0, seq, x.device, x.dtype) if cfg.position == "rope" else None
    if checkpointed:
        out = checkpoint(block, x, None, rope, use_reentrant=False)
    else:
        out = block(x, None, rope)
    with FlopCounterMode(display=False) as backward:
        out.backward(torch.empty_like(out))
    return backward.get_total_flops()


def _recomputed_by_layer(
    model: Any, tokens: Any, plain_backward: int, scales: list[int]
) -> tuple[int, int]:
    """_recomputed for a probe whose layers stand for different numbers of layers: each traced
    layer's rerun measured on its own, block by block, times its scale."""
    from torch.utils.checkpoint import set_checkpoint_early_stop

    batch, seq = tokens.shape
    cfg = model.cfg
    every_op = early_stop = 0
    for layer, scale in zip(model.layers, scales, strict=True):
        plain = _block_backward(layer, batch, seq, cfg)
        with set_checkpoint_early_stop(False):
            every_op += (_block_backward(layer, batch, seq, cfg, True) - plain) * scale
        early_stop += (_block_backward(layer, batch, seq, cfg, True) - plain) * scale
    return every_op, early_stop


def _sdpa_macs(inputs: list, outputs: list) -> int:
    """fvcore handle for aten::scaled_dot_product_attention: q (B, h, T, d_h), k (B, h_kv, S, d_h),
    v (B, h_kv, S, d_v). MACs: B·h·T·S·d_h for QKᵀ plus B·h·T·S·d_v for softmax·V."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch, heads, queries, head_dim = q
    keys, value_dim = k[-2], v[-1]
    return batch * heads * queries * keys * (head_dim + value_dim)


def _fvcore_components(
    model: object, tokens: object, cfg: ModelConfig, scales: list[int]
) -> dict[str, int]:
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings from the JIT trace of the meta model
        analysis = FlopCountAnalysis(model, (tokens,))
        analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_macs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        macs = analysis.by_module()
    per_module = {name: 2 * value for name, value in macs.items() if name}  # MACs -> FLOPs
    return _components(per_module, cfg, scales)
