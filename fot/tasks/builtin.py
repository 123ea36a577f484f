"""The built-in tasks: arith, gsm8k, math, game24, aime, generic."""

from __future__ import annotations

import random
import re
import string
from fractions import Fraction

from .. import expr
from .base import extract_boxed, extract_number, numbers_equal

BOXED_INSTRUCTIONS = "Finish with the final answer written as \\boxed{ANSWER}."


class _Numeric:
    name = "numeric"
    instructions = "Finish with the final answer as a number written as \\boxed{ANSWER}."

    def extract(self, text: str) -> str | None:
        return extract_number(text)

    def equivalent(self, a: str, b: str, question: str = "") -> bool:
        return numbers_equal(a, b)

    def reference(self, ref: str) -> str:
        return ref

    def grade(self, answer: str | None, reference: str, question: str = "") -> bool:
        return numbers_equal(answer, extract_number(self.reference(reference)) or self.reference(reference))

    def rule_check(self, question: str, text: str) -> bool | None:
        return None


class Arith(_Numeric):
    """Generated integer arithmetic (`python -m fot.tasks.arith` writes a problem file)."""

    name = "arith"
    PATTERN = re.compile(r"^\s*What is (-?\d+(?:\s*[-+*]\s*-?\d+)+)\s*\?\s*$")

    @classmethod
    def looks_like(cls, q: str) -> bool:
        return bool(cls.PATTERN.match(q))

    @staticmethod
    def generate(n: int, seed: int = 0, ops: str = "+-*", digits: int = 1, terms: int = 2) -> list[dict]:
        """`n` problems 'What is a op b?' with references, reproducible from `seed`."""
        rng = random.Random(seed)
        lo, hi = (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
        out, seen = [], set()
        attempts = 0
        while len(out) < n and attempts < 100 * n:
            attempts += 1
            nums = [rng.randint(lo, hi) for _ in range(terms)]
            chosen = [rng.choice(ops) for _ in range(terms - 1)]
            text = " ".join(str(nums[0]) if i == 0 else f"{chosen[i - 1]} {nums[i]}" for i in range(terms))
            if text in seen:
                continue
            seen.add(text)
            value = expr.parse(text).value
            out.append({"id": f"arith-{len(out) + 1:03d}", "question": f"What is {text}?", "answer": str(value)})
        return out


class GSM8K(_Numeric):
    name = "gsm8k"

    def reference(self, ref: str) -> str:
        return ref.split("####")[-1].strip() if "####" in ref else ref


class AIME(_Numeric):
    name = "aime"
    instructions = "The answer is an integer from 0 to 999. Finish with it written as \\boxed{ANSWER}."

    def extract(self, text: str) -> str | None:
        n = extract_number(text)
        if n is None or "/" in n:
            return None
        v = int(n)
        return str(v) if 0 <= v <= 999 else None


class MathTask:
    """MATH (boxed answers), compared with the `math-verify` package."""

    name = "math"
    instructions = BOXED_INSTRUCTIONS

    def extract(self, text: str) -> str | None:
        b = extract_boxed(text)
        if b is not None:
            return b
        n = extract_number(text)
        return n

    def _parse(self, s: str):
        from math_verify import parse

        s = s if "$" in s or "\\boxed" in s else f"${s}$"
        return parse(s, parsing_timeout=2)

    def equivalent(self, a: str, b: str, question: str = "") -> bool:
        if a.strip() == b.strip():
            return True
        from math_verify import verify

        try:
            return bool(verify(self._parse(a), self._parse(b), timeout_seconds=2))
        except Exception:
            return False

    def grade(self, answer: str | None, reference: str, question: str = "") -> bool:
        if answer is None:
            return False
        return self.equivalent(reference, answer)

    def rule_check(self, question: str, text: str) -> bool | None:
        return None


class Game24:
    """Game of 24: combine the four numbers with + - * / (each once) to make 24. Exact arithmetic.

    The rule check is complete: whether an expression solves the puzzle needs no reference, so it
    is both the verifier in the search and the grader after it.
    """

    name = "game24"
    instructions = ("Use each of the given numbers exactly once with + - * / and parentheses to make 24. "
                    "Finish with the expression only, written as \\boxed{EXPRESSION}, e.g. \\boxed{(1 + 3) * 6}.")

    @staticmethod
    def looks_like(q: str) -> bool:
        return bool(re.fullmatch(r"\s*\d+(\s+\d+){3}\s*", q))

    @staticmethod
    def numbers(question: str) -> list[Fraction]:
        return [Fraction(x) for x in re.findall(r"\d+", question)[:4]]

    def extract(self, text: str) -> str | None:
        candidates = []
        b = extract_boxed(text)
        if b is not None:
            candidates.append(b)
        for line in reversed(text.splitlines()):
            m = re.findall(r"[\d\s+\-*/×÷()]+", line)
            candidates += [c for c in m if re.search(r"\d\s*[-+*/×÷]", c)]
        for c in candidates:
            c = c.split("=")[0].strip()
            try:
                expr.parse(c)
                return c
            except expr.ExprError:
                continue
        return None

    def solves(self, expression: str | None, question: str) -> bool:
        if expression is None:
            return False
        try:
            p = expr.parse(expression.split("=")[0])
        except expr.ExprError:
            return False
        return p.value == 24 and sorted(p.numbers) == sorted(self.numbers(question))

    def equivalent(self, a: str, b: str, question: str = "") -> bool:
        sa, sb = self.solves(a, question), self.solves(b, question)
        if sa or sb:
            return sa and sb  # any two solutions are the same answer: "it can be done this way"
        return "".join(a.split()) == "".join(b.split())

    def grade(self, answer: str | None, reference: str | None = None, question: str = "") -> bool:
        return self.solves(answer, question)

    def rule_check(self, question: str, text: str) -> bool | None:
        return self.solves(self.extract(text), question)


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


class Generic:
    """Free text: normalised exact match (case, punctuation, articles and spacing ignored)."""

    name = "generic"
    instructions = BOXED_INSTRUCTIONS

    def extract(self, text: str) -> str | None:
        b = extract_boxed(text)
        if b is not None:
            return b
        m = re.findall(r"(?:final answer|the answer)\s*(?:is|:)\s*([^\n]+)", text, re.I)
        if m:
            return m[-1].strip().rstrip(".")
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else None

    def equivalent(self, a: str, b: str, question: str = "") -> bool:
        return normalize_text(a) == normalize_text(b)

    def grade(self, answer: str | None, reference: str, question: str = "") -> bool:
        return answer is not None and self.equivalent(answer, reference)

    def rule_check(self, question: str, text: str) -> bool | None:
        return None
