"""`show` writes YAML that loads back to the same config, each derived value in one form: given
fields as fields, derived ones as comments, so that an edit re-derives them as their rule says."""

import pytest
import yaml

from llmcalc.config.presets import builtin_names, load_config
from llmcalc.config.schema import DERIVED, ModelConfig
from llmcalc.config.sizes import llama_d_ff
from llmcalc.views.report import config_yaml
from tests.conftest import tiny

INPUTS = [*builtin_names(), "tests/data/hf/pythia-160m/config.json", "tests/data/hf/phi-2"]


def _shown(name):
    cfg = load_config(name)
    return cfg, yaml.safe_load(config_yaml(cfg))


def _expected_head_dim(data, d_model, n_heads):
    """Given, or with latent attention qk_nope_head_dim + qk_rope_head_dim, or d_model / n_heads."""
    if data.get("kv_lora_rank") is not None:
        return data["qk_nope_head_dim"] + data["qk_rope_head_dim"]
    return data.get("head_dim", d_model // n_heads)


def _expected_d_ff(data, d_model):
    if "d_ff" in data:
        return data["d_ff"]
    if data["multiple_of"] is not None or data["ffn_multiplier"] is not None:
        return llama_d_ff(d_model, data["ffn_multiplier"], data["multiple_of"] or 1)
    glu = data["activation"] in ("swiglu", "geglu", "reglu")
    return (8 * d_model) // 3 if glu else 4 * d_model


@pytest.mark.parametrize("name", INPUTS)
def test_shown_yaml_loads_back_to_the_same_config(name):
    cfg, data = _shown(name)
    again = ModelConfig.from_dict(data)
    assert again == cfg
    assert again.given == cfg.given
    assert config_yaml(again) == config_yaml(cfg)
    for field in DERIVED:  # one form: a field only where given, else a comment
        assert (field in data) == (field in cfg.given), field


@pytest.mark.parametrize("name", INPUTS)
def test_editing_d_model_in_the_shown_yaml_re_derives(name):
    cfg, data = _shown(name)
    for d_model in (2 * cfg.d_model, cfg.d_model + 2 * cfg.n_heads):  # n_heads still divides
        edited = ModelConfig.from_dict({**data, "d_model": d_model})
        assert edited.d_model == d_model
        assert edited.d_ff == _expected_d_ff(data, d_model)
        assert edited.head_dim == _expected_head_dim(data, d_model, cfg.n_heads)
        assert edited.n_kv_heads == cfg.n_kv_heads


@pytest.mark.parametrize("name", INPUTS)
def test_editing_n_heads_and_bias_in_the_shown_yaml_re_derives(name):
    cfg, data = _shown(name)
    edited = ModelConfig.from_dict({**data, "n_heads": 2 * cfg.n_heads, "bias": not cfg.bias})
    assert edited.n_kv_heads == data.get("n_kv_heads", 2 * cfg.n_heads)
    assert edited.head_dim == _expected_head_dim(data, cfg.d_model, 2 * cfg.n_heads)
    for part in ("qkv_bias", "out_bias", "mlp_bias"):
        assert getattr(edited, part) == data.get(part, not cfg.bias)


def test_the_llama_rule_is_written_and_d_ff_is_not():
    """llama-3-8b gives ffn_multiplier 1.3 and multiple_of 1024: d_ff = 14336 is derived."""
    cfg, data = _shown("llama-3-8b")
    assert "d_ff" not in data and (data["ffn_multiplier"], data["multiple_of"]) == (1.3, 1024)
    assert "# d_ff: 14336  (derived: the LLaMA rule" in config_yaml(cfg)
    edited = ModelConfig.from_dict({**data, "d_model": 2048, "n_heads": 16})
    assert edited.d_ff == llama_d_ff(2048, 1.3, 1024) == 7168
    # a d_ff that agrees with the rule, given beside it, is still written once: as the rule
    both = ModelConfig.from_dict(tiny(d_ff=96, multiple_of=32))
    assert "d_ff" not in yaml.safe_load(config_yaml(both))


def test_an_explicit_head_dim_stays_and_a_derived_one_follows():
    cfg, data = _shown("gemma-2b")  # head_dim 256 given (as Gemma's config.json gives it)
    assert data["head_dim"] == 256
    assert ModelConfig.from_dict({**data, "d_model": 3072}).head_dim == 256
    cfg, data = _shown("mistral-7b")
    assert "head_dim" not in data and "# head_dim: 128  (derived: d_model / n_heads)" in (
        config_yaml(cfg)
    )
    assert ModelConfig.from_dict({**data, "d_model": 5120}).head_dim == 160


def test_replace_re_derives_what_was_not_given():
    cfg = load_config("llama-3-8b")
    wider = cfg.replace(d_model=8192, n_heads=64)
    assert (wider.d_ff, wider.head_dim) == (llama_d_ff(8192, 1.3, 1024), 128)
    assert cfg.replace(n_kv_heads=4).d_ff == cfg.d_ff
