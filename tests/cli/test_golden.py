"""Every command's output, byte for byte, on 6 presets and 2 config.json files, against the files in
tests/golden/. They were written before the package was reorganised (issue 10), so this test proves
a move changes no output. A change that means to alter output rewrites them on purpose:

    LLMCALC_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

and the diff of tests/golden/ shows, in review, exactly what changed."""

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmcalc.cli import app

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"
PYTHIA = "tests/data/hf/pythia-160m/config.json"
PHI = "tests/data/hf/phi-2"  # the folder form
PRESETS = ["gpt2", "notes-lm-128m", "llama-3-8b", "gemma-2b", "mistral-7b", "llama-3.1-405b"]
INPUTS = [*PRESETS, PYTHIA, PHI]


def _cases() -> dict[str, list[str]]:
    cases: dict[str, list[str]] = {
        "presets": ["presets"],
        "presets.json": ["presets", "--json"],
        "compare": ["compare", "gpt2", "llama-3-8b", PHI, "--seq", "512"],
        "compare.json": ["compare", "gpt2", "mistral-7b", PYTHIA, "--json"],
        "check.json": ["check", "gpt2", PYTHIA, "--json"],
        "check": ["check", "notes-small-7m"],
        "params-full": ["params", "notes-small-7m", "--full"],
        "params-csv": ["params", "gpt2", "--format", "csv"],
        "params-markdown": ["params", "llama-3-8b", "--format", "markdown"],
        "params-bias": ["params", "gpt2", "--no-bias", "--set", "n_layers=3"],
        "flops-budget": [
            "flops",
            "llama-3-8b",
            "--seq",
            "512",
            "--recompute",
            "full",
            "--tokens",
            "15T",
            "--gpu",
            "h100",
            "--gpus",
            "8",
        ],
        "flops-budget.json": [
            "flops",
            "llama-3-8b",
            "--seq",
            "512",
            "--recompute",
            "full",
            "--tokens",
            "15T",
            "--peak-tflops",
            "500",
            "--json",
        ],
        "flops-no-count": ["flops", "gpt2", "--no-count", "--context", "100"],
        "memory-trace": ["memory", "gpt2", "--seq", "128", "--batch", "2", "--trace"],
        "memory-trace.json": ["memory", "notes-small-7m", "--seq", "64", "--trace", "--json"],
        "memory-eager": [
            "memory",
            "llama-3-8b",
            "--attention",
            "eager",
            "--checkpointing",
            "full",
            "--precision",
            "bf16",
            "--optimizer",
            "sgd",
            "--gqa",
            "4",
        ],
        "memory-mqa.json": ["memory", "llama-3-8b", "--mqa", "--kv-dtype", "fp8", "--json"],
        "sweep": ["sweep", "gpt2", "--vary", "n_layers=2,4", "--vary", "seq=128,256"],
        "sweep.json": ["sweep", "llama-3-8b", "--vary", "n_kv_heads=1,8", "--json"],
        "sweep-csv": ["sweep", "gpt2", "--vary", "n_layers=2,4", "--format", "csv"],
        "error-sweep": ["sweep", "gpt2", "--vary", "d_model=512,768", "--format", "csv"],
        "error-field": ["params", "gpt2", "--set", "n_layer=2"],
        "error-gqa": ["memory", "llama-3-8b", "--gqa", "5"],
    }
    for given in INPUTS:
        label = Path(given).parent.name if given.endswith(".json") else Path(given).name
        cases[f"show-{label}"] = ["show", given]
        cases[f"params-{label}"] = ["params", given]
        cases[f"params-{label}.json"] = ["params", given, "--json"]
        cases[f"flops-{label}"] = ["flops", given, "--seq", "256"]
        cases[f"flops-{label}.json"] = ["flops", given, "--seq", "256", "--batch", "2", "--json"]
        cases[f"memory-{label}"] = ["memory", given, "--seq", "256", "--gpu-mem", "80GiB"]
        cases[f"memory-{label}.json"] = ["memory", given, "--seq", "256", "--json"]
    return cases


CASES = _cases()


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "100", "NO_COLOR": "1"})
    return (
        f"$ llmcalc {' '.join(args)}\n--- exit {result.exit_code}\n--- stdout\n{result.stdout}"
        f"--- stderr\n{result.stderr}"
    )


@pytest.mark.parametrize("name", CASES)
def test_output_is_unchanged(name, monkeypatch):
    monkeypatch.chdir(REPO)  # config.json paths are relative, and printed as given
    got = _run(CASES[name])
    path = GOLDEN / f"{re.sub(r'[^A-Za-z0-9.-]', '_', name)}.txt"
    if os.environ.get("LLMCALC_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
    assert got == path.read_text()
