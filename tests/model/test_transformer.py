"""The real model: every variant runs forward and backward on CPU; meta builds cost nothing."""

import pytest
import torch

from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.model.transformer import build_model
from llmcalc.params.count import count_params
from llmcalc.views.check import grid_configs
from tests.conftest import tiny

GRID = grid_configs()


@pytest.mark.parametrize("cfg", GRID, ids=[c.name for c in GRID])
def test_forward_backward_every_variant(cfg):
    torch.manual_seed(0)
    model = build_model(cfg, device="cpu")
    batch, seq = 2, 8
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq))
    logits = model(tokens)
    assert logits.shape == (batch, seq, cfg.vocab_size)
    loss = model(tokens, targets=torch.randint(0, cfg.vocab_size, (batch, seq)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), name
        # A key bias adds q·b to every score of a query alike; softmax cancels it, so its
        # gradient is zero in exact arithmetic. Every other parameter must get a signal.
        if not name.endswith("k_proj.bias"):
            assert p.grad.abs().sum() > 0, f"zero gradient at {name}"


def test_model_is_causal():
    cfg = ModelConfig.from_dict(tiny(position="alibi", n_kv_heads=2))
    model = build_model(cfg, device="cpu")
    tokens = torch.randint(0, cfg.vocab_size, (1, 8))
    changed = tokens.clone()
    changed[0, -1] = (changed[0, -1] + 1) % cfg.vocab_size
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.allclose(a[0, :-1], b[0, :-1], atol=1e-5)  # earlier positions do not see the last
    assert not torch.allclose(a[0, -1], b[0, -1])


def test_tied_head_shares_the_embedding_tensor_and_counts_once():
    cfg = ModelConfig.from_dict(tiny(tie_embeddings=True))
    model = build_model(cfg, device="cpu")
    assert model.lm_head.weight.data_ptr() == model.tok_embeddings.weight.data_ptr()
    counted = count_params(model)
    assert counted.aliases == {"lm_head.weight": "tok_embeddings.weight"}
    with_duplicates = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert counted.total == with_duplicates - cfg.vocab_size * cfg.d_model


def test_positions_other_than_learned_have_no_parameters():
    counts = {}
    for position in ("rope", "alibi", "sinusoidal", "none", "learned"):
        model = build_model(ModelConfig.from_dict(tiny(position=position)))
        assert list(model.buffers()) == []  # position tables are computed in forward
        counts[position] = count_params(model).total
    assert len({counts[p] for p in ("rope", "alibi", "sinusoidal", "none")}) == 1
    assert counts["learned"] - counts["none"] == 16 * 32  # max_seq_len · d_model


def test_meta_build_allocates_nothing_for_405b():
    model = build_model(load_config("llama-3.1-405b"))
    assert all(p.is_meta for p in model.parameters())
    assert len(model.layers) == 126


def test_bf16_build():
    cfg = ModelConfig.from_dict(tiny())
    model = build_model(cfg, device="cpu", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model(torch.zeros(1, 4, dtype=torch.long)).dtype == torch.bfloat16


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_backward():
    cfg = ModelConfig.from_dict(tiny(n_kv_heads=2))
    model = build_model(cfg, device="cuda")
    tokens = torch.randint(0, cfg.vocab_size, (2, 8), device="cuda")
    model(tokens, targets=tokens).backward()
    assert all(p.grad is not None and p.is_cuda for p in model.parameters())
