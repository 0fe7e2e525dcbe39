"""One output layer for every command: table, json (and its --json alias), markdown, csv."""

import csv
import io
import json
import os
import subprocess
import sys

import pandas
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


def _json_numbers(data, path=()):
    """(table, row, column) -> number for every number of a command's JSON, as tidy.py names them."""
    if isinstance(data, dict):
        items = [(k, v) for k, v in data.items() if not (path and k == "name" and _named(data))]
    elif isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        items = [(v["name"] if _named(v) else str(i), v) for i, v in enumerate(data)]
    else:
        if isinstance(data, int | float) and not isinstance(data, bool):
            table, *middle, column = path if len(path) > 1 else ("summary", *path)
            yield (table, ".".join(middle), column), data
        return
    for key, value in items:
        yield from _json_numbers(value, (*path, str(key)))


def _named(value):
    return isinstance(value, dict) and isinstance(value.get("name"), str)


@pytest.mark.parametrize(
    "args",
    [*COMMANDS, ["show", "gpt2"], ["sweep", "gpt2", "--vary", "seq=64,128"]],
    ids=lambda a: a[0],
)
def test_json_alias_and_formats(runner, args):
    as_json = runner.invoke(app, [*args, "--json"])
    as_format = runner.invoke(app, [*args, "--format", "json"])
    assert as_json.exit_code == as_format.exit_code == 0
    data = json.loads(as_json.stdout)
    assert data == json.loads(as_format.stdout)
    assert as_json.stderr == ""

    markdown = runner.invoke(app, [*args, "--format", "markdown"]).stdout
    assert markdown.count("```") % 2 == 0  # every fence closed
    if args[0] != "show":
        assert [line for line in markdown.splitlines() if line.startswith("|---")], markdown

    # CSV: one tidy table, every number of the JSON raw and exact, nothing else in the file
    text = runner.invoke(app, [*args, "--format", "csv"]).stdout
    assert not any(line.startswith("#") for line in text.splitlines())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["table", "row", "column", "value", "text"]
    numbers = {(r["table"], r["row"], r["column"]): r["value"] for r in rows if r["value"]}
    expected = dict(_json_numbers(data))
    assert set(numbers) == set(expected)
    for key, value in expected.items():
        parsed = int(numbers[key]) if isinstance(value, int) else float(numbers[key])
        assert parsed == value, key
    frame = pandas.read_csv(io.StringIO(text), dtype={"row": str, "text": str})
    assert pandas.api.types.is_numeric_dtype(frame["value"])  # loads into numbers
    for (table, row, column), value in expected.items():
        if abs(value) < 2**53:  # pandas reads the column as float64: exact below 2**53
            match = frame[
                (frame.table == table) & (frame.row.fillna("") == row) & (frame.column == column)
            ]
            assert match["value"].iloc[0] == value


def test_markdown_keeps_charts_and_panels_in_code_fences(runner):
    markdown = runner.invoke(
        app, ["sweep", "gpt2", "--vary", "n_layers=2,4", "--format", "markdown"]
    ).stdout
    fenced = markdown.split("```text\n", 1)[1].split("```", 1)[0]
    assert "█ weights" in fenced and "n_layers=2 " in fenced
    params = runner.invoke(app, ["params", "gpt2", "--format", "markdown"]).stdout
    assert "```text\n" in params and "12·d² per layer" in params.split("```text\n", 1)[1]


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
