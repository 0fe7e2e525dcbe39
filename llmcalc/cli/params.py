"""`llmcalc params`: parameter tables and the closed form, counted vs formula."""

from typing import Annotated

import typer

from llmcalc.cli.options import (
    BiasOpt,
    DeviceOpt,
    DtypeOpt,
    FormatOpt,
    JsonOpt,
    PresetArg,
    SetOpt,
    choice,
    emit_result,
    load_preset,
    output_format,
)


def params(
    preset: PresetArg,
    overrides: SetOpt = None,
    bias: BiasOpt = None,
    full: Annotated[bool, typer.Option("--full", help="List every layer's tensors.")] = False,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
    device: DeviceOpt = "meta",
    dtype: DtypeOpt = "fp32",
) -> None:
    """Parameter tables (per tensor, per component) and the closed form, counted vs formula."""
    from llmcalc.config.dtypes import DTYPE_BYTES
    from llmcalc.config.hardware import DEVICES
    from llmcalc.params.analysis import analyze_params
    from llmcalc.params.report import params_json, params_renderables

    choice("--device", device, DEVICES)
    choice("--dtype", dtype, list(DTYPE_BYTES))
    output = output_format(as_json, fmt)  # a bad --format is refused before the build
    result = analyze_params(load_preset(preset, overrides, bias), device=device, dtype=dtype)
    emit_result(output, params_json(result), params_renderables(result, full))
