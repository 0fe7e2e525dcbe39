"""Per-GPU memory and communication: the closed form (parallel/memory.py, parallel/comm.py) against
one training step of the real model sharded by torch's own FSDP2, DTensor and functional
collectives on torch.distributed's fake process group (parallel/trace.py, pipeline_trace.py),
traced rank by rank without allocating. Prints one row per layout: the traced rank's peak,
predicted and traced, their difference, and each collective's bytes, predicted == traced.

Target (issue 14): the peak within 2% at every layout, the bytes exact.

    python benchmarks/bench_parallel_grid.py            # the full grid (minutes)
    python benchmarks/bench_parallel_grid.py --quick    # small models, seconds
"""

from __future__ import annotations

import sys
import time
import warnings

from llmcalc.config.presets import load_config
from llmcalc.parallel.comm import communication
from llmcalc.parallel.layout import Layout
from llmcalc.parallel.memory import parallel_memory
from llmcalc.parallel.trace import trace_parallel

warnings.filterwarnings("ignore")  # FSDP2's and DTensor's notes on fake tensors

# (preset, overrides, layout, micro-batch, seq, precision, checkpointing)
GRID = [
    ("llama-3-8b", {}, Layout(dp=8, zero=0), 1, 4096, "mixed", "none"),
    ("llama-3-8b", {}, Layout(dp=8, zero=1), 1, 4096, "mixed", "none"),
    ("llama-3-8b", {}, Layout(dp=8, zero=2), 1, 4096, "mixed", "none"),
    ("llama-3-8b", {}, Layout(dp=8, zero=3), 1, 4096, "mixed", "none"),
    ("llama-3-8b", {}, Layout(dp=64, zero=3), 1, 4096, "mixed", "none"),
    ("llama-3-8b", {}, Layout(dp=64, zero=3), 2, 4096, "mixed", "full"),
    ("llama-3-8b", {}, Layout(dp=1024, zero=3), 1, 4096, "bf16", "none"),
    ("llama-3-8b", {}, Layout(dp=8, zero=3), 1, 4096, "fp32", "none"),
    ("llama-3-8b", {}, Layout(dp=8, zero=3, offload="optimizer"), 1, 4096, "mixed", "none"),
    ("llama-3-8b", {}, Layout(dp=64, zero=3, offload="params"), 1, 4096, "mixed", "none"),
    ("llama-3-8b", {}, Layout(tp=8), 1, 8192, "bf16", "none"),
    ("llama-3-8b", {}, Layout(tp=8, sp=True), 1, 8192, "bf16", "none"),
    ("llama-3-8b", {}, Layout(dp=8, zero=3, tp=8, sp=True), 1, 8192, "mixed", "none"),
    ("llama-3-8b", {}, Layout(dp=8, zero=3, tp=8, sp=True), 1, 8192, "mixed", "full"),
    ("llama-3-8b", {}, Layout(dp=2, zero=3, cp=4), 1, 16384, "mixed", "none"),
    ("llama-3-8b", {}, Layout(dp=2, zero=3, tp=4, cp=2), 1, 16384, "mixed", "none"),
    ("llama-3-8b", {}, Layout(pp=4, schedule="gpipe", microbatches=8), 1, 4096, "mixed", "none"),
    ("llama-3-8b", {}, Layout(pp=4, schedule="1f1b", microbatches=8), 1, 4096, "mixed", "none"),
    (
        "llama-3-8b",
        {},
        Layout(pp=4, schedule="interleaved", microbatches=8, virtual_stages=2),
        1,
        4096,
        "mixed",
        "none",
    ),
    ("qwen3-30b-a3b", {}, Layout(dp=8, zero=3, ep=8), 1, 2048, "bf16", "none"),
    ("mixtral-8x7b", {}, Layout(dp=4, zero=3, ep=4), 1, 2048, "bf16", "none"),
]
QUICK = [
    ("llama-3-8b", {"n_layers": 4, "vocab_size": 32000}, layout, 1, 1024, "bf16", ckpt)
    for layout, ckpt in (
        (Layout(dp=8, zero=0), "none"),
        (Layout(dp=8, zero=3), "none"),
        (Layout(tp=4, sp=True), "none"),
        (Layout(dp=2, zero=3, tp=4, sp=True), "none"),
    )
]


def _pipeline_trace(cfg, layout, predicted, batch, seq, precision):  # noqa: ANN001, ANN202
    """The peak stage traced on torch.distributed.pipelining, and a middle stage's sends and
    receives (the communication table's rank)."""
    from llmcalc.parallel.pipeline_trace import trace_pipeline_rank

    setup = (layout.schedule, layout.microbatches, batch, seq, precision, "adamw")
    peak_rank = int(predicted.peak_rank.split()[1])
    traced = trace_pipeline_rank(cfg, layout.pp, peak_rank, *setup, layout.virtual_stages)
    middle = trace_pipeline_rank(cfg, layout.pp, 1, *setup, layout.virtual_stages)
    return traced.peak, {"point-to-point": sum(middle.sent) + sum(middle.received)}


def row(preset, overrides, layout, batch, seq, precision, checkpointing):  # noqa: ANN001, ANN201
    cfg = load_config(preset, overrides)
    setup = (batch, seq, precision, "adamw", checkpointing)
    predicted = parallel_memory(cfg, layout, *setup)
    start = time.perf_counter()
    if layout.pp > 1:
        traced_peak, traced_comm = _pipeline_trace(cfg, layout, predicted, batch, seq, precision)
    else:
        traced = trace_parallel(cfg, layout, *setup)
        traced_peak, traced_comm = traced.peak, traced.comm
    seconds = time.perf_counter() - start
    comm = communication(cfg, layout, batch, seq, precision, checkpointing).by_collective()
    comm = {kind: nbytes for kind, nbytes in comm.items() if nbytes}
    rank = predicted.ranks[predicted.peak_rank]
    error = 100 * (rank.peak - traced_peak) / traced_peak
    exact = comm == traced_comm
    name = f"{preset}{'*' if overrides else ''}"
    print(
        f"| {name} | {layout.describe()} | {batch}×{seq:,} {precision} ckpt {checkpointing} "
        f"| {predicted.peak_rank} | {rank.peak:,} | {traced_peak:,} | {error:+.2f}% | "
        f"{', '.join(f'{k} {v:,}' for k, v in comm.items())} | "
        f"{'exact' if exact else 'MISMATCH ' + str(traced_comm)} | {seconds:.0f} s |",
        flush=True,
    )
    return abs(error) <= 2 and exact


def main() -> int:
    grid = QUICK if "--quick" in sys.argv else GRID
    print(
        "| model | layout | step | rank | predicted peak (B) | traced peak (B) | error "
        "| predicted bytes per collective | traced | trace |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for spec in grid:
        try:
            results.append(row(*spec))
        except Exception as error:  # noqa: BLE001 - a row that cannot run is reported, not hidden
            print(f"| {spec[0]} | {spec[2].describe()} | FAILED: {type(error).__name__}: {error} |")
            results.append(False)
    print(f"\n{sum(results)} of {len(results)} layouts within 2% with exact bytes")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
