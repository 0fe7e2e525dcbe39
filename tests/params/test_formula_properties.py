"""Generated configs: counted == formula per component, and the reduced polynomial is exact."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmcalc.config.schema import (
    ACTIVATIONS,
    BLOCKS,
    NORM_POSITIONS,
    NORMS,
    POSITIONS,
    QK_NORMS,
    ModelConfig,
)
from llmcalc.params.analysis import analyze_params
from llmcalc.params.relatives import per_layer_polynomial


@st.composite
def configs(draw):
    n_kv_heads = draw(st.sampled_from([1, 2, 3]))
    n_heads = n_kv_heads * draw(st.integers(1, 4))
    position = draw(st.sampled_from(POSITIONS))
    explicit_head_dim = draw(st.booleans())
    head_dim = draw(st.integers(1, 24))
    if position == "rope":
        head_dim += head_dim % 2  # rotary pairs
    d_model = draw(st.integers(1, 12)) * 4 if explicit_head_dim else n_heads * head_dim
    data = dict(
        name="generated",
        vocab_size=draw(st.integers(1, 300)),
        d_model=d_model,
        n_layers=draw(st.integers(1, 4)),
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        max_seq_len=draw(st.integers(1, 64)),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        norm=draw(st.sampled_from(NORMS)),
        norm_position=draw(st.sampled_from(NORM_POSITIONS)),
        block=draw(st.sampled_from(BLOCKS)),
        norm_bias=draw(st.booleans()),
        qk_norm=draw(st.sampled_from(QK_NORMS)),
        final_norm=draw(st.booleans()),
        bias=draw(st.booleans()),
        lm_head_bias=draw(st.booleans()),
        position=position,
        tie_embeddings=draw(st.booleans()),
        norm_affine=draw(st.booleans()),
        embedding_norm=draw(st.booleans()),
    )
    if position == "learned":
        data["position_offset"] = draw(st.integers(0, 3))
    if not data["norm_affine"] and data["qk_norm"] == "per_head":
        data["qk_norm"] = "head"  # a weight per head needs weights
    if explicit_head_dim:
        data["head_dim"] = head_dim
    for part in ("qkv_bias", "out_bias", "mlp_bias"):
        flag = draw(st.sampled_from([None, True, False]))
        if flag is not None:
            data[part] = flag
    ffn = draw(st.sampled_from(["default", "explicit", "rule"]))
    if ffn == "explicit":
        data["d_ff"] = draw(st.integers(1, 200))
    elif ffn == "rule":
        data["multiple_of"] = draw(st.sampled_from([1, 8, 64]))
        data["ffn_multiplier"] = draw(st.sampled_from([None, 1.3, 0.7]))
    if data["norm"] != "layernorm" or not data["norm_affine"]:
        del data["norm_bias"]  # stated where it has no effect it would be a conflict
    return ModelConfig.from_dict(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_counted_equals_formula_per_component(cfg):
    result = analyze_params(cfg)
    assert result.mismatches == {}
    assert result.counted.total == result.formula.total.value == result.counted.fvcore_total
    assert result.counted.per_layer == [result.formula.per_layer.value] * cfg.n_layers
    assert per_layer_polynomial(cfg).value == result.formula.per_layer.value
