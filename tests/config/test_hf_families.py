"""The model_types added for issue 12, field by field: each switch a type's config.json has that
changes a count (qk norms per head, parallel residuals, biases, tied heads, multi-query, post-norm,
norms without weights) gives the count transformers' own model has, and what llmcalc cannot model
is refused in one error naming the field."""

import json

import pytest

from llmcalc.config.presets import load_config
from llmcalc.params.analysis import analyze_params
from tests.config.test_hf import write_config

SMALL = dict(
    vocab_size=1000,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=128,
)
GPT = dict(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=128)
OPT = dict(
    vocab_size=1000,
    hidden_size=64,
    ffn_dim=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=128,
)

# (model_type, config.json fields, the parameters of transformers 5.23's model built from them on
# the meta device: the sum of numel over its unique parameters)
VARIANTS = [
    ("stablelm", dict(SMALL, qk_layernorm=True, use_parallel_residual=True, num_key_value_heads=2), 202_304),
    ("stablelm", dict(SMALL, use_qkv_bias=False, partial_rotary_factor=0.5, num_key_value_heads=4), 210_560),
    ("cohere", dict(SMALL, use_qk_norm=True, num_key_value_heads=2, attention_bias=True), 138_496),
    ("cohere", dict(SMALL, tie_word_embeddings=False), 210_112),
    ("phi", dict(SMALL, qk_layernorm=True), 195_944),
    ("qwen3", dict(SMALL, attention_bias=True, num_key_value_heads=2, head_dim=32), 227_392),
    ("phi3", dict(SMALL, num_key_value_heads=2, partial_rotary_factor=0.75, pad_token_id=0,
                  tie_word_embeddings=True), 138_048),
    ("olmo", dict(SMALL, attention_bias=True, num_key_value_heads=2), 202_112),
    ("granite", dict(SMALL, attention_bias=True, mlp_bias=True, num_key_value_heads=2), 203_072),
    ("starcoder2", dict(SMALL, use_bias=False, num_key_value_heads=4, tie_word_embeddings=False), 194_176),
    ("starcoder2", dict(SMALL), 122_752),  # the type's defaults: 2 kv heads, biases, tied
    ("gptj", dict(GPT, rotary_dim=8, n_inner=100, tie_word_embeddings=True), 124_080),
    ("gpt_bigcode", dict(GPT, multi_query=False, n_inner=None, scale_attn_weights=False), 172_288),
    ("bloom", dict(vocab_size=1000, hidden_size=64, n_layer=2, n_head=4, tie_word_embeddings=False), 228_224),
    ("opt", dict(OPT, do_layer_norm_before=False), 139_264),  # post-norm, no final norm
    ("opt", dict(OPT, enable_bias=False, layer_norm_elementwise_affine=False), 137_856),
    ("opt", dict(OPT, _remove_final_layer_norm=True, tie_word_embeddings=False), 203_264),
]  # fmt: skip
IDS = [f"{t}-{i}" for i, (t, _, _) in enumerate(VARIANTS)]


def _load(tmp_path, model_type, fields):
    return load_config(str(write_config(tmp_path, model_type, fields)))


@pytest.mark.parametrize("model_type,fields,expected", VARIANTS, ids=IDS)
def test_each_switch_gives_transformers_count(tmp_path, model_type, fields, expected):
    result = analyze_params(_load(tmp_path, model_type, fields))
    assert result.formula.total.value == result.counted.total == expected
    assert result.mismatches == {}


def test_the_counts_above_are_transformers_own(tmp_path):
    """Where transformers is installed, build each variant with it on meta and count again."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    for model_type, fields, expected in VARIANTS:
        config = transformers.AutoConfig.for_model(model_type, **fields)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        unique = {id(p): p.numel() for p in model.parameters()}
        assert sum(unique.values()) == expected, (model_type, fields)


def test_what_each_type_becomes(tmp_path):
    stablelm = _load(
        tmp_path / "s",
        "stablelm",
        dict(SMALL, num_key_value_heads=4, qk_layernorm=True, use_parallel_residual=True),
    )
    assert (stablelm.qk_norm, stablelm.block, stablelm.rope_fraction) == (
        "per_head",
        "parallel_shared_norm",
        0.25,
    )
    cohere = _load(tmp_path / "c", "cohere", dict(SMALL, use_qk_norm=True))
    assert (cohere.norm, cohere.norm_bias, cohere.block) == (
        "layernorm",
        False,
        "parallel_shared_norm",
    )
    assert (cohere.qk_norm, cohere.logit_scale, cohere.tie_embeddings) == ("per_head", 0.0625, True)
    olmo = _load(tmp_path / "o", "olmo", SMALL)
    assert (olmo.norm, olmo.norm_affine, olmo.activation) == ("layernorm", False, "swiglu")
    granite = _load(
        tmp_path / "g",
        "granite",
        dict(
            SMALL,
            embedding_multiplier=12.0,
            residual_multiplier=0.22,
            attention_multiplier=0.015625,
            logits_scaling=8.0,
        ),
    )
    assert (granite.embedding_multiplier, granite.residual_multiplier) == (12.0, 0.22)
    assert (granite.attention_multiplier, granite.logit_scale) == (0.015625, 0.125)
    plain = _load(tmp_path / "g1", "granite", SMALL)  # 1.0 each: transformers multiplies anyway
    assert plain.embedding_multiplier == plain.logit_scale == 1.0
    gptj = _load(tmp_path / "j", "gptj", dict(GPT, n_embd=1024))  # rotary_dim 64 by default
    assert (gptj.head_dim, gptj.rotary_dim, gptj.rope_fraction) == (256, 64, 0.25)
    assert gptj.lm_head_bias and gptj.block == "parallel_shared_norm"
    gptj = _load(tmp_path / "j2", "gptj", dict(GPT, n_embd=4096, n_head=16, rotary_dim=64))
    assert gptj.rotary_dim == 64 and gptj.rope_fraction == 0.25
    bloom = _load(tmp_path / "b", "bloom", dict(vocab_size=1000, n_embed=64, n_layer=2, n_head=4))
    assert (bloom.embedding_norm, bloom.position, bloom.d_ff) == (True, "alibi", 256)
    opt = _load(tmp_path / "p", "opt", dict(OPT, do_layer_norm_before=False))
    assert (opt.norm_position, opt.final_norm, opt.position_offset) == ("post", False, 2)
    bigcode = _load(tmp_path / "bc", "gpt_bigcode", GPT)
    assert bigcode.n_kv_heads == 1 and bigcode.attention_multiplier is None
    qwen3 = _load(tmp_path / "q", "qwen3", dict(SMALL, num_key_value_heads=4))
    assert (qwen3.head_dim, qwen3.qk_norm) == (128, "head")  # Qwen3Config's head_dim default


def test_rotary_dim_becomes_a_share_that_gives_it_back(tmp_path):
    # (n_embd, n_head, rotary_dim): 96 · (32 / 96) is 31.999... in floating point
    for d, heads, rotary in ((4096, 16, 64), (480, 5, 32), (288, 3, 64), (98, 7, 10), (672, 7, 58)):
        fields = dict(GPT, n_embd=d, n_head=heads, rotary_dim=rotary)
        cfg = _load(tmp_path / f"{d}-{heads}", "gptj", fields)
        assert cfg.rotary_dim == rotary, (d, heads, rotary, cfg.rope_fraction)


def _warnings(capsys, tmp_path, model_type, fields):
    _load(tmp_path, model_type, fields)
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning:")]


def test_windows_are_read_where_the_type_uses_them(tmp_path, capsys):
    on = dict(SMALL, num_key_value_heads=4, sliding_window=64, use_sliding_window=True)
    on["max_window_layers"] = 1  # layers 1 and up local, as transformers' Qwen3 decides
    assert _warnings(capsys, tmp_path / "a", "qwen3", on) == []
    cfg = load_config(str(tmp_path / "a" / "config.json"))
    assert (cfg.sliding_window, cfg.global_layers) == (64, [0])
    off = dict(on, use_sliding_window=False)  # Qwen3 states a window it does not use
    assert _warnings(capsys, tmp_path / "b", "qwen3", off) == []
    assert load_config(str(tmp_path / "b" / "config.json")).sliding_window is None
    for model_type in ("phi3", "starcoder2"):  # every layer's window
        fields = dict(SMALL, num_key_value_heads=4, sliding_window=64, pad_token_id=0)
        assert _warnings(capsys, tmp_path / model_type, model_type, fields) == []
        cfg = load_config(str(tmp_path / model_type / "config.json"))
        assert (cfg.sliding_window, cfg.sliding_window_pattern, cfg.global_layers) == (
            64,
            None,
            None,
        )


@pytest.mark.parametrize(
    "model_type,fields,message",
    [
        ("olmo", dict(SMALL, clip_qkv=8.0), "field 'clip_qkv' = 8.0 is not supported"),
        ("opt", dict(OPT, word_embed_proj_dim=32), "project_in and project_out"),
        ("bloom", dict(vocab_size=9, hidden_size=8, n_layer=1, n_head=2,
                       apply_residual_connection_post_layernorm=True), "norms' outputs"),
        ("cohere", dict(SMALL, partial_rotary_factor=0.5), "rotates every head feature"),
        ("granite", dict(SMALL, logits_scaling=-1.0), "'logits_scaling' = -1.0"),
    ],
)  # fmt: skip
def test_what_cannot_be_modelled_is_one_error_naming_it(
    tmp_path, runner, model_type, fields, message
):
    from tests.conftest import assert_one_line_error

    path = write_config(tmp_path, model_type, fields)
    assert_one_line_error(runner, ["params", str(path)], message)


def test_clip_qkv_null_is_no_clipping(tmp_path):
    assert not _load(tmp_path, "olmo", dict(SMALL, clip_qkv=None)).norm_affine


def test_a_config_json_of_each_new_type_runs_every_command(tmp_path, runner):
    from llmcalc.cli import app

    for model_type, fields, _ in VARIANTS[::3]:
        path = str(write_config(tmp_path / model_type, model_type, fields))
        for args in (
            ["params", path],
            ["flops", path, "--seq", "32"],
            ["memory", path, "--seq", "32", "--trace"],
        ):
            result = runner.invoke(app, [*args, "--json"])
            assert result.exit_code == 0, (args, result.output)
            json.loads(result.stdout)


@pytest.mark.parametrize("model_type,fields", [(t, f) for t, f, _ in VARIANTS[::2]])
def test_show_of_each_new_type_loads_back_to_the_same_model(tmp_path, runner, model_type, fields):
    from llmcalc.cli import app

    path = write_config(tmp_path, model_type, fields)
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 0, result.output
    saved = tmp_path / "shown.yaml"
    saved.write_text(result.stdout)
    assert load_config(str(saved)) == load_config(str(path))
