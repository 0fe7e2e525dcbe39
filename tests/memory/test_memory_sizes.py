"""Training memory at any size a config states: parameter sizes by group (one block × n_layers,
never a list n_layers long), and a CPU run larger than this process may use refused before the
trace, not after it."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcalc.cli import app
from llmcalc.config.presets import load_config
from llmcalc.config.schema import ModelConfig
from llmcalc.memory.formula import training_memory
from llmcalc.memory.parameters import conversion_excess, parameter_groups, parameter_sizes
from llmcalc.units import format_bytes
from tests.conftest import tiny


def flat_excess(sizes):
    """The definition: max over tensors of 2·n_i minus twice the elements after it."""
    return max(2 * size - 2 * sum(sizes[i + 1 :]) for i, size in enumerate(sizes))


@settings(max_examples=60, deadline=None)
@given(
    n_layers=st.integers(1, 6),
    tied=st.booleans(),
    head_bias=st.booleans(),
    position=st.sampled_from(["rope", "learned"]),
    norm=st.sampled_from(["rmsnorm", "layernorm"]),
    norm_position=st.sampled_from(["pre", "post", "sandwich", "output"]),
    vocab=st.integers(1, 300),
)
def test_grouped_sizes_give_the_flat_list_and_its_worst_conversion(
    n_layers, tied, head_bias, position, norm, norm_position, vocab
):
    cfg = ModelConfig.from_dict(
        tiny(
            n_layers=n_layers,
            tie_embeddings=tied,
            lm_head_bias=head_bias,
            position=position,
            norm=norm,
            norm_position=norm_position,
            vocab_size=vocab,
        )
    )
    sizes = parameter_sizes(cfg)
    assert len(sizes) == sum(len(group) * times for group, times in parameter_groups(cfg))
    assert conversion_excess(parameter_groups(cfg)) == flat_excess(sizes)


def test_a_billion_layers_is_exact_and_instant():
    start = time.perf_counter()
    small = training_memory(ModelConfig.from_dict(tiny(n_layers=2)), 1, 16, "mixed")
    big = training_memory(ModelConfig.from_dict(tiny(n_layers=10**9)), 1, 16, "mixed")
    assert time.perf_counter() - start < 0.5
    per_layer = (
        small.weights
        - training_memory(ModelConfig.from_dict(tiny(n_layers=1)), 1, 16, "mixed").weights
    )
    assert big.weights == small.weights + (10**9 - 2) * per_layer


def test_a_cpu_measure_past_free_memory_is_refused_before_any_trace(runner, monkeypatch):
    def no_trace(*args, **kwargs):
        raise AssertionError("traced before the refusal")

    monkeypatch.setattr("llmcalc.memory.trace.trace_training", no_trace)
    start = time.perf_counter()
    result = runner.invoke(app, ["memory", "llama-3.1-405b", "--measure", "--measure-on", "cpu"])
    assert result.exit_code == 2 and result.stdout == "", result.output
    cfg = load_config("llama-3.1-405b")
    peak = training_memory(cfg, 1, cfg.max_seq_len, precision="mixed").peak
    assert result.stderr.startswith(
        f"Error: --measure on cpu: the predicted peak is {format_bytes(peak)} ({peak:,} bytes)"
    )
    assert "is free (" in result.stderr and result.stderr.count("\n") == 1
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("limit", ["available RAM", "cgroup limit", "address-space limit"])
def test_the_refusal_names_the_limit_that_decides(runner, monkeypatch, limit):
    monkeypatch.setattr("llmcalc.memory.analysis.free_in_words", lambda device: (2**20, limit))
    result = runner.invoke(app, ["memory", "gpt2", "--measure", "--measure-on", "cpu"])
    assert (
        result.exit_code == 2 and f"1.00 MiB (1,048,576 bytes) is free ({limit})" in result.stderr
    )
