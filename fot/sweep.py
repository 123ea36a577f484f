"""`python -m fot.sweep PROBLEMS --trees 1,2,4,8 --rollouts 1,2,4,8 --baselines sc,bon --out DIR [solve options]`

Diversity against volume, and both against plain sampling, measured. One run of the largest cell
(max trees x max rollouts) is made with `fot.solve` (resumable), and every smaller cell is replayed
from its snapshots (see `fot.measure.meter.grid`); each baseline (`--baselines sc,bon`, see
fot/search/baselines.py) is one run of the largest `--samples`, smaller counts replayed the same way.
Every cell says whether it was run, replayed exactly or replayed approximately (a smaller forest
that would have asked the expert, a budget that bound, an early stop); approximate cells are shown
with ~ and compared with nothing. `sweep.md` then answers, problem by problem (paired intervals,
`fot.measure.stats`), choosing on one half of the problems and reporting on the other: at equal or
fewer tokens, does a wider forest beat one deeper tree, and does either beat sc or bon?
`--independent` also runs every forest cell for real and compares it with its replay (flips counted
both ways, paired interval).

Writes DIR/sweep.json (every cell), DIR/sweep.md (a table to read) and DIR/sweep.png (accuracy
against mean tokens per problem, one line per tree count, 95% intervals, the frontier over every
exact cell and baseline; skipped, with a note, without matplotlib). `python -m fot.view DIR` draws the
same cells in a page. Every other fot.solve option (listed below) is passed through to each run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass

import sys
from pathlib import Path

from . import solve
from .options import Parser
from .upstream import price_of
from .methods import SAMPLING_METHODS
from .measure.meter import GRID_NOTE, Cell, cheapest_reaching, compare, diversity_pairs, grid, halves, pareto, sample_curve
from .measure.stats import paired_diff
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


HEADLINE_NOTE = ("Free of selection bias by split halves: the problems are split in two fixed halves by a hash of "
                 "their id; the frontier, the subjects (forest cells on it, and the run's own cell) and each subject's "
                 "rival at equal or fewer tokens are chosen on half A, and the accuracies, the paired difference and "
                 "its Newcombe 95% interval are measured on half B only, which played no part in the choice. Only "
                 "cells that are run or replayed exactly take part.")


def questions(cells: list[Cell], baselines: dict[str, list[Cell]], front: list[Cell] | None = None) -> list[dict]:
    """The mission's question, problem by problem: each forest cell on the frontier (over every exact cell,
    baselines included) and the run's own cell, against what spends equal or fewer tokens (one deeper tree,
    each baseline). Chosen on half A of the problems, reported on half B (HEADLINE_NOTE)."""
    exact = [c for c in cells if c.exact]
    if not exact:
        return []
    pick_ids, report_ids = halves(exact[0].ids)
    if not pick_ids or not report_ids:
        return []  # fewer than 2 graded problems: nothing to choose on and report on
    on = lambda cs, keep: [c.restrict(keep) for c in cs if c.exact]  # noqa: E731
    cells_a, cells_b = on(cells, pick_ids), {c.label: c for c in on(cells, report_ids)}
    base_a = {m: on(curve, pick_ids) for m, curve in baselines.items()}
    base_b = {c.label: c for curve in baselines.values() for c in on(curve, report_ids)}
    front_a = pareto(cells_a + [c for curve in base_a.values() for c in curve])
    largest = max(cells, key=lambda c: (c.trees * max(c.rollouts, 1), c.trees))
    subjects = {c.label: c for c in front_a if c.method == "forest"}
    if largest.exact:
        subjects.setdefault(largest.label, next(c for c in cells_a if c.label == largest.label))
    deep = [c for c in cells_a if c.trees == 1]
    rows = []
    for a in sorted(subjects.values(), key=lambda c: c.tokens_mean):
        rivals = [] if a.trees == 1 else [("one deeper tree", at_most(deep, a.tokens_mean))]
        rivals += [(m, at_most(curve, a.tokens_mean)) for m, curve in base_a.items()]
        for kind, b in rivals:
            if b is None:
                rows.append({"a": a.label, "b": None, "kind": kind, "verdict": "no exact cell spends this few tokens"})
                continue
            ab, bb = cells_b[a.label], (base_b if b.method != "forest" else cells_b)[b.label]
            d, ratio = compare(ab, bb)
            rows.append({"a": a.label, "b": b.label, "kind": kind, "a_accuracy": ab.accuracy, "b_accuracy": bb.accuracy,
                         "diff": d.diff, "ci95": d.ci95, "b_tokens_over_a": ratio, "n": d.n, "chosen_on": len(pick_ids),
                         "a_only": d.a_only, "b_only": d.b_only, "verdict": d.verdict(a.label, b.label)})
    return rows


def validate(replayed: Cell, measured: Cell) -> dict:
    """A replayed cell against the same cell run on its own: flips both ways (never netted), answers that
    differ, the paired interval, and tokens."""
    d = paired_diff(replayed.outcomes, measured.outcomes) if replayed.ids == measured.ids else None
    if d is None:
        raise ValueError(f"{replayed.label}: the independent run graded other problems")
    answers_differ = sum(1 for a, b in zip(replayed.answers, measured.answers) if a != b)
    if d.a_only == d.b_only == 0:
        verdict = "same grades" + ("" if answers_differ == 0 else f" ({answers_differ} answers differ, all graded alike)")
    else:
        verdict = (f"differs: {d.a_only} right only in the replay, {d.b_only} right only when run; "
                   + ("not resolved at this n" if not d.resolved else d.verdict("replay higher", "measured higher")))
    return {"trees": replayed.trees, "rollouts": replayed.rollouts, "status": replayed.status,
            "predicted": replayed.accuracy, "measured": measured.accuracy, "diff": d.diff, "ci95": d.ci95,
            "replay_only": d.a_only, "measured_only": d.b_only, "answers_differ": answers_differ,
            "inside": not d.resolved, "verdict": verdict,
            "measured_tokens": measured.tokens_mean, "predicted_tokens": replayed.tokens_mean}


# fot.solve settings the sweep sets itself for each run
SWEEP_OWNS = frozenset({"trees", "rollouts", "out", "samples", "method"})


def parser() -> argparse.ArgumentParser:
    ap, _ = _parser()
    return ap


@dataclass(frozen=True)
class Target:
    """--target as read: the accuracy and how the text was taken (a percentage or a fraction)."""

    accuracy: float
    given_as: str  # "percentage" | "fraction"
    text: str

    def describe(self) -> str:
        return f"--target {self.text} read as {self.accuracy:.1%} (a {self.given_as})"


def _accuracy(s: str) -> Target:
    """'70', '70%' and '0.7' are all 70%: a number above 1 or ending in % is a percentage, else a fraction."""
    text = s.strip()
    pct = text.endswith("%")
    try:
        v = float(text.removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--target must be an accuracy such as 70%, 70 or 0.7, got {s[:40]!r}") from None
    if pct or v > 1:
        if not 0 <= v <= 100:  # (nan and inf included)
            raise argparse.ArgumentTypeError(f"--target as a percentage is from 0 to 100, got {s}")
        return Target(v / 100, "percentage", text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"--target is an accuracy: a percentage (0-100) or a fraction (0-1), got {s}")
    return Target(v, "fraction", text)


def _parser() -> tuple[argparse.ArgumentParser, list[str]]:
    ap = Parser(prog="python -m fot.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("problems", nargs="?", default="", help="a problem file (or --dataset NAME)")
    ap.add_argument("--trees", type=_int_list, default=[1, 2, 4, 8])
    ap.add_argument("--rollouts", type=_int_list, default=[1, 2, 4, 8])
    ap.add_argument("--out", required=True, help="directory for the run, sweep.json, sweep.md, sweep.png")
    ap.add_argument("--baselines", type=_methods, default=[], metavar="sc,bon",
                    help="sampling baselines to run on the same problems (cot, sc, bon)")
    ap.add_argument("--samples", type=_int_list, default=[1, 2, 4, 8, 16],
                    help="sample counts for the baselines (one run of the largest, the rest replayed)")
    ap.add_argument("--independent", action="store_true", help="also run every cell on its own and compare")
    ap.add_argument("--target", type=_accuracy, default=None,
                    help="report the cheapest exact cell reaching this accuracy: 70%%, 70 or 0.7 (says which it read)")
    return ap, solve.add_options(ap, skip=SWEEP_OWNS, title="passed through to fot.solve: ")


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _num(c: Cell, text: str) -> str:
    """A number of an approximate cell is shown with ~: what a replay gives, not what a run of it would."""
    return text if c.exact else f"~{text}"


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


def write_markdown(path: Path, cells: list[Cell], front: list[Cell], pairs, target_cell, target: "Target | None",
                   meta: dict, validation: list[dict] | None, baselines: dict[str, list[Cell]] | None = None,
                   asked: list[dict] | None = None) -> None:
    lines = [f"# Sweep: {meta['problems_file']}", "",
             f"Backend: {meta['backend']}. Task: {meta['task']}. {meta['n']} problems. One run of "
             f"{meta['run_trees']} trees x {meta['run_rollouts']} rollouts; command: `{meta['command']}`.", "",
             GRID_NOTE, "",
             "| trees | rollouts | cell | accuracy | 95% CI | tokens/problem | tokens/solved | $/solved | "
             "expert: recorded / needed |",
             "| ---: | ---: | --- | ---: | :---: | ---: | ---: | ---: | :---: |"]
    on_front = {c.label for c in front}
    for c in cells:
        status = c.status if c.exact else f"replayed approximately ({c.inexact} of {c.problems}: {c.inexact_reason})"
        ci = "n/a" if c.ci95 is None else f"{c.ci95[0]:.1%} - {c.ci95[1]:.1%}"
        mark = " **(frontier)**" if c.label in on_front else ""
        lines.append(f"| {c.trees} | {c.rollouts} | {status} | {_num(c, _pct(c.accuracy))}{mark} | {_num(c, ci)} | "
                     f"{_num(c, f'{c.tokens_mean:,.0f}')} | "
                     f"{'n/a' if c.tokens_per_solved is None else _num(c, f'{c.tokens_per_solved:,.0f}')} | "
                     f"{'n/a' if c.usd_per_solved is None else _num(c, f'{c.usd_per_solved:.4f}')} | "
                     f"{c.expert_recorded} / {c.expert_fallback} |")
    lines += ["", "The frontier is over every exact cell measured, forest cells and baselines alike: "
              + (", ".join(f"{c.label} ({_pct(c.accuracy)} at {c.tokens_mean:,.0f})" for c in front) or "empty") + "."]
    lines += ["", "## Diversity against volume (same trees x rollouts, exact cells)", ""]
    if pairs:
        lines += ["| wide (t x r) | accuracy | tokens | narrow (t x r) | accuracy | tokens |", "| --- | ---: | ---: | --- | ---: | ---: |"]
        for wide, narrow in pairs:
            lines.append(f"| {wide.trees} x {wide.rollouts} | {_pct(wide.accuracy)} | {wide.tokens_mean:,.0f} | "
                         f"{narrow.trees} x {narrow.rollouts} | {_pct(narrow.accuracy)} | {narrow.tokens_mean:,.0f} |")
    else:
        lines.append("No two exact cells share trees x rollouts.")
    if target is not None:
        lines += ["", f"{target.describe()}. Cheapest exact cell reaching it: " + (
            f"{target_cell.label} at {target_cell.tokens_mean:,.0f} tokens/problem" if target_cell else "none")]
    for method, curve in (baselines or {}).items():
        lines += ["", f"## Baseline: {method} (one run of {max(c.samples for c in curve)} samples, fewer replayed)", "",
                  "| samples | cell | accuracy | 95% CI | tokens/problem | tokens/solved |",
                  "| ---: | --- | ---: | :---: | ---: | ---: |"]
        for c in curve:
            status = c.status if c.exact else f"replayed approximately ({c.inexact} of {c.problems}: {c.inexact_reason})"
            mark = " **(frontier)**" if c.label in on_front else ""
            lines.append(f"| {c.samples} | {status} | {_num(c, _pct(c.accuracy))}{mark} | "
                         f"{_num(c, f'{c.ci95[0]:.1%} - {c.ci95[1]:.1%}')} | {_num(c, f'{c.tokens_mean:,.0f}')} | "
                         f"{'n/a' if c.tokens_per_solved is None else _num(c, f'{c.tokens_per_solved:,.0f}')} |")
    if asked is not None:
        lines += ["", "## Is the forest worth its tokens? (same problems, paired, chosen on one half, reported on the other)",
                  "", HEADLINE_NOTE, "",
                  "| A | B (equal or fewer tokens on half A) | n (half B) | A acc. | B acc. | A - B | 95% CI | "
                  "B tokens / A tokens | verdict |",
                  "| --- | --- | ---: | ---: | ---: | ---: | :---: | ---: | --- |"]
        for q in asked:
            if q["b"] is None:
                lines.append(f"| {q['a']} | {q['kind']} | | | | | | | {q['verdict']} |")
                continue
            lines.append(f"| {q['a']} | {q['b']} ({q['kind']}) | {q['n']} | {_pct(q['a_accuracy'])} | "
                         f"{_pct(q['b_accuracy'])} | {q['diff']:+.1%} | {q['ci95'][0]:+.1%} to {q['ci95'][1]:+.1%} | "
                         f"{q['b_tokens_over_a']:.2f} | {q['verdict']} |")
        if not asked:
            lines.append("| (no exact forest cell to ask about) | | | | | | | | |")
    if validation is not None:
        lines += ["", "## Validation: each cell run on its own", "",
                  "Replayed against measured, on the same problems: the problems right only in the replay and right "
                  "only when run (flips are counted both ways, never netted), answers that differ, the paired "
                  "difference (replayed minus measured) with its Newcombe 95% interval, and tokens.", "",
                  "| trees | rollouts | cell | replayed | measured | right only replayed / only run | answers differ | "
                  "replayed - measured | 95% CI | replayed tokens | measured tokens | verdict |",
                  "| ---: | ---: | --- | ---: | ---: | :---: | ---: | ---: | :---: | ---: | ---: | --- |"]
        for v in validation:
            lines.append(f"| {v['trees']} | {v['rollouts']} | {v['status']} | {_pct(v['predicted'])} | "
                         f"{_pct(v['measured'])} | {v['replay_only']} / {v['measured_only']} | {v['answers_differ']} | "
                         f"{v['diff']:+.1%} | {v['ci95'][0]:+.1%} to {v['ci95'][1]:+.1%} | "
                         f"{v['predicted_tokens']:,.0f} | {v['measured_tokens']:,.0f} | {v['verdict']} |")
    lines += signal_lines(meta.get("signals"))
    path.write_text("\n".join(lines) + "\n")


LABEL_OFFSETS = ((4, -11), (4, 4), (-30, 4), (-30, -11), (4, 13), (-30, 13), (4, -20), (-30, -20))


def _place_labels(ax, points: list[tuple[float, float, str]], fig) -> None:
    """Annotate each point where its label overlaps no label placed before and no marker (a few offsets
    tried in turn; a label with no free place is left out rather than drawn over another)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken = []
    for x, y in ((x, y) for x, y, _ in points):
        px, py = ax.transData.transform((x, y))
        taken.append((px - 4, py - 4, px + 4, py + 4))
    for tick in ax.get_xticklabels() + ax.get_yticklabels():
        if tick.get_text():
            b = tick.get_window_extent(renderer)
            taken.append((b.x0, b.y0, b.x1, b.y1))

    def free(b, pad: float = 3.0) -> bool:
        return all(b.x1 + pad <= t[0] or b.x0 - pad >= t[2] or b.y1 + pad <= t[1] or b.y0 - pad >= t[3]
                   for t in taken) and \
            ax.get_window_extent(renderer).contains(b.x0, b.y0) and ax.get_window_extent(renderer).contains(b.x1, b.y1)

    for x, y, text in points:
        for dx, dy in LABEL_OFFSETS:
            ann = ax.annotate(text, (x, y), fontsize=7, xytext=(dx, dy), textcoords="offset points")
            b = ann.get_window_extent(renderer)
            if free(b):
                taken.append((b.x0, b.y0, b.x1, b.y1))
                break
            ann.remove()


def plot(path: Path, cells: list[Cell], front: list[Cell], title: str,
         baselines: dict[str, list[Cell]] | None = None) -> bool:
    """Draw sweep.png (exact cells only; labels that do not collide); False (nothing drawn) without
    matplotlib, which is optional: the table still prints."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    labels = []
    for t in sorted({c.trees for c in cells}):
        row = sorted((c for c in cells if c.trees == t and c.accuracy is not None and c.exact), key=lambda c: c.tokens_mean)
        if not row:
            continue
        x = [c.tokens_mean for c in row]
        y = [c.accuracy for c in row]
        err = [[c.accuracy - c.ci95[0] for c in row], [c.ci95[1] - c.accuracy for c in row]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{t} tree{'s' if t > 1 else ''}")
        labels += [(c.tokens_mean, c.accuracy, f"{c.trees}x{c.rollouts}") for c in row]
    rough = [c for c in cells if c.accuracy is not None and not c.exact]
    if rough:  # shown, so nothing seems missing, but hollow and grey: approximate, compared with nothing
        ax.scatter([c.tokens_mean for c in rough], [c.accuracy for c in rough], s=30, facecolors="none",
                   edgecolors="0.55", label="replayed approximately (~)")
        labels += [(c.tokens_mean, c.accuracy, f"~{c.label}") for c in rough]
    for method, curve in (baselines or {}).items():
        pts = [c for c in curve if c.accuracy is not None and c.exact]
        ax.plot([c.tokens_mean for c in pts], [c.accuracy for c in pts], ":", marker="s", ms=4,
                label=f"{method} (samples {pts[0].samples}-{pts[-1].samples})" if pts else method)
        labels += [(c.tokens_mean, c.accuracy, c.label) for c in pts]
    if front:
        ax.plot([c.tokens_mean for c in front], [c.accuracy for c in front], "k--", lw=1,
                label="frontier (every exact cell)")
        ax.scatter([c.tokens_mean for c in front], [c.accuracy for c in front], s=120, facecolors="none",
                   edgecolors="k", zorder=5)
    ax.set_xscale("log")
    # major ticks only, plainly written: log minor tick labels over a narrow range collide
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("mean tokens per problem (log scale)")
    ax.set_ylabel("accuracy of the returned answer")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _place_labels(ax, labels, fig)
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
    if not args.problems and not base.run.dataset:
        ap.error("give a problem file or --dataset NAME (fot datasets lists them)")
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
    pairs = diversity_pairs([c for c in cells if c.exact])
    summary = json.loads(run_path.with_suffix(".summary.json").read_text())
    meta = {"problems_file": args.problems or f"--dataset {base.run.dataset}", "backend": summary.get("backend"),
            "task": task.name, "n": len(rows), "run_trees": T, "run_rollouts": R, "command": command, "simulated": summary.get("simulated")}
    if args.target is not None:
        print(f"fot.sweep: {args.target.describe()}", file=sys.stderr)

    baselines: dict[str, list[Cell]] = {}
    for method in args.baselines:
        path = out / f"{method}.jsonl"
        rc = _run(base, path, method=method, samples=max(args.samples))
        if rc != 0:
            return rc
        baselines[method] = sample_curve(_load(path), task, args.samples, price)
        meta.setdefault("signals", {})[method] = _signals(path)
    meta.setdefault("signals", {})["run"] = _signals(run_path)
    measured = cells + [c for curve in baselines.values() for c in curve]
    front = pareto(measured)  # over everything measured: forest cells and every baseline
    target_cell = cheapest_reaching(measured, args.target.accuracy) if args.target is not None else None
    asked = questions(cells, baselines)

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
            validation.append(validate(c, own))

    (out / "sweep.json").write_text(json.dumps({
        "meta": meta, "note": GRID_NOTE, "cells": [c.to_dict() for c in cells],
        "baselines": {m: [c.to_dict() for c in curve] for m, curve in baselines.items()}, "questions": asked,
        "pareto": [(c.trees, c.rollouts) for c in front if c.method == "forest"],  # (fot.view reads this)
        "frontier": [c.label for c in front], "headline_note": HEADLINE_NOTE,
        "target": None if args.target is None else dataclasses.asdict(args.target),
        "diversity_pairs": [[(w.trees, w.rollouts), (n.trees, n.rollouts)] for w, n in pairs],
        "cheapest_reaching_target": None if target_cell is None else target_cell.label,
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
    if validation is not None and any(v["replay_only"] or v["measured_only"] for v in validation):
        flipped = [f"{v['trees']}x{v['rollouts']}" for v in validation if v["replay_only"] or v["measured_only"]]
        print(f"fot.sweep: graded differently from their replay on some problems: {', '.join(flipped)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
