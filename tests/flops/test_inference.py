"""Inference FLOPs: the batch's prefill with the LM head two ways, decode, and --context."""

import json

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.flops.analysis import analyze_flops
from llmcalc.flops.formula import decode_flops, forward_flops, prefill_flops
from tests.conftest import assert_one_line_error


def test_prefill_counts_the_batch_and_the_lm_head_both_ways():
    """llama-3-8b, batch 4 × 512: a plain forward computes the LM head at all 2,048 positions;
    generate (logits_to_keep=1) at the last of each sequence, 4 × 511 positions fewer, each
    2·d·V = 2 · 4,096 · 128,256 FLOPs."""
    cfg = load_config("llama-3-8b")
    prefill = prefill_flops(cfg, 4, 512)
    assert prefill.all_logits == forward_flops(cfg, 4, 512).matmul_total
    assert prefill.all_logits == 4 * prefill_flops(cfg, 1, 512).all_logits
    assert prefill.lm_head_saved == 4 * 511 * 2 * 4096 * 128256 == 2_147_575_922_688
    assert prefill.last_logits == prefill.all_logits - 2_147_575_922_688


def test_decode_defaults_to_the_last_of_seq_tokens_and_scales_with_the_batch():
    cfg = load_config("gpt2")
    result = analyze_flops(cfg, batch=3, seq=1024, count=False)
    assert result.decode_position == 1023  # inside gpt2's 1,024 learned positions
    assert result.decode == decode_flops(cfg, 1023)
    assert decode_flops(cfg, 1023, batch=3) == 3 * result.decode
    # the full T×T prefill is T decodes at the last position: every query sees every key
    assert result.prefill.all_logits == 3 * 1024 * result.decode


def test_flops_json_inference_keys(runner):
    out = runner.invoke(
        app, ["flops", "gpt2", "--seq", "64", "--batch", "2", "--no-count", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert out.stderr == ""
    inference = json.loads(out.stdout)["inference"]
    cfg = load_config("gpt2")
    prefill = prefill_flops(cfg, 2, 64)
    assert inference == {
        "batch": 2,
        "prefill_seq": 64,
        "prefill_logits_all_positions": prefill.all_logits,
        "prefill_logits_last_position": prefill.last_logits,
        "decode_position": 63,
        "decode_per_sequence": decode_flops(cfg, 63),
        "decode_batch": 2 * decode_flops(cfg, 63),
    }


def test_context_past_a_learned_table_is_an_error(runner):
    assert_one_line_error(
        runner,
        ["flops", "gpt2", "--no-count", "--context", "100000000"],
        "--context 100000000 (positions 0..100,000,000): above max_seq_len = 1024",
    )
    # position 1024 needs a 1,025th position: one past the table
    assert_one_line_error(
        runner, ["flops", "gpt2", "--no-count", "--context", "1024"], "above max_seq_len = 1024"
    )
    assert runner.invoke(app, ["flops", "gpt2", "--no-count", "--context", "1023"]).exit_code == 0


def test_context_past_max_seq_len_with_rope_warns_and_counts(runner):
    out = runner.invoke(app, ["flops", "mistral-7b", "--no-count", "--json", "--context", "40000"])
    assert out.exit_code == 0
    assert out.stderr.startswith(
        "Warning: --context 40000 (positions 0..40,000) is above max_seq_len = 32768"
    )
    assert json.loads(out.stdout)["inference"]["decode_position"] == 40000
    quiet = runner.invoke(app, ["flops", "mistral-7b", "--no-count", "--context", "32767"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
