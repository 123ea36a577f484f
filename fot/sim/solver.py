"""The simulated solver behind `fot.sim`: a seeded model of an LLM of known skill.

This is a test double. It does not reason; it plays the part of a model whose probabilities are
set by a `SimProfile`, so tests and engine benchmarks can check what the search does with a
solver of known quality. Nothing it produces may be presented as a model's result.

It reads the role of each request from the section headers of `fot.search.prompts`, finds the problem
(from `--problems` references, or by computing a plain integer-arithmetic expression), and
draws its answer from the profile:

- a first answer is right with probability sigmoid(logit(p_first) - hardness + aptitude), where
  `hardness` is drawn once per problem (errors correlate across everything on that problem) and
  `aptitude` once per tree input (question variant + seed), so errors within a tree correlate
  but trees with different inputs are independent given the problem;
- a refine turns a wrong draft right with probability sigmoid(logit(p_fix) - hardness +
  aptitude) and a right draft wrong with probability p_break;
- self-evaluation scores are normal draws whose mean depends on whether the graded answer is
  right (a verifier of known quality), clipped to [-100, 100], written as a line of analysis then
  'Score: N' (with probability `eval_unreadable`, a reply with no score line);
- an expert comparison picks a right candidate, when there is one, with probability p_expert;
- wrong answers come from a few per-problem distractors with skewed weights, so wrong trees
  sometimes agree, as real ones do.
"""

from __future__ import annotations

import ast
import hashlib
import math
import operator
import random
import re
from dataclasses import dataclass, field
from typing import Callable
from fractions import Fraction

WORD = re.compile(r"\w+|[^\w\s]")
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def sim_tokens(text: str) -> list[str]:
    """The simulated server's tokenizer: words and punctuation marks."""
    return WORD.findall(text)


@dataclass
class SimProfile:
    p_first: float = 0.5  # first answer right, for a problem of median hardness and a median tree
    hardness_sd: float = 1.0  # logit s.d. of per-problem hardness
    tree_sd: float = 0.7  # logit s.d. of per-input aptitude
    p_fix: float = 0.3  # refine fixes a wrong draft (median problem and tree)
    p_break: float = 0.08  # refine breaks a right draft
    eval_right: tuple[float, float] = (55.0, 25.0)  # mean, s.d. of self-evaluation of a right answer
    eval_wrong: tuple[float, float] = (5.0, 35.0)
    eval_unreadable: float = 0.0  # share of self-evaluations with no score line
    p_expert: float = 0.75
    distractor_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    answer_tokens: int = 90
    critique_tokens: int = 60
    logprob_right: float = -0.25  # mean token log-prob of a right answer
    logprob_wrong: float = -0.9


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def stable_hash(*parts: object) -> int:
    h = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def normalize_question(q: str) -> str:
    return " ".join(q.lower().split())


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def arithmetic_truth(question: str) -> str | None:
    """The value of the longest integer +-*/ expression in the question, if there is one."""
    exprs = re.findall(r"[-(\d][\d\s+\-*/()]*\d\)?", question)
    exprs = [e for e in exprs if re.search(r"\d\s*[-+*/]\s*[\d(]", e)]
    if not exprs:
        return None
    expr = max(exprs, key=len).strip()

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError("not plain arithmetic")

    try:
        value = ev(ast.parse(expr, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError):
        return None
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def game24_numbers(question: str) -> list[int] | None:
    m = re.fullmatch(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*", question)
    return [int(x) for x in m.groups()] if m else None


def game24_solution(nums: list[int]) -> str | None:
    """A solution found by brute force over orders, operators and bracketings (or None)."""
    import itertools

    from ..tasks.expr import ExprError, parse

    for a, b, c, d in itertools.permutations(nums):
        for o1, o2, o3 in itertools.product("+-*/", repeat=3):
            for form in (f"(({a} {o1} {b}) {o2} {c}) {o3} {d}", f"({a} {o1} {b}) {o2} ({c} {o3} {d})",
                         f"({a} {o1} ({b} {o2} {c})) {o3} {d}", f"{a} {o1} (({b} {o2} {c}) {o3} {d})",
                         f"{a} {o1} ({b} {o2} ({c} {o3} {d}))"):
                try:
                    if parse(form).value == 24:
                        return form
                except ExprError:
                    continue
    return None


def game24_right(expression: str | None, nums: list[int]) -> bool:
    from ..tasks.expr import ExprError, parse

    if not expression:
        return False
    try:
        p = parse(expression.split("=")[0])
    except ExprError:
        return False
    return p.value == 24 and sorted(p.numbers) == sorted(Fraction(n) for n in nums)


def extract_answer(text: str) -> str | None:
    m = BOXED.findall(text)
    if m:
        return m[-1].strip()
    nums = NUMBER.findall(text)
    return nums[-1].replace(",", "") if nums else None


def same_answer(a: str | None, b: str | None) -> bool:
    from ..tasks.base import numbers_equal

    if a is None or b is None:
        return False
    return numbers_equal(a, b) or normalize_question(a) == normalize_question(b)


@dataclass
class Request:
    """What the solver needs from one chat request."""

    messages: list[dict]
    seed: int | None
    temperature: float
    occurrence: int  # how many identical requests came before (fresh samples for repeats)


@dataclass
class Output:
    text: str
    right: bool | None  # whether the answer it states is right (None for roles with no answer)


@dataclass
class SimSolver:
    profile: SimProfile = field(default_factory=SimProfile)
    problems: dict[str, str] = field(default_factory=dict)  # normalized question -> reference
    seed: int = 0

    # -- finding the problem -------------------------------------------------------------------

    @staticmethod
    def role_of(user: str) -> str:
        if "Answer to grade:" in user:
            return "evaluate"
        if "\nCandidate 1:" in user:
            return "expert"
        if "Draft answer:" in user and "\nCritique:\n" in user:
            return "refine"
        if "Draft answer:" in user:
            return "critique"
        if "Rephrase the question" in user:
            return "rephrase"
        return "answer"

    @staticmethod
    def question_of(user: str) -> str:
        m = re.search(r"Question: (.*?)(?:\n\n|$)", user, re.S)
        q = m.group(1) if m else user
        return q.removeprefix("In other words: ")

    def truth(self, question: str) -> str:
        key = normalize_question(question)
        if key in self.problems:
            return self._final(self.problems[key])
        sentences = sorted(s.strip() for s in key.split(".") if s.strip())
        for known, ref in self.problems.items():
            if sorted(s.strip() for s in known.split(".") if s.strip()) == sentences:
                return self._final(ref)  # the same premises in another order
        nums = game24_numbers(question)
        if nums is not None:
            return game24_solution(nums) or "no solution"
        computed = arithmetic_truth(question)
        if computed is not None:
            return computed
        return str(stable_hash("truth", key) % 1000)  # unknown problem: a fixed made-up truth

    @staticmethod
    def _final(ref: str) -> str:
        """A GSM8K reference is a worked solution ending in '#### 72': the truth is the 72."""
        return ref.split("####")[-1].strip().replace(",", "") if "####" in ref else ref

    # -- drawing -------------------------------------------------------------------------------

    def _problem_draws(self, truth: str, question: str) -> tuple[float, list[str]]:
        rng = random.Random(stable_hash(self.seed, "problem", normalize_question(question)))
        hardness = rng.gauss(0.0, self.profile.hardness_sd)
        k = len(self.profile.distractor_weights)
        nums = game24_numbers(question)
        if nums is not None:  # wrong Game-of-24 expressions: the numbers in other orders, all with +
            orders = [nums[i:] + nums[:i] for i in range(4)]
            return hardness, [" + ".join(str(x) for x in o) + (" - 0" * i) for i, o in enumerate(orders)][:k]
        try:
            t = Fraction(truth)
            offsets = [1, -1, 2, -2, 10, -10, 3, 5]
            rng.shuffle(offsets)
            distractors = []
            for o in offsets:
                d = t + o
                s = str(d.numerator) if d.denominator == 1 else f"{d.numerator}/{d.denominator}"
                distractors.append(s)
            distractors = distractors[:k]
        except (ValueError, ZeroDivisionError):
            distractors = [f"{truth} (variant {i + 1})" for i in range(k)]
        return hardness, distractors

    def _aptitude(self, question_variant: str, seed: int | None) -> float:
        rng = random.Random(stable_hash(self.seed, "tree", question_variant, seed))
        return rng.gauss(0.0, self.profile.tree_sd)

    def _filler(self, rng: random.Random, n_tokens: int) -> str:
        words = ["we", "compute", "the", "value", "carefully", "then", "check", "each", "step", "so"]
        out = []
        while len(out) < max(0, n_tokens):
            out.append(rng.choice(words))
        return " ".join(out)

    def respond(self, req: Request, choice: int) -> Output:
        user = next((m.get("content") or "" for m in reversed(req.messages) if m.get("role") == "user"), "")
        user = str(user)
        role = self.role_of(user)
        variant = self.question_of(user)
        truth = self.truth(variant)
        hardness, distractors = self._problem_draws(truth, variant)
        aptitude = self._aptitude(variant, req.seed)
        sample_key = (self.seed, role, user, req.seed, choice) if (req.seed is not None or req.temperature == 0) else (
            self.seed, role, user, req.occurrence, choice)
        rng = random.Random(stable_hash(*sample_key))
        p = self.profile

        nums = game24_numbers(variant)

        def is_right(ans: str | None) -> bool:
            return game24_right(ans, nums) if nums is not None else same_answer(ans, truth)

        def wrong() -> str:
            return rng.choices(distractors, weights=p.distractor_weights[: len(distractors)])[0]

        def solution(ans: str) -> str:
            n = max(5, int(rng.gauss(p.answer_tokens, p.answer_tokens * 0.25)))
            return f"Let me solve this step by step. {self._filler(rng, n)}. So the answer is \\boxed{{{ans}}}."

        if role == "answer":
            right = rng.random() < _sigmoid(_logit(p.p_first) - hardness + aptitude)
            return Output(solution(truth if right else wrong()), right)
        if role == "refine":
            draft = user.split("Draft answer:\n", 1)[1].split("\n\nCritique:\n", 1)[0]
            was_right = is_right(extract_answer(draft))
            if was_right:
                right = rng.random() >= p.p_break
            else:
                right = rng.random() < _sigmoid(_logit(p.p_fix) - hardness + aptitude)
            return Output(solution(truth if right else wrong()), right)
        if role == "critique":
            n = max(5, int(rng.gauss(p.critique_tokens, p.critique_tokens * 0.25)))
            return Output(f"The draft has these issues: {self._filler(rng, n)}.", None)
        if role == "evaluate":
            graded = user.split("Answer to grade:\n", 1)[1]
            right = is_right(extract_answer(graded))
            mean, sd = p.eval_right if right else p.eval_wrong
            score = int(round(min(100.0, max(-100.0, rng.gauss(mean, sd)))))
            analysis = f"Checking each step: the answer {'seems sound' if score > 0 else 'has problems'}."
            if rng.random() < p.eval_unreadable:  # a weak model that forgets the score line
                return Output(f"{analysis} I would give it {score} or so, and 7/10 for style.", None)
            return Output(f"{analysis}\nScore: {score}", None)
        if role == "expert":
            cands = re.findall(r"Candidate (\d+):\n(.*?)(?=\n\nCandidate \d+:|\n\nThe candidates disagree|$)", user, re.S)
            right_ids = [int(k) for k, text in cands if is_right(extract_answer(text))]
            all_ids = [int(k) for k, _ in cands] or [1]
            if right_ids and rng.random() < p.p_expert:
                pick = rng.choice(right_ids)
            else:
                others = [k for k in all_ids if k not in right_ids] or all_ids
                pick = rng.choice(others)
            return Output(f"Comparing the reasoning of each candidate. Best: {pick}", pick in right_ids)
        # rephrase
        return Output(f"In other words: {variant}", None)

    def logprobs(self, out: Output, n_tokens: int, rng: random.Random) -> list[float]:
        p = self.profile
        mean = -0.5 if out.right is None else (p.logprob_right if out.right else p.logprob_wrong)
        return [min(0.0, rng.gauss(mean, 0.3)) for _ in range(n_tokens)]


@dataclass
class ScriptedSolver(SimSolver):
    """A solver that says what a test scripts: `script(role, user_message, request)` returns the text,
    or (text, right) where `right` sets the simulated log-probs (the profile's logprob_right/wrong)."""

    script: "Callable[[str, str, Request], str | tuple[str, bool | None]] | None" = None

    def respond(self, req: Request, choice: int) -> Output:
        user = str(next((m.get("content") or "" for m in reversed(req.messages) if m.get("role") == "user"), ""))
        out = self.script(self.role_of(user), user, req)
        text, right = out if isinstance(out, tuple) else (out, None)
        return Output(text, right)
