"""`llmcalc plan`: the layouts of a training job on N GPUs that fit, fastest first."""

from typing import Annotated

import typer

from llmcalc.cli.options import (
    FormatOpt,
    JsonOpt,
    PrecisionOpt,
    PresetArg,
    SetOpt,
    checked_seq,
    choice,
    emit_result,
    load_preset,
    output_format,
    positive,
)
from llmcalc.errors import LLMCalcError


def plan(
    preset: PresetArg,
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs to lay the job out on.")],
    global_batch: Annotated[
        str,
        typer.Option(
            "--global-batch",
            help="Tokens per step, whole sequences: 16777216 (K, M, B are 10³, 10⁶, 10⁹).",
        ),
    ],
    gpu: Annotated[
        str, typer.Option("--gpu", help="GPU kind: a100, h100, h200, b200, mi300x.")
    ] = "h100",
    gpu_mem: Annotated[
        str | None,
        typer.Option("--gpu-mem", help="Memory per GPU, e.g. 80GiB (default: the GPU's)."),
    ] = None,
    seq: Annotated[
        int | None, typer.Option("--seq", help="Tokens per sequence (default: max_seq_len).")
    ] = None,
    mfu: Annotated[
        float, typer.Option("--mfu", help="Fraction of the peak FLOP/s the compute reaches.")
    ] = 0.4,
    intra_node_bw: Annotated[
        str | None,
        typer.Option("--intra-node-bw", help="Per-GPU bytes/s inside a node, e.g. 450GB."),
    ] = None,
    inter_node_bw: Annotated[
        str | None,
        typer.Option("--inter-node-bw", help="Per-GPU bytes/s between nodes, e.g. 50GB."),
    ] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option("--gpus-per-node", help="GPUs per node (default 8).")
    ] = None,
    precision: PrecisionOpt = "mixed",
    optimizer: Annotated[
        str, typer.Option("--optimizer", help="adamw, sgd, sgd-momentum.")
    ] = "adamw",
    attention: Annotated[
        str, typer.Option("--attention", help="sdpa (fused) or eager (T×T scores).")
    ] = "sdpa",
    top: Annotated[int, typer.Option("--top", help="How many layouts to show.")] = 5,
    overrides: SetOpt = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Layouts (dp × tp × pp × cp × ep, ZeRO, recomputation, micro-batch) that fit, fastest first."""
    from llmcalc.memory.formula import OPTIMIZERS, PRECISIONS
    from llmcalc.parallel.interconnect import machine
    from llmcalc.parallel.plan import plan as search
    from llmcalc.units import parse_count, parse_size
    from llmcalc.views.plan import plan_json, plan_renderables, search_progress

    positive("--gpus", gpus)
    positive("--seq", seq)
    positive("--top", top)
    positive("--gpus-per-node", gpus_per_node)
    if gpus_per_node and gpus > gpus_per_node and gpus % gpus_per_node:
        raise LLMCalcError(
            f"--gpus-per-node {gpus_per_node}: must divide --gpus {gpus} (whole nodes), or be at "
            "least it"
        )
    if not 0 < mfu <= 1:
        raise LLMCalcError(f"--mfu {mfu}: must be in (0, 1]")
    choice("--precision", precision, PRECISIONS)
    choice("--optimizer", optimizer, OPTIMIZERS)
    choice("--attention", attention, ("sdpa", "eager"))
    output = output_format(as_json, fmt)
    tokens = parse_count("--global-batch", global_batch)
    hardware = machine(
        gpu,
        memory=parse_size("--gpu-mem", gpu_mem) if gpu_mem is not None else None,
        intra_node=parse_size("--intra-node-bw", intra_node_bw) if intra_node_bw else None,
        inter_node=parse_size("--inter-node-bw", inter_node_bw) if inter_node_bw else None,
        gpus_per_node=gpus_per_node,
    )
    cfg = load_preset(preset, overrides)
    length = checked_seq(cfg, seq)
    with search_progress(output != "table") as on_progress:
        result = search(
            cfg,
            gpus,
            hardware,
            length,
            tokens,
            mfu=mfu,
            precision=precision,
            optimizer=optimizer,
            attention=attention,
            top=top,
            on_progress=on_progress,
        )
    emit_result(output, plan_json(result), plan_renderables(result))
