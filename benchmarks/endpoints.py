"""Several endpoints behind one engine, measured against three `fot.sim` processes (SIMULATED replicas,
test doubles; each its own port, its own prefix cache).

1. spread and affinity: 40 problems at 4 trees x 4 rollouts, all at once, with tree affinity on and
   off: calls per endpoint, and the share of prompt tokens the replicas' prefix caches served
   (`cached_tokens`), which is what affinity is for.
2. failover: the same run with one replica killed (SIGTERM) once a quarter of the problems are done
   and started again on its port once half are: problems answered, calls per endpoint in each
   phase, times the endpoint was taken out.

Each figure of part 1 is the median of `--repeats` runs with the spread.
Run: python benchmarks/endpoints.py [--repeats 3]. Writes benchmarks/results/endpoints/endpoints.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simproc import SimProcess  # noqa: E402

from fot import Engine  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "endpoints"
LATENCY = "0.05"


def questions(n: int) -> list[str]:
    return [f"A farmer has {20 + i} sheep and buys {3 + i % 7} more each week for {2 + i % 4} weeks. "
            f"How many sheep does he have then?" for i in range(n)]


def by_endpoint(rows, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
    """Calls answered per endpoint among those started in [since, until); rows are (started, endpoint, outcome)."""
    return dict(Counter(e for started, endpoint, outcome in rows if outcome == "ok" and since <= started < until
                        for e in endpoint.split(",")))


async def spread(urls: list[str], n: int, affinity: bool) -> dict:
    async with Engine(base_urls=urls, model="fot-sim") as engine:
        engine.llm.affinity = affinity
        t0 = time.perf_counter()
        results = await asyncio.gather(*(engine.solve(q, task="gsm8k", trees=4, rollouts=4) for q in questions(n)))
        wall = time.perf_counter() - t0
        total = engine.ledger.total
    return {"affinity": affinity, "wall_s": wall, "answered": sum(r.answer is not None for r in results),
            "cached_share": total.cached_tokens / total.prompt_tokens,
            "calls_per_endpoint": [e["served"] for e in engine.llm.endpoints.stats()]}


async def failover(sims: list[SimProcess], n: int) -> dict:
    urls = [s.base_url for s in sims]
    phase: dict[str, float] = {}
    victim = sims[1]
    async with Engine(base_urls=urls, model="fot-sim") as engine:
        rows: list[tuple[float, str, str]] = []  # every call's (started, endpoint, outcome): the ledger keeps the last 1,024
        engine.ledger.observers.append(lambda r: rows.append((r.started, r.endpoint, r.outcome)))
        done = 0
        async for r in engine.solve_many(questions(n), parallel=n // 4, task="gsm8k", trees=4, rollouts=4):
            done += 1 if r.answer is not None else 0
            if done == n // 4 and "killed" not in phase:
                victim.proc.terminate()
                victim.proc.wait()
                phase["killed"] = time.time()
            if done == n // 2 and "restarted" not in phase:
                victim.proc = subprocess.Popen([sys.executable, "-m", "fot.sim", "--port", str(victim.port), "--ttft",
                                                LATENCY], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                await asyncio.to_thread(victim.proc.stdout.readline)
                phase["restarted"] = time.time()
        stats = engine.llm.endpoints.stats()
        errors = engine.ledger.total.failed
    return {"problems": n, "answered": done, "failed_calls": errors,
            "before_kill": by_endpoint(rows, until=phase["killed"]),
            "while_down": by_endpoint(rows, phase["killed"], phase["restarted"]),
            "after_restart": by_endpoint(rows, phase["restarted"]), "endpoints": stats,
            "killed": victim.base_url, "note": "calls by the time they started"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--failover-only", action="store_true", help="part 2 alone; part 1 is kept from the last record")
    args = ap.parse_args()
    record: dict = {"command": "python " + " ".join(sys.argv), "cores": os.cpu_count(), "loadavg_before": os.getloadavg(),
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                    "backend": f"3 x fot.sim (SIMULATED, separate processes), {float(LATENCY) * 1000:.0f} ms a call"}
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(0 if args.failover_only else args.repeats):
        for affinity in (True, False):
            sims = [SimProcess("--ttft", LATENCY) for _ in range(3)]  # fresh caches for each run
            try:
                runs[affinity].append(asyncio.run(spread([s.base_url for s in sims], args.problems, affinity)))
            finally:
                for s in sims:
                    s.close()
    if args.failover_only:
        record["spread"] = json.loads((OUT / "endpoints.json").read_text())["spread"]
    else:
        record["spread"] = {("affinity" if a else "no_affinity"): {
            "cached_share": statistics.median(r["cached_share"] for r in rs),
            "cached_share_runs": [r["cached_share"] for r in rs],
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "calls_per_endpoint": [r["calls_per_endpoint"] for r in rs],
            "answered": [r["answered"] for r in rs]} for a, rs in runs.items()}
    sims = [SimProcess("--ttft", LATENCY) for _ in range(3)]
    try:
        record["failover"] = asyncio.run(failover(sims, args.problems))
    finally:
        for s in sims:
            if s.proc.poll() is None:
                s.close()
    record["loadavg_after"] = os.getloadavg()
    for k, v in record["spread"].items():
        print(f"{k:12}: cached share of prompt tokens {v['cached_share']:.1%} (runs "
              f"{', '.join(f'{x:.1%}' for x in v['cached_share_runs'])}), calls per endpoint {v['calls_per_endpoint'][0]}")
    f = record["failover"]
    print(f"failover: {f['answered']}/{f['problems']} answered; calls per endpoint before the kill {f['before_kill']}, "
          f"while down {f['while_down']}, after the restart {f['after_restart']}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "endpoints.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"written {OUT / 'endpoints.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
