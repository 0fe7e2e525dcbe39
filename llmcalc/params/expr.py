"""A tiny expression type: the symbolic form, the substituted form and the exact integer of a
closed form, built from the same factors, so what is printed is what is summed. No torch here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Expr:
    sym: str
    num: str
    value: int

    def __add__(self, other: Expr) -> Expr:
        if self.value == 0 and self.sym == "0":
            return other
        return Expr(
            f"{self.sym} + {other.sym}", f"{self.num} + {other.num}", self.value + other.value
        )

    def __mul__(self, other: Expr) -> Expr:
        return Expr(
            f"{_wrap(self.sym)}·{_wrap(other.sym)}",
            f"{_wrap(self.num)}·{_wrap(other.num)}",
            self.value * other.value,
        )


ZERO = Expr("0", "0", 0)


def _wrap(text: str) -> str:
    return f"({text})" if " + " in text else text


def grouped(expr: Expr) -> Expr:
    """The same expression, parenthesised as one factor: d·(h·d_h)."""
    return Expr(f"({expr.sym})", f"({expr.num})", expr.value)


def const(n: int) -> Expr:
    return Expr(str(n), str(n), n)


def sum_exprs(exprs: list[Expr]) -> Expr:
    total = ZERO
    for expr in exprs:
        if expr.value or expr.sym != "0":
            total = total + expr
    return total
