"""`llmcalc compare`: models side by side."""

from typing import Annotated

import typer

from llmcalc.cli.options import (
    BatchOpt,
    FormatOpt,
    InferenceDtypeOpt,
    JsonOpt,
    PrecisionOpt,
    SeqOpt,
    checked_seq,
    choice,
    emit_result,
    load_preset,
    output_format,
    positive,
)
from llmcalc.errors import LLMCalcError


def compare(
    presets: Annotated[list[str], typer.Argument(help="Two or more presets or config.json files.")],
    seq: SeqOpt = None,
    batch: BatchOpt = 1,
    precision: PrecisionOpt = "mixed",
    dtype: InferenceDtypeOpt = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Models side by side: params, FLOPs per token, KV bytes per token, training/inference memory."""
    from llmcalc.config.dtypes import DTYPE_BYTES
    from llmcalc.memory.formula import PRECISIONS
    from llmcalc.views.compare import compare_models
    from llmcalc.views.report import compare_table

    if len(presets) < 2:
        raise LLMCalcError(f"compare needs two or more models; got {len(presets)}")
    positive("--seq", seq)
    positive("--batch", batch)
    choice("--precision", precision, PRECISIONS)
    if dtype is not None:
        choice("--dtype", dtype, tuple(DTYPE_BYTES))
    configs = [load_preset(preset, None) for preset in presets]
    length = seq if seq is not None else min(cfg.max_seq_len for cfg in configs)
    for cfg in configs:
        checked_seq(cfg, length)
    table = compare_models(configs, batch, length, precision, dtype)
    data = {
        "batch": batch,
        "seq": length,
        "precision": precision,
        "dtype": dtype,
    }
    emit_result(
        output_format(as_json, fmt), {**data, "models": table}, [compare_table(table, data)]
    )
