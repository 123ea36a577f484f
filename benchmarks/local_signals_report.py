"""Issue 25: signals any model can give, on the embedded SmolLM2-135M, paired against sc at equal or
fewer tokens.

Reads benchmarks/results/local-signals/: sc8.jsonl (one real sc@8 run that kept every sample's token
log-probs and top-5 confidences) and, where present, the same samples scored after the fact by a
verifier (bon8-<verifier>.jsonl, benchmarks/signals_rescore.py) and real runs of the online methods
(<method>*-live.jsonl, `run_live.sh`: each measured as it ran, its own samples, paired by problem against
sc@n of sc8.jsonl). On the problems every file has, every cell is decided from the recorded samples by
the same functions the methods run (fot/search/baselines.py, fot/search/early.py): sc@1..8, the
confidence vote, DeepConf online (warm-up 4, keep 90 and 10), ESC (windows 2 and 4), bon and weighted
votes by each verifier, the adaptive forest's verdict. Each is paired problem by problem (Newcombe
95% interval) against sc at the largest sample count whose tokens are at most the cell's. AUROC per
signal (fot.measure.signals). Writes report.md and report.json there; prints report.md.

    python benchmarks/local_signals_report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fot.measure.meter import Cell, compare, measure, replay_samples  # noqa: E402
from fot.measure.signals import auroc, ece  # noqa: E402
from fot.measure.usage import Usage  # noqa: E402
from fot.methods.adaptive import Evidence, verdict  # noqa: E402
from fot.search.baselines import decide_samples  # noqa: E402
from fot.search.confidence import trace_confidence  # noqa: E402
from fot.search.early import decide_deepconf, decide_esc  # noqa: E402
from fot.tasks import get_task  # noqa: E402

DIR = Path(__file__).resolve().parent / "results" / "local-signals"
TASK = get_task("arith")


def load(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line still being written
    return rows


def usage(samples: list[dict]) -> dict:
    """As the meter counts them (fot.measure.usage): a call retried after a timeout is charged its whole
    reservation (unknown), the same for every cell."""
    return sum((Usage.from_dict(s) for s in samples), Usage()).to_dict()


def sc_cells(sc: list[dict]) -> list[tuple[str, Cell]]:
    return [(f"sc@{n}", measure(sc, TASK, lambda r, n=n: replay_samples(r, TASK, n), method="sc", samples=n))
            for n in range(1, 9)]


def cells_for(sc: list[dict], scored: dict[str, list[dict]]) -> list[tuple[str, Cell]]:
    out = []
    sc_samples = {r["id"]: r["samples"] for r in sc}
    for n in (4, 8) if not scored else ():
        def conf(r, n=n):
            first = r.samples[:n]
            a, how, _ = decide_samples("sc", first, TASK, r.question, "confidence")
            return a, usage(first), how
        out.append((f"confidence@{n}", measure(sc, TASK, conf, method="confidence", samples=n)))
    for keep in (90.0, 10.0) if not scored else ():
        def dc(r, keep=keep):
            d = decide_deepconf(r.samples, TASK, r.question, 8, 4, keep)
            return d.answer, d.usage, d.how
        out.append((f"deepconf@8 (warm-up 4, keep {keep:g}%)", measure(sc, TASK, dc, method="deepconf", samples=8)))
    for w in (2, 4) if not scored else ():
        def esc(r, w=w):
            d = decide_esc(r.samples, TASK, r.question, 8, w)
            return d.answer, d.usage, d.how
        out.append((f"esc@8 (window {w})", measure(sc, TASK, esc, method="esc", samples=8)))
    for name, rows in scored.items():
        most = min(len(r["samples"]) for r in rows) if rows else 0
        for n in (k for k in (2, 4, 8) if k <= most):
            out.append((f"bon@{n} ({name})", measure(rows, TASK, lambda r, n=n: replay_samples(r, TASK, n),
                                                     method="bon", samples=n)))

            def weighted(r, n=n):
                first = r.samples[:n]
                a, how, _ = decide_samples("bon", first, TASK, r.question, "weighted")
                return a, usage(first), how
            out.append((f"weighted@{n} ({name})", measure(rows, TASK, weighted, method="weighted", samples=n)))

        pooled = Evidence()

        def adaptive(r, probe=2, pooled=pooled):
            """The adaptive forest over the problems in id order, pooled evidence and all: a problem after
            the verdict samples 8 unscored; before it, 2 scored probes, then sampling if they say nothing (or
            agree); where the forest would run it cannot be replayed from samples (marked, majority of 8)."""
            plain = [sc_samples[r.id][i] for i in range(min(8, len(r.samples)))]  # the same samples, unscored
            if pooled.verdict():
                a, how, _ = decide_samples("sc", plain, TASK, r.question)
                return a, usage(plain), "sampling:unscored"
            probes = r.samples[:probe]
            asked = sum(1 for s in probes if s.get("answer") is not None)
            parsed = sum(1 for s in probes if s.get("q") is not None)
            why = verdict(probes, TASK, r.question, asked, parsed)
            spent = probes + plain[probe:]
            a, how, _ = decide_samples("sc", spent, TASK, r.question)
            pooled.add(probes, asked, parsed, a, TASK, r.question)
            agree = len({s["answer"] for s in probes if s.get("answer") is not None}) <= 1
            return a, usage(spent), "sampling" if (why or agree) else "inexact:the forest would run"
        cell = measure(rows, TASK, adaptive, method="adaptive", samples=8)
        out.append((f"adaptive@{most}, probe 2 ({name}; {cell.inexact} of {cell.graded} problems would run the "
                     "forest, counted here as their majority)", cell))
    return out


def signal_table(sc: list[dict], scored: dict[str, list[dict]]) -> list[dict]:
    def graded(rows, value):
        vs, ys = [], []
        for r in rows:
            for s in r["samples"]:
                v = value(s)
                if s.get("answer") is not None and v is not None:
                    vs.append(v)
                    ys.append(bool(TASK.grade(s["answer"], r["reference"], r["question"])))
        return vs, ys

    out = []
    for name, value in (("confidence (bottom-10% group, top-5)", lambda s: trace_confidence(s.get("confidence"))),
                        ("mean token log-prob", lambda s: sum(s["logprobs"]) / len(s["logprobs"])
                         if s.get("logprobs") else None)):
        vs, ys = graded(sc, value)
        out.append({"signal": name, "candidates": len(vs), "auroc": auroc(vs, ys), "ece": None, "tokens": 0})
    for name, rows in scored.items():
        vs, ys = graded(rows, lambda s: s.get("q"))
        asked = sum(r["evaluation"].get("asked", 0) for r in rows)
        read = sum(r["evaluation"].get("parsed", 0) for r in rows)
        tokens = sum(s.get("eval_tokens") or 0 for r in rows for s in r["samples"]) / max(1, len(rows))
        out.append({"signal": f"{name} score", "candidates": len(vs), "parse_rate": read / asked if asked else None,
                    "auroc": auroc(vs, ys), "ece": ece([(v + 100) / 200 for v in vs], ys),
                    "tokens": tokens})
    return out


LIVE = {"deepconf": "DeepConf online (warm-up 4, keep 90%)", "esc": "Early-stopping sampling (window 2)",
        "adaptive": "The adaptive forest (yesno, 2 trees x 1 rollout, probe 2, up to 8 samples)",
        "bon-yesno": "bon@8 by yesno", "forest-yesno": "The forest (yesno, 2 trees x 1 rollout)",
        "forest-constrained": "The forest (constrained: llama.cpp grammar, 2 trees x 1 rollout)"}


def live_runs() -> list[tuple[str, str, list[dict]]]:
    """The finished rows of each live run (run_live.sh), keyed as run_live.sh names them."""
    files = {"deepconf": "deepconf-live", "esc": "esc-live", "adaptive": "adaptive-yesno-live",
             "bon-yesno": "bon8-yesno-live", "forest-yesno": "forest-yesno-live",
             "forest-constrained": "forest-constrained-live"}
    out = []
    for name, stem in files.items():
        path = DIR / f"{stem}.jsonl"
        if path.exists() and (rows := sorted(load(path), key=lambda r: r["id"])):
            out.append((name, LIVE[name], rows))
    return out


def table(cells: list[tuple[str, Cell]], scs: list[Cell], data: list[dict]) -> list[str]:
    lines = ["| cell | accuracy | 95% CI | tokens / problem | against | difference | 95% CI | verdict | minus sc@8 "
             "(95% CI) |", "| --- | ---: | :---: | ---: | --- | ---: | :---: | --- | :---: |"]
    top = scs[-1]  # sc@8: the target to beat at no more than its tokens
    for label, c in cells:
        ref = max((s for s in scs if s.tokens_mean <= c.tokens_mean + 1e-9), key=lambda s: s.tokens_mean, default=None)
        row = {"cell": label, "accuracy": c.accuracy, "ci95": c.ci95, "tokens": c.tokens_mean, "n": c.graded,
               "ids": c.ids, "outcomes": c.outcomes}
        if ref is not None and ref is not c:
            d, _ = compare(c, ref)
            row.update(against=ref.label, diff=d.diff, diff_ci95=d.ci95, resolved=d.resolved)
            vs = f"{ref.label} | {d.diff:+.1%} | {d.ci95[0]:+.1%} to {d.ci95[1]:+.1%} | {d.verdict(label, ref.label)} |"
        else:
            vs = "- | | | |"
        if c is not top:
            d8, _ = compare(c, top)
            row.update(minus_sc8=d8.diff, minus_sc8_ci95=d8.ci95)
            vs += f" {d8.diff:+.1%} ({d8.ci95[0]:+.1%} to {d8.ci95[1]:+.1%}) |"
        else:
            vs += " |"
        data.append(row)
        lines.append(f"| {label} | {c.accuracy:.1%} | {c.ci95[0]:.1%} - {c.ci95[1]:.1%} | {c.tokens_mean:,.0f} | {vs}")
    return lines


def main() -> None:
    sc = sorted(load(DIR / "sc8.jsonl"), key=lambda r: r["id"])
    scored_all = {p.stem.split("-", 1)[1]: load(p) for p in sorted(DIR.glob("bon*-*.jsonl"))
                  if not p.stem.endswith("-live")}
    data: list[dict] = []
    scs = sc_cells(sc)
    lines = ["# Signals any model can give, on the embedded SmolLM2-135M (issue 25)", "",
             f"{len(sc)} of the 150 problems of `benchmarks/results/local-baselines/arith150.jsonl` (the sc@8 run's "
             "finished ones), seed 0; every cell decided from the recorded samples by the methods' own functions "
             "(fot/search/baselines.py, fot/search/early.py). Accuracy of the returned answer (95% Wilson "
             "interval); each paired, problem by problem, against sc at the largest sample count with no more "
             "tokens (Newcombe 95% interval of the difference). Commands: README.md here.", ""]
    lines += table(scs + cells_for(sc, {}), [c for _, c in scs], data)
    scored = {}
    for name, rows in scored_all.items():
        ids = {r["id"] for r in rows} & {r["id"] for r in sc}
        if not ids:
            continue
        sub = [r for r in sc if r["id"] in ids]
        scored[name] = sorted((r for r in rows if r["id"] in ids), key=lambda r: r["id"])
        sub_scs = sc_cells(sub)
        lines += ["", f"With the `{name}` verifier: the same samples scored after the fact "
                      f"(`benchmarks/signals_rescore.py`), on the {len(ids)} problems it scored:", ""]
        lines += table(sub_scs + cells_for(sub, {name: scored[name]}), [c for _, c in sub_scs], data)
    for name, title, rows in live_runs():
        ids = {r["id"] for r in rows} & {r["id"] for r in sc}
        sub = [r for r in sc if r["id"] in ids]
        sub_scs = sc_cells(sub)
        tok = {r["id"]: r["tokens"] for r in rows}
        cell = measure([r for r in rows if r["id"] in ids], TASK, lambda rec: (rec.answer, tok[rec.id], rec.decision),
                       method=name, samples=8)
        lines += ["", f"**{title}**, run for real (`run_live.sh {name}`: its own samples, not sc8.jsonl's; paired by "
                      f"problem against sc@n of sc8.jsonl), {len(ids)} problems:", ""]
        lines += table(sub_scs[-1:] + [(f"{name} (live)", cell)], [c for _, c in sub_scs], data)
        if any(x.get("q") is not None for r in rows for x in r.get("samples") or []):  # a scored run's signal
            scored[f"{name} (live)"] = [r for r in rows if r["id"] in ids]
    sig = signal_table(sc, scored)  # each signal over the samples its file has
    lines += ["", "Each signal against correctness, over every sample with an answer (AUROC 0.5: says nothing):", "",
              "| signal | candidates | parse rate | AUROC | ECE | tokens / problem |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in sig:
        pr = s.get("parse_rate")
        lines.append(f"| {s['signal']} | {s['candidates']:,} | {'-' if pr is None else format(pr, '.0%')} | "
                     f"{'n/a' if s['auroc'] is None else format(s['auroc'], '.3f')} | "
                     f"{'-' if s['ece'] is None else format(s['ece'], '.3f')} | {s['tokens']:,.0f} |")
    (DIR / "report.md").write_text("\n".join(lines) + "\n")
    (DIR / "report.json").write_text(json.dumps({"problems": len(ids), "cells": data, "signals": sig}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
