"""Fuzzing the CLI in-process: generated preset YAML and config.json files (valid and invalid
types, sizes from 0 to 2**70, missing, unknown and conflicting fields, duplicate keys, cut-off
text) and generated option values. Every run ends with exit 0, or exit 1 or 2 with exactly one
`Error:` line on stderr and nothing on stdout; never a traceback; and within a time bound."""

import json
import tempfile
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmcalc.cli import app
from llmcalc.config.hf import MODEL_TYPES
from llmcalc.config.hf_fields import FIELD_TYPES, UNMODELLED
from llmcalc.config.schema import ENUMS, ModelConfig

RUNNER = CliRunner()
SECONDS = 5.0  # per run; the slowest generated run takes well under a second
FOLDER = Path(tempfile.mkdtemp(prefix="llmcalc-fuzz-"))
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a failure here is reproducible
)

SIZES = st.one_of(  # 0 to 2**70; most of them valid sizes
    st.integers(1, 64),
    st.integers(0, 2**70),
    st.sampled_from([0, 1, 2**31, 2**53 + 1, 2**62, 2**63, 10**30, 10**30 + 1, 2**70]),
)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),  # NaN and infinities included
    st.text(max_size=12),
    st.lists(st.integers(-2, 9), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.integers(-(2**70), -1),
)


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 4) -> st.SearchStrategy:
    """`good` `odds` times in odds + 1 (so that most runs get past the first check), else `bad`."""
    return st.integers(0, odds).flatmap(lambda i: good if i < odds else bad)


KINDS = {f: str(t).split("|")[0].strip() for f, t in ModelConfig.__annotations__.items()}
NAMES = [*ModelConfig.field_names(), "n_layer", "bogus"]


def _value(name: str) -> st.SearchStrategy:
    kind = KINDS.get(name, "junk")
    if name in ENUMS:
        return st.one_of(st.sampled_from(ENUMS[name]), JUNK)
    good = {
        "int": SIZES,
        "float": st.one_of(st.floats(0, 10, allow_nan=False), st.integers(0, 2**70)),
        "bool": st.booleans(),
        "str": st.text(max_size=20),
    }.get(kind, st.nothing())
    return mostly(good, JUNK)


@st.composite
def preset_text(draw: st.DrawFn) -> str:
    data = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=16)
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=4, unique=True)):
        data[name] = draw(_value(name))
    if draw(st.integers(0, 9)) == 9:  # a required field missing
        data.pop(draw(st.sampled_from(["vocab_size", "d_model", "n_layers"])), None)
    if draw(st.integers(0, 5)) == 5:  # a conflict: a rope field under another position
        data.update(position=draw(st.sampled_from(["learned", "alibi", "none"])), rope_theta=1e4)
    text = yaml.safe_dump(data, allow_unicode=True)
    mutations = st.sampled_from(["duplicate", "list key", "cut", "append"])
    mutation = draw(mostly(st.just("none"), mutations, 5))
    if mutation == "duplicate":
        text += f"{draw(st.sampled_from(sorted(data) or ['d_model']))}: 8\n"
    elif mutation == "list key":
        text += "[a, b]: 1\n"
    elif mutation == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif mutation == "append":
        text += draw(st.text(max_size=20))
    return text


HF_BASE = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=16,
    n_embd=32,
    n_layer=2,
    n_head=4,
    n_positions=16,
)
HF_NAMES = [*FIELD_TYPES, *UNMODELLED, "use_sliding_window", "rope_scaling", "bogus"]


def _json_value(name: str) -> st.SearchStrategy:
    good = {
        "size": SIZES,
        "number": st.floats(0, 10, allow_nan=False),
        "bool": st.booleans(),
        "string": st.sampled_from(["silu", "gelu", "gelu_new", "relu", "x"]),
    }.get(FIELD_TYPES.get(name, ""), st.integers(0, 8))
    return mostly(good, JUNK)


@st.composite
def config_json_text(draw: st.DrawFn) -> str:
    data: dict = {"model_type": draw(mostly(st.sampled_from(list(MODEL_TYPES)), JUNK, 8))}
    data.update(HF_BASE)
    for name in draw(st.lists(st.sampled_from(HF_NAMES), max_size=4, unique=True)):
        data[name] = draw(_json_value(name))
    if draw(st.integers(0, 9)) == 9:  # a required field missing
        data.pop(draw(st.sampled_from(list(HF_BASE))), None)
    text = json.dumps(data)  # NaN and Infinity are written as such: llmcalc refuses them
    if draw(st.integers(0, 8)) == 8:
        text = text[: draw(st.integers(0, len(text)))]
    return text


NUMBERS = mostly(
    st.one_of(st.integers(1, 64), SIZES).map(str),
    st.sampled_from(["abc", "1e3", "", "-1", "0", "9" * 400]),
)
QUANTITIES = mostly(
    st.sampled_from(["80GiB", "1.5TiB", "15T", "1e30", "2_000", ".5K", "300B", "141 GiB"]),
    st.one_of(
        st.sampled_from(["1e999999999GiB", "inf", "nan", "-1GB", "0", "1e-999999999", "1e31"]),
        st.sampled_from(["7" * 70, "1e999999999"]),
        st.text(max_size=10),
    ),
    3,
)


@st.composite
def closed_form_command(draw: st.DrawFn, path: str) -> list[str]:
    """A command that never builds a model: any size is fair."""
    kind = draw(st.sampled_from(["show", "memory", "flops", "compare", "sweep"]))
    if kind == "show":
        return ["show", path]
    if kind == "compare":
        return ["compare", path, draw(st.sampled_from([path, "gpt2"])), "--json"]
    if kind == "sweep":
        fields = st.sampled_from(["n_layers", "d_model", "seq", "batch", "n_kv_heads"])
        field = draw(mostly(fields, st.sampled_from(["name", "bogus", ""])))
        value = mostly(st.one_of(st.integers(1, 64), SIZES).map(str), st.text(max_size=4))
        values = draw(st.lists(value, min_size=draw(mostly(st.just(1), st.just(0))), max_size=3))
        return ["sweep", path, "--vary", f"{field}={','.join(values)}", "--json"]
    args = [kind, path]
    for option in ("--seq", "--batch"):
        if draw(st.booleans()):
            args += [option, draw(NUMBERS)]
    if kind == "memory":
        if draw(st.booleans()):
            args += ["--gpu-mem", draw(QUANTITIES)]
        if draw(st.booleans()):
            args += ["--gqa", draw(NUMBERS)]
    else:
        args += ["--no-count"]
        if draw(st.booleans()):
            args += ["--tokens", draw(QUANTITIES), "--gpu", draw(st.sampled_from(["H100", "x"]))]
    return [*args, draw(st.sampled_from(["--json", "--format=csv", "--format=markdown"]))]


def run_and_check(args: list[str]) -> int:
    start = time.perf_counter()
    result = RUNNER.invoke(app, args)
    elapsed = time.perf_counter() - start
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        repr(result.exception),
    )
    assert "Traceback" not in result.stderr, args
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    if result.exit_code == 0:
        assert errors == [] and result.stdout, (args, result.stderr)
    else:
        assert result.exit_code in (1, 2), (args, result.exit_code)
        assert len(errors) == 1 and result.stdout == "", (args, result.stdout, result.stderr)
        assert len(errors[0]) < 1000, errors[0][:300]  # values are quoted by their start
    assert elapsed < SECONDS, (args, elapsed)
    return result.exit_code


def _write(name: str, text: str) -> str:
    path = FOLDER / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@settings(FUZZ, max_examples=400)
@given(data=st.data())
def test_generated_presets_through_the_closed_form_commands(data):
    path = _write("preset.yaml", data.draw(preset_text()))
    run_and_check(data.draw(closed_form_command(path)))


@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_generated_config_json_through_the_closed_form_commands(data):
    path = _write("config.json", data.draw(config_json_text()))
    run_and_check(data.draw(closed_form_command(path)))


SMALL = st.one_of(st.integers(1, 48), st.sampled_from([0, 2**63, 10**12]), JUNK)


@st.composite
def small_preset_text(draw: st.DrawFn) -> str:
    """Configs the real model is built from: small sizes (plus a few torch cannot hold)."""
    data = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=16)
    for name in draw(st.lists(st.sampled_from(["vocab_size", "d_model", "n_heads", "d_ff"]))):
        data[name] = draw(SMALL)
    data["n_layers"] = draw(st.one_of(st.integers(1, 3), st.just(10**9)))
    for name in draw(st.lists(st.sampled_from(sorted(ENUMS)), max_size=2, unique=True)):
        data[name] = draw(_value(name))
    return yaml.safe_dump(data)


@settings(FUZZ, max_examples=24)
@given(text=small_preset_text(), command=st.sampled_from(["params", "flops"]))
def test_generated_small_presets_build_count_or_refuse(text, command):
    path = _write("small.yaml", text)
    args = [command, path, "--json"] + (
        ["--seq", "8", "--batch", "2"] if command == "flops" else []
    )
    run_and_check(args)
