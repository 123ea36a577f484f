"""The meter: grading after the search, and the numbers a run is judged by.

Accuracy is the share of problems whose *returned* answer is right. "Oracle pass@k" (some node
of some tree produced a right answer) is an upper bound on what a better decision rule could
reach; it is always reported separately and labelled as such, never as accuracy.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import numpy as np

from .budget import Price
from .tasks import Task


def grade(result: dict, task: Task, reference: str | None) -> dict:
    """Add reference, correct and oracle_correct to a result dict (None when there is nothing to grade by)."""
    question = result.get("question", "")
    gradable = reference is not None or task.name == "game24"
    result["reference"] = reference
    if not gradable:
        result["correct"] = result["oracle_correct"] = None
        return result
    result["correct"] = bool(task.grade(result.get("answer"), reference, question))
    result["oracle_correct"] = any(task.grade(a, reference, question) for a in result.get("answers_seen") or [])
    result["oracle_correct"] = result["oracle_correct"] or result["correct"]
    return result


def bootstrap_ci(values: list[float], level: float = 0.95, n_boot: int = 4000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    if not values:
        return (float("nan"), float("nan"))
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(n_boot, len(arr)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


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

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(rows: list[dict], price: Price | None = None) -> Summary:
    n = len(rows)
    graded = [r for r in rows if r.get("correct") is not None]
    correct = sum(1 for r in graded if r["correct"])
    acc = correct / len(graded) if graded else None
    ci = bootstrap_ci([1.0 if r["correct"] else 0.0 for r in graded]) if graded else None
    oracle = sum(1 for r in graded if r.get("oracle_correct")) / len(graded) if graded else None
    totals = [r["tokens"]["total"] for r in rows] or [0]
    mean = lambda k: statistics.fmean(r["tokens"][k] for r in rows) if rows else 0.0  # noqa: E731
    spent = sum(r["tokens"]["total"] for r in rows)
    usd = sum(r.get("cost_usd") or 0.0 for r in rows)
    decisions: dict[str, int] = {}
    for r in rows:
        decisions[r.get("decision", "none")] = decisions.get(r.get("decision", "none"), 0) + 1
    return Summary(
        problems=n, graded=len(graded), correct=correct, accuracy=acc, accuracy_ci95=ci, oracle_pass_at_k=oracle,
        tokens_mean=statistics.fmean(totals), tokens_median=statistics.median(totals),
        prompt_tokens_mean=mean("prompt"), completion_tokens_mean=mean("completion"), cached_tokens_mean=mean("cached"),
        tokens_per_solved=spent / correct if correct else None, usd_total=usd,
        usd_per_solved=(usd / correct if correct else None) if price is not None else None,
        calls=sum(r.get("calls", 0) for r in rows), errors=sum(1 for r in rows if r.get("error")),
        wall_s_mean=statistics.fmean(r.get("wall_s", 0.0) for r in rows) if rows else 0.0, decisions=decisions)
