"""ParallelAnalysis -> rich renderables and the --json dict."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from llmcalc.parallel.analysis import ParallelAnalysis
from llmcalc.parallel.buffers import CATEGORIES
from llmcalc.units import format_bytes

LABELS = {
    "weights": "weights",
    "gradients": "gradients",
    "optimizer": "optimizer state",
    "activations": "activations",
    "buffers": "communication buffers",
    "other": "logits and temporaries",
}


def _table(title: str, *columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for index, name in enumerate(columns):
        table.add_column(name, justify="left" if index == 0 else "right", no_wrap=index > 0)
    return table


def _error(value: int, reference: int) -> str:
    if value == reference:
        return "exact"
    return f"{100 * (value - reference) / reference:+.2f}%" if reference else "n/a"


def memory_table(result: ParallelAnalysis) -> Table:
    layout, ranks = result.layout, result.memory.ranks
    table = _table(f"Per-GPU memory, {layout.world:,} GPUs", "", *ranks)
    for category in CATEGORIES:
        table.add_row(
            LABELS[category], *(format_bytes(r.categories[category]) for r in ranks.values())
        )
    table.add_row("peak", *(format_bytes(r.peak) for r in ranks.values()))
    table.add_row("at", *(r.at for r in ranks.values()))
    if any(r.host for r in ranks.values()):
        table.add_row("on the host", *(format_bytes(r.host) for r in ranks.values()))
    return table


def comm_table(result: ParallelAnalysis) -> Table:
    table = _table(
        "Communication per GPU per step",
        "collective",
        "cause",
        "group",
        "calls",
        "bytes",
    )
    for row in result.comm.rows:
        table.add_row(
            row.collective, row.cause, row.group, f"{row.count:,}", format_bytes(row.bytes)
        )
    table.add_row("total", "", "", "", format_bytes(result.comm.total))
    return table


def traced_table(result: ParallelAnalysis) -> Table:
    traced, memory = result.traced, result.memory
    rank = memory.ranks[memory.peak_rank]
    table = _table(
        f"Predicted vs traced on torch.distributed's fake process group ({memory.peak_rank})",
        "",
        "predicted",
        "traced",
        "error",
    )
    table.add_row(
        "peak", format_bytes(rank.peak), format_bytes(traced.peak), _error(rank.peak, traced.peak)
    )
    predicted = result.comm.by_collective()
    for kind, nbytes in predicted.items():
        seen = traced.comm.get(kind, 0)
        if nbytes or seen:
            table.add_row(kind, f"{nbytes:,} B", f"{seen:,} B", _error(nbytes, seen))
    return table


def summary(result: ParallelAnalysis) -> Text:
    memory, layout = result.memory, result.layout
    rank = memory.ranks[memory.peak_rank]
    lines = [
        f"Layout: {layout.describe()} ({layout.world:,} GPUs)",
        f"{result.config.name}: micro-batch {result.batch} × {result.seq:,} tokens, "
        f"{layout.microbatches} per step; {result.precision}, {result.optimizer}, "
        f"checkpointing {result.checkpointing}",
        f"Peak per GPU: {format_bytes(memory.peak)} ({memory.peak_rank}, {rank.at})",
        f"One GPU, same micro-batch: {format_bytes(memory.single)}",
        f"Tokens per step: {result.tokens_per_step:,}",
        *(
            [
                "More than on one GPU: torch's data parallelism keeps copies of the weights it"
                " gathers (replicate_with_fsdp at ZeRO 0 and 1 holds unsharded copies of the"
                " replicated weights); shard them with --zero 2 or 3."
            ]
            if memory.peak > memory.single
            else []
        ),
        "Bytes are tensor bytes (--json: exact); collectives as torch takes them: an all-gather"
        " its output, a reduce-scatter its input (docs/multi-gpu.md).",
    ]
    return Text("\n".join(lines))


def parallel_renderables(result: ParallelAnalysis) -> list[RenderableType]:
    out: list[RenderableType] = [memory_table(result), comm_table(result)]
    if result.traced is not None:
        out.append(traced_table(result))
    out.append(summary(result))
    return out


def parallel_json(result: ParallelAnalysis) -> dict[str, Any]:
    memory = result.memory
    data: dict[str, Any] = {
        "model": result.config.name,
        "layout": asdict(result.layout) | {"world": result.layout.world},
        "batch": result.batch,
        "seq": result.seq,
        "precision": result.precision,
        "optimizer": result.optimizer,
        "checkpointing": result.checkpointing,
        "memory": {
            "peak": memory.peak,
            "peak_rank": memory.peak_rank,
            "single_gpu_peak": memory.single,
            "ranks": {
                kind: {"peak": r.peak, "at": r.at, "host": r.host, **r.categories}
                for kind, r in memory.ranks.items()
            },
        },
        "communication": {
            "total": result.comm.total,
            "rows": [asdict(row) for row in result.comm.rows],
        },
    }
    if result.traced is not None:
        data["traced"] = {
            "peak": result.traced.peak,
            "peak_phase": result.traced.peak_phase,
            "categories": result.traced.categories,
            "communication": result.traced.comm,
        }
    return data
