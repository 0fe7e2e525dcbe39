"""`llmcalc check --against transformers CONFIG` (issue 12, item 4): one line per check, exit 1
on a mismatch, every output format, and one error line when transformers is missing."""

import json
import sys

import pytest

pytest.importorskip("transformers")

from llmcalc.cli import app  # noqa: E402
from tests.conftest import as_printed, assert_one_line_error, doc_example  # noqa: E402
from tests.parity.test_parity import MODEL_TYPES  # noqa: E402

CHECKS = [
    "parameters",
    "FLOPs, eager",
    "FLOPs, sdpa",
    "KV cache, fp32",
    "KV cache, bf16",
    "peak, fp32",
    "peak, mixed",
]


def _config(folder, model_type, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    fields = {**MODEL_TYPES[model_type], **changes}
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, **fields}))
    return str(folder / "config.json")


def test_a_matching_config_passes_one_line_per_check(tmp_path, runner):
    path = _config(tmp_path / "phi", "phi")
    result = runner.invoke(app, ["check", "--against", "transformers", path, "--seq", "64"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for name in CHECKS:
        (row,) = [line for line in lines if line.strip().startswith(f"{name}  ")]
        assert "exact" in row or "within 0.5%" in row
    assert lines[-1] == "7 of 7 checks pass"


def test_json_has_exact_integers_and_a_verdict_per_check(tmp_path, runner):
    path = _config(tmp_path / "llama", "llama")
    args = ["check", "--against", "transformers", path, "--batch", "2", "--seq", "32", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["against"] == "transformers" and data["passed"] is True
    (config,) = data["configs"]
    assert (config["model_type"], config["batch"], config["seq"]) == ("llama", 2, 32)
    assert [c["name"] for c in config["checks"]] == CHECKS
    for check in config["checks"]:
        assert isinstance(check["llmcalc"], int) and isinstance(check["transformers"], int)
        assert check["difference"] == check["transformers"] - check["llmcalc"]
    assert config["checks"][0]["llmcalc"] == config["checks"][0]["transformers"] > 0


@pytest.mark.parametrize("fmt", ["markdown", "csv"])
def test_other_formats(tmp_path, runner, fmt):
    path = _config(tmp_path / "gpt2", "gpt2")
    args = ["check", "--against", "transformers", path, "--seq", "32", "--format", fmt]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "KV cache, bf16" in result.stdout


def test_a_mismatch_exits_1_and_names_its_cause(tmp_path, runner):
    # GPT-2 as published trains with dropout 0.1, which llmcalc's model does not have
    path = _config(tmp_path / "gpt2", "gpt2", attn_pdrop=0.1, embd_pdrop=0.1, resid_pdrop=0.1)
    args = ["check", "--against", "transformers", path, "--batch", "2", "--seq", "128"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "MISMATCH" in result.stdout and "dropout is on in training" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("MISMATCH")
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["passed"] is False


def test_without_transformers_the_error_names_the_extra(tmp_path, runner, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    path = _config(tmp_path / "llama", "llama")
    assert_one_line_error(
        runner, ["check", "--against", "transformers", path], "pip install 'llmcalc[parity]'"
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["check", "--against", "transformers", "gpt2"], "is not a Hugging Face config.json"),
        (["check", "--against", "transformers"], "give a config.json"),
        (["check", "--against", "pytorch", "x.json"], "allowed values are transformers"),
        (["check", "gpt2", "--seq", "16"], "--batch and --seq apply to --against"),
        (["check", "--against", "transformers", "x/config.json"], "file not found"),
    ],
)
def test_bad_input_is_one_error_line(runner, args, message):
    assert_one_line_error(runner, args, message)


def test_docs_example_is_the_real_output(runner):
    import transformers

    if transformers.__version__ != "5.23.0":
        pytest.skip("docs/parity.md's example was made with transformers 5.23.0")
    command = (
        "$ llmcalc check --against transformers tests/data/hf/pythia-160m --batch 8 --seq 2048"
    )
    args = command.split()[2:]
    result = runner.invoke(app, args, env={"COLUMNS": "100"})
    assert result.exit_code == 0  # the fused q|k|v modelled: every check passes
    assert doc_example(command) == command + "\n" + as_printed(result.stdout)
