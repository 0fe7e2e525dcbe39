"""Sizes and the arithmetic on them that config/schema.py shares with the rest of llmcalc: the
10**30 bound, int(n · factor) as the reference code computes it, the LLaMA d_ff rule, and the value
checks of size and number fields. No torch here."""

from __future__ import annotations

import math
from fractions import Fraction

from llmcalc.errors import LLMCalcError, quote

MAX_SIZE = 10**30
"""The largest size a config can state (a googol of tokens would be absurd; 10**30 is already
past anything built by ~10**17). Below it every closed form is exact and every product the reports
print stays inside a float's range; the commands that build tensors have their own, smaller
limits (model/limits.py)."""


def llama_d_ff(d_model: int, ffn_multiplier: float | None, multiple_of: int) -> int:
    """The LLaMA FeedForward sizing (facebookresearch/llama, model.py, FeedForward.__init__):
    hidden = int(2 * 4d / 3); hidden = int(ffn_multiplier * hidden); round up to multiple_of."""
    hidden = (8 * d_model) // 3  # == int(2 * (4 * d_model) / 3) for every positive int
    if ffn_multiplier is not None:
        hidden = scaled(hidden, ffn_multiplier)
    return multiple_of * -(-hidden // multiple_of)


def scaled(n: int, factor: float) -> int:
    """int(n * factor) as Python computes it in floating point (as the reference code does: HF's
    rotary dims, LLaMA's ffn_dim_multiplier), and exactly where that is past a float's range."""
    if n < 2**53:
        product = n * factor
        if math.isfinite(product):
            return int(product)
    return math.floor(Fraction(factor) * n)


def check_size(where: str, name: str, value: int, least: int = 1) -> None:
    """A size field: at least `least` (1: a positive integer; 0: a count that may be none) and at
    most 10**30."""
    if value < least:
        kind = "a positive integer" if least == 1 else f"an integer of at least {least}"
        raise LLMCalcError(f"{where}: field {name!r} = {quote(value)}: must be {kind}")
    if value > MAX_SIZE:
        raise LLMCalcError(
            f"{where}: field {name!r} = {quote(value)}: at most 10**30 "
            f"({MAX_SIZE:,}), far past any model"
        )


def check_positive_number(where: str, name: str, value: float | None) -> None:
    """A number field (None where it is optional and not given): positive and finite."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise LLMCalcError(
            f"{where}: field {name!r} = {quote(value)}: must be a positive finite number"
        )
