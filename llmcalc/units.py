"""Quantities typed on the command line: '80GiB' of memory, '15T' training tokens. Exact
arithmetic (Fraction), so '1.5e13' is 15,000,000,000,000 and not a float's neighbour. And bytes
printed in binary units."""

from __future__ import annotations

import re
from fractions import Fraction

from llmcalc.errors import LLMCalcError, quote

SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
# Counts as papers write them: "300B tokens", "15T tokens" (decimal; B = billion).
COUNT_UNITS = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}

_NUMBER = re.compile(r"\s*([0-9][0-9_]*\.?[0-9_]*|\.[0-9]+)(?:e([+-]?[0-9]+))?\s*([a-zA-Z]*)\s*")
MAX_QUANTITY = 10**30  # past any real memory or token count; bounds the work of parsing too
_NON_FINITE = re.compile(r"\s*[+-]?(inf|infinity|nan)\s*([a-zA-Z]*)\s*", re.IGNORECASE)


def _parse(option: str, text: str, units: dict[str, int]) -> Fraction | None:
    """The exact value of `text` in `units`, None if it is not a number with one of them. Absurd
    values are refused before any big number is built (10 ** 999999999 would never finish)."""
    if _NON_FINITE.fullmatch(text):
        raise LLMCalcError(f"{option} {quote(text)}: must be a finite number")
    if len(text) > 64:
        raise LLMCalcError(f"{option} {quote(text)}: too long for a number (at most 64 characters)")
    match = _NUMBER.fullmatch(text.lower())
    if match is None or match.group(3) not in units:
        return None
    mantissa, exponent, unit = match.groups()
    whole_digits = len(mantissa.split(".")[0].replace("_", "").lstrip("0"))
    power = int(exponent or 0)
    if whole_digits + power + len(str(units[unit])) - 1 > 31 or power < -40:
        raise LLMCalcError(f"{option} {quote(text)}: absurd value; at most 1e30")
    value = Fraction(mantissa.replace("_", "")) * Fraction(10) ** power * units[unit]
    if value > MAX_QUANTITY:
        raise LLMCalcError(f"{option} {quote(text)}: absurd value; at most 1e30")
    return value


def parse_size(option: str, text: str) -> int:
    """'80GiB', '80GB', '81920MiB', '8e10' -> bytes (positive; a fraction of a byte rounds down)."""
    value = _parse(option, text, SIZE_UNITS)
    if value is None:
        raise LLMCalcError(
            f"{option} {quote(text)}: expected a size such as 80GiB, 80GB or 81920MiB "
            "(units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
        )
    if int(value) <= 0:
        raise LLMCalcError(f"{option} {quote(text)}: must be positive")
    return int(value)


def parse_count(option: str, text: str) -> int:
    """'15T', '300B', '1.5e13', '2_000_000' -> a positive whole number."""
    value = _parse(option, text, COUNT_UNITS)
    if value is None or value.denominator != 1:
        raise LLMCalcError(
            f"{option} {quote(text)}: expected a whole number such as 2000000, 1.5e13, 300B or 15T "
            "(suffixes: K, M, B or G, T)"
        )
    if value <= 0:
        raise LLMCalcError(f"{option} {quote(text)}: must be positive")
    return int(value)


def format_bytes(n: int) -> str:
    """Binary units (DESIGN.md): 1 KiB = 1024 bytes; two decimals, rounded half up in exact
    integer arithmetic (a float would print wrong digits past 2**53)."""
    sign, n = ("-" if n < 0 else ""), abs(n)
    if n < 1024:
        return f"{sign}{n} B"
    power = 1
    while power < 4 and n >= 1024 ** (power + 1):
        power += 1
    scale = 1024**power
    hundredths = (200 * n + scale) // (2 * scale)
    return f"{sign}{hundredths // 100}.{hundredths % 100:02d} {('KiB', 'MiB', 'GiB', 'TiB')[power - 1]}"
