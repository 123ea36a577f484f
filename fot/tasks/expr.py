"""A safe parser for arithmetic in model output: + - * / and parentheses over exact rationals.

Model output is data, never code: no `eval`. A recursive-descent parser over a fixed grammar

    expr   := term (('+' | '-') term)*
    term   := factor (('*' | '/') factor)*
    factor := NUMBER | '(' expr ')' | '-' factor

returns the value as a Fraction and the numbers in the order they appear (Game of 24 checks that
each given number is used exactly once). `from_latex` first turns the LaTeX a model writes
(\\times, \\cdot, \\div, \\frac{a}{b}, \\left( \\right)) into that grammar; anything else
(powers, factorials, roots, mixed numbers, superscripts) is not in the grammar and is rejected,
never read as a prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|(.))")
MAX_LEN = 500
MAX_DIGITS = 30  # a longer number in model output is refused (and never reaches int(), which caps at 4,300 digits)


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
            if len(num) > MAX_DIGITS:
                raise ExprError(f"number with more than {MAX_DIGITS} digits")
            out.append(num)
        elif op.strip():
            if op not in "+-*/()":
                raise ExprError(f"unexpected character {op!r}")
            out.append(op)
    return out


_FRAC = re.compile(r"\\[dt]?frac\s*\{")


def _braced(text: str, i: int) -> int:
    """Index just past the brace group that opens at text[i] == '{' (ExprError if unbalanced)."""
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return j + 1
    raise ExprError("unbalanced braces")


def from_latex(text: str) -> str:
    """LaTeX arithmetic as plain arithmetic: \\frac{a}{b} -> ((a)/(b)), \\times and \\cdot -> *, \\div -> /."""
    if len(text) > MAX_LEN:
        raise ExprError("expression too long")
    s = text.replace("$", "").replace("\\left", "").replace("\\right", "").replace("\\,", " ").replace("\\ ", " ")
    s = re.sub(r"\\(?:times|cdot|ast)", "*", s).replace("\\div", "/")
    while (m := _FRAC.search(s)) is not None:
        num_end = _braced(s, m.end() - 1)
        rest = s[num_end:].lstrip()
        if not rest.startswith("{"):
            raise ExprError("\\frac without a denominator")
        off = len(s) - len(rest)
        den_end = _braced(s, off)
        s = s[:m.start()] + f"(({s[m.end():num_end - 1]})/({s[off + 1:den_end - 1]}))" + s[den_end:]
    return s.replace("{", "(").replace("}", ")")


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
