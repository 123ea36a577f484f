"""Trace confidence from token log-probs (DeepConf, Fu et al. 2025), the one definition the confidence
rule, the online early-terminating method and the meter's signals share.

A token's confidence is minus the mean log-prob of its top-k alternatives (fot.backend.llm.Choice.
confidences): high where the model was sure. A *group* confidence is the mean over a sliding window
of tokens; a trace's confidence is the mean of its lowest 10% group confidences ("bottom-10%", the
paper's best offline measure). DeepConf's windows are 2,048 tokens of long reasoning traces; the
answers here are tens of tokens, so the window is 16 (a trace shorter than the window is one group).
"""

from __future__ import annotations

import math

WINDOW = 16
BOTTOM = 0.1


def group_confidences(conf: list[float], window: int = WINDOW) -> list[float]:
    """The mean confidence of every window of `window` consecutive tokens (one group if shorter)."""
    if not conf:
        return []
    w = min(window, len(conf))
    run = sum(conf[:w])
    out = [run / w]
    for i in range(w, len(conf)):
        run += conf[i] - conf[i - w]
        out.append(run / w)
    return out


def trace_confidence(conf: list[float] | None, window: int = WINDOW, bottom: float = BOTTOM) -> float | None:
    """Bottom-10% group confidence; None without log-probs."""
    groups = sorted(group_confidences(conf or [], window))
    if not groups:
        return None
    k = max(1, math.ceil(bottom * len(groups)))
    return sum(groups[:k]) / k


def lowest_group(conf: list[float] | None, window: int = WINDOW) -> float | None:
    """The lowest group confidence: what DeepConf's online threshold is set from."""
    groups = group_confidences(conf or [], window)
    return min(groups) if groups else None


def stop_index(conf: list[float], threshold: float, window: int = WINDOW) -> int | None:
    """Online early termination: the number of tokens after which a full window's confidence first falls
    below `threshold` (the trace is stopped there), or None if it never does. A trace shorter than the
    window is never stopped: no full window was seen."""
    if len(conf) < window:
        return None
    run = sum(conf[:window])
    if run / window < threshold:
        return window
    for i in range(window, len(conf)):
        run += conf[i] - conf[i - window]
        if run / window < threshold:
            return i + 1
    return None


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between order statistics (numpy's default)."""
    xs = sorted(values)
    if not xs:
        raise ValueError("no values")
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
