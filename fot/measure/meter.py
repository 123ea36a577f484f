"""The meter: grading after the search, and the numbers a run is judged by.

Accuracy is the share of problems whose *returned* answer is right. "Oracle pass@k" (some node
of some tree produced a right answer) is an upper bound on what a better decision rule could
reach; it is always reported separately and labelled as such, never as accuracy.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..errors import UsageError
from ..backend.budget import Price
from .results import Record
from .signals import measure_signals
from .usage import Usage
from ..search.decision import DECISION_RULES, DecisionRule, Vote, decision_rule, vote
from .stats import wilson_ci
from ..tasks import Task



def grade(result: dict, task: Task, reference: str | None) -> dict:
    """Add reference, correct and oracle_correct to a result dict (None when there is nothing to grade by)."""
    question = result.get("question", "")
    gradable = reference is not None or not task.needs_reference
    result["reference"] = reference
    if not gradable:
        result["correct"] = result["oracle_correct"] = None
        return result
    result["correct"] = bool(task.grade(result.get("answer"), reference, question))
    result["oracle_correct"] = any(task.grade(a, reference, question) for a in result.get("answers_seen") or [])
    result["oracle_correct"] = result["oracle_correct"] or result["correct"]
    return result


@dataclass
class Summary:
    problems: int
    graded: int
    correct: int
    accuracy: float | None
    accuracy_ci95: tuple[float, float] | None
    oracle_pass_at_k: float | None  # any node right: an upper bound, not accuracy
    tokens_mean: float
    tokens_median: float
    prompt_tokens_mean: float
    completion_tokens_mean: float
    cached_tokens_mean: float
    tokens_per_solved: float | None
    usd_total: float
    usd_per_solved: float | None
    calls: int
    errors: int
    wall_s_mean: float
    decisions: dict
    # charged at their reservation, usage never reported (cut off in flight by a stop, timed out): an upper
    # bound on what the server spent, inside tokens_mean
    unknown_tokens_mean: float = 0.0
    eval_samples: int = 0  # self-evaluation samples asked for ...
    eval_parse_rate: float | None = None  # ... and the share whose score line could be read
    # share of all tokens per role, over the problems that recorded it: evaluation, critique, refinement,
    # decision (the expert), and the rest (first answers, input preparation)
    token_share: dict = field(default_factory=dict)
    signals: list = field(default_factory=list)  # fot.measure.signals: each signal's parse rate, AUROC, cost

    def to_dict(self) -> dict:
        return {**asdict(self), "signals": [s.to_dict() for s in self.signals]}


def summarize(rows: list[dict], price: Price | None = None) -> Summary:
    recs = [Record.from_row(r) for r in rows]
    n = len(recs)
    graded = [r for r in recs if r.correct is not None]
    correct = sum(1 for r in graded if r.correct)
    acc = correct / len(graded) if graded else None
    ci = wilson_ci(correct, len(graded)) if graded else None
    oracle = sum(1 for r in graded if r.oracle_correct) / len(graded) if graded else None
    totals = [r.tokens.total for r in recs] or [0]
    mean = lambda k: statistics.fmean(getattr(r.tokens, k) for r in recs) if recs else 0.0  # noqa: E731
    spent = sum(r.tokens.total for r in recs)
    usd = sum(r.cost_usd for r in recs)
    asked = sum(r.evaluation.get("asked", 0) for r in recs)
    parsed = sum(r.evaluation.get("parsed", 0) for r in recs)
    roles: dict[str, int] = {}
    for r in recs:
        for role, v in (r.roles or {}).items():
            roles[role] = roles.get(role, 0) + int(v)
    decisions: dict[str, int] = {}
    for r in recs:
        decisions[r.decision] = decisions.get(r.decision, 0) + 1
    return Summary(
        problems=n, graded=len(graded), correct=correct, accuracy=acc, accuracy_ci95=ci, oracle_pass_at_k=oracle,
        tokens_mean=statistics.fmean(totals), tokens_median=statistics.median(totals),
        prompt_tokens_mean=mean("prompt"), completion_tokens_mean=mean("completion"), cached_tokens_mean=mean("cached"),
        unknown_tokens_mean=mean("unknown"), tokens_per_solved=spent / correct if correct else None, usd_total=usd,
        usd_per_solved=(usd / correct if correct else None) if price is not None else None,
        calls=sum(r.calls for r in recs), errors=sum(1 for r in recs if r.error),
        wall_s_mean=statistics.fmean(r.wall_s for r in recs) if recs else 0.0, decisions=decisions,
        eval_samples=asked, eval_parse_rate=parsed / asked if asked else None, token_share=role_shares(roles),
        signals=measure_signals(rows))


SHARE_OF = {"evaluation": ("evaluate", "reward_model"), "critique": ("critique",), "refinement": ("refine",),
            "decision": ("expert",)}


def role_shares(roles: dict[str, int]) -> dict[str, float]:
    """{evaluation, critique, refinement, decision, other}: each one's share of the tokens in `roles`."""
    total = sum(roles.values())
    if not total:
        return {}
    out = {k: sum(roles.get(r, 0) for r in rs) / total for k, rs in SHARE_OF.items()}
    out["other"] = 1 - sum(out.values())
    return out


# -- anytime and grid: smaller forests replayed from one run's snapshots ---------------------------

GRID_NOTE = ("Cells smaller than the run replay its snapshots: the first t trees at rollout r, decided by the same "
             "decision-rule object as the run. A cell is 'run' (the run itself), 'replayed exactly' (what a run of it "
             "would have returned and spent, problem by problem) or 'replayed approximately': where its vote needs the "
             "expert, a run of it would have asked the expert (a call and a choice the run never made), so the replay "
             "can only stand in the rule's fallback at no token cost; a budget bound or an early stop also makes a "
             "replay approximate. Approximate cells are shown with ~ and left out of the frontier, the target and "
             "the forest-against-rival table. A run with --tie-break q decides every cell by that fallback, so its "
             "replay is exact.")


@dataclass
class Cell:
    trees: int
    rollouts: int
    problems: int
    graded: int
    correct: int
    accuracy: float | None
    ci95: tuple[float, float] | None
    tokens_mean: float
    tokens_per_solved: float | None
    usd_mean: float | None
    usd_per_solved: float | None
    expert_recorded: int  # decisions taken from the run's expert call (full cell only)
    expert_fallback: int  # decisions where the vote needed the expert and the fallback stood in
    method: str = "forest"  # forest | cot | sc | bon
    samples: int = 0  # cot / sc / bon: how many samples
    ids: list[str] = field(default_factory=list)  # the graded problems, sorted ...
    outcomes: list[bool] = field(default_factory=list)  # ... and whether each was right (for paired comparisons)
    inexact: int = 0  # problems whose replay of this cell is not what a run of it would have done ...
    inexact_reason: str = ""  # ... and the most common reason; such a cell is marked and kept out of comparisons
    run: bool = False  # this cell is the run itself, not a replay
    answers: list = field(default_factory=list)  # per graded problem (ids order): the answer returned ...
    tokens: list[int] = field(default_factory=list)  # ... and the tokens spent on it

    @property
    def exact(self) -> bool:
        return self.inexact == 0

    @property
    def status(self) -> str:
        """run | replayed exactly | replayed approximately: what sweep.md says of the cell."""
        if self.run and self.exact:
            return "run"
        return "replayed exactly" if self.exact else "replayed approximately"

    def restrict(self, keep: "set[str]") -> "Cell":
        """The same cell on a subset of its graded problems (for choosing on one half, reporting on the other)."""
        idx = [i for i, k in enumerate(self.ids) if k in keep]
        outcomes = [self.outcomes[i] for i in idx]
        tokens = [self.tokens[i] for i in idx] if self.tokens else []
        n_right = sum(outcomes)
        return dataclasses.replace(
            self, problems=len(idx), graded=len(idx), correct=n_right,
            accuracy=n_right / len(idx) if idx else None, ci95=wilson_ci(n_right, len(idx)) if idx else None,
            tokens_mean=statistics.fmean(tokens) if tokens else 0.0,
            tokens_per_solved=sum(tokens) / n_right if n_right else None, usd_mean=None, usd_per_solved=None,
            ids=[self.ids[i] for i in idx], outcomes=outcomes, tokens=tokens,
            answers=[self.answers[i] for i in idx] if self.answers else [])

    @property
    def label(self) -> str:
        return f"{self.trees}x{self.rollouts}" if self.method == "forest" else f"{self.method}@{self.samples}"

    def to_dict(self) -> dict:
        return asdict(self)


def _snapshot_at(snaps: list[dict], r: int) -> dict | None:
    best = None
    for s in snaps:
        if s["rollout"] <= r:
            best = s
    return best


def rule_of(row: "dict | Record") -> "DecisionRule":
    """The decision rule a result was decided by, rebuilt from its settings (runs before the rule was
    recorded used the paper's order, `activation_first`)."""
    rec = Record.from_row(row)
    settings = rec.settings
    name = settings.get("decision") or "activation_first"
    if name not in DECISION_RULES:
        raise UsageError(f"result {rec.id!r} was decided by '{name}', which is not registered in "
                         f"fot.search.decision.DECISION_RULES; pass the rule object to replay it")
    return decision_rule(name, settings.get("activation_threshold", 0.0), settings.get("majority", 0.5))


def inexact_reason(row: "dict | Record", t: int, r: int) -> str:
    """Why the (t, r) cell of this problem cannot be replayed exactly from its run, or "" if it can."""
    rec = Record.from_row(row)
    if t >= rec.tree_count and r >= rec.rollouts:
        return ""  # the run itself
    if rec.early_stopped:
        return "early stop: when to stop depends on the forest's size"
    bound = rec.budget_bound
    if bound.get("problem"):
        return "the problem budget bound: a smaller search would have had more room"
    if t < rec.tree_count and rec.settings.get("tree_allowance") == "share" and any((bound.get("trees") or [])[:t]):
        return "each tree's share (budget / trees) bound: with fewer trees it is larger (use --tree-budget)"
    return ""


def replay(row: dict, task: Task, t: int, r: int, rule: "DecisionRule | None" = None) -> tuple[str | None, dict, str]:
    """The answer a forest of the first `t` trees with `r` rollouts would have returned for this
    problem, its token usage (prompt, completion, cached, total) and how it was decided. The vote is
    the forest's own decision rule (`rule`, else the one the row names), called the same way.
    `how` starts with "inexact:" (and says why) when the run cannot tell what that cell would have done."""
    rec = Record.from_row(row)
    reason = inexact_reason(rec, t, r)
    rule = rule or rule_of(rec)
    full = t >= rec.tree_count and r >= rec.rollouts
    if not full and not reason and not getattr(rule, "replayable", True):
        # a rule that reads more than a snapshot holds (answer, Q, tokens) cannot be replayed from them
        reason = f"the decision rule {getattr(rule, 'name', type(rule).__name__)!r} reads more than the snapshots hold"
    usage = Usage()
    votes = []
    for i in range(min(t, len(rec.snapshots))):
        s = _snapshot_at(rec.snapshots[i], r)
        if s is None:
            votes.append(Vote(i, None, None))
            continue
        votes.append(Vote(i, s["answer"], s["q"], proven=bool(s.get("proven"))))
        usage += Usage.from_dict(s)
    decision = vote(rule, votes, task, rec.question, rec.settings.get("tie_break") or "expert",
                    proof_wins=rec.settings.get("proof", "off") != "off")  # runs before the setting: off
    how, answer = decision.how, decision.answer
    if decision.needs_expert:
        if full and rec.decision in ("expert", "fallback", "fallback_q"):
            answer, how = rec.answer, "expert_recorded"
            usage += rec.expert_usage
        else:  # a run of this cell would have paid for an expert call and taken its pick: not known here
            answer, how = rule.fallback(decision, votes).answer, "expert_fallback"
            reason = reason or EXPERT_NOT_RECORDED
    return answer, usage.to_dict(), (f"inexact:{reason}" if reason else how)


EXPERT_NOT_RECORDED = "the expert tie-break: a run of this cell would have asked the expert, which the run never did"


def measure(rows: list[dict], task: Task, pick: Callable[[dict], tuple[str | None, dict, str]],
            price: Price | None = None, **label) -> Cell:
    """One cell: `pick(row)` gives (answer, usage, how) per problem; graded problems are kept in id order
    so two cells over the same rows can be compared problem by problem."""
    correct, tokens, usd, ids, reasons, answers, graded_tokens = [], [], [], [], [], [], []
    recorded = fallback = 0
    for row in sorted((Record.from_row(r) for r in rows), key=lambda r: r.id):
        answer, usage, how = pick(row)
        recorded += how == "expert_recorded"
        fallback += how in ("expert_fallback", f"inexact:{EXPERT_NOT_RECORDED}")
        if how.startswith("inexact:"):
            reasons.append(how.removeprefix("inexact:"))
        tokens.append(usage["total"])
        if price is not None:
            usd.append(price.cost(usage["prompt"], usage["completion"], usage["cached"]))
        if row.reference is not None or not task.needs_reference:
            ids.append(row.id)
            correct.append(bool(task.grade(answer, row.reference, row.question)))
            answers.append(answer)
            graded_tokens.append(usage["total"])
    n_right, graded = sum(correct), len(correct)
    return Cell(
        trees=label.get("trees", 0), rollouts=label.get("rollouts", 0), problems=len(rows), graded=graded,
        correct=n_right, accuracy=n_right / graded if graded else None,
        ci95=wilson_ci(n_right, graded) if graded else None,
        tokens_mean=statistics.fmean(tokens) if tokens else 0.0,
        tokens_per_solved=sum(tokens) / n_right if n_right else None,
        usd_mean=statistics.fmean(usd) if usd else None,
        usd_per_solved=sum(usd) / n_right if (usd and n_right) else None,
        expert_recorded=recorded, expert_fallback=fallback, method=label.get("method", "forest"),
        samples=label.get("samples", 0), ids=ids, outcomes=correct, inexact=len(reasons),
        inexact_reason=max(sorted(set(reasons)), key=reasons.count) if reasons else "", run=label.get("run", False),
        answers=answers, tokens=graded_tokens)


def grid(rows: list[dict], task: Task, trees: list[int], rollouts: list[int], price: Price | None = None,
         rule: "DecisionRule | None" = None) -> list[Cell]:
    """Accuracy and tokens of every (t, r) cell, replayed from one run's results (by `rule` if given,
    else the rule each row names)."""
    full = (max((Record.from_row(r).tree_count for r in rows), default=0), max(
        (Record.from_row(r).rollouts for r in rows), default=0))
    return [measure(rows, task, lambda row: replay(row, task, t, r, rule), price, trees=t, rollouts=r,
                    run=(t, r) == full) for t in trees for r in rollouts]


def replay_samples(row: dict, task: Task, n: int) -> tuple[str | None, dict, str]:
    """What a cot / sc / bon run with the first `n` samples would have returned, and its tokens."""
    from ..search.baselines import decide_samples

    rec = Record.from_row(row)
    first = rec.samples[:n]
    usage = sum((Usage.from_dict(s) for s in first), Usage())
    answer, how, _ = decide_samples(rec.method if rec.method != "forest" else "sc", first, task, rec.question,
                                    rec.settings.get("decision"))
    if n < len(rec.samples) and any(s.get("error_kind") == "budget" for s in rec.samples):
        # the run's samples competed for one problem budget: fewer samples would each have had more room
        how = "inexact:the problem budget bound: a run of fewer samples would have had more room"
    return answer, usage.to_dict(), how


def sample_curve(rows: list[dict], task: Task, ns: list[int], price: Price | None = None) -> list[Cell]:
    """Accuracy and tokens of a sampling baseline at every n, replayed from one run of the largest."""
    method = rows[0].get("method", "sc") if rows else "sc"
    largest = max((len(Record.from_row(r).samples) for r in rows), default=0)
    return [measure(rows, task, lambda row: replay_samples(row, task, n), price, method=method, samples=n,
                    run=n >= largest) for n in ns]


def compare(a: Cell, b: Cell):
    """A minus B, problem by problem (`fot.measure.stats.paired_diff`), and B's tokens over A's."""
    from .stats import paired_diff

    if a.ids != b.ids:
        raise UsageError(f"{a.label} and {b.label} were graded on different problems")
    return paired_diff(a.outcomes, b.outcomes), (b.tokens_mean / a.tokens_mean if a.tokens_mean else float("nan"))


def pareto(cells: list[Cell]) -> list[Cell]:
    """Exact cells (forest cells and baselines alike) that no other exact cell beats on both counts: at least
    as accurate for no more tokens. Approximate cells are left out: they neither join nor remove anyone."""
    scored = [c for c in cells if c.accuracy is not None and c.exact]
    front = []
    for c in sorted(scored, key=lambda c: (c.tokens_mean, -c.accuracy)):
        if not front or c.accuracy > front[-1].accuracy:
            front.append(c)
    return front


def cheapest_reaching(cells: list[Cell], target: float) -> Cell | None:
    ok = [c for c in cells if c.accuracy is not None and c.exact and c.accuracy >= target]
    return min(ok, key=lambda c: c.tokens_mean) if ok else None


def halves(ids: list[str], salt: str = "fot.sweep") -> tuple[set[str], set[str]]:
    """Split problems in two fixed halves by a hash of their id (not their order, not their outcome): choose on
    the first, report on the second, so a cell picked for looking good is not then tested on the same luck."""
    import hashlib

    ranked = sorted(ids, key=lambda k: hashlib.blake2b(f"{salt}:{k}".encode(), digest_size=8).digest())
    cut = len(ranked) // 2
    return set(ranked[:cut]), set(ranked[cut:])


def diversity_pairs(cells: list[Cell]) -> list[tuple[Cell, Cell]]:
    """(more trees, fewer trees) pairs with the same trees x rollouts: diversity against volume."""
    by_product: dict[int, list[Cell]] = {}
    for c in cells:
        if c.rollouts >= 1:
            by_product.setdefault(c.trees * c.rollouts, []).append(c)
    pairs = []
    for group in by_product.values():
        group.sort(key=lambda c: c.trees)
        for i, wide in enumerate(group):
            for narrow in group[:i]:
                pairs.append((wide, narrow))
    return pairs
