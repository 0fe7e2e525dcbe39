"""`llmcalc show`: the resolved config as YAML."""

import typer

from llmcalc.cli.options import BiasOpt, PresetArg, SetOpt, load_preset


def show(preset: PresetArg, overrides: SetOpt = None, bias: BiasOpt = None) -> None:
    """Print the config as YAML to save, edit and reuse (derived fields as comments)."""
    from llmcalc.views.report import config_yaml

    typer.echo(config_yaml(load_preset(preset, overrides, bias)), nl=False)
