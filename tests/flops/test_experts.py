"""FLOPs of mixtures of experts and latent attention: the analytic closed form equals
FlopCounterMode and fvcore on the real model, forward, backward and recomputation, whether the
router's rows divide evenly or not, and whatever the router decides on real weights."""

import pytest
import torch

from llmcalc.config.schema import ModelConfig
from llmcalc.flops.analysis import analyze_flops
from llmcalc.flops.formula import absorbed_decode_flops, decode_flops, forward_flops
from llmcalc.model.transformer import build_model
from tests.conftest import tiny

LATENT = dict(kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)
VARIANTS = {
    "deepseek-like": dict(
        n_experts=8, experts_per_token=2, n_shared_experts=1, first_dense_layers=1,
        d_ff_expert=32, q_lora_rank=24, router_score="sigmoid", score_correction_bias=True,
        normalize_topk=True, routed_scaling=2.5, **LATENT,
    ),
    "mixtral-like, T·k/E not an integer": dict(n_experts=8, experts_per_token=3, d_ff_expert=32),
    "qwen2-moe-like, every other layer": dict(
        n_experts=8, experts_per_token=3, d_ff_expert=32, n_shared_experts=2,
        shared_expert_gate=True, moe_every=2,
    ),
    "latent attention, dense": dict(**LATENT),
    "gpt-oss-like": dict(
        n_experts=4, experts_per_token=2, attention_sinks=True, bias=True, expert_bias=True,
        router_bias=True, router_score="topk_softmax", sliding_window=4, global_layers=[1, 3],
    ),
    "sandwich, gelu, shared": dict(
        n_experts=4, experts_per_token=2, n_shared_experts=1, norm_position="sandwich",
        first_dense_layers=2, activation="gelu",
    ),
}  # fmt: skip


def config(**fields):
    return ModelConfig.from_dict(tiny(**{"d_model": 64, "n_layers": 4, "n_heads": 4, **fields}))


@pytest.mark.parametrize("one_block", [True, False], ids=["probe", "every layer"])
@pytest.mark.parametrize("name", VARIANTS)
def test_counters_equal_the_closed_form(name, one_block):
    # batch 2 × seq 7: 14·k rows for 8 experts is never a multiple of 8 here
    result = analyze_flops(config(**VARIANTS[name]), 2, 7, recompute="full", one_block=one_block)
    assert result.counted.fvcore_error is None
    assert result.mismatches == {}
    assert result.counted.torch_backward == 2 * result.forward.matmul_total


def test_routed_experts_cost_k_rows_per_token():
    cfg = config(**VARIANTS["mixtral-like, T·k/E not an integer"])
    matmul = forward_flops(cfg, 2, 7).matmul
    per_row = 3 * 2 * cfg.d_model * cfg.d_ff_expert  # gate, up, down of one expert
    assert matmul["experts"] == cfg.n_layers * 2 * 7 * 3 * per_row
    assert matmul["router"] == cfg.n_layers * 2 * 2 * 7 * cfg.d_model * 8
    assert "mlp" not in matmul or matmul["mlp"] == 0


def test_real_routing_costs_the_same_as_balanced():
    """On real weights the router sends rows unevenly (some experts get none); the experts still
    multiply T·k rows, so FlopCounterMode on CPU equals the closed form."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = config(**VARIANTS["deepseek-like"])
    torch.manual_seed(0)
    model = build_model(cfg, device="cpu")
    tokens = torch.randint(0, cfg.vocab_size, (2, 7))
    with FlopCounterMode(display=False) as counter:
        model(tokens)
    counts = counter.get_flop_counts()["Global"]
    assert sum(counts.values()) == forward_flops(cfg, 2, 7).matmul_total


def test_absorbed_decode_equals_an_absorbed_implementation():
    """One decode step of latent attention written with kv_b absorbed (q_nope·W_UK scores the
    latent, the latent values leave through W_UV) gives the same output as the model's step, and
    FlopCounterMode counts exactly absorbed_decode_flops's attention matmuls."""
    from torch.utils.flop_counter import FlopCounterMode

    from llmcalc.model.attention import KVCache
    from llmcalc.model.layers import apply_rope, rope_tables

    cfg = config(**LATENT, n_layers=1)
    torch.manual_seed(0)
    model = build_model(cfg, device="cpu").eval()
    attn, seq = model.layers[0].attn, 9
    x = torch.randn(1, seq, cfg.d_model)
    with torch.no_grad():
        cache = KVCache(cfg, 1, seq, "cpu", torch.float32)
        attn(x[:, :-1], cache, rope_tables(cfg, 0, seq - 1, x.device, x.dtype))
        cache.length = seq - 1  # as the model does after each layer has its keys
        latent, k_rope = cache.keys[0][:, 0, : seq - 1], cache.values[0][:, 0, : seq - 1]
        rope = rope_tables(cfg, seq - 1, 1, x.device, x.dtype)
        expected = attn(x[:, -1:], cache, rope)

        h, n, r, dv = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        w_kv = attn.kv_b_proj.weight.view(h, n + dv, cfg.kv_lora_rank)
        w_uk, w_uv = w_kv[:, :n], w_kv[:, n:]
        step = x[:, -1:]
        with FlopCounterMode(display=False) as counter:
            q = attn.q_proj(step).view(1, h, n + r)
            new = attn.kv_a_proj(step)
            new_latent = attn.kv_a_norm(new[..., : cfg.kv_lora_rank])
            new_rope = apply_rope(new[..., cfg.kv_lora_rank :].unsqueeze(1), *rope)[:, 0]
            keys = torch.cat((latent, new_latent), 1)[0]  # (S, r_kv)
            rope_keys = torch.cat((k_rope, new_rope), 1)[0]  # (S, r)
            q_rope = apply_rope(q[..., n:].unsqueeze(2), *rope)[0, :, 0]  # (h, r)
            q_latent = torch.bmm(q[0, :, None, :n], w_uk)[:, 0]  # (h, r_kv)
            scores = q_latent @ keys.T + q_rope @ rope_keys.T  # (h, S)
            probs = (scores / (n + r) ** 0.5).softmax(-1)
            values = torch.bmm((probs @ keys)[:, None], w_uv.transpose(1, 2))  # (h, 1, d_v)
            out = attn.o_proj(values.reshape(1, 1, h * dv))
    torch.testing.assert_close(out, expected)
    counted = sum(counter.get_flop_counts()["Global"].values())
    lm_and_mlp = decode_flops(cfg, seq - 1) - _attention_decode(cfg, seq - 1)
    assert counted == absorbed_decode_flops(cfg, seq - 1) - lm_and_mlp


def _attention_decode(cfg, position):
    from llmcalc.flops.formula import matmul_flops

    m = matmul_flops(cfg, 1, 1, keys=position + 1)
    return sum(v for k, v in m.items() if k.startswith("attn"))
