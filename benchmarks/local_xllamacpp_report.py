"""Issue 22: did the move to llama.cpp's own server (xllamacpp) make the embedded default any worse?

Pairs the new sc run (benchmarks/results/local-xllamacpp/sc8.jsonl) with issue 11's record on the same
150 problems (benchmarks/results/local-baselines/sc8.jsonl, llama-cpp-python's server, one request at
a time): sc@1, 2, 4, 8 replayed from each 8-sample run (`fot.measure.meter.sample_curve`), new minus old
problem by problem (`fot.measure.meter.compare`, Newcombe 95% interval), tokens and wall time. The two
servers sample differently (another sampler chain, batched decoding), so the same seed gives other
samples: this compares the methods' accuracy, not the samples. Prints the tables and writes
report.md next to the new run.

    python benchmarks/local_xllamacpp_report.py
"""

from __future__ import annotations

import json
from pathlib import Path

from fot.measure.meter import compare, sample_curve
from fot.tasks import get_task

RESULTS = Path(__file__).resolve().parent / "results"
OLD, NEW = RESULTS / "local-baselines", RESULTS / "local-xllamacpp"
OLD_WALL_MIN = 33.8  # benchmarks/results/local-baselines/README.md (its summary has no total wall time)


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def main() -> None:
    task = get_task("arith")
    old, new = load(OLD / "sc8.jsonl"), load(NEW / "sc8.jsonl")
    ids = {r["id"] for r in old} & {r["id"] for r in new}
    old, new = [r for r in old if r["id"] in ids], [r for r in new if r["id"] in ids]
    ks = [1, 2, 4, 8]
    cells = {"old": sample_curve(old, task, ks), "new": sample_curve(new, task, ks)}
    summary = json.loads((NEW / "sc8.summary.json").read_text()) if (NEW / "sc8.summary.json").exists() else {}
    lines = ["# sc on the embedded SmolLM2-135M: llama.cpp's own server (new) against llama-cpp-python's (old)", "",
             f"The same {len(ids)} problems, seed 0, `--parallel 1`; every sc@k replayed from one 8-sample run. "
             "Accuracy of the returned answer, 95% Wilson interval.", "",
             "| sc@k | old accuracy | 95% CI | old tokens / problem | new accuracy | 95% CI | new tokens / problem |",
             "| ---: | ---: | :---: | ---: | ---: | :---: | ---: |"]
    for o, n in zip(cells["old"], cells["new"]):
        lines.append(f"| {o.samples} | {o.accuracy:.1%} | {o.ci95[0]:.1%} - {o.ci95[1]:.1%} | {o.tokens_mean:,.0f} | "
                     f"{n.accuracy:.1%} | {n.ci95[0]:.1%} - {n.ci95[1]:.1%} | {n.tokens_mean:,.0f} |")
    lines += ["", "Paired, new minus old (Newcombe 95% interval of the difference):", "",
              "| sc@k | n | new - old | 95% CI | new only right | old only right | verdict |",
              "| ---: | ---: | ---: | :---: | ---: | ---: | --- |"]
    for o, n in zip(cells["old"], cells["new"]):
        d, _ = compare(n, o)
        lines.append(f"| {o.samples} | {d.n} | {d.diff:+.1%} | {d.ci95[0]:+.1%} to {d.ci95[1]:+.1%} | {d.a_only} | "
                     f"{d.b_only} | {d.verdict('new', 'old')} |")
    cached = sum(r["tokens"].get("cached", 0) for r in new) / len(new)
    prompt = sum(r["tokens"].get("prompt", 0) for r in new) / len(new)
    lines += ["", f"Cached prompt tokens (new; the old server reported none): {cached:,.0f} of {prompt:,.0f} a problem "
              f"({cached / prompt:.0%})."]
    per = [sum(bool(task.grade(r["samples"][i]["answer"], r.get("reference"), r["question"])) for r in new) / len(new)
           for i in range(8)]
    lines += ["", "New, accuracy of sample i alone (seed i on every problem): " + ", ".join(f"{a:.1%}" for a in per) +
              f"; mean {sum(per) / len(per):.1%}."]
    if summary.get("wall_s") and len(ids) == len(new) == summary.get("problems"):
        lines += ["", f"Wall time: new {summary['wall_s'] / 60:.1f} min ({summary['wall_s'] / len(new):.1f} s a problem), "
                  f"old {OLD_WALL_MIN} min ({OLD_WALL_MIN * 60 / len(old):.1f} s a problem)."]
    text = "\n".join(lines) + "\n"
    print(text)
    (NEW / "report.md").write_text(text)


if __name__ == "__main__":
    main()
