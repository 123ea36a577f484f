"""Issue 11's real-model answer: the forest against plain sampling on the embedded SmolLM2-135M.

Reads the runs in benchmarks/results/local-baselines/ (same 150 problems, same backend and seed),
replays every smaller cell from them (`fot.meter.grid`, `fot.meter.sample_curve`), compares
methods problem by problem (`fot.meter.compare`: Newcombe interval of the paired difference), and
splits tokens by call role from the traces. Prints the tables and writes report.md and report.png
next to the runs.

    python benchmarks/local_baselines_report.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from fot.meter import Cell, compare, grid, sample_curve
from fot.tasks import get_task

HERE = Path(__file__).resolve().parent / "results" / "local-baselines"


def load(name: str) -> list[dict]:
    path = HERE / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def cell_row(c: Cell) -> str:
    lo, hi = c.ci95 or (0, 0)
    return f"| {c.label} | {c.graded} | {pct(c.accuracy)} | {lo:.1%} - {hi:.1%} | {c.tokens_mean:,.0f} | " + \
        ("exact" if c.exact else f"not replayable: {c.inexact_reason}") + " |"


def roles(trace: str) -> dict[str, float]:
    """Share of tokens by call role in a trace (prompt + completion + charged_unknown)."""
    path = HERE / trace
    if not path.exists():
        return {}
    by = Counter()
    for line in path.read_text().splitlines():
        r = json.loads(line)
        by[r["role"]] += r["prompt_tokens"] + r["completion_tokens"] + r.get("charged_unknown", 0)
    total = sum(by.values())
    return {k: v / total for k, v in by.most_common()}


def forest_phases(rows: list[dict]) -> dict[str, float]:
    """Share of a forest's tokens by phase: each tree's first answer with its self-evaluations (and the
    dummy root's, and a rephrased input's), its rollout (critique, refine, self-evaluations), and the
    decision (the expert call). Snapshot 0 is taken after the first answers are scored."""
    first = rollout = decision = 0
    for r in rows:
        decision += r.get("expert_tokens", 0)
        for snaps in r["snapshots"]:
            if snaps:
                first += snaps[0]["tokens"]
                rollout += snaps[-1]["tokens"] - snaps[0]["tokens"]
    total = first + rollout + decision
    return {"first answers and their evaluation": first / total, "rollouts (critique, refine, evaluation)":
            rollout / total, "decision (expert)": decision / total}


def main() -> None:
    task = get_task("arith")
    runs = {"forest": load("forest2x1.jsonl"), "sc": load("sc8.jsonl"), "bon": load("bon4.jsonl")}

    def cells_on(ids: set[str]) -> list[Cell]:
        """Every cell, each method restricted to the same problems (so any two can be paired)."""
        on = {k: [r for r in rows if r["id"] in ids] for k, rows in runs.items()}
        out: list[Cell] = []
        if on["forest"]:
            out += grid(on["forest"], task, [1, 2], [0, 1])
        if on["sc"]:
            out += sample_curve(on["sc"], task, [1, 2, 4, 8])
        if on["bon"]:
            out += sample_curve(on["bon"], task, [1, 2, 4])
        return out

    ids_of = {k: {r["id"] for r in rows} for k, rows in runs.items()}
    main_ids = ids_of["forest"] & ids_of["sc"] if runs["forest"] and runs["sc"] else set().union(*ids_of.values())
    bon_ids = main_ids & ids_of["bon"]
    cells = [c for c in cells_on(main_ids) if c.method != "bon"] + [c for c in cells_on(bon_ids) if c.method == "bon"]
    common = main_ids
    lines = ["# The forest against plain sampling, embedded SmolLM2-135M (REAL model)", "",
             f"Forest and sc on the same {len(main_ids)} problems; bon on {len(bon_ids)} of them. Every cell is "
             "replayed from one run of its method's largest setting; accuracy is the returned answer's (not oracle "
             "pass@k), with a 95% Wilson interval.", "",
             "| cell | graded | accuracy | 95% CI | tokens / problem | replay |", "| --- | ---: | ---: | :---: | ---: | --- |"]
    lines += [cell_row(c) for c in sorted(cells, key=lambda c: c.tokens_mean)]
    pairs = [("2x1", "sc@8"), ("2x1", "sc@4"), ("2x1", "bon@4"), ("2x0", "1x1"), ("1x1", "sc@2"), ("2x0", "sc@2"),
             ("bon@4", "sc@4"), ("1x0", "sc@1")]
    lines += ["", "Paired, same problems: A minus B (Newcombe 95% interval), and B's tokens over A's; pairs with bon "
              f"on its {len(bon_ids)} problems.", "",
              "| A | B | n | A | B | A - B | 95% CI | B tokens / A tokens | verdict |",
              "| --- | --- | ---: | ---: | ---: | ---: | :---: | ---: | --- |"]
    by_main = {c.label: c for c in cells_on(main_ids)}
    by_bon = {c.label: c for c in cells_on(bon_ids)}
    for a, b in pairs:
        by = by_bon if "bon" in a + b else by_main
        if a in by and b in by:
            d, ratio = compare(by[a], by[b])
            lines.append(f"| {a} | {b} | {d.n} | {pct(by[a].accuracy)} | {pct(by[b].accuracy)} | {d.diff:+.1%} | "
                         f"{d.ci95[0]:+.1%} to {d.ci95[1]:+.1%} | {ratio:.2f} | {d.verdict(a, b)} |")
    if runs["forest"]:
        phase = forest_phases(runs["forest"])
        lines += ["", "Where the forest's tokens go (2x1, every problem, from each tree's snapshots): " +
                  ", ".join(f"{k} {v:.0%}" for k, v in phase.items())]
    share = roles("bon4.trace.jsonl")
    if share:
        lines += ["", "Where best-of-4's tokens go (its trace, by call role): " +
                  ", ".join(f"{k} {v:.0%}" for k, v in share.items())]
    if runs["sc"]:  # the seed of sample i is the same on every problem: how much one seed's luck weighs
        per = [sum(bool(task.grade(r["samples"][i]["answer"], r.get("reference"), r["question"]))
                   for r in runs["sc"]) / len(runs["sc"]) for i in range(len(runs["sc"][0]["samples"]))]
        lines += ["", "sc, accuracy of sample i alone (seed i on every problem): " + ", ".join(f"{a:.1%}" for a in per) +
                  f"; mean {sum(per) / len(per):.1%}. One seed's luck moves a one-sample cell by +-15 points, so "
                  "compare methods at several samples, not at one."]
    if runs["forest"]:
        first = [sum(bool(task.grade(r["snapshots"][k][0]["answer"], r.get("reference"), r["question"]))
                     for r in runs["forest"]) / len(runs["forest"]) for k in range(len(runs["forest"][0]["snapshots"]))]
        lines += ["", "forest, accuracy of each tree's first answer: " + ", ".join(f"tree {k} {a:.1%}"
                                                                             for k, a in enumerate(first))]
    evals = [r.get("evaluation") or {} for rows in runs.values() for r in rows]
    asked = sum(e.get("asked", 0) for e in evals)
    parsed = sum(e.get("parsed", 0) for e in evals)
    if asked:
        lines += ["", f"Self-evaluation scores read: {parsed} of {asked} ({parsed / asked:.1%})."]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "report.md").write_text(text)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method, marker in (("forest", "o"), ("sc", "s"), ("bon", "^")):
        cs = sorted((c for c in cells if c.method == method), key=lambda c: c.tokens_mean)
        if not cs:
            continue
        ax.errorbar([c.tokens_mean for c in cs], [c.accuracy for c in cs],
                    yerr=[[c.accuracy - c.ci95[0] for c in cs], [c.ci95[1] - c.accuracy for c in cs]],
                    marker=marker, capsize=3, label=method, linestyle="-" if method != "forest" else "none")
        for c in cs:
            ax.annotate(c.label, (c.tokens_mean, c.accuracy), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("tokens per problem (log)")
    ax.set_ylabel("accuracy (returned answer)")
    ax.set_title(f"SmolLM2-135M, {len(common)} arithmetic problems (bon: {len(bon_ids)}): forest vs sampling")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "report.png", dpi=120)
    print(f"wrote {HERE / 'report.md'} and {HERE / 'report.png'}")


if __name__ == "__main__":
    main()
