"""Thin Typer wiring: parse, call analysis, render with report. Bad input -> one `Error:` line, exit 2.

Set LLMCALC_DEBUG=1 to see the traceback behind an error.
"""

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console

from llmcalc import __version__
from llmcalc.errors import LLMCalcError

app = typer.Typer(
    name="llmcalc",
    help="Exact parameters, FLOPs and memory of Transformer LLMs, counted on the real model.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

# --- shared options ---------------------------------------------------------------------------

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
DeviceOpt = Annotated[
    str, typer.Option("--device", help="Where to build the model: meta (no memory), cpu, cuda.")
]
DtypeOpt = Annotated[
    str, typer.Option("--dtype", help="Weight dtype for a cpu/cuda build: fp32, bf16, fp16.")
]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """LLMCalcError -> `Error: ...` on stderr and exit code 2, no traceback."""
    try:
        yield
    except LLMCalcError as exc:
        if os.environ.get("LLMCALC_DEBUG"):
            raise
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None


def _choice(option: str, value: str, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise LLMCalcError(f"{option} {value!r}: allowed values are {', '.join(allowed)}")
    return value


def _load(preset: str, overrides: list[str] | None, bias: bool | None = None) -> Any:
    from llmcalc.presets import load_config, parse_overrides

    changes = parse_overrides(overrides or [])
    if bias is not None:  # every block bias, clearing per-part flags from the preset
        changes.update(bias=bias, qkv_bias=None, out_bias=None, mlp_bias=None)
    return load_config(preset, changes)


def _emit(as_json: bool, data: dict[str, Any], renderables: list[Any]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console(highlight=False, markup=False)
    for item in renderables:
        console.print(item)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmcalc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Exact parameters, FLOPs and memory of Transformer LLMs, counted on the real model."""


# --- commands ---------------------------------------------------------------------------------


@app.command()
def presets(as_json: JsonOpt = False) -> None:
    """List the built-in presets with their key sizes and parameter counts."""
    with user_errors():
        from llmcalc.formulas import param_formula
        from llmcalc.presets import builtin_names, load_config
        from llmcalc.report import presets_table

        rows = [(cfg, param_formula(cfg).total.value) for cfg in map(load_config, builtin_names())]
        data = {
            "presets": [
                {
                    "name": cfg.name,
                    "d_model": cfg.d_model,
                    "n_layers": cfg.n_layers,
                    "n_heads": cfg.n_heads,
                    "n_kv_heads": cfg.n_kv_heads,
                    "d_ff": cfg.d_ff,
                    "params": total,
                    "source": cfg.source,
                }
                for cfg, total in rows
            ]
        }
        _emit(as_json, data, [presets_table(rows)])


@app.command()
def show(preset: PresetArg, overrides: SetOpt = None, bias: BiasOpt = None) -> None:
    """Print the resolved config as YAML (derived fields filled in)."""
    with user_errors():
        from llmcalc.report import config_yaml

        typer.echo(config_yaml(_load(preset, overrides, bias)), nl=False)


@app.command()
def params(
    preset: PresetArg,
    overrides: SetOpt = None,
    bias: BiasOpt = None,
    full: Annotated[bool, typer.Option("--full", help="List every layer's tensors.")] = False,
    as_json: JsonOpt = False,
    device: DeviceOpt = "meta",
    dtype: DtypeOpt = "fp32",
) -> None:
    """Parameter tables (per tensor, per component) and the closed form, counted vs formula."""
    with user_errors():
        from llmcalc.analysis import analyze_params
        from llmcalc.report import params_json, params_renderables
        from llmcalc.resources import DEVICES, DTYPE_BYTES

        _choice("--device", device, DEVICES)
        _choice("--dtype", dtype, list(DTYPE_BYTES))
        result = analyze_params(_load(preset, overrides, bias), device=device, dtype=dtype)
        _emit(as_json, params_json(result), params_renderables(result, full))


def _positive(option: str, value: int | float | None) -> None:
    if value is not None and value <= 0:
        raise LLMCalcError(f"{option} {value}: must be positive")


@app.command()
def flops(
    preset: PresetArg,
    seq: Annotated[
        int | None, typer.Option("--seq", help="Tokens per sequence (default: max_seq_len).")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Sequences per step.")] = 1,
    recompute: Annotated[
        str, typer.Option("--recompute", help="Activation recomputation: none, full.")
    ] = "none",
    context: Annotated[
        int | None,
        typer.Option(
            "--context", help="Decode position p for the per-token figure (default: seq)."
        ),
    ] = None,
    tokens: Annotated[
        int | None, typer.Option("--tokens", help="Training tokens D for a total budget.")
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option(
            "--gpu", help="GPU for wall-clock time: a100, h100, h200, b200, rtx4090, mi300x."
        ),
    ] = None,
    peak_tflops: Annotated[
        float | None, typer.Option("--peak-tflops", help="Peak TFLOP/s per GPU instead of --gpu.")
    ] = None,
    dtype: Annotated[
        str, typer.Option("--dtype", help="Dtype of the --gpu peak: bf16, fp16, fp8, tf32, fp32.")
    ] = "bf16",
    mfu: Annotated[
        float, typer.Option("--mfu", help="Model FLOPs utilisation assumed for time.")
    ] = 0.4,
    gpus: Annotated[int, typer.Option("--gpus", help="Number of GPUs.")] = 1,
    full_trace: Annotated[
        bool, typer.Option("--full-trace", help="Trace every block, not one × n_layers.")
    ] = False,
    no_count: Annotated[
        bool, typer.Option("--no-count", help="Analytic only: skip the counted traces.")
    ] = False,
    overrides: SetOpt = None,
    bias: BiasOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """FLOPs per component: analytic, counted with FlopCounterMode and fvcore, every convention."""
    with user_errors():
        from llmcalc.analysis import analyze_flops
        from llmcalc.hardware import peak_flops_per_second
        from llmcalc.report_flops import flops_json, flops_renderables

        cfg = _load(preset, overrides, bias)
        for option, value in (
            ("--seq", seq),
            ("--batch", batch),
            ("--tokens", tokens),
            ("--gpus", gpus),
            ("--peak-tflops", peak_tflops),
            ("--mfu", mfu),
        ):
            _positive(option, value)
        if context is not None and context < 0:
            raise LLMCalcError(f"--context {context}: must be 0 or more")
        if mfu > 1:
            raise LLMCalcError(f"--mfu {mfu}: must be in (0, 1]")
        _choice("--recompute", recompute, ("none", "full"))
        if gpu is not None and peak_tflops is not None:
            raise LLMCalcError("--gpu and --peak-tflops: give one, not both")
        peak = peak_tflops * 1e12 if peak_tflops is not None else None
        if gpu is not None:
            peak = peak_flops_per_second(gpu, dtype)
        if (gpu is not None or peak_tflops is not None) and tokens is None:
            raise LLMCalcError("--gpu/--peak-tflops need --tokens D (the training tokens to time)")
        length = cfg.max_seq_len if seq is None else seq
        if length > cfg.max_seq_len:
            if cfg.position == "learned":
                raise LLMCalcError(
                    f"--seq {length}: above max_seq_len = {cfg.max_seq_len}, the size of the learned "
                    "position table; raise it with --set max_seq_len=N"
                )
            typer.echo(
                f"Warning: --seq {length} is above max_seq_len = {cfg.max_seq_len}: counted as asked "
                f"({cfg.position} positions have no table to run out of)",
                err=True,
            )
        result = analyze_flops(
            cfg,
            batch=batch,
            seq=length,
            recompute=recompute,
            decode_position=context,
            tokens=tokens,
            peak_flops_per_gpu=peak,
            gpus=gpus,
            mfu=mfu,
            one_block=not full_trace,
            count=not no_count,
        )
        _emit(as_json, flops_json(result), flops_renderables(result))


@app.command()
def check(
    presets: Annotated[
        list[str] | None,
        typer.Argument(help="Presets to check (default: every built-in preset and the grid)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Formula == counted (parameters per component, matmul FLOPs forward and backward) for presets
    and a grid of variants; exit 1 on any mismatch."""
    with user_errors():
        from llmcalc.analysis import check_configs, grid_configs
        from llmcalc.presets import builtin_names, load_config
        from llmcalc.report import check_json, check_table

        if presets:
            configs = [load_config(p) for p in presets]
        else:
            configs = [load_config(p) for p in builtin_names()] + grid_configs()
        results = check_configs(configs)
        _emit(as_json, check_json(results), [check_table(results)])
        failed = [r for r in results if not r.exact]
        if not as_json:
            summary = f"{len(results) - len(failed)} of {len(results)} configs exact"
            typer.echo(summary if not failed else f"{summary}; {len(failed)} MISMATCH")
    if failed:
        raise typer.Exit(1)


def main() -> None:
    app()
