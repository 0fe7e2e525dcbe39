"""Memory of issue 12's families against the traced step: the training phases and the prefill of
models with weightless norms, an embedding norm, per-head q/k norms, learned positions with an
offset and scalar multipliers (the grid test in test_memory.py covers their saved activations one
axis at a time; these combine them as the families do)."""

import pytest
import torch

from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.memory.formula import inference_memory, training_memory
from llmcalc.memory.trace import trace_prefill, trace_training

SMALL = dict(vocab_size=4096, n_layers=2)
FAMILIES = {
    "olmo": ("olmo-1b", SMALL),
    "granite": (  # the multipliers of granite-3.0-2b
        "llama-3.2-1b",
        dict(
            SMALL,
            embedding_multiplier=12.0,
            residual_multiplier=0.22,
            attention_multiplier=0.015625,
            logit_scale=0.125,
        ),
    ),
    "cohere": (
        "llama-3.2-1b",
        dict(
            SMALL,
            norm="layernorm",
            norm_bias=False,
            layernorm_compute="ops",
            block="parallel_shared_norm",
            qk_norm="per_head",
            logit_scale=0.0625,
        ),
    ),
    "bloom": ("gpt2", dict(SMALL, embedding_norm=True, position="alibi")),
    "opt": ("gpt2", dict(SMALL, position_offset=2, activation="relu", tie_embeddings=True)),
}
SETUPS = [("mixed", "none", "sdpa"), ("fp32", "full", "sdpa"), ("bf16", "none", "eager")]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("setup", SETUPS, ids=["-".join(s) for s in SETUPS])
def test_training_phases_match_the_trace(family, setup):
    name, changes = FAMILIES[family]
    cfg = load_config(name, changes)
    precision, ckpt, impl = setup
    kwargs = dict(precision=precision, optimizer="adamw", checkpointing=ckpt, attention=impl)
    predicted = training_memory(cfg, 2, 128, **kwargs)
    traced = trace_training(cfg, 2, 128, **kwargs)
    assert predicted.activations == traced.saved
    assert predicted.gradients == traced.gradients
    for phase in ("forward", "optimizer"):
        assert predicted.phases[phase].total == traced.phases[phase].total, phase
    backward = traced.phases["backward"].total
    assert abs(predicted.phases["backward"].total - backward) <= 0.03 * backward


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_prefill_matches_the_trace(family):
    name, changes = FAMILIES[family]
    # ALiBi's prefill transients (its additive bias, SDPA's math path) are not in the prefill
    # formula, for falcon's ALiBi as for BLOOM's: BLOOM's embedding norm is checked with the
    # positions gpt2 has
    changes = {k: v for k, v in changes.items() if (k, v) != ("position", "alibi")}
    cfg = load_config(name, changes)
    predicted = inference_memory(cfg, 2, 256, 2, 2)
    traced = trace_prefill(cfg, 2, 256, torch.bfloat16)
    assert predicted.weights == traced.categories["weights"]
    assert predicted.peak == traced.peak


def test_a_logit_scale_holds_the_logits_twice_at_the_end_of_a_prefill():
    base = dict(vocab_size=32768, d_model=64, n_layers=2, n_heads=8, max_seq_len=256)
    plain = ModelConfig.from_dict(base)
    scaled = ModelConfig.from_dict({**base, "logit_scale": 0.125})
    n, a = 2 * 128, 2
    extra = inference_memory(scaled, 2, 128, a, a).peak - inference_memory(plain, 2, 128, a, a).peak
    assert extra == n * 32768 * a - n * 64 * a  # scaled logits beside the logits; no norm output
    assert (
        inference_memory(scaled, 2, 128, a, a).peak
        == trace_prefill(scaled, 2, 128, torch.bfloat16).peak
    )
