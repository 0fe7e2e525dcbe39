"""`llmcalc flops`: FLOPs per component, analytic and counted, and every convention."""

from typing import Annotated

import typer

from llmcalc.cli.options import (
    BatchOpt,
    BiasOpt,
    FormatOpt,
    JsonOpt,
    PresetArg,
    SeqOpt,
    SetOpt,
    checked_seq,
    choice,
    emit_result,
    load_preset,
    output_format,
    positive,
    progress,
)
from llmcalc.errors import LLMCalcError


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
            "--context",
            help="Decode position p for the per-token figure (default: seq − 1, the last token).",
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
    from llmcalc.config.hardware import peak_flops_per_second
    from llmcalc.flops.analysis import analyze_flops
    from llmcalc.flops.report import flops_json, flops_renderables
    from llmcalc.units import parse_count

    cfg = load_preset(preset, overrides, bias)
    tokens = parse_count("--tokens", tokens_text) if tokens_text is not None else None
    for option, value in (
        ("--seq", seq),
        ("--batch", batch),
        ("--gpus", gpus),
        ("--peak-tflops", peak_tflops),
        ("--mfu", mfu),
    ):
        positive(option, value)
    if context is not None and context < 0:
        raise LLMCalcError(f"--context {context}: must be 0 or more")
    positive("--context", context or None)
    if not 1e-6 <= mfu <= 1:  # below, the time is past any float (and not a real run)
        raise LLMCalcError(f"--mfu {mfu}: must be in [1e-6, 1]")
    if peak_tflops is not None and not 1e-6 <= peak_tflops <= 1e9:
        raise LLMCalcError(f"--peak-tflops {peak_tflops}: must be in [1e-6, 1e9] TFLOP/s")
    choice("--recompute", recompute, ("none", "full"))
    if gpu is not None and peak_tflops is not None:
        raise LLMCalcError("--gpu and --peak-tflops: give one, not both")
    peak = peak_tflops * 1e12 if peak_tflops is not None else None
    if gpu is not None:
        peak = peak_flops_per_second(gpu, dtype)
    if (gpu is not None or peak_tflops is not None) and tokens is None:
        raise LLMCalcError("--gpu/--peak-tflops need --tokens D (the training tokens to time)")
    if not no_count:  # a step the counters cannot run is refused before any warning about it
        from llmcalc.model.limits import check_step

        check_step(cfg, batch, cfg.max_seq_len if seq is None else seq)
    length = checked_seq(cfg, seq)
    if context is not None:  # a decode at position p takes positions 0..p
        warning = cfg.seq_warning("--context", context, positions=context + 1)
        if warning:
            typer.echo(warning, err=True)
    output = output_format(as_json, fmt)
    with progress(output != "table" or no_count, "flops") as status:
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
    emit_result(output, flops_json(result), flops_renderables(result))
