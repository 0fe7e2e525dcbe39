"""Element-wise FLOPs of issue 12's fields, against hand computations: norms without weight, an
embedding norm, per-head q/k norms and the scalar multipliers (no field changes a matmul: the grid
test in test_flops.py counts those on the real module)."""

from llmcalc.config.schema import ModelConfig
from llmcalc.flops.formula import matmul_flops, non_matmul_flops
from tests.conftest import tiny

B, T = 2, 16
N = B * T  # tokens; tiny(): d 32, 2 layers, 4 heads of 8, vocab 64


def _flops(**fields):
    return non_matmul_flops(ModelConfig.from_dict(tiny(**fields)), B, T)


def test_a_norm_without_weight_is_one_flop_less_per_element():
    # 2 layers × 2 norms + the final norm, of d = 32 features each
    elements = (2 * 2 + 1) * N * 32
    assert _flops()["norms"] == 4 * elements  # RMSNorm: square, mean, scale, weight
    assert _flops(norm_affine=False)["norms"] == 3 * elements
    assert _flops(norm="layernorm")["norms"] == 6 * elements  # with its bias
    assert _flops(norm="layernorm", norm_affine=False)["norms"] == 4 * elements


def test_the_embedding_norm_is_one_more_norm_over_d():
    assert _flops(embedding_norm=True)["norms"] - _flops()["norms"] == 4 * N * 32


def test_per_head_qk_norms_weight_q_and_k_and_have_no_bias():
    # q and k: 4 + 4 heads of 8 features, in each of 2 layers; a LayerNorm with weight only: 5
    per_head = _flops(norm="layernorm", qk_norm="per_head")["norms"]
    assert per_head - _flops(norm="layernorm")["norms"] == 2 * N * 5 * (32 + 32)
    full = _flops(norm="layernorm", qk_norm="full")["norms"]  # the same width, with its bias
    assert full - _flops(norm="layernorm")["norms"] == 2 * N * 6 * (32 + 32)


def test_each_multiplier_is_one_flop_per_element_it_scales():
    assert "multipliers" not in _flops()
    assert _flops(embedding_multiplier=12.0)["multipliers"] == N * 32
    assert _flops(residual_multiplier=0.22)["multipliers"] == 2 * 2 * N * 32  # 2 branches
    parallel = _flops(residual_multiplier=0.22, block="parallel")["multipliers"]
    assert parallel == 2 * N * 32  # the sum of both branches, once
    assert _flops(logit_scale=0.125)["multipliers"] == N * 64
    # the scale every attention applies, another number: nothing more
    assert _flops(attention_multiplier=0.015625) == _flops()


def test_no_field_changes_a_matmul():
    plain = matmul_flops(ModelConfig.from_dict(tiny()), B, T)
    for fields in (
        dict(norm_affine=False),
        dict(embedding_norm=True),
        dict(qk_norm="per_head"),
        dict(embedding_multiplier=2.0, residual_multiplier=0.5, attention_multiplier=1.0),
        dict(logit_scale=0.0625),
    ):
        assert matmul_flops(ModelConfig.from_dict(tiny(**fields)), B, T) == plain, fields
