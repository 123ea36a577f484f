"""The pluggable rules of the search, one home each.

    INPUT_KINDS     how a tree's input is varied         raw, rephrase, shuffle, example
    VERIFIERS       how candidates are scored in search   self, rule, reward_model (and "auto"),
                                                          classes and protocol in fot/verifiers.py
    DECISION_RULES  how the forest picks one answer       majority_first, activation_first

`SearchConfig` names them by key and is checked against these registries; agent code may pass its
own object instead (`engine.solve(..., verifier=obj, decision=obj)`). The forest and the meter's
replay call the *same* decision-rule object, so a replayed cell is decided as a run would be.

To add one: write a class with the protocol's methods (below) and add it to the registry. None of
these ever sees a reference answer.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .errors import UsageError
from . import prompts
from .budget import Budget, BudgetExhausted
from .ledger import CallTag
from .llm import LLMError
from .verifiers import RewardModel, RuleVerifier, Scores, SelfEvaluation, Verifier  # noqa: F401 (Scores: re-exported)

if TYPE_CHECKING:
    from .llm import LLMClient
    from .tasks import Task


class _Unset:
    """'Not set', where None is a legal value (e.g. `logprob_threshold=None` turns self-correction off)."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


# -- input diversity --------------------------------------------------------------------------------

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
        own = getattr(ctx.task, "shuffle", None)
        variant = own(ctx.question, rng) if callable(own) else shuffle_premises(ctx.question, rng)
        if not variant or variant.strip() == ctx.question.strip():
            why = "nothing to reorder" if callable(own) else "fewer than two premises to reorder"
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


# -- verifiers ---------------------------------------------------------------------------------------

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


# -- decision rules ----------------------------------------------------------------------------------

@dataclass
class Vote:
    tree: int
    answer: str | None
    q: float | None  # None: no self-evaluation of the tree's answer could be read


@dataclass
class Decision:
    answer: str | None
    text: str
    how: str  # unanimous | majority | single | expert | fallback | q | none; "expert" with answer None = needs one
    active: list[int]  # trees whose votes counted
    groups: list[tuple[str, list[int]]]  # (answer, trees) among the counted votes, largest first
    sparse_fallback: bool = False  # no tree passed the activation threshold, so all trees with an answer voted

    @property
    def needs_expert(self) -> bool:
        return self.how == "expert" and self.answer is None


def group_answers(items: list[tuple[int, str]], task: "Task", question: str) -> list[tuple[str, list[int]]]:
    groups: list[tuple[str, list[int]]] = []
    for idx, ans in items:
        for rep, members in groups:
            if task.equivalent(rep, ans, question):
                members.append(idx)
                break
        else:
            groups.append((ans, [idx]))
    groups.sort(key=lambda g: -len(g[1]))  # stable: ties keep first-seen order
    return groups


class DecisionRule(Protocol):
    name: str

    def decide(self, votes: list[Vote], task: "Task", question: str) -> Decision:
        """The vote; `needs_expert` when it cannot pick (the forest then asks the expert, or calls `fallback`)."""

    def fallback(self, decision: Decision, votes: list[Vote]) -> Decision:
        """A pick without the expert (its call failed, or `tie_break='q'`)."""

    def settled(self, finished: list[Vote], remaining: int, task: "Task", question: str) -> bool:
        """Whether no vote of the `remaining` trees could change the decision (early stop)."""


def _q(v: float | None) -> float:
    return v if v is not None else float("-inf")


class ActivationFirst:
    """The FoT paper's order: sparse activation (trees whose best Q is below `threshold`, or could not
    be scored, do not vote), then a majority of the active trees, then the expert. Strong when the
    verifier is good; with a noisy one, activation drops random votes."""

    name = "activation_first"

    def __init__(self, threshold: float = 0.0, majority: float = 0.5):
        self.threshold, self.majority = threshold, majority

    def _active(self, votes: list[Vote]) -> tuple[list[Vote], bool]:
        answered = [v for v in votes if v.answer is not None]
        active = [v for v in answered if v.q is not None and v.q >= self.threshold]
        return (active, False) if active or not answered else (answered, True)

    def _vote(self, voters: list[Vote], task: "Task", question: str, sparse: bool) -> Decision:
        groups = group_answers([(v.tree, v.answer) for v in voters], task, question)
        ids = [v.tree for v in voters]
        if not groups:
            return Decision(None, "", "none", ids, groups, sparse)
        top, members = groups[0]
        if len(voters) == 1:
            return Decision(top, "", "single", ids, groups, sparse)
        if len(groups) == 1:
            return Decision(top, "", "unanimous", ids, groups, sparse)
        if len(members) > self.majority * len(voters) and len(members) > len(groups[1][1]):
            return Decision(top, "", "majority", ids, groups, sparse)
        return Decision(None, "", "expert", ids, groups, sparse)

    def decide(self, votes: list[Vote], task: "Task", question: str) -> Decision:
        active, sparse = self._active(votes)
        return self._vote(active, task, question, sparse)

    def fallback(self, decision: Decision, votes: list[Vote]) -> Decision:
        """The largest group, then the best single Q in it: agreement is never penalised (a sum of
        negative Q would be), and an unscored tree counts as a vote but never as evidence."""
        qs = {v.tree: _q(v.q) for v in votes}
        best = max(decision.groups, key=lambda g: (len(g[1]), max(qs.get(i, float("-inf")) for i in g[1])))
        decision.answer, decision.how = best[0], "fallback"
        return decision

    @staticmethod
    def _unbeatable(voters: list[Vote], remaining: int, majority: float, task: "Task", question: str) -> bool:
        groups = group_answers([(v.tree, v.answer) for v in voters], task, question)
        if not groups:
            return False
        top = len(groups[0][1])
        second = len(groups[1][1]) if len(groups) > 1 else 0
        # the worst case: every remaining tree votes, and all for the runner-up
        return top > majority * (len(voters) + remaining) and top > second + remaining

    def settled(self, finished: list[Vote], remaining: int, task: "Task", question: str) -> bool:
        active = [v for v in finished if v.answer is not None and v.q is not None and v.q >= self.threshold]
        return self._unbeatable(active, remaining, self.majority, task, question)


class MajorityFirst(ActivationFirst):
    """The default: a strict majority of *all* trees with an answer decides first; only without one does
    sparse activation (then the expert) break the tie. On a verifier that is noise, this is never worse
    than a plain majority vote; on a good one it keeps the paper's use of Q wherever the trees disagree."""

    name = "majority_first"

    def decide(self, votes: list[Vote], task: "Task", question: str) -> Decision:
        answered = [v for v in votes if v.answer is not None]
        d = self._vote(answered, task, question, False)
        if not d.needs_expert:
            return d
        return super().decide(votes, task, question)

    def settled(self, finished: list[Vote], remaining: int, task: "Task", question: str) -> bool:
        answered = [v for v in finished if v.answer is not None]
        return self._unbeatable(answered, remaining, self.majority, task, question)


DECISION_RULES: dict[str, Callable[..., DecisionRule]] = {r.name: r for r in (MajorityFirst, ActivationFirst)}


def decision_rule(name: str, threshold: float = 0.0, majority: float = 0.5) -> DecisionRule:
    try:
        return DECISION_RULES[name](threshold=threshold, majority=majority)
    except KeyError:
        raise UsageError(f"unknown decision rule '{name}'; known: {', '.join(DECISION_RULES)}") from None
