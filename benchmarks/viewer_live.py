"""Screenshots of `fot view --watch` during a run, and of an sc run's samples (fot.sim: SIMULATED backend).

  python benchmarks/viewer_live.py [--out benchmarks/results/viewer]

Starts fot.sim with 80 ms to first token (a child process), `fot view --watch` on the run's results, and
`fot solve` on 6 generated arithmetic problems (a 3x3 forest, one problem at a time); opens the page in
headless Chromium (Playwright, the system's chromium) and saves OUT/live.png once a problem in flight has
a leading answer, then OUT/live-done.png when the run has ended. Then runs sc with 5 samples on 5 problems
and saves OUT/samples.png (a problem's samples and their votes). Writes OUT/viewer_live.json with the
command and what each screenshot shows. The numbers on the pages are the simulator's, not a model's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fot import view  # noqa: E402
from fot.backend.local import free_port  # noqa: E402
from helpers import write_problems  # noqa: E402
from test_live_view import SLOW_SIM, wait_until  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "viewer"))
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = lambda a: subprocess.Popen([sys.executable, *a], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: E731
                                     text=True, env=env)
    default = args.out == str(ROOT / "benchmarks" / "results" / "viewer")
    record: dict = {"command": "python benchmarks/viewer_live.py" + ("" if default else f" --out {args.out}"),
                    "backend": "fot.sim (SIMULATED backend, a test double), 80 ms to first token"}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        probs = write_problems(tmp, 6, seed=3, name="arith.jsonl")
        results = tmp / "run.jsonl"
        sim_port, view_port = free_port(), free_port()
        procs = [run(["-c", SLOW_SIM, str(sim_port)])]
        try:
            wait_until(lambda: procs[0].stdout.readline().startswith("http"), "fot.sim")
            procs.append(run(["-m", "fot", "view", "--watch", str(results), "--port", str(view_port)]))
            procs[1].stdout.readline()
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = b.new_page(viewport={"width": 1200, "height": 760})
                page.goto(f"http://127.0.0.1:{view_port}/")
                solve_args = ["-m", "fot", "solve", str(probs), "--base-url", f"http://127.0.0.1:{sim_port}/v1",
                              "--model", "fot-sim", "--trees", "3", "--rollouts", "3", "--reward-samples", "1",
                              "--parallel", "1", "--out", str(results)]
                procs.append(run(solve_args))
                record["solve"] = "python " + " ".join(solve_args[:3]) + " PROBLEMS " + " ".join(solve_args[4:-2])
                wait_until(lambda: page.locator("tr.problem").count() >= 2 and
                           "leads" in (page.locator(".live-problem h3").first.text_content()
                                       if page.locator(".live-problem h3").count() else ""), "a problem in flight")
                page.screenshot(path=str(out_dir / "live.png"))
                record["live.png"] = page.locator("#live-counts").text_content()
                procs[2].wait(timeout=600)
                wait_until(lambda: "run finished" in page.locator("#live-counts").text_content(), "the end")
                wait_until(lambda: page.locator("tr.problem").count() == 6, "every result")
                page.screenshot(path=str(out_dir / "live-done.png"))
                record["live-done.png"] = page.locator("#live-counts").text_content()
                sc = tmp / "sc.jsonl"
                small = write_problems(tmp, 5, seed=4, name="sc.jsonl")
                done = subprocess.run([sys.executable, "-m", "fot", "solve", str(small), "--sim", "--method", "sc",
                                       "--samples", "5", "--sim-profile", "p_first=0.4", "--out", str(tmp / "sc-out.jsonl"),
                                       "--quiet"], env=env, capture_output=True, text=True)
                assert done.returncode == 0, done.stderr
                sc = tmp / "sc-out.jsonl"
                view.main([str(sc), "-o", str(tmp / "sc.html")])
                page = b.new_page(viewport={"width": 1200, "height": 760})
                page.goto((tmp / "sc.html").as_uri())
                page.locator("tr.problem").nth(1).click()
                page.screenshot(path=str(out_dir / "samples.png"), full_page=True)
                record["samples.png"] = "sc, 5 samples on 5 problems (--sim-profile p_first=0.4): problem 2's votes"
                b.close()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)
    (out_dir / "viewer_live.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
