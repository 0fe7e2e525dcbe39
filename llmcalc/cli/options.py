"""What the commands share: option aliases, the checks of option values, loading a preset with
--set overrides, the output format, the progress spinner and the sequence-length rule."""

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console

from llmcalc.config.sizes import MAX_SIZE
from llmcalc.errors import LLMCalcError, quote

PresetArg = Annotated[str, typer.Argument(help="Built-in preset name or path to a YAML file.")]


SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE", help="Override a config field (repeatable)."),
]


BiasOpt = Annotated[
    bool | None,
    typer.Option(
        "--bias/--no-bias", help="Turn every block bias (q, k, v, o, MLP; not the LM head) on/off."
    ),
]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout only.")]


FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="Output: table, json, markdown, csv (--json = --format json)."),
]


SeqOpt = Annotated[
    int | None, typer.Option("--seq", help="Tokens per sequence (default: max_seq_len).")
]


BatchOpt = Annotated[int, typer.Option("--batch", help="Sequences per step.")]


PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="Training precision: fp32, bf16, mixed.")
]


InferenceDtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="Inference weight and KV dtype: fp32, bf16, fp16 (default: the config's, else bf16).",
    ),
]


DeviceOpt = Annotated[
    str, typer.Option("--device", help="Where to build the model: meta (no memory), cpu, cuda.")
]


DtypeOpt = Annotated[
    str, typer.Option("--dtype", help="Weight dtype for a cpu/cuda build: fp32, bf16, fp16.")
]


def choice(option: str, value: str, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise LLMCalcError(f"{option} {quote(value)}: allowed values are {', '.join(allowed)}")
    return value


def load_preset(preset: str, overrides: list[str] | None, bias: bool | None = None) -> Any:
    from llmcalc.config.presets import load_config, parse_overrides

    changes = parse_overrides(overrides or [])
    if bias is not None:  # every block bias, clearing per-part flags from the preset
        changes.update(bias=bias, qkv_bias=None, out_bias=None, mlp_bias=None)
    return load_config(preset, changes)


def emit_result(fmt: str, data: dict[str, Any], renderables: list[Any]) -> None:
    from llmcalc.output import emit

    text = emit(fmt, data, renderables)
    if text is not None:
        typer.echo(text)


def output_format(as_json: bool, fmt: str | None) -> str:
    """--json is the alias of --format json."""
    from llmcalc.output import FORMATS

    if fmt is None:
        return "json" if as_json else "table"
    choice("--format", fmt, FORMATS)
    if as_json and fmt != "json":
        raise LLMCalcError(f"--json and --format {fmt}: give one")
    return fmt


def positive(option: str, value: int | float | None) -> None:
    """A positive option value: finite, and at most 10**30 (past any real batch, sequence or
    GPU count; the closed forms stay exact and inside a float's range below it)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise LLMCalcError(f"{option} {value}: must be a finite number")
    if value <= 0:
        raise LLMCalcError(f"{option} {quote(value)}: must be positive")
    if value > MAX_SIZE:
        raise LLMCalcError(f"{option} {quote(value)}: at most 10**30, far past any real run")


@contextlib.contextmanager
def progress(quiet: bool, command: str) -> Iterator[Any]:
    """A spinner with the running command and its current step on stderr; off unless stdout and
    stderr are terminals and the output is the table (never with JSON, Markdown or CSV)."""
    console = Console(stderr=True, highlight=False, markup=False)
    # NO_COLOR: no escape codes at all, and a spinner is nothing but cursor codes
    plain = bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"
    if quiet or plain or not console.is_terminal or not sys.stdout.isatty():
        yield lambda step: None
        return
    with console.status("working") as status:
        yield lambda step: status.update(f"llmcalc {command}: {step}")


def checked_seq(cfg: Any, seq: int | None) -> int:
    """The sequence length (default max_seq_len); beyond a learned table is an error."""
    length = cfg.max_seq_len if seq is None else seq
    warning = cfg.seq_warning("--seq", length)
    if warning:
        typer.echo(warning, err=True)
    return length
