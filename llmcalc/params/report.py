"""Results -> rich renderables and JSON-ready dicts. No computation beyond arranging numbers."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmcalc.config.experts import dense_layer_count, moe_layer_count
from llmcalc.config.schema import ModelConfig
from llmcalc.params.analysis import ParamsAnalysis
from llmcalc.params.count import layer_index
from llmcalc.params.formula import COMPONENTS, PER_LAYER, ParamFormula, shown_components

GROUP_LABELS = {
    "token_embedding": "token embedding",
    "position_embedding": "position embedding",
    "attention": "attention (q, k, v, o)",
    "mlp": "MLP",
    "router": "router",
    "experts": "routed experts",
    "shared_experts": "shared experts",
    "norms": "norms",
    "lm_head": "LM head",
}

COMPONENT_LABELS = {
    "token_embedding": "token embedding      V·d",
    "position_embedding": "position embedding   P·d",
    "embedding_norm": "embedding norm",
    "attn_q": "q projection",
    "attn_k": "k projection",
    "attn_v": "v projection",
    "attn_qkv": "qkv projection (fused)",
    "attn_o": "o projection",
    "attn_q_a": "q latent",
    "attn_q_b": "q from latent",
    "attn_kv_a": "kv latent + RoPE key",
    "attn_kv_b": "k, v from latent",
    "attn_sinks": "attention sinks",
    "mlp": "MLP",
    "router": "router",
    "experts": "routed experts (all E)",
    "shared_experts": "shared experts",
    "block_norms": "block norms",
    "qk_norm": "q/k norms",
    "latent_norms": "latent norms",
    "final_norm": "final norm",
    "lm_head": "LM head",
}


def _n(value: int) -> str:
    return f"{value:,}"


def _diff(formula: int, counted: int) -> str:
    return "exact" if formula == counted else f"differs by {counted - formula:+,}"


# --- llmcalc params ---------------------------------------------------------------------------


def tensor_table(result: ParamsAnalysis, full: bool) -> Table:
    """Per-tensor table in the form of seeds/000, identical layers folded unless `full`."""
    counted = result.counted
    table = Table(box=box.SIMPLE_HEAD, title="Parameters per tensor", title_justify="left")
    table.add_column("Parameter Name")
    table.add_column("Shape")
    table.add_column("#Params", justify="right")
    table.add_column("Trainable")
    fold = not full and len(counted.per_layer) > 1
    twins, folded = counted.layer_twins, set()
    for row in counted.rows:
        index = layer_index(row.name)
        if fold and index is not None and twins[index] != index:
            first = twins[index]
            if first not in folded:  # one row for every later layer shaped as `first`
                same = [i for i, twin in enumerate(twins) if twin == first and i != first]
                table.add_row(
                    Text(_layer_span(same), style="italic"),
                    Text(f"{len(same)} × layer {first}", style="italic"),
                    Text(f"{len(same)} × {_n(counted.per_layer[first])}", style="italic"),
                    Text("(identical; --full lists every row)", style="italic"),
                )
                folded.add(first)
            continue
        table.add_row(row.name, str(row.shape), _n(row.numel), str(row.trainable))
    for alias, target in counted.aliases.items():
        table.add_row(
            Text(f"{alias} = {target}", style="dim"),
            Text("(tied)", style="dim"),
            Text("0", style="dim"),
            Text("counted once", style="dim"),
        )
    table.add_section()
    table.add_row("Total parameters", "", _n(counted.total), "")
    table.add_row("Trainable parameters", "", _n(counted.trainable), "")
    return table


def _layer_span(indices: list[int]) -> str:
    """layers.1 .. layers.31, or layers.2, 4 .. 46 for every other layer, else a list."""
    first, last = indices[0], indices[-1]
    if indices == list(range(first, last + 1)):
        return f"layers.{first} .. layers.{last}"
    step = indices[1] - first
    if len(indices) > 2 and indices == list(range(first, last + 1, step)):
        return f"layers.{first}, {first + step} .. {last}"
    return "layers." + ", ".join(str(i) for i in indices)


def component_table(result: ParamsAnalysis) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Parameters per component", title_justify="left")
    table.add_column("Component")
    table.add_column("#Params", justify="right")
    table.add_column("Share", justify="right")
    formula, cfg = result.formula, result.config
    moe = bool(cfg.n_experts)
    if moe:
        table.add_column(f"Active per token (k = {cfg.experts_per_token} of E = {cfg.n_experts})")
    total = formula.total.value
    active = active_groups(result)
    for key, count in result.groups.items():
        row = [GROUP_LABELS[key], _n(count), f"{100 * count / total:.2f}%"]
        table.add_row(*row, *([_n(active[key])] if moe else []))
    table.add_section()
    table.add_row("total", _n(total), "100.00%", *([_n(formula.active)] if moe else []))
    non_emb = formula.non_embedding
    table.add_row(
        "non-embedding (no V·d, P·d matrices)", _n(non_emb), f"{100 * non_emb / total:.2f}%"
    )
    if moe:
        without = formula.active_without_input_embedding
        table.add_row("active, with the input embedding", "", "", _n(formula.active))
        table.add_row("active, without the input embedding", "", "", _n(without))
        table.caption = (
            "Active: the parameters one token uses, every component but the routed experts "
            "whole. Mixtral, Qwen and Llama 4 publish it with the input embedding; DeepSeek-V3 "
            "and gpt-oss without (a lookup, no matmul); the LM head is in both."
        )
        table.caption_justify = "left"
    return table


def active_groups(result: ParamsAnalysis) -> dict[str, int]:
    """Group -> parameters one token uses: k of E routed experts, everything else whole."""
    cfg, groups = result.config, dict(result.groups)
    if cfg.n_experts:
        groups["experts"] = groups["experts"] * cfg.experts_per_token // cfg.n_experts
    return groups


def symbols_line(cfg: ModelConfig) -> str:
    return (
        f"V={cfg.vocab_size}  P={cfg.max_seq_len}  d={cfg.d_model}  L={cfg.n_layers}  "
        f"h={cfg.n_heads}  h_kv={cfg.n_kv_heads}  d_h={cfg.head_dim}  f={cfg.d_ff}"
    )


def _total_line(formula: ParamFormula, cfg: ModelConfig) -> tuple[str, str]:
    parts_sym, parts_num = [], []
    for c in COMPONENTS:
        if c in PER_LAYER:
            if c == PER_LAYER[0]:
                for kind in formula.layer_kinds:
                    parts_sym.append(f"{kind.symbol}·({kind.label})")
                    parts_num.append(f"{kind.count}·{_n(kind.layer.value)}")
            continue
        term = formula.terms[c]
        if term.value:
            parts_sym.append(term.sym)
            parts_num.append(_n(term.value))
    return " + ".join(parts_sym), " + ".join(parts_num)


def formula_panel(result: ParamsAnalysis) -> Panel:
    cfg, formula, twelve = result.config, result.formula, result.twelve
    terms = Table(box=None, show_header=True, pad_edge=False)
    terms.add_column("per layer")
    terms.add_column("closed form")
    terms.add_column("substituted")
    terms.add_column("params", justify="right")
    moe = bool(cfg.n_experts)
    for c in PER_LAYER:
        term = formula.terms[c]
        if term.value:
            label = COMPONENT_LABELS[c] + (" (dense layers)" if moe and c == "mlp" else "")
            terms.add_row(label, term.sym, term.num, _n(term.value))
    poly = result.layer_polynomial
    one = "one MoE layer" if moe else "one layer"
    terms.add_row(Text(one, style="bold"), poly.sym, poly.num, _n(poly.value))
    if moe and dense_layer_count(cfg):
        dense = formula.dense_layer
        terms.add_row(Text("one dense layer", style="bold"), "", "", _n(dense.value))

    total_sym, total_num = _total_line(formula, cfg)
    lines: list[RenderableType] = [
        Text(symbols_line(cfg), style="dim"),
        terms,
        Text(f"\ntotal = {total_sym}\n      = {total_num}\n      = {_n(formula.total.value)}"),
        Text("\nper layer, every block bias on or off (--bias/--no-bias):", style="bold"),
    ]
    for label, expr in result.bias_forms.items():
        mark = "▶" if label == result.bias_label else " "
        lines.append(Text(f" {mark} {label:<13} {expr.sym} = {_n(expr.value)}"))
    if result.bias_label not in result.bias_forms:
        lines.append(
            Text(f" ▶ this preset: {result.bias_label}: {_n(formula.per_layer.value)} per layer")
        )
    pct = 100 * twelve.rel_error
    lines += [
        Text("\n12·d² per layer (Kaplan et al. 2020):", style="bold"),
        Text(
            f"   12·d² = {_n(twelve.approx_per_layer)} vs exact {_n(twelve.exact_per_layer)}: "
            f"{'exact' if twelve.approx_per_layer == twelve.exact_per_layer else f'{pct:+.2f}%'}"
            f"; 12·L·d² = {_n(cfg.n_layers * twelve.approx_per_layer)} vs non-embedding "
            f"{_n(formula.non_embedding)}"
        ),
        Text(f"   here: {twelve.here}, biases and norms {_n(twelve.rest)}"),
        Text(f"   {twelve.exact_when}", style="dim"),
        Text("\ncounted on the real model vs formula:", style="bold"),
        Text(
            f"   sum of numel over unique parameters  {_n(result.counted.total):>20}  "
            f"{_diff(formula.total.value, result.counted.total)}"
        ),
        Text(
            f"   fvcore parameter_count               {_n(result.counted.fvcore_total):>20}  "
            f"{_diff(formula.total.value, result.counted.fvcore_total)}"
        ),
    ]
    for c, (want, got) in result.mismatches.items():
        lines.append(Text(f"   MISMATCH {c}: formula {_n(want)}, counted {_n(got)}", style="red"))
    return Panel(Group(*lines), title=f"Formula: {cfg.name}", title_align="left")


def params_renderables(result: ParamsAnalysis, full: bool) -> list[RenderableType]:
    return [tensor_table(result, full), component_table(result), formula_panel(result)]


def params_json(result: ParamsAnalysis) -> dict[str, Any]:
    cfg, formula, counted = result.config, result.formula, result.counted
    return {
        "name": cfg.name,
        "device": result.device,
        "total": counted.total,
        "trainable": counted.trainable,
        "non_embedding": formula.non_embedding,
        **(
            {
                "active": formula.active,
                "active_without_input_embedding": formula.active_without_input_embedding,
                "active_components": active_groups(result),
                "layers_dense": dense_layer_count(cfg),
                "layers_moe": moe_layer_count(cfg),
                "dense_layer": formula.dense_layer.value,
            }
            if cfg.n_experts
            else {}
        ),
        "per_layer": counted.per_layer[0] if counted.per_layer else 0,
        "n_layers": cfg.n_layers,
        "components": result.groups,
        "components_detail": shown_components(formula.components),
        "formula": {
            "total": formula.total.value,
            "per_layer": formula.per_layer.value,
            "total_expr": _total_line(formula, cfg)[0],
            "per_layer_expr": result.layer_polynomial.sym,
            "per_layer_substituted": result.layer_polynomial.num,
            "bias_forms": {
                k: {"expr": v.sym, "per_layer": v.value} for k, v in result.bias_forms.items()
            },
            "applies": result.bias_label,
        },
        "counted": {"numel": counted.total, "fvcore": counted.fvcore_total},
        "exact": result.exact,
        "mismatches": {k: {"formula": a, "counted": b} for k, (a, b) in result.mismatches.items()},
        "twelve_d2": {
            "per_layer": result.twelve.approx_per_layer,
            "exact_per_layer": result.twelve.exact_per_layer,
            "relative_error": result.twelve.rel_error,
        },
        "tied": counted.aliases,
        "tensors": [
            {"name": r.name, "shape": list(r.shape), "numel": r.numel, "trainable": r.trainable}
            for r in counted.rows
        ],
    }


# --- llmcalc presets / check ------------------------------------------------------------------
