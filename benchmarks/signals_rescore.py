"""Score a recorded sampling run's samples with a verifier, after the fact: the bon run that would have
drawn the same samples (sample i has seed seed*1000 + i whichever method draws it) and scored each with
the verifier, written as that run's results (method bon, the verifier's Q and tokens on every sample).

Why: on a 2-core machine a model's samples cost minutes a problem; the verifier's calls (yesno: one
token) cost seconds. Scoring the recorded samples gives bon, weighted votes and the verifier's AUROC
at every n, on the same samples as sc, paired. A real `--method bon` run on the first problems checks
that the rows are the same (benchmarks/results/local-signals/README.md).

    python benchmarks/signals_rescore.py RUN.jsonl --verifier yesno --base-url URL --out OUT.jsonl [--samples 8]

Resumable: problems already in OUT are skipped. The reference is never shown to the verifier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fot.backend.budget import Budget  # noqa: E402
from fot.backend.ledger import CallTag  # noqa: E402
from fot.backend.llm import LLMClient  # noqa: E402
from fot.config import SearchConfig  # noqa: E402
from fot.search.mctsr import q_value  # noqa: E402
from fot.search.verifiers import make_verifier  # noqa: E402
from fot.tasks import get_task  # noqa: E402


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--verifier", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--eval-max-tokens", type=int, default=96)
    ap.add_argument("--constrain", default="json_schema")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--limit", type=int, default=None, help="the run's first N problems only")
    a = ap.parse_args()
    out = Path(a.out)
    done = {json.loads(line)["id"] for line in out.open()} if out.exists() else set()
    cfg = SearchConfig(verifier=a.verifier, eval_max_tokens=a.eval_max_tokens, reward_samples=1, constrain=a.constrain)
    # a long timeout: on a loaded machine a retried call is charged its whole reservation (unknown), which
    # would make the verifier look dearer than it is
    llm = LLMClient(a.base_url, a.model, concurrency=a.concurrency, context_window=4096, timeout=900)
    rows = []
    for line in open(a.run):
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line still being written by the run being scored
            break
    with out.open("a") as f:
        for row in rows[:a.limit]:
            if row["id"] in done:
                continue
            task = get_task(row["task"])
            verifier = make_verifier(cfg, task, row["question"], llm)
            samples = row["samples"][:a.samples]
            asked = parsed = 0

            async def score(s: dict) -> None:
                nonlocal asked, parsed
                if s.get("answer") is None:
                    return
                b = Budget(name="eval")
                sc = await verifier.score(row["question"], s["text"], 1, CallTag(row["id"], s["index"], 0), b,
                                          seed=cfg.seed * 1000 + 500 + s["index"])
                asked += sc.asked
                parsed += len(sc.values)
                s["q"] = q_value(sc.values)
                spent = b.spent
                s["eval_tokens"] = spent.total_tokens
                s["tokens"] += spent.total_tokens
                s["prompt"] += spent.prompt_tokens
                s["completion"] += spent.completion_tokens
                s["cached"] += spent.cached_tokens

            await asyncio.gather(*(score(s) for s in samples))
            new = {**row, "method": "bon", "samples": samples, "evaluation": {"asked": asked, "parsed": parsed},
                   "settings": {**row["settings"], "verifier": a.verifier, "samples": a.samples,
                                "rescored_from": a.run}}
            for k in ("prompt", "completion", "cached", "total"):
                new["tokens"] = {**new["tokens"], k: sum(s[k if k != "total" else "tokens"] for s in samples)}
            f.write(json.dumps(new) + "\n")
            f.flush()
    await llm.aclose()


if __name__ == "__main__":
    asyncio.run(main())
