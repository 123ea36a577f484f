"""Scaling out with Ray against fot.sim (a SIMULATED backend) on this machine: no Ray, 1 Ray worker,
2 Ray workers, the same problems and settings. Prints a table and writes
benchmarks/results/scale/scale.json. Run: python benchmarks/scale.py [--quick] [--base-url URL ...]

Workload: N problems of T = 64 trees x 8 rollouts, P problems in flight in total (`--parallel`
in fot.solve), against `python -m fot.sim --ttft 0.1` in its own process(es): every call takes
0.1 s, capacity unlimited, so the only limit is CPU. The critical-path bound is the one of
benchmarks/engine.py: a tree is a chain of 2 + 3 x 8 = 26 dependent calls, so N problems, P at a
time, cannot take less than ceil(N / P) x 26 x 0.1 s. Reported per configuration (median of
`--repeats` runs, with min-max): wall, problems/s, calls/s, wall / bound. Ray's own start (the local
cluster, the workers' start) is reported apart, not in the wall.

Endpoints: one fot.sim process per replica (as many as the largest Ray configuration has workers),
every engine given all of them (`Engine(base_urls=[...])`, fot/backend/endpoints.py), or with `--base-url URL`
(repeatable) those servers.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import SimProcess  # noqa: E402  (benchmarks/engine.py)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from fot import Engine  # noqa: E402
from fot.config import SearchConfig  # noqa: E402
from fot.tasks.problems import Problem  # noqa: E402
from fot.tasks import Arith  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "scale"
LATENCY_S = 0.1
CHAIN = 2 + 3 * 8  # dependent calls of one 8-rollout tree (benchmarks/engine.py)
MULTI_ENDPOINT = "base_urls" in inspect.signature(Engine).parameters


def engine_settings(urls: list[str], trees: int) -> dict:
    """The Engine keywords every configuration uses (no throttle: the backend has no capacity limit)."""
    cfg = SearchConfig(trees=trees, rollouts=8, inputs=("raw",), logprob_threshold=None, tie_break="q")
    where = {"base_urls": urls} if MULTI_ENDPOINT else {"base_url": urls[0]}
    return {**where, "model": "fot-sim", "timeout": 600, "config": cfg}  # no concurrency cap: the default


def problems(n: int) -> list[Problem]:
    return [Problem(id=r["id"], question=r["question"], answer=r["answer"]) for r in Arith.generate(n, seed=11)]


async def no_ray(settings: dict, todo: list[Problem], parallel: int) -> tuple[float, int, float]:
    async with Engine(**settings) as engine:
        t0 = time.perf_counter()
        calls = 0
        async for r in engine.solve_many(todo, parallel=parallel, task="arith"):
            calls += r.calls
        return time.perf_counter() - t0, calls, 0.0


async def with_ray(settings: dict, todo: list[Problem], parallel: int, workers: int) -> tuple[float, int, float]:
    from fot.distributed import RayPool, WorkerSettings

    t_start = time.perf_counter()
    async with RayPool(WorkerSettings(settings), workers=workers) as pool:
        started = time.perf_counter() - t_start
        t0 = time.perf_counter()
        calls = 0
        async for r in pool.solve_many(todo, parallel=parallel, task="arith"):
            calls += r.calls
        return time.perf_counter() - t0, calls, started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16 trees, 4 problems, one repeat (a smoke run)")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--parallel", type=int, default=4, help="problems in flight in total")
    ap.add_argument("--trees", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--base-url", action="append", default=[],
                    help="use this server instead of starting fot.sim (repeatable; see the TODO above)")
    args = ap.parse_args()
    if args.quick:
        args.trees, args.problems, args.repeats = 16, 4, 1
    import ray

    sims = [] if args.base_url else [SimProcess("--ttft", str(LATENCY_S)) for _ in range(2 if MULTI_ENDPOINT else 1)]
    urls = args.base_url or [s.base_url for s in sims]
    settings = engine_settings(urls, args.trees)
    todo = problems(args.problems)
    bound = math.ceil(args.problems / args.parallel) * CHAIN * LATENCY_S
    results: dict = {"machine": {"cores": os.cpu_count(), "loadavg_before": os.getloadavg()},
                     "backend": f"fot.sim (SIMULATED, {len(urls)} separate process(es), ttft {LATENCY_S} s)",
                     "endpoints": len(urls), "multi_endpoint_engine": MULTI_ENDPOINT,
                     "workload": {"problems": args.problems, "parallel": args.parallel, "trees": args.trees,
                                  "rollouts": 8, "inputs": "raw", "critical_path_bound_s": bound},
                     "repeats": args.repeats, "runs": []}
    console = Console()
    try:
        t0 = time.perf_counter()
        ray.init(num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False, logging_level="ERROR")
        results["ray_local_start_s"] = time.perf_counter() - t0
        for label, workers in (("no Ray", 0), ("Ray, 1 worker", 1), ("Ray, 2 workers", 2)):
            walls, calls, starts, loads = [], [], [], []
            for _ in range(args.repeats):
                loads.append(os.getloadavg()[0])
                if workers:
                    w, c, s = asyncio.run(with_ray(settings, todo, args.parallel, workers))
                else:
                    w, c, s = asyncio.run(no_ray(settings, todo, args.parallel))
                walls.append(w), calls.append(c), starts.append(s)
                console.print(f"{label}: {w:.2f} s, {c} calls")
            wall = statistics.median(walls)
            results["runs"].append({
                "config": label, "workers": workers, "walls_s": walls, "wall_s": wall,
                "wall_range_s": [min(walls), max(walls)], "calls": statistics.median(calls),
                "problems_per_s": args.problems / wall, "problems_per_s_range": [args.problems / max(walls),
                                                                                 args.problems / min(walls)],
                "calls_per_s": statistics.median(c / w for c, w in zip(calls, walls)),
                "calls_per_s_range": [min(c / w for c, w in zip(calls, walls)), max(c / w for c, w in zip(calls, walls))],
                "wall_over_bound": wall / bound, "workers_start_s": statistics.median(starts) if workers else None,
                "loadavg_1min_at_start": loads})
    finally:
        ray.shutdown()
        for s in sims:
            s.close()
    results["machine"]["loadavg_after"] = os.getloadavg()

    t = Table(title=f"{args.problems} problems x {args.trees} trees x 8 rollouts, {args.parallel} in flight, "
                    f"fot.sim (SIMULATED) at {LATENCY_S} s/call, {os.cpu_count()} cores")
    for col in ("configuration", "wall s (min-max)", "problems/s", "calls/s (min-max)", "wall / bound",
                "workers start s"):
        t.add_column(col)
    for r in results["runs"]:
        t.add_row(r["config"], f"{r['wall_s']:.1f} ({r['wall_range_s'][0]:.1f}-{r['wall_range_s'][1]:.1f})",
                  f"{r['problems_per_s']:.2f}", f"{r['calls_per_s']:.0f} ({r['calls_per_s_range'][0]:.0f}-"
                  f"{r['calls_per_s_range'][1]:.0f})", f"{r['wall_over_bound']:.2f}",
                  "" if r["workers_start_s"] is None else f"{r['workers_start_s']:.1f}")
    console.print(t)
    console.print(f"critical-path bound {bound:.1f} s; local Ray start {results['ray_local_start_s']:.1f} s; "
                  f"load average before {results['machine']['loadavg_before'][0]:.2f}, after "
                  f"{results['machine']['loadavg_after'][0]:.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / ("scale-quick.json" if args.quick else "scale.json")  # a smoke run never replaces the record
    out.write_text(json.dumps(results, indent=1) + "\n")
    console.print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
