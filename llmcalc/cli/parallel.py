"""The multi-GPU options of `llmcalc memory` and the per-GPU report they switch on."""

from typing import Annotated, Any

import typer

from llmcalc.cli.options import emit_result, progress

DpOpt = Annotated[int, typer.Option("--dp", help="Data-parallel degree (GPUs per model copy).")]
ZeroOpt = Annotated[
    int,
    typer.Option(
        "--zero",
        help="ZeRO stage over the data-parallel GPUs: 0 replicated, 1 optimizer, 2 +gradients, "
        "3 +weights (FSDP2 fully_shard).",
    ),
]
TpOpt = Annotated[int, typer.Option("--tp", help="Tensor-parallel degree (divides the heads).")]
SpOpt = Annotated[bool, typer.Option("--sp", help="Sequence parallelism within the TP group.")]
PpOpt = Annotated[int, typer.Option("--pp", help="Pipeline-parallel stages.")]
ScheduleOpt = Annotated[
    str, typer.Option("--schedule", help="Pipeline schedule: gpipe, 1f1b, interleaved.")
]
MicrobatchesOpt = Annotated[
    int | None,
    typer.Option(
        "--microbatches",
        help="Micro-batches per step, of --batch sequences each (default 1; with --pp, --pp).",
    ),
]
VirtualOpt = Annotated[
    int, typer.Option("--virtual-stages", help="Model chunks per pipeline GPU (interleaved).")
]
CpOpt = Annotated[int, typer.Option("--cp", help="Context-parallel degree (divides --seq).")]
EpOpt = Annotated[int, typer.Option("--ep", help="Expert-parallel degree (divides n_experts).")]
GpusOpt = Annotated[
    int | None,
    typer.Option("--gpus", help="GPUs in all: checks that dp × tp × pp × cp make it up."),
]
OffloadOpt = Annotated[
    str, typer.Option("--offload", help="Offload to the host: none, optimizer, params.")
]


def run_parallel(
    cfg: Any, layout: Any, setup: dict[str, Any], trace: bool, output: str, gpus: int | None
) -> None:
    """Predict (and with `trace`, trace on the fake process group) the per-GPU step; print it."""
    from llmcalc.parallel.analysis import analyze_parallel
    from llmcalc.parallel.layout import check_layout
    from llmcalc.parallel.report import parallel_json, parallel_renderables

    check_layout(cfg, layout, setup["seq"], gpus)  # --gpus: the degrees must make it up

    with progress(output != "table", "memory") as status:
        if trace:
            status(f"tracing rank 0 of {layout.world:,} on the fake process group")
        result = analyze_parallel(cfg, layout, trace=trace, **setup)
    emit_result(output, parallel_json(result), parallel_renderables(result))
