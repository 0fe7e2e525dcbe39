"""`llmcalc memory`: KV cache, training and inference memory; predicted, traced, measured."""

from typing import Annotated, Any

import typer

from llmcalc.cli.options import (
    BatchOpt,
    BiasOpt,
    FormatOpt,
    JsonOpt,
    PrecisionOpt,
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
from llmcalc.cli.parallel import (
    CpOpt,
    DpOpt,
    EpOpt,
    GpusOpt,
    MicrobatchesOpt,
    OffloadOpt,
    PpOpt,
    ScheduleOpt,
    SpOpt,
    TpOpt,
    VirtualOpt,
    ZeroOpt,
    run_parallel,
)
from llmcalc.errors import LLMCalcError


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
        str,
        typer.Option(
            "--attention", help="sdpa (fused, O(T)), eager (T×T scores) or math (SDPA's math path)."
        ),
    ] = "sdpa",
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            help="Inference weight dtype: fp32, bf16, fp16 (default: the config's dtype, else bf16).",
        ),
    ] = None,
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
    dp: DpOpt = 1,
    zero: ZeroOpt = 0,
    tp: TpOpt = 1,
    sp: SpOpt = False,
    pp: PpOpt = 1,
    schedule: ScheduleOpt = "1f1b",
    microbatches: MicrobatchesOpt = None,
    virtual_stages: VirtualOpt = 1,
    cp: CpOpt = 1,
    ep: EpOpt = 1,
    gpus: GpusOpt = None,
    offload: OffloadOpt = "none",
    overrides: SetOpt = None,
    bias: BiasOpt = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """KV cache (MHA/GQA/MQA), training and inference memory: predicted, traced, measured; per
    GPU under data, ZeRO, tensor, sequence, pipeline, context and expert parallelism."""
    from llmcalc.config.dtypes import DTYPE_BYTES, KV_DTYPES
    from llmcalc.memory.analysis import analyze_memory, resolve_kv_heads
    from llmcalc.memory.formula import ATTENTION_IMPLS, CHECKPOINTING, OPTIMIZERS, PRECISIONS
    from llmcalc.memory.report import memory_json, memory_renderables
    from llmcalc.units import parse_size

    cfg = load_preset(preset, overrides, bias)
    positive("--seq", seq)
    positive("--batch", batch)
    positive("--gqa", gqa if gqa is not None and gqa > 0 else None)
    choice("--precision", precision, PRECISIONS)
    choice("--optimizer", optimizer, OPTIMIZERS)
    choice("--checkpointing", checkpointing, CHECKPOINTING)
    choice("--attention", attention, ATTENTION_IMPLS)
    if dtype is not None:
        choice("--dtype", dtype, tuple(DTYPE_BYTES))
    if kv_dtype is not None:
        choice("--kv-dtype", kv_dtype, tuple(KV_DTYPES))
    choice("--measure-on", measure_on, ("cuda", "cpu"))
    output = output_format(as_json, fmt)  # a bad --format is refused before any work
    if force and measure_on != "cuda":
        raise LLMCalcError(
            "--force: only with --measure-on cuda (a CPU run past free memory is refused)"
        )
    if trace or measure:  # a step that cannot be traced is refused before any warning about it
        from llmcalc.model.limits import check_step

        check_step(cfg, batch, cfg.max_seq_len if seq is None else seq, attention)
    length = checked_seq(cfg, seq)
    from llmcalc.parallel.layout import Layout

    if microbatches is None:  # a pipeline needs one per stage to fill (1F1B's minimum)
        microbatches = pp if pp > 1 else 1
    layout = Layout(dp, zero, tp, sp, pp, schedule, microbatches, virtual_stages, cp, ep, offload)
    if layout != Layout() or gpus is not None:
        given = [
            name
            for name, on in (
                ("--measure", measure),
                (f"--gpu-mem {gpu_mem}", gpu_mem is not None),
                ("--mha", mha),
                (f"--gqa {gqa}", gqa is not None),
                ("--mqa", mqa),
            )
            if on
        ]
        if given:
            raise LLMCalcError(
                f"{given[0]}: not with --dp/--tp/--pp/--cp/--ep/--zero/--offload/--gpus; per-GPU"
                " memory takes --trace (to fit a GPU: llmcalc plan --gpu-mem)"
            )
        setup = dict(
            batch=batch,
            seq=length,
            precision=precision,
            optimizer=optimizer,
            checkpointing=checkpointing,
            attention=attention,
        )
        run_parallel(cfg, layout, setup, trace, output, gpus)
        return
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
        quiet = output != "table"
        result = _trace_and_measure(result, measure, measure_on, force, quiet)
    emit_result(output, memory_json(result), memory_renderables(result))


def _trace_and_measure(result: Any, measure: bool, device: str, force: bool, quiet: bool) -> Any:
    """Add the traced step and, with --measure, the real one (traced only when no CUDA)."""
    import dataclasses

    from llmcalc.memory.analysis import refuse_if_too_big
    from llmcalc.model.limits import check_buildable, check_step

    # before torch is imported: a model or a step torch cannot represent is refused in a blink,
    # and so is a CPU run larger than this process may use (before a trace of minutes)
    check_buildable(result.config)
    check_step(result.config, result.batch, result.seq, result.attention)
    if measure and device == "cpu":
        refuse_if_too_big(device, result.training.peak, force)

    import torch

    from llmcalc.config.dtypes import torch_dtype
    from llmcalc.memory.trace import trace_prefill, trace_training

    setup = dict(
        batch=result.batch,
        seq=result.seq,
        precision=result.precision,
        optimizer=result.optimizer,
        checkpointing=result.checkpointing,
        attention=result.attention,
    )
    if measure and device == "cuda" and torch.cuda.is_available():
        refuse_if_too_big(device, result.training.peak, force)  # before a trace of minutes
    with progress(quiet, "memory") as status:
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
        from llmcalc.memory.measure import measure_training

        measured = measure_training(result.config, device=device, on_progress=status, **setup)
        return dataclasses.replace(result, measured=measured)
