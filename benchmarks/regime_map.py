"""Where does the forest pay? A map over verifier informativeness x input diversity, on fot.sim.

fot.sim is a SIMULATED backend (a test double): every number here is the simulator's, a property of
the profile it was given, never a model's. What the map shows is which *regime* of a model (how well
it grades its own answers; how much another phrasing of a problem changes its chance of solving it)
makes more trees beat more rollouts, and either beat plain sampling, at equal tokens.

For each regime (eval_auroc x tree_sd, the SimProfile knobs of those names) it runs one `fot.sweep`:
a forest of T trees x R rollouts (every smaller cell replayed; --tie-break q, so every replay is exact,
which the sweep checks) and sc up to S samples, on the same generated word problems. Then, free of
selection bias by split halves (`fot.measure.meter.halves`):

- on half A, each forest cell is paired with sc at equal tokens, erring against the forest (the fewest
  samples spending at least as many tokens) and the cell with the largest paired lead is chosen ("best
  forest cell"); the same for the best multi-tree cell against one tree with at least as many tokens
  ("trees against rollouts");
- on half B only, the chosen pairs are measured: the paired accuracy difference and its Newcombe 95%
  interval.

    python benchmarks/regime_map.py --out benchmarks/results/regime-map --work /tmp/regime-map

writes regime-map.json (every regime: chosen cells, differences, intervals, tokens), regime-map.md (the
table, with the command) and regime-map.png (the plot); each regime's sweep directory goes to --work
(its sweep.md is copied to OUT/sweeps/).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fot.measure.meter import Cell, compare, halves  # noqa: E402
from fot.sweep import main as sweep_main  # noqa: E402

NAMES = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
THINGS = ["apples", "pens", "stamps", "marbles", "books", "shells"]


def word_problems(n: int, seed: int) -> list[dict]:
    """Three-premise word problems (so 'shuffle' can reorder them), with their answers, made here: the
    map needs no data set. The simulated backend is given the references; the search never is."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b, c = rng.sample(NAMES, 3)
        thing = rng.choice(THINGS)
        x, y, z = rng.randint(3, 40), rng.randint(3, 40), rng.randint(2, 9)
        q = (f"{a} has {x} {thing}. {b} has {y} {thing}. {c} has {z} times as many {thing} as {a}. "
             f"How many {thing} do the three have together?")
        rows.append({"id": f"w{i:03d}", "question": q, "answer": str(x + y + z * x)})
    return rows


def load_cells(sweep_json: Path) -> tuple[list[Cell], list[Cell]]:
    data = json.loads(sweep_json.read_text())
    fields = Cell.__dataclass_fields__
    mk = lambda d: Cell(**{k: (tuple(v) if k == "ci95" and v else v) for k, v in d.items() if k in fields})  # noqa: E731
    return [mk(c) for c in data["cells"]], [mk(c) for c in data["baselines"].get("sc", [])]


def at_least(cells: list[Cell], tokens: float) -> Cell | None:
    """The rival at equal tokens, erring against the subject: the cheapest cell spending at least `tokens`."""
    ok = [c for c in cells if c.tokens_mean >= tokens]
    return min(ok, key=lambda c: c.tokens_mean) if ok else None


def chosen_against(subjects: list[Cell], rivals: list[Cell], pick: set[str], report: set[str]) -> dict | None:
    """The subject with the largest paired lead over its rival (the cheapest spending at least as many
    tokens) on half `pick`, and that pair measured on half `report`."""
    best = None
    for a in subjects:
        if not a.exact:
            continue
        a_pick = a.restrict(pick)
        b = at_least([r.restrict(pick) for r in rivals if r.exact], a_pick.tokens_mean)
        if b is None:
            continue
        d, _ = compare(a_pick, b)
        if best is None or d.diff > best[0]:
            best = (d.diff, a, next(r for r in rivals if r.label == b.label))
    if best is None:
        return None
    _, a, b = best
    a_rep, b_rep = a.restrict(report), b.restrict(report)
    d, ratio = compare(a_rep, b_rep)
    return {"a": a.label, "b": b.label, "a_accuracy": a_rep.accuracy, "b_accuracy": b_rep.accuracy, "diff": d.diff,
            "ci95": list(d.ci95), "resolved": d.resolved, "n": d.n, "a_tokens": a_rep.tokens_mean,
            "b_tokens": b_rep.tokens_mean, "b_tokens_over_a": ratio, "a_only": d.a_only, "b_only": d.b_only}


def regime(out: Path, problems: Path, auroc: float, tree_sd: float, args: argparse.Namespace) -> dict:
    d = Path(args.work or out) / f"auroc{auroc:g}-treesd{tree_sd:g}"
    argv = [str(problems), "--sim", "--task", "gsm8k", "--sim-profile", f"eval_auroc={auroc},tree_sd={tree_sd}",
            "--trees", args.trees, "--rollouts", args.rollouts, "--baselines", "sc", "--samples", args.samples,
            "--tie-break", "q", "--parallel", str(args.parallel), "--quiet", "--out", str(d)]
    if sweep_main(argv) != 0:
        raise SystemExit(f"regime_map: the sweep for auroc={auroc} tree_sd={tree_sd} failed")
    if args.work:  # the records stay small: each regime's sweep.md is kept, its run files stay in --work
        (out / "sweeps").mkdir(exist_ok=True)
        (out / "sweeps" / f"{d.name}.md").write_text((d / "sweep.md").read_text())
    cells, sc = load_cells(d / "sweep.json")
    inexact = [c.label for c in cells + sc if not c.exact]
    pick, report = halves(cells[0].ids)
    forest = chosen_against(cells, sc, pick, report)
    wide = chosen_against([c for c in cells if c.trees >= 2], [c for c in cells if c.trees == 1], pick, report)
    deep = chosen_against([c for c in cells if c.trees == 1], sc, pick, report)
    return {"eval_auroc": auroc, "tree_sd": tree_sd, "dir": d.name, "inexact_cells": inexact,
            "forest_vs_sc": forest, "trees_vs_rollouts": wide, "one_tree_vs_sc": deep,
            "n_pick": len(pick), "n_report": len(report)}


def _fmt(r: dict | None) -> str:
    if r is None:
        return "n/a (no rival spends as many tokens)"
    star = " *" if r["resolved"] else ""
    return (f"{r['a']} vs {r['b']}: {r['diff']:+.1%} [{r['ci95'][0]:+.1%}, {r['ci95'][1]:+.1%}]{star} "
            f"({r['a_tokens']:,.0f} / {r['b_tokens']:,.0f} tok)")


def write_table(path: Path, rows: list[dict], command: str, args: argparse.Namespace) -> None:
    lines = ["# Regime map: where does the forest pay? (fot.sim, a SIMULATED backend)", "",
             f"Command: `{command}`", "",
             f"{args.problems} generated three-premise word problems; forest {args.trees} trees x {args.rollouts} "
             f"rollouts (one run, smaller cells replayed; --tie-break q so every replay is exact), sc with "
             f"1 to {args.samples.split(',')[-1]} samples (one run, fewer replayed). SimProfile defaults except eval_auroc (the AUROC of "
             "self-evaluation scores against correctness) and tree_sd (logit s.d. of how much another input text "
             "moves a tree's chance: input diversity's effect size). Every number is the simulator's.", "",
             "Equal tokens, erring against the forest: each cell's rival is the cheapest rival cell that spends at "
             "least as many tokens (sc at every sample count, so within a few percent; one tree at its rollout "
             "counts, so sometimes far more: both token means are shown). Selection by split halves: the cell "
             "with the largest paired lead over its rival is chosen on half A and the pair measured on half B "
             "only. A - B with Newcombe's paired 95% interval; * = the interval excludes 0.", "",
             "| verifier AUROC | tree_sd | best forest cell - sc | more trees - one deeper tree | one tree - sc |",
             "| ---: | ---: | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['eval_auroc']:g} | {r['tree_sd']:g} | {_fmt(r['forest_vs_sc'])} | "
                     f"{_fmt(r['trees_vs_rollouts'])} | {_fmt(r['one_tree_vs_sc'])} |")
    bad = [f"{r['dir']}: {', '.join(r['inexact_cells'])}" for r in rows if r["inexact_cells"]]
    lines += ["", "Approximate (inexact) replays: " + ("; ".join(bad) if bad else "none, in any regime.")]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, rows: list[dict], aurocs: list[float], sds: list[float]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [("forest_vs_sc", "best forest cell - sc, at equal tokens"),
              ("trees_vs_rollouts", "more trees - one deeper tree, at equal tokens")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, (key, title) in zip(axes, panels):
        grid = [[None] * len(sds) for _ in aurocs]
        for r in rows:
            grid[aurocs.index(r["eval_auroc"])][sds.index(r["tree_sd"])] = r[key]
        values = [[(g["diff"] * 100 if g else float("nan")) for g in line] for line in grid]
        im = ax.imshow(values, origin="lower", cmap="RdBu", vmin=-40, vmax=40, aspect="auto")
        for i, line in enumerate(grid):
            for j, g in enumerate(line):
                if g is None:
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=7)
                    continue
                ax.text(j, i, f"{g['diff']:+.0%}{' *' if g['resolved'] else ''}\n[{g['ci95'][0]:+.0%}, "
                        f"{g['ci95'][1]:+.0%}]\n{g['a']} vs {g['b']}", ha="center", va="center", fontsize=6.5)
        ax.set_xticks(range(len(sds)), [f"{s:g}" for s in sds])
        ax.set_yticks(range(len(aurocs)), [f"{a:g}" for a in aurocs])
        ax.set_xlabel("input diversity: tree_sd (logits another input moves a tree)")
        ax.set_ylabel("verifier informativeness: AUROC of self-evaluation")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, label="paired accuracy difference, points (half B)")
    fig.suptitle("Where the forest pays, on fot.sim (SIMULATED backend; chosen on half A, measured on half B; "
                 "* = 95% interval excludes 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/regime_map.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the records: regime-map.json/.md/.png (and sweeps/*.md with --work)")
    ap.add_argument("--work", help="where each regime's sweep runs (run files are large); default: --out")
    ap.add_argument("--problems", type=int, default=160)
    ap.add_argument("--aurocs", default="0.5,0.75,0.95")
    ap.add_argument("--tree-sds", default="0,0.7,1.5,3")
    ap.add_argument("--trees", default="1,2,4")
    ap.add_argument("--rollouts", default="0,1,2,4")
    ap.add_argument("--samples", default=",".join(str(n) for n in range(1, 97)),
                    help="sc sample counts (every count, so one sits just above each forest cell's tokens)")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    command = "python benchmarks/regime_map.py " + " ".join(sys.argv[1:] if argv is None else argv)
    aurocs = [float(x) for x in args.aurocs.split(",")]
    sds = [float(x) for x in args.tree_sds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = out / "problems.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in word_problems(args.problems, args.seed)))
    rows = []
    for a in aurocs:
        for s in sds:
            rows.append(regime(out, problems, a, s, args))
            print(f"regime_map: auroc={a:g} tree_sd={s:g}: forest-sc {_fmt(rows[-1]['forest_vs_sc'])}", flush=True)
    (out / "regime-map.json").write_text(json.dumps({"command": command, "simulated": True, "regimes": rows},
                                                    indent=1) + "\n")
    write_table(out / "regime-map.md", rows, command, args)
    drawn = plot(out / "regime-map.png", rows, aurocs, sds)
    print((out / "regime-map.md").read_text())
    if not drawn:
        print("regime_map: regime-map.png not drawn: it needs matplotlib", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
