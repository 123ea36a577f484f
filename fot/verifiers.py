"""Verifiers score candidate answers *during* the search. None of them ever sees a reference.

- `SelfEvaluation`: the model grades its own answer as a strict critic, k samples in [-100, 100],
  scores >= `full_score` suppressed (MCTSr's full-score suppression). The default.
- `RewardModel`: the same prompt sent to another OpenAI-compatible endpoint (a judge or reward model).
- `RuleVerifier`: a task whose rule check is complete (Game of 24) scores by rule: +100 or -100,
  no call needed; otherwise it falls back to another verifier.
"""

from __future__ import annotations

import re
from typing import Protocol

from . import prompts
from .budget import Budget
from .ledger import CallTag
from .llm import LLMClient
from .tasks import Task

SCORE = re.compile(r"score\s*[:=]?\s*\**\s*(-?\d+(?:\.\d+)?)", re.I)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
OUT_OF = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:/|out of)\s*100\b", re.I)


def parse_score(text: str) -> float | None:
    """'Score: N' (the last one), else the last number in [-100, 100] ('70/100' reads as 70); None if none."""
    text = OUT_OF.sub(r"\1", text)
    found = SCORE.findall(text)
    cands = found or NUMBER.findall(text)
    for c in reversed(cands):
        v = float(c)
        if -100 <= v <= 100:
            return v
    return None


class Verifier(Protocol):
    async def score(self, question: str, text: str, k: int, tag: CallTag, budget: Budget | None) -> list[float]:
        """k reward samples for one candidate text (fewer if some could not be parsed)."""


class SelfEvaluation:
    role = "evaluate"

    def __init__(self, llm: LLMClient, max_tokens: int = 64, full_score: float = 95.0, penalty: float = 50.0,
                 temperature: float = 0.7):
        self.llm, self.max_tokens, self.full_score, self.penalty = llm, max_tokens, full_score, penalty
        self.temperature = temperature

    def suppress(self, s: float) -> float:
        return s - self.penalty if s >= self.full_score else s

    async def score(self, question: str, text: str, k: int, tag: CallTag, budget: Budget | None,
                    seed: int | None = None) -> list[float]:
        c = await self.llm.chat(prompts.evaluate(question, text), role=self.role, tag=tag, n=k,
                                max_tokens=self.max_tokens, temperature=self.temperature, seed=seed, budget=budget)
        scores = [parse_score(t) for t in c.texts]
        return [self.suppress(s) for s in scores if s is not None]


class RewardModel(SelfEvaluation):
    role = "reward_model"


class RuleVerifier:
    """Scores by the task's rule check when it can judge; defers to `fallback` when it cannot."""

    def __init__(self, task: Task, original_question: str, fallback: Verifier | None = None):
        self.task, self.question, self.fallback = task, original_question, fallback

    async def score(self, question: str, text: str, k: int, tag: CallTag, budget: Budget | None,
                    seed: int | None = None) -> list[float]:
        verdict = self.task.rule_check(self.question, text)
        if verdict is not None:
            return [100.0 if verdict else -100.0]
        if self.fallback is None:
            return [0.0]
        return await self.fallback.score(question, text, k, tag, budget, seed=seed)
