"""One output layer for every command: table, json (and its --json alias), markdown, csv."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from llmcalc.cli import app

COMMANDS = [
    ["presets"],
    ["params", "gpt2"],
    ["flops", "gpt2", "--seq", "128", "--no-count"],
    ["memory", "gpt2", "--seq", "128"],
    ["compare", "gpt2", "gpt2-medium", "--seq", "128"],
    ["check", "gpt2"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_json_alias_and_formats(runner, args):
    as_json = runner.invoke(app, [*args, "--json"])
    as_format = runner.invoke(app, [*args, "--format", "json"])
    assert as_json.exit_code == as_format.exit_code == 0
    assert json.loads(as_json.stdout) == json.loads(as_format.stdout)
    assert as_json.stderr == ""

    markdown = runner.invoke(app, [*args, "--format", "markdown"]).stdout
    tables = [line for line in markdown.splitlines() if line.startswith("|---")]
    assert tables, markdown
    text = runner.invoke(app, [*args, "--format", "csv"]).stdout
    blocks = [b for b in text.split("\n\n") if b.strip()]
    for block in blocks:
        rows = list(
            csv.reader(
                io.StringIO("\n".join(x for x in block.splitlines() if not x.startswith("# ")))
            )
        )
        assert len({len(row) for row in rows}) == 1  # rectangular: header and rows agree


def test_markdown_carries_the_same_numbers_as_json(runner):
    data = json.loads(runner.invoke(app, ["compare", "gpt2", "gpt2-xl", "--json"]).stdout)
    markdown = runner.invoke(app, ["compare", "gpt2", "gpt2-xl", "--format", "markdown"]).stdout
    for column in data["models"].values():
        assert f"{column['params']:,}" in markdown


def test_bad_format_is_one_error_line(runner):
    result = runner.invoke(app, ["params", "gpt2", "--format", "yaml"])
    assert result.exit_code == 2
    assert (
        result.stderr == "Error: --format 'yaml': allowed values are table, json, markdown, csv\n"
    )
    result = runner.invoke(app, ["params", "gpt2", "--json", "--format", "csv"])
    assert result.stderr == "Error: --json and --format csv: give one\n"


def test_no_color_means_no_escape_codes():
    env = {**os.environ, "FORCE_COLOR": "1"}
    colored = subprocess.run(
        [sys.executable, "-m", "llmcalc", "presets"], capture_output=True, text=True, env=env
    )
    assert "\x1b[" in colored.stdout  # forced styling is on ...
    env["NO_COLOR"] = "1"
    plain = subprocess.run(
        [sys.executable, "-m", "llmcalc", "presets"], capture_output=True, text=True, env=env
    )
    assert plain.returncode == 0 and "\x1b[" not in plain.stdout  # ... and NO_COLOR turns it off


def test_version(runner):
    from llmcalc import __version__

    result = runner.invoke(app, ["--version"])
    assert result.stdout.strip() == f"llmcalc {__version__}"
