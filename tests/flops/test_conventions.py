"""The published conventions against their authors' own figures, computed by hand."""

import pytest

from llmcalc.config.presets import load_config
from llmcalc.flops.analysis import analyze_flops
from llmcalc.flops.conventions import conventions

TITAN = "6N + 12·L·H·Q·T"


def _torchtitan_per_token(nparams, nparams_embedding, tied, layers, heads, head_dim, seq):
    """torchtitan/models/utils.py, get_dense_model_nparams_and_flops, line by line:
    nparams_for_matmul = nparams if enable_weight_tying else nparams - nparams_embedding;
    6 * nparams_for_matmul + 6 * n_layers * n_heads * head_dims * seq_len, where
    Llama3Model.Config.get_nparams_and_flops passes head_dims = 2 * (dim // n_heads)."""
    nparams_for_matmul = nparams if tied else nparams - nparams_embedding
    return 6 * nparams_for_matmul + 6 * layers * heads * (2 * head_dim) * seq


@pytest.mark.parametrize("seq", [2048, 8192])
def test_torchtitan_row_on_llama_3_2_1b_tied(seq):
    """Tied: model.parameters() holds the shared table once and torchtitan keeps it in N, since it
    is the LM head's matmul weight (1,235,814,400 parameters, the model card's count)."""
    per_token = _torchtitan_per_token(1_235_814_400, 128256 * 2048, True, 16, 32, 64, seq)
    assert per_token == 6 * 1_235_814_400 + 12 * 16 * 32 * 64 * seq
    rows = {c.name: c.flops for c in conventions(load_config("llama-3.2-1b"), 2, seq)}
    assert rows[TITAN] == per_token * 2 * seq


def test_torchtitan_row_on_llama_3_8b_untied():
    """Untied: the token embedding (128,256 × 4,096) is a lookup and goes; the LM head stays."""
    seq = 8192
    per_token = _torchtitan_per_token(8_030_261_248, 128256 * 4096, False, 32, 32, 128, seq)
    assert per_token == 6 * 7_504_924_672 + 12 * 32 * 32 * 128 * seq
    rows = {c.name: c.flops for c in conventions(load_config("llama-3-8b"), 1, seq)}
    assert rows[TITAN] == per_token * seq


def test_torchtitan_row_keeps_the_lm_head_of_a_tied_model():
    """The row sits within 0.01% of the exact count on llama-3.2-1b (it drops the LM head matmul
    and reads 0.852 of it when the tied table is subtracted)."""
    result = analyze_flops(load_config("llama-3.2-1b"), seq=8192, count=False)
    row = next(c for c in result.conventions if c.name == TITAN)
    assert abs(row.flops / result.step.model - 1) < 1e-4
    assert "tied" in row.note
