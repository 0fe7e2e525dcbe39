"""Layouts that cannot run are refused, one line each, naming the option, the value and what is
allowed (issue 14, item 6); the per-GPU report's shape and its JSON."""

import json

import pytest
from typer.testing import CliRunner

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.parallel.layout import Layout
from llmcalc.parallel.memory import parallel_memory
from tests.conftest import assert_one_line_error

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["llama-3-8b", "--tp", "3"], "--tp 3: must divide n_heads (32)"),
        (["llama-3-8b", "--tp", "16"], "--tp 16: must divide n_kv_heads (8)"),
        (["llama-3-8b", "--pp", "33"], "--pp 33: more pipeline stages than layers (32)"),
        (["llama-3-8b", "--pp", "4", "--microbatches", "2"], "--microbatches 2: 1f1b needs"),
        (["llama-3-8b", "--cp", "3", "--seq", "4096"], "--cp 3: must divide the sequence"),
        (["llama-3-8b", "--ep", "2"], "--ep 2: llama-3-8b has no experts"),
        (["mixtral-8x7b", "--dp", "3", "--ep", "3"], "--ep 3: must divide n_experts (8)"),
        (["mixtral-8x7b", "--dp", "2", "--ep", "4"], "--ep 4: expert-parallel ranks come from"),
        (["llama-3-8b", "--zero", "4", "--dp", "2"], "--zero 4: must be one of 0, 1, 2, 3"),
        (["llama-3-8b", "--dp", "0"], "--dp 0: must be a whole number of at least 1"),
        (["llama-3-8b", "--sp"], "--sp: sequence parallelism splits within a tensor-parallel"),
        (["llama-3-8b", "--schedule", "zigzag", "--pp", "2"], "--schedule 'zigzag'"),
        (["llama-3-8b", "--offload", "disk", "--dp", "2"], "--offload 'disk'"),
        (["llama-3-8b", "--dp", "2", "--offload", "params"], "--offload params with --zero 0"),
        (
            ["llama-3-8b", "--pp", "4", "--schedule", "interleaved", "--microbatches", "8"],
            "--schedule interleaved: give --virtual-stages 2 or more",
        ),
        (["llama-3-8b", "--dp", "2", "--measure"], "--measure: not with --dp/--tp"),
        (["llama-3-8b", "--dp", "2", "--gpu-mem", "1KiB"], "--gpu-mem 1KiB: not with --dp/--tp"),
        (
            ["llama-3-8b", "--schedule", "interleaved", "--virtual-stages", "2"],
            "--virtual-stages 2: chunks of a pipeline; give --pp 2 or more",
        ),
        (
            ["llama-3-8b", "--dp", "8", "--tp", "4", "--gpus", "64"],
            "--gpus 64: dp 8 × tp 4 × pp 1 × cp 1 = 32; the degrees must multiply",
        ),
        (["llama-3-8b", "--gpus", "0"], "--gpus 0: must be a whole number of at least 1"),
    ],
)
def test_bad_layouts_are_one_line(args, message):
    assert_one_line_error(runner, ["memory", *args], message)


def test_report_names_the_peak_rank_and_every_category():
    result = runner.invoke(
        app, ["memory", "llama-3-8b", "--dp", "8", "--zero", "3", "--seq", "4096", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    memory = data["memory"]
    rank = memory["ranks"][memory["peak_rank"]]
    categories = ("weights", "gradients", "optimizer", "activations", "buffers", "other")
    assert rank["peak"] == memory["peak"] == sum(rank[c] for c in categories)
    assert data["layout"]["world"] == 8
    assert data["communication"]["total"] == sum(r["bytes"] for r in data["communication"]["rows"])


def test_context_parallel_ranks_differ_and_the_last_is_the_peak():
    cfg = load_config("llama-3-8b")
    memory = parallel_memory(cfg, Layout(dp=2, cp=4, zero=3), 1, 16384, "mixed")
    assert set(memory.ranks) == {"cp rank 0", "cp rank 3"}
    assert memory.peak_rank == "cp rank 3"
    assert memory.ranks["cp rank 3"].peak > memory.ranks["cp rank 0"].peak


def test_each_zero_stage_holds_less_than_the_one_before():
    cfg = load_config("llama-3-8b")
    peaks = [
        parallel_memory(cfg, Layout(dp=64, zero=zero), 1, 4096, "mixed").peak for zero in range(4)
    ]
    assert peaks == sorted(peaks, reverse=True) and len(set(peaks)) == 4
