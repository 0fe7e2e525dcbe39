"""`llmcalc check`: formula == counted for presets and a grid of variants; with
`--against transformers`, llmcalc's figures beside transformers' own model of a config.json."""

from typing import Annotated

import typer

from llmcalc.cli.options import FormatOpt, JsonOpt, choice, emit_result, output_format, positive
from llmcalc.errors import LLMCalcError

AgainstOpt = Annotated[
    str | None,
    typer.Option(
        "--against",
        help="transformers: compare with transformers' own model of each config.json "
        "(parameters, forward FLOPs, KV cache, training peak); needs llmcalc[parity].",
    ),
]


def check(
    presets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Presets to check (default: every built-in preset and the grid); with "
            "--against, config.json files or their folders."
        ),
    ] = None,
    against: AgainstOpt = None,
    batch: Annotated[
        int | None, typer.Option("--batch", help="With --against: sequences (default 1).")
    ] = None,
    seq: Annotated[
        int | None,
        typer.Option("--seq", help="With --against: tokens (default min(max_seq_len, 2048))."),
    ] = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Formula == counted (params per component; matmul FLOPs of forward, backward, recompute)
    for presets and a grid of variants; exit 1 on any mismatch. With --against transformers:
    the same model built by transformers from each config.json, one line per check."""
    output = output_format(as_json, fmt)
    if against is not None:
        _against(choice("--against", against, ("transformers",)), presets, batch, seq, output)
        return
    if batch is not None or seq is not None:
        raise LLMCalcError("--batch and --seq apply to --against transformers")
    from llmcalc.config.presets import builtin_names, load_config
    from llmcalc.views.check import EXPERT_AXES, check_configs, grid_configs
    from llmcalc.views.report import check_json, check_table

    if presets:
        configs = [load_config(p) for p in presets]
    else:
        configs = [load_config(p) for p in builtin_names()] + grid_configs()
        configs += grid_configs(EXPERT_AXES)  # mixtures of experts and latent attention
    results = check_configs(configs)
    emit_result(output, check_json(results), [check_table(results)])
    failed = [r for r in results if not r.exact]
    if output == "table":
        summary = f"{len(results) - len(failed)} of {len(results)} configs exact"
        typer.echo(summary if not failed else f"{summary}; {len(failed)} MISMATCH")
    if failed:
        raise typer.Exit(1)


def _against(
    kind: str, paths: list[str] | None, batch: int | None, seq: int | None, output: str
) -> None:
    from llmcalc.views.parity import require_transformers, run_parity
    from llmcalc.views.parity_report import parity_json, parity_renderables, parity_summary

    if not paths:
        raise LLMCalcError(f"--against {kind}: give a config.json (or its folder)")
    positive("--batch", batch)
    positive("--seq", seq)
    require_transformers()
    results = [run_parity(path, batch or 1, seq) for path in paths]
    emit_result(output, parity_json(results), parity_renderables(results))
    if output == "table":
        typer.echo(parity_summary(results))
    if not all(result.passed for result in results):
        raise typer.Exit(1)
