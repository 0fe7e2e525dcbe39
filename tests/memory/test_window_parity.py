"""Sliding windows against transformers' own models: the bytes of the cache a real CPU prefill
returns (batch 2, a sequence past the window, fp32 and bf16, local and global layers) equal
llmcalc's KV bytes, and the forward matmul FLOPs under FlopCounterMode on meta equal llmcalc's."""

import json

import pytest
import torch

from llmcalc.config.presets import load_config
from llmcalc.flops.formula import forward_flops
from llmcalc.memory.formula import kv_cache_bytes

transformers = pytest.importorskip("transformers")

TINY = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=64,
)
CASES = {
    "mistral (all local)": ("mistral", dict(sliding_window=5)),
    "qwen2 (local from layer 2)": (
        "qwen2",
        dict(sliding_window=5, use_sliding_window=True, max_window_layers=2),
    ),
    "gemma2 (alternating, soft-caps)": ("gemma2", dict(sliding_window=5)),
    "gemma3_text (every 3rd global)": (
        "gemma3_text",
        dict(sliding_window=5, sliding_window_pattern=3),
    ),
}


def _write(tmp_path, model_type, fields):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": model_type, **TINY, **fields}))
    hf = transformers.AutoConfig.for_model(model_type, **TINY, **fields)
    return load_config(str(path)), hf


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_kv_bytes_of_a_prefill_past_the_window_equal_transformers_cache(tmp_path, case, dtype):
    cfg, hf = _write(tmp_path, *CASES[case])
    model = transformers.AutoModelForCausalLM.from_config(hf).to(dtype).eval()
    seq = 12  # past the window of 5
    with torch.no_grad():
        cache = model(torch.randint(0, 64, (2, seq)), use_cache=True).past_key_values
    held = sum(
        t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
    )
    element = torch.tensor([], dtype=dtype).element_size()
    assert cfg.sliding_window == 5
    assert kv_cache_bytes(cfg, 2, seq, element) == held


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_forward_matmul_flops_equal_transformers(tmp_path, case, impl):
    from torch.utils.flop_counter import FlopCounterMode

    cfg, hf = _write(tmp_path, *CASES[case])
    if impl == "sdpa" and CASES[case][0] == "gemma2":
        pytest.skip("transformers refuses SDPA for Gemma 2 (no soft-capping); llmcalc runs eager")
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf, attn_implementation=impl)
    tokens = torch.zeros(2, 12, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(tokens)
    assert counter.get_total_flops() == forward_flops(cfg, 2, 12).matmul_total
