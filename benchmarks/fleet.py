"""A flaky fleet of replicas, as issue 21 attacked the engine: what each kind of bad replica costs.

Against `fot.sim` (the SIMULATED backend, a test double) in processes of their own, with the real command
line (`python -m fot.solve`) in another, 20 generated arithmetic problems each:

  bad-replies   one good replica, one answering an HTML page with 200, one answering JSON that is not a completion
  none-works    only the two bad ones
  wrong-model   one good replica, `--model no-such-model` (HTTP 404 on every call)
  credentials   one good replica given as http://user:pass@127.0.0.1:PORT/v1
  chat-hangs    one good replica and one whose chat hangs while /models answers, --timeout 3
  slow-replica  one good replica and one correct but 1.5 s a call
  dead-at-start one good replica and a port that accepts connections and never answers, --timeout 3
  good-alone    the good replica alone (the yardstick)

Per scenario: exit status, problems written, accuracy of the returned answers, tokens charged as unknown
(share of all), each replica's calls and ejections (from the summary), wall time.

    python benchmarks/fleet.py --name after                               # about 3 minutes on 2 cores
    python benchmarks/fleet.py --name before --engine-tree /tmp/fot-old   # fot.solve from another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fot.tasks import Arith

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_campaign import start_sim  # noqa: E402
from simproc import free_port  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "fleet"
COMMON = ["--trees", "3", "--rollouts", "2", "--budget", "6000", "--quiet", "--parallel", "4"]


def run(name: str, problems: Path, tmp: Path, urls: list[str], env: dict, *extra: str) -> dict:
    out = tmp / f"{name}.jsonl"
    cmd = [sys.executable, "-m", "fot.solve", str(problems), "--out", str(out), *COMMON, *extra]
    for u in urls:
        cmd += ["--base-url", u]
    if "--model" not in extra:
        cmd += ["--model", "fot-sim"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp)  # not this checkout
    wall = time.monotonic() - t0
    rows = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    summary_path = out.with_name(out.stem + ".summary.json")
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    graded = [r for r in rows if r.get("correct") is not None]
    total = sum(r["tokens"]["total"] for r in rows)
    unknown = sum(r["tokens"].get("unknown", 0) for r in rows)
    last = [line for line in p.stderr.strip().splitlines() if line.strip()][-1:] or [""]
    return {"scenario": name, "exit": p.returncode, "written": len(rows),
            "answered": sum(r.get("answer") is not None for r in rows),
            "accuracy": round(sum(r["correct"] for r in graded) / len(graded), 3) if graded else None,
            "unknown_share": round(unknown / total, 3) if total else None, "tokens": total,
            "endpoints": [{k: e[k] for k in ("endpoint", "served", "failed", "ejected", "up")}
                          for e in summary.get("endpoints", [])],
            "wall_s": round(wall, 2), "last_line": last[0][:300]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="after")
    ap.add_argument("--engine-tree", default=None, help="run fot.solve from this checkout (the sims stay this one)")
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    env = dict(os.environ)
    if args.engine_tree:
        env["PYTHONPATH"] = str(Path(args.engine_tree).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="fot-fleet-"))
    problems = tmp / "p.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in Arith.generate(args.n, seed=21)))
    ports = {k: free_port() for k in ("good", "html", "json", "hang", "slow")}
    sims = [start_sim(ports["good"], problems, []), start_sim(ports["html"], problems, ["nonjson=1"]),
            start_sim(ports["json"], problems, ["not_completion=1"]),
            start_sim(ports["hang"], problems, ["hang=1"]), start_sim(ports["slow"], problems, [], ttft=1.5)]
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)  # accepts connections (the kernel does), never answers
    url = {k: f"http://127.0.0.1:{p}/v1" for k, p in ports.items()}
    url["dead"] = f"http://127.0.0.1:{dead.getsockname()[1]}/v1"
    good = url["good"]
    try:
        rows = [
            run("good-alone", problems, tmp, [good], env),
            run("bad-replies", problems, tmp, [good, url["html"], url["json"]], env, "--timeout", "3"),
            run("none-works", problems, tmp, [url["html"], url["json"]], env, "--timeout", "3"),
            run("wrong-model", problems, tmp, [good], env, "--model", "no-such-model"),
            run("credentials", problems, tmp, [good.replace("http://", "http://user:pass@")], env),
            run("chat-hangs", problems, tmp, [good, url["hang"]], env, "--timeout", "3"),
            run("slow-replica", problems, tmp, [good, url["slow"]], env),
            run("dead-at-start", problems, tmp, [good, url["dead"]], env, "--timeout", "3"),
        ]
    finally:
        for s in sims:
            s.terminate()
        dead.close()
    load = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    record = {"name": args.name, "engine_tree": args.engine_tree, "problems": args.n, "common": COMMON,
              "load_avg": [round(x, 2) for x in load], "cores": os.cpu_count(), "rows": rows}
    (OUT / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# fleet: {args.name} (fot.sim, SIMULATED; load {load[0]:.1f} on {os.cpu_count()} cores)", "",
             "| scenario | exit | written | answered | accuracy | unknown share | per replica: served/failed/ejected | wall s |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        eps = "; ".join(f"{e['served']}/{e['failed']}/{e['ejected']}" for e in r["endpoints"]) or "-"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.0%}"
        unk = "-" if r["unknown_share"] is None else f"{r['unknown_share']:.0%}"
        lines.append(f"| {r['scenario']} | {r['exit']} | {r['written']} | {r['answered']} | {acc} | {unk} | {eps} | "
                     f"{r['wall_s']} |")
    text = "\n".join(lines) + "\n"
    (OUT / f"{args.name}.md").write_text(text)
    print(text)
    for r in rows:
        print(f"{r['scenario']}: {r['last_line']}")


if __name__ == "__main__":
    main()
