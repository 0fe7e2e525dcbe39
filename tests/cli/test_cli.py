"""The CLI through typer's CliRunner: JSON on stdout, errors as one line on stderr with exit 2."""

import json

import pytest
import yaml

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.params import formula as formulas
from llmcalc.params.expr import const
from tests.conftest import as_printed, assert_one_line_error, doc_example


def run_json(runner, *args):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_params_json_is_exact_integers(runner):
    data = run_json(runner, "params", "gpt2")
    assert data["total"] == data["trainable"] == 124_439_808
    assert data["formula"] == {**data["formula"], "total": 124_439_808, "per_layer": 7_087_872}
    assert data["formula"]["per_layer_expr"] == "12·d² + 13·d"
    assert data["per_layer"] == 12 * 768**2 + 13 * 768
    # Kaplan et al.: non-embedding excludes the token and position matrices (here tied to the head)
    assert data["non_embedding"] == 124_439_808 - 50257 * 768 - 1024 * 768
    assert data["components"] == {
        "token_embedding": 50257 * 768,
        "position_embedding": 1024 * 768,
        "attention": 12 * (4 * 768 * 768 + 4 * 768),
        "mlp": 12 * (8 * 768 * 768 + 5 * 768),
        "norms": 12 * 4 * 768 + 2 * 768,
        "lm_head": 0,
    }
    assert data["counted"] == {"numel": 124_439_808, "fvcore": 124_439_808}
    assert data["tied"] == {"lm_head.weight": "tok_embeddings.weight"}
    assert all(isinstance(t["numel"], int) for t in data["tensors"])


def test_params_bias_flags_switch_every_block_bias(runner):
    with_bias = run_json(runner, "params", "llama-2-7b", "--bias")
    without = run_json(runner, "params", "llama-2-7b")
    d, f, layers = 4096, 11008, 32
    # q, k, v, o biases 4d; MLP biases 2f + d (gate and up are f wide, down is d wide)
    assert with_bias["total"] - without["total"] == layers * (4 * d + 2 * f + d)
    assert with_bias["formula"]["applies"] == "with bias"
    qwen_off = run_json(runner, "params", "qwen2.5-7b", "--no-bias")
    qwen = run_json(runner, "params", "qwen2.5-7b")
    assert qwen["total"] - qwen_off["total"] == 28 * (3584 + 2 * 512)  # q, k, v biases only
    assert qwen["formula"]["applies"] == "bias on qkv"


def test_params_table_folds_identical_layers_and_full_lists_them(runner):
    folded = runner.invoke(app, ["params", "notes-lm-128m"], env={"COLUMNS": "200"})
    full = runner.invoke(app, ["params", "notes-lm-128m", "--full"], env={"COLUMNS": "200"})
    assert folded.exit_code == full.exit_code == 0
    assert "layers.1 .. layers.11" in folded.stdout and "layers.11.mlp" not in folded.stdout
    for i in range(12):
        assert f"layers.{i}.attn.q_proj.weight" in full.stdout
    for text in (folded.stdout, full.stdout):
        assert "128,625,408" in text and "exact" in text
    assert "12·d²" in folded.stdout


def test_params_with_set_and_cpu_device(runner):
    data = run_json(
        runner,
        "params",
        "llama-2-7b",
        "--set",
        "n_layers=2",
        "--set",
        "vocab_size=100",
        "--set",
        "d_model=64",
        "--set",
        "n_heads=4",
        "--set",
        "n_kv_heads=2",
        "--set",
        "d_ff=176",
        "--device",
        "cpu",
    )
    assert data["device"] == "cpu"
    assert data["total"] == data["formula"]["total"]


def test_presets_lists_every_builtin(runner):
    data = run_json(runner, "presets")
    by_name = {p["name"]: p for p in data["presets"]}
    assert by_name["llama-3-8b"]["params"] == 8_030_261_248
    assert by_name["llama-3-8b"]["n_kv_heads"] == 8
    table = runner.invoke(app, ["presets"], env={"COLUMNS": "200"})
    assert "405,853,388,800" in table.stdout


def test_show_prints_yaml_that_loads_back(runner, tmp_path):
    result = runner.invoke(app, ["show", "llama-3-8b"])
    assert result.exit_code == 0
    data = yaml.safe_load(result.stdout)
    assert "d_ff" not in data and "head_dim" not in data  # derived: written as comments
    assert "# d_ff: 14336  (derived: the LLaMA rule" in result.stdout
    saved = tmp_path / "mine.yaml"
    saved.write_text(result.stdout)
    assert load_config(str(saved)) == load_config("llama-3-8b")
    assert "# derived: attention GQA" in result.stdout


def test_check_passes_and_can_fail(runner, monkeypatch):
    result = runner.invoke(app, ["check", "gpt2", "gemma-2b"])
    assert result.exit_code == 0, result.output
    assert "2 of 2 configs exact" in result.stdout

    real_terms = formulas.param_terms

    def wrong_terms(cfg: ModelConfig):
        terms = real_terms(cfg)
        terms["attn_k"] = terms["attn_k"] + const(1)  # one parameter too many per layer
        return terms

    monkeypatch.setattr(formulas, "param_terms", wrong_terms)
    failed = runner.invoke(app, ["check", "gpt2", "--json"])
    assert failed.exit_code == 1
    data = json.loads(failed.stdout)
    assert data["ok"] is False
    mismatches = data["results"][0]["mismatches"]
    assert mismatches["attn_k"] == {
        "formula": 12 * (768 * 768 + 768 + 1),
        "counted": 12 * (768 * 768 + 768),
    }
    # the reduced polynomial is derived separately, so it now disagrees with the term sum too
    assert set(mismatches) == {"attn_k", "layer_polynomial"}


def test_check_grid_covers_every_variant_axis(runner):
    data = run_json(runner, "check")
    assert data["ok"] is True
    names = " ".join(r["name"] for r in data["results"])
    for axis in (
        "qkv_bias",
        "out_bias",
        "mlp_bias",
        "tie_embeddings",
        "norm=layernorm",
        "norm_bias=False",
        "norm_position=sandwich",
        "block=parallel_shared_norm",
        "qk_norm=head",
        "qk_norm=full",
        "position=learned",
        "position=alibi",
        "activation=relu",
        "activation=geglu",
        "n_kv_heads=2",
        "n_kv_heads=1",
        "head_dim=12",
        "multiple_of",
        "final_norm=False",
        "n_experts=4",
        "n_shared_experts=1",
        "kv_lora_rank=16",
        "q_lora_rank=24",
        "attention_sinks=True",
    ):
        assert axis in names, axis


BAD_YAML = {
    "empty.yaml": ("", "file is empty"),
    "list.yaml": ("- a\n- b\n", "expected a mapping of config fields"),
    "syntax.yaml": ("name: x\nd_model: [1,\n  2\nfoo: : bar\n", "YAML syntax error at line 4"),
    "object.yaml": (
        "vocab_size: !!python/object/apply:os.system ['echo unsafe']\nd_model: 8\n",
        "refused YAML tag",
    ),
    "unknown.yaml": (
        "vocab_size: 10\nd_model: 8\nn_layers: 1\nn_heads: 2\nn_layer: 3\n",
        "unknown field 'n_layer'; did you mean 'n_layers'",
    ),
}


@pytest.mark.parametrize("filename", sorted(BAD_YAML))
def test_bad_yaml_files(runner, tmp_path, filename):
    text, message = BAD_YAML[filename]
    path = tmp_path / filename
    path.write_text(text)
    assert_one_line_error(runner, ["params", str(path)], message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["params", "llama2-7b"], "unknown preset 'llama2-7b'; nearest: llama-2-7b"),
        (["params", "missing/preset.yaml"], "missing/preset.yaml: file not found"),
        (["params", "gpt2", "--set", "n_layers"], "--set 'n_layers': expected key=value"),
        (["params", "gpt2", "--set", "n_layer=2"], "unknown field 'n_layer'"),
        (
            ["params", "gpt2", "--set", "d_model=abc"],
            "'d_model' = 'abc' (str): expected an integer",
        ),
        (["params", "gpt2", "--set", "n_layers=0"], "'n_layers' = 0: must be a positive integer"),
        (["params", "gpt2", "--set", "d_model=-8"], "'d_model' = -8: must be a positive integer"),
        (["params", "gpt2", "--set", "n_kv_heads=5"], "'n_kv_heads' = 5 must divide n_heads = 12"),
        (["params", "gpt2", "--set", "n_heads=5"], "d_model = 768 is not divisible by n_heads"),
        (["params", "gpt2", "--set", "norm=batch"], "allowed values are rmsnorm, layernorm"),
        (["params", "gpt2", "--set", "position=xpos"], "allowed values are rope, learned"),
        (["params", "gpt2", "--device", "tpu"], "--device 'tpu': allowed values are meta, cpu"),
        (["params", "gpt2", "--dtype", "int3"], "--dtype 'int3': allowed values are fp32"),
        (["show", "nope"], "unknown preset 'nope'"),
        (["check", "nope"], "unknown preset 'nope'"),
    ],
)
def test_bad_input_is_one_error_line_exit_2(runner, args, message):
    assert_one_line_error(runner, args, message)


def test_weights_that_do_not_fit_are_refused_before_allocating(runner):
    # 405B parameters in fp32 are 1.48 TiB: refused from the formula, nothing is built
    assert_one_line_error(
        runner,
        ["params", "llama-3.1-405b", "--device", "cpu"],
        "need 1.48 TiB (1,623,413,555,200 bytes)",
    )


def test_cuda_device_without_cuda_is_refused(runner):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_line_error(runner, ["params", "gpt2", "--device", "cuda"], "CUDA is not available")


def test_readme_example_is_the_real_output(runner):
    result = runner.invoke(app, ["params", "notes-lm-128m"], env={"COLUMNS": "100"})
    assert doc_example("Parameters per tensor") == as_printed(result.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flops", "gpt2", "--seq", "abc"], "Invalid value for '--seq': 'abc' is not a valid int"),
        (["memory", "gpt2", "--batch", "2.5"], "Invalid value for '--batch': '2.5'"),
        (["params", "gpt2", "--bogus"], "No such option: --bogus"),
        (["params"], "Missing argument 'preset'. (see llmcalc params --help)"),
        (["paramz", "gpt2"], "No such command 'paramz'. Did you mean 'params'?"),
    ],
)
def test_usage_errors_are_one_line_too(runner, args, message):
    """Errors typer catches itself (types, unknown options, missing arguments) follow the rule."""
    assert_one_line_error(runner, args, message)


def test_bare_command_still_prints_its_help(runner):
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "Usage: llmcalc [OPTIONS] COMMAND" in result.output
    assert "memory" in result.output


def test_readme_error_examples_are_real(runner):
    lines = doc_example("$ llmcalc params gpt2 --set n_layer=2").splitlines()
    pairs = list(zip(lines[::2], lines[1::2], strict=True))
    assert len(pairs) == 4
    for command, error in pairs:
        result = runner.invoke(app, command.removeprefix("$ llmcalc ").split())
        assert result.exit_code == 2
        if "--device cpu" in command:  # the free memory it names is this machine's
            error = error[: error.index(" but ")]
        assert result.stderr.startswith(error), (command, result.stderr)
        assert len(result.stderr.splitlines()) == 1


def _tour_blocks():
    import re

    from tests.conftest import README

    return re.findall(r"```console\n\$ llmcalc (.*?)\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize(("command", "shown"), _tour_blocks(), ids=lambda v: v.split()[0])
def test_readme_tour_lines_are_the_real_output(runner, command, shown):
    """Every line the README's tour shows (`...` marks lines left out) is a line of the real
    output at COLUMNS=100, as the README says."""
    result = runner.invoke(app, command.split(), env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.stderr
    printed = {line.rstrip() for line in result.stdout.splitlines()}
    missing = [line for line in shown.splitlines() if line != "..." and line not in printed]
    assert missing == []
