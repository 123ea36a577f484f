"""Every signal the search steered or decided on, measured after it against the reference: does the
verifier's score, or the log-prob confidence, tell a right answer from a wrong one on this model?

Per signal (each verifier that scored something, and `confidence` where log-probs were kept): how
many candidates it was asked about and how many it could read (parse rate), the AUROC of its value
against correctness (0.5: it says nothing; below 0.5: it points the wrong way), calibration (expected
calibration error of (Q + 100) / 200 read as a probability, 10 bins; scores only) and the tokens it
cost a problem. A candidate is a sample (sc, bon, esc, deepconf) or a tree's returned answer (forest).
This is what tells a user whether search can pay on their model: a verifier with AUROC near 0.5 cannot
steer a search, however many tokens it is given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..search.confidence import trace_confidence
from ..tasks import get_task
from .results import Record


@dataclass
class Signal:
    name: str  # a verifier's registry name, or "confidence"
    asked: int  # candidates it was asked about (self-evaluation samples for a verifier)
    read: int  # ... whose value could be read
    graded: int  # read values with a graded candidate (what the AUROC is over)
    auroc: float | None  # of the value against correctness; None without both right and wrong candidates
    ece: float | None  # expected calibration error (scores only)
    tokens_per_problem: float | None  # what it cost (scoring calls; None where the record does not say)

    @property
    def parse_rate(self) -> float | None:
        return self.read / self.asked if self.asked else None

    def to_dict(self) -> dict:
        return {**asdict(self), "parse_rate": self.parse_rate}

    def line(self) -> str:
        def f(x, spec):
            return "n/a" if x is None else format(x, spec)
        return (f"{self.name}: read {f(self.parse_rate, '.0%')} of {self.asked:,}, AUROC {f(self.auroc, '.3f')} "
                f"over {self.graded:,}" + (f", ECE {self.ece:.3f}" if self.ece is not None else "") +
                (f", {self.tokens_per_problem:,.0f} tokens a problem" if self.tokens_per_problem is not None else ""))


def auroc(values: list[float], labels: list[bool]) -> float | None:
    """P(a right candidate's value > a wrong one's), ties counted half (the Mann-Whitney U statistic)."""
    pos = [v for v, y in zip(values, labels) if y]
    neg = [v for v, y in zip(values, labels) if not y]
    if not pos or not neg:
        return None
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = sum(r for r, y in zip(ranks, labels) if y)
    return (r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def ece(probs: list[float], labels: list[bool], bins: int = 10) -> float | None:
    if not probs:
        return None
    total = 0.0
    for b in range(bins):
        idx = [i for i, p in enumerate(probs) if (b / bins <= p < (b + 1) / bins) or (b == bins - 1 and p == 1.0)]
        if idx:
            conf = sum(probs[i] for i in idx) / len(idx)
            acc = sum(labels[i] for i in idx) / len(idx)
            total += len(idx) / len(probs) * abs(conf - acc)
    return total


def candidates(rec: Record) -> list[dict]:
    """(answer, q, confidence, eval_tokens) of every candidate a result's decision saw."""
    if rec.samples:
        return [{"answer": s.get("answer"), "q": s.get("q"), "confidence": trace_confidence(s.get("confidence")),
                 "eval_tokens": s.get("eval_tokens", 0)} for s in rec.samples if s.get("stopped_at") is None]
    return [{"answer": t.get("answer"), "q": t.get("q"), "confidence": None, "eval_tokens": None} for t in rec.trees]


def measure_signals(rows: list[dict]) -> list[Signal]:
    """The signals of graded results (rows with a reference, as fot.measure.meter.grade leaves them)."""
    by: dict[str, dict] = {}
    problems: dict[str, set] = {}
    for row in rows:
        rec = Record.from_row(row)
        if rec.reference is None:
            continue
        task = get_task(rec.task or "generic")
        verifier = rec.settings.get("verifier") or "self"
        scored_method = bool(rec.evaluation.get("asked"))
        for c in candidates(rec):
            if c["answer"] is None:
                continue
            right = bool(task.grade(c["answer"], rec.reference, rec.question))
            if scored_method and c["q"] is not None:
                s = by.setdefault(verifier, {"v": [], "y": [], "tokens": 0, "has_tokens": True})
                s["v"].append(c["q"])
                s["y"].append(right)
            if c["confidence"] is not None:
                s = by.setdefault("confidence", {"v": [], "y": [], "tokens": 0, "has_tokens": False})
                s["v"].append(c["confidence"])
                s["y"].append(right)
            if scored_method:
                s = by.setdefault(verifier, {"v": [], "y": [], "tokens": 0, "has_tokens": True})
                if c["eval_tokens"] is None:
                    s["has_tokens"] = False
                else:
                    s["tokens"] += c["eval_tokens"]
        if scored_method:
            by.setdefault(verifier, {"v": [], "y": [], "tokens": 0, "has_tokens": True})
            s = by[verifier]
            s["asked"] = s.get("asked", 0) + rec.evaluation.get("asked", 0)
            s["read"] = s.get("read", 0) + rec.evaluation.get("parsed", 0)
            problems.setdefault(verifier, set()).add(rec.id)
        if any(c["confidence"] is not None for c in candidates(rec)):
            n = sum(1 for c in candidates(rec) if c["answer"] is not None)
            s = by["confidence"]
            s["asked"] = s.get("asked", 0) + n
            s["read"] = s.get("read", 0) + sum(1 for c in candidates(rec) if c["answer"] is not None
                                               and c["confidence"] is not None)
    out = []
    for name, s in by.items():
        is_score = name != "confidence"
        n = len(problems.get(name, ())) or 1
        out.append(Signal(name, s.get("asked", 0), s.get("read", 0), len(s["v"]), auroc(s["v"], s["y"]),
                          ece([min(1.0, max(0.0, (v + 100) / 200)) for v in s["v"]], s["y"]) if is_score and s["v"]
                          else None, s["tokens"] / n if is_score and s["has_tokens"] else None))
    return out
