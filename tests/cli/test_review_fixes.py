"""What an independent review of issue 11 found, each fixed and kept fixed: tracebacks, a silent
cap, escape codes under NO_COLOR, a hang, and hostile environments (COLUMNS=0, an ASCII stdout,
a full or closed stdout)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.memory.formula import inference_memory
from llmcalc.units import format_bytes
from tests.conftest import assert_one_line_error


def _run(*args, env=None, **kwargs):
    environ = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "llmcalc", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        **kwargs,
    )


@pytest.mark.parametrize("option", [["--mfu", "1e-320"], ["--peak-tflops", "1e-300"]])
def test_absurdly_small_throughput_is_refused_not_a_traceback(runner, option):
    args = ["flops", "gpt2", "--no-count", "--tokens", "15T", "--json", *option]
    if "--peak-tflops" not in option:
        args += ["--gpu", "h100"]
    assert_one_line_error(runner, args, option[0])


def test_the_gpu_memory_fit_is_not_capped(runner):
    out = runner.invoke(
        app, ["memory", "notes-small-7m", "--seq", "1", "--gpu-mem", "1TiB", "--json"]
    )
    fit = json.loads(out.stdout)["fit"]
    cfg, batch = load_config("notes-small-7m"), fit["max_batch_inference"]
    assert batch > 2**24  # the old silent cap
    assert (
        inference_memory(cfg, batch, 1, 2, 2).peak
        <= 2**40
        < inference_memory(cfg, batch + 1, 1, 2, 2).peak
    )


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script for a pty")
def test_no_color_means_no_escape_codes_on_a_terminal_spinner_included(tmp_path):
    log = tmp_path / "tty.txt"
    command = f"{sys.executable} -m llmcalc flops gpt2 --seq 64"
    done = subprocess.run(
        ["script", "-qc", command, str(log)],
        env={**os.environ, "NO_COLOR": "1", "TERM": "xterm"},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert b"\x1b" not in log.read_bytes()


def test_a_hundred_thousand_layers_are_refused_at_once(runner):
    assert_one_line_error(
        runner, ["params", "gpt2", "--set", "n_layers=100000"], "at most 4,096 layers"
    )


def test_compare_and_sweep_use_the_configs_own_dtype(tmp_path, runner):
    path = tmp_path / "f32" / "config.json"
    path.parent.mkdir()
    fields = dict(
        model_type="llama",
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        torch_dtype="float32",
    )
    path.write_text(json.dumps(fields))
    compared = json.loads(
        runner.invoke(app, ["compare", str(path), "gpt2", "--seq", "64", "--json"]).stdout
    )
    assert compared["models"]["f32"]["inference_dtype"] == "fp32"
    assert compared["models"]["gpt2"]["inference_dtype"] == "bf16"
    memory = json.loads(runner.invoke(app, ["memory", str(path), "--seq", "64", "--json"]).stdout)
    assert compared["models"]["f32"]["kv_cache_bytes"] == memory["kv_cache_bytes"]
    swept = json.loads(
        runner.invoke(app, ["sweep", str(path), "--vary", "seq=32,64", "--json"]).stdout
    )
    assert {p["metrics"]["inference_dtype"] for p in swept["points"]} == {"fp32"}


@pytest.mark.parametrize("columns", ["0", "10"])
def test_absurd_terminal_widths_still_print_every_value_whole(runner, columns):
    out = runner.invoke(app, ["compare", "gpt2", "llama-3-8b"], env={"COLUMNS": columns}).stdout
    assert "8,030,261,248" in out and "124,439,808" in out


def test_an_ascii_only_stdout_gets_no_traceback():
    done = _run("memory", "gpt2", env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and "Traceback" not in done.stderr and "KV cache" in done.stdout


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_is_one_error_line_and_exit_1():
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "llmcalc", "presets"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.startswith("Error: cannot write the output") and done.stderr.count("\n") == 1


def test_yaml_exponents_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(
        "vocab_size: 10\nd_model: 8\nn_layers: 1\nn_heads: 2\nnorm_eps: 1e-5\nrope_theta: 5e5\n"
    )
    cfg = load_config(str(path))
    assert (cfg.norm_eps, cfg.rope_theta) == (1e-5, 5e5)


def test_an_unusable_torch_dtype_is_named(tmp_path, runner):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            dict(
                model_type="llama",
                vocab_size=256,
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                torch_dtype="float64",
            )
        )
    )
    out = runner.invoke(app, ["memory", str(path), "--seq", "16", "--json"])
    assert "torch_dtype" in out.stderr and "float64" in out.stderr
    assert json.loads(out.stdout)["dtype"] == "bf16"


def test_a_byte_order_mark_is_fine_in_json(tmp_path):
    path = tmp_path / "config.json"
    text = json.dumps(
        dict(
            model_type="llama",
            vocab_size=256,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
        )
    )
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(str(path)).d_model == 64


@pytest.mark.parametrize(
    "args,message",
    [
        (["params", "gpt2", "--set", "n_layers=2", "--set", "n_layers=3"], "given twice"),
        (
            ["memory", "gpt2", "--measure", "--measure-on", "cpu", "--force"],
            "only with --measure-on cuda",
        ),
        (["sweep", "gpt2", "--vary", "n_layers=1,2", "--metrics", ""], "name at least one"),
        (["params", "gpt2", "--format", "CSV"], "--format 'CSV'"),
    ],
)
def test_more_bad_input_is_one_line(runner, args, message):
    assert_one_line_error(runner, args, message)


def test_vary_suggests_no_label(runner):
    result = runner.invoke(app, ["sweep", "gpt2", "--vary", "nme=a,b"])
    assert result.exit_code == 2 and "'name'" not in result.stderr


def test_huge_sizes_print_their_exact_digits():
    exact = 839829444885253906 * 2**40 + 2**38  # .25 TiB more
    assert format_bytes(exact) == "839829444885253906.25 TiB"
    assert format_bytes(1536) == "1.50 KiB" and format_bytes(1023) == "1023 B"


def test_a_step_too_big_to_count_is_refused_without_a_warning_first(runner):
    result = runner.invoke(app, ["flops", "llama-3-8b", "--seq", str(10**12)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
