"""Latent attention (MLA) and mixture of experts in memory: the KV cache the real model fills
after a prefill against the closed form, decoding through it against one full forward, and the
memory command's two MLA figures."""

import json

import pytest
import torch

from llmcalc.cli import app
from llmcalc.config.schema import ModelConfig
from llmcalc.memory.formula import kv_cache_bytes
from llmcalc.model.attention import KVCache
from llmcalc.model.transformer import build_model
from llmcalc.units import format_bytes
from tests.conftest import assert_one_line_error, decode_in_steps, tiny

MLA = dict(q_lora_rank=12, kv_lora_rank=10, qk_nope_head_dim=6, qk_rope_head_dim=4, v_head_dim=5)
MOE = dict(n_experts=4, experts_per_token=2, d_ff_expert=24)
VARIANTS = {
    "mla": MLA,
    "mla no q latent": {**MLA, "q_lora_rank": None},
    "mla windowed": {**MLA, "sliding_window": 4, "global_layers": [1], "n_layers": 3},
    "mla sinks": {**MLA, "v_head_dim": 10, "attention_sinks": True},
    "moe": MOE,
    "moe shared, dense first": {**MOE, "n_shared_experts": 1, "first_dense_layers": 1},
    "gpt-oss-like": {
        **MOE,
        "router_score": "topk_softmax",
        "expert_bias": True,
        "router_bias": True,
        "attention_sinks": True,
        "n_kv_heads": 2,
        "sliding_window": 4,
        "sliding_window_pattern": 2,
    },
    "deepseek-like": {
        **MLA,
        **MOE,
        "router_score": "sigmoid",
        "score_correction_bias": True,
        "normalize_topk": True,
        "routed_scaling": 2.5,
        "n_shared_experts": 1,
        "first_dense_layers": 1,
        "n_layers": 3,
    },
}


def _config(name: str) -> ModelConfig:
    return ModelConfig.from_dict(tiny(**VARIANTS[name]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["mla", "mla no q latent", "mla windowed", "deepseek-like"])
def test_an_mla_prefill_fills_a_latent_cache_of_exactly_the_formula_bytes(name, dtype):
    cfg = _config(name)
    model = build_model(cfg, "cpu", dtype=dtype)
    cache = KVCache(cfg, batch=3, max_len=10, device="cpu", dtype=dtype)
    with torch.no_grad():
        model(torch.randint(0, cfg.vocab_size, (3, 10)), cache=cache)
    assert all(k.abs().sum() > 0 for k in cache.keys)  # really written, not just allocated
    element = torch.tensor([], dtype=dtype).element_size()
    assert cache.nbytes == kv_cache_bytes(cfg, batch=3, seq=10, dtype_bytes=element)
    # per position and layer: the latent and the one shared RoPE key head
    held = sum(k.shape[2] for k in cache.keys)
    assert cache.nbytes == 3 * held * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * element
    decompressed = cfg.n_heads * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim)
    assert kv_cache_bytes(cfg, 3, 10, element, "decompressed") == 3 * held * decompressed * element


def test_a_windowed_mla_cache_stops_growing_past_the_window():
    cfg = _config("mla windowed")  # layers 0 and 2 local (W 4), layer 1 global
    for seq in (2, 3, 4, 9):
        cache = KVCache(cfg, 1, seq, "cpu", torch.float32)
        assert [k.shape[2] for k in cache.keys] == [min(seq, 3), seq, min(seq, 3)]
        assert cache.nbytes == kv_cache_bytes(cfg, 1, seq, 4)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_prefill_then_decode_equals_one_full_forward(name, impl):
    torch.manual_seed(0)
    cfg = _config(name)
    model = build_model(cfg, "cpu", attention=impl).eval()
    for param in model.parameters():  # zero-initialised sinks and biases: make them matter
        torch.nn.init.normal_(param, std=0.3)
    tokens = torch.randint(0, cfg.vocab_size, (2, 12))
    full, stepped, cache = decode_in_steps(model, cfg, tokens)
    torch.testing.assert_close(stepped, full, atol=1e-4, rtol=1e-4)
    assert cache.nbytes == kv_cache_bytes(cfg, 2, 12, 4)


@pytest.fixture
def mla_yaml(tmp_path):
    """v_head_dim = qk_nope_head_dim + qk_rope_head_dim: SDPA's fused kernel (modelled)."""
    path = tmp_path / "tiny-mla.yaml"
    path.write_text(json.dumps(tiny(name="tiny-mla", **{**MLA, "v_head_dim": 10})))
    return str(path)


def test_memory_shows_the_latent_and_the_decompressed_cache(runner, mla_yaml):
    result = runner.invoke(app, ["memory", mla_yaml, "--seq", "8", "--batch", "3", "--json"])
    assert result.exit_code == 0, result.output
    kv = json.loads(result.stdout)["kv_cache"]
    assert set(kv) == {"latent", "decompressed"}
    assert kv["latent"]["bytes_per_token"] == 2 * (10 + 4) * 2  # 2 layers, bf16
    assert kv["decompressed"]["bytes_per_token"] == 2 * 4 * (6 + 4 + 10) * 2
    assert kv["latent"]["bytes"] == 3 * 8 * kv["latent"]["bytes_per_token"]
    table = runner.invoke(app, ["memory", mla_yaml, "--seq", "8"]).stdout
    assert "MLA latent ◀" in table and "MLA decompressed k, v" in table


@pytest.mark.parametrize("option", [["--mha"], ["--mqa"], ["--gqa", "2"]])
def test_kv_head_options_explain_that_mla_caches_a_latent(runner, mla_yaml, option):
    assert_one_line_error(
        runner,
        ["memory", mla_yaml, *option],
        "caches a latent, not per-head keys and values: kv_lora_rank + qk_rope_head_dim = "
        "10 + 4 = 14 elements per token and layer (decompressed, n_heads·(qk_nope_head_dim + "
        "qk_rope_head_dim + v_head_dim) = 4·(6 + 4 + 10) = 80)",
    )


@pytest.mark.parametrize(
    "name,words",
    [
        (
            "mla windowed",
            "the prefill of windowed latent attention through SDPA's math path (v_head_dim 5",
        ),
        ("mla sinks", "the prefill of latent attention with sinks"),
    ],
)
def test_what_is_not_modelled_is_refused_with_what_is_exact(runner, tmp_path, name, words):
    cfg = _config(name)
    path = tmp_path / "model.yaml"
    path.write_text(json.dumps(tiny(**VARIANTS[name])))
    weights = sum(p.numel() for p in build_model(cfg).parameters()) * 2
    per_token = kv_cache_bytes(cfg, 1, 1, 2)
    for extra in ([], ["--trace"], ["--checkpointing", "full"]):
        assert_one_line_error(
            runner,
            ["memory", str(path), "--seq", "8", *extra],
            f"{words}",
        )
    result = runner.invoke(app, ["memory", str(path), "--seq", "8"])
    assert "is not modelled yet, so no training or inference peak is given" in result.stderr
    assert f"weights {format_bytes(weights)} ({weights:,} bytes, bf16)" in result.stderr
    assert f"KV cache {format_bytes(per_token)} per token ({per_token:,} bytes" in result.stderr


@pytest.mark.parametrize("name", ["moe", "mla no q latent"])
@pytest.mark.parametrize("impl", ["eager", "math"])
def test_a_checkpointed_block_with_t_by_t_attention_is_refused(runner, tmp_path, name, impl):
    path = tmp_path / "model.yaml"
    path.write_text(json.dumps(tiny(**VARIANTS[name])))
    args = ["memory", str(path), "--seq", "8", "--checkpointing", "full", "--attention", impl]
    if name.startswith("mla") and impl == "math":  # latent attention's math path is modelled
        assert runner.invoke(app, args).exit_code == 0
        return
    assert_one_line_error(
        runner, args, f"the checkpointed forward of a block with {impl} attention"
    )
