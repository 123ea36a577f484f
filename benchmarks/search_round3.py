"""The search, round three: before/after on fot.sim (a SIMULATED backend; its numbers are never a model's).

    python benchmarks/search_round3.py run --code DIR --label before|after [--variant NAME -- OPTIONS...]
    python benchmarks/search_round3.py report

`run` solves the same problems with the fot checkout at DIR (PYTHONPATH=DIR, so main's code can be
measured by this script too) through the command line (`python -m fot.solve --sim`), cells 4x4 and 8x4,
on Game-24 puzzles (`/work/shared/data/game24/24.csv`, ranks 301-900 every 15th: 40 puzzles, the audit's
selection) and GSM8K-shaped problems (the first 40 rows of `/work/shared/data/gsm8k/test.jsonl`; the
simulator is handed the references, the search never is). The data are read, never copied: the problem
files are written to the scratch directory. Each run keeps its results, its trace (with texts) and the
count of UCT selections that differ from the best-Q pick (a wrapper around `fot.search.mctsr.select`).
`--baselines` also runs sc and bon with 32 samples, replayed at every n.

`report` reads every run and writes `benchmarks/results/search-round3/{record.json,README.md}`: accuracy,
tokens per problem and per solved problem, the share of tokens spent after some tree already held a
proven answer (calls started after the first answer or refine call whose text passes the rule check),
the evaluation share, distinct first prompts per problem, UCT != best-Q, paired differences (Newcombe),
and sc / bon at equal or fewer tokens.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "search-round3"
SCRATCH = Path(os.environ.get("FOT_BENCH_SCRATCH", "/tmp/fot-search-round3"))
DATA = Path("/work/shared/data")
CELLS = ((4, 4), (8, 4))
SETS = ("game24", "gsm8k")

WRAPPER = r"""
import atexit, json, os, sys
stats_path = sys.argv[1]
code = os.environ["FOT_CODE"]  # this checkout's fot, not the one installed in the venv (an editable finder)
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, code)
sys.argv = ["fot.solve"] + sys.argv[2:]
import fot.search.mctsr as m
stats = {"selections": 0, "non_greedy": 0, "fot": m.__file__}
assert m.__file__.startswith(code), (m.__file__, code)
orig = m.select
def select(nodes, *a, **k):
    pick = orig(nodes, *a, **k)
    if pick is not None:
        mc = k.get("max_children", a[2] if len(a) > 2 else 3)
        extra = [a[4]] if len(a) > 4 else []  # round three: the cap flag
        cands = [n for n in nodes if not m.fully_expanded(n, mc, *extra)]
        greedy = max(cands, key=lambda n: (m._q(n.Q), not n.dummy, -n.index))
        stats["selections"] += 1
        stats["non_greedy"] += int(m._q(greedy.Q) > m._q(pick.Q))
    return pick
m.select = select
atexit.register(lambda: json.dump(stats, open(stats_path, "w")))
import runpy
runpy.run_module("fot.solve", run_name="__main__")
"""


def problems() -> dict[str, Path]:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    out = {}
    with open(DATA / "game24" / "24.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    g = SCRATCH / "game24.jsonl"
    g.write_text("".join(json.dumps({"id": f"g24-{r['Rank']}", "question": r["Puzzles"]}) + "\n"
                         for r in rows[300:900:15]))
    out["game24"] = g
    lines = (DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[:40]
    s = SCRATCH / "gsm8k.jsonl"
    s.write_text("".join(json.dumps({"id": f"gsm-{i:03d}", **json.loads(x)}) + "\n" for i, x in enumerate(lines)))
    out["gsm8k"] = s
    return out


def solve(code: Path, args: list[str], stem: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "FOT_CODE": str(code)}
    for f in (stem.with_suffix(".jsonl"), stem.with_suffix(".trace.jsonl"), stem.with_suffix(".trees.jsonl"),
              stem.with_suffix(".jsonl.summary.json")):
        f.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", WRAPPER, str(stem.with_suffix(".select.json")), *args,
           "--out", str(stem.with_suffix(".jsonl")), "--trace", str(stem.with_suffix(".trace.jsonl")),
           "--trace-text", "--quiet"]
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {p.returncode}\n{p.stderr[-2000:]}")
    return {"command": f"PYTHONPATH={code} python -m fot.solve " + " ".join(args), "wall_s": time.time() - t0}


def cmd_run(ns: argparse.Namespace) -> None:
    files = problems()
    code = Path(ns.code).resolve()
    runs = SCRATCH / f"runs-{ns.label}{'-' + ns.variant if ns.variant else ''}.json"  # one per process
    index = json.loads(runs.read_text()) if runs.exists() else {}
    for name in ns.sets:
        task = name
        for t, r in ([tuple(map(int, c.split("x"))) for c in ns.cells] if ns.cells else CELLS):
            key = f"{ns.label}{'-' + ns.variant if ns.variant else ''}/{name}/{t}x{r}"
            stem = SCRATCH / key.replace("/", "_")
            args = [str(files[name]), "--sim", "--task", task, "--method", "forest", "--trees", str(t),
                    "--rollouts", str(r), "--parallel", "4", *ns.options]
            info = solve(code, args, stem)
            index[key] = {**info, "stem": str(stem), "set": name, "trees": t, "rollouts": r, "label": ns.label,
                          "variant": ns.variant, "options": ns.options}
            print(f"{key}: {info['wall_s']:.0f} s", flush=True)
            runs.write_text(json.dumps(index, indent=1))
        if ns.baselines:
            for method in ns.methods:
                key = f"{ns.label}/{name}/{method}"
                stem = SCRATCH / key.replace("/", "_")
                args = [str(files[name]), "--sim", "--task", task, "--method", method, "--samples", "32",
                        "--parallel", "4", *ns.options]
                info = solve(code, args, stem)
                index[key] = {**info, "stem": str(stem), "set": name, "method": method, "label": ns.label}
                print(f"{key}: {info['wall_s']:.0f} s", flush=True)
                runs.write_text(json.dumps(index, indent=1))


# -- the report --------------------------------------------------------------------------------------

def read(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def after_proof_share(rows: list[dict], trace: list[dict], task) -> tuple[float | None, int]:
    """Share of all tokens in calls started after the problem's first proof (an answer or refine call
    whose text passes the rule check), and how many problems had one."""
    questions = {r["id"]: r["question"] for r in rows}
    by: dict[str, list[dict]] = {}
    for c in trace:
        by.setdefault(c.get("problem"), []).append(c)
    total = after = 0
    proven = 0
    for pid, calls in by.items():
        q = questions.get(pid)
        if q is None:
            continue
        tok = [c["prompt_tokens"] + c["completion_tokens"] + c.get("charged_unknown", 0) for c in calls]
        total += sum(tok)
        ends = [c["started"] + c["latency_s"] for c in calls if c["role"] in ("answer", "refine")
                and any(task.rule_check(q, t) is True for t in (c.get("texts") or []))]
        if not ends:
            continue
        proven += 1
        first = min(ends)
        after += sum(k for c, k in zip(calls, tok) if c["started"] >= first)
    return (after / total if total else None), proven


def role_share(trace: list[dict]) -> dict:
    roles: dict[str, int] = {}
    for c in trace:
        roles[c["role"]] = roles.get(c["role"], 0) + c["prompt_tokens"] + c["completion_tokens"] + \
            c.get("charged_unknown", 0)
    total = sum(roles.values()) or 1
    return {k: round(v / total, 4) for k, v in sorted(roles.items())}


def forest_metrics(entry: dict) -> dict:
    from fot.measure.meter import grade
    from fot.tasks import TASKS

    stem = Path(entry["stem"])
    rows = read(stem.with_suffix(".jsonl"))
    trace = read(stem.with_suffix(".trace.jsonl"))
    task = TASKS[entry["set"]]()
    refs = {json.loads(x)["id"]: json.loads(x).get("answer") for x in
            (SCRATCH / f"{entry['set']}.jsonl").read_text().splitlines()}
    rows = [grade(r, task, refs.get(r["id"])) for r in rows]
    rows.sort(key=lambda r: r["id"])
    n = len(rows)
    correct = sum(1 for r in rows if r["correct"])
    tokens = sum(r["tokens"]["total"] for r in rows)
    share, proven = after_proof_share(rows, trace, task)
    sel = json.loads(stem.with_suffix(".select.json").read_text()) if stem.with_suffix(".select.json").exists() else {}
    distinct = [len({(t.get("question"), t.get("hint")) for t in r["trees"]}) for r in rows]
    corrections = sum(t.get("corrections", 0) for r in rows for t in r["trees"])
    roles = role_share(trace)
    unknown = sum(c.get("charged_unknown", 0) for c in trace)
    traced = sum(c["prompt_tokens"] + c["completion_tokens"] + c.get("charged_unknown", 0) for c in trace)
    return {
        "problems": n, "correct": correct, "accuracy": correct / n if n else None,
        "oracle_pass_at_k": sum(1 for r in rows if r["oracle_correct"]) / n if n else None,
        "tokens_per_problem": tokens / n if n else None, "tokens_per_solved": tokens / correct if correct else None,
        "unknown_share": unknown / traced if traced else None,  # cancelled calls, charged at their reservation
        "reported_tokens_per_problem": (tokens - unknown) / n if n else None,
        "after_proof_share": share, "problems_with_a_proof": proven,
        "evaluation_share": roles.get("evaluate", 0.0), "role_share": roles,
        "distinct_inputs_mean": sum(distinct) / n if n else None, "distinct_inputs_min": min(distinct, default=0),
        "uct_not_best_q": sel.get("non_greedy"), "selections": sel.get("selections"),
        "corrections": corrections, "decisions": _count(r["decision"] for r in rows),
        "cancelled_calls": sum((r.get("stop") or {}).get("cancelled_calls", 0) for r in rows),
        "inactive_trees": sum((r.get("stop") or {}).get("inactive_trees", 0) for r in rows),
        "rollouts_saved": sum((r.get("stop") or {}).get("rollouts_saved", 0) for r in rows),
        "eval_cached": sum(t.get("eval_cached", 0) for r in rows for t in r["trees"]),
        "max_children": max((sum(1 for m in t["nodes"] if m["parent"] == n["id"]) for line in
                             read(stem.with_suffix(".trees.jsonl")) for t in line["trees"] for n in t["nodes"]),
                            default=0),
        "stopped": _count(t.get("stopped") for r in rows for t in r["trees"]),
        "outcomes": [bool(r["correct"]) for r in rows], "ids": [r["id"] for r in rows],
    }


def _count(xs) -> dict:
    out: dict = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: str(kv[0])))


def sample_metrics(entry: dict) -> list[dict]:
    from fot.measure.meter import replay_samples
    from fot.tasks import TASKS

    stem = Path(entry["stem"])
    task = TASKS[entry["set"]]()
    refs = {json.loads(x)["id"]: json.loads(x).get("answer") for x in
            (SCRATCH / f"{entry['set']}.jsonl").read_text().splitlines()}
    rows = sorted(read(stem.with_suffix(".jsonl")), key=lambda r: r["id"])
    out = []
    for k in (1, 2, 4, 8, 12, 16, 24, 32):
        right, tokens = [], 0
        for r in rows:
            ans, usage, _ = replay_samples(r, task, k)
            right.append(bool(task.grade(ans, refs.get(r["id"]), r["question"])))
            tokens += usage["total"]
        out.append({"n": k, "accuracy": sum(right) / len(rows), "tokens_per_problem": tokens / len(rows),
                    "outcomes": right})
    return out


def at_equal_tokens(curve: list[dict], tokens: float) -> dict | None:
    fit = [c for c in curve if c["tokens_per_problem"] <= tokens]
    return fit[-1] if fit else None


def cmd_report(ns: argparse.Namespace) -> None:
    from fot.measure.stats import paired_diff

    index = {}
    for f in sorted(SCRATCH.glob("runs-*.json")):
        index.update(json.loads(f.read_text()))
    record: dict = {"backend": "fot.sim (SIMULATED backend, default SimProfile unless a variant says otherwise)",
                    "runs": {}, "baselines": {}, "paired": {}}
    for key, e in sorted(index.items()):
        if "method" in e:
            record["baselines"][key] = {"command": e["command"], "curve": sample_metrics(e)}
        else:
            record["runs"][key] = {"command": e["command"], "wall_s": round(e["wall_s"], 1), **forest_metrics(e)}
    for key, m in record["runs"].items():
        label, rest = key.split("/", 1)
        if "-" in label:  # a variant: against its own label's default run
            base = label.split("-", 1)[0]
            b = record["runs"].get(f"{base}/{rest}")
            if b and b["ids"] == m["ids"]:
                d = paired_diff(m["outcomes"], b["outcomes"])
                record["paired"][f"{label}-vs-{base}/{rest}"] = {
                    "diff": d.diff, "ci95": d.ci95, "after_only": d.a_only, "before_only": d.b_only,
                    "tokens_ratio": m["tokens_per_problem"] / b["tokens_per_problem"]}
            continue
        if label == "before":
            continue
        b = record["runs"].get(f"before/{rest}")
        if b and b["ids"] == m["ids"]:
            d = paired_diff(m["outcomes"], b["outcomes"])
            record["paired"][f"after-vs-before/{rest}"] = {"diff": d.diff, "ci95": d.ci95, "after_only": d.a_only,
                                                          "before_only": d.b_only,
                                                          "tokens_ratio": m["tokens_per_problem"] / b["tokens_per_problem"]}
        for method in ("sc", "bon"):
            for lab in dict.fromkeys((label, "after", "before")):  # its own run's baselines first
                base = record["baselines"].get(f"{lab}/{rest.split('/')[0]}/{method}")
                if base is None:
                    continue
                pt = at_equal_tokens(base["curve"], m["tokens_per_problem"])
                if pt:
                    d = paired_diff(m["outcomes"], pt["outcomes"])
                    record["paired"][f"{key}-vs-{lab}-{method}@{pt['n']}"] = {
                        "baseline_accuracy": pt["accuracy"], "baseline_tokens": pt["tokens_per_problem"],
                        "diff": d.diff, "ci95": d.ci95}
    OUT.mkdir(parents=True, exist_ok=True)
    slim = json.loads(json.dumps(record))
    for m in slim["runs"].values():
        m.pop("outcomes"), m.pop("ids")
    (OUT / "record.json").write_text(json.dumps(slim, indent=1))
    findings = OUT / "findings.md"  # the reading of these numbers, written by hand after the run
    (OUT / "README.md").write_text(markdown(record) + ("\n" + findings.read_text() if findings.exists() else ""))
    print((OUT / "README.md").read_text())


def _p(x, pct=True):
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}%" if pct else f"{x:,.0f}"


def markdown(rec: dict) -> str:
    lines = ["# Search, round three: before and after (fot.sim, a SIMULATED backend)", "",
             "Every number here is the simulator's (a test double of known skill), not a model's. Made by "
             "`benchmarks/search_round3.py` (its docstring: problems, commands); the record is `record.json`.", "",
             "| run | accuracy | oracle pass@k | tokens / problem (charged; reported) | tokens / solved | after a proof "
             "| evaluation share "
             "| distinct inputs (mean, min) | UCT != best Q | corrections | most children | cancelled calls "
             "| inactive trees (rollouts saved) | cached rewards |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, m in rec["runs"].items():
        ng = "n/a" if m["selections"] is None else f"{m['uct_not_best_q']}/{m['selections']}"
        lines.append(f"| {key} | {_p(m['accuracy'])} | {_p(m['oracle_pass_at_k'])} | "
                     f"{_p(m['tokens_per_problem'], False)}; {_p(m['reported_tokens_per_problem'], False)} | "
                     f"{_p(m['tokens_per_solved'], False)} | "
                     f"{_p(m['after_proof_share']) if m['problems_with_a_proof'] else 'no proof'} | "
                     f"{_p(m['evaluation_share'])} | {m['distinct_inputs_mean']:.2f}, {m['distinct_inputs_min']} | "
                     f"{ng} | {m['corrections']} | {m['max_children']} | {m['cancelled_calls']} | "
                     f"{m['inactive_trees']} ({m['rollouts_saved']}) | {m['eval_cached']} |")
    lines += ["", "Paired differences (Newcombe 95% interval; A minus B on the same problems):", "",
              "| comparison | A - B | 95% CI | notes |", "| --- | --- | --- | --- |"]
    for key, d in rec["paired"].items():
        note = (f"baseline {_p(d['baseline_accuracy'])} at {_p(d['baseline_tokens'], False)} tokens"
                if "baseline_accuracy" in d else f"A only {d['after_only']}, B only {d['before_only']}; "
                f"tokens A/B {d['tokens_ratio']:.2f}")
        lines.append(f"| {key} | {100 * d['diff']:+.1f} | ({100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}) | "
                     f"{note} |")
    lines += ["", "Baselines (replayed from one run of 32 samples):", "", "| run | " +
              " | ".join(f"n={c['n']}" for c in next(iter(rec["baselines"].values()))["curve"]) + " |",
              "| --- |" + " --- |" * len(next(iter(rec["baselines"].values()))["curve"])] if rec["baselines"] else []
    for key, b in rec["baselines"].items():
        lines.append(f"| {key} | " + " | ".join(f"{_p(c['accuracy'])} @ {_p(c['tokens_per_problem'], False)}"
                                               for c in b["curve"]) + " |")
    lines += ["", "Commands:", ""] + [f"- `{m['command']}`" for m in rec["runs"].values()] + \
        [f"- `{b['command']}`" for b in rec["baselines"].values()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--code", required=True)
    r.add_argument("--label", required=True)
    r.add_argument("--variant", default="")
    r.add_argument("--sets", nargs="+", default=list(SETS))
    r.add_argument("--cells", nargs="*", default=None)
    r.add_argument("--baselines", action="store_true")
    r.add_argument("--methods", nargs="+", default=["sc", "bon"])
    r.add_argument("options", nargs=argparse.REMAINDER)
    sub.add_parser("report")
    ns = ap.parse_args()
    if ns.cmd == "run":
        ns.options = [o for o in ns.options if o != "--"]
        cmd_run(ns)
    else:
        cmd_report(ns)


if __name__ == "__main__":
    main()
