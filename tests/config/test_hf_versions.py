"""transformers v4 and v5 config.json files: v5 keeps rope_theta, rope_type and
partial_rotary_factor in `rope_parameters` (for Gemma 3 one object per layer type) and writes
`dtype` where v4 wrote `torch_dtype`. Every supported model_type is read from both forms to the same
config: the v4 form as published (tests/config/test_hf.py CONFIGS), the v5 form as transformers 5
re-saves it (tests/data/hf/v5/, written by its generate.py)."""

import json
import re
from pathlib import Path

import pytest

from llmcalc.config.hf import MODEL_TYPES
from llmcalc.config.presets import load_config
from llmcalc.errors import LLMCalcError
from llmcalc.params.formula import param_formula
from tests.config.test_hf import CONFIGS, write_config

V5 = Path(__file__).resolve().parents[1] / "data" / "hf" / "v5"
IDENTITY = ("name", "source")  # where a config came from, not what it is


def _same(cfg, other):
    mine = {k: v for k, v in cfg.to_dict().items() if k not in IDENTITY}
    theirs = {k: v for k, v in other.to_dict().items() if k not in IDENTITY}
    assert mine == theirs


def test_every_supported_type_has_a_published_v4_file_and_its_v5_form():
    types = [model_type for model_type, _, _ in CONFIGS]
    assert sorted(types) == sorted(MODEL_TYPES)  # one published config per type, no more
    assert sorted(p.stem for p in V5.glob("*.json")) == sorted(MODEL_TYPES)


@pytest.mark.parametrize("model_type,fields,published", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_the_v5_form_is_the_same_model(tmp_path, model_type, fields, published):
    v5 = json.loads((V5 / f"{model_type}.json").read_text())
    assert v5["transformers_version"].startswith("5.") and "torch_dtype" not in v5
    if any(k in fields for k in ("rope_theta", "partial_rotary_factor", "rotary_pct")):
        assert "rope_parameters" in v5 and "rope_theta" not in v5  # moved, not copied
    old = load_config(str(write_config(tmp_path / "v4", model_type, fields)))
    new = load_config(str(V5 / f"{model_type}.json"))
    _same(old, new)
    assert param_formula(new).total.value == published
    assert old.dtype == new.dtype  # torch_dtype in v4, dtype in v5


def test_a_re_saved_pythia_keeps_its_partial_rotary():
    cfg = load_config("tests/data/hf/pythia-160m-v5")
    assert (
        json.loads(Path("tests/data/hf/pythia-160m-v5/config.json").read_text())["rope_parameters"][
            "partial_rotary_factor"
        ]
        == 0.25
    )
    assert cfg.rope_fraction == 0.25 and cfg.rotary_dim == 16
    _same(cfg, load_config("tests/data/hf/pythia-160m"))


def test_to_dict_forms_made_now_read_the_same(tmp_path):
    """The brief's recipe, run live where transformers is installed: to_dict() of the config
    transformers builds from each published v4 file (every key, not only what save_pretrained
    keeps) reads to the same config."""
    transformers = pytest.importorskip("transformers")
    for model_type, fields, _ in CONFIGS:
        data = transformers.AutoConfig.for_model(model_type, **fields).to_dict()
        path = tmp_path / f"{model_type}.json"
        path.write_text(json.dumps(data, default=str))
        _same(
            load_config(str(path)),
            load_config(str(write_config(tmp_path / model_type, model_type, fields))),
        )


LLAMA = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=16,
)


def _load(tmp_path, model_type="llama", **fields):
    return load_config(str(write_config(tmp_path, model_type, {**LLAMA, **fields})))


def test_one_rope_object_per_layer_type_gives_the_full_attention_base(tmp_path):
    # Gemma 3's form: the sliding layers' base (10000) changes no count, FLOP or byte
    per_type = {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
    }
    assert _load(tmp_path, rope_parameters=per_type).rope_theta == 1e6


@pytest.mark.parametrize(
    "fields,theta,fraction",
    [
        ({}, 10000.0, 0.25),  # stablelm's defaults
        ({"rope_theta": 5e5, "partial_rotary_factor": 0.5}, 5e5, 0.5),  # v4
        ({"rope_parameters": {"rope_theta": 5e5, "partial_rotary_factor": 0.5}}, 5e5, 0.5),  # v5
        (  # both, agreeing (v5 writes Phi-3's partial_rotary_factor in both places)
            {"partial_rotary_factor": 0.5, "rope_parameters": {"partial_rotary_factor": 0.5}},
            10000.0,
            0.5,
        ),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, 10000.0, 0.25),
    ],
)
def test_rope_base_and_share_from_either_version(tmp_path, fields, theta, fraction):
    cfg = _load(tmp_path, "stablelm", **fields)
    assert (cfg.rope_theta, cfg.rope_fraction) == (theta, fraction)


def test_rope_scaling_of_any_type_changes_nothing(tmp_path):
    plain = _load(tmp_path / "a")
    for scaling in (
        {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192},
        {"type": "longrope", "short_factor": [1.0], "long_factor": [2.0]},
        {"rope_type": "yarn", "factor": 4.0},
    ):
        _same(plain, _load(tmp_path / "b", rope_scaling=scaling))
        _same(plain, _load(tmp_path / "c", rope_parameters={"rope_theta": 10000.0, **scaling}))


@pytest.mark.parametrize(
    "fields,message",
    [
        (
            {"rope_parameters": "default"},
            "'rope_parameters' = 'default' (str): expected a JSON object",
        ),
        ({"rope_parameters": {"rope_type": 3}}, "'rope_parameters.rope_type' = 3 (int)"),
        (
            {"rope_parameters": {"partial_rotary_factor": "half"}},
            "'rope_parameters.partial_rotary_factor' = 'half' (str): expected a JSON number",
        ),
        ({"partial_rotary_factor": 0.5}, "not supported for model_type 'llama'"),
        ({"rope_theta": 1.0, "rope_parameters": {"rope_theta": 2.0}}, "disagree"),
    ],
)
def test_bad_rope_fields_are_one_error_naming_them(tmp_path, fields, message):
    with pytest.raises(LLMCalcError, match=re.escape(message)):
        _load(tmp_path, **fields)
