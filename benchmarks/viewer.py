"""How big is the node record, and does fot.view open a large run quickly? (fot.sim: SIMULATED backend)

  python benchmarks/viewer.py [--problems ../shared/data/gsm8k/test.jsonl] [--out benchmarks/results/viewer]

1. Bytes per problem of `<out>.trees.jsonl`: a real fot.solve run on fot.sim, 4 trees x 8 rollouts (the
   default forest), on the first `--record-n` problems (GSM8K-shaped when given the GSM8K test file).
2. A 200-problem x 8-tree x 8-rollout results file: `--seed-n` problems really run on fot.sim, then copied
   under new ids up to 200 (the page does the same work for a copy as for an original).
3. The page opened from file:// in headless Chromium (Playwright, the system's chromium): time to a
   rendered table of 200 rows, then to a drawn forest after a click; the median of `--repeat` loads.
   Load must be under 2 s. Screenshots of a problem's forest (a node clicked) and of a sweep are saved.

Writes OUT/viewer.json, OUT/viewer.png, OUT/sweep.png. Numbers come from the simulator and this machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fot import view  # noqa: E402
from fot.measure.results import trees_path  # noqa: E402
from fot.solve import main as solve  # noqa: E402
from fot.tasks import Arith  # noqa: E402


def problems_file(path: str | None, tmp: Path) -> Path:
    if path:
        return Path(path)
    p = tmp / "arith.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in Arith.generate(40, seed=1)))
    return p


def run(problems: Path, out: Path, n: int, trees: int, rollouts: int) -> None:
    rc = solve([str(problems), "--sim", "--trees", str(trees), "--rollouts", str(rollouts), "--limit", str(n),
                "--out", str(out), "--quiet", "--parallel", "4"])
    if rc != 0:
        raise SystemExit(f"fot.solve failed ({rc})")


def grow(src: Path, dst: Path, total: int) -> None:
    """Copy the run's results and trees lines under new ids until there are `total` problems."""
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    forests = {t["id"]: t for t in map(json.loads, trees_path(src).read_text().splitlines())}
    with open(dst, "w") as r, open(trees_path(dst), "w") as t:
        for k in range(total):
            row = rows[k % len(rows)]
            new = f"{row['id']}~{k // len(rows)}" if k >= len(rows) else row["id"]
            r.write(json.dumps({**row, "id": new}) + "\n")
            t.write(json.dumps({**forests[row["id"]], "id": new}) + "\n")


def measure(html: Path, repeat: int, shot: Path | None, expect: int) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    loads, opens, errors = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for i in range(repeat):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            t0 = time.perf_counter()
            page.goto(html.as_uri(), wait_until="load")
            page.wait_for_function(f"document.querySelectorAll('tr.problem').length === {expect}")
            loads.append(time.perf_counter() - t0)
            wrong = page.locator('tr.problem[data-status="wrong"]')
            row = wrong.first if wrong.count() else page.locator("tr.problem").first
            t1 = time.perf_counter()
            row.click()
            page.wait_for_selector("#detail .tree svg")
            opens.append(time.perf_counter() - t1)
            if shot is not None and i == repeat - 1:
                page.locator(".tree g.node.best").first.click()
                page.screenshot(path=str(shot), full_page=True)
            page.close()
        browser.close()
    return {"load_s": loads, "load_s_median": statistics.median(loads), "open_problem_s": opens,
            "open_problem_s_median": statistics.median(opens), "console_errors": errors}


def sweep_shot(directory: Path, shot: Path) -> None:
    from playwright.sync_api import sync_playwright

    html = Path(tempfile.mkdtemp()) / "sweep.html"
    html.write_text(view.render(view.page_data(directory)))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                    args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 560})
        page.goto(html.as_uri())
        page.locator("#sweep-svg circle.cell").last.hover()
        page.screenshot(path=str(shot))
        browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default=None, help="problem file (default: 40 generated arithmetic problems)")
    ap.add_argument("--record-n", type=int, default=20, help="problems for the bytes-per-problem run (4 x 8)")
    ap.add_argument("--seed-n", type=int, default=20, help="problems really run at 8 x 8 for the 200-problem file")
    ap.add_argument("--total", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/viewer"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="fot-viewer-"))
    problems = problems_file(args.problems, tmp)

    rec = tmp / "record.jsonl"
    run(problems, rec, args.record_n, 4, 8)
    n = len(rec.read_text().splitlines())
    record = {"problems": n, "trees": 4, "rollouts": 8, "trees_file_bytes": trees_path(rec).stat().st_size,
              "results_file_bytes": rec.stat().st_size}
    record["trees_bytes_per_problem"] = record["trees_file_bytes"] / n
    record["trees_gzip_bytes_per_problem"] = len(gzip.compress(trees_path(rec).read_bytes())) / n
    record["results_bytes_per_problem"] = record["results_file_bytes"] / n

    seed = tmp / "seed.jsonl"
    run(problems, seed, args.seed_n, 8, 8)
    big = tmp / "big.jsonl"
    grow(seed, big, args.total)
    html = tmp / "big.html"
    html.write_text(view.render(view.page_data(big)))
    timing = measure(html, args.repeat, out / "viewer.png", args.total)
    sweep_dir = ROOT / "benchmarks/results/sim-arith-baselines"
    sweep_shot(sweep_dir, out / "sweep.png")

    report = {"backend": "fot.sim (SIMULATED backend, a test double)", "problems_file": str(args.problems or
              "40 generated arithmetic problems (fot.tasks.arith, seed 1)"),
              "record_4x8": record,
              "viewer": {"problems": args.total, "trees": 8, "rollouts": 8, "really_run": args.seed_n,
                         "trees_file_bytes": trees_path(big).stat().st_size, "html_bytes": html.stat().st_size,
                         **timing, "under_2s": timing["load_s_median"] < 2.0},
              "chromium": shutil.which("chromium"), "command": "python benchmarks/viewer.py " + " ".join(sys.argv[1:])}
    (out / "viewer.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if report["viewer"]["under_2s"] and not timing["console_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
