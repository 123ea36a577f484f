"""Input diversity: how each tree of a forest is asked the question (FoT's rephrasings, retrieved worked
examples, shuffled premises).

    INPUT_KINDS     raw, rephrase, shuffle, example

`SearchConfig.inputs` names them by key; `assign` gives tree i its kind and temperature. To add one: a
class with `name` and `prepare(ctx)` (the `InputKind` protocol), and its line in `INPUT_KINDS`. None of
them ever sees a reference answer; a kind that cannot vary a question returns it raw, with a `note`
saying why. A kind asked for twice gives its `rank`-th variant (the k-th distinct shuffle, the k-th
nearest example, a rephrasing with another seed), so T trees get T distinct inputs where the kinds
can supply them; the forest replaces a duplicate that remains (`fot.search.forest`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from . import prompts
from ..backend.budget import Budget, BudgetExhausted
from ..errors import LLMError
from ..backend.ledger import CallTag

if TYPE_CHECKING:
    from ..backend.llm import LLMClient
    from ..tasks import Task


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


NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def numbers_of(text: str) -> set[str]:
    return {n.replace(",", "") for n in NUMBER.findall(text)}


def assign(inputs: tuple[str, ...], temperatures: tuple[float, ...], i: int) -> tuple[str, int, float]:
    """Tree i's (kind, rank, temperature). The first len(inputs) trees take each kind once; later trees cycle
    over the kinds that can vary (raw cannot: a second raw tree would repeat the first's prompt exactly).
    The temperature turns with each kind's rank, so kinds and temperatures are not in lockstep: with
    4 kinds and 2 temperatures, every kind runs at both."""
    kind = assign_kind(inputs, i)
    rank = sum(1 for j in range(i) if assign_kind(inputs, j) == kind)
    return kind, rank, temperatures[(inputs.index(kind) + rank) % len(temperatures)]


def assign_kind(inputs: tuple[str, ...], i: int) -> str:
    k = len(inputs)
    if i < k:
        return inputs[i]
    varying = [x for x in inputs if x != "raw"] or list(inputs)
    return varying[(i - k) % len(varying)]


class Rephrase:
    """The model restates the question in its own words (one call, charged to the tree). Accepted only if it
    keeps every number of the question: a rephrasing that drops or changes one asks another question."""

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
        lost = sorted(numbers_of(ctx.question) - numbers_of(text), key=lambda n: (len(n), n))
        if lost:
            return TreeInput(ctx.question, kind="raw", note=f"rephrase dropped the number(s) {', '.join(lost[:5])}")
        return TreeInput(text, kind="rephrase")


ABBREVIATIONS = ("Dr", "Mr", "Mrs", "Ms", "St", "Jr", "Sr", "Prof", "Mt", "vs", "etc", "e.g", "i.e", "No", "approx")
# a sentence that starts so leans on the one before it (order, reference, contrast): it moves with it
DEPENDENT = re.compile(
    r"^(?:then|after|afterwards|later|next|finally|so|but|however|also|this|that|these|those|it|its|he|she|they|"
    r"his|her|their|them|him|each|if|in addition|meanwhile|now|there|the rest|the remaining|the other|another|"
    r"instead|besides|still|yet|because|otherwise|together|both|half|twice|only|since)\b"
    r"|^(?:\w+[,]?\s+){0,2}(?:she|he|they|it|her|his|their|them|him|its)\b", re.I)


def sentences_of(text: str) -> list[str]:
    """Sentences, not split after an abbreviation ("Dr.") or inside a decimal ("3.5")."""
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    out: list[str] = []
    for p in parts:
        if out and (re.search(r"(?:^|\s)(?:" + "|".join(re.escape(a) for a in ABBREVIATIONS) + r")\.$", out[-1])
                    or re.fullmatch(r"[A-Z]\.", out[-1].split()[-1] if out[-1].split() else "")):
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    return out


def premise_blocks(question: str) -> tuple[list[str], str] | None:
    """(independent premise blocks, the last sentence), a dependent sentence glued to the one before it;
    None if there are fewer than two blocks to reorder."""
    sents = sentences_of(question)
    if len(sents) < 3:
        return None
    head, last = sents[:-1], sents[-1]
    blocks: list[str] = []
    for s in head:
        if blocks and DEPENDENT.match(s):
            blocks[-1] = f"{blocks[-1]} {s}"
        else:
            blocks.append(s)
    return (blocks, last) if len(blocks) >= 2 else None


def shuffle_premises(question: str, rng: random.Random) -> str:
    """Reorder the independent premises (every sentence but the last, the question itself; a sentence that
    leans on the one before, "Then ...", "She ...", moves with it); unchanged if there are fewer than two."""
    split = premise_blocks(question)
    if split is None:
        return question
    blocks, last = split
    original = " ".join(blocks + [last])
    for _ in range(5):
        rng.shuffle(blocks)
        if " ".join(blocks + [last]) != original:
            break
    return " ".join(blocks + [last])


def variants(make, question: str, seed: int, tries: int = 24) -> list[str]:
    """The distinct reorderings `make(question, rng)` gives over `tries` seeds, in the order first found."""
    out: list[str] = []
    for j in range(tries):
        v = make(question, random.Random(seed * 7919 + j))
        if v and v.strip() != question.strip() and v not in out:
            out.append(v)
    return out


class Shuffle:
    """Reorder what the question gives: the task's own `shuffle` (Game of 24 permutes its numbers,
    arithmetic commutes its operands) when it has one, else the premises of a word problem."""

    name = "shuffle"

    async def prepare(self, ctx: InputContext) -> TreeInput:
        found = self.variants(ctx)
        if not found:
            why = "nothing to reorder" if ctx.task.shuffle is not None else "fewer than two independent premises"
            return TreeInput(ctx.question, kind="raw", note=f"shuffle: {why}")
        return TreeInput(found[ctx.rank % len(found)], kind="shuffle")

    @staticmethod
    def variants(ctx: InputContext) -> list[str]:
        """Every distinct reordering, the same list for every tree of the problem (the k-th tree takes the k-th)."""
        own = ctx.task.shuffle
        return variants(own if own is not None else shuffle_premises, ctx.question, seed=0)


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
