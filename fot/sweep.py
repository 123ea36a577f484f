"""`python -m fot.sweep PROBLEMS --trees 1,2,4,8 --rollouts 1,2,4,8 --baselines sc,bon --out DIR [solve options]`

Diversity against volume, and both against plain sampling, measured. One run of the largest cell
(max trees x max rollouts) is made with `fot.solve` (resumable), and every smaller cell is replayed
from its snapshots (see `fot.measure.meter.grid`); each baseline (`--baselines sc,bon`, see
fot/search/baselines.py) is one run of the largest `--samples`, smaller counts replayed the same way.
`sweep.md` then answers, problem by problem (paired intervals, `fot.measure.stats`): at equal or fewer
tokens, does a wider forest beat one deeper tree, and does either beat sc or bon?
`--independent` also runs every forest cell for real and compares it with its replay (paired).

Writes DIR/sweep.json (every cell), DIR/sweep.md (a table to read) and DIR/sweep.png (accuracy
against mean tokens per problem, one line per tree count, 95% intervals, Pareto frontier marked;
skipped, with a note, without matplotlib). `python -m fot.view DIR` draws the same cells in a page.
Every other fot.solve option (listed below) is passed through to each run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from . import solve
from .options import Parser
from .upstream import price_of
from .methods import SAMPLING_METHODS
from .measure.meter import GRID_NOTE, Cell, cheapest_reaching, compare, diversity_pairs, grid, pareto, sample_curve
from .tasks import get_task


def _int_list(s: str) -> list[int]:
    try:
        vals = sorted({int(x) for x in s.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not vals or vals[0] < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {s!r}")
    return vals


def _methods(s: str) -> list[str]:
    vals = [x.strip() for x in s.split(",") if x.strip()]
    bad = [v for v in vals if v not in SAMPLING_METHODS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown baseline(s) {bad}; known: {', '.join(SAMPLING_METHODS)}")
    return vals


def at_most(cells: list[Cell], tokens: float) -> Cell | None:
    """The rival at equal or fewer tokens: the cell spending the most without spending more than `tokens`."""
    ok = [c for c in cells if c.tokens_mean <= tokens * 1.0001]
    return max(ok, key=lambda c: c.tokens_mean) if ok else None


def questions(cells: list[Cell], baselines: dict[str, list[Cell]], front: list[Cell]) -> list[dict]:
    """The mission's question, problem by problem: each forest cell on the Pareto frontier (and the run's
    own cell) against what spends equal or fewer tokens: one deeper tree, and each baseline."""
    largest = max(cells, key=lambda c: (c.trees * max(c.rollouts, 1), c.trees))
    subjects = {c.label: c for c in [*front, largest] if c.method == "forest" and c.exact}
    deep = [c for c in cells if c.trees == 1 and c.exact]
    rows = []
    for a in sorted(subjects.values(), key=lambda c: c.tokens_mean):
        rivals = [] if a.trees == 1 else [("one deeper tree", at_most(deep, a.tokens_mean))]
        rivals += [(m, at_most(curve, a.tokens_mean)) for m, curve in baselines.items()]
        for kind, b in rivals:
            if b is None:
                rows.append({"a": a.label, "b": None, "kind": kind, "verdict": "no cell spends this few tokens"})
                continue
            d, ratio = compare(a, b)
            rows.append({"a": a.label, "b": b.label, "kind": kind, "a_accuracy": a.accuracy, "b_accuracy": b.accuracy,
                         "diff": d.diff, "ci95": d.ci95, "b_tokens_over_a": ratio, "n": d.n,
                         "verdict": d.verdict(a.label, b.label)})
    return rows


# fot.solve settings the sweep sets itself for each run
SWEEP_OWNS = frozenset({"trees", "rollouts", "out", "samples", "method"})


def parser() -> argparse.ArgumentParser:
    ap, _ = _parser()
    return ap


def _accuracy(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--target must be a number, got {s[:40]!r}") from None
    if not 0 <= v <= 1:  # (nan and inf included)
        raise argparse.ArgumentTypeError(f"--target is an accuracy from 0 to 1, got {s}")
    return v


def _parser() -> tuple[argparse.ArgumentParser, list[str]]:
    ap = Parser(prog="python -m fot.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("problems")
    ap.add_argument("--trees", type=_int_list, default=[1, 2, 4, 8])
    ap.add_argument("--rollouts", type=_int_list, default=[1, 2, 4, 8])
    ap.add_argument("--out", required=True, help="directory for the run, sweep.json, sweep.md, sweep.png")
    ap.add_argument("--baselines", type=_methods, default=[], metavar="sc,bon",
                    help="sampling baselines to run on the same problems (cot, sc, bon)")
    ap.add_argument("--samples", type=_int_list, default=[1, 2, 4, 8, 16],
                    help="sample counts for the baselines (one run of the largest, the rest replayed)")
    ap.add_argument("--independent", action="store_true", help="also run every cell on its own and compare")
    ap.add_argument("--target", type=_accuracy, default=None, help="report the cheapest cell reaching this accuracy")
    return ap, solve.add_options(ap, skip=SWEEP_OWNS, title="passed through to fot.solve: ")


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _signals(run_path: Path) -> list[dict]:
    """A run's signals (fot.measure.signals) from its summary: parse rate, AUROC, cost per verifier."""
    p = run_path.with_suffix(".summary.json")
    return json.loads(p.read_text()).get("signals", []) if p.exists() else []


def signal_lines(signals: dict) -> list[str]:
    """sweep.md's table of every signal the runs steered or decided on, measured after them."""
    rows = [(run, s) for run, sigs in (signals or {}).items() for s in sigs]
    if not rows:
        return []
    out = ["", "## Signals (fot.measure.signals: does a score tell right from wrong?)", "",
           "| run | signal | asked | parse rate | AUROC | ECE | tokens / problem |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for run, s in rows:
        f = lambda x, spec: "n/a" if x is None else format(x, spec)  # noqa: E731
        out.append(f"| {run} | {s['name']} | {s['asked']:,} | {f(s.get('parse_rate'), '.0%')} | {f(s['auroc'], '.3f')} | "
                   f"{f(s['ece'], '.3f')} | {f(s['tokens_per_problem'], ',.0f')} |")
    return out


def write_markdown(path: Path, cells: list[Cell], front: list[Cell], pairs, target_cell, target, meta: dict,
                   validation: list[dict] | None, baselines: dict[str, list[Cell]] | None = None,
                   asked: list[dict] | None = None) -> None:
    lines = [f"# Sweep: {meta['problems_file']}", "",
             f"Backend: {meta['backend']}. Task: {meta['task']}. {meta['n']} problems. One run of "
             f"{meta['run_trees']} trees x {meta['run_rollouts']} rollouts; command: `{meta['command']}`.", "",
             GRID_NOTE, "",
             "| trees | rollouts | accuracy | 95% CI | tokens/problem | tokens/solved | $/solved | expert: recorded / fallback |",
             "| ---: | ---: | ---: | :---: | ---: | ---: | ---: | :---: |"]
    on_front = {(c.trees, c.rollouts) for c in front}
    for c in cells:
        if not c.exact:
            lines.append(f"| {c.trees} | {c.rollouts} | not replayable ({c.inexact} of {c.problems} problems): "
                         f"{c.inexact_reason} | | | | | |")
            continue
        ci = "n/a" if c.ci95 is None else f"{c.ci95[0]:.1%} - {c.ci95[1]:.1%}"
        mark = " **(Pareto)**" if (c.trees, c.rollouts) in on_front else ""
        lines.append(f"| {c.trees} | {c.rollouts} | {_pct(c.accuracy)}{mark} | {ci} | {c.tokens_mean:,.0f} | "
                     f"{'n/a' if c.tokens_per_solved is None else f'{c.tokens_per_solved:,.0f}'} | "
                     f"{'n/a' if c.usd_per_solved is None else f'{c.usd_per_solved:.4f}'} | "
                     f"{c.expert_recorded} / {c.expert_fallback} |")
    lines += ["", "## Diversity against volume (same trees x rollouts)", ""]
    if pairs:
        lines += ["| wide (t x r) | accuracy | tokens | narrow (t x r) | accuracy | tokens |", "| --- | ---: | ---: | --- | ---: | ---: |"]
        for wide, narrow in pairs:
            lines.append(f"| {wide.trees} x {wide.rollouts} | {_pct(wide.accuracy)} | {wide.tokens_mean:,.0f} | "
                         f"{narrow.trees} x {narrow.rollouts} | {_pct(narrow.accuracy)} | {narrow.tokens_mean:,.0f} |")
    else:
        lines.append("No two cells share trees x rollouts.")
    if target is not None:
        lines += ["", f"Cheapest cell reaching {target:.0%}: " + (
            f"{target_cell.trees} x {target_cell.rollouts} at {target_cell.tokens_mean:,.0f} tokens/problem"
            if target_cell else "none")]
    for method, curve in (baselines or {}).items():
        lines += ["", f"## Baseline: {method} (one run of {max(c.samples for c in curve)} samples, fewer replayed)", "",
                  "| samples | accuracy | 95% CI | tokens/problem | tokens/solved |", "| ---: | ---: | :---: | ---: | ---: |"]
        for c in curve:
            lines.append(f"| {c.samples} | {_pct(c.accuracy)} | {c.ci95[0]:.1%} - {c.ci95[1]:.1%} | {c.tokens_mean:,.0f} | "
                         f"{'n/a' if c.tokens_per_solved is None else f'{c.tokens_per_solved:,.0f}'} |")
    if asked:
        lines += ["", "## Is the forest worth its tokens? (same problems, paired)", "",
                  "Each forest cell on the Pareto frontier (and the run's own cell) against the largest rival that "
                  "spends equal or fewer tokens. Difference = A minus B in accuracy, with Newcombe's paired 95% "
                  "interval; 'not resolved at this n' when it straddles 0.", "",
                  "| A | B (equal or fewer tokens) | A acc. | B acc. | A - B | 95% CI | B tokens / A tokens | verdict |",
                  "| --- | --- | ---: | ---: | ---: | :---: | ---: | --- |"]
        for q in asked:
            if q["b"] is None:
                lines.append(f"| {q['a']} | {q['kind']} | | | | | | {q['verdict']} |")
                continue
            lines.append(f"| {q['a']} | {q['b']} ({q['kind']}) | {_pct(q['a_accuracy'])} | {_pct(q['b_accuracy'])} | "
                         f"{q['diff']:+.1%} | {q['ci95'][0]:+.1%} to {q['ci95'][1]:+.1%} | {q['b_tokens_over_a']:.2f} | "
                         f"{q['verdict']} |")
    if validation is not None:
        lines += ["", "## Validation: each cell run on its own", "",
                  "Replayed against measured, on the same problems: the paired difference (replayed minus measured) "
                  "and the tokens the ledger recorded for the independent run.", "",
                  "| trees | rollouts | replayed | measured | replayed - measured | 95% CI | replayed tokens | "
                  "measured tokens | verdict |", "| ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: | --- |"]
        for v in validation:
            lines.append(f"| {v['trees']} | {v['rollouts']} | {_pct(v['predicted'])} | {_pct(v['measured'])} | "
                         f"{v['diff']:+.1%} | {v['ci95'][0]:+.1%} to {v['ci95'][1]:+.1%} | {v['predicted_tokens']:,.0f} | "
                         f"{v['measured_tokens']:,.0f} | {v['verdict']} |")
    lines += signal_lines(meta.get("signals"))
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, cells: list[Cell], front: list[Cell], title: str,
         baselines: dict[str, list[Cell]] | None = None) -> bool:
    """Draw sweep.png; False (nothing drawn) without matplotlib, which is optional: the table still prints."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in sorted({c.trees for c in cells}):
        row = sorted((c for c in cells if c.trees == t and c.accuracy is not None and c.exact), key=lambda c: c.tokens_mean)
        if not row:
            continue
        x = [c.tokens_mean for c in row]
        y = [c.accuracy for c in row]
        err = [[c.accuracy - c.ci95[0] for c in row], [c.ci95[1] - c.accuracy for c in row]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{t} tree{'s' if t > 1 else ''}")
        for c in row:
            ax.annotate(f"r={c.rollouts}", (c.tokens_mean, c.accuracy), fontsize=7, xytext=(3, -9),
                        textcoords="offset points")
    if front:
        ax.plot([c.tokens_mean for c in front], [c.accuracy for c in front], "k--", lw=1, label="Pareto frontier")
        ax.scatter([c.tokens_mean for c in front], [c.accuracy for c in front], s=120, facecolors="none",
                   edgecolors="k", zorder=5)
    for method, curve in (baselines or {}).items():
        pts = [c for c in curve if c.accuracy is not None]
        ax.plot([c.tokens_mean for c in pts], [c.accuracy for c in pts], ":", marker="s", ms=4,
                label=f"{method} (samples {pts[0].samples}-{pts[-1].samples})" if pts else method)
    ax.set_xscale("log")
    ax.set_xlabel("mean tokens per problem (log scale)")
    ax.set_ylabel("accuracy of the returned answer")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    ap, _ = _parser()
    args = ap.parse_args(argv)
    try:
        base = solve.settings_from(args, skip=SWEEP_OWNS)  # the fot.solve settings given, the same for every run
    except ValueError as e:
        ap.error(str(e))
    command = "python -m fot.sweep " + " ".join(sys.argv[1:] if argv is None else argv)
    if base.run.ray is None:
        return _sweep(args, base, command)
    # one Ray for all the sweep's runs (each run's workers are its own), not a start and a stop per run
    from .distributed import RayUnavailable, start_ray

    try:
        started = start_ray(base.run.ray or None, base.run.ray_workers)
    except RayUnavailable as e:
        print(f"fot.sweep: {e}", file=sys.stderr)
        return 1
    try:
        return _sweep(args, base, command)
    finally:
        if started:
            import ray

            ray.shutdown()


def _run(base: "solve.SolveSettings", out: Path, **changes) -> int:
    """One fot.solve run of the sweep: the shared settings with this run's own (trees, rollouts, method,
    samples) and its --out, through the library, not the command line."""
    search = {**base.search, **{k: changes.pop(k) for k in ("trees", "rollouts") if k in changes}}
    run = dataclasses.replace(base.run, out=str(out), **changes)
    return solve.execute(dataclasses.replace(base, search=search, run=run))


def _sweep(args: argparse.Namespace, base: "solve.SolveSettings", command: str) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    T, R = max(args.trees), max(args.rollouts)
    if T < 1:
        print("fot.sweep: --trees needs a value >= 1", file=sys.stderr)
        return 2
    run_path = out / "run.jsonl"
    rc = _run(base, run_path, trees=T, rollouts=R)
    if rc != 0:
        return rc
    rows = _load(run_path)
    if not rows:
        print("fot.sweep: the run produced no results", file=sys.stderr)
        return 1
    task = get_task(rows[0]["task"])
    price = price_of(base.backend)
    cells = grid(rows, task, args.trees, args.rollouts, price)
    front = pareto([c for c in cells if c.exact])
    pairs = diversity_pairs([c for c in cells if c.exact])
    target_cell = cheapest_reaching(cells, args.target) if args.target is not None else None
    summary = json.loads(run_path.with_suffix(".summary.json").read_text())
    meta = {"problems_file": args.problems, "backend": summary.get("backend"), "task": task.name, "n": len(rows),
            "run_trees": T, "run_rollouts": R, "command": command, "simulated": summary.get("simulated")}

    baselines: dict[str, list[Cell]] = {}
    for method in args.baselines:
        path = out / f"{method}.jsonl"
        rc = _run(base, path, method=method, samples=max(args.samples))
        if rc != 0:
            return rc
        baselines[method] = sample_curve(_load(path), task, args.samples, price)
        meta.setdefault("signals", {})[method] = _signals(path)
    meta.setdefault("signals", {})["run"] = _signals(run_path)
    asked = questions(cells, baselines, front)

    validation = None
    if args.independent:
        validation = []
        for c in cells:
            if c.trees == 0:
                continue
            cell_path = out / "cells" / f"t{c.trees}-r{c.rollouts}.jsonl"
            rc = _run(base, cell_path, trees=c.trees, rollouts=c.rollouts)
            if rc != 0:
                return rc
            own = grid(_load(cell_path), task, [c.trees], [c.rollouts], price)[0]
            d, _ = compare(c, own)
            validation.append({"trees": c.trees, "rollouts": c.rollouts, "predicted": c.accuracy,
                               "measured": own.accuracy, "diff": d.diff, "ci95": d.ci95,
                               "inside": not d.resolved, "verdict": "same" if d.diff == 0 else d.verdict(
                                   "replay higher", "measured higher"),
                               "measured_tokens": own.tokens_mean, "predicted_tokens": c.tokens_mean})

    (out / "sweep.json").write_text(json.dumps({
        "meta": meta, "note": GRID_NOTE, "cells": [c.to_dict() for c in cells],
        "baselines": {m: [c.to_dict() for c in curve] for m, curve in baselines.items()}, "questions": asked,
        "pareto": [(c.trees, c.rollouts) for c in front],
        "diversity_pairs": [[(w.trees, w.rollouts), (n.trees, n.rollouts)] for w, n in pairs],
        "cheapest_reaching_target": None if target_cell is None else (target_cell.trees, target_cell.rollouts),
        "validation": validation}, indent=1, allow_nan=False) + "\n")
    write_markdown(out / "sweep.md", cells, front, pairs, target_cell, args.target, meta, validation, baselines, asked)
    backend = str(meta["backend"])
    title = f"{meta['task']} on {backend}" + (" (SIMULATED)" if meta["simulated"] and "SIMULATED" not in backend else "")
    drawn = plot(out / "sweep.png", cells, front, title, baselines)
    print((out / "sweep.md").read_text())
    if not drawn:
        print(f"fot.sweep: {out / 'sweep.png'} not drawn: it needs matplotlib (pip install -e '.[plot]'); "
              f"python -m fot.view {out} draws the chart without it", file=sys.stderr)
    if validation is not None and not all(v["inside"] for v in validation):
        print("fot.sweep: some independently run cells differ from their replay beyond chance (paired)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
