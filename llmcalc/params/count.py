"""Counts taken from the real module: unique parameter tensors, by name, layer and component.

Conventions: a parameter is a unique trainable-or-not nn.Parameter (a tied LM head shares the token
embedding's tensor and is counted once); buffers (RoPE frequencies, ALiBi slopes, sinusoidal
tables) are not parameters. fvcore's `parameter_count` is a second, independent counter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")

# Attention's projections (module name -> component), as both counters attribute them: the
# q, k, v (or fused qkv) and o of model/attention.py, and latent attention's.
PROJECTIONS = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "qkv_proj": "attn_qkv",
    "o_proj": "attn_o",
}
LATENT_PROJECTIONS = {
    "q_a_proj": "attn_q_a",
    "q_b_proj": "attn_q_b",
    "kv_a_proj": "attn_kv_a",
    "kv_b_proj": "attn_kv_b",
}

# The last module name of a parameter -> its component (see params/formula.py: COMPONENTS).
_COMPONENT_OF_MODULE = {
    "tok_embeddings": "token_embedding",
    "pos_embeddings": "position_embedding",
    "embedding_norm": "embedding_norm",
    **PROJECTIONS,
    **LATENT_PROJECTIONS,
    "q_a_norm": "latent_norms",
    "kv_a_norm": "latent_norms",
    "router": "router",
    "experts": "experts",
    "gate_proj": "mlp",
    "up_proj": "mlp",
    "down_proj": "mlp",
    "q_norm": "qk_norm",
    "k_norm": "qk_norm",
    "final_norm": "final_norm",
    "lm_head": "lm_head",
}


def component_of(param_name: str) -> str:
    module = param_name.rsplit(".", 2)[-2] if "." in param_name else param_name
    for part in ("shared_experts", "shared_gate"):  # a shared expert's MLP and its gate
        if f".mlp.{part}." in param_name:
            return "shared_experts"
    if param_name.endswith(".attn.sinks"):
        return "attn_sinks"
    if module in _COMPONENT_OF_MODULE:
        return _COMPONENT_OF_MODULE[module]
    if param_name.startswith("layers.") and module.endswith("_norm"):
        return "block_norms"
    raise ValueError(f"parameter {param_name!r} belongs to no known component")


@dataclass(frozen=True)
class ParamRow:
    name: str
    shape: tuple[int, ...]
    numel: int
    trainable: bool


@dataclass(frozen=True)
class ParamCount:
    rows: list[ParamRow]  # unique parameters in module order
    total: int
    trainable: int
    components: dict[str, int]  # component -> count
    per_layer: list[int]  # parameters of each layer
    layers_identical: bool  # every layer has layer 0's names and shapes
    layer_twins: list[int]  # for each layer, the first layer with its names and shapes
    aliases: dict[str, str]  # tied parameter name -> the name it is counted under
    fvcore_total: int


def count_params(model: nn.Module) -> ParamCount:
    from fvcore.nn.parameter_count import parameter_count  # light: only this module

    rows = [
        ParamRow(name, tuple(p.shape), p.numel(), p.requires_grad)
        for name, p in model.named_parameters()
    ]
    first_name: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first_name and first_name[id(p)] != name:
            aliases[name] = first_name[id(p)]
        first_name.setdefault(id(p), name)

    components: dict[str, int] = {}
    layer_rows: dict[int, list[tuple[str, tuple[int, ...]]]] = {}
    per_layer: dict[int, int] = {}
    for row in rows:
        part = component_of(row.name)
        components[part] = components.get(part, 0) + row.numel
        match = _LAYER.match(row.name)
        if match:
            index = int(match.group(1))
            layer_rows.setdefault(index, []).append((match.group(2), row.shape))
            per_layer[index] = per_layer.get(index, 0) + row.numel
    signatures = list(layer_rows.values())
    first_with: dict[tuple, int] = {}
    twins = [first_with.setdefault(tuple(layer_rows[i]), i) for i in sorted(layer_rows)]
    return ParamCount(
        rows=rows,
        total=sum(r.numel for r in rows),
        trainable=sum(r.numel for r in rows if r.trainable),
        components=components,
        per_layer=[per_layer[i] for i in sorted(per_layer)],
        layers_identical=all(sig == signatures[0] for sig in signatures),
        layer_twins=twins,
        aliases=aliases,
        fvcore_total=int(parameter_count(model)[""]),
    )


def layer_index(param_name: str) -> int | None:
    match = _LAYER.match(param_name)
    return int(match.group(1)) if match else None
