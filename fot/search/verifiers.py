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
                                                   cfg.full_score_penalty, reward_llm))
