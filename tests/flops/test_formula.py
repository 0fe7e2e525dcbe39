"""Closed-form FLOPs, term by term, against hand computations."""

from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.flops.formula import non_matmul_flops
from tests.conftest import tiny

PYTHIA = "tests/data/hf/pythia-160m/config.json"


def test_rope_element_work_covers_the_rotated_features_only():
    """pythia-160m rotates 16 of its 64 head features (rotary_pct 0.25): 3 FLOPs per rotated
    element of q and k, 12 layers × 12 + 12 heads × 16 features."""
    cfg = load_config(PYTHIA)
    assert (cfg.head_dim, cfg.rotary_dim) == (64, 16)
    tokens = 2 * 128
    assert non_matmul_flops(cfg, 2, 128)["rope"] == 12 * tokens * 3 * (12 + 12) * 16
    full = load_config(PYTHIA, {"rope_fraction": 1.0})
    assert non_matmul_flops(full, 2, 128)["rope"] == 4 * non_matmul_flops(cfg, 2, 128)["rope"]


def test_rope_element_work_follows_gqa_heads():
    cfg = ModelConfig.from_dict(tiny(n_kv_heads=2, rope_fraction=0.5))  # head_dim 8, 4 rotate
    assert non_matmul_flops(cfg, 1, 16)["rope"] == 2 * 16 * 3 * (4 + 2) * 4
    assert non_matmul_flops(cfg.replace(position="alibi"), 1, 16)["rope"] == 0
