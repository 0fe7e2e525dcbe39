"""A field's value checked against its declared kind (int, float, bool, str, list[int]), with the
error a user reads when it is not. No torch here."""

from __future__ import annotations

import difflib
import re
from typing import Any

from llmcalc.errors import LLMCalcError, quote

_YAML_EXPONENT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


def likeness(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def check_type(
    where: str, name: str, value: Any, kind: str, choices: tuple[str, ...] | None, optional: bool
) -> Any:
    """The value if it is of the field's kind (ints are accepted for floats), else an error.
    `choices`: the allowed strings of an enum field; `optional`: None is allowed."""
    if value is None and optional:
        return None
    if kind == "float" and isinstance(value, str) and _YAML_EXPONENT.fullmatch(value):
        value = float(value)  # YAML 1.1 reads 1e-5 (an exponent, no dot) as a string
    integer = isinstance(value, int) and not isinstance(value, bool)
    ok = {
        "int": integer,
        "list[int]": isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        expected = {
            "int": "an integer",
            "list[int]": "a list of integers",
            "float": "a number",
            "bool": "true or false",
        }.get(kind, "a string")
        if choices is not None:
            expected = f"one of {', '.join(choices)}"
        if kind == "list[int]" and isinstance(value, str):
            expected += " in brackets, e.g. [0,2]"
        raise LLMCalcError(
            f"{where}: field {name!r} = {quote(value)} ({type(value).__name__}): expected {expected}"
        )
    if kind == "float" and isinstance(value, int) and abs(value) > 2**1023:
        raise LLMCalcError(f"{where}: field {name!r} = {quote(value)}: must be a finite number")
    return float(value) if kind == "float" else value
