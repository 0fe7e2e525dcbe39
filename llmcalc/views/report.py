"""The views as rich renderables and JSON: the presets list, `show`'s YAML, `check`'s verdicts,
and compare and sweep (the metrics of compare.ROWS, formatted one way), with a terminal
stacked-bar chart of the training memory and (optional extra `llmcalc[plot]`) a matplotlib
PNG/SVG of the same chart."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from llmcalc.config.experts import dense_layer_count, dormant_fields, is_latent, moe_layer_count
from llmcalc.config.reading import shown, stat_or_none
from llmcalc.config.schema import DERIVED, ModelConfig
from llmcalc.errors import LLMCalcError, RunFailed
from llmcalc.memory.formula import CATEGORIES
from llmcalc.params.formula import ParamFormula
from llmcalc.units import format_bytes
from llmcalc.views.check import CHECK_BATCH, CHECK_SEQ, CheckResult
from llmcalc.views.compare import ROWS
from llmcalc.views.sweep import Point

# A character per category as well as a colour, so the chart reads without colour (NO_COLOR)
BAR_STYLE = {
    "weights": ("█", "blue"),
    "gradients": ("▓", "magenta"),
    "optimizer": ("▒", "yellow"),
    "activations": ("░", "green"),
    "other": ("·", "red"),
}
BAR_WIDTH = 40


def _cell(unit: str, value: Any) -> str:
    if unit == "bytes":
        return format_bytes(value)
    if unit == "flops":
        return f"{value:.3e}"
    if unit == "count":
        return f"{value:,}"
    return str(value)


def compare_table(table: dict[str, dict[str, int | str]], setup: dict[str, Any]) -> Table:
    names = list(table)
    out = Table(
        box=box.SIMPLE_HEAD,
        title=f"Compared at batch {setup['batch']} × seq {setup['seq']:,} "
        f"({setup['precision']} training, {setup['dtype'] or 'own dtype'} inference)",
        title_justify="left",
    )
    out.add_column("")
    for name in names:
        out.add_column(name, justify="right", no_wrap=True)
    for row in ROWS:
        out.add_row(row.label, *(_cell(row.unit, table[name][row.key]) for name in names))
    return out


def sweep_table(points: list[Point], metrics: list[str], title: str) -> Table:
    rows = [row for row in ROWS if row.key in metrics]
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    table.add_column("point")
    for row in rows:
        table.add_column(row.label, justify="right")
    for point in points:
        table.add_row(point.label, *(_cell(row.unit, point.metrics[row.key]) for row in rows))
    return table


def memory_chart(points: list[Point]) -> Text:
    """Training memory at the peak, stacked by category, one bar per point."""
    largest = max(sum(p.breakdown.values()) for p in points) or 1
    chart = Text("Training memory at the peak, by category\n")
    width = max(len(p.label) for p in points)
    for point in points:
        chart.append(point.label.ljust(width) + " ")
        for category in CATEGORIES:
            char, style = BAR_STYLE[category]
            chart.append(char * round(BAR_WIDTH * point.breakdown[category] / largest), style)
        chart.append(f" {format_bytes(sum(point.breakdown.values()))}\n")
    for category in CATEGORIES:
        char, style = BAR_STYLE[category]
        chart.append(f"{char} {category}  ", style)
    return chart


def sweep_renderables(points: list[Point], metrics: list[str], title: str) -> list[RenderableType]:
    return [sweep_table(points, metrics, title), memory_chart(points)]


def sweep_json(points: list[Point], setup: dict[str, Any]) -> dict[str, Any]:
    return {
        **setup,
        "points": [
            {"values": p.values, "metrics": p.metrics, "training_breakdown": p.breakdown}
            for p in points
        ],
    }


def check_plot_path(path: str) -> Path:
    """Before any work: the suffix is one matplotlib writes here, the path is not a folder, and
    its folder exists, and the file can be written."""
    target = Path(path).expanduser()
    where = f"--plot {shown(path)}"
    if target.suffix.lower() not in (".png", ".svg"):
        raise LLMCalcError(f"{where}: the file must end in .png or .svg")
    if len(target.name) > 255:
        raise LLMCalcError(f"{where}: file name too long ({len(target.name):,} characters)")
    status = stat_or_none(target)
    if status is not None and stat.S_ISDIR(status.st_mode):
        raise LLMCalcError(f"{where}: is a folder; give a file name ending in .png or .svg")
    folder = target.parent
    folder_status = stat_or_none(folder)
    if folder_status is None or not stat.S_ISDIR(folder_status.st_mode):
        raise LLMCalcError(f"{where}: folder {shown(folder)!r} does not exist")
    if status is not None and not stat.S_ISREG(status.st_mode):
        raise LLMCalcError(f"{where}: exists and is not a regular file")
    try:  # the one sure test of writing, as root too: open it to append, then leave it as it was
        with target.open("ab"):
            pass
    except OSError as exc:
        raise LLMCalcError(f"{where}: cannot write it ({exc.strerror or exc})") from None
    if status is None:
        target.unlink(missing_ok=True)
    return target


def write_plot(points: list[Point], target: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LLMCalcError(
            "--plot needs matplotlib: install the plot extra, pip install 'llmcalc[plot]'"
        ) from None
    figure, axes = plt.subplots(figsize=(max(6, 1.2 * len(points)), 4.5))
    labels = [p.label for p in points]
    bottom = [0.0] * len(points)
    for category in CATEGORIES:
        heights = [p.breakdown[category] / 2**30 for p in points]
        axes.bar(labels, heights, bottom=bottom, label=category)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_ylabel("GiB at the training peak")
    axes.set_title(title)
    axes.legend()
    axes.tick_params(axis="x", labelrotation=30)
    figure.tight_layout()
    try:
        figure.savefig(target)
    except OSError as exc:  # checked before the sweep ran; this is the disk failing now
        raise RunFailed(
            f"--plot {shown(target)}: writing it failed ({exc.strerror or exc})"
        ) from None
    finally:
        plt.close(figure)


def presets_table(rows: list[tuple[ModelConfig, ParamFormula]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Built-in presets", title_justify="left")
    for name, justify in (
        ("name", "left"),
        ("d_model", "right"),
        ("layers", "right"),
        ("heads / kv", "right"),
        ("d_ff", "right"),
        ("experts E × f_e, top k", "right"),
        ("params", "right"),
        ("active", "right"),
    ):
        table.add_column(name, justify=justify)
    for cfg, formula in rows:
        moe = bool(cfg.n_experts)
        table.add_row(
            cfg.name,
            str(cfg.d_model),
            str(cfg.n_layers),
            f"{cfg.n_heads} / {'latent' if cfg.kv_lora_rank else cfg.n_kv_heads}",
            str(cfg.d_ff) if dense_layer_count(cfg) else "",  # no dense MLP: no d_ff
            f"{cfg.n_experts} × {cfg.d_ff_expert}, {cfg.experts_per_token}" if moe else "",
            _cell("count", formula.total.value),
            _cell("count", formula.active) if moe else "",
        )
    table.caption = "active: the parameters one token uses, the input embedding included"
    table.caption_justify = "left"
    return table


def check_table(results: list[CheckResult]) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=(
            f"Formula vs counted: parameters, and matmul FLOPs of a {CHECK_BATCH}×{CHECK_SEQ} step"
            " (forward, backward, recomputed forward)"
        ),
        title_justify="left",
    )
    table.add_column("config", overflow="fold", ratio=1)  # long grid names wrap, never truncate
    for name, justify in (
        ("params", "right"),
        ("numel / fvcore", "left"),
        ("FLOPs torch / fvcore", "left"),
    ):
        table.add_column(name, justify=justify)
    for r in results:
        params, flops = r.params, r.flops
        if params.exact:
            params_verdict = Text("exact", style="green")
        else:
            details = [f"{c}: {a:,} vs {b:,}" for c, (a, b) in params.mismatches.items()]
            if params.counted.fvcore_total != params.formula.total.value:
                details.append(f"fvcore {params.counted.fvcore_total:,}")
            params_verdict = Text("MISMATCH " + "; ".join(details), style="red")
        if flops.mismatches:
            flops_verdict = Text("MISMATCH " + ", ".join(flops.mismatches), style="red")
        elif flops.counted is not None and flops.counted.fvcore_error:
            flops_verdict = Text("exact (torch); fvcore unavailable", style="yellow")
        else:
            flops_verdict = Text("exact", style="green")
        table.add_row(
            r.params.config.name,
            _cell("count", params.formula.total.value),
            params_verdict,
            flops_verdict,
        )
    return table


def check_json(results: list[CheckResult]) -> dict[str, Any]:
    return {
        "ok": all(r.exact for r in results),
        "checked": len(results),
        "results": [
            {
                "name": r.params.config.name,
                "formula": r.params.formula.total.value,
                "counted": r.params.counted.total,
                "fvcore": r.params.counted.fvcore_total,
                "exact": r.exact,
                "mismatches": {
                    k: {"formula": a, "counted": b} for k, (a, b) in r.params.mismatches.items()
                },
                "flops": {
                    "batch": r.flops.batch,
                    "seq": r.flops.seq,
                    "forward_matmul": r.flops.forward.matmul_total,
                    "backward": r.flops.step.backward,
                    "recompute": r.flops.step.recompute,
                    "recompute_early_stop": r.flops.step.recompute_early_stop,
                    "exact": not r.flops.mismatches,
                    "mismatches": r.flops.mismatches,
                },
            }
            for r in results
        ],
    }


def config_yaml(cfg: ModelConfig) -> str:
    """The config as YAML that loads back to the same config: each field as given, and a derived
    field (n_kv_heads, head_dim, d_ff, the per-part biases) that was not given as a comment with
    its value, so that editing d_model, n_heads or bias changes it as its rule says. The derived
    sizes follow as a trailing comment."""
    import yaml

    given = cfg.given_dict()
    lines = []
    dormant = dormant_fields(cfg)  # a dense model's expert fields, MLA's sizes without MLA
    for name, value in cfg.to_dict().items():
        if name in dormant:
            continue
        text = yaml.safe_dump({name: value}, sort_keys=False, allow_unicode=True)
        if name in given:
            lines.append(text)
        else:
            rule = _d_ff_rule(cfg) if name == "d_ff" else DERIVED[name]
            if name == "head_dim" and is_latent(cfg):
                rule = "qk_nope_head_dim + qk_rope_head_dim, latent attention's q and k heads"
            lines.append(f"# {text.rstrip()}  (derived: {rule})\n")
    idle = cfg.without_effect()  # not in to_dict, so that the YAML loads back without a conflict
    lines += [
        f"# {name}: no effect with {other} {getattr(cfg, other)}\n" for name, other in idle.items()
    ]
    if dormant:
        lines.append(f"# at their defaults, without effect here: {', '.join(dormant)}\n")
    return "".join(lines) + f"# derived: {_derived_summary(cfg)}\n"


def _derived_summary(cfg: ModelConfig) -> str:
    """The attention kind and the MLP's (or experts') sizes, for the YAML's last comment."""
    matrices = "3 matrices (GLU)" if cfg.is_glu else "2 matrices"
    if is_latent(cfg):
        attention = (
            f"attention MLA ({cfg.n_heads} heads, q/k head {cfg.head_dim}, v head "
            f"{cfg.v_head_dim}, caching a {cfg.kv_lora_rank} + {cfg.qk_rope_head_dim} latent)"
        )
    else:
        attention = (
            f"attention {cfg.attention_kind} ({cfg.n_heads} query heads, {cfg.n_kv_heads} kv "
            f"heads), q width h·d_h = {cfg.q_dim}, kv width h_kv·d_h = {cfg.kv_dim}"
        )
    dense = dense_layer_count(cfg)
    mlp = f"MLP {matrices} at d_ff = {cfg.d_ff} = {cfg.d_ff / cfg.d_model:.4g}·d_model"
    if not cfg.n_experts:
        return f"{attention}, {mlp}"
    shared = f", shared width {cfg.d_ff_shared}" if cfg.n_shared_experts else ""
    experts = (
        f"{moe_layer_count(cfg)} MoE layers: {cfg.n_experts} experts of width "
        f"{cfg.d_ff_expert}, top {cfg.experts_per_token}{shared} ({matrices})"
    )
    return f"{attention}, {experts}" + (f"; {dense} dense layers, {mlp}" if dense else "")


def _d_ff_rule(cfg: ModelConfig) -> str:
    if cfg.multiple_of is not None or cfg.ffn_multiplier is not None:
        return "the LLaMA rule from d_model, ffn_multiplier and multiple_of"
    return "int(8·d_model/3), GLU" if cfg.is_glu else "4·d_model"
