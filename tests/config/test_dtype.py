"""The weights' dtype a config names (config.json torch_dtype or dtype, a preset's dtype) is the
default inference dtype of `llmcalc memory`, and the output says so."""

import json

import pytest

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.memory.analysis import analyze_memory
from llmcalc.params.formula import param_formula
from tests.conftest import tiny

PYTHIA = "tests/data/hf/pythia-160m/config.json"


def _pythia(tmp_path, **fields):
    data = json.loads(open(PYTHIA).read())
    data.update(fields)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"torch_dtype": "float32"}, "fp32"),
        ({"torch_dtype": "bfloat16"}, "bf16"),
        ({"torch_dtype": "float16"}, "fp16"),
        ({"dtype": "bfloat16"}, "bf16"),  # transformers' newer name
        ({"torch_dtype": "torch.float16"}, "fp16"),
        ({"torch_dtype": "auto"}, None),
        ({"torch_dtype": "float64"}, None),  # not a dtype llmcalc builds weights in: bf16 default
        ({}, None),
    ],
)
def test_config_json_dtype_is_read(tmp_path, fields, expected):
    assert load_config(_pythia(tmp_path, **fields)).dtype == expected


def test_preset_dtype_field_is_checked():
    assert ModelConfig.from_dict(tiny(dtype="fp16")).dtype == "fp16"
    assert ModelConfig.from_dict(tiny()).dtype is None
    with pytest.raises(LLMCalcError, match="field 'dtype' = 'float16': allowed values are fp32"):
        ModelConfig.from_dict(tiny(dtype="float16"))


def test_memory_defaults_to_the_config_dtype(runner, tmp_path):
    path = _pythia(tmp_path, torch_dtype="float32")
    n = param_formula(load_config(path)).total.value
    data = json.loads(runner.invoke(app, ["memory", path, "--seq", "64", "--json"]).stdout)
    assert (data["dtype"], data["dtype_source"], data["kv_dtype"]) == ("fp32", "config", "fp32")
    assert data["inference"]["weights"] == 4 * n
    table = runner.invoke(app, ["memory", path, "--seq", "64"], env={"COLUMNS": "200"}).stdout
    assert "Inference (fp32, from the config): prefill of 1 × 64 tokens" in " ".join(table.split())
    # --dtype wins, and says nothing of the config
    given = runner.invoke(app, ["memory", path, "--seq", "64", "--dtype", "bf16", "--json"])
    data = json.loads(given.stdout)
    assert (data["dtype"], data["dtype_source"]) == ("bf16", "--dtype")
    assert data["inference"]["weights"] == 2 * n


def test_memory_without_a_config_dtype_uses_bf16():
    result = analyze_memory(load_config(PYTHIA), seq=64)
    assert (result.dtype, result.dtype_source) == ("bf16", "default")
    result = analyze_memory(load_config(PYTHIA, {"dtype": "fp16"}), seq=64)
    assert (result.dtype, result.dtype_source) == ("fp16", "config")
