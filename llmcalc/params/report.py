"""Results -> rich renderables and JSON-ready dicts. No computation beyond arranging numbers."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmcalc.config.schema import ModelConfig
from llmcalc.params.analysis import ParamsAnalysis
from llmcalc.params.count import layer_index
from llmcalc.params.formula import COMPONENTS, PER_LAYER, ParamFormula, shown_components

GROUP_LABELS = {
    "token_embedding": "token embedding",
    "position_embedding": "position embedding",
    "attention": "attention (q, k, v, o)",
    "mlp": "MLP",
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
    "mlp": "MLP",
    "block_norms": "block norms",
    "qk_norm": "q/k norms",
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
    fold = not full and counted.layers_identical and len(counted.per_layer) > 1
    folded_done = False
    for row in counted.rows:
        index = layer_index(row.name)
        if fold and index is not None and index > 0:
            if not folded_done:
                n_more = len(counted.per_layer) - 1
                table.add_row(
                    Text(f"layers.1 .. layers.{n_more}", style="italic"),
                    Text(f"{n_more} × layer 0", style="italic"),
                    Text(f"{n_more} × {_n(counted.per_layer[0])}", style="italic"),
                    Text("(identical; --full lists every row)", style="italic"),
                )
                folded_done = True
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


def component_table(result: ParamsAnalysis) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Parameters per component", title_justify="left")
    table.add_column("Component")
    table.add_column("#Params", justify="right")
    table.add_column("Share", justify="right")
    total = result.formula.total.value
    for key, count in result.groups.items():
        table.add_row(GROUP_LABELS[key], _n(count), f"{100 * count / total:.2f}%")
    table.add_section()
    table.add_row("total", _n(total), "100.00%")
    non_emb = result.formula.non_embedding
    table.add_row(
        "non-embedding (no V·d, P·d matrices)", _n(non_emb), f"{100 * non_emb / total:.2f}%"
    )
    return table


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
                parts_sym.append("L·(per layer)")
                parts_num.append(f"{cfg.n_layers}·{_n(formula.per_layer.value)}")
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
    for c in PER_LAYER:
        term = formula.terms[c]
        if term.value:
            terms.add_row(COMPONENT_LABELS[c], term.sym, term.num, _n(term.value))
    poly = result.layer_polynomial
    terms.add_row(Text("one layer", style="bold"), poly.sym, poly.num, _n(poly.value))

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
        Text(
            f"   here: attention matrices {twelve.attn_matrices_d2:.4g}·d², MLP matrices "
            f"{twelve.mlp_matrices_d2:.4g}·d² (f = {cfg.d_ff / cfg.d_model:.4g}·d), "
            f"biases and norms {_n(twelve.rest)}"
        ),
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
