"""Cells of the two local-arith runs (benchmarks/local_arith.sh), replayed with fot.measure.meter.grid.

python benchmarks/local_arith_report.py  ->  prints and writes benchmarks/results/local-arith/report.md
"""

import json
import sys
from pathlib import Path

from fot.measure.meter import GRID_NOTE, grid, summarize
from fot.tasks import get_task

DIR = Path(__file__).resolve().parent / "results" / "local-arith"


def load(name: str) -> list[dict]:
    path = DIR / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main() -> int:
    task = get_task("arith")
    forest, tree = load("forest-4x1.jsonl"), load("tree-1x6.jsonl")
    ids = sorted({r["id"] for r in forest} & {r["id"] for r in tree})
    forest = [r for r in forest if r["id"] in ids]
    tree = [r for r in tree if r["id"] in ids]
    lines = [f"# SmolLM2-135M-Instruct (Q4_1, llama.cpp, 2 cores) on examples/arith.jsonl: {len(ids)} problems", "",
             "Command: `bash benchmarks/local_arith.sh`, then `python benchmarks/local_arith_report.py`.", "",
             GRID_NOTE, "", "| run | cell (trees x rollouts) | accuracy | 95% CI | tokens/problem | calls/problem | "
             "expert: recorded / fallback |", "| --- | --- | ---: | :---: | ---: | ---: | :---: |"]
    for name, rows, cells in (("forest-4x1", forest, [(t, r) for t in (1, 2, 4) for r in (0, 1)]),
                              ("tree-1x6", tree, [(1, r) for r in (0, 1, 2, 4, 6)])):
        if not rows:
            continue
        for c in grid(rows, task, sorted({t for t, _ in cells}), sorted({r for _, r in cells})):
            if (c.trees, c.rollouts) not in cells:
                continue
            ci = f"{c.ci95[0]:.0%} - {c.ci95[1]:.0%}"
            calls = sum(r["calls"] for r in rows) / len(rows) if (c.trees, c.rollouts) == max(cells) else float("nan")
            lines.append(f"| {name} | {c.trees} x {c.rollouts} | {c.accuracy:.1%} | {ci} | {c.tokens_mean:,.0f} | "
                         f"{'' if calls != calls else f'{calls:.0f}'} | {c.expert_recorded} / {c.expert_fallback} |")
        s = summarize(rows)
        lines.append(f"| {name} | oracle pass@k (any node right; not accuracy) | {s.oracle_pass_at_k:.1%} | | | | |")
    text = "\n".join(lines) + "\n"
    (DIR / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
