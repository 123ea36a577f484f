"""Many problems at once with the settings a user gets: is the client ever the bottleneck?

Against `fot.sim` (the SIMULATED backend, a test double) in its own process, 200 ms a call: one
problem alone at 4 trees x 4 rollouts, then 20 problems at once (`asyncio.gather` of
`Engine.solve`, which is what `fot solve --parallel 20` does), each with a fresh `Engine` built
with its defaults. Reports each wall time against the bound the backend sets (latency x the
critical path of calls: 2 for the roots, 3 per rollout, 1 for a decision that needs the expert),
and the ratio 20-at-once / one-alone (the goal: <= 2.5). Each figure is the median of `--repeats`
runs with the spread; the machine's load and cores are recorded beside them.

Problems: the first 20 GSM8K test questions from ../shared/data/gsm8k when present, else 20
GSM8K-shaped word problems made here (the sim answers both; only timing is measured).

Run: python benchmarks/load.py --label after [--repeats 3]
     python benchmarks/load.py --label before --engine-tree /tmp/fot-old   # another checkout's fot
Writes benchmarks/results/load/<label>.json.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "load"
GSM8K = HERE.parent.parent / "shared" / "data" / "gsm8k" / "test.jsonl"


def questions(n: int) -> tuple[list[str], str]:
    if GSM8K.exists():
        rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:n]]
        return [r["question"] for r in rows], f"GSM8K test, first {n}"
    made = [f"A baker makes {12 + i} trays of {6 + i % 5} rolls each morning. She sells {30 + 3 * i} rolls before "
            f"noon and gives {4 + i % 3} to a neighbour. How many rolls are left at the end of the day?"
            for i in range(n)]
    return made, f"{n} GSM8K-shaped word problems made by benchmarks/load.py"


def child(args: argparse.Namespace) -> dict:
    """One measurement in this process (the engine under test is whatever `fot` imports here)."""
    sys.path.insert(0, str(HERE))
    from simproc import SimProcess

    from fot import Engine

    qs, source = questions(args.problems)
    sim = SimProcess("--ttft", str(args.latency))

    async def run(batch: list[str]) -> tuple[float, float, int]:
        async with Engine(sim.base_url, "fot-sim") as engine:  # its defaults, as a user gets them
            c0, t0 = time.process_time(), time.perf_counter()
            results = await asyncio.gather(*(engine.solve(q, task="gsm8k", trees=args.trees, rollouts=args.rollouts)
                                             for q in batch))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        experts = max(1 if r.decision == "expert" else 0 for r in results)
        return wall, cpu, experts

    try:
        one_wall, _, one_expert = asyncio.run(run(qs[:1]))
        many_wall, many_cpu, many_expert = asyncio.run(run(qs))
    finally:
        sim.close()
    chain = 2 + 3 * args.rollouts
    return {"one_wall_s": one_wall, "many_wall_s": many_wall, "ratio": many_wall / one_wall,
            "one_bound_s": args.latency * (chain + one_expert), "many_bound_s": args.latency * (chain + many_expert),
            "many_cpu_s": many_cpu, "source": source}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--trees", type=int, default=4)
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per call at the simulated backend")
    ap.add_argument("--engine-tree", default=None, help="measure the fot of another checkout (e.g. the old code)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    env = dict(os.environ)
    if args.engine_tree:
        env["PYTHONPATH"] = str(Path(args.engine_tree).resolve())
    argv = [a for a in sys.argv[1:] if a != "--child"]
    load_before = os.getloadavg()
    runs = []
    for i in range(args.repeats):
        out = subprocess.run([sys.executable, __file__, *argv, "--child"], env=env, capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = runs[-1]
        print(f"run {i + 1}: one alone {r['one_wall_s']:.2f} s (bound {r['one_bound_s']:.1f}), {args.problems} at once "
              f"{r['many_wall_s']:.2f} s (bound {r['many_bound_s']:.1f}), ratio {r['ratio']:.2f}", flush=True)

    def med(k: str) -> dict:
        vals = [r[k] for r in runs]
        return {"median": statistics.median(vals), "spread": [min(vals), max(vals)], "runs": vals}

    record = {"label": args.label, "command": " ".join(["python", "benchmarks/load.py", *argv]),
              "engine_tree": args.engine_tree or "this checkout", "cores": os.cpu_count(),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "backend": f"fot.sim (SIMULATED, separate process), {args.latency * 1000:.0f} ms a call",
              "shape": f"{args.trees} trees x {args.rollouts} rollouts", "problems": runs[0]["source"],
              "settings": "Engine() defaults; all problems submitted at once",
              **{k: med(k) for k in ("one_wall_s", "many_wall_s", "ratio", "one_bound_s", "many_bound_s", "many_cpu_s")},
              "goal": "ratio <= 2.5"}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.label}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"median ratio {record['ratio']['median']:.2f} (spread {record['ratio']['spread'][0]:.2f}-"
          f"{record['ratio']['spread'][1]:.2f}); written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
