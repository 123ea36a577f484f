"""The built-in tasks: arith, gsm8k, math, game24, aime, generic."""

from __future__ import annotations

import random
import re
import string
from fractions import Fraction

from .. import expr
from .base import BaseTask, examined, extract_boxed, extract_number, numbers_equal

BOXED_INSTRUCTIONS = "Finish with the final answer written as \\boxed{ANSWER}."


class _Numeric(BaseTask):
    name = "numeric"
    instructions = "Finish with the final answer as a number written as \\boxed{ANSWER}."
    answer_max_tokens = 512  # completion cap of an answer or refine step (SearchConfig.answer_max_tokens overrides)
    exemplars: tuple[tuple[str, str], ...] = ()  # worked examples written for fot (never a benchmark's test items)

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
    answer_max_tokens = 256
    PATTERN = re.compile(r"^\s*What is (-?\d+(?:\s*[-+*]\s*-?\d+)+)\s*\?\s*$")
    TWO = re.compile(r"^(\s*What is )(-?\d+)\s*([-+*])\s*(\d+)(\s*\?\s*)$")
    exemplars = (
        ("What is 12 + 9?", "12 + 9 = 21. The answer is \\boxed{21}."),
        ("What is 7 * 8?", "7 * 8 = 56. The answer is \\boxed{56}."),
        ("What is 3 - 11?", "3 - 11 = -8, because 11 is 8 more than 3. The answer is \\boxed{-8}."),
        ("What is 6 * 0?", "Any number times 0 is 0. The answer is \\boxed{0}."),
    )

    @classmethod
    def looks_like(cls, q: str) -> bool:
        return bool(cls.PATTERN.match(q))

    def shuffle(self, question: str, rng: random.Random) -> str | None:
        """The operands in the other order: 'a + b' -> 'b + a', 'a * b' -> 'b * a', 'a - b' -> '-b + a'."""
        m = self.TWO.match(question)
        if m is None:
            return None
        head, a, op, b, tail = m.groups()
        if op == "-":
            return f"{head}-{b} + {a}{tail}"
        return None if a == b else f"{head}{b} {op} {a}{tail}"

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
    exemplars = (
        ("A baker makes 4 trays of 12 rolls. She sells 30 rolls and gives away 5. How many rolls are left?",
         "4 trays of 12 rolls is 4 * 12 = 48 rolls. She sells 30 and gives away 5, so 30 + 5 = 35 are gone. "
         "48 - 35 = 13 rolls are left. \\boxed{13}"),
        ("Tom reads 15 pages a day for 6 days, then 20 pages a day for 3 days. How many pages does he read?",
         "15 * 6 = 90 pages in the first 6 days, 20 * 3 = 60 pages in the next 3. 90 + 60 = 150. \\boxed{150}"),
        ("A shirt costs $25 and is on sale for 20% off. How much does it cost on sale?",
         "20% of $25 is 0.2 * 25 = $5. The sale price is 25 - 5 = $20. \\boxed{20}"),
    )

    def reference(self, ref: str) -> str:
        return ref.split("####")[-1].strip() if "####" in ref else ref


class AIME(_Numeric):
    name = "aime"
    answer_max_tokens = 2048  # olympiad solutions run long; a cut-off one has no final answer to vote with
    exemplars = (
        ("Find the remainder when 7^100 is divided by 9.",
         "Powers of 7 mod 9 cycle: 7, 4, 1 (period 3). 100 = 3 * 33 + 1, so 7^100 = 7^1 = 7 mod 9. \\boxed{7}"),
    )
    instructions = "The answer is an integer from 0 to 999. Finish with it written as \\boxed{ANSWER}."

    def extract(self, text: str) -> str | None:
        n = extract_number(text)
        if n is None or "/" in n:
            return None
        v = int(n)
        return str(v) if 0 <= v <= 999 else None


class MathTask(BaseTask):
    """MATH (boxed answers), compared with the `math-verify` package."""

    name = "math"
    instructions = BOXED_INSTRUCTIONS
    answer_max_tokens = 1536  # MATH solutions often pass 512 tokens; a cut-off one has no final answer to vote with
    exemplars = (
        ("Solve for x: 3x - 7 = 11.", "Add 7 to both sides: 3x = 18. Divide by 3: x = 6. \\boxed{6}"),
        ("What is the sum of the interior angles of a hexagon, in degrees?",
         "A polygon with n sides has interior angles summing to (n - 2) * 180. For n = 6: 4 * 180 = 720. \\boxed{720}"),
        ("Simplify \\frac{2}{3} + \\frac{1}{6}.",
         "With denominator 6: \\frac{4}{6} + \\frac{1}{6} = \\frac{5}{6}. \\boxed{\\frac{5}{6}}"),
    )

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


class Game24(BaseTask):
    """Game of 24: combine the four numbers with + - * / (each once) to make 24. Exact arithmetic.

    The rule check is complete: whether an expression solves the puzzle needs no reference, so it
    is both the verifier in the search and the grader after it. Extraction is strict: the boxed
    expression (LaTeX operators accepted) must parse whole; without a box, the last "EXPR = 24"
    whose expression stands alone on its side of the "=". Nothing is ever read as a prefix of
    something longer (`(1+2+3)*4^2` is not `(1+2+3)*4`).
    """

    name = "game24"
    needs_reference = False  # the rule grades an expression alone
    answer_max_tokens = 384
    MAX_NUMBER = 10**6  # puzzles with bigger numbers are refused (see `numbers`)
    instructions = ("Use each of the given numbers exactly once with + - * / and parentheses to make 24. "
                    "Finish with the expression only, written as \\boxed{EXPRESSION}, e.g. \\boxed{(1 + 3) * 6}.")
    exemplars = (  # written for fot; numbers above 13 keep them apart from the usual 1-13 puzzle lists
        ("2 3 14 15", "15 * 2 = 30, 30 / 3 = 10, 10 + 14 = 24. \\boxed{15 * 2 / 3 + 14}"),
        ("3 3 14 18", "3 + 3 = 6, 18 - 14 = 4, 6 * 4 = 24. \\boxed{(3 + 3) * (18 - 14)}"),
        ("1 6 14 16", "14 + 16 = 30, 30 - 6 = 24, 24 * 1 = 24. \\boxed{(14 + 16 - 6) * 1}"),
    )
    EQUALS_24 = re.compile(r"=\s*24(?!\d|\.\d)")
    EXPR_CHARS_REVERSED = re.compile(r"[\d\s+\-*/×÷−()]*")  # matched at the start of the reversed side: its tail
    OPERATION = re.compile(r"\d\s*[-+*/×÷−]")

    @classmethod
    def looks_like(cls, q: str) -> bool:
        return bool(re.fullmatch(r"\s*\d{1,7}(\s+\d{1,7}){3}\s*", q))

    @classmethod
    def numbers(cls, question: str) -> list[Fraction] | None:
        """The puzzle's four numbers; None if it does not have four numbers of at most MAX_NUMBER."""
        found = re.findall(r"\d+", question)
        if len(found) < 4 or any(len(x) > 7 or int(x) > cls.MAX_NUMBER for x in found[:4]):
            return None
        return [Fraction(x) for x in found[:4]]

    def validate(self, question: str) -> str | None:
        """Why this question is not a puzzle this task can judge, or None."""
        if not re.fullmatch(r"\s*\d+(\s+\d+){3}\s*", question):
            return "a Game-of-24 puzzle is four whole numbers separated by spaces, e.g. '4 7 8 8'"
        if self.numbers(question) is None:
            return f"numbers above {self.MAX_NUMBER:,} are not supported"
        return None

    def shuffle(self, question: str, rng: random.Random) -> str | None:
        """The same numbers in another order (the FoT 'shuffled input' for a puzzle with no premises)."""
        nums = question.split()
        if len(set(nums)) < 2:
            return None
        for _ in range(20):
            order = nums[:]
            rng.shuffle(order)
            if order != nums:
                return " ".join(order)
        return None

    def _whole(self, candidate: str) -> str | None:
        try:
            plain = expr.from_latex(candidate).strip().strip("*").strip()
            expr.parse(plain)
            return plain
        except expr.ExprError:
            return None

    @classmethod
    def _sides(cls, line: str) -> list[str]:
        """The text before each "= 24" of a line, back to the previous "=" (or the previous "= 24"'s end).
        One pass: the pattern it replaces, a lazy `([^=]*?)=\\s*24`, was retried from every position of a
        line without "= 24" (quadratic: 43 s of CPU for a 100 KB line, docs/reliability.md)."""
        sides, start = [], 0
        for m in cls.EQUALS_24.finditer(line):
            eq = line.rfind("=", start, m.start())
            sides.append(line[eq + 1 if eq != -1 else start:m.start()])
            start = m.end()
        return sides

    def extract(self, text: str) -> str | None:
        text = examined(text)
        b = extract_boxed(text)
        if b is not None:
            return self._whole(b.split("=")[0])
        for line in reversed(text.splitlines()):
            for lhs in reversed(self._sides(line.replace("**", ""))):
                if "\\" in lhs:
                    try:
                        lhs = expr.from_latex(lhs)
                    except expr.ExprError:  # too long or unbalanced to be an expression
                        continue
                # the longest run of expression characters ending the side (a reversed match is linear;
                # a `[...]+$` search is quadratic on a long run that does not reach the end)
                n = self.EXPR_CHARS_REVERSED.match(lhs[::-1]).end()
                run = lhs[len(lhs) - n:] if n else ""
                if not run or len(run) > expr.MAX_LEN or not self.OPERATION.search(run):
                    continue  # no operation, or longer than the parser reads
                before = lhs[: len(lhs) - n].rstrip()
                if before and not (before[-1].isalpha() or before[-1] in ":,;"):
                    continue  # glued to something outside the grammar ("4^2", "4²", "4!"): not a prefix read
                got = self._whole(run)
                if got is not None:
                    return got
        return None

    def solves(self, expression: str | None, question: str) -> bool:
        if expression is None:
            return False
        nums = self.numbers(question)
        if nums is None:
            return False
        try:
            p = expr.parse(expr.from_latex(expression.split("=")[0]))
        except expr.ExprError:
            return False
        return p.value == 24 and sorted(p.numbers) == sorted(nums)

    def equivalent(self, a: str, b: str, question: str = "") -> bool:
        sa, sb = self.solves(a, question), self.solves(b, question)
        if sa or sb:
            return sa and sb  # any two solutions are the same answer: "it can be done this way"
        return "".join(a.split()) == "".join(b.split())

    def grade(self, answer: str | None, reference: str | None = None, question: str = "") -> bool:
        return self.solves(answer, question)

    def rule_check(self, question: str, text: str) -> bool | None:
        if self.numbers(question) is None:
            return None  # not a puzzle this rule can judge
        return self.solves(self.extract(text), question)  # extract reads at most MAX_EXAMINED characters


_ARTICLES = re.compile(r"\b(a|an|the)\b")


_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_text(s: str) -> str:
    s = s.lower().translate(_NO_PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


class Generic(BaseTask):
    """Free text: normalised exact match (case, punctuation, articles and spacing ignored)."""

    name = "generic"
    instructions = BOXED_INSTRUCTIONS
    answer_max_tokens = 512
    exemplars = (
        ("Which is heavier, a kilogram of feathers or a kilogram of iron?",
         "Both weigh one kilogram, so neither is heavier. \\boxed{neither}"),
    )

    def extract(self, text: str) -> str | None:
        text = examined(text)
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
