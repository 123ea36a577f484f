"""Intervals: they do not collapse at 0% or 100%, and they cover at small n (checked by simulation)."""

import random

import numpy as np
import pytest

from fot.measure.stats import paired_diff, wilson_ci


def test_wilson_does_not_collapse_at_0_or_100_percent():
    # a percentile bootstrap of ten successes is [1, 1]: "certainly 100%" from 10 problems
    lo, hi = wilson_ci(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.75
    lo, hi = wilson_ci(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35


@pytest.mark.parametrize("n", [10, 30])
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_wilson_covers_at_small_n(n, p):
    rng = np.random.default_rng(1)
    k = rng.binomial(n, p, size=4000)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson_ci(int(x), n) for x in k)])
    assert covered >= 0.90  # nominal 95%; Wilson dips a little below near p = 0 or 1 at n = 10 (0.91), never far


def test_paired_difference_covers_and_is_tighter_than_unpaired_when_methods_agree():
    rng = random.Random(3)
    n, trials, covered, widths = 40, 1500, 0, []
    pa, pb = 0.6, 0.5
    for _ in range(trials):
        # correlated outcomes: a shared per-problem difficulty
        a, b = [], []
        for _ in range(n):
            u = rng.random()
            a.append(u < pa)
            b.append(u < pb if rng.random() < 0.8 else rng.random() < pb)
        d = paired_diff(a, b)
        covered += d.ci95[0] <= pa - pb <= d.ci95[1]
        widths.append(d.ci95[1] - d.ci95[0])
    assert covered / trials >= 0.92
    la, ua = wilson_ci(24, 40)
    lb, ub = wilson_ci(20, 40)
    assert np.median(widths) < (ua - la) + (ub - lb)  # pairing buys precision


def test_paired_difference_verdicts():
    same = [True, False] * 10
    d = paired_diff(same, same)
    assert d.diff == 0 and d.ci95[0] < 0 < d.ci95[1] and d.verdict() == "not resolved at this n"
    d = paired_diff([True] * 40, [False] * 40)
    assert d.resolved and d.verdict("forest", "sc") == "forest better"
    with pytest.raises(ValueError):
        paired_diff([True], [True, False])
