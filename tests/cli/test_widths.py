"""No number or name is ever cut: every command on several presets, piped (no COLUMNS: the width
the content needs) and at COLUMNS 40, 60, 80 and 200. Every integer of the command's JSON that the
piped table shows must appear whole at every width, and no ellipsis anywhere."""

import json
import re

import pytest
from typer.testing import CliRunner

from llmcalc.cli import app

PHI = "tests/data/hf/phi-2"
COMMANDS = [
    ["presets"],
    ["params", "gpt2"],
    ["params", "llama-3-8b"],
    ["params", PHI],
    ["flops", "gpt2", "--seq", "1024"],
    ["flops", "llama-3-8b", "--seq", "8192", "--no-count", "--tokens", "15T", "--gpu", "h100"],
    ["memory", "llama-2-7b", "--gpu-mem", "80GiB"],
    ["memory", "gpt2", "--seq", "256", "--trace"],
    ["compare", "gpt2", "llama-3-8b", PHI],
    ["sweep", "gpt2", "--vary", "n_layers=2,4", "--vary", "seq=128,256"],
    ["check", "gpt2"],
]
WIDTHS = [40, 60, 80, 200]


def _integers(data):
    if isinstance(data, dict):
        for value in data.values():
            yield from _integers(value)
    elif isinstance(data, list):
        for value in data:
            yield from _integers(value)
    elif isinstance(data, int) and not isinstance(data, bool) and abs(data) >= 1000:
        yield data


def _whole(number: int, text: str) -> bool:
    return re.search(rf"(?<![\d,]){re.escape(f'{number:,}')}(?![\d,])", text) is not None


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_every_shown_integer_is_whole_at_every_width(args, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[2])
    runner = CliRunner()
    data = json.loads(runner.invoke(app, [*args, "--json"], env={"COLUMNS": None}).stdout)
    piped = runner.invoke(app, args, env={"COLUMNS": None}).stdout
    shown = {n for n in _integers(data) if _whole(n, piped)}
    assert shown, piped  # the table shows some of the JSON's integers
    assert "…" not in piped
    for width in WIDTHS:
        out = runner.invoke(app, args, env={"COLUMNS": str(width)}).stdout
        assert "…" not in out, (width, out)
        cut = sorted(n for n in shown if not _whole(n, out))
        assert not cut, (width, cut, out)


def test_piped_output_is_as_wide_as_its_content():
    out = CliRunner().invoke(app, ["flops", "gpt2", "--seq", "1024"], env={"COLUMNS": None})
    widest = max(len(line.rstrip()) for line in out.stdout.splitlines())
    assert widest > 80  # not squeezed into 80 columns
    assert "115,964,116,992" in out.stdout
