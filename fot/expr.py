"""A safe parser for arithmetic in model output: + - * / and parentheses over exact rationals.

Model output is data, never code: no `eval`. A recursive-descent parser over a fixed grammar

    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := NUMBER | '(' expr ')' | '-' factor

returns the value as a Fraction and the numbers in the order they appear (Game of 24 checks that
each given number is used exactly once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|(.))")
MAX_LEN = 500


class ExprError(ValueError):
    pass


@dataclass
class Parsed:
    value: Fraction
    numbers: list[Fraction]


def _tokens(text: str) -> list[str]:
    text = text.replace("×", "*").replace("x", "*").replace("X", "*").replace("÷", "/").replace("−", "-")
    out = []
    for num, op in TOKEN.findall(text):
        if num:
            out.append(num)
        elif op.strip():
            if op not in "+-*/()":
                raise ExprError(f"unexpected character {op!r}")
            out.append(op)
    return out


def parse(text: str) -> Parsed:
    """Parse and evaluate `text` exactly; raises ExprError on anything that is not plain arithmetic."""
    if len(text) > MAX_LEN:
        raise ExprError("expression too long")
    toks = _tokens(text)
    pos = 0
    numbers: list[Fraction] = []

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(toks):
            raise ExprError("unexpected end of expression")
        pos += 1
        return toks[pos - 1]

    def expr(depth: int) -> Fraction:
        if depth > 50:
            raise ExprError("nested too deeply")
        v = term(depth)
        while peek() in ("+", "-"):
            v = v + term(depth) if take() == "+" else v - term(depth)
        return v

    def term(depth: int) -> Fraction:
        v = factor(depth)
        while peek() in ("*", "/"):
            op = take()
            rhs = factor(depth)
            if op == "*":
                v = v * rhs
            else:
                if rhs == 0:
                    raise ExprError("division by zero")
                v = v / rhs
        return v

    def factor(depth: int) -> Fraction:
        t = take()
        if t == "(":
            v = expr(depth + 1)
            if take() != ")":
                raise ExprError("missing ')'")
            return v
        if t == "-":
            return -factor(depth + 1)
        if t[0].isdigit():
            f = Fraction(t)
            numbers.append(f)
            return f
        raise ExprError(f"unexpected {t!r}")

    if not toks:
        raise ExprError("empty expression")
    value = expr(0)
    if pos != len(toks):
        raise ExprError(f"unexpected {toks[pos]!r}")
    return Parsed(value, numbers)
