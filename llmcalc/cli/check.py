"""`llmcalc check`: formula == counted for presets and a grid of variants."""

from typing import Annotated

import typer

from llmcalc.cli.options import FormatOpt, JsonOpt, emit_result, output_format


def check(
    presets: Annotated[
        list[str] | None,
        typer.Argument(help="Presets to check (default: every built-in preset and the grid)."),
    ] = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Formula == counted (params per component; matmul FLOPs of forward, backward, recompute)
    for presets and a grid of variants; exit 1 on any mismatch."""
    from llmcalc.config.presets import builtin_names, load_config
    from llmcalc.views.check import check_configs, grid_configs
    from llmcalc.views.report import check_json, check_table

    if presets:
        configs = [load_config(p) for p in presets]
    else:
        configs = [load_config(p) for p in builtin_names()] + grid_configs()
    output = output_format(as_json, fmt)
    results = check_configs(configs)
    emit_result(output, check_json(results), [check_table(results)])
    failed = [r for r in results if not r.exact]
    if output == "table":
        summary = f"{len(results) - len(failed)} of {len(results)} configs exact"
        typer.echo(summary if not failed else f"{summary}; {len(failed)} MISMATCH")
    if failed:
        raise typer.Exit(1)
