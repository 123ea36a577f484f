"""Does the engine's memory stay flat over a long run? (issue 12, point 9)

Runs the engine in this process against `fot.sim` (the SIMULATED backend, a test double) in a
separate process, so only the engine's memory is measured, and reads this process's RSS every
2,500 calls up to --calls. Twice, in one run: the ledger as it is (recent rows only, the rest
streamed to the trace) and with every row kept in memory (`keep=None`, what v1 did). Prints a
table and writes benchmarks/results/memory/memory.{json,png}.

    python benchmarks/memory.py            # 50,000 calls each, about 2-4 minutes on 2 cores
    python benchmarks/memory.py --calls 10000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fot import Engine, Problem, SearchConfig
from fot.backend.ledger import Ledger
from fot.backend.local import free_port

OUT = Path(__file__).resolve().parent / "results" / "memory"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def measure(base_url: str, calls: int, keep: int | None, trace: Path) -> list[tuple[int, float]]:
    cfg = SearchConfig(trees=2, rollouts=2, reward_samples=1, inputs=("raw",))
    points: list[tuple[int, float]] = []
    async with Engine(base_url, "fot-sim", trace=trace, config=cfg, concurrency=32) as engine:
        engine.ledger.rows = Ledger(keep=keep).rows  # the variant under test
        next_mark = 0

        def problems():
            i = 0
            while len(engine.ledger) < calls:
                i += 1
                yield Problem(f"m{i}", f"What is {i % 9 + 1} + {i % 7 + 2}?")

        async for _ in engine.solve_many(problems(), parallel=16, task="arith"):
            if len(engine.ledger) >= next_mark:
                gc.collect()
                points.append((len(engine.ledger), rss_mib()))
                next_mark += 2500
    gc.collect()
    points.append((len(engine.ledger), rss_mib()))
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=50_000)
    args = ap.parse_args()
    port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "fot.sim", "--port", str(port)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)
        base_url = f"http://127.0.0.1:{port}/v1"
        runs = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, keep in (("now (recent rows only)", Ledger().rows.maxlen), ("every row kept (v1)", None)):
                t0 = time.monotonic()
                pts = asyncio.run(measure(base_url, args.calls, keep, Path(tmp) / f"trace-{keep}.jsonl"))
                runs[name] = {"points": pts, "wall_s": time.monotonic() - t0}
    finally:
        sim.terminate()
        sim.wait()
    print(f"engine RSS (MiB) against fot.sim (SIMULATED backend), {args.calls:,} calls per run")
    print("growth: over the second half of each run, after the warm-up (the recent-rows window filling,")
    print("the allocator's arenas growing to their working size)")
    print(f"{'run':<26} {'RSS at half':>11} {'RSS at end':>11} {'growth per 10k calls':>21} {'wall s':>7}")
    for name, r in runs.items():
        pts = r["points"]
        half = next(p for p in pts if p[0] >= args.calls // 2)
        per10k = (pts[-1][1] - half[1]) / max(1, pts[-1][0] - half[0]) * 10_000
        r["growth_mib_per_10k_calls_second_half"] = per10k
        print(f"{name:<26} {half[1]:>11.1f} {pts[-1][1]:>11.1f} {per10k:>21.2f} {r['wall_s']:>7.0f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "memory.json").write_text(json.dumps({"calls": args.calls, "command": "python benchmarks/memory.py"
                                                 + ("" if args.calls == 50_000 else f" --calls {args.calls}"),
                                                 "backend": "fot.sim (SIMULATED, a test double)", "runs": runs},
                                                indent=1) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, r in runs.items():
        xs, ys = zip(*r["points"])
        ax.plot(xs, ys, marker=".", label=name)
    ax.set_xlabel("calls")
    ax.set_ylabel("engine RSS (MiB)")
    ax.set_title("Engine memory over a long run (fot.sim, SIMULATED backend)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "memory.png", dpi=120)
    print(f"wrote {OUT / 'memory.json'} and {OUT / 'memory.png'}")


if __name__ == "__main__":
    main()
