"""Tree shape and accuracy of one `fot.solve` run: does each MCTSr tree really search?

Runs `python -m fot.solve` in-process with the given arguments and, as each tree finishes, appends its
shape to `<out>.shapes.jsonl`: depth of the deepest node (a first answer is depth 0), node count, the
most children any node has, how many nodes have two or more children, and how often the dummy
"I don't know" root was expanded. It hooks `MCTSrTree.run` from outside, so the same script measures
any version of the engine (issue 10's before/after). Resumable like `fot.solve` (same `--out`).

    python benchmarks/search_shape.py examples/arith.jsonl --sim --trees 4 --rollouts 8 --out DIR/sim.jsonl
    python benchmarks/search_shape.py ... --sim-noise     # fot.sim whose self-evaluation is noise
    python benchmarks/search_shape.py --report DIR/before.jsonl DIR/after.jsonl   # a markdown table
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def shape(tree) -> dict:
    def depth(n) -> int:
        d = 0
        while n.parent is not None and n.parent is not tree.root:
            n, d = n.parent, d + 1
        return d

    nodes = tree.nodes
    dummy = [n for n in nodes if n.dummy]
    return {"problem": tree.problem_id, "tree": tree.result.index, "nodes": len(nodes),
            "depth": max((depth(n) for n in nodes), default=0),
            "max_children": max((len(n.children) for n in nodes), default=0),
            "branching_nodes": sum(1 for n in nodes if len(n.children) >= 2),
            "children_per_parent": (sum(len(n.children) for n in nodes) / max(1, sum(1 for n in nodes if n.children))),
            "dummy_children": sum(len(n.children) for n in dummy),
            "rollouts": tree.result.rollouts_done}


def run(argv: list[str]) -> int:
    from fot import mctsr, solve
    try:  # where the simulator's settings are read (fot.solve itself in older engines)
        from fot import upstream
    except ImportError:
        upstream = solve

    out = Path(argv[argv.index("--out") + 1])
    shapes = out.with_suffix(".shapes.jsonl")
    shapes.parent.mkdir(parents=True, exist_ok=True)
    original = mctsr.MCTSrTree.run

    async def run_and_record(self):
        try:
            return await original(self)
        finally:
            with open(shapes, "a") as fh:
                fh.write(json.dumps(shape(self)) + "\n")

    mctsr.MCTSrTree.run = run_and_record
    if "--sim-noise" in argv:  # a verifier that is noise: right and wrong answers get the same scores
        argv = [a for a in argv if a != "--sim-noise"]  # (set here so that older engines, whose
        original_profile = upstream.sim_profile  # --sim-profile took no pairs, run the same profile)

        def noisy(spec):
            import dataclasses
            return dataclasses.replace(original_profile(spec), eval_right=(20.0, 40.0), eval_wrong=(20.0, 40.0))
        upstream.sim_profile = noisy
    return solve.main(argv)


def grid_table(paths: list[str], trees=(1, 2, 4), rollouts=(0, 1, 2, 3, 4, 8)) -> str:
    """Accuracy by (trees x rollouts) cell, each run replayed with today's meter (smaller cells that needed
    the expert use the decision rule's fallback; see docs/meter.md)."""
    from fot.meter import grid
    from fot.tasks import get_task

    head = "| run | " + " | ".join(f"{t}x{r}" for t in trees for r in rollouts) + " |"
    lines = [head, "| --- |" + " ---: |" * (len(trees) * len(rollouts))]
    for p in paths:
        rows = [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]
        T = max(len(r["snapshots"]) for r in rows)
        R = max((r.get("settings") or {}).get("rollouts", 0) for r in rows)
        cells = grid(rows, get_task(rows[0]["task"]), [t for t in trees if t <= T], [r for r in rollouts if r <= R])
        acc = {(c.trees, c.rollouts): c for c in cells}
        lines.append(f"| {Path(p).stem} | " + " | ".join(
            (f"{acc[(t, r)].accuracy:.1%}" if acc[(t, r)].exact else "n/r") if (t, r) in acc else ""
            for t in trees for r in rollouts) + " |")
    return "\n".join(lines)


def report(paths: list[str]) -> str:
    lines = ["| run | problems | accuracy | oracle pass@k | tokens / problem | mean depth | max depth | "
             "nodes with >= 2 children (per tree) | children per parent | dummy expanded (trees) | evals read |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in paths:
        rows = [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]
        ids = {r["id"] for r in rows}
        shp = [json.loads(x) for x in Path(p).with_suffix(".shapes.jsonl").read_text().splitlines() if x.strip()]
        last = {(s["problem"], s["tree"]): s for s in shp if s["problem"] in ids}  # a resumed run: the kept result
        shp = list(last.values())
        graded = [r for r in rows if r.get("correct") is not None]
        acc = sum(r["correct"] for r in graded) / len(graded) if graded else float("nan")
        orc = sum(bool(r.get("oracle_correct")) for r in graded) / len(graded) if graded else float("nan")
        tok = statistics.fmean(r["tokens"]["total"] for r in rows)
        lines.append(f"| {Path(p).stem} | {len(rows)} | {acc:.1%} | {orc:.1%} | {tok:,.0f} | "
                     f"{statistics.fmean(s['depth'] for s in shp):.2f} | {max(s['depth'] for s in shp)} | "
                     f"{statistics.fmean(s['branching_nodes'] for s in shp):.2f} | "
                     f"{statistics.fmean(s.get('children_per_parent', float('nan')) for s in shp):.2f} | "
                     f"{sum(1 for s in shp if s['dummy_children'])}/{len(shp)} | {_read_rate(rows)} |")
    return "\n".join(lines) + "\n\nAccuracy by cell (trees x rollouts), replayed from each run:\n\n" + grid_table(paths)


def _read_rate(rows: list[dict]) -> str:
    asked = sum((r.get("evaluation") or {}).get("asked", 0) for r in rows)
    return f"{sum((r.get('evaluation') or {}).get('parsed', 0) for r in rows) / asked:.0%}" if asked else "n/a (v1)"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:
        print(report(sys.argv[2:]))
        sys.exit(0)
    sys.exit(run(sys.argv[1:]))
