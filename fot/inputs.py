"""Input diversity: how each tree of a forest is asked the question (FoT's rephrasings, retrieved worked
examples, shuffled premises).

    INPUT_KINDS     raw, rephrase, shuffle, example

`SearchConfig.inputs` names them by key, cycled over the trees. To add one: a class with `name` and
`prepare(ctx)` (the `InputKind` protocol), and its line in `INPUT_KINDS`. None of them ever sees a
reference answer; a kind that cannot vary a question returns it raw, with a `note` saying why.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from . import prompts
from .budget import Budget, BudgetExhausted
from .errors import LLMError
from .ledger import CallTag

if TYPE_CHECKING:
    from .llm import LLMClient
    from .tasks import Task


@dataclass
class TreeInput:
    question: str  # the question as this tree is asked it
    hint: str = ""  # context shown before the question (a worked example)
    kind: str = "raw"  # the kind actually used
    note: str = ""  # why the input is the raw question, when another kind was asked for


@dataclass
class InputContext:
    question: str
    task: "Task"
    llm: "LLMClient"
    budget: Budget
    tree: int
    rank: int  # how many earlier trees got this same kind: the second "example" tree takes the 2nd-nearest
    problem_id: str
    seed: int
    examples: list[tuple[str, str]]  # solved (question, solution) pairs: the user's own, else the task's
    max_tokens: int


class InputKind(Protocol):
    name: str

    async def prepare(self, ctx: InputContext) -> TreeInput:
        """The input tree `ctx.tree` will see; the raw question with a `note` when this kind cannot vary it."""


class Raw:
    name = "raw"

    async def prepare(self, ctx: InputContext) -> TreeInput:
        return TreeInput(ctx.question)


class Rephrase:
    """The model restates the question in its own words (one call, charged to the tree)."""

    name = "rephrase"

    async def prepare(self, ctx: InputContext) -> TreeInput:
        try:
            c = await ctx.llm.chat(prompts.rephrase(ctx.question), role="rephrase", tag=CallTag(ctx.problem_id, ctx.tree, 0),
                                   max_tokens=min(ctx.max_tokens, 256), temperature=0.7, seed=ctx.seed, budget=ctx.budget)
        except (LLMError, BudgetExhausted) as e:
            return TreeInput(ctx.question, kind="raw", note=f"rephrase failed: {type(e).__name__}")
        text = c.text.strip()
        if not text or text == ctx.question.strip() or len(text) > 4 * len(ctx.question) + 200:
            return TreeInput(ctx.question, kind="raw", note="rephrase unusable (empty, unchanged or too long)")
        return TreeInput(text, kind="rephrase")


def shuffle_premises(question: str, rng: random.Random) -> str:
    """Shuffle every sentence but the last (the question itself); unchanged if there are fewer than two premises."""
    sentences = re.split(r"(?<=[.!])\s+", question.strip())
    if len(sentences) < 3:
        return question
    head, last = sentences[:-1], sentences[-1]
    for _ in range(5):
        rng.shuffle(head)
        if " ".join(head + [last]) != question.strip():
            break
    return " ".join(head + [last])


class Shuffle:
    """Reorder what the question gives: the task's own `shuffle` (Game of 24 permutes its numbers,
    arithmetic commutes its operands) when it has one, else the premises of a word problem."""

    name = "shuffle"

    async def prepare(self, ctx: InputContext) -> TreeInput:
        rng = random.Random(ctx.seed)
        own = ctx.task.shuffle
        variant = own(ctx.question, rng) if own is not None else shuffle_premises(ctx.question, rng)
        if not variant or variant.strip() == ctx.question.strip():
            why = "nothing to reorder" if own is not None else "fewer than two premises to reorder"
            return TreeInput(ctx.question, kind="raw", note=f"shuffle: {why}")
        return TreeInput(variant, kind="shuffle")


def nearest_examples(question: str, pool: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Worked examples by word overlap (Jaccard) with the question, nearest first; never the problem itself."""
    words = set(re.findall(r"\w+", question.lower()))
    scored = []
    for i, (q, sol) in enumerate(pool):
        if " ".join(q.lower().split()) == " ".join(question.lower().split()):
            continue
        w = set(re.findall(r"\w+", q.lower()))
        scored.append((-len(words & w) / (len(words | w) or 1), i, (q, sol)))
    return [ex for _, _, ex in sorted(scored)]


class Example:
    """A solved problem shown before the question: the nearest from `--examples` (the user's own, in
    their domain), else from the task's exemplars; the k-th tree of this kind gets the k-th nearest."""

    name = "example"

    async def prepare(self, ctx: InputContext) -> TreeInput:
        ranked = nearest_examples(ctx.question, ctx.examples)
        if not ranked:
            return TreeInput(ctx.question, kind="raw", note="example: no worked examples (pass --examples FILE)")
        q, sol = ranked[ctx.rank % len(ranked)]
        return TreeInput(ctx.question, hint=f"A worked example of a similar problem:\nQ: {q}\nA: {sol}", kind="example")


INPUT_KINDS: dict[str, InputKind] = {k.name: k for k in (Raw(), Rephrase(), Shuffle(), Example())}
