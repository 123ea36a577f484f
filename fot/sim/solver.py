"""The simulated solver behind `fot.sim`: a seeded model of an LLM of known skill.

This is a test double. It does not reason; it plays the part of a model whose probabilities are
set by a `SimProfile`, so tests and engine benchmarks can check what the search does with a
solver of known quality. Nothing it produces may be presented as a model's result.

It reads the role of each request from the section headers of `fot.search.prompts`, finds the problem
(from `--problems` references, or by computing a plain integer-arithmetic expression), and
draws its answer from the profile (docs/sim.md says what each knob means and why its default):

- a problem has a `hardness`, drawn once per problem, shared by everything asked about it;
- an *input* (the question as a tree is asked it: raw, rephrased, shuffled, with a worked example)
  has an `aptitude`, drawn once per (problem, input text) with s.d. `tree_sd`: a function of the
  problem and the input, never of the request's seed, so every call of one tree shares it, trees
  asked the same text share it, and trees asked different texts are independent given the problem.
  `tree_sd` is the size of the effect input diversity can have;
- a first answer at temperature T repeats the input's greedy answer (right with probability
  sigmoid(logit(p_first) - hardness + aptitude)) with probability exp(-T / temp_spread), and is
  otherwise a fresh draw that pays `temp_cost * T` logits: heat buys diversity with per-sample accuracy;
- a refine turns a wrong draft right with probability sigmoid(logit(p_fix) - hardness + aptitude -
  temp_cost * T) and a right draft wrong with probability p_break;
- self-evaluation scores are normal draws whose mean depends on whether the graded answer is
  right; `eval_auroc` sets their AUROC against correctness directly (the verifier's informativeness).
  They are clipped to [-100, 100], written as a line of analysis then 'Score: N' (with probability
  `eval_unreadable`, a reply with no score line); a grading prompt that asks for Yes or No gets
  "Yes"/"No", with log-probs that carry the same score;
- the expert judges each candidate it is shown with a noisy score of AUROC `expert_auroc` (by
  default the self-evaluation's: the same model judging) and names the best: it can only pick among
  what it is shown, and with many wrong candidates a right one is harder to pick;
- token log-probs (OpenAI `logprobs`, with `top_logprobs` when asked) centre on `logprob_right` or
  `logprob_wrong` per reply (plus a per-reply spread `logprob_reply_sd`): right answers are more
  confident by the gap you set;
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
from statistics import NormalDist

WORD = re.compile(r"\w+|[^\w\s]")
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
REPHRASED = re.compile(r"^In other words(?: \(version \d+\))?: ")
YES_NO = re.compile(r"\byes\b.*\bno\b|\bno\b.*\byes\b", re.I | re.S)


def sim_tokens(text: str) -> list[str]:
    """The simulated server's tokenizer: words and punctuation marks."""
    return WORD.findall(text)


@dataclass
class SimProfile:
    """What the simulated model can do; docs/sim.md gives each default's reason."""

    p_first: float = 0.5  # greedy first answer right, for a problem of median hardness and a median input
    hardness_sd: float = 1.0  # logit s.d. of per-problem hardness
    tree_sd: float = 0.7  # logit s.d. of per-input aptitude: how far another input text moves a tree
    p_fix: float = 0.3  # refine fixes a wrong draft (median problem and input)
    p_break: float = 0.08  # refine breaks a right draft
    temp_spread: float = 0.5  # a sample at temperature T repeats the greedy answer with probability exp(-T / this)
    temp_cost: float = 0.25  # logits a fresh (non-greedy) sample loses per unit of temperature
    eval_right: tuple[float, float] = (55.0, 25.0)  # mean, s.d. of self-evaluation of a right answer
    eval_wrong: tuple[float, float] = (5.0, 35.0)  # (AUROC of these two: 0.877)
    eval_auroc: float | None = None  # if set, the wrong mean is moved so the scores have this AUROC
    eval_unreadable: float = 0.0  # share of self-evaluations with no score line
    expert_auroc: float | None = None  # the expert's skill; None: the self-evaluation's AUROC
    distractor_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    answer_tokens: int = 90
    critique_tokens: int = 60
    logprob_right: float = -0.25  # mean token log-prob of a right answer
    logprob_wrong: float = -0.9  # ... of a wrong one: the gap is how much more confident right answers are
    logprob_reply_sd: float = 0.0  # s.d. of a reply's mean log-prob around those (0: the gap alone decides)
    logprob_token_sd: float = 0.3  # s.d. of one token's log-prob around its reply's

    def __post_init__(self) -> None:
        if self.eval_auroc is not None and not 0.5 <= self.eval_auroc < 1:
            raise ValueError(f"eval_auroc must be in [0.5, 1), got {self.eval_auroc}")
        if self.expert_auroc is not None and not 0.5 <= self.expert_auroc <= 1:
            raise ValueError(f"expert_auroc must be in [0.5, 1], got {self.expert_auroc}")
        if self.temp_spread <= 0:
            raise ValueError(f"temp_spread must be > 0, got {self.temp_spread}")

    @property
    def eval_wrong_mean(self) -> float:
        """The wrong answers' mean score: given, or set by `eval_auroc` (binormal: AUROC = Phi(d / sqrt(sr^2 + sw^2)))."""
        if self.eval_auroc is None:
            return self.eval_wrong[0]
        spread = math.hypot(self.eval_right[1], self.eval_wrong[1])
        return self.eval_right[0] - NormalDist().inv_cdf(self.eval_auroc) * spread

    @property
    def verifier_auroc(self) -> float:
        """The self-evaluation scores' AUROC against correctness (before clipping and rounding)."""
        spread = math.hypot(self.eval_right[1], self.eval_wrong[1])
        return NormalDist().cdf((self.eval_right[0] - self.eval_wrong_mean) / spread)

    @property
    def expert_skill(self) -> float:
        return self.verifier_auroc if self.expert_auroc is None else self.expert_auroc


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


def problem_key(q: str) -> str:
    """One problem whatever order its premises are in: a shuffled input is the same problem (same
    hardness, same distractors), only another input."""
    return ". ".join(sorted(s.strip() for s in normalize_question(q).split(".") if s.strip()))


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
    # each token's (log-prob, top alternatives [(token, log-prob)]) when the role sets them (a Yes/No grade)
    token_logprobs: list[tuple[float, list[tuple[str, float]]]] | None = None


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
        return REPHRASED.sub("", q, count=1)

    @staticmethod
    def input_of(user: str, role: str) -> str:
        """The tree's input text: the question as it is asked (a rephrasing keeps its version mark), and for
        a first answer the context shown with it (a worked example). A refine does not see the example, so
        an example tree's refines share the raw question's aptitude."""
        m = re.search(r"Question: (.*?)(?:\n\n|$)", user, re.S)
        q = m.group(1) if m else user
        if role == "answer" and m:
            rest = user[m.end():]
            hint = rest.split("Solve the question", 1)[0] if "Solve the question" in rest else ""
            return q + "\n" + hint.strip()
        return q

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
        return str(stable_hash("truth", problem_key(question)) % 1000)  # unknown problem: a fixed made-up truth

    @staticmethod
    def _final(ref: str) -> str:
        """A GSM8K reference is a worked solution ending in '#### 72': the truth is the 72."""
        return ref.split("####")[-1].strip().replace(",", "") if "####" in ref else ref

    # -- drawing -------------------------------------------------------------------------------

    def _problem_draws(self, truth: str, question: str) -> tuple[float, list[str]]:
        rng = random.Random(stable_hash(self.seed, "problem", problem_key(question)))
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

    def aptitude(self, user: str) -> float:
        """The aptitude of the input this request belongs to: fixed per (problem, input text), whatever the
        request's seed or temperature, so it is the same for every call of one tree."""
        rng = random.Random(stable_hash(self.seed, "tree", normalize_question(self.input_of(user, self.role_of(user)))))
        return rng.gauss(0.0, self.profile.tree_sd)

    def _judge(self, right: bool, auroc: float, rng: random.Random) -> float:
        """A unit-variance judgement whose AUROC against `right` is `auroc` (binormal, equal variances)."""
        if auroc >= 1:  # a perfect judge: every right candidate above every wrong one
            return (1.0 if right else 0.0) + rng.random() * 1e-6
        return rng.gauss(math.sqrt(2) * NormalDist().inv_cdf(auroc) if right else 0.0, 1.0)

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
        aptitude = self.aptitude(user)
        sample_key = (self.seed, role, user, req.seed, choice) if (req.seed is not None or req.temperature == 0) else (
            self.seed, role, user, req.occurrence, choice)
        rng = random.Random(stable_hash(*sample_key))
        p = self.profile
        heat = max(0.0, req.temperature)

        nums = game24_numbers(variant)

        def is_right(ans: str | None) -> bool:
            return game24_right(ans, nums) if nums is not None else same_answer(ans, truth)

        def wrong(r: random.Random = rng) -> str:
            return r.choices(distractors, weights=p.distractor_weights[: len(distractors)])[0]

        def solution(ans: str) -> str:
            n = max(5, int(rng.gauss(p.answer_tokens, p.answer_tokens * 0.25)))
            return f"Let me solve this step by step. {self._filler(rng, n)}. So the answer is \\boxed{{{ans}}}."

        if role == "answer":
            logit = _logit(p.p_first) - hardness + aptitude
            if rng.random() < math.exp(-heat / p.temp_spread):  # the input's greedy answer
                # one uniform per problem, the input's aptitude moving the threshold: inputs of equal aptitude
                # give the same greedy answer, and tree_sd alone sets how often inputs disagree
                greedy = random.Random(stable_hash(self.seed, "greedy", problem_key(variant)))
                right = greedy.random() < _sigmoid(logit)
                ans = truth if right else wrong(greedy)
            else:
                right = rng.random() < _sigmoid(logit - p.temp_cost * heat)
                ans = truth if right else wrong()
            return Output(solution(ans), right)
        if role == "refine":
            draft = user.split("Draft answer:\n", 1)[1].split("\n\nCritique:\n", 1)[0]
            was_right = is_right(extract_answer(draft))
            if was_right:
                right = rng.random() >= p.p_break
            else:
                right = rng.random() < _sigmoid(_logit(p.p_fix) - hardness + aptitude - p.temp_cost * heat)
            return Output(solution(truth if right else wrong()), right)
        if role == "critique":
            n = max(5, int(rng.gauss(p.critique_tokens, p.critique_tokens * 0.25)))
            return Output(f"The draft has these issues: {self._filler(rng, n)}.", None)
        if role == "evaluate":
            graded, _, ask = user.split("Answer to grade:\n", 1)[1].partition("\n\n")
            right = is_right(extract_answer(graded))
            (mean, sd) = p.eval_right if right else (p.eval_wrong_mean, p.eval_wrong[1])
            latent = rng.gauss(mean, sd)
            if YES_NO.search(ask) and "Score:" not in ask:  # a Yes/No grade: P(yes) carries the score
                p_yes = _sigmoid((latent - (p.eval_right[0] + p.eval_wrong_mean) / 2) / 15.0)
                say = "Yes" if rng.random() < p_yes else "No"
                lp_yes, lp_no = math.log(max(p_yes, 1e-12)), math.log(max(1 - p_yes, 1e-12))
                own = lp_yes if say == "Yes" else lp_no
                return Output(say, None, [(own, [("Yes", lp_yes), ("No", lp_no)])])
            score = int(round(min(100.0, max(-100.0, latent))))
            analysis = f"Checking each step: the answer {'seems sound' if score > 0 else 'has problems'}."
            if rng.random() < p.eval_unreadable:  # a weak model that forgets the score line
                return Output(f"{analysis} I would give it {score} or so, and 7/10 for style.", None)
            return Output(f"{analysis}\nScore: {score}", None)
        if role == "expert":
            cands = re.findall(r"Candidate (\d+):\n(.*?)(?=\n\nCandidate \d+:|\n\nThe candidates disagree|$)", user, re.S)
            if not cands:
                return Output("Comparing the reasoning of each candidate. Best: 1", None)
            judged = [(self._judge(is_right(extract_answer(text)), p.expert_skill, rng), int(k), is_right(
                extract_answer(text))) for k, text in cands]
            _, pick, right = max(judged)
            return Output(f"Comparing the reasoning of each candidate. Best: {pick}", right)
        # rephrase: each rephrasing is its own text (a version mark), so two rephrased trees are two inputs
        return Output(f"In other words (version {rng.randrange(1000)}): {variant}", None)

    def logprobs(self, out: Output, n_tokens: int, rng: random.Random,
                 top: int = 0, tokens: list[str] | None = None) -> list[tuple[float, list[tuple[str, float]]]]:
        """Each token's log-prob and, when `top` > 0, its `top` most likely tokens (itself first): a reply's
        tokens centre on a per-reply confidence, higher for a right answer by the profile's gap."""
        if out.token_logprobs is not None:
            return [(lp, alts[:top]) for lp, alts in out.token_logprobs][:n_tokens]
        p = self.profile
        mean = -0.5 if out.right is None else (p.logprob_right if out.right else p.logprob_wrong)
        centre = rng.gauss(mean, p.logprob_reply_sd) if p.logprob_reply_sd > 0 else mean
        rows = []
        for i in range(n_tokens):
            lp = min(0.0, rng.gauss(centre, p.logprob_token_sd))
            alts: list[tuple[str, float]] = []
            if top > 0:
                own = tokens[i] if tokens and i < len(tokens) else "tok"
                rest = max(1e-12, -math.expm1(lp))  # the probability left for the other tokens
                weights = [0.6 ** j for j in range(1, top)]
                alts = [(own, lp)] + [(f"{own}~{j}", math.log(rest * w / sum(weights)) if weights else lp)
                                      for j, w in enumerate(weights, 1)]
            rows.append((lp, alts))
        return rows


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
