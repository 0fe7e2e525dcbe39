"""config.json read strictly: every field llmcalc reads has one JSON type; fields that change a
figure but are not modelled are named in a warning; a file is named by its stem."""

import json

import pytest

from llmcalc.cli import app
from llmcalc.config.hf_fields import FIELD_TYPES
from llmcalc.config.presets import load_config
from llmcalc.errors import LLMCalcError

LLAMA = dict(
    model_type="llama",
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,  # stated: Mistral's default is 8, Qwen2's 32
    max_position_embeddings=16,
)


def write(folder, name="config.json", **changes):
    folder.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in {**LLAMA, **changes}.items() if v is not ...}
    (folder / name).write_text(json.dumps(data))
    return folder / name


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("tie_word_embeddings", "false", "a JSON bool (true or false)"),  # was: tied
        ("tie_word_embeddings", 0, "a JSON bool"),
        ("attention_bias", "true", "a JSON bool"),
        ("hidden_size", "2048", "a positive JSON integer"),
        ("hidden_size", 2048.0, "a positive JSON integer"),
        ("num_attention_heads", 0, "a positive JSON integer"),  # was: ZeroDivisionError
        ("num_hidden_layers", -1, "a positive JSON integer"),
        ("vocab_size", True, "a positive JSON integer"),
        ("rms_norm_eps", "abc", "a JSON number"),  # was: ValueError from float()
        ("rope_theta", "1e4", "a JSON number"),
        ("rope_theta", False, "a JSON number"),
        ("model_type", ["llama"], "a JSON string"),  # was: TypeError, unhashable list
        ("hidden_act", {"name": "silu"}, "a JSON string"),
        ("_name_or_path", 7, "a JSON string"),
    ],
)
def test_each_field_has_one_json_type(tmp_path, field, value, expected):
    path = write(tmp_path, **{field: value})
    with pytest.raises(LLMCalcError) as error:
        load_config(str(path))
    message = str(error.value)
    assert f"field {field!r} = {value!r}" in message and f"expected {expected}" in message


def test_every_field_read_has_a_type():
    import inspect
    import re

    from llmcalc.config import hf, hf_gpt, hf_llama

    source = "".join(inspect.getsource(module) for module in (hf, hf_gpt, hf_llama))
    read = set(re.findall(r'f\.(?:need|get|has|activation|refuse)\(\s*"(\w+)"', source))
    read |= set(re.findall(r'f\.need\("\w+", "(\w+)"\)', source))
    for names in re.findall(r'(?:theta|fraction)=\("(\w+)", "(\w+)"\)', source):
        read |= set(names)
    assert "rotary_pct" in read and "clip_qkv" in read
    assert read - set(FIELD_TYPES) == set()


def test_a_json_number_is_read_as_a_float_and_ints_stay_ints(tmp_path):
    cfg = load_config(str(write(tmp_path, rms_norm_eps=1, rope_theta=500000)))
    assert cfg.norm_eps == 1.0 and cfg.rope_theta == 500000.0 and cfg.d_model == 32


def _warnings(capsys, path):
    load_config(str(path))
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning:")]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (dict(attention_chunk_size=8192), "attention_chunk_size"),  # Llama 4: not modelled yet
        (dict(num_local_experts=8, num_experts_per_tok=2), "num_local_experts"),
        (dict(layer_types=["sliding_attention", "full_attention"]), "layer_types"),
    ],
)
def test_unmodelled_fields_that_change_a_figure_are_named(tmp_path, capsys, changes, field):
    found = _warnings(capsys, write(tmp_path, **changes))
    assert any(f"field {field!r}" in line and "is not modelled" in line for line in found), found


@pytest.mark.parametrize(
    "changes",
    [
        dict(model_type="mistral", sliding_window=None),  # Mistral 7B v0.2+: no window
        dict(model_type="qwen2", sliding_window=131072, use_sliding_window=False),  # Qwen2.5
        dict(rope_scaling={"type": "linear", "factor": 2.0}),  # changes no count
        dict(layer_types=["full_attention", "full_attention"]),
        dict(pretraining_tp=1, attention_dropout=0.0, torch_dtype="bfloat16"),
    ],
)
def test_fields_that_are_off_or_change_no_figure_are_quiet(tmp_path, capsys, changes):
    assert _warnings(capsys, write(tmp_path, **changes)) == []


@pytest.mark.parametrize(
    "changes",
    [
        dict(model_type="mistral", sliding_window=4096),
        dict(model_type="qwen2", sliding_window=4096, use_sliding_window=True, max_window_layers=0),
    ],
)
def test_windows_the_family_maps_are_read_not_warned(tmp_path, capsys, changes):
    path = write(tmp_path, **changes)
    assert _warnings(capsys, path) == []
    assert load_config(str(path)).sliding_window == 4096


def test_the_warning_goes_to_stderr_and_the_answer_to_stdout(tmp_path, runner):
    path = write(tmp_path, attention_chunk_size=8192)
    result = runner.invoke(app, ["memory", str(path), "--json"])
    assert result.exit_code == 0
    json.loads(result.stdout)
    assert result.stderr.startswith("Warning: ") and "attention_chunk_size" in result.stderr
    sweep = runner.invoke(app, ["sweep", str(path), "--vary", "n_layers=1,2,3", "--json"])
    assert sweep.stderr.count("Warning:") == 1  # read once, not once a point


def test_a_json_file_is_named_by_its_stem_a_config_json_by_its_folder(tmp_path, runner):
    paths = [str(write(tmp_path / "hf", f"m{i}.json")) for i in range(3)]
    paths.append(str(write(tmp_path / "tiny-llama")))
    result = runner.invoke(app, ["compare", *paths, "--json"])
    assert result.exit_code == 0, result.stderr
    assert list(json.loads(result.stdout)["models"]) == ["m0", "m1", "m2", "tiny-llama"]
    named = write(tmp_path / "x", "y.json", _name_or_path="org/model")
    assert load_config(str(named)).name == "org/model"


def test_falcon_with_alibi_states_no_rope_theta(tmp_path):
    path = write(
        tmp_path,
        model_type="falcon",
        intermediate_size=...,
        alibi=True,
        new_decoder_architecture=False,
        multi_query=True,
    )
    cfg = load_config(str(path))
    assert cfg.position == "alibi" and "rope_theta" not in cfg.to_dict()


def test_falcon_with_one_norm_in_parallel_attention_shares_it(tmp_path):
    base = dict(model_type="falcon", intermediate_size=..., new_decoder_architecture=True)
    two = load_config(str(write(tmp_path / "a", **base)))
    one = load_config(str(write(tmp_path / "b", **base, num_ln_in_parallel_attn=1)))
    assert (two.block, one.block) == ("parallel", "parallel_shared_norm")
