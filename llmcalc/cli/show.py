"""`llmcalc show`: the resolved config as YAML (or JSON, a Markdown YAML block, tidy CSV)."""

import typer

from llmcalc.cli.options import (
    BiasOpt,
    FormatOpt,
    JsonOpt,
    PresetArg,
    SetOpt,
    emit_result,
    load_preset,
    output_format,
)


def show(
    preset: PresetArg,
    overrides: SetOpt = None,
    bias: BiasOpt = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Print the config as YAML to save, edit and reuse (derived fields as comments); JSON and CSV
    hold every field resolved."""
    from llmcalc.views.report import config_yaml

    output = output_format(as_json, fmt)
    cfg = load_preset(preset, overrides, bias)
    text = config_yaml(cfg)
    if output == "table":  # the YAML itself: save it, edit it, load it back
        typer.echo(text, nl=False)
    elif output == "markdown":
        typer.echo(f"```yaml\n{text}```")
    else:
        emit_result(output, cfg.to_dict(), [])
