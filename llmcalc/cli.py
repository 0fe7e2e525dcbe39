"""Thin Typer wiring: parse, call analysis, render with report. Bad input -> one `Error:` line, exit 2.

Set LLMCALC_DEBUG=1 to see the traceback behind an error.
"""

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console

from llmcalc import __version__
from llmcalc.errors import LLMCalcError

try:  # typer >= 0.25 vendors click; older versions use it as a dependency
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors


class OneLineErrors(typer.core.TyperGroup):
    """Bad input is one `Error:` line on stderr, no traceback, whichever layer finds it: llmcalc's
    checks (LLMCalcError: exit 2, or 1 for a run that failed) or typer's own parsing (a wrong type,
    an unknown option, a missing argument: exit 2), which would otherwise print a boxed usage
    block. LLMCALC_DEBUG=1 lets llmcalc's errors raise with their traceback."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except LLMCalcError as exc:
            if os.environ.get("LLMCALC_DEBUG"):
                raise
            typer.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except getattr(click_errors, "NoArgsIsHelpError", ()) as exc:
            exc.show()  # a bare command prints its help
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            context = getattr(exc, "ctx", None)
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            message = " ".join(exc.format_message().split())
            typer.echo(f"Error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
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
    str, typer.Option("--dtype", help="Inference weight and KV dtype: fp32, bf16, fp16.")
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="Where to build the model: meta (no memory), cpu, cuda.")
]
DtypeOpt = Annotated[
    str, typer.Option("--dtype", help="Weight dtype for a cpu/cuda build: fp32, bf16, fp16.")
]


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


def _emit(fmt: str, data: dict[str, Any], renderables: list[Any]) -> None:
    from llmcalc.output import emit

    text = emit(fmt, data, renderables)
    if text is not None:
        typer.echo(text)


def _format(as_json: bool, fmt: str | None) -> str:
    """--json is the alias of --format json."""
    from llmcalc.output import FORMATS

    if fmt is None:
        return "json" if as_json else "table"
    _choice("--format", fmt, FORMATS)
    if as_json and fmt != "json":
        raise LLMCalcError(f"--json and --format {fmt}: give one")
    return fmt


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
def presets(as_json: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """List the built-in presets with their key sizes and parameter counts."""
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
    _emit(_format(as_json, fmt), data, [presets_table(rows)])


@app.command()
def show(preset: PresetArg, overrides: SetOpt = None, bias: BiasOpt = None) -> None:
    """Print the resolved config as YAML (derived fields filled in)."""
    from llmcalc.report import config_yaml

    typer.echo(config_yaml(_load(preset, overrides, bias)), nl=False)


@app.command()
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
    from llmcalc.analysis import analyze_params
    from llmcalc.report import params_json, params_renderables
    from llmcalc.resources import DEVICES, DTYPE_BYTES

    _choice("--device", device, DEVICES)
    _choice("--dtype", dtype, list(DTYPE_BYTES))
    result = analyze_params(_load(preset, overrides, bias), device=device, dtype=dtype)
    _emit(_format(as_json, fmt), params_json(result), params_renderables(result, full))


def _positive(option: str, value: int | float | None) -> None:
    if value is not None and value <= 0:
        raise LLMCalcError(f"{option} {value}: must be positive")


@app.command()
def flops(
    preset: PresetArg,
    seq: SeqOpt = None,
    batch: BatchOpt = 1,
    recompute: Annotated[
        str, typer.Option("--recompute", help="Activation recomputation: none, full.")
    ] = "none",
    context: Annotated[
        int | None,
        typer.Option(
            "--context", help="Decode position p for the per-token figure (default: seq)."
        ),
    ] = None,
    tokens_text: Annotated[
        str | None,
        typer.Option(
            "--tokens", help="Training tokens D for a total budget: 2000000000, 1.5e13, 300B, 15T."
        ),
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
    fmt: FormatOpt = None,
) -> None:
    """FLOPs per component: analytic, counted with FlopCounterMode and fvcore, every convention."""
    from llmcalc.analysis import analyze_flops
    from llmcalc.hardware import peak_flops_per_second
    from llmcalc.report_flops import flops_json, flops_renderables
    from llmcalc.units import parse_count

    cfg = _load(preset, overrides, bias)
    tokens = parse_count("--tokens", tokens_text) if tokens_text is not None else None
    for option, value in (
        ("--seq", seq),
        ("--batch", batch),
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
    length = _checked_seq(cfg, seq)
    output = _format(as_json, fmt)
    with _progress(output != "table" or no_count) as status:
        status("counting FLOPs on the meta model (FlopCounterMode and fvcore)")
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
    _emit(output, flops_json(result), flops_renderables(result))


@app.command()
def memory(
    preset: PresetArg,
    seq: SeqOpt = None,
    batch: BatchOpt = 1,
    mha: Annotated[
        bool, typer.Option("--mha", help="Analyse with one KV head per query head.")
    ] = False,
    gqa: Annotated[
        int | None, typer.Option("--gqa", help="Analyse with N KV heads (N divides n_heads).")
    ] = None,
    mqa: Annotated[bool, typer.Option("--mqa", help="Analyse with a single KV head.")] = False,
    precision: PrecisionOpt = "mixed",
    optimizer: Annotated[
        str, typer.Option("--optimizer", help="adamw, sgd, sgd-momentum.")
    ] = "adamw",
    checkpointing: Annotated[
        str, typer.Option("--checkpointing", help="Activation checkpointing: none, full.")
    ] = "none",
    attention: Annotated[
        str, typer.Option("--attention", help="sdpa (fused, O(T)) or eager (T×T scores).")
    ] = "sdpa",
    dtype: Annotated[
        str, typer.Option("--dtype", help="Inference weight dtype: fp32, bf16, fp16.")
    ] = "bf16",
    kv_dtype: Annotated[
        str | None,
        typer.Option(
            "--kv-dtype", help="KV cache dtype: fp32, bf16, fp16, fp8, int8 (default --dtype)."
        ),
    ] = None,
    gpu_mem: Annotated[
        str | None,
        typer.Option(
            "--gpu-mem", help="Device memory, e.g. 80GiB: the largest batch and seq that fit."
        ),
    ] = None,
    trace: Annotated[
        bool, typer.Option("--trace", help="Also run the real step on fake tensors (any size).")
    ] = False,
    measure: Annotated[
        bool, typer.Option("--measure", help="Also run a real step on CUDA (traced if no CUDA).")
    ] = False,
    measure_on: Annotated[
        str,
        typer.Option("--measure-on", help="Device of --measure: cuda, or cpu for small models."),
    ] = "cuda",
    force: Annotated[
        bool,
        typer.Option("--force", help="--measure even if the predicted peak exceeds free memory."),
    ] = False,
    overrides: SetOpt = None,
    bias: BiasOpt = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """KV cache (MHA/GQA/MQA), training and inference memory: predicted, traced, measured."""
    from llmcalc.analysis_memory import analyze_memory, resolve_kv_heads
    from llmcalc.memory import ATTENTION_IMPLS, CHECKPOINTING, KV_DTYPES, OPTIMIZERS, PRECISIONS
    from llmcalc.report_memory import memory_json, memory_renderables
    from llmcalc.resources import DTYPE_BYTES
    from llmcalc.units import parse_size

    cfg = _load(preset, overrides, bias)
    _positive("--seq", seq)
    _positive("--batch", batch)
    _choice("--precision", precision, PRECISIONS)
    _choice("--optimizer", optimizer, OPTIMIZERS)
    _choice("--checkpointing", checkpointing, CHECKPOINTING)
    _choice("--attention", attention, ATTENTION_IMPLS)
    _choice("--dtype", dtype, tuple(DTYPE_BYTES))
    if kv_dtype is not None:
        _choice("--kv-dtype", kv_dtype, tuple(KV_DTYPES))
    _choice("--measure-on", measure_on, ("cuda", "cpu"))
    length = _checked_seq(cfg, seq)
    memory_bytes = parse_size("--gpu-mem", gpu_mem) if gpu_mem is not None else None
    result = analyze_memory(
        cfg,
        batch=batch,
        seq=length,
        kv_heads=resolve_kv_heads(cfg, mha, gqa, mqa),
        precision=precision,
        optimizer=optimizer,
        checkpointing=checkpointing,
        attention=attention,
        dtype=dtype,
        kv_dtype=kv_dtype,
        gpu_memory=memory_bytes,
    )
    if trace or measure:
        quiet = _format(as_json, fmt) != "table"
        result = _trace_and_measure(result, measure, measure_on, force, quiet)
    _emit(_format(as_json, fmt), memory_json(result), memory_renderables(result))


def _trace_and_measure(result: Any, measure: bool, device: str, force: bool, quiet: bool) -> Any:
    """Add the traced step and, with --measure, the real one (traced only when no CUDA)."""
    import dataclasses

    import torch

    from llmcalc.resources import torch_dtype
    from llmcalc.trace_memory import trace_prefill, trace_training

    setup = dict(
        batch=result.batch,
        seq=result.seq,
        precision=result.precision,
        optimizer=result.optimizer,
        checkpointing=result.checkpointing,
        attention=result.attention,
    )
    with _progress(quiet) as status:
        status("tracing a training step on fake tensors")
        traced = trace_training(result.config, **setup)
        status("tracing a prefill on fake tensors")
        prefill = trace_prefill(result.config, result.batch, result.seq, torch_dtype(result.dtype))
        result = dataclasses.replace(result, traced=traced, traced_inference=prefill)
        if not measure:
            return result
        if device == "cuda" and not torch.cuda.is_available():
            typer.echo(
                "Note: --measure: CUDA is not available here, so the traced step stands in for "
                "the measurement; --measure-on cpu runs a real step on CPU (small models)",
                err=True,
            )
            return result
        from llmcalc.measure import measure_training, refuse_if_too_big

        refuse_if_too_big(device, result.training.peak, force)
        measured = measure_training(result.config, device=device, on_progress=status, **setup)
        return dataclasses.replace(result, measured=measured)


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    """A spinner with the current step on stderr; off unless stdout and stderr are terminals
    and the output is the table (never with JSON, Markdown or CSV)."""
    console = Console(stderr=True, highlight=False, markup=False)
    if quiet or not console.is_terminal or not sys.stdout.isatty():
        yield lambda step: None
        return
    with console.status("working") as status:
        yield lambda step: status.update(f"llmcalc memory: {step}")


def _checked_seq(cfg: Any, seq: int | None) -> int:
    """The sequence length (default max_seq_len); beyond a learned table is an error."""
    length = cfg.max_seq_len if seq is None else seq
    warning = cfg.seq_warning("--seq", length)
    if warning:
        typer.echo(warning, err=True)
    return length


@app.command()
def compare(
    presets: Annotated[list[str], typer.Argument(help="Two or more presets or config.json files.")],
    seq: SeqOpt = None,
    batch: BatchOpt = 1,
    precision: PrecisionOpt = "mixed",
    dtype: InferenceDtypeOpt = "bf16",
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Models side by side: params, FLOPs per token, KV bytes per token, training/inference memory."""
    from llmcalc.compare import compare_models
    from llmcalc.memory import PRECISIONS
    from llmcalc.report_compare import compare_table
    from llmcalc.resources import DTYPE_BYTES

    if len(presets) < 2:
        raise LLMCalcError(f"compare needs two or more models; got {len(presets)}")
    _positive("--seq", seq)
    _positive("--batch", batch)
    _choice("--precision", precision, PRECISIONS)
    _choice("--dtype", dtype, tuple(DTYPE_BYTES))
    configs = [_load(preset, None) for preset in presets]
    length = seq if seq is not None else min(cfg.max_seq_len for cfg in configs)
    for cfg in configs:
        _checked_seq(cfg, length)
    table = compare_models(configs, batch, length, precision, dtype)
    data = {"batch": batch, "seq": length, "precision": precision, "dtype": dtype}
    _emit(_format(as_json, fmt), {**data, "models": table}, [compare_table(table, data)])


@app.command()
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
    dtype: InferenceDtypeOpt = "bf16",
    plot: Annotated[
        str | None, typer.Option("--plot", help="Also write the chart: out.png or out.svg.")
    ] = None,
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """A table and chart of metrics as fields, seq or batch vary (their product)."""
    from llmcalc.compare import ROWS
    from llmcalc.memory import PRECISIONS
    from llmcalc.presets import parse_overrides
    from llmcalc.report_compare import (
        check_plot_path,
        sweep_json,
        sweep_renderables,
        write_plot,
    )
    from llmcalc.resources import DTYPE_BYTES
    from llmcalc.sweep import parse_vary, run_sweep

    output = _format(as_json, fmt)
    _positive("--seq", seq)
    _positive("--batch", batch)
    _choice("--precision", precision, PRECISIONS)
    _choice("--dtype", dtype, tuple(DTYPE_BYTES))
    keys = [row.key for row in ROWS]
    chosen = keys if metrics is None else [m.strip() for m in metrics.split(",") if m.strip()]
    for key in chosen:
        _choice("--metrics", key, keys)
    target = check_plot_path(plot) if plot is not None else None
    varies = parse_vary(vary)
    with _progress(output != "table") as status:
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
    setup = {"preset": preset, "precision": precision, "dtype": dtype}
    _emit(output, sweep_json(points, setup), sweep_renderables(points, chosen, title))
    if target is not None:
        typer.echo(f"wrote {target}", err=True)


@app.command()
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
    from llmcalc.analysis import check_configs, grid_configs
    from llmcalc.presets import builtin_names, load_config
    from llmcalc.report import check_json, check_table

    if presets:
        configs = [load_config(p) for p in presets]
    else:
        configs = [load_config(p) for p in builtin_names()] + grid_configs()
    output = _format(as_json, fmt)
    results = check_configs(configs)
    _emit(output, check_json(results), [check_table(results)])
    failed = [r for r in results if not r.exact]
    if output == "table":
        summary = f"{len(results) - len(failed)} of {len(results)} configs exact"
        typer.echo(summary if not failed else f"{summary}; {len(failed)} MISMATCH")
    if failed:
        raise typer.Exit(1)


def main() -> None:
    app()
