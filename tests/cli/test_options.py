"""Shared option handling: finite and bounded numbers, GPU names in any case, and the progress
line naming the command that runs."""

from types import SimpleNamespace

import pytest

from llmcalc.cli import app, options
from tests.conftest import assert_one_line_error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flops", "gpt2", "--mfu", "nan"], "--mfu nan: must be a finite number"),
        (["flops", "gpt2", "--peak-tflops", "inf", "--tokens", "1T"], "--peak-tflops inf: must be"),
        (
            ["flops", "gpt2", "--tokens", "1e999999999", "--gpu", "h100"],
            "absurd value; at most 1e30",
        ),
        (["flops", "gpt2", "--gpus", str(10**31), "--tokens", "1T"], "at most 10**30"),
        (["memory", "gpt2", "--gpu-mem", "1e999999999GiB"], "absurd value; at most 1e30"),
        (["memory", "gpt2", "--gpu-mem", "infGiB"], "must be a finite number"),
        (
            ["memory", "gpt2", "--batch", str(10**31)],
            "--batch 10000000000000000000000000000000: at",
        ),
        (["memory", "gpt2", "--seq", "0"], "--seq 0: must be positive"),
        (["flops", "gpt2", "--gpu", "H1000", "--tokens", "1T"], "--gpu 'H1000': unknown GPU"),
        (["params", "gpt2", "--set", "n_layers=" + "9" * 5000], "too many digits to read"),
    ],
)
def test_bad_option_values_are_one_line(runner, args, message):
    assert_one_line_error(runner, args, message)


def test_gpu_names_are_case_insensitive(runner):
    upper = runner.invoke(app, ["flops", "gpt2", "--no-count", "--gpu", "H100", "--tokens", "1T"])
    lower = runner.invoke(app, ["flops", "gpt2", "--no-count", "--gpu", "h100", "--tokens", "1T"])
    assert upper.exit_code == 0 and upper.stdout == lower.stdout


def test_progress_names_the_running_command(monkeypatch):
    updates = []

    class Status:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, text):
            updates.append(text)

    monkeypatch.setattr(options.Console, "is_terminal", property(lambda self: True))
    monkeypatch.setattr(options.Console, "status", lambda self, text: Status())
    monkeypatch.setattr(
        options, "sys", SimpleNamespace(stdout=SimpleNamespace(isatty=lambda: True))
    )
    for command in ("flops", "sweep", "memory"):
        with options.progress(False, command) as status:
            status("a step")
    assert updates == ["llmcalc flops: a step", "llmcalc sweep: a step", "llmcalc memory: a step"]
