"""Issue 12's schema fields: each default changes nothing, each value is checked, each field that
has no effect under another is a conflict, and the new presets are their config.json files."""

import re

import pytest

from llmcalc.config.presets import builtin_names, load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError
from llmcalc.params.formula import param_formula
from tests.config.test_hf import CONFIGS, write_config
from tests.conftest import tiny

DEFAULTS = dict(
    norm_affine=True,
    embedding_norm=False,
    embedding_multiplier=None,
    residual_multiplier=None,
    attention_multiplier=None,
    logit_scale=None,
)


@pytest.mark.parametrize("name", [n for n in builtin_names() if n != "olmo-1b"])
def test_the_defaults_change_no_preset(name):
    cfg = load_config(name)  # none of these presets names the new fields
    stated = cfg.replace(**DEFAULTS)
    assert stated == cfg
    assert param_formula(stated).components == param_formula(cfg).components


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(position_offset=-1), "'position_offset' = -1: must be an integer of at least 0"),
        (dict(position="learned", position_offset=10**31), "at most 10**30"),
        (dict(position_offset=2), "no effect with position = 'rope' (the default)"),
        (dict(embedding_multiplier=0.0), "must be a positive finite number"),
        (dict(logit_scale=float("inf")), "'logit_scale' = inf: must be a positive finite"),
        (dict(attention_multiplier=-0.1), "'attention_multiplier' = -0.1"),
        (dict(residual_multiplier="0.2"), "expected a number"),
        (dict(qk_norm="per_head", norm_affine=False), "use qk_norm 'head'"),
        (dict(norm="layernorm", norm_affine=False, norm_bias=True), "no effect with norm_affine"),
        (dict(embedding_norm="yes"), "expected true or false"),
        (dict(qk_norm="per_token"), "none, head, full, per_head"),
    ],
)
def test_bad_values_are_named(fields, message):
    with pytest.raises(LLMCalcError, match=re.escape(message)):
        ModelConfig.from_dict(tiny(**fields))


def test_fields_without_effect_are_left_out_of_show():
    cfg = ModelConfig.from_dict(tiny(norm="layernorm", norm_affine=False))
    assert cfg.without_effect()["norm_bias"] == "norm_affine"
    assert "norm_bias" not in cfg.to_dict() and "position_offset" not in cfg.to_dict()
    learned = ModelConfig.from_dict(tiny(position="learned", position_offset=2))
    assert learned.to_dict()["position_offset"] == 2
    assert ModelConfig.from_dict(learned.to_dict()) == learned


@pytest.mark.parametrize(
    "preset,model_type", [("qwen3-8b", "qwen3"), ("phi-3-mini", "phi3"), ("olmo-1b", "olmo")]
)
def test_the_new_presets_are_their_config_json(tmp_path, preset, model_type):
    fields = next(f for t, f, _ in CONFIGS if t == model_type)
    from_json = load_config(str(write_config(tmp_path, model_type, fields)))
    ours = load_config(preset)
    skip = ("name", "source", "dtype")  # a preset leaves the inference dtype to --dtype
    assert {k: v for k, v in ours.to_dict().items() if k not in skip} == {
        k: v for k, v in from_json.to_dict().items() if k not in skip
    }
