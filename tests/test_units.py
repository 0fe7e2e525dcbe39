"""Quantities typed on the command line, parsed exactly."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmcalc.errors import LLMCalcError
from llmcalc.units import parse_count, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15T", 15 * 10**12),
        ("15t", 15 * 10**12),
        ("1.5e13", 15 * 10**12),
        ("300B", 300 * 10**9),
        ("2.5G", 25 * 10**8),
        ("2_000_000", 2 * 10**6),
        ("7", 7),
        ("0.5K", 500),
        ("1.23456789012345678e17", 123456789012345678),  # beyond a float's 53 bits
    ],
)
def test_counts(text, expected):
    assert parse_count("--tokens", text) == expected


@given(st.integers(min_value=1, max_value=10**15), st.integers(min_value=0, max_value=15))
def test_any_whole_number_and_exponent_is_exact(n, exponent):
    assert parse_count("--tokens", str(n)) == n
    assert parse_count("--tokens", f"{n}e{exponent}") == n * 10**exponent


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.5", "expected a whole number"),
        ("abc", "expected a whole number"),
        ("15X", "expected a whole number"),
        ("-5", "expected a whole number"),
        ("0", "must be positive"),
        ("0T", "must be positive"),
    ],
)
def test_bad_counts(text, message):
    with pytest.raises(LLMCalcError, match=message) as error:
        parse_count("--tokens", text)
    assert f"--tokens {text!r}" in str(error.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80GiB", 80 * 2**30),
        ("80GB", 80 * 10**9),
        ("81920MiB", 80 * 2**30),
        ("1.5KiB", 1536),
        ("8e10", 8 * 10**10),
        ("141 GiB", 141 * 2**30),
    ],
)
def test_sizes(text, expected):
    assert parse_size("--gpu-mem", text) == expected


@pytest.mark.parametrize(("text", "message"), [("80Gb/s", "expected a size"), ("0.4B", "positive")])
def test_bad_sizes(text, message):
    with pytest.raises(LLMCalcError, match=message):
        parse_size("--gpu-mem", text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e999999999", "absurd value; at most 1e30"),
        ("1e31", "absurd value"),
        ("100000000000000000000e11", "absurd value"),
        ("1e-999999999", "absurd value"),
        ("inf", "must be a finite number"),
        ("-Infinity", "must be a finite number"),
        ("nan", "must be a finite number"),
        ("9" * 5000, "too long for a number"),
    ],
)
def test_non_finite_and_absurd_values_are_refused_at_once(text, message):
    import time

    start = time.perf_counter()
    for parse in (parse_count, parse_size):
        with pytest.raises(LLMCalcError, match=message) as error:
            parse("--tokens", text)
        assert len(str(error.value)) < 200
    assert time.perf_counter() - start < 0.5


def test_the_largest_value_is_exact():
    assert parse_count("--tokens", "1e30") == 10**30
    assert parse_size("--gpu-mem", "1000000000000000000TB") == 10**30
