"""Process-wide settings for long runs, applied by the command-line entry points (`fot solve`, `fot sweep`,
`fot serve`); the library never changes them behind its user's back, so agent code calls `tune_gc()` itself.

Why: with thousands of calls in flight, Python's cyclic garbage collector, not the engine, is what
makes each call cost more CPU (benchmarks/client_cpu.py: 214 µs a call at 100 in flight against
407 µs at 5,000 with the default thresholds, 235 µs at 5,000 with the collector off). Every
in-flight request keeps its objects alive for seconds, so they survive the young collections and
are traversed again and again; the larger the live heap, the worse the cache misses of each pass.
Freezing what was imported (it lives as long as the process) and collecting the young generation
every 50,000 allocations instead of 700 takes most of that away; memory grows by at most the
uncollected young cycles, a few MB.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Freeze the objects alive now (modules, classes: never garbage) and make collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
