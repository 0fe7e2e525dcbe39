"""Hugging Face config.json input: one file per supported model_type, checked against the model's
published parameter count (its model card or paper), and every way a file can be wrong."""

import json

import pytest
import torch

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.memory.activations import head_activations, layer_activations
from llmcalc.memory.trace import trace_training
from llmcalc.model.transformer import build_model
from llmcalc.params.count import count_params
from tests.conftest import tiny

# (model_type, config.json fields as published on the Hub, published parameter count)
CONFIGS = [
    (
        "llama",
        dict(
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            hidden_act="silu",
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
        ),
        6_738_415_616,
    ),  # Llama-2-7b
    (
        "mistral",
        dict(
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            hidden_act="silu",
            max_position_embeddings=32768,
            tie_word_embeddings=False,
        ),
        7_241_732_096,
    ),
    (
        "qwen2",
        dict(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            hidden_act="silu",
            max_position_embeddings=131072,
            tie_word_embeddings=False,
        ),
        7_615_616_512,
    ),
    (
        "gemma",
        dict(
            vocab_size=256000,
            hidden_size=2048,
            intermediate_size=16384,
            num_hidden_layers=18,
            num_attention_heads=8,
            num_key_value_heads=1,
            head_dim=256,
            hidden_act="gelu",
            max_position_embeddings=8192,
        ),
        2_506_172_416,
    ),  # gemma-2b
    (
        "gpt2",
        dict(
            vocab_size=50257,
            n_embd=768,
            n_layer=12,
            n_head=12,
            n_positions=1024,
            activation_function="gelu_new",
        ),
        124_439_808,
    ),
    (
        "gpt_neox",
        dict(
            vocab_size=50304,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            rotary_pct=0.25,
            use_parallel_residual=True,
            hidden_act="gelu",
            max_position_embeddings=2048,
            tie_word_embeddings=False,
        ),
        162_322_944,
    ),  # pythia-160m
    (
        "falcon",
        dict(
            vocab_size=65024,
            hidden_size=4544,
            num_hidden_layers=32,
            num_attention_heads=71,
            multi_query=True,
            parallel_attn=True,
            bias=False,
            alibi=False,
            new_decoder_architecture=False,
        ),
        6_921_720_704,
    ),  # falcon-7b
    (
        "phi",
        dict(
            vocab_size=51200,
            hidden_size=2560,
            intermediate_size=10240,
            num_hidden_layers=32,
            num_attention_heads=32,
            partial_rotary_factor=0.4,
            hidden_act="gelu_new",
            max_position_embeddings=2048,
            tie_word_embeddings=False,
        ),
        2_779_683_840,
    ),  # phi-2
    (
        "olmo2",
        dict(
            vocab_size=100352,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            hidden_act="silu",
            max_position_embeddings=4096,
            rms_norm_eps=1e-6,
            rope_theta=500000,
            tie_word_embeddings=False,
        ),
        7_298_617_344,
    ),  # OLMo-2-1124-7B
]


def write_config(folder, model_type, fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, **fields}))
    return folder / "config.json"


@pytest.mark.parametrize("model_type,fields,published", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_config_json_gives_the_published_count(tmp_path, model_type, fields, published):
    path = write_config(tmp_path / model_type, model_type, fields)
    for given in (path, path.parent):  # the file, or the folder holding it
        cfg = load_config(str(given))
        counted = count_params(build_model(cfg))
        assert counted.total == published
        assert counted.fvcore_total == published


def test_show_prints_yaml_that_loads_back_to_the_same_model(tmp_path, runner):
    path = write_config(tmp_path / "phi", "phi", CONFIGS[7][1])
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 0
    saved = tmp_path / "phi.yaml"
    saved.write_text(result.stdout)
    assert load_config(str(saved)) == load_config(str(path))


def test_every_command_takes_a_config_json(tmp_path, runner):
    path = str(write_config(tmp_path / "neox", "gpt_neox", CONFIGS[5][1]))
    for args in (["params", path], ["flops", path, "--seq", "64"], ["memory", path, "--seq", "64"]):
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, (args, result.output)
        json.loads(result.stdout)


def test_partial_rotary_runs_and_its_memory_formula_is_exact():
    cfg = ModelConfig.from_dict(tiny(rope_fraction=0.5, d_model=64, n_heads=4))
    model = build_model(cfg, "cpu")
    loss = model(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8)))
    loss.backward()
    for precision, a in (("fp32", 4), ("bf16", 2)):
        traced = trace_training(cfg, 2, 16, precision=precision)
        per_layer = sum(layer_activations(cfg, 2, 16, a).values())
        assert (
            cfg.n_layers * per_layer + sum(head_activations(cfg, 2, 16, a).values()) == traced.saved
        )


def _error_line(runner, path):
    result = runner.invoke(app, ["params", str(path)])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    return lines[0]


def test_malformed_json_is_one_error_line(tmp_path, runner):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama", "hidden_size": 4096,,}')
    assert "malformed JSON at line 1" in _error_line(runner, path)


def test_unsupported_model_type_is_named(tmp_path, runner):
    path = write_config(tmp_path / "t5", "t5", {})
    line = _error_line(runner, path)
    assert "model_type 't5' is not supported" in line and "olmo2" in line


def test_missing_field_is_named(tmp_path, runner):
    fields = dict(CONFIGS[0][1])
    del fields["intermediate_size"]
    assert "missing field 'intermediate_size'" in _error_line(
        runner, write_config(tmp_path, "llama", fields)
    )


def test_conflicting_fields_are_named(tmp_path, runner):
    fields = dict(CONFIGS[0][1], num_key_value_heads=5)
    line = _error_line(runner, write_config(tmp_path / "a", "llama", fields))
    assert "num_key_value_heads = 5" in line and "num_attention_heads = 32" in line
    fields = dict(CONFIGS[4][1], n_head=7)
    line = _error_line(runner, write_config(tmp_path / "b", "gpt2", fields))
    assert "hidden_size = 768" in line and "num_attention_heads = 7" in line


def test_bad_rope_fraction_is_an_error(tmp_path, runner):
    fields = dict(CONFIGS[7][1], partial_rotary_factor=0.01)
    assert "rope_fraction" in _error_line(runner, write_config(tmp_path, "phi", fields))


def test_sliding_windows_are_read_as_transformers_reads_them(tmp_path, runner):
    mistral = dict(CONFIGS[1][1])
    assert load_config(str(write_config(tmp_path / "m", "mistral", mistral))).sliding_window == 4096
    for window in (None, 512):
        path = write_config(
            tmp_path / f"m{window}", "mistral", dict(mistral, sliding_window=window)
        )
        assert load_config(str(path)).sliding_window == window
    qwen = dict(CONFIGS[2][1], use_sliding_window=True, sliding_window=1024)
    every = write_config(tmp_path / "q0", "qwen2", dict(qwen, max_window_layers=0))
    assert load_config(str(every)).sliding_window == 1024
    none = write_config(tmp_path / "q28", "qwen2", dict(qwen, max_window_layers=28))
    assert load_config(str(none)).sliding_window is None
    some = write_config(tmp_path / "q4", "qwen2", dict(qwen, max_window_layers=4))
    assert "windows layers 4 to 27 only" in _error_line(runner, some)
