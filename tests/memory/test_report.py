"""The memory report: --gpu-mem's fit stops at the model's context and says so, nothing fitting
is said with the bytes needed and had; measured figures under device-neutral names."""

import dataclasses
import json

import pytest

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.memory.analysis import analyze_memory
from llmcalc.memory.formula import inference_memory, training_memory
from llmcalc.memory.measure import Measured
from llmcalc.memory.report import fit_line, measured_table, memory_json
from llmcalc.units import format_bytes

GIB = 2**30


@pytest.mark.parametrize(("name", "max_seq_len"), [("gpt2", 1024), ("mistral-7b", 32768)])
def test_seq_fit_stops_at_max_seq_len_and_names_it(runner, name, max_seq_len):
    result = runner.invoke(app, ["memory", name, "--gpu-mem", "80GiB", "--json"])
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)["fit"]
    assert fit["max_seq_inference"] == max_seq_len
    assert fit["seq_limit"] == "max_seq_len"
    # what memory alone would allow, the largest T with the bf16 prefill's peak in 80 GiB
    by_memory = fit["max_seq_inference_memory"]
    cfg = load_config(name)
    assert by_memory > max_seq_len
    assert inference_memory(cfg, 1, by_memory, 2, 2).peak <= 80 * GIB
    assert inference_memory(cfg, 1, by_memory + 1, 2, 2).peak > 80 * GIB
    table = runner.invoke(app, ["memory", name, "--gpu-mem", "80GiB"], env={"COLUMNS": "300"})
    assert (
        f"seq ≤ {max_seq_len:,} at batch 1, the limit being max_seq_len (memory alone would "
        f"allow {by_memory:,})"
    ) in table.stdout


def test_gpt2_fit_in_80_gib_is_the_position_table_not_609_828():
    result = analyze_memory(load_config("gpt2"), seq=1024, gpu_memory=80 * GIB)
    assert (result.fit.max_seq_inference, result.fit.max_seq_inference_memory) == (1024, 609_828)


def test_seq_fit_limited_by_memory_says_nothing_of_max_seq_len():
    result = analyze_memory(load_config("llama-3-8b"), gpu_memory=17 * GIB)
    fit = result.fit
    assert fit.seq_limit == "memory" and fit.max_seq_inference == fit.max_seq_inference_memory
    seq = fit.max_seq_inference  # the largest that fits, and one more does not
    assert inference_memory(result.config, 1, seq, 2, 2).peak <= 17 * GIB
    assert inference_memory(result.config, 1, seq + 1, 2, 2).peak > 17 * GIB
    assert f"inference fits seq ≤ {seq:,} at batch 1;" in fit_line(result)
    assert "max_seq_len" not in fit_line(result)


def test_training_that_does_not_fit_at_batch_1_says_the_bytes():
    cfg = load_config("llama-2-70b", {"n_kv_heads": 8})
    result = analyze_memory(cfg, seq=4096, gpu_memory=141 * GIB)
    fit = result.fit
    assert fit.max_batch_training == 0
    need = training_memory(cfg, 1, 4096, precision="mixed").peak
    assert fit.training_peak_batch_1 == need
    assert fit_line(result).endswith(
        f"training does not fit at batch 1 × seq 4,096: needs {format_bytes(need)} ({need:,} "
        "bytes), has 141.00 GiB (151,397,597,184 bytes)."
    )
    assert "≤ 0" not in fit_line(result)


def test_inference_that_does_not_fit_says_the_bytes_at_the_smallest_size():
    cfg = load_config("llama-3-8b")
    result = analyze_memory(cfg, gpu_memory=8 * GIB)
    fit = result.fit
    assert (fit.max_batch_inference, fit.max_seq_inference, fit.max_batch_training) == (0, 0, 0)
    assert fit.inference_peak_batch_1 == inference_memory(cfg, 1, 8192, 2, 2).peak
    assert fit.inference_peak_seq_1 == inference_memory(cfg, 1, 1, 2, 2).peak
    line = fit_line(result)
    full, one = fit.inference_peak_batch_1, fit.inference_peak_seq_1
    assert f"inference does not fit at batch 1 × seq 8,192: needs {format_bytes(full)}" in line
    assert (
        f"inference does not fit at batch 1 × seq 1: needs {format_bytes(one)} ({one:,} bytes)"
        in line
    )
    assert "≤ 0" not in line


def _with_measured(measured):
    result = analyze_memory(load_config("gpt2"), seq=128)
    return dataclasses.replace(result, measured=measured)


def _labels(table):
    return list(table.columns[0].cells)


def test_measured_json_and_labels_are_device_neutral():
    cuda = _with_measured(Measured(device="NVIDIA H100 80GB HBM3", peak=1000, reserved=1536))
    assert memory_json(cuda)["measured"] == {
        "device": "NVIDIA H100 80GB HBM3",
        "peak_bytes": 1000,
        "reserved_bytes": 1536,
        "fragmentation_bytes": 536,
        "rss_bytes": None,
    }
    assert _labels(measured_table(cuda)) == [
        "peak tensor bytes (max_memory_allocated)",
        "peak reserved (max_memory_reserved)",
        "reserved − peak (fragmentation)",
    ]
    cpu = _with_measured(Measured(device="cpu", peak=1000, reserved=None, rss=4096))
    assert memory_json(cpu)["measured"] == {
        "device": "cpu",
        "peak_bytes": 1000,
        "reserved_bytes": None,
        "fragmentation_bytes": None,
        "rss_bytes": 4096,
    }
    assert _labels(measured_table(cpu)) == [
        "peak tensor bytes (tracked real tensors)",
        "process peak RSS (with Python and torch)",
    ]
