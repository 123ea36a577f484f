"""Verifiers score candidate answers *during* the search. None of them ever sees a reference.

- `SelfEvaluation`: the model grades its own answer as a strict critic: a short analysis, then a
  final line 'Score: N' with N in [-100, 100] (the official MCTSr reward prompt asks for the
  analysis first, too). Scores >= `full_score` are suppressed (MCTSr's full-score suppression).
  A sample whose score line cannot be read is dropped and counted, never scored 0.
- `RewardModel`: the same prompt sent to another OpenAI-compatible endpoint (a judge or reward model).
- `RuleVerifier`: a task whose rule check is complete (Game of 24) scores by rule: +100 or -100,
  no call needed; otherwise it falls back to another verifier.

The protocol is `Verifier` below; `VERIFIERS` (at the end) names them for `SearchConfig.verifier`
(auto | self | rule | reward_model), and `make_verifier` builds the one a config names, for the
forest and the best-of-N baseline alike. To add one: a class with `score`, a factory taking a
`VerifierContext`, and its line in `VERIFIERS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

from . import prompts
from ..backend.budget import Budget
from ..errors import UsageError
from ..backend.ledger import CallTag

if TYPE_CHECKING:
    from ..backend.llm import LLMClient
    from ..tasks import Task

# the final score line: "Score: 85", "**Score:** -40", "[Score] 70", "Score = 85/100", "Final score: 70",
# "**Final Score:** 70", "Overall score: 70 (out of 100)"; nothing else on the line
_LABEL = r"^[\s*#>_\[]*(?:(?:final|overall|total)[\s*_]+)?score[\s*\]_]*"
_OUT_OF = r"(?:[\s*_]*(?:/\s*100|\(?\s*out of 100\s*\)?))?"
SCORE_LINE = re.compile(_LABEL + r"(?:[:=][\s*_]*)?([+-]?\d+(?:\.\d+)?)" + _OUT_OF + r"[\s*_.]*$", re.I)
# no two optional runs of the same characters side by side: they made a long line quadratic
SCORE_LABEL = re.compile(_LABEL + r"[:=]?[\s*_]*$", re.I)  # "Score:" alone: the number is on the next line
SCORE_ALONE = re.compile(r"^[\s*_]*([+-]?\d+(?:\.\d+)?)" + _OUT_OF + r"[\s*_.]*$", re.I)
MAX_SCORE_LINE = 200  # characters (stripped); a longer line is not a score line, and is not read


@dataclass
class Scores:
    values: list[float]  # the samples that could be read, each in [-100, 100]
    asked: int  # samples asked for (asked - len(values) could not be read and were dropped)
    # optional, for the node record (fot.view): every sample asked, (score or None if unreadable, the
    # evaluator's text), and what the scoring cost. A verifier that leaves them empty still works.
    samples: list[tuple[float | None, str]] = field(default_factory=list)
    tokens: int = 0
    # the candidate is proven right (a complete rule check passed): its tree may stop and its answer wins
    # the vote (`SearchConfig.proof`). Only a verifier that checks, never one that guesses, sets it.
    proven: bool = False


class Verifier(Protocol):
    async def score(self, question: str, text: str, k: int, tag: CallTag, budget: Budget | None,
                    seed: int | None = None) -> Scores:
        """k reward samples for one candidate text; unreadable samples are dropped, not scored."""


def parse_score(text: str) -> float | None:
    """The number on the last 'Score: N' line, if it is in [-100, 100]; None otherwise.

    Strict on purpose: a weak model's stray number ("5 * 6 = 30, which", "7/10", "I give it 70") is not
    a score. A label alone on its line ("Score:", "**Final Score:**") takes the number alone on the next."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if len(line) > MAX_SCORE_LINE:  # nothing else on the line: and the pattern is quadratic in a long one
            continue
        m = SCORE_LINE.match(line)
        if m is None and SCORE_LABEL.match(line):
            after = next((ln for ln in lines[i + 1:] if ln), "")
            m = SCORE_ALONE.match(after) if len(after) <= MAX_SCORE_LINE else None
        if m:
            v = float(m.group(1))
            return v if -100 <= v <= 100 else None
    return None


class SelfEvaluation:
    role = "evaluate"

    def __init__(self, llm: LLMClient, max_tokens: int = 192, full_score: float = 95.0, penalty: float = 50.0,
                 temperature: float = 0.7):
        self.llm, self.max_tokens, self.full_score, self.penalty = llm, max_tokens, full_score, penalty
        self.temperature = temperature

    def suppress(self, s: float) -> float:
        return s - self.penalty if s >= self.full_score else s

    async def score(self, question: str, text: str, k: int, tag: CallTag, budget: Budget | None,
                    seed: int | None = None) -> Scores:
        c = await self.llm.chat(prompts.evaluate(question, text), role=self.role, tag=tag, n=k,
                                max_tokens=self.max_tokens, temperature=self.temperature, seed=seed, budget=budget)
        read = [(None if s is None else self.suppress(s), t) for s, t in ((parse_score(t), t) for t in c.texts)]
        return Scores([s for s, _ in read if s is not None], asked=len(c.texts), samples=read,
                      tokens=c.record.prompt_tokens + c.record.completion_tokens)


class RewardModel(SelfEvaluation):
    role = "reward_model"


class RuleVerifier:
    """Scores by the task's rule check when it can judge; defers to `fallback` when it cannot. A pass is a
    proof (`Scores.proven`); `can_prove` says whether this question's candidates can be proven at all."""

    def __init__(self, task: Task, original_question: str, fallback: Verifier | None = None):
        self.task, self.question, self.fallback = task, original_question, fallback
        self.can_prove = task.rule_check(original_question, "") is not None

    async def score(self, question: str, text: str, k: int, tag: CallTag, budget: Budget | None,
                    seed: int | None = None) -> Scores:
        verdict = self.task.rule_check(self.question, text)
        if verdict is not None:
            v = 100.0 if verdict else -100.0
            return Scores([v], asked=1, samples=[(v, f"rule check: {'passes' if verdict else 'fails'}")],
                          proven=verdict)
        if self.fallback is None:
            return Scores([], asked=0)
        return await self.fallback.score(question, text, k, tag, budget, seed=seed)


# -- the registry ------------------------------------------------------------------------------------

@dataclass
class VerifierContext:
    task: "Task"
    question: str  # the original question (a rule check needs the real numbers)
    llm: "LLMClient"
    max_tokens: int = 192  # SearchConfig.eval_max_tokens
    full_score: float = 95.0
    full_score_penalty: float = 50.0
    reward_llm: "LLMClient | None" = None
    constrain: str = "json_schema"  # SearchConfig.constrain: how `constrained` forces its score
    prm_aggregate: str = "min"  # SearchConfig.prm_aggregate: how `prm` folds its step scores


def _self_eval(ctx: VerifierContext) -> Verifier:
    return SelfEvaluation(ctx.llm, ctx.max_tokens, ctx.full_score, ctx.full_score_penalty)


def _rule(ctx: VerifierContext) -> Verifier:
    return RuleVerifier(ctx.task, ctx.question, fallback=_self_eval(ctx))


def _reward_model(ctx: VerifierContext) -> Verifier:
    if ctx.reward_llm is None:
        raise UsageError("verifier 'reward_model' needs Engine(reward_model=(base_url, model))")
    return RewardModel(ctx.reward_llm, ctx.max_tokens, ctx.full_score, ctx.full_score_penalty)


def _auto(ctx: VerifierContext) -> Verifier:
    """The task's rule where it can judge a candidate alone (Game of 24), else self-evaluation."""
    return _rule(ctx) if ctx.task.rule_check(ctx.question, "") is not None else _self_eval(ctx)


VERIFIERS: dict[str, Callable[[VerifierContext], Verifier]] = {
    "auto": _auto, "self": _self_eval, "rule": _rule, "reward_model": _reward_model}


def make_verifier(cfg, task: "Task", question: str, llm: LLMClient, reward_llm: LLMClient | None = None) -> Verifier:
    """The verifier `cfg.verifier` names, with `cfg`'s self-evaluation settings."""
    return VERIFIERS[cfg.verifier](VerifierContext(task, question, llm, cfg.eval_max_tokens, cfg.full_score,
                                                   cfg.full_score_penalty, reward_llm, cfg.constrain,
                                                   cfg.prm_aggregate))


# -- signals any model can give (issue 25): a forced score, a one-token verdict, a reward model's steps -----

YESNO_PROMPT = ("Question: {question}\n\nAnswer to grade:\n{candidate}\n\n"
                "Is this answer correct? Reply with Yes or No only.")
YES, NO = ("yes", "true", "correct"), ("no", "false", "incorrect", "wrong")


def yes_no_score(top: list[tuple[str, float]]) -> float | None:
    """100 * (P(yes) - P(no)) / (P(yes) + P(no)) from one token's top alternatives, the spellings of
    each summed ("Yes", " yes", "YES", "True"); None when neither is among them (unreadable, not 0)."""
    import math

    p_yes = p_no = 0.0
    for token, lp in top:
        word = token.strip().lower()
        if word in YES:
            p_yes += math.exp(lp)
        elif word in NO:
            p_no += math.exp(lp)
    if p_yes + p_no <= 0:
        return None
    return 100.0 * (p_yes - p_no) / (p_yes + p_no)


class YesNo:
    """'Is this answer correct?' answered in one token, scored by the log-prob of Yes against No.

    A reward for a few tokens that needs no cooperation from the model: no score line to write, no
    format to follow, only the first token's distribution (top_logprobs; 20 alternatives, the most
    OpenAI allows). k > 1 asks nothing more: the distribution is the same at any temperature, so one
    greedy call stands for all. A backend that sends no log-probs leaves the sample unreadable."""

    role = "evaluate"

    def __init__(self, llm: "LLMClient", top: int = 20):
        self.llm, self.top = llm, top

    async def score(self, question: str, text: str, k: int, tag: CallTag, budget: Budget | None,
                    seed: int | None = None) -> Scores:
        messages = [{"role": "user", "content": YESNO_PROMPT.format(question=question, candidate=text.strip())}]
        c = await self.llm.chat(messages, role=self.role, tag=tag, max_tokens=1, temperature=0.0, seed=seed,
                                budget=budget, logprobs=True, extra={"top_logprobs": self.top})
        tops = c.choices[0].top_logprobs
        s = yes_no_score(tops[0]) if tops else None
        return Scores([] if s is None else [s], asked=1, samples=[(s, c.text)],
                      tokens=c.record.prompt_tokens + c.record.completion_tokens)


# the score alone, a few tokens: an analysis before it (bounded, so it cannot eat the token cap) made
# llama.cpp's grammar sampler take minutes a call on 2 cores, and a 135M model filled it with noise
SCORE_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": -100, "maximum": 100}},
                "required": ["score"], "additionalProperties": False}
SCORE_GRAMMAR = 'root ::= "Score: " ("-"? ([0-9] | [1-9] [0-9]) | "100")'
CONSTRAINED_MAX_TOKENS = 24
CONSTRAIN_FORMATS = ("json_schema", "grammar")


def constraint_body(fmt: str) -> dict:
    """The request fields that force a parseable score: `response_format` with a JSON schema (OpenAI,
    vLLM, SGLang, llama.cpp, Ollama all take it), or llama.cpp's own GBNF `grammar`."""
    if fmt == "grammar":
        return {"grammar": SCORE_GRAMMAR}
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "score", "schema": SCORE_SCHEMA}}}


def read_constrained(text: str) -> float | None:
    """The score of a constrained reply: the JSON object's `score`, else a 'Score: N' line (the grammar's
    shape, or a backend that ignored the constraint)."""
    import json

    try:
        obj = json.loads(text)
    except ValueError:
        m = re.match(r'\s*\{\s*"score"\s*:\s*(-?\d+)\s*(?:[,}]|$)', text)  # cut off after the number
        v = int(m.group(1)) if m else None
        return float(v) if v is not None and -100 <= v <= 100 else parse_score(text)
    v = obj.get("score") if isinstance(obj, dict) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and -100 <= v <= 100:
        return float(v)
    return None


class Constrained(SelfEvaluation):
    """The self-evaluation with its output forced into a readable score (a JSON schema or a grammar).

    The fallback is explicit: a backend that refuses the constraint (HTTP 400/422: OpenAI refuses
    fields it does not know) is asked again once without it, and from then on this verifier sends the
    plain self-evaluation and counts those samples in `unconstrained`; a backend that ignores it
    (fot.sim) answers in its own way, read as a score line."""

    role = "evaluate"

    def __init__(self, llm: "LLMClient", max_tokens: int = 192, full_score: float = 95.0, penalty: float = 50.0,
                 fmt: str = "json_schema"):
        super().__init__(llm, max_tokens, full_score, penalty)
        if fmt not in CONSTRAIN_FORMATS:
            raise UsageError(f"unknown constraint format {fmt!r}; known: {', '.join(CONSTRAIN_FORMATS)}")
        self.fmt, self.supported, self.unconstrained = fmt, True, 0

    async def score(self, question: str, text: str, k: int, tag: CallTag, budget: Budget | None,
                    seed: int | None = None) -> Scores:
        from ..backend.llm import LLMError

        kw = dict(role=self.role, tag=tag, n=k, temperature=self.temperature, seed=seed, budget=budget)
        c = None
        if self.supported:
            try:
                c = await self.llm.chat(prompts.evaluate(question, text), extra=constraint_body(self.fmt),
                                        max_tokens=CONSTRAINED_MAX_TOKENS, **kw)
            except LLMError as e:
                if e.kind != "client":
                    raise
                self.supported = False  # refused: the plain prompt from now on, counted
        if c is None:
            c = await self.llm.chat(prompts.evaluate(question, text), max_tokens=self.max_tokens, **kw)
            self.unconstrained += len(c.texts)
        read = [(None if s is None else self.suppress(s), t) for s, t in ((read_constrained(t), t) for t in c.texts)]
        return Scores([s for s, _ in read if s is not None], asked=len(c.texts), samples=read,
                      tokens=c.record.prompt_tokens + c.record.completion_tokens)


PRM_AGGREGATES = ("min", "last", "prod", "mean")
STEP_SEPARATOR = "<extra_0>"  # Qwen2.5-Math-PRM's step token, as vLLM's pooling docs use it


def split_steps(text: str) -> list[str]:
    """A solution's steps: its non-empty lines (paragraphs are lines too); at least one step."""
    steps = [s.strip() for s in text.strip().splitlines() if s.strip()]
    return steps or [text.strip()]


def aggregate_steps(probs: list[float], how: str) -> float:
    """search-and-learn's aggregations of step scores: the weakest step, the last, the product, the mean."""
    import math

    if how == "min":
        return min(probs)
    if how == "last":
        return probs[-1]
    if how == "prod":
        return math.prod(probs)
    return sum(probs) / len(probs)


class ProcessReward:
    """A process reward model: each step's probability of being right, from a pooling endpoint (vLLM's
    `/pooling` with a PRM such as Qwen2.5-Math-PRM-7B, or fot.sim's), aggregated by `how` and mapped to
    [-100, 100]. One request per candidate, prompt tokens only; k > 1 asks nothing more (it is not sampled)."""

    role = "reward_model"

    def __init__(self, llm: "LLMClient", how: str = "min"):
        if how not in PRM_AGGREGATES:
            raise UsageError(f"unknown step aggregation {how!r}; known: {', '.join(PRM_AGGREGATES)}")
        self.llm, self.how = llm, how

    async def score(self, question: str, text: str, k: int, tag: CallTag, budget: Budget | None,
                    seed: int | None = None) -> Scores:
        steps = split_steps(text)
        messages = [{"role": "user", "content": question},
                    {"role": "assistant", "content": "".join(s + STEP_SEPARATOR for s in steps)}]
        reply, tokens = await self.llm.pool(messages, role=self.role, tag=tag, budget=budget)
        probs = step_probabilities(reply)
        if not probs:
            return Scores([], asked=1, samples=[(None, "no step scores in the reward model's reply")], tokens=tokens)
        v = 200.0 * aggregate_steps(probs, self.how) - 100.0
        return Scores([v], asked=1, samples=[(v, f"steps {[round(p, 3) for p in probs]} ({self.how})")], tokens=tokens)


def step_probabilities(reply) -> list[float]:
    """Each step's probability of being right from a pooling reply: vLLM's `data[0].data` is one row per
    step token, [p_wrong, p_right] (the last column is taken); a bare number per step is taken as is."""
    data = reply.get("data") if isinstance(reply, dict) else None
    rows = data[0].get("data") if isinstance(data, list) and data and isinstance(data[0], dict) else None
    out = []
    for row in rows if isinstance(rows, list) else []:
        p = row[-1] if isinstance(row, list) and row else row
        if isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1:
            out.append(float(p))
    return out


def _yesno(ctx: VerifierContext) -> Verifier:
    return YesNo(ctx.llm)


def _constrained(ctx: VerifierContext) -> Verifier:
    return Constrained(ctx.llm, ctx.max_tokens, ctx.full_score, ctx.full_score_penalty, fmt=ctx.constrain)


def _prm(ctx: VerifierContext) -> Verifier:
    if ctx.reward_llm is None:
        raise UsageError("verifier 'prm' needs a reward endpoint: Engine(reward_model=(base_url, model)) "
                         "(fot.sim serves one at its /v1/pooling)")
    return ProcessReward(ctx.reward_llm, ctx.prm_aggregate)


VERIFIERS.update({"yesno": _yesno, "constrained": _constrained, "prm": _prm})
