"""The per-GPU closed form against one training step of the real model sharded by torch's own
FSDP2, DTensor and functional collectives on torch.distributed's fake process group (issue 14,
item 3): every collective's bytes equal, the traced rank's peak within 2%. A small model here;
the full-size grid is benchmarks/bench_parallel_grid.py (docs/multi-gpu.md)."""

import warnings

import pytest

from llmcalc.config.schema import ModelConfig
from llmcalc.parallel.comm import communication
from llmcalc.parallel.layout import Layout
from llmcalc.parallel.memory import parallel_memory
from llmcalc.parallel.trace import trace_parallel

SMALL = ModelConfig(
    name="small-llama",
    vocab_size=4096,
    d_model=512,
    n_layers=4,
    n_heads=8,
    n_kv_heads=4,
    d_ff=1024,
    max_seq_len=1024,
    norm="rmsnorm",
    activation="swiglu",
    position="rope",
)
SMALL_MOE = SMALL.replace(
    name="small-moe", n_experts=8, experts_per_token=2, d_ff_expert=512, router_score="softmax"
)

LAYOUTS = [
    (SMALL, Layout(dp=4, zero=0), "bf16", "none"),
    (SMALL, Layout(dp=4, zero=1), "fp32", "none"),
    (SMALL, Layout(dp=4, zero=2), "mixed", "none"),
    (SMALL, Layout(dp=8, zero=3), "mixed", "none"),
    (SMALL, Layout(dp=6, zero=3), "bf16", "full"),  # uneven shards: padded collectives
    (SMALL, Layout(tp=4), "bf16", "none"),
    (SMALL, Layout(tp=4, sp=True), "fp32", "none"),
    (SMALL, Layout(dp=2, zero=3, tp=2, sp=True), "mixed", "none"),
    (SMALL, Layout(dp=2, zero=3, cp=2), "bf16", "none"),
    (SMALL_MOE, Layout(dp=4, zero=3, ep=4), "bf16", "none"),
]


@pytest.mark.parametrize(("cfg", "layout", "precision", "checkpointing"), LAYOUTS)
def test_closed_form_against_the_fake_process_group(cfg, layout, precision, checkpointing):
    setup = (1, 1024, precision, "adamw", checkpointing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FSDP2's and DTensor's notes on fake tensors
        traced = trace_parallel(cfg, layout, *setup)
    predicted = parallel_memory(cfg, layout, *setup)
    comm = communication(cfg, layout, 1, 1024, precision, checkpointing).by_collective()
    assert {kind: n for kind, n in comm.items() if n} == traced.comm
    peak = predicted.ranks[predicted.peak_rank].peak
    assert abs(peak - traced.peak) <= 0.02 * traced.peak, (peak, traced.peak)
