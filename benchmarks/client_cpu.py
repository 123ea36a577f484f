"""The client's own CPU per call over real HTTP, at 100 to 5,000 requests in flight.

`fot.sim` (the SIMULATED backend, a test double) runs as a separate process on loopback with a
latency long enough that every request of a wave is in flight at once; this process sends waves of
N chat calls through fot's `LLMClient` (budget, ledger, retry wrapper, transport: everything a
forest's call goes through) with GSM8K-sized prompts (a refine prompt, about 700 tokens). The first
wave opens the connections; the CPU time of this process (`time.process_time`) over the later waves,
divided by their calls, is the figure. Each figure is the median of `--repeats` runs, with the spread;
the machine's load and core count are recorded beside them.

Python's garbage collector is part of what a call costs with thousands in flight (fot/runtime.py);
`--gc tuned` measures with the setting `fot solve`, `fot sweep` and `fot serve` apply (`fot.tune_gc()`),
`--gc default` with Python's own, which is what agent code gets unless it calls `tune_gc()`.

Run: python benchmarks/client_cpu.py --label after [--gc default|tuned] [--inflight 100,1000,5000] [--repeats 3]
Writes benchmarks/results/client-cpu/<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simproc import SimProcess  # noqa: E402

from fot import Budget, LLMClient, Ledger, prompts  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "client-cpu"

QUESTION = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
            "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh "
            "duck egg. How much in dollars does she make every day at the farmers' market?")
DRAFT = " ".join(["Janet's ducks lay 16 eggs a day. She eats 3 and bakes with 4, so she uses 3 + 4 = 7 eggs."
                  " The remainder is 16 - 7 = 9 eggs, which she sells at $2 each, so 9 * 2 = 18 dollars."] * 6)
FEEDBACK = " ".join(["The draft counts the eggs used correctly but should state each step's units and check the"
                     " subtraction; it also repeats itself, which a careful answer would avoid."] * 4)


def messages() -> list[dict]:
    return prompts.refine(QUESTION, DRAFT, FEEDBACK)


async def _wave(llm: LLMClient, n: int, seed0: int) -> None:
    msgs = messages()
    await asyncio.gather(*(llm.chat(msgs, max_tokens=256, seed=seed0 + i) for i in range(n)))


async def measure(base_url: str, n: int, waves: int) -> tuple[float, float]:
    """(client CPU µs per call over the measured waves, wall s per wave)."""
    llm = LLMClient(base_url, "fot-sim", concurrency=n, timeout=600, budget=Budget(tokens=10**13), ledger=Ledger())
    try:
        await _wave(llm, n, 0)  # opens the connections
        c0, t0 = time.process_time(), time.perf_counter()
        for w in range(waves):
            await _wave(llm, n, (w + 1) * n)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    finally:
        await llm.aclose()
    return cpu / (n * waves) * 1e6, wall / waves


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", required=True, help="name of the record, e.g. before / after")
    ap.add_argument("--inflight", default="100,1000,5000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--waves", type=int, default=2)
    ap.add_argument("--gc", choices=["default", "tuned"], default="default")
    ap.add_argument("--ttft", type=float, default=None,
                    help="simulated latency per call (default: long enough that a wave is all in flight)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.inflight.split(",")]
    if args.gc == "tuned":
        from fot import tune_gc

        tune_gc()
    load_before = os.getloadavg()
    rows = []
    for n in sizes:
        ttft = args.ttft if args.ttft is not None else 1.0 + n * 0.003
        sim = SimProcess("--ttft", str(ttft))
        try:
            runs, walls, peaks = [], [], []
            for _ in range(args.repeats):
                before = sim.stats()["max_in_flight"]
                us, wall = asyncio.run(measure(sim.base_url, n, args.waves))
                runs.append(us)
                walls.append(wall)
                peaks.append(max(before, sim.stats()["max_in_flight"]))
        finally:
            sim.close()
        rows.append({"in_flight": n, "sim_latency_s": ttft, "cpu_us_per_call": statistics.median(runs),
                     "runs_us": runs, "spread_us": [min(runs), max(runs)], "wall_s_per_wave": walls,
                     "sim_max_in_flight": max(peaks)})
        print(f"{n:>6} in flight: {statistics.median(runs):,.0f} us/call  runs {', '.join(f'{r:,.0f}' for r in runs)}",
              flush=True)
    record = {"label": args.label, "command": " ".join(["python", *sys.argv]), "cores": os.cpu_count(), "gc": args.gc,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "prompt_tokens_approx": 700, "backend": "fot.sim (SIMULATED, separate process, loopback)",
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    if len(rows) > 1:
        record["growth_first_to_last"] = rows[-1]["cpu_us_per_call"] / rows[0]["cpu_us_per_call"]
    t = Table(title=f"client CPU per call ({args.label}, gc {args.gc}; fot.sim, SIMULATED backend)")
    for col in ("in flight", "CPU µs / call (median)", "spread", "sim peak in flight"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["in_flight"]), f"{r['cpu_us_per_call']:,.0f}", f"{r['spread_us'][0]:,.0f}-{r['spread_us'][1]:,.0f}",
                  str(r["sim_max_in_flight"]))
    Console().print(t)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.label}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
