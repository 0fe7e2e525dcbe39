import subprocess
import sys

import pytest

from llmcalc.config.schema import ModelConfig
from llmcalc.config.sizes import llama_d_ff
from llmcalc.errors import LLMCalcError
from tests.conftest import tiny


def test_defaults_resolve_derived_sizes():
    cfg = ModelConfig.from_dict(tiny())
    assert (cfg.n_kv_heads, cfg.head_dim) == (4, 8)
    assert cfg.d_ff == (8 * 32) // 3  # swiglu default: int(8d/3)
    assert (cfg.qkv_bias, cfg.out_bias, cfg.mlp_bias) == (False, False, False)
    assert ModelConfig.from_dict(tiny(activation="gelu")).d_ff == 128  # 4d


def test_per_part_bias_wins_over_bias():
    cfg = ModelConfig.from_dict(tiny(bias=True, mlp_bias=False))
    assert (cfg.qkv_bias, cfg.out_bias, cfg.mlp_bias) == (True, True, False)


def test_explicit_head_dim_need_not_divide_d_model():
    cfg = ModelConfig.from_dict(tiny(d_model=30, n_heads=4, head_dim=16))
    assert (cfg.q_dim, cfg.kv_dim) == (64, 64)


def test_llama_rule_matches_reference_arithmetic():
    # facebookresearch/llama: int(2 * 4d / 3), int(mult * hidden), round up to multiple_of
    for d, mult, multiple in [(4096, None, 256), (8192, 1.3, 4096), (5120, None, 256)]:
        hidden = int(2 * (4 * d) / 3)
        if mult is not None:
            hidden = int(mult * hidden)
        expected = multiple * ((hidden + multiple - 1) // multiple)
        assert llama_d_ff(d, mult, multiple) == expected


def test_d_ff_and_rule_must_agree():
    assert ModelConfig.from_dict(tiny(d_ff=96, multiple_of=32)).d_ff == 96  # rule gives 96
    with pytest.raises(LLMCalcError, match="d_ff.*disagrees"):
        ModelConfig.from_dict(tiny(d_ff=100, multiple_of=32))


def test_round_trip_through_dict():
    cfg = ModelConfig.from_dict(tiny(n_kv_heads=2, multiple_of=16, qk_norm="head"))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (tiny(n_layer=3), "unknown field 'n_layer'; did you mean 'n_layers'"),
        (tiny(d_model="big"), "field 'd_model' = 'big' \\(str\\): expected an integer"),
        (tiny(d_model=32.0), "expected an integer"),
        (tiny(bias="yes"), "field 'bias' = 'yes' \\(str\\): expected true or false"),
        (tiny(n_layers=0), "field 'n_layers' = 0: must be a positive integer"),
        (tiny(vocab_size=-5), "field 'vocab_size' = -5: must be a positive integer"),
        (tiny(n_kv_heads=3), "'n_kv_heads' = 3 must divide n_heads = 4"),
        (tiny(d_model=30), "d_model = 30 is not divisible by n_heads = 4; set 'head_dim'"),
        (
            tiny(norm="batchnorm"),
            "field 'norm' = 'batchnorm': allowed values are rmsnorm, layernorm",
        ),
        (
            tiny(activation="tanh"),
            "allowed values are relu, gelu, gelu_new, gelu_recomputed, silu, swiglu, geglu, reglu",
        ),
        (tiny(norm_position=3), "expected one of pre, post, sandwich, output"),
        (tiny(norm_eps=0), "'norm_eps' = 0.0: must be a positive finite number"),
        (tiny(d_model=12, head_dim=3), "position 'rope' needs an even head_dim"),
        ({"d_model": 8, "n_layers": 1, "n_heads": 1}, "missing required field 'vocab_size'"),
    ],
)
def test_bad_values_name_field_value_and_allowed(data, message):
    with pytest.raises(LLMCalcError, match=message):
        ModelConfig.from_dict(data)


def test_loading_a_config_does_not_import_torch():
    code = (
        "import sys; from llmcalc.config.presets import load_config; from llmcalc.params.formula import "
        "param_formula; param_formula(load_config('llama-2-7b', {'n_layers': 2})); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (tiny(position="learned", rope_theta=5e5), "'rope_theta' = 500000.0 has no effect with "),
        (tiny(position="alibi", rope_fraction=0.5), "'rope_fraction' = 0.5 has no effect with "),
        (tiny(norm="rmsnorm", norm_bias=False), "'norm_bias' = False has no effect with norm"),
        (tiny(norm_bias=True), "norm = 'rmsnorm' (the default); remove one of them"),
    ],
)
def test_a_field_stated_without_effect_is_a_conflict(data, message):
    with pytest.raises(LLMCalcError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig.from_dict(data)


def test_defaults_that_have_no_effect_are_no_conflict_and_leave_to_dict():
    cfg = ModelConfig.from_dict(tiny(position="learned", norm="rmsnorm"))
    assert cfg.without_effect() == {
        "norm_bias": "norm",
        "rope_theta": "position",
        "rope_fraction": "position",
        "layernorm_compute": "norm",
    }
    assert not {"rope_theta", "rope_fraction", "norm_bias", "layernorm_compute"} & set(
        cfg.to_dict()
    )
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    # replace() states only its changes: the old rope_theta is no conflict under `learned`
    rope = ModelConfig.from_dict(tiny(rope_theta=5e5))
    assert rope.replace(position="learned").position == "learned"


def test_set_and_the_preset_conflict_like_any_two_fields():
    from llmcalc.config.presets import load_config

    with pytest.raises(LLMCalcError, match=r"gpt2 \(with --set\): field 'rope_theta'"):
        load_config("gpt2", {"rope_theta": 5.0})
    with pytest.raises(LLMCalcError, match="'rope_theta' = 500000.0 has no effect"):
        load_config("llama-3-8b", {"position": "learned"})


def test_sizes_up_to_10_to_the_30_are_exact_and_past_it_refused():
    big = 10**30
    cfg = ModelConfig.from_dict(tiny(vocab_size=big, d_model=big, n_heads=1, d_ff=big))
    assert cfg.head_dim == big
    with pytest.raises(LLMCalcError, match="'d_model' = 1000000000000000000000000000001: at most"):
        ModelConfig.from_dict(tiny(d_model=big + 1, n_heads=1))
    with pytest.raises(LLMCalcError, match=r"d_ff derived by 4·d_model = .*: must be in 1 \.\. "):
        ModelConfig.from_dict(tiny(d_model=big, n_heads=1, activation="gelu"))
    with pytest.raises(LLMCalcError, match="'ffn_multiplier' = an integer of about 401 digits"):
        ModelConfig.from_dict(tiny(ffn_multiplier=10**400))
    with pytest.raises(LLMCalcError, match="d_ff derived by the LLaMA rule"):
        ModelConfig.from_dict(tiny(ffn_multiplier=1e-9))  # rounds to 0


def test_scaled_is_float_arithmetic_where_floats_reach_and_exact_past_them():
    from llmcalc.config.sizes import scaled

    for n in (80, 128, 4096, 11008, 2**52):
        for factor in (0.25, 0.4, 0.5, 1.3, 1.0):
            assert scaled(n, factor) == int(n * factor)
    assert scaled(10**30, 0.5) == 5 * 10**29  # int(1e30 * 0.5) would be a float's neighbour
    cfg = ModelConfig.from_dict(tiny(d_model=10**30, n_heads=1, rope_fraction=0.25, d_ff=8))
    assert cfg.rotary_dim == 25 * 10**28
