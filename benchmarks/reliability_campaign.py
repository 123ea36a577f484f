"""The fault and kill campaigns of docs/reliability.md, rerunnable (issue 12).

Against `fot.sim` (the SIMULATED backend, a test double) in its own process, with the real
command line (`python -m fot.solve`) in another:

  faults  every fault kind at 10% and 30% of requests, and dropped responses at 50%, 20 problems,
          2 trees x 2 rollouts, --budget 2000. Per problem it checks what the sim really served
          (reported or not) against the cap, the result's tokens against the sum of its trace rows,
          and that every problem has exactly one line.
  kill    five runs killed with SIGKILL at a random moment, each followed by the same command:
          every id exactly once, every line whole.

Prints tables and writes benchmarks/results/reliability/campaign.{json,md}.

    python benchmarks/reliability_campaign.py        # about 3-5 minutes on 2 cores
    python benchmarks/reliability_campaign.py --engine-tree /tmp/fot-old --name before
                                  # the same campaign with fot.solve from another checkout (the sim stays this one)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from fot.backend.local import free_port
from fot.tasks.problems import load_problems
from fot.sim import FAULT_KINDS
from fot.sim.solver import normalize_question
from fot.tasks import Arith

OUT = Path(__file__).resolve().parent / "results" / "reliability"
CAP = 2000
SOLVE_ENV = dict(os.environ)  # --engine-tree puts another checkout's fot first for fot.solve


def start_sim(port: int, problems: Path, faults: list[str], ttft: float = 0.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fot.sim", "--port", str(port), "--problems", str(problems), "--hang", "5",
           "--ttft", str(ttft)]
    for f in faults:
        cmd += ["--fault", f]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return p
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("fot.sim did not start")


def solve_cmd(problems: Path, port: int, out: Path, trace: Path | None, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "fot.solve", str(problems), "--base-url", f"http://127.0.0.1:{port}/v1",
           "--model", "fot-sim", "--trees", "2", "--rollouts", "2", "--out", str(out), "--quiet", *extra]
    return cmd + (["--trace", str(trace)] if trace else [])


def fault_run(tmp: Path, problems: Path, kind: str, rate: float) -> dict:
    port = free_port()
    sim = start_sim(port, problems, [f"{kind}={rate}"])
    out, trace = tmp / f"{kind}-{rate}.jsonl", tmp / f"{kind}-{rate}.trace.jsonl"
    try:
        t0 = time.monotonic()
        rc = subprocess.run(solve_cmd(problems, port, out, trace, "--budget", str(CAP), "--timeout", "0.5",
                                      "--parallel", "4"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        env=SOLVE_ENV, cwd=tempfile.gettempdir()).returncode
        wall = time.monotonic() - t0
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/sim/stats").read())
    finally:
        sim.terminate()
        sim.wait()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    calls = [json.loads(line) for line in trace.read_text().splitlines()]
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for c in calls:
        by_problem[c["problem"]].append(c)
    key_of = {p.id: normalize_question(p.question) for p in load_problems(problems)}
    served = stats["served_by_question"]
    over = [served.get(key_of[r["id"]], 0) for r in rows if served.get(key_of[r["id"]], 0) > CAP]
    short = [r["id"] for r in rows if r["tokens"]["total"] < served.get(key_of[r["id"]], 0)]
    mismatch = [r["id"] for r in rows
                if r["tokens"]["total"] != sum(c["prompt_tokens"] + c["completion_tokens"] + c["charged_unknown"]
                                               for c in by_problem[r["id"]])
                or r["calls"] != len(by_problem[r["id"]])]
    return {"kind": kind, "rate": rate, "rc": rc, "wall_s": round(wall, 1), "problems": len(rows),
            "ids_once": sorted(r["id"] for r in rows) == sorted(key_of), "answered": sum(r["answer"] is not None for r in rows),
            "faults_served": stats["faults"].get(kind, 0), "over_cap_upstream": len(over),
            "worst_upstream": max(served.get(k, 0) for k in key_of.values()),
            "results_below_upstream": len(short), "tokens_or_calls_not_equal_to_trace": len(mismatch),
            "max_result_tokens": max(r["tokens"]["total"] for r in rows)}


def kill_run(tmp: Path, problems: Path, i: int, rng: random.Random) -> dict:
    port = free_port()
    sim = start_sim(port, problems, [], ttft=0.05)
    out = tmp / f"kill-{i}.jsonl"
    try:
        cmd = solve_cmd(problems, port, out, None, "--parallel", "2")
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=SOLVE_ENV, cwd=tempfile.gettempdir())
        delay = rng.uniform(1.5, 4.0)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        before = len(out.read_bytes().splitlines()) if out.exists() else 0
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=SOLVE_ENV, cwd=tempfile.gettempdir()).returncode
    finally:
        sim.terminate()
        sim.wait()
    lines = out.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    return {"run": i, "killed_after_s": round(delay, 2), "lines_before_rerun": before, "rerun_rc": rc,
            "lines": len(lines), "distinct_ids": len(set(ids)), "every_id_once": sorted(ids) == sorted(set(ids))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine-tree", default=None, help="run fot.solve from this checkout")
    ap.add_argument("--name", default="campaign", help="output file stem")
    args = ap.parse_args()
    if args.engine_tree:
        SOLVE_ENV["PYTHONPATH"] = str(Path(args.engine_tree).resolve())
    rng = random.Random(12)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        problems = tmp / "p.jsonl"
        problems.write_text("".join(json.dumps(r) + "\n" for r in Arith.generate(20, seed=4)))
        cells = [(k, r) for k in FAULT_KINDS for r in (0.1, 0.3)] + [("drop", 0.5)]
        faults = []
        for kind, rate in cells:
            faults.append(fault_run(tmp, problems, kind, rate))
            f = faults[-1]
            print(f"{kind:>8} {rate:.0%}: rc {f['rc']}, {f['problems']} problems, ids once {f['ids_once']}, "
                  f"over cap upstream {f['over_cap_upstream']} (worst {f['worst_upstream']}), results below "
                  f"upstream {f['results_below_upstream']}, tokens/calls != trace {f['tokens_or_calls_not_equal_to_trace']}",
                  flush=True)
        kill_problems = tmp / "k.jsonl"
        kill_problems.write_text("".join(json.dumps(r) + "\n" for r in Arith.generate(30, seed=5)))
        kills = [kill_run(tmp, kill_problems, i, rng) for i in range(5)]
        for k in kills:
            print(f"kill -9 #{k['run']} after {k['killed_after_s']} s: {k['lines_before_rerun']} lines, rerun rc "
                  f"{k['rerun_rc']}, {k['lines']} lines, every id once {k['every_id_once']}")
    OUT.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join(["python benchmarks/reliability_campaign.py", *sys.argv[1:]]),
              "engine": args.engine_tree or "this checkout", "backend": "fot.sim (SIMULATED, a test double)",
              "cap": CAP, "faults": faults, "kills": kills}
    (OUT / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    md = ["| fault | rate | exit | problems (each once) | answered | over the cap upstream (worst) | result < upstream "
          "| tokens or calls != trace |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for f in faults:
        md.append(f"| {f['kind']} | {f['rate']:.0%} | {f['rc']} | {f['problems']} ({'yes' if f['ids_once'] else 'NO'}) "
                  f"| {f['answered']} | {f['over_cap_upstream']} ({f['worst_upstream']:,}) | {f['results_below_upstream']} "
                  f"| {f['tokens_or_calls_not_equal_to_trace']} |")
    md += ["", "| kill -9 | after | lines then | rerun exit | lines after | every id once |",
           "| ---: | ---: | ---: | ---: | ---: | --- |"]
    for k in kills:
        md.append(f"| {k['run']} | {k['killed_after_s']} s | {k['lines_before_rerun']} | {k['rerun_rc']} | {k['lines']} "
                  f"| {'yes' if k['every_id_once'] else 'NO'} |")
    (OUT / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print(f"wrote {OUT / args.name}.json and .md")


if __name__ == "__main__":
    main()
