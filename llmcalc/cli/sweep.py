"""`llmcalc sweep`: metrics as fields, seq or batch vary."""

from typing import Annotated

import typer

from llmcalc.cli.options import (
    BatchOpt,
    FormatOpt,
    InferenceDtypeOpt,
    JsonOpt,
    PrecisionOpt,
    PresetArg,
    SeqOpt,
    SetOpt,
    choice,
    emit_result,
    output_format,
    positive,
    progress,
)
from llmcalc.errors import LLMCalcError


def sweep(
    preset: PresetArg,
    vary: Annotated[
        list[str],
        typer.Option(
            "--vary", metavar="FIELD=V1,V2", help="A field (or seq, batch) and its values."
        ),
    ],
    seq: SeqOpt = None,
    batch: BatchOpt = 1,
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help="Comma-separated metric keys (default: all; see --json)."),
    ] = None,
    precision: PrecisionOpt = "mixed",
    dtype: InferenceDtypeOpt = None,
    plot: Annotated[
        str | None, typer.Option("--plot", help="Also write the chart: out.png or out.svg.")
    ] = None,
    max_points: Annotated[
        int,
        typer.Option(
            "--max-points", help="Refuse sweeps of more points than this (checked first)."
        ),
    ] = 1000,
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """A table and chart of metrics as fields, seq or batch vary (their product)."""
    from llmcalc.config.dtypes import DTYPE_BYTES
    from llmcalc.config.presets import parse_overrides
    from llmcalc.memory.formula import PRECISIONS
    from llmcalc.views.compare import ROWS
    from llmcalc.views.report import check_plot_path, sweep_json, sweep_renderables, write_plot
    from llmcalc.views.sweep import parse_vary, run_sweep

    output = output_format(as_json, fmt)
    positive("--seq", seq)
    positive("--batch", batch)
    choice("--precision", precision, PRECISIONS)
    if dtype is not None:
        choice("--dtype", dtype, tuple(DTYPE_BYTES))
    keys = [row.key for row in ROWS]
    chosen = keys if metrics is None else [m.strip() for m in metrics.split(",") if m.strip()]
    if not chosen:
        raise LLMCalcError(f"--metrics {metrics!r}: name at least one of {', '.join(keys)}")
    for key in chosen:
        choice("--metrics", key, keys)
    target = check_plot_path(plot) if plot is not None else None
    positive("--max-points", max_points)
    varies = parse_vary(vary, max_points)
    with progress(output != "table", "sweep") as status:
        points = run_sweep(
            preset,
            parse_overrides(overrides or []),
            varies,
            batch,
            seq,
            precision,
            dtype,
            on_point=status,
        )
    title = f"{preset}: sweep of {', '.join(name for name, _ in varies)} ({precision})"
    if target is not None:
        write_plot(points, target, title)
    setup = {
        "preset": preset,
        "precision": precision,
        "dtype": dtype,
    }
    emit_result(output, sweep_json(points, setup), sweep_renderables(points, chosen, title))
    if target is not None:
        typer.echo(f"wrote {target}", err=True)
