"""FLOPs: analytic == FlopCounterMode == fvcore on matmuls, identities, conventions, CLI."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmcalc.cli import app
from llmcalc.config.presets import builtin_names, load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.flops import count as count_flops_module
from llmcalc.flops import formula as flops_module
from llmcalc.flops.analysis import analyze_flops
from llmcalc.flops.conventions import conventions, korthikanti
from llmcalc.flops.count import count_flops
from llmcalc.flops.formula import decode_flops, forward_flops, matmul_flops
from tests.conftest import as_printed, assert_one_line_error, doc_example, tiny
from tests.params.test_formula_properties import configs


@pytest.mark.parametrize("name", builtin_names())
def test_every_preset_counted_two_ways_equals_analytic(name):
    result = analyze_flops(load_config(name), batch=2, seq=32)
    assert result.counted.fvcore_error is None
    assert result.mismatches == {}
    assert result.counted.torch_backward == 2 * result.forward.matmul_total


@pytest.mark.parametrize(("batch", "seq"), [(1, 1024), (4, 128), (3, 7)])
@pytest.mark.parametrize("name", ["gpt2", "gpt2-medium"])
def test_gpt_training_step_equals_korthikanti_eq7(name, batch, seq):
    """GPT (MHA, 2-matrix MLP at 4h): counted matmul FLOPs of forward + backward equal
    72·B·L·s·h²·(1 + s/6h + V/12hL) exactly (Korthikanti et al. 2022)."""
    cfg = load_config(name)
    counted = count_flops(cfg, batch, seq, recompute=True)
    step = sum(counted.torch_forward.values()) + counted.torch_backward
    assert step == korthikanti(batch, cfg.n_layers, seq, cfg.d_model, cfg.vocab_size)
    # every layer's forward run again (torch's checkpoint with its early stop off): 96·B·L·s·h²·
    # (1 + s/6h + V/16hL), the logits not recomputed
    hardware = step + counted.torch_recompute
    assert hardware == korthikanti(
        batch, cfg.n_layers, seq, cfg.d_model, cfg.vocab_size, recompute=True
    )


@pytest.mark.parametrize("block", ["serial", "parallel", "parallel_shared_norm"])
@pytest.mark.parametrize("norm_position", ["pre", "post", "sandwich", "output"])
def test_recomputed_forward_counted_equals_analytic(block, norm_position):
    """Under the model's full checkpointing the counted rerun is every block's forward, or with
    torch's early stop (its default) that less a pre-norm block's MLP output projection."""
    cfg = ModelConfig.from_dict(tiny(block=block, norm_position=norm_position, n_kv_heads=2))
    result = analyze_flops(cfg, batch=2, seq=8, recompute="full")
    counted, step = result.counted, result.step
    assert (counted.torch_recompute, counted.torch_recompute_early_stop) == (
        step.recompute,
        step.recompute_early_stop,
    )
    blocks_forward = result.forward.matmul_total - result.forward.matmul["lm_head"]
    assert step.recompute == blocks_forward
    skipped = step.recompute - step.recompute_early_stop
    down_projection = 2 * 2 * 8 * cfg.d_ff * cfg.d_model * cfg.n_layers
    assert skipped == (down_projection if norm_position == "pre" else 0)


def test_one_block_times_layers_equals_the_full_trace():
    for overrides in (
        {},
        {"n_kv_heads": 2, "qk_norm": "full", "norm": "layernorm"},
        {"block": "parallel", "activation": "gelu", "bias": True, "n_layers": 3},
    ):
        cfg = ModelConfig.from_dict(tiny(n_layers=overrides.pop("n_layers", 4), **overrides))
        one = count_flops(cfg, 2, 8, recompute=True)
        full = count_flops(cfg, 2, 8, one_block=False, recompute=True)
        assert (one.blocks_traced, full.blocks_traced) == (1, cfg.n_layers)
        assert one.torch_forward == full.torch_forward
        assert one.torch_backward == full.torch_backward
        assert one.torch_recompute == full.torch_recompute
        assert one.torch_recompute_early_stop == full.torch_recompute_early_stop
        assert one.fvcore_forward == full.fvcore_forward


def test_decode_steps_sum_to_a_causal_prefill():
    cfg = load_config("llama-3-8b")
    seq = 64
    decode_sum = sum(decode_flops(cfg, p) for p in range(seq))
    assert decode_sum == forward_flops(cfg, 1, seq).matmul_total_causal


def test_gqa_changes_projections_not_attention_scores():
    mha = load_config("llama-2-7b")
    gqa = mha.replace(n_kv_heads=8)
    a, b = matmul_flops(mha, 1, 128), matmul_flops(gqa, 1, 128)
    assert a["attn_scores"] == b["attn_scores"] and a["attn_values"] == b["attn_values"]
    assert b["attn_k"] * 4 == a["attn_k"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.integers(1, 3), st.integers(1, 24))
def test_generated_configs_counted_equals_analytic(cfg, batch, seq):
    if cfg.position == "learned" and seq > cfg.max_seq_len:
        seq = cfg.max_seq_len
    result = analyze_flops(cfg, batch=batch, seq=seq, recompute="full")
    assert result.counted.torch_recompute_early_stop is not None
    assert result.mismatches == {}  # forward per component, backward, both recompute figures


def test_conventions_match_their_published_forms():
    cfg = load_config("gpt2")
    rows = {c.name: c.flops for c in conventions(cfg, 1, 1024)}
    n = 124_439_808
    assert rows["6N (all parameters)"] == 6 * n * 1024
    # torchtitan: 6·N + 12·L·H·Q·T per token; gpt2 is tied, so N keeps every table
    assert rows["6N + 12·L·H·Q·T"] == (6 * n + 12 * 12 * 12 * 64 * 1024) * 1024
    assert rows["72·B·L·s·h²·(1 + s/6h + V/12hL)"] == korthikanti(1, 12, 1024, 768, 50257)


def test_budget_time_follows_from_mfu_and_peak():
    result = analyze_flops(
        load_config("gpt2"),
        batch=1,
        seq=1024,
        tokens=10_240,
        peak_flops_per_gpu=1e15,
        gpus=4,
        mfu=0.5,
        count=False,
    )
    budget = result.budget
    assert budget.model_flops == result.step.model * 10
    assert budget.seconds == pytest.approx(budget.model_flops / (1e15 * 0.5 * 4))
    assert budget.gpu_hours == pytest.approx(budget.seconds * 4 / 3600)


def test_recompute_full_adds_the_blocks_forward_as_hardware_flops():
    result = analyze_flops(load_config("gpt2"), seq=128, recompute="full", count=False)
    fwd = result.forward
    assert result.step.hardware == result.step.model + fwd.matmul_total - fwd.matmul["lm_head"]
    assert result.step.model == 3 * fwd.matmul_total
    assert analyze_flops(load_config("gpt2"), seq=128, count=False).step.hardware == (
        result.step.model
    )


def test_flops_json(runner):
    result = runner.invoke(app, ["flops", "gpt2", "--seq", "256", "--batch", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    fwd = data["forward"]
    assert fwd["matmul"] == sum(fwd["components"].values())
    assert data["backward"] == 2 * fwd["matmul"]
    assert data["step"]["model"] == 3 * fwd["matmul"]
    assert data["exact"] is True
    assert sum(data["counted"]["torch"]["forward"].values()) == fwd["matmul"]
    assert sum(data["counted"]["fvcore"]["forward"].values()) == fwd["matmul"]
    assert data["conventions"]["72·B·L·s·h²·(1 + s/6h + V/12hL)"] == data["step"]["model"]
    assert all(isinstance(v, int) for v in fwd["components"].values())


def test_flops_table_and_budget(runner):
    result = runner.invoke(
        app,
        [
            "flops",
            "llama-3-8b",
            "--seq",
            "512",
            "--tokens",
            "1000000000",
            "--gpu",
            "h100",
            "--gpus",
            "8",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for text in (
        "one block traced, × 32 layers",
        "FlopCounterMode",
        "Korthikanti",
        "GPU-hours",
        "PaLM",
        "Chinchilla",
        "decode one token at position 511",
    ):
        assert text in result.stdout, text


def test_fvcore_failure_still_reports(runner, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("cannot trace this op")

    monkeypatch.setattr(count_flops_module, "_fvcore_components", broken)
    result = runner.invoke(app, ["flops", "gpt2", "--seq", "64", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["counted"]["fvcore"] is None
    assert data["counted"]["fvcore_error"] == "RuntimeError: cannot trace this op"
    assert data["exact"] is True  # torch's count still agrees
    table = runner.invoke(app, ["flops", "gpt2", "--seq", "64"], env={"COLUMNS": "200"})
    assert "fvcore unavailable: RuntimeError: cannot trace this op" in table.stdout


def test_long_seq_with_rope_warns_and_counts(runner):
    result = runner.invoke(app, ["flops", "notes-small-7m", "--seq", "512", "--json"])
    assert result.exit_code == 0
    assert result.stderr.startswith("Warning: --seq 512 is above max_seq_len = 256")
    assert json.loads(result.stdout)["seq"] == 512


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flops", "gpt2", "--seq", "0"], "--seq 0: must be positive"),
        (["flops", "gpt2", "--batch", "-1"], "--batch -1: must be positive"),
        (["flops", "gpt2", "--seq", "2048"], "--seq 2048: above max_seq_len = 1024"),
        (
            ["flops", "gpt2", "--tokens", "10", "--gpu", "v100"],
            "--gpu 'v100': unknown GPU; known: a100",
        ),
        (["flops", "gpt2", "--gpu", "h100"], "need --tokens"),
        (
            ["flops", "gpt2", "--recompute", "some"],
            "--recompute 'some': allowed values are none, full",
        ),
        (
            ["flops", "gpt2", "--tokens", "10", "--gpu", "a100", "--dtype", "fp8"],
            "no a100 peak for it",
        ),
        (["flops", "gpt2", "--mfu", "1.5"], "--mfu 1.5: must be in [1e-6, 1]"),
        (["flops", "gpt2", "--tokens", "1.5"], "--tokens '1.5': expected a whole number"),
        (["flops", "gpt2", "--tokens", "0T"], "--tokens '0T': must be positive"),
    ],
)
def test_flops_bad_input(runner, args, message):
    assert_one_line_error(runner, args, message)


def test_tokens_as_papers_write_them(runner):
    budgets = [
        json.loads(
            runner.invoke(
                app, ["flops", "gpt2", "--seq", "64", "--tokens", text, "--no-count", "--json"]
            ).stdout
        )["budget"]
        for text in ("15T", "1.5e13", "15_000_000_000_000")
    ]
    assert [b["tokens"] for b in budgets] == [15 * 10**12] * 3
    assert budgets[0] == budgets[1] == budgets[2]


def test_check_fails_when_a_flop_formula_is_wrong(runner, monkeypatch):
    real = flops_module.matmul_flops

    def wrong(cfg, batch, seq, keys=None):
        result = real(cfg, batch, seq, keys)
        result["mlp"] += 2
        return result

    monkeypatch.setattr(flops_module, "matmul_flops", wrong)
    result = runner.invoke(app, ["check", "gpt2", "--json"])
    assert result.exit_code == 1
    flops = json.loads(result.stdout)["results"][0]["flops"]
    assert set(flops["mismatches"]) >= {"torch:mlp", "fvcore:mlp", "torch:backward"}


def test_readme_flops_example_is_the_real_output(runner):
    args = [
        "flops",
        "llama-3-8b",
        "--seq",
        "8192",
        "--tokens",
        "15T",
        "--gpu",
        "h100",
        "--gpus",
        "4096",
    ]
    result = runner.invoke(app, args, env={"COLUMNS": "110"})
    assert doc_example("Forward FLOPs, batch 1 × seq 8192") == as_printed(result.stdout)
