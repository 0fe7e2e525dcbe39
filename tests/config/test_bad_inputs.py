"""A corpus of bad inputs (tests/config/bad_inputs/, the expected message of each in
manifest.yaml), and the bad inputs too big or too odd to keep as files (a 50 MB YAML, JSON nested
100,000 deep, /dev/null, a FIFO, a 5,000-character name): each is one `Error:` line on stderr,
exit 2, nothing on stdout, no traceback, and answered in under 2 s."""

import os
import time
from pathlib import Path

import pytest
import yaml

from llmcalc.cli import app

CORPUS = Path(__file__).parent / "bad_inputs"
MANIFEST = yaml.safe_load((CORPUS / "manifest.yaml").read_text(encoding="utf-8"))


def one_error_line(runner, args, seconds=2.0):
    """The one `Error:` line of a bad input, checked: exit 2, no stdout, no traceback, fast."""
    start = time.perf_counter()
    result = runner.invoke(app, args)
    elapsed = time.perf_counter() - start
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, (args, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines[0]) < 600, lines[0]  # values are quoted by their first 80 characters
    assert elapsed < seconds, f"{args}: {elapsed:.1f} s"
    return lines[0]


def test_the_corpus_has_sixty_files_or_more_and_each_is_in_the_manifest():
    files = {p.name for p in CORPUS.iterdir() if p.name != "manifest.yaml"}
    assert files == set(MANIFEST)
    assert len(files) >= 60


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_each_bad_file_is_one_error_line_naming_what_is_wrong(runner, name):
    entry = MANIFEST[name]
    command, expect = (
        ("show", entry) if isinstance(entry, str) else (entry["command"], entry["expect"])
    )
    line = one_error_line(runner, [command, str(CORPUS / name)])
    assert expect in line, line


def test_a_50_mb_yaml_is_refused_by_its_size(runner, tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("w") as file:
        line = "k: " + "x" * 1000 + "\n"
        file.write(line * (50 * 2**20 // len(line)))
    assert "config files are read up to 1 MiB" in one_error_line(runner, ["show", str(path)])


def test_a_1_mib_yaml_of_50000_values_stops_at_the_node_limit(runner, tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text("vocab_size: [" + ",".join(["1"] * 500_000) + "]\n")
    assert "more than 10,000 values" in one_error_line(runner, ["show", str(path)])


def test_json_nested_100000_deep_is_refused_before_parsing(runner, tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nested more than 32 levels deep" in one_error_line(runner, ["show", str(path)])


def test_an_unterminated_json_string_of_escaped_quotes_is_read_in_linear_time(runner, tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "' + '\\"' * 400_000)
    assert "malformed JSON" in one_error_line(runner, ["show", str(path)])


def test_yaml_nested_500_deep_in_a_value(runner, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("vocab_size: " + "[" * 500 + "]" * 500 + "\n")
    assert "line 1: nested more than 32 levels deep" in one_error_line(runner, ["show", str(path)])


def test_dev_null_and_a_fifo_are_not_files_not_missing_ones(runner, tmp_path):
    line = one_error_line(runner, ["show", "/dev/null"])
    assert "is a character device, not a regular file" in line and "not found" not in line
    fifo = tmp_path / "preset.yaml"
    os.mkfifo(fifo)
    line = one_error_line(runner, ["show", str(fifo)])  # opening it would block forever
    assert "is a named pipe (FIFO), not a regular file" in line
    fifo_json = tmp_path / "config.json"
    os.mkfifo(fifo_json)
    assert "named pipe" in one_error_line(runner, ["show", str(fifo_json)])


def test_a_folder_and_a_missing_file(runner, tmp_path):
    assert "is a folder, expected a file" in one_error_line(runner, ["show", f"{tmp_path}/"])
    line = one_error_line(runner, ["show", str(tmp_path / "none.yaml")])
    assert line.endswith("none.yaml: file not found")


@pytest.mark.parametrize("suffix", ["", ".yaml", ".json"])
def test_a_5000_character_preset_name(runner, suffix):
    line = one_error_line(runner, ["show", "p" * 5000 + suffix])
    assert "… (5,0" in line  # quoted by its start, with its length
    assert ("unknown preset" if not suffix else "file name too long") in line


def test_a_5000_character_option_value_is_quoted_by_its_start(runner):
    line = one_error_line(runner, ["memory", "gpt2", "--batch", "9" * 5000])
    assert "… (5,00" in line and "not a valid int" in line
