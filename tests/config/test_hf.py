"""Hugging Face config.json input: one file per supported model_type, checked against the model's
published parameter count (its model card or paper), and every way a file can be wrong."""

import json
from pathlib import Path

import pytest
import torch

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.memory.activations import head_activations, layer_activations
from llmcalc.memory.trace import trace_training
from llmcalc.model.transformer import build_model
from llmcalc.params.count import count_params
from tests.conftest import tiny

# (model_type, config.json fields as published on the Hub, published parameter count)
CONFIGS = [
    (
        "llama",
        dict(
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            hidden_act="silu",
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
        ),
        6_738_415_616,
    ),  # Llama-2-7b
    (
        "mistral",
        dict(
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            hidden_act="silu",
            max_position_embeddings=32768,
            tie_word_embeddings=False,
        ),
        7_241_732_096,
    ),
    (
        "qwen2",
        dict(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            hidden_act="silu",
            max_position_embeddings=131072,
            tie_word_embeddings=False,
        ),
        7_615_616_512,
    ),
    (
        "gemma",
        dict(
            vocab_size=256000,
            hidden_size=2048,
            intermediate_size=16384,
            num_hidden_layers=18,
            num_attention_heads=8,
            num_key_value_heads=1,
            head_dim=256,
            hidden_act="gelu",
            max_position_embeddings=8192,
        ),
        2_506_172_416,
    ),  # gemma-2b
    (
        "gpt2",
        dict(
            vocab_size=50257,
            n_embd=768,
            n_layer=12,
            n_head=12,
            n_positions=1024,
            activation_function="gelu_new",
        ),
        124_439_808,
    ),
    (
        "gpt_neox",
        dict(
            vocab_size=50304,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            rotary_pct=0.25,
            use_parallel_residual=True,
            hidden_act="gelu",
            max_position_embeddings=2048,
            tie_word_embeddings=False,
        ),
        162_322_944,
    ),  # pythia-160m
    (
        "falcon",
        dict(
            vocab_size=65024,
            hidden_size=4544,
            num_hidden_layers=32,
            num_attention_heads=71,
            multi_query=True,
            parallel_attn=True,
            bias=False,
            alibi=False,
            new_decoder_architecture=False,
        ),
        6_921_720_704,
    ),  # falcon-7b
    (
        "phi",
        dict(
            vocab_size=51200,
            hidden_size=2560,
            intermediate_size=10240,
            num_hidden_layers=32,
            num_attention_heads=32,
            partial_rotary_factor=0.4,
            hidden_act="gelu_new",
            max_position_embeddings=2048,
            tie_word_embeddings=False,
        ),
        2_779_683_840,
    ),  # phi-2
    (
        "olmo2",
        dict(
            vocab_size=100352,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            hidden_act="silu",
            max_position_embeddings=4096,
            rms_norm_eps=1e-6,
            rope_theta=500000,
            tie_word_embeddings=False,
        ),
        7_298_617_344,
    ),  # OLMo-2-1124-7B
    # --- issue 12. Where the model card states only a rounded figure, the exact count is the one
    # transformers 5.23's own model gives, built from the same config.json on the meta device
    # (the sum of numel over its unique parameters); each comment says which.
    (
        "qwen3",
        dict(
            vocab_size=151936,
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=36,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            hidden_act="silu",
            attention_bias=False,
            max_position_embeddings=40960,
            max_window_layers=36,
            rms_norm_eps=1e-6,
            rope_scaling=None,
            rope_theta=1000000,
            sliding_window=None,
            use_sliding_window=False,
            tie_word_embeddings=False,
            torch_dtype="bfloat16",
        ),
        8_190_735_360,
    ),  # Qwen3-8B: card 8.2B (6.95B non-embedding); exact: transformers
    (
        "phi3",
        dict(
            vocab_size=32064,
            hidden_size=3072,
            intermediate_size=8192,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            hidden_act="silu",
            max_position_embeddings=4096,
            original_max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            rope_scaling=None,
            rope_theta=10000.0,
            sliding_window=2047,
            tie_word_embeddings=False,
            torch_dtype="bfloat16",
        ),
        3_821_079_552,
    ),  # Phi-3-mini-4k-instruct: card 3.8B; exact: transformers
    (
        "starcoder2",
        dict(
            vocab_size=49152,
            hidden_size=3072,
            intermediate_size=12288,
            num_hidden_layers=30,
            num_attention_heads=24,
            num_key_value_heads=2,
            hidden_act="gelu_pytorch_tanh",
            max_position_embeddings=16384,
            norm_epsilon=1e-5,
            norm_type="layer_norm",
            mlp_type="default",
            rope_theta=999999.4420358813,
            sliding_window=4096,
            use_bias=True,
            torch_dtype="float32",
        ),
        3_030_371_328,
    ),  # starcoder2-3b: card 3B; exact: transformers (tied embeddings, the type's default)
    (
        "olmo",
        dict(
            vocab_size=50304,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=16,
            num_key_value_heads=16,
            hidden_act="silu",
            attention_bias=False,
            clip_qkv=None,
            max_position_embeddings=2048,
            rope_scaling=None,
            rope_theta=10000.0,
            tie_word_embeddings=True,
            torch_dtype="float32",
        ),
        1_176_764_416,
    ),  # OLMo-1B-hf: card 1B; exact: transformers (its LayerNorms have no parameters)
    (
        "stablelm",
        dict(
            vocab_size=100352,
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=24,
            num_attention_heads=32,
            num_key_value_heads=32,
            hidden_act="silu",
            layer_norm_eps=1e-5,
            max_position_embeddings=4096,
            partial_rotary_factor=0.25,
            rope_theta=10000,
            rope_scaling=None,
            use_qkv_bias=True,
            tie_word_embeddings=False,
            torch_dtype="float16",
        ),
        1_644_515_328,
    ),  # stablelm-2-1_6b: transformers. The card's table says 1,644,417,024: 98,304 = 24·2·2048
    # fewer, as if the blocks' two LayerNorms had no bias, which StableLmDecoderLayer's have
    (
        "cohere",
        dict(
            vocab_size=256000,
            hidden_size=8192,
            intermediate_size=22528,
            num_hidden_layers=40,
            num_attention_heads=64,
            num_key_value_heads=64,
            hidden_act="silu",
            attention_bias=False,
            layer_norm_eps=1e-5,
            logit_scale=0.0625,
            max_position_embeddings=8192,
            rope_theta=8000000.0,
            use_qk_norm=False,
            torch_dtype="float16",
        ),
        34_980_831_232,
    ),  # c4ai-command-r-v01: card 35B; exact: transformers (tied, the type's default)
    (
        "gptj",
        dict(
            vocab_size=50400,
            n_embd=4096,
            n_layer=28,
            n_head=16,
            n_inner=None,
            n_positions=2048,
            rotary=True,
            rotary_dim=64,
            activation_function="gelu_new",
            layer_norm_epsilon=1e-5,
            tie_word_embeddings=False,
            torch_dtype="float32",
        ),
        6_050_882_784,
    ),  # gpt-j-6b: transformers. The card says 6,053,381,344 (2,498,560 = 610·4096 more),
    # counted by mesh-transformer-jax, not by this config's module
    (
        "bloom",
        dict(
            vocab_size=250880,
            hidden_size=1024,
            n_layer=24,
            n_head=16,
            n_inner=None,
            layer_norm_epsilon=1e-5,
            apply_residual_connection_post_layernorm=False,
            offset_alibi=100,
            pretraining_tp=1,
            slow_but_exact=False,
        ),
        559_214_592,
    ),  # bloom-560m: the card's 559,214,592
    (
        "opt",
        dict(
            vocab_size=50272,
            hidden_size=768,
            ffn_dim=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=2048,
            activation_function="relu",
            do_layer_norm_before=True,
            _remove_final_layer_norm=False,
            word_embed_proj_dim=768,
            torch_dtype="float16",
        ),
        125_239_296,
    ),  # opt-125m: paper 125M; exact: transformers (2,050 position rows)
    (
        "gpt_bigcode",
        dict(
            vocab_size=49280,
            n_embd=2048,
            n_layer=24,
            n_head=16,
            n_inner=8192,
            n_positions=2048,
            multi_query=True,
            activation_function="gelu_pytorch_tanh",
            layer_norm_epsilon=1e-5,
            scale_attn_weights=True,
            torch_dtype="float32",
        ),
        1_124_886_528,
    ),  # gpt_bigcode-santacoder: card 1.1B; exact: transformers
    (
        "granite",
        dict(
            vocab_size=49155,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=40,
            num_attention_heads=32,
            num_key_value_heads=8,
            hidden_act="silu",
            attention_bias=False,
            mlp_bias=False,
            attention_multiplier=0.015625,
            embedding_multiplier=12.0,
            residual_multiplier=0.22,
            logits_scaling=8.0,
            max_position_embeddings=4096,
            rms_norm_eps=1e-6,
            rope_scaling=None,
            rope_theta=10000.0,
            tie_word_embeddings=True,
            torch_dtype="bfloat16",
        ),
        2_533_531_648,
    ),  # granite-3.0-2b-instruct: card 2.5B; exact: transformers
    (
        "gemma2",
        dict(
            vocab_size=256000,
            hidden_size=3584,
            intermediate_size=14336,
            num_hidden_layers=42,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=256,
            hidden_activation="gelu_pytorch_tanh",
            max_position_embeddings=8192,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            sliding_window=4096,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
            query_pre_attn_scalar=256,
        ),
        9_241_705_984,
    ),  # gemma-2-9b (model card: 9,241,705,984)
    (
        "gemma3_text",
        dict(
            vocab_size=262208,
            hidden_size=2560,
            intermediate_size=10240,
            num_hidden_layers=34,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=256,
            sliding_window=1024,
            rope_theta=1_000_000.0,
        ),
        3_880_263_168,
    ),  # gemma-3-4b's language model (transformers' Gemma3ForCausalLM of its text_config)
    (
        "gemma3",
        dict(
            text_config=dict(
                hidden_size=2560,
                intermediate_size=10240,
                num_hidden_layers=34,
                sliding_window=1024,
                rope_theta=1_000_000.0,
            ),
        ),
        3_880_263_168,
    ),  # gemma-3-4b-it as published: most text fields left to Gemma3TextConfig's defaults
]

# The mixture-of-experts types (llmcalc/config/hf_moe.py): their published config.json files as
# tests/data/hf/moe/generate.py writes them, each with its total as transformers 5.23 builds it
# (on the meta device, unique parameters), which is the published total where the card gives one
# exactly (Mixtral 46,702,792,704; gpt-oss-20b 20.91B in its card's Table 1) and rounds to it
# elsewhere (Qwen1.5-MoE 14.3B, DeepSeek-V2-Lite 15.7B, Qwen3-30B-A3B 30.5B, DeepSeek-V3 671B
# without its multi-token-prediction layer, Llama 4 Scout 109B with its 0.87B vision tower).
MOE_PUBLISHED = Path(__file__).resolve().parents[1] / "data" / "hf" / "moe" / "published"
MOE_CONFIGS = [
    ("mixtral", "Mixtral-8x7B-v0.1", 46_702_792_704),
    ("qwen2_moe", "Qwen1.5-MoE-A2.7B", 14_315_784_192),
    ("qwen3_moe", "Qwen3-30B-A3B", 30_532_122_624),
    ("deepseek_v2", "DeepSeek-V2-Lite", 15_706_484_224),
    ("deepseek_v3", "DeepSeek-V3", 671_026_404_352),
    ("gpt_oss", "gpt-oss-20b", 20_914_757_184),
    ("llama4_text", "Llama-4-Scout-17B-16E-text", 107_769_861_120),
    ("llama4", "Llama-4-Scout-17B-16E", 107_769_861_120),  # its text_config: vision not counted
]


def _published(name):
    fields = json.loads((MOE_PUBLISHED / f"{name}.json").read_text())
    del fields["model_type"]
    return fields


CONFIGS += [(model_type, _published(name), count) for model_type, name, count in MOE_CONFIGS]


def write_config(folder, model_type, fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, **fields}))
    return folder / "config.json"


@pytest.mark.parametrize("model_type,fields,published", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_config_json_gives_the_published_count(tmp_path, model_type, fields, published):
    path = write_config(tmp_path / model_type, model_type, fields)
    for given in (path, path.parent):  # the file, or the folder holding it
        cfg = load_config(str(given))
        counted = count_params(build_model(cfg))
        assert counted.total == published
        assert counted.fvcore_total == published


def test_show_prints_yaml_that_loads_back_to_the_same_model(tmp_path, runner):
    path = write_config(tmp_path / "phi", "phi", CONFIGS[7][1])
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 0
    saved = tmp_path / "phi.yaml"
    saved.write_text(result.stdout)
    assert load_config(str(saved)) == load_config(str(path))


def test_every_command_takes_a_config_json(tmp_path, runner):
    path = str(write_config(tmp_path / "neox", "gpt_neox", CONFIGS[5][1]))
    for args in (["params", path], ["flops", path, "--seq", "64"], ["memory", path, "--seq", "64"]):
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, (args, result.output)
        json.loads(result.stdout)


def test_partial_rotary_runs_and_its_memory_formula_is_exact():
    cfg = ModelConfig.from_dict(tiny(rope_fraction=0.5, d_model=64, n_heads=4))
    model = build_model(cfg, "cpu")
    loss = model(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8)))
    loss.backward()
    for precision, a in (("fp32", 4), ("bf16", 2)):
        traced = trace_training(cfg, 2, 16, precision=precision)
        per_layer = sum(layer_activations(cfg, 2, 16, a).values())
        assert (
            cfg.n_layers * per_layer + sum(head_activations(cfg, 2, 16, a).values()) == traced.saved
        )


def _error_line(runner, path):
    result = runner.invoke(app, ["params", str(path)])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    return lines[0]


def test_malformed_json_is_one_error_line(tmp_path, runner):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama", "hidden_size": 4096,,}')
    assert "malformed JSON at line 1" in _error_line(runner, path)


def test_unsupported_model_type_is_named(tmp_path, runner):
    path = write_config(tmp_path / "t5", "t5", {})
    line = _error_line(runner, path)
    assert "model_type 't5' is not supported" in line and "olmo2" in line


def test_missing_field_is_named(tmp_path, runner):
    fields = dict(CONFIGS[0][1])
    del fields["intermediate_size"]
    assert "missing field 'intermediate_size'" in _error_line(
        runner, write_config(tmp_path, "llama", fields)
    )


def test_conflicting_fields_are_named(tmp_path, runner):
    fields = dict(CONFIGS[0][1], num_key_value_heads=5)
    line = _error_line(runner, write_config(tmp_path / "a", "llama", fields))
    assert "num_key_value_heads = 5" in line and "num_attention_heads = 32" in line
    fields = dict(CONFIGS[4][1], n_head=7)
    line = _error_line(runner, write_config(tmp_path / "b", "gpt2", fields))
    assert "hidden_size = 768" in line and "num_attention_heads = 7" in line


def test_bad_rope_fraction_is_an_error(tmp_path, runner):
    fields = dict(CONFIGS[7][1], partial_rotary_factor=0.01)
    assert "rope_fraction" in _error_line(runner, write_config(tmp_path, "phi", fields))


def test_sliding_windows_are_read_as_transformers_reads_them(tmp_path, runner):
    mistral = dict(CONFIGS[1][1])
    assert load_config(str(write_config(tmp_path / "m", "mistral", mistral))).sliding_window == 4096
    for window in (None, 512):
        path = write_config(
            tmp_path / f"m{window}", "mistral", dict(mistral, sliding_window=window)
        )
        assert load_config(str(path)).sliding_window == window
    qwen = dict(CONFIGS[2][1], use_sliding_window=True, sliding_window=1024)
    every = write_config(tmp_path / "q0", "qwen2", dict(qwen, max_window_layers=0))
    assert load_config(str(every)).sliding_window == 1024
    none = write_config(tmp_path / "q28", "qwen2", dict(qwen, max_window_layers=28))
    assert load_config(str(none)).sliding_window is None
    some = write_config(tmp_path / "q4", "qwen2", dict(qwen, max_window_layers=4))
    cfg = load_config(str(some))  # layers 4 and up local: the first four are global
    assert (cfg.sliding_window, cfg.global_layers) == (1024, [0, 1, 2, 3])
