"""Sampling that stops early, decided from the samples alone: the one logic that both the methods
(fot/methods/esc.py, fot/methods/deepconf.py) and their replays run, so a smaller budget, or a plain
sc run's full samples, replay exactly.

- ESC (early-stopping self-consistency, Li et al. 2024): samples in windows of `window`; stop at the
  first window whose answers all agree, and return that answer; else the majority of all.
- DeepConf online (Fu et al. 2025): the first `warmup` traces run to the end and set a threshold, the
  `100 - keep` th percentile of their lowest group confidences (keep 90: "DeepConf-high", 10: "-low");
  every later trace is stopped at the first window whose confidence falls below it and does not vote.
  The vote is the finished traces' answers summed by their trace confidence.

A sample is a dict as recorded (fot.search.baselines.Sample): answer, confidence (per token), prompt,
completion, cached. None of this sees a reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .confidence import WINDOW, lowest_group, percentile, stop_index, trace_confidence
from .decision import Vote, Weighted, group_answers

if TYPE_CHECKING:
    from ..tasks import Task


@dataclass
class EarlyDecision:
    answer: str | None
    how: str
    used: int  # samples drawn (ESC) or traces started (DeepConf)
    usage: dict = field(default_factory=dict)  # prompt, completion, cached, total of what was drawn, cut traces cut
    threshold: float | None = None  # DeepConf: the confidence threshold set by the warm-up
    stopped: list[int] = field(default_factory=list)  # DeepConf: traces stopped early, by index


def _usage(samples: list[dict], completion_of=None) -> dict:
    u = {"prompt": 0, "completion": 0, "cached": 0}
    for s in samples:
        u["prompt"] += s.get("prompt", 0)
        u["cached"] += s.get("cached", 0)
        u["completion"] += s.get("completion", 0) if completion_of is None else completion_of(s)
    u["total"] = u["prompt"] + u["completion"]
    return u


def majority(samples: list[dict], task: "Task", question: str) -> tuple[str | None, str]:
    answered = [(s["index"], s["answer"]) for s in samples if s.get("answer") is not None]
    if not answered:
        return None, "none"
    groups = group_answers(answered, task, question)
    return groups[0][0], "majority" if len(groups[0][1]) * 2 > len(answered) else "plurality"


def esc_windows(samples: int, window: int) -> list[range]:
    return [range(i, min(i + window, samples)) for i in range(0, samples, window)]


def esc_stops(drawn: list[dict], task: "Task", question: str) -> str | None:
    """The window's answer when its samples all agree (and all have one), else None."""
    if not drawn or any(s.get("answer") is None for s in drawn):
        return None
    first = drawn[0]["answer"]
    return first if all(task.equivalent(first, s["answer"], question) for s in drawn[1:]) else None


def decide_esc(samples: list[dict], task: "Task", question: str, n: int, window: int) -> EarlyDecision:
    """ESC with at most `n` samples, from samples in index order (at least as many as it draws)."""
    drawn: list[dict] = []
    for w in esc_windows(n, window):
        batch = [samples[i] for i in w if i < len(samples)]
        drawn += batch
        agreed = esc_stops(batch, task, question)
        if agreed is not None:
            return EarlyDecision(agreed, "window_agrees" if len(drawn) < n else "majority", len(drawn), _usage(drawn))
        if len(batch) < len(w):
            break
    answer, how = majority(drawn, task, question)
    return EarlyDecision(answer, how, len(drawn), _usage(drawn))


def deepconf_threshold(warm: list[dict], keep: float, window: int = WINDOW) -> float | None:
    lows = [g for g in (lowest_group(s.get("confidence"), window) for s in warm) if g is not None]
    return percentile(lows, 100 - keep) if lows else None


def decide_deepconf(samples: list[dict], task: "Task", question: str, n: int, warmup: int, keep: float,
                    window: int = WINDOW) -> EarlyDecision:
    """DeepConf online with `n` traces, from traces in index order: full ones (an sc run's) are cut where
    the online method would have stopped them, and cut ones (its own run's) stay as they are."""
    traces = samples[:n]
    warm = traces[:warmup]
    threshold = deepconf_threshold(warm, keep, window)
    cut: dict[int, int] = {}
    if threshold is not None:
        for s in traces[warmup:]:
            at = stop_index(s.get("confidence") or [], threshold, window)
            if at is not None:
                cut[s["index"]] = at
    voters = [s for s in traces if s["index"] not in cut and s.get("answer") is not None]
    votes = [Vote(s["index"], s["answer"], None, confidence=trace_confidence(s.get("confidence"), window)) for s in voters]
    d = Weighted()._weighted(votes, lambda v: v.confidence if v.confidence is not None else 1.0, task, question,
                             "confidence")
    usage = _usage(traces, lambda s: min(s.get("completion", 0), cut.get(s["index"], 10**9)))
    return EarlyDecision(d.answer, d.how, len(traces), usage, threshold, sorted(cut))
