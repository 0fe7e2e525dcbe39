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
    """Print the resolved config as YAML (derived fields filled in); --format json|markdown|csv."""
    import yaml

    from llmcalc.views.report import config_yaml

    output = output_format(as_json, fmt)
    text = config_yaml(load_preset(preset, overrides, bias))
    if output == "table":  # the YAML itself: save it, edit it, load it back
        typer.echo(text, nl=False)
    elif output == "markdown":
        typer.echo(f"```yaml\n{text}```")
    else:
        emit_result(output, yaml.safe_load(text), [])
