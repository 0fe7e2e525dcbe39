"""config.json of the mixture-of-experts types (llmcalc/config/hf_moe.py), field by field: each
type's fields land on the schema fields transformers 5.23's model gives them (which layers are
MoE, expert and shared widths, router rule, biases, latent sizes, windows), and a field that
cannot be expressed is one error naming it. The counts are checked against transformers' own
models in tests/parity/test_moe_parity.py."""

import json

import pytest

from llmcalc.config.presets import load_config
from tests.config.test_hf import MOE_PUBLISHED, write_config
from tests.conftest import assert_one_line_error


def _published(name):
    return load_config(str(MOE_PUBLISHED / f"{name}.json"))


def _fields(cfg, *names):
    return tuple(getattr(cfg, name) for name in names)


def _load(tmp_path, model_type, fields):
    return load_config(str(write_config(tmp_path, model_type, fields)))


def _warnings(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning:")]


ROUTING = ("n_experts", "experts_per_token", "router_score", "normalize_topk", "routed_scaling")
WIDTHS = ("d_ff", "d_ff_expert", "n_shared_experts", "d_ff_shared", "shared_expert_gate")
LAYERS = ("first_dense_layers", "moe_every", "moe_layers")
BIASES = ("qkv_bias", "out_bias", "mlp_bias", "router_bias", "expert_bias")


def test_mixtral(capsys):
    cfg = _published("Mixtral-8x7B-v0.1")
    assert _fields(cfg, *ROUTING) == (8, 2, "softmax", True, None)  # always renormalised
    assert _fields(cfg, *WIDTHS) == (14336, 14336, 0, None, False)
    assert _fields(cfg, *LAYERS) == (0, 1, None)  # every layer MoE
    assert _fields(cfg, *BIASES) == (False,) * 5
    assert (cfg.n_kv_heads, cfg.norm_cast, cfg.sliding_window) == (8, "before_weight", None)
    assert _warnings(capsys) == []  # its expert fields are modelled, not warned about


def test_mixtral_window_is_every_layers():
    cfg = load_config("tests/data/hf/moe/tiny/mixtral.json")
    assert (cfg.sliding_window, cfg.sliding_window_pattern, cfg.global_layers) == (8, None, None)


def test_qwen2_moe():
    cfg = _published("Qwen1.5-MoE-A2.7B")
    assert _fields(cfg, *ROUTING) == (60, 4, "softmax", False, None)
    assert _fields(cfg, *WIDTHS) == (5632, 1408, 1, 5632, True)  # one gated shared expert
    assert _fields(cfg, *BIASES) == (True, False, False, False, False)  # q, k, v only
    assert (cfg.n_kv_heads, cfg.sliding_window, cfg.norm_cast) == (16, None, "before_weight")


def test_qwen2_moe_sparse_step_and_mlp_only_layers_become_the_moe_layers():
    # decoder_sparse_step 2 makes layers 1 and 3 MoE; mlp_only_layers [3] makes 3 dense again
    cfg = load_config("tests/data/hf/moe/tiny/qwen2_moe.json")
    assert _fields(cfg, *LAYERS) == (0, 1, [1])
    assert (cfg.d_ff, cfg.d_ff_expert, cfg.d_ff_shared, cfg.normalize_topk) == (160, 32, 48, True)


def test_qwen2_moe_every_other_layer(tmp_path):
    fields = json.loads(MOE_PUBLISHED.joinpath("Qwen1.5-MoE-A2.7B.json").read_text())
    cfg = _load(tmp_path, "qwen2_moe", dict(fields, decoder_sparse_step=2))
    assert _fields(cfg, *LAYERS) == (0, 2, None)
    dense = _load(tmp_path / "d", "qwen2_moe", dict(fields, mlp_only_layers=list(range(24))))
    assert (dense.n_experts, dense.n_shared_experts, dense.d_ff) == (0, 0, 5632)  # all dense


def test_qwen2_moe_window_on_the_layers_its_config_marks(tmp_path):
    # Qwen2MoeConfig: sliding iff i + 1 is odd and i < max_window_layers
    fields = json.loads(MOE_PUBLISHED.joinpath("Qwen1.5-MoE-A2.7B.json").read_text())
    fields.update(use_sliding_window=True, sliding_window=4096, max_window_layers=4)
    cfg = _load(tmp_path, "qwen2_moe", fields)
    local = [i for i in range(24) if i not in cfg.global_layers]
    assert (cfg.sliding_window, local) == (4096, [0, 2])


def test_qwen3_moe():
    cfg = _published("Qwen3-30B-A3B")
    assert _fields(cfg, *ROUTING) == (128, 8, "softmax", True, None)
    assert _fields(cfg, *WIDTHS) == (6144, 768, 0, None, False)
    assert _fields(cfg, *BIASES) == (False,) * 5
    assert (cfg.head_dim, cfg.qk_norm, cfg.n_kv_heads) == (128, "head", 4)


def test_qwen3_moe_head_dim_defaults_to_hidden_over_heads_and_bias_covers_o(tmp_path):
    fields = json.loads(MOE_PUBLISHED.joinpath("Qwen3-30B-A3B.json").read_text())
    del fields["head_dim"]  # Qwen3MoeAttention: getattr(config, "head_dim", hidden / heads)
    cfg = _load(tmp_path, "qwen3_moe", dict(fields, attention_bias=True))
    assert (cfg.head_dim, cfg.qkv_bias, cfg.out_bias) == (64, True, True)


def test_qwen3_moe_v5_files_name_the_experts_num_local_experts():
    data = json.loads(open("tests/data/hf/moe/tiny/qwen3_moe.json").read())
    assert "num_local_experts" in data and "num_experts" not in data  # attribute_map's alias
    assert load_config("tests/data/hf/moe/tiny/qwen3_moe.json").n_experts == 8


def test_deepseek_v2_lite():
    cfg = _published("DeepSeek-V2-Lite")
    assert _fields(cfg, *ROUTING) == (64, 6, "softmax", False, None)  # norm_topk_prob unread
    assert _fields(cfg, *WIDTHS) == (10944, 1408, 2, 2816, False)  # 2 shared: one MLP, 2·1408
    assert _fields(cfg, *LAYERS) == (1, 1, None)
    latent = ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
    assert _fields(cfg, *latent) == (None, 512, 128, 64, 128)  # one q_proj
    assert (cfg.head_dim, cfg.n_kv_heads, cfg.score_correction_bias) == (192, 16, False)


def test_deepseek_v3(capsys):
    cfg = _published("DeepSeek-V3")
    assert _fields(cfg, *ROUTING) == (256, 8, "sigmoid", True, 2.5)
    assert cfg.score_correction_bias
    assert _fields(cfg, *WIDTHS) == (18432, 2048, 1, 2048, False)
    assert _fields(cfg, *LAYERS) == (3, 1, None)
    assert (cfg.q_lora_rank, cfg.kv_lora_rank, cfg.head_dim) == (1536, 512, 192)
    assert _fields(cfg, *BIASES) == (False,) * 5
    assert _warnings(capsys) == []


def test_deepseek_v5_files_state_head_dim_as_the_rope_part():
    # DeepseekV3Config.__post_init__ sets head_dim = qk_rope_head_dim, and save_pretrained keeps it
    data = json.loads(open("tests/data/hf/v5/deepseek_v3.json").read())
    assert data["head_dim"] == data["qk_rope_head_dim"] == 64
    assert load_config("tests/data/hf/v5/deepseek_v3.json") == _published("DeepSeek-V3").replace(
        name="deepseek_v3", source="tests/data/hf/v5/deepseek_v3.json"
    )


def test_gpt_oss():
    cfg = _published("gpt-oss-20b")
    assert _fields(cfg, *ROUTING) == (32, 4, "topk_softmax", False, None)
    assert _fields(cfg, *BIASES) == (True, True, False, True, True)
    assert (cfg.attention_sinks, cfg.head_dim, cfg.norm_cast) == (True, 64, "after_weight")
    assert (cfg.sliding_window, cfg.sliding_window_pattern) == (128, 2)  # layers 0, 2, ... local


def test_llama4_scout(capsys):
    cfg = _published("Llama-4-Scout-17B-16E-text")
    assert _fields(cfg, *ROUTING) == (16, 1, "topk_sigmoid", False, None)
    assert _fields(cfg, *WIDTHS) == (16384, 8192, 1, 8192, False)
    assert _fields(cfg, *LAYERS) == (0, 1, None)  # moe_layers = all 48
    assert (cfg.sliding_window, cfg.sliding_window_pattern) == (8192, 4)  # every 4th NoPE, global
    warned = _warnings(capsys)
    assert len(warned) == 1 and "'attention_chunk_size' = 8192" in warned[0]
    assert "chunk-block mask is not modelled" in warned[0]


def test_llama4_composite_is_its_text_config(capsys):
    cfg = _published("Llama-4-Scout-17B-16E")
    assert "not the vision tower" in _warnings(capsys)[0]
    text = _published("Llama-4-Scout-17B-16E-text")
    assert cfg == text.replace(name=cfg.name, source=cfg.source)


def test_llama4_moe_and_chunked_layers(tmp_path):
    fields = json.loads(MOE_PUBLISHED.joinpath("Llama-4-Scout-17B-16E-text.json").read_text())
    del fields["moe_layers"]
    step = _load(tmp_path / "a", "llama4_text", dict(fields, interleave_moe_layer_step=2))
    assert _fields(step, *LAYERS) == (0, 2, None)  # Llama 4 Maverick's interleave
    listed = _load(tmp_path / "b", "llama4_text", dict(fields, moe_layers=[0, 5]))
    assert listed.moe_layers == [0, 5]
    kinds = ["full_attention"] * 2 + ["chunked_attention"] * 46
    chunked = _load(tmp_path / "c", "llama4_text", dict(fields, layer_types=kinds))
    assert (chunked.sliding_window, chunked.global_layers) == (8192, [0, 1])
    full = _load(tmp_path / "d", "llama4_text", dict(fields, layer_types=["full_attention"] * 48))
    assert full.sliding_window is None


BAD = [
    ("deepseek_v3", "DeepSeek-V3", dict(num_key_value_heads=8), "'num_key_value_heads' = 8"),
    ("deepseek_v2", "DeepSeek-V2-Lite", dict(num_experts_per_tok=None),
     "missing field 'num_experts_per_tok'"),
    ("qwen3_moe", "Qwen3-30B-A3B", dict(mlp_only_layers=[48]), "field 'mlp_only_layers' = [48]"),
    ("qwen3_moe", "Qwen3-30B-A3B", dict(norm_topk_prob="yes"), "field 'norm_topk_prob' = 'yes'"),
    ("mixtral", "Mixtral-8x7B-v0.1", dict(num_local_experts="8"), "field 'num_local_experts'"),
    ("mixtral", "Mixtral-8x7B-v0.1", dict(num_experts_per_tok=9), "'experts_per_token' = 9"),
    ("llama4_text", "Llama-4-Scout-17B-16E-text",
     dict(layer_types=["sliding_attention"] * 48), "field 'layer_types'"),
    ("llama4_text", "Llama-4-Scout-17B-16E-text", dict(attention_chunk_size=None),
     "'attention_chunk_size' is null"),
    ("llama4_text", "Llama-4-Scout-17B-16E-text", dict(no_rope_layers=[1, 0]),
     "field 'no_rope_layers' = [1, 0]"),
    ("llama4", "Llama-4-Scout-17B-16E", dict(text_config=None), "needs a 'text_config' object"),
    ("gpt_oss", "gpt-oss-20b", dict(layer_types=["chunked_attention"] * 24), "field 'layer_types'"),
    ("qwen3_moe", "Qwen3-30B-A3B", dict(num_hidden_layers=2**40), "at most 100,000 layers"),
]  # fmt: skip


@pytest.mark.parametrize("model_type,name,change,message", BAD, ids=[b[3] for b in BAD])
def test_what_cannot_be_expressed_is_one_error_naming_it(
    tmp_path, runner, model_type, name, change, message
):
    fields = json.loads(MOE_PUBLISHED.joinpath(f"{name}.json").read_text())
    fields.update(change)
    fields.pop("model_type")
    path = write_config(tmp_path, model_type, fields)
    assert_one_line_error(runner, ["show", str(path)], message)
