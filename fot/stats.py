"""Intervals a reviewer would accept at the small n a reasoning benchmark has.

- `wilson_ci`: the Wilson score interval of a proportion. Unlike the percentile bootstrap it does
  not collapse to [0, 0] or [1, 1] when every problem went the same way, and it holds its
  coverage at n = 10-50 (tests/test_stats.py checks both by simulation).
- `paired_diff`: the difference in accuracy of two methods *on the same problems*, with
  Newcombe's (1998, method 10) interval for paired proportions, built from the two Wilson
  intervals and the correlation between the methods' outcomes. Pairing matters: two methods that
  fail on the same hard problems differ far less than their separate intervals suggest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UsageError

Z95 = 1.959963984540054


def wilson_ci(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if successes == 0 else lo, 1.0 if successes == n else hi)


@dataclass
class PairedDiff:
    n: int
    diff: float  # accuracy of A minus accuracy of B
    ci95: tuple[float, float]
    a_only: int  # problems A got right and B wrong
    b_only: int

    @property
    def resolved(self) -> bool:
        """False when the interval straddles 0: this n cannot tell the two apart."""
        return self.ci95[0] > 0 or self.ci95[1] < 0

    def verdict(self, a: str = "A", b: str = "B") -> str:
        if not self.resolved:
            return "not resolved at this n"
        return f"{a} better" if self.diff > 0 else f"{b} better"


def paired_diff(a: list[bool], b: list[bool], z: float = Z95) -> PairedDiff:
    """A minus B on the same problems, in the same order."""
    if len(a) != len(b):
        raise UsageError(f"paired outcomes need the same problems: {len(a)} against {len(b)}")
    n = len(a)
    both = sum(1 for x, y in zip(a, b) if x and y)
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    neither = n - both - a_only - b_only
    if n == 0:
        return PairedDiff(0, float("nan"), (float("nan"), float("nan")), 0, 0)
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson_ci(both + a_only, n, z)
    l2, u2 = wilson_ci(both + b_only, n, z)
    num = both * neither - a_only * b_only
    if num > 0:
        num = max(num - n / 2, 0.0)  # Newcombe's continuity correction of phi
    den = math.sqrt((both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither))
    phi = num / den if den else 0.0
    d = p1 - p2
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return PairedDiff(n, d, (max(-1.0, d - delta), min(1.0, d + eps)), a_only, b_only)
