"""The mixture-of-experts and latent-attention model: routing, dispatch and the latent cache
(prefill + decode against the full forward: tests/memory/test_memory_latent.py)."""

import pytest
import torch

from llmcalc.config.schema import ModelConfig
from llmcalc.model.attention import KVCache
from llmcalc.model.experts import balanced_counts, equal_runs, route
from llmcalc.model.transformer import build_model
from tests.conftest import tiny

LATENT = dict(kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)
MOE = dict(n_experts=8, experts_per_token=2, n_shared_experts=1, first_dense_layers=1)


def config(**fields):
    return ModelConfig.from_dict(tiny(**{"d_model": 64, "n_layers": 3, "n_heads": 4, **fields}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_latent_cache_holds_the_latent_and_one_rope_head(dtype):
    cfg = config(**LATENT)
    model = build_model(cfg, device="cpu", dtype=dtype).eval()
    cache = KVCache(cfg, 2, 10, "cpu", dtype)
    with torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (2, 10)), cache=cache)
    assert cache.keys[0].shape == (2, 1, 10, 16)  # the normed latent
    assert cache.values[0].shape == (2, 1, 10, 4)  # the shared RoPE key head
    assert cache.nbytes == 3 * 2 * 10 * (16 + 4) * dtype.itemsize


def test_balanced_rule_spreads_rows_as_evenly_as_integers_allow():
    assert balanced_counts(42, 8) == [6, 6] + [5] * 6
    assert balanced_counts(16, 8) == [2] * 8
    assert balanced_counts(3, 8) == [1, 1, 1] + [0] * 5
    assert equal_runs([6, 6, 5, 5, 5]) == [(0, 2, 6), (2, 3, 5)]
    assert equal_runs([0, 3, 0, 3]) == [(1, 1, 3), (3, 1, 3)]  # an idle expert breaks a run


def test_router_score_rules():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    cfg = config(n_experts=4, experts_per_token=2)
    weights, experts = route(cfg, logits, None)  # softmax over all, then the top 2
    assert experts.tolist() == [[0, 1]]
    torch.testing.assert_close(weights, logits.softmax(-1)[:, :2])
    cfg = config(n_experts=4, experts_per_token=2, router_score="topk_softmax")
    weights, _ = route(cfg, logits, None)  # softmax over the two chosen logits only
    torch.testing.assert_close(weights, torch.tensor([[2.0, 1.0]]).softmax(-1))
    cfg = config(
        n_experts=4, experts_per_token=2, router_score="sigmoid", normalize_topk=True,
        routed_scaling=2.5, score_correction_bias=True,
    )  # fmt: skip
    weights, experts = route(cfg, logits, torch.tensor([0.0, 0.0, 5.0, 0.0]))
    assert experts.tolist() == [[2, 0]]  # the bias picks expert 2; its weight stays its score
    scores = logits.sigmoid()[0, [2, 0]]
    torch.testing.assert_close(weights[0], 2.5 * scores / scores.sum())


def test_every_routed_row_reaches_its_expert():
    """The dispatch equals a loop over tokens and their k experts, on real weights."""
    cfg = config(n_experts=4, experts_per_token=2, d_ff_expert=16, expert_bias=True)
    torch.manual_seed(1)
    moe = build_model(cfg, device="cpu").layers[0].mlp
    x = torch.randn(11, cfg.d_model)
    weights, experts = route(cfg, moe.router(x), None)
    out = moe.experts(x, weights, experts)
    loop = torch.zeros_like(x)
    for t in range(11):
        for w, e in zip(weights[t], experts[t], strict=True):
            gate, up = (moe.experts.gate_up_proj[e] @ x[t] + moe.experts.gate_up_bias[e]).chunk(2)
            h = torch.nn.functional.silu(gate) * up
            loop[t] += w * (moe.experts.down_proj[e] @ h + moe.experts.down_bias[e])
    torch.testing.assert_close(out, loop)
