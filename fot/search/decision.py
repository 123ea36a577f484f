"""The decision: how a forest's trees (or a replay's first t trees) pick one answer.

    DECISION_RULES  majority_first (default), activation_first (the FoT paper's order)

A rule votes (`decide`), falls back without the expert (`fallback`), and tells when the remaining
trees could no longer change the outcome (`settled`, for early stop). `vote` applies a rule and the
tie-break that needs no call, and is the one path for the forest and the meter's replay alike: what
is left to them is the expert (a live call in the forest, the recorded answer in a replay). To add a
rule: a class with the `DecisionRule` methods and its line in `DECISION_RULES`.

A proof outranks every rule: when `proof_wins` and some tree's answer was proven by a complete verifier
(`Vote.proven`, the Game-of-24 rule check), `vote` returns it (how "proven") before any rule is asked, so
no count of unproven votes can outvote it. Rules themselves never see the difference.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from ..errors import UsageError

if TYPE_CHECKING:
    from ..tasks import Task


@dataclass
class Vote:
    tree: int
    answer: str | None
    q: float | None  # None: no self-evaluation of the tree's answer could be read
    _: KW_ONLY  # by name only: a confidence passed by position once landed in `proven`
    proven: bool = False  # a complete verifier proved this answer right (see `vote`)
    confidence: float | None = None  # trace confidence from log-probs (fot/search/confidence.py), when kept


@dataclass
class Decision:
    answer: str | None
    text: str
    how: str  # unanimous | majority | single | expert | fallback | q | proven | none; "expert" with answer None = needs one
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


class Weighted(ActivationFirst):
    """Votes summed by score (search-and-learn's weighted best-of-N): each answer's weight is the sum
    over its votes of (Q + 100) / 200, in [0, 1]; a vote with no readable score weighs 0.5 (what a
    verifier that says nothing would give every vote, so with no scores at all this is the majority)."""

    name = "weighted"

    @staticmethod
    def weight(v: Vote) -> float:
        return 0.5 if v.q is None else min(1.0, max(0.0, (v.q + 100.0) / 200.0))

    def _weighted(self, voters: list[Vote], weight: Callable[[Vote], float], task: "Task", question: str,
                  how: str) -> Decision:
        groups = group_answers([(v.tree, v.answer) for v in voters], task, question)
        ids = [v.tree for v in voters]
        if not groups:
            return Decision(None, "", "none", ids, groups)
        w = {v.tree: weight(v) for v in voters}
        order = sorted(range(len(groups)), key=lambda i: (-sum(w[t] for t in groups[i][1]), i))  # ties: first seen
        groups = [groups[i] for i in order]
        if len(voters) == 1:
            return Decision(groups[0][0], "", "single", ids, groups)
        return Decision(groups[0][0], "", "unanimous" if len(groups) == 1 else how, ids, groups)

    def decide(self, votes: list[Vote], task: "Task", question: str) -> Decision:
        return self._weighted([v for v in votes if v.answer is not None], self.weight, task, question, "weighted")

    def fallback(self, decision: Decision, votes: list[Vote]) -> Decision:
        return decision  # the weighted vote always picks

    def settled(self, finished: list[Vote], remaining: int, task: "Task", question: str) -> bool:
        answered = [v for v in finished if v.answer is not None]
        groups = group_answers([(v.tree, v.answer) for v in answered], task, question)
        sums = sorted((sum(self.weight(v) for v in answered if v.tree in m) for _, m in groups), reverse=True)
        return bool(sums) and sums[0] > (sums[1] if len(sums) > 1 else 0.0) + remaining  # a vote weighs <= 1


class ConfidenceVote(Weighted):
    """DeepConf's offline vote (Fu et al. 2025): keep the most confident `keep` share of the traces by
    their confidence from log-probs, then sum their votes by that confidence. Votes without log-probs
    (a backend that sends none, or the forest's trees) count as plain votes: with none, the majority."""

    name = "confidence"
    keep = 0.5  # DeepConf keeps the top 10% (low) or 90% (high) of hundreds of traces; of 8, half

    def decide(self, votes: list[Vote], task: "Task", question: str) -> Decision:
        answered = [v for v in votes if v.answer is not None]
        known = [v for v in answered if v.confidence is not None]
        if not known:
            return self._weighted(answered, lambda v: 1.0, task, question, "majority")
        import math

        kept = sorted(known, key=lambda v: (-v.confidence, v.tree))[:max(1, math.ceil(self.keep * len(known)))]
        kept += [v for v in answered if v.confidence is None]
        kept.sort(key=lambda v: v.tree)
        return self._weighted(kept, lambda v: v.confidence if v.confidence is not None else 1.0, task, question,
                              "confidence")

    def settled(self, finished: list[Vote], remaining: int, task: "Task", question: str) -> bool:
        """With log-probs, never (who is kept depends on the traces still to come); without (the forest's
        trees), as the plain majority it then is."""
        answered = [v for v in finished if v.answer is not None]
        if any(v.confidence is not None for v in answered):
            return False
        groups = group_answers([(v.tree, v.answer) for v in answered], task, question)
        return bool(groups) and len(groups[0][1]) > (len(groups[1][1]) if len(groups) > 1 else 0) + remaining


DECISION_RULES: dict[str, Callable[..., DecisionRule]] = {r.name: r for r in (MajorityFirst, ActivationFirst)}
DECISION_RULES.update({r.name: r for r in (Weighted, ConfidenceVote)})
SAMPLE_RULES = ("weighted", "confidence")  # the rules sc and bon decide by when --decision names one


def decision_rule(name: str, threshold: float = 0.0, majority: float = 0.5) -> DecisionRule:
    try:
        return DECISION_RULES[name](threshold=threshold, majority=majority)
    except KeyError:
        raise UsageError(f"unknown decision rule '{name}'; known: {', '.join(DECISION_RULES)}") from None


def proven_decision(votes: list[Vote], task: "Task", question: str) -> Decision | None:
    """The decision a proof makes (the first proven tree's answer, how "proven"), or None without one."""
    proven = [v for v in votes if v.proven and v.answer is not None]
    if not proven:
        return None
    groups = group_answers([(v.tree, v.answer) for v in proven], task, question)
    return Decision(proven[0].answer, "", "proven", [v.tree for v in proven], groups)


def vote(rule: DecisionRule, votes: list[Vote], task: "Task", question: str, tie_break: str,
         proof_wins: bool = False) -> Decision:
    """The rule's vote; when it cannot pick and `tie_break` is "q", the rule's own fallback (how "q").
    A decision that still `needs_expert` waits for the expert; `fallback` is what stands if there is none.
    With `proof_wins`, a proven answer decides first (`proven_decision`)."""
    if proof_wins:
        d = proven_decision(votes, task, question)
        if d is not None:
            return d
    d = rule.decide(votes, task, question)
    if d.needs_expert and tie_break == "q":
        d = rule.fallback(d, votes)
        d.how = "q"
    return d
