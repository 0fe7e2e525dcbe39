"""Parity of the mixture-of-experts types with transformers 5.23's own models (issue 13, item 7).
Each tiny config.json in tests/data/hf/moe/tiny (written by its generate.py) is read by llmcalc
and by transformers, which builds its model from it, and:

- parameters: llmcalc's counted model == transformers' model built on meta, in total and per
  group (embedding, attention, dense MLPs, router, routed experts, shared experts, norms, head),
  and == the integer below;
- KV cache: the bytes of the DynamicCache a real CPU prefill (batch 2, past every window) and one
  decode step leave in transformers == the bytes of llmcalc's KVCache after the same tokens, fp32
  and bf16. MLA caches its latent (kv_lora_rank) and its one RoPE key head; gpt-oss's sliding and
  Llama 4's chunked layers hold window − 1 tokens;
- forward FLOPs: transformers' model on meta with experts_implementation="batched_mm" (routed
  rows only: T·k per MoE layer) under FlopCounterMode == llmcalc's model on meta under the same
  counter, eager and SDPA (gpt-oss runs eager only), in total, per layer's attention and MLP, and
  == the integer below. Routed FLOPs do not depend on where the router sends the tokens, so they
  match exactly. transformers' Llama 4 runs every expert on every token (a dense bmm over all E):
  it is compared with llmcalc's count of the same config with experts_per_token = n_experts.
- decode FLOPs: one step on a real CPU cache after the prefill, both models under FlopCounterMode
  (eager attention), equal and == the integer below.

And the published full-size configs (tests/data/hf/moe/published): transformers' total and
groups == llmcalc's, on meta.
"""

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from llmcalc.config.presets import load_config  # noqa: E402
from llmcalc.flops.count import count_flops  # noqa: E402
from llmcalc.model.attention import KVCache  # noqa: E402
from llmcalc.model.transformer import build_model  # noqa: E402
from llmcalc.params.analysis import analyze_params  # noqa: E402
from llmcalc.views.parity import (  # noqa: E402
    cache_bytes,
    check_forward_flops,
    check_kv_cache,
    check_params,
    hf_config,
    quiet_transformers,
)
from tests.config.test_hf import MOE_CONFIGS, MOE_PUBLISHED  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "data" / "hf" / "moe" / "tiny"
BATCH, SEQ = 2, 16  # FLOPs
KV_SEQ = 12  # a prefill past the windows of 8 (mixtral, gpt_oss) and the chunks of 8 (llama4)

# model_type -> (parameters, forward FLOPs at BATCH × SEQ, KV bytes in fp32 after a KV_SEQ-token
# prefill of batch 2), as transformers 5.23 counts and caches them (and by hand: e.g. mixtral's
# cache, 2 layers × (k, v) × batch 2 × 2 kv heads × 7 tokens (window 8 − 1) × 16 × 4 B = 7,168)
EXPECTED = {
    "mixtral": (205_632, 7_634_944, 7_168),
    "qwen2_moe": (209_280, 12_013_568, 24_576),
    "qwen3_moe": (169_888, 5_439_488, 18_432),
    "deepseek_v2": (234_784, 9_617_408, 11_520),  # 3 layers × batch 2 × 12 × (32 + 8) × 4 B
    "deepseek_v3": (226_480, 9_125_888, 11_520),
    "gpt_oss": (234_336, 9_502_720, 19_456),
    "llama4_text": (181_312, 11_042_816, 16_896),  # FLOPs: every expert on every token
}
TYPES = list(EXPECTED)


@pytest.fixture(scope="module")
def configs():
    """model_type -> (transformers' config, llmcalc's config)."""
    built = {}
    with quiet_transformers():
        for model_type in TYPES:
            path = TINY / f"{model_type}.json"
            built[model_type] = (hf_config(json.loads(path.read_text())), load_config(str(path)))
    return built


def _hf_model(config, attention="sdpa", device="meta", dtype=torch.float32):
    """transformers' model with routed-only experts that run on meta (batched_mm); Llama 4 has
    no such switch and stays its dense all-experts bmm. gpt-oss has no SDPA: eager."""
    import transformers

    kwargs = dict(attn_implementation=attention, experts_implementation="batched_mm", dtype=dtype)
    with quiet_transformers(), torch.device(device):
        try:
            return transformers.AutoModelForCausalLM.from_config(config, **kwargs)
        except ValueError as exc:
            if "scaled_dot_product_attention" not in str(exc):
                raise
            kwargs["attn_implementation"] = "eager"
            return transformers.AutoModelForCausalLM.from_config(config, **kwargs)


# --- parameters -------------------------------------------------------------------------------


def _hf_group(name: str) -> str:
    """transformers' parameter name -> llmcalc's group (params/formula.py: GROUPS)."""
    parts = name.split(".")
    if parts[:2] == ["model", "embed_tokens"]:
        return "token_embedding"
    if parts[0] == "lm_head":
        return "lm_head"
    if "norm" in parts[-2]:  # input/post_attention_layernorm, norm, q/k_norm, q_a/kv_a_layernorm
        return "norms"
    if "self_attn" in parts:
        return "attention"
    ffn = parts[parts.index("mlp" if "mlp" in parts else "feed_forward") + 1]
    if ffn in ("gate", "router"):
        return "router"
    if ffn == "experts":
        return "experts"
    if ffn.startswith("shared_expert"):  # shared_expert(s), and Qwen2-MoE's shared_expert_gate
        return "shared_experts"
    return "mlp"


def _hf_groups(model) -> dict[str, int]:
    groups: dict[str, int] = {}
    for name, param in model.named_parameters():  # unique: a tied head once
        groups[_hf_group(name)] = groups.get(_hf_group(name), 0) + param.numel()
    return groups


def _check_params(config, cfg):
    theirs = _hf_groups(_hf_model(config))
    result = analyze_params(cfg)
    ours = {group: n for group, n in result.groups.items() if n}
    assert ours == theirs
    assert result.counted.total == result.formula.total.value == sum(theirs.values())
    return result.counted.total


@pytest.mark.parametrize("model_type", TYPES)
def test_parameters_equal_transformers_in_total_and_per_group(configs, model_type):
    assert _check_params(*configs[model_type]) == EXPECTED[model_type][0]


@pytest.mark.parametrize("q_lora_rank", [None, 48])
def test_latent_attention_biases_sit_where_transformers_puts_them(tmp_path, q_lora_rank):
    """attention_bias: on q_a_proj, kv_a_proj_with_mqa and o_proj; q_proj (no q latent) has
    none in transformers' DeepSeek-V2, and none in llmcalc."""
    data = json.loads((TINY / "deepseek_v2.json").read_text())
    data.update(attention_bias=True, q_lora_rank=q_lora_rank)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with quiet_transformers():
        config = hf_config(data)
    _check_params(config, load_config(str(path)))  # total and per group, exactly


def _published(name):
    path = MOE_PUBLISHED / f"{name}.json"
    with quiet_transformers():
        return hf_config(json.loads(path.read_text())), load_config(str(path))


@pytest.mark.parametrize("model_type,name,published", MOE_CONFIGS, ids=[c[1] for c in MOE_CONFIGS])
def test_published_full_size_configs_per_group(model_type, name, published):
    assert _check_params(*_published(name)) == published


# --- KV cache ---------------------------------------------------------------------------------


def _hf_cache(config, tokens, dtype):
    """transformers' cache bytes after the prefill of `tokens` and after one decode step."""
    torch.manual_seed(0)
    model = _hf_model(config, device="cpu", dtype=dtype).eval()
    with torch.no_grad():
        out = model(input_ids=tokens, use_cache=True)
        prefill = cache_bytes(out.past_key_values)
        out = model(input_ids=tokens[:, :1], past_key_values=out.past_key_values, use_cache=True)
    return prefill, cache_bytes(out.past_key_values)


def _llmcalc_cache(cfg, tokens, dtype):
    """llmcalc's KVCache bytes, sized for the prefill, then for the prefill and one decode step."""
    torch.manual_seed(0)
    model = build_model(cfg, device="cpu", dtype=dtype).eval()
    batch, seq = tokens.shape
    with torch.no_grad():
        prefill = KVCache(cfg, batch, seq, "cpu", dtype)
        model(tokens, cache=prefill)
        decode = KVCache(cfg, batch, seq + 1, "cpu", dtype)
        model(tokens, cache=decode)
        model(tokens[:, :1], cache=decode)
    return prefill.nbytes, decode.nbytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("model_type", TYPES)
def test_kv_cache_of_a_real_prefill_and_decode_step(configs, model_type, dtype):
    config, cfg = configs[model_type]
    tokens = torch.randint(
        0, cfg.vocab_size, (2, KV_SEQ), generator=torch.Generator().manual_seed(0)
    )
    theirs = _hf_cache(config, tokens, dtype)
    assert _llmcalc_cache(cfg, tokens, dtype) == theirs
    assert theirs[0] == EXPECTED[model_type][2] * dtype.itemsize // 4


def test_latent_and_windowed_caches_hold_what_transformers_holds(configs):
    """By hand: MLA holds kv_lora_rank + qk_rope_head_dim per token and layer (not 2·heads·
    head_dim); a sliding (gpt-oss) or chunked (Llama 4) layer the last window − 1 tokens."""
    _, v3 = configs["deepseek_v3"]
    assert (v3.kv_lora_rank, v3.qk_rope_head_dim) == (32, 8)
    assert EXPECTED["deepseek_v3"][2] == 3 * 2 * KV_SEQ * (32 + 8) * 4
    _, oss = configs["gpt_oss"]  # layers 0, 2 sliding (8), 1, 3 full
    assert (oss.sliding_window, oss.sliding_window_pattern) == (8, 2)
    assert EXPECTED["gpt_oss"][2] == 2 * 2 * 2 * 16 * 4 * (7 + KV_SEQ + 7 + KV_SEQ)
    _, llama4 = configs["llama4_text"]  # layer 3 NoPE and global, 0..2 chunked (8)
    assert (llama4.sliding_window, llama4.sliding_window_pattern) == (8, 4)
    assert EXPECTED["llama4_text"][2] == 2 * 2 * 2 * 16 * 4 * (7 * 3 + KV_SEQ)


# --- forward FLOPs ----------------------------------------------------------------------------


def _by_part(counts: dict[str, dict], layers: str, attention: str, mlps: tuple[str, ...]):
    """FlopCounterMode's per-module table -> {(layer, 'attention' | 'mlp') or 'lm_head': FLOPs}."""
    parts = {}
    for module, ops in counts.items():
        path = module.split(".", 1)[1] if "." in module else ""  # less the model's class name
        if path == "lm_head":
            parts["lm_head"] = sum(ops.values())
        elif path.startswith(layers + "."):
            tail = path.removeprefix(layers + ".").split(".")
            if len(tail) == 2 and (tail[1] == attention or tail[1] in mlps):
                kind = "attention" if tail[1] == attention else "mlp"
                parts[(int(tail[0]), kind)] = sum(ops.values())
    return parts


def _hf_flops(config, attention, batch=BATCH, seq=SEQ):
    model = _hf_model(config, attention)
    tokens = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=tokens, use_cache=True)  # a DynamicCache: no .item() in mask creation
    table = _by_part(
        counter.get_flop_counts(), "model.layers", "self_attn", ("mlp", "feed_forward")
    )
    return counter.get_total_flops(), table, model.config._attn_implementation


def _llmcalc_flops(cfg, attention, batch=BATCH, seq=SEQ):
    model = build_model(cfg, attention=attention)
    tokens = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(tokens)
    table = _by_part(counter.get_flop_counts(), "layers", "attn", ("mlp",))
    return counter.get_total_flops(), table


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("model_type", TYPES)
def test_forward_flops_equal_in_total_and_per_layer(configs, model_type, attention):
    config, cfg = configs[model_type]
    theirs, their_parts, ran = _hf_flops(config, attention)
    if model_type == "llama4_text":  # transformers: every expert on every token
        cfg = cfg.replace(experts_per_token=cfg.n_experts)
    ours, our_parts = _llmcalc_flops(cfg, ran)
    assert our_parts == their_parts
    assert ours == theirs == EXPECTED[model_type][1]


# One decode step after a KV_SEQ-token prefill of batch 2, on the CPU (eager attention: the CPU's
# fused SDPA kernel has no FlopCounterMode entry). MLA decompresses every cached position again
# (kv_b_proj over all 13), in both; a windowed layer attends to its W − 1 cached keys and the new
# one. Llama 4 again at experts_per_token = n_experts.
DECODE_FLOPS = {
    "mixtral": 468_992,
    "qwen2_moe": 744_704,
    "qwen3_moe": 335_360,
    "deepseek_v2": 1_112_000,
    "deepseek_v3": 1_081_280,
    "gpt_oss": 582_656,
    "llama4_text": 676_352,
}


@pytest.mark.parametrize("model_type", TYPES)
def test_a_decode_step_on_a_real_cache_counts_the_same(configs, model_type):
    config, cfg = configs[model_type]
    tokens = torch.randint(
        0, cfg.vocab_size, (2, KV_SEQ + 1), generator=torch.Generator().manual_seed(0)
    )
    prompt, step = tokens[:, :KV_SEQ], tokens[:, KV_SEQ:]
    theirs = _hf_model(config, "eager", device="cpu").eval()
    if model_type == "llama4_text":
        cfg = cfg.replace(experts_per_token=cfg.n_experts)
    ours = build_model(cfg, device="cpu", attention="eager").eval()
    cache = KVCache(cfg, 2, KV_SEQ + 1, "cpu", torch.float32)
    with torch.no_grad():
        past = theirs(input_ids=prompt, use_cache=True).past_key_values
        with FlopCounterMode(display=False) as their_count:
            theirs(input_ids=step, past_key_values=past, use_cache=True)
        ours(prompt, cache=cache)
        with FlopCounterMode(display=False) as our_count:
            ours(step, cache=cache)
    assert our_count.get_total_flops() == their_count.get_total_flops() == DECODE_FLOPS[model_type]


# Full-size forward FLOPs, batch 1 × 256 tokens (Llama 4: every expert on every token, as above)
PUBLISHED_FLOPS = {
    "Mixtral-8x7B-v0.1": 6_561_636_286_464,
    "Qwen1.5-MoE-A2.7B": 1_230_298_415_104,
    "Qwen3-30B-A3B": 1_608_867_905_536,
    "DeepSeek-V2-Lite": 1_273_189_367_808,
    "DeepSeek-V3": 19_079_284_916_224,
    "gpt-oss-20b": 1_872_626_712_576,
    "Llama-4-Scout-17B-16E-text": 54_712_682_414_080,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED_FLOPS)
def test_published_full_size_forward_flops(name):
    config, cfg = _published(name)
    theirs, their_parts, ran = _hf_flops(config, "sdpa", batch=1, seq=256)
    if cfg.router_score == "topk_sigmoid":  # Llama 4
        cfg = cfg.replace(experts_per_token=cfg.n_experts)
    ours, our_parts = _llmcalc_flops(cfg, ran, batch=1, seq=256)
    assert our_parts == their_parts
    assert ours == theirs == PUBLISHED_FLOPS[name]


def test_llama4_routed_flops_are_transformers_over_e_over_k(configs):
    """llmcalc counts Llama 4's routed experts as routed (k of E per token); transformers'
    dense bmm runs all E: the gap is (E − k) experts' matmuls on every token of each MoE layer."""
    _, cfg = configs["llama4_text"]
    routed, _ = _llmcalc_flops(cfg, "sdpa")
    experts, k, d, f = cfg.n_experts, cfg.experts_per_token, cfg.d_model, cfg.d_ff_expert
    moe_layers = 2  # layers 1 and 3 (interleave_moe_layer_step 2)
    gap = moe_layers * 2 * BATCH * SEQ * (experts - k) * 3 * d * f
    assert EXPECTED["llama4_text"][1] - routed == gap == 2_359_296


@pytest.mark.parametrize(
    "model_type",
    [t for t in TYPES if t != "llama4_text"],
)
def test_count_flops_components_sum_to_the_models_forward(configs, model_type):
    _, cfg = configs[model_type]
    counted = count_flops(cfg, BATCH, SEQ, one_block=False)
    assert sum(counted.torch_forward.values()) == EXPECTED[model_type][1]


# `llmcalc check --against transformers` (views/parity.py) on the types whose every layer is MoE
# (flops/count.py traces one block, which a config with dense layers beside MoE ones cannot be
# cut to yet): parameters and KV bytes exact; transformers' FLOPs those of batch 1 above.
@pytest.mark.parametrize("model_type", ["mixtral", "qwen3_moe", "gpt_oss"])
def test_check_against_transformers_runs_on_an_moe_config(configs, model_type):
    config, cfg = configs[model_type]
    with quiet_transformers():
        assert check_params(config, cfg).passed
        assert check_kv_cache(config, cfg, "bf16", KV_SEQ, real=True).passed
        flops = check_forward_flops(config, cfg, "eager", 1, SEQ)
    assert flops.transformers == EXPECTED[model_type][1] // BATCH
