"""Sliding-window attention (Mistral): each query sees the last W keys, itself included, as
transformers' sliding_window_overlay (kv_idx > q_idx - W); the KV cache keeps the last W - 1.
Decoding past the window, per layer kind, is tested in tests/memory/test_memory.py."""

import torch

from llmcalc.config.schema import ModelConfig
from llmcalc.config.window import cached_positions
from llmcalc.memory.formula import kv_cache_bytes
from llmcalc.model.attention import eager_attention
from llmcalc.model.transformer import build_model
from tests.conftest import tiny


def _windowed(window, **changes):
    return ModelConfig.from_dict(tiny(**{"n_kv_heads": 2, "sliding_window": window, **changes}))


def test_the_window_is_the_last_w_keys_itself_included():
    torch.manual_seed(0)
    cfg = _windowed(4)
    model = build_model(cfg, "cpu").eval()
    tokens = torch.randint(0, cfg.vocab_size, (1, 10))
    attention = model.layers[0].attn
    mask = attention._mask(10, 0, 0, torch.float32, torch.device("cpu"))
    rows = [torch.nonzero(row).flatten().tolist() for row in mask]
    assert rows[0] == [0] and rows[3] == [0, 1, 2, 3] and rows[9] == [6, 7, 8, 9]
    with torch.no_grad():  # past the window the model differs from the unwindowed one
        windowed = model(tokens)
        unwindowed = build_model(cfg.replace(sliding_window=None), "cpu").eval()
        unwindowed.load_state_dict(model.state_dict())
        full = unwindowed(tokens)
    torch.testing.assert_close(windowed[:, :4], full[:, :4])
    assert not torch.allclose(windowed[:, 4:], full[:, 4:])


def test_sdpa_and_eager_agree_past_the_window():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8) for _ in range(3))
    cfg = _windowed(3, n_kv_heads=4)
    model = build_model(cfg, "cpu", attention="eager")
    mask = model.layers[0].attn._mask(9, 0, 0, torch.float32, torch.device("cpu"))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(eager_attention(q, k, v, mask), expected)


def test_cache_below_the_window_holds_every_token():
    cfg = _windowed(64)
    assert cached_positions(cfg, True, 10) == 10 and cached_positions(cfg, True, 100) == 63
    assert kv_cache_bytes(cfg, 1, 100, 2) == 2 * cfg.n_layers * cfg.kv_dim * 63 * 2
