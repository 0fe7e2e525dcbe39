"""docs/multi-gpu.md shows the real output of its commands (at COLUMNS=100, as printed)."""

import pytest
from typer.testing import CliRunner

from llmcalc.cli import app
from tests.conftest import as_printed, doc_example

COMMANDS = [
    "llmcalc memory llama-3-70b --dp 8 --zero 3 --tp 8 --sp --seq 8192",
    "llmcalc plan llama-3-70b --gpus 64 --gpu h100 --seq 8192 --global-batch 4194304",
]


def _shown(command: str) -> tuple[str, str]:
    result = CliRunner().invoke(app, command.split()[1:], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.stderr
    shown = f"$ {command}"
    return doc_example(shown), shown + "\n" + as_printed(result.stdout)


@pytest.mark.parametrize("command", COMMANDS)
def test_docs_show_the_real_output(command):
    documented, real = _shown(command)
    assert documented == real


@pytest.mark.slow
def test_docs_show_the_real_trace():
    documented, real = _shown("llmcalc memory llama-3-8b --dp 8 --zero 3 --seq 4096 --trace")
    assert documented == real
