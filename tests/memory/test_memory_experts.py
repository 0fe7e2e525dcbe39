"""Mixture of experts and latent attention against the traced step and prefill: which layers
are MoE (as runs, never a list n_layers long), the training phases and the prefill's peak (the
saved activations of every variant are checked in test_memory.py's grid)."""

import pytest
import torch

from llmcalc.config.experts import is_moe_layer
from llmcalc.config.schema import ModelConfig
from llmcalc.config.window import is_local
from llmcalc.memory.experts import layer_kinds, layer_runs
from llmcalc.memory.formula import inference_memory, training_memory
from llmcalc.memory.trace import trace_prefill, trace_training
from tests.conftest import tiny

MOE = dict(n_experts=4, experts_per_token=2, d_ff_expert=24)
LAYOUTS = [
    dict(MOE),
    dict(MOE, first_dense_layers=2, n_layers=7),
    dict(MOE, moe_every=3, first_dense_layers=1, n_layers=10),
    dict(MOE, moe_every=2, n_layers=6, sliding_window=4, sliding_window_pattern=3),
    dict(MOE, moe_layers=[0, 3, 4], n_layers=6, sliding_window=4, global_layers=[3, 5]),
    dict(MOE, first_dense_layers=1, n_layers=5, sliding_window=4),
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layer_runs_and_kinds_follow_the_rule_layer_by_layer(layout):
    cfg = ModelConfig.from_dict(tiny(**layout))
    flat = [moe for pattern, times in layer_runs(cfg) for _ in range(times) for moe in pattern]
    assert flat == [is_moe_layer(cfg, i) for i in range(cfg.n_layers)]
    kinds = {}
    for i in range(cfg.n_layers):
        kind = (is_local(cfg, i), is_moe_layer(cfg, i))
        kinds[kind] = kinds.get(kind, 0) + 1
        assert layer_kinds(cfg, upto=i) == kinds  # the layers 0 .. i
    assert layer_kinds(cfg) == kinds


BASE = dict(vocab_size=256, d_model=128, n_layers=2, n_heads=8, max_seq_len=512)
E = dict(n_experts=8, experts_per_token=2, d_ff_expert=128)
MLA = dict(kv_lora_rank=32, q_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=24)
MODELS = {
    "moe": E,
    "deepseek layout": dict(E, n_layers=3, first_dense_layers=1, n_shared_experts=1),
    "uneven runs, biases": dict(E, n_experts=3, expert_bias=True, router_bias=True),
    "qwen2-moe": dict(E, n_shared_experts=2, shared_expert_gate=True, normalize_topk=True),
    "gelu, top-k sigmoid": dict(E, activation="gelu", router_score="topk_sigmoid"),
    "gpt-oss layout": dict(
        E,
        router_score="topk_softmax",
        expert_bias=True,
        router_bias=True,
        attention_sinks=True,
        n_kv_heads=2,
        sliding_window=64,
        sliding_window_pattern=2,
    ),
    "sinks, dense": dict(attention_sinks=True, n_kv_heads=2),
    "moe in the middle": dict(E, n_layers=4, moe_layers=[1], d_ff_expert=512),
    "mla": MLA,
    "mla windowed": dict(MLA, sliding_window=64, sliding_window_pattern=2),
    "mla, math path (deepseek's head sizes)": dict(MLA, v_head_dim=16, q_lora_rank=None),
    "mla + moe, correction": dict(
        MLA, **E, router_score="sigmoid", score_correction_bias=True, routed_scaling=2.5
    ),
}
SETUPS = [("fp32", "none", "sdpa"), ("mixed", "full", "sdpa"), ("bf16", "none", "eager")]


@pytest.mark.parametrize("setup", SETUPS, ids=["-".join(s) for s in SETUPS])
@pytest.mark.parametrize("name", list(MODELS))
def test_training_phases_match_the_trace(name, setup):
    cfg = ModelConfig.from_dict({**BASE, **MODELS[name]})
    precision, ckpt, impl = setup
    kwargs = dict(precision=precision, optimizer="adamw", checkpointing=ckpt, attention=impl)
    predicted = training_memory(cfg, 2, 128, **kwargs)
    traced = trace_training(cfg, 2, 128, **kwargs)
    assert predicted.weights == traced.phases["forward"].categories["weights"]
    assert predicted.optimizer == traced.optimizer_state
    assert predicted.gradients == traced.gradients
    assert predicted.activations == traced.saved
    for phase in ("forward", "optimizer"):
        assert predicted.phases[phase].total == traced.phases[phase].total, phase
    backward = traced.phases["backward"].total  # the backward's inside is estimated, as dense
    assert abs(predicted.phases["backward"].total - backward) <= 0.03 * backward


@pytest.mark.parametrize("batch,seq", [(2, 128), (1, 37)])
@pytest.mark.parametrize("name", list(MODELS))
def test_prefill_matches_the_trace_exactly(name, batch, seq):
    cfg = ModelConfig.from_dict({**BASE, **MODELS[name]})
    traced = trace_prefill(cfg, batch, seq, torch.bfloat16)
    predicted = inference_memory(cfg, batch, seq, 2, 2)
    assert predicted.weights == traced.categories["weights"]
    assert predicted.kv_cache == traced.categories["kv_cache"]
    assert predicted.peak == traced.peak


@pytest.mark.parametrize("impl", ["sdpa", "math"])
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_latent_attentions_math_path_can_peak_inside_the_forward(precision, impl):
    """At T = 256 the last block's fp32 T x T scores, made twice (the product and the masked
    sum), outgrow the end of the forward in bf16: the forward peak is there, exactly."""
    base = dict(BASE, d_model=256, vocab_size=256)
    cfg = ModelConfig.from_dict({**base, **MLA, "v_head_dim": 32, "qk_nope_head_dim": 32})
    kwargs = dict(precision=precision, attention=impl)
    predicted = training_memory(cfg, 2, 256, **kwargs)
    traced = trace_training(cfg, 2, 256, **kwargs)
    assert predicted.phases["forward"].total == traced.phases["forward"].total
    if precision == "bf16":
        assert predicted.phases["forward"].at == "last block attention"


@pytest.mark.slow
def test_docs_show_the_real_deepseek_v3_memory_output():
    """docs/memory.md's DeepSeek-V3 example is the real output, the trace of its full-size step
    on fake tensors included (about 18 s here)."""
    from typer.testing import CliRunner

    from llmcalc.cli import app
    from tests.conftest import as_printed, doc_example

    command = "$ llmcalc memory deepseek-v3 --trace --batch 1 --seq 2048"
    result = CliRunner().invoke(app, command.split()[2:], env={"COLUMNS": None})
    assert result.exit_code == 0, result.stderr
    assert doc_example(command) == command + "\n" + as_printed(result.stdout)
