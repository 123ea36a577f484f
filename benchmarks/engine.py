"""Engine performance against fot.sim (a simulated backend) over loopback. Prints a table and
writes benchmarks/results/engine.json. Each figure is the median of `--repeats` runs (at least 3)
with its spread; the machine's load and core count are recorded beside them. Run:
python benchmarks/engine.py [--quick]

1. overhead     chat calls through fot's LLMClient (budget + ledger, no throttle) against the bare
                openai.AsyncOpenAI client and against bare aiohttp (fot's own transport), same
                server, same concurrency; the client's CPU per call over real HTTP with a
                GSM8K-sized prompt (benchmarks/client_cpu.py, 100 in flight); and the CPU time of
                the search itself per rollout with an in-process fake backend (no network)
2. parallel     forests of T trees x 8 rollouts on several problems at once, fixed 100 ms latency,
                unlimited capacity: wall / critical-path bound, and against trees run one by one
3. saturation   a capacity-limited backend (C slots, decode-rate latency) with more work than
                slots: busy slot-time / (C x wall)
4. tokens       calls and prompt tokens per rollout, and the cached share of prompt tokens
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import openai
from rich.console import Console
from rich.table import Table

from client_cpu import measure as client_cpu_measure
from simproc import SimProcess, free_port  # noqa: F401 -- free_port: other benchmarks import it from here
from fot import Budget, LLMClient, Ledger
from fot.search import prompts
from fot.config import SearchConfig
from fot.search.forest import run_forest
from fot.backend.ledger import CallRecord
from fot.backend.llm import Choice, Completion
from fot.search.mctsr import MCTSrTree
from fot.tasks import Arith
from fot.search.verifiers import SelfEvaluation

OUT = Path(__file__).resolve().parent / "results" / "engine.json"
PROBLEMS_AT_ONCE = 2


# -- 1. overhead -------------------------------------------------------------------------------------

async def _bare(base_url: str, n: int, conc: int, raw: bool = False) -> float:
    """The bare openai client (`chat.completions.create`), or (raw) bare aiohttp, the transport fot
    uses (one session, JSON encoded and read by hand)."""
    import aiohttp

    sem = asyncio.Semaphore(conc)
    msgs = prompts.answer("What is 2 + 3?")
    if raw:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}

        async def one(i: int) -> None:
            async with sem:
                body = {"model": "fot-sim", "messages": msgs, "max_tokens": 16, "seed": i}
                async with session.post(base_url + "/chat/completions", data=json.dumps(body).encode(),
                                        headers=headers) as r:
                    json.loads(await r.read())
        close = session.close
    else:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)

        async def one(i: int) -> None:
            async with sem:
                await client.chat.completions.create(model="fot-sim", messages=msgs, max_tokens=16, seed=i)
        close = client.close

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    await close()
    return n / wall


async def _fot(base_url: str, n: int, conc: int) -> float:
    llm = LLMClient(base_url, "fot-sim", concurrency=conc, budget=Budget(tokens=10**12), ledger=Ledger())
    msgs = prompts.answer("What is 2 + 3?")
    t0 = time.perf_counter()
    await asyncio.gather(*(llm.chat(msgs, max_tokens=16, seed=i) for i in range(n)))
    wall = time.perf_counter() - t0
    await llm.aclose()
    return n / wall


class FakeLLM:
    """An in-process backend with no network: canned texts, instant answers, real ledger rows."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.i = 0

    async def chat(self, messages, *, role="answer", tag=None, n=1, budget=None, **kw) -> Completion:
        self.i += 1
        if role == "evaluate":
            texts = [f"Score: {(self.i * 37 + k * 11) % 180 - 80}" for k in range(n)]
        elif role == "critique":
            texts = ["The draft skips a step."]
        else:
            texts = [f"Step by step. So the answer is \\boxed{{{self.i % 7}}}."]
        row = CallRecord(role=role, prompt_tokens=100, completion_tokens=20 * n)
        self.ledger.add(row)
        if budget is not None:
            res = await budget.reserve(100, 64, n=n)
            budget.settle(res, 100, 20 * n)
        return Completion([Choice(t) for t in texts], row)


async def _search_cpu(rollouts: int, trees: int) -> float:
    cfg = SearchConfig(rollouts=rollouts, logprob_threshold=None)
    llm = FakeLLM()
    t0 = time.process_time()
    for i in range(trees):
        tree = MCTSrTree(index=i, question="What is 2 + 3?", original_question="What is 2 + 3?", task=Arith(),
                         llm=llm, verifier=SelfEvaluation(llm), config=cfg, budget=Budget(), problem_id="p", seed=i)
        await tree.run()
    return (time.process_time() - t0) / (rollouts * trees) * 1e6


# -- 2. parallel efficiency ------------------------------------------------------------------------------

async def _forests(base_url: str, T: int, R: int, problems: int, sequential: bool = False) -> tuple[float, int]:
    """Wall time of `problems` forests at once, and the longest chain of dependent calls."""
    cfg = SearchConfig(trees=T, rollouts=R, inputs=("raw",), logprob_threshold=None, tie_break="q")
    llm = LLMClient(base_url, "fot-sim", timeout=600)
    qs = [f"What is {i + 11} * {i + 3}?" for i in range(problems)]

    async def forest(q: str, k: int) -> None:
        if sequential:  # what the official scripts do: one tree after another
            for t in range(T):
                one = SearchConfig(trees=1, rollouts=R, inputs=("raw",), logprob_threshold=None, seed=t)
                await run_forest(q, Arith(), llm, one, Budget(), f"p{k}-{t}")
        else:
            await run_forest(q, Arith(), llm, cfg, Budget(), f"p{k}")

    t0 = time.perf_counter()
    await asyncio.gather(*(forest(q, k) for k, q in enumerate(qs)))
    wall = time.perf_counter() - t0
    await llm.aclose()
    chain = 2 + 3 * R  # roots: answer -> score; rollout: (critique | rescore) -> refine -> score
    return wall, chain * (T if sequential else 1)


# -- 3. saturation -----------------------------------------------------------------------------------------

async def _saturate(base_url: str, problems: int) -> float:
    cfg = SearchConfig(trees=4, rollouts=3, inputs=("raw",), logprob_threshold=None, tie_break="q")
    llm = LLMClient(base_url, "fot-sim", concurrency=64, timeout=600)
    t0 = time.perf_counter()
    await asyncio.gather(*(run_forest(f"What is {i} * 7?", Arith(), llm, cfg, Budget(), f"s{i}")
                           for i in range(problems)))
    wall = time.perf_counter() - t0
    await llm.aclose()
    return wall


# -- 4. tokens -------------------------------------------------------------------------------------------------

async def _tokens(base_url: str) -> dict:
    cfg = SearchConfig(trees=1, rollouts=8, inputs=("raw",), logprob_threshold=None)
    llm = LLMClient(base_url, "fot-sim")
    await run_forest("Tom has 3 boxes of 12 eggs. He breaks 5. How many eggs are left?", Arith(), llm, cfg,
                     Budget(), "t")
    await llm.aclose()
    rows = llm.ledger.rows
    roll = [r for r in rows if r.rollout and r.rollout > 0]
    prompt = sum(r.prompt_tokens for r in rows)
    return {"calls_per_rollout": len(roll) / 8, "requests_per_rollout": sum(r.requests for r in roll) / 8,
            "prompt_tokens_per_rollout": sum(r.prompt_tokens for r in roll) / 8,
            "completion_tokens_per_rollout": sum(r.completion_tokens for r in roll) / 8,
            "critical_path_calls_per_rollout": 3,
            "cached_share_of_prompt_tokens": sum(r.cached_tokens for r in rows) / prompt if prompt else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer calls and repeats (a smoke run)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    reps = 1 if args.quick else max(3, args.repeats)
    n_calls = 400 if args.quick else 2000
    results: dict = {"machine": f"{os.cpu_count()} cores", "cores": os.cpu_count(), "loadavg_before": os.getloadavg(),
                     "date": time.strftime("%Y-%m-%d %H:%M"), "repeats": reps,
                     "backend": "fot.sim (SIMULATED, separate process)"}
    console = Console()

    fast = SimProcess()
    try:
        ratios, raw_ratios, bare_tp, raw_tp, fot_tp = [], [], [], [], []
        for _ in range(reps):
            b = asyncio.run(_bare(fast.base_url, n_calls, 32))
            braw = asyncio.run(_bare(fast.base_url, n_calls, 32, raw=True))
            f = asyncio.run(_fot(fast.base_url, n_calls, 32))
            bare_tp.append(b), raw_tp.append(braw), fot_tp.append(f), ratios.append(f / b), raw_ratios.append(f / braw)
        cpu = [asyncio.run(_search_cpu(8, 20)) for _ in range(reps)]
        results["overhead"] = {"calls": n_calls, "concurrency": 32, "bare_calls_per_s": statistics.median(bare_tp),
                               "bare_raw_calls_per_s": statistics.median(raw_tp),
                               "fot_calls_per_s": statistics.median(fot_tp), "ratio": statistics.median(ratios),
                               "ratios": ratios, "ratio_same_path": statistics.median(raw_ratios),
                               "ratios_same_path": raw_ratios, "goal": ">= 0.9",
                               "search_cpu_us_per_rollout": statistics.median(cpu), "search_cpu_runs": cpu}
    finally:
        fast.close()
    gsm = SimProcess("--ttft", "1.0")
    try:
        client = [asyncio.run(client_cpu_measure(gsm.base_url, 100, 2))[0] for _ in range(reps)]
        results["overhead"]["client_cpu_us_per_call"] = statistics.median(client)
        results["overhead"]["client_cpu_runs"] = client
    finally:
        gsm.close()
    fast = SimProcess()
    try:
        results["tokens"] = asyncio.run(_tokens(fast.base_url))
    finally:
        fast.close()

    slow = SimProcess("--ttft", "0.1")
    try:
        par = []
        Ts = [1, 4, 16] if args.quick else [1, 4, 16, 64]
        for T in Ts:
            runs = [asyncio.run(_forests(slow.base_url, T, 8, PROBLEMS_AT_ONCE)) for _ in range(reps)]
            wall = statistics.median(w for w, _ in runs)
            bound = runs[0][1] * 0.1
            ratios_T = [w / bound for w, _ in runs]
            par.append({"trees": T, "rollouts": 8, "problems_at_once": PROBLEMS_AT_ONCE,
                        "requests": T * 35 * PROBLEMS_AT_ONCE, "wall_s": wall, "bound_s": bound,
                        "ratio": wall / bound, "ratios": ratios_T, "spread": [min(ratios_T), max(ratios_T)]})
        seq = []
        for T in ([4] if args.quick else [4, 16]):
            wall, chain = asyncio.run(_forests(slow.base_url, T, 8, PROBLEMS_AT_ONCE, sequential=True))
            conc = next(p for p in par if p["trees"] == T)["wall_s"]
            seq.append({"trees": T, "sequential_wall_s": wall, "concurrent_wall_s": conc, "speedup": wall / conc})
        results["parallel"] = {"latency_s": 0.1, "runs": par, "sequential": seq, "goal": "ratio <= 1.15"}
    finally:
        slow.close()

    C = 4
    cap = SimProcess("--capacity", str(C), "--ttft", "0.02", "--decode-tps", "400")
    try:
        effs = []
        for _ in range(reps):
            before = cap.stats()
            wall = asyncio.run(_saturate(cap.base_url, 6))
            after = cap.stats()
            effs.append((after["busy_slot_s"] - before["busy_slot_s"]) / (C * wall))
        results["saturation"] = {"capacity": C, "ttft_s": 0.02, "decode_tps": 400, "busy_over_capacity_wall":
                                 statistics.median(effs), "runs": effs, "goal": ">= 0.9"}
        results["loadavg_after"] = os.getloadavg()
    finally:
        cap.close()

    t = Table(title="fot engine against fot.sim (SIMULATED backend)")
    t.add_column("measure")
    t.add_column("value")
    t.add_column("goal")
    o = results["overhead"]
    t.add_row("throughput fot / bare openai (create)", f"{o['ratio']:.2f} ({o['fot_calls_per_s']:.0f} vs "
              f"{o['bare_calls_per_s']:.0f} calls/s)", ">= 0.9")
    t.add_row("throughput fot / bare aiohttp (fot's transport)", f"{o['ratio_same_path']:.2f} (vs "
              f"{o['bare_raw_calls_per_s']:.0f} calls/s)", ">= 0.9")
    t.add_row("client CPU per call, GSM8K-sized prompt, 100 in flight", f"{o['client_cpu_us_per_call']:.0f} us "
              f"({min(o['client_cpu_runs']):.0f}-{max(o['client_cpu_runs']):.0f})", "")
    t.add_row("search CPU per rollout (no network)", f"{o['search_cpu_us_per_rollout']:.0f} us "
              f"({min(o['search_cpu_runs']):.0f}-{max(o['search_cpu_runs']):.0f})", "")
    for p in results["parallel"]["runs"]:
        t.add_row(f"wall / critical path, T={p['trees']} x R=8", f"{p['ratio']:.2f} ({p['spread'][0]:.2f}-"
                  f"{p['spread'][1]:.2f}; {p['wall_s']:.2f} s vs {p['bound_s']:.2f} s)", "<= 1.15")
    for s in results["parallel"]["sequential"]:
        t.add_row(f"speed-up over one-by-one trees, T={s['trees']}", f"{s['speedup']:.1f}x", f"~{s['trees']}x")
    sat = results["saturation"]
    t.add_row(f"busy slot-time / (C x wall), C={C}", f"{sat['busy_over_capacity_wall']:.2f}", ">= 0.9")
    tk = results["tokens"]
    t.add_row("calls (requests) per rollout", f"{tk['calls_per_rollout']:.1f} ({tk['requests_per_rollout']:.1f})", "")
    t.add_row("prompt / completion tokens per rollout",
              f"{tk['prompt_tokens_per_rollout']:.0f} / {tk['completion_tokens_per_rollout']:.0f}", "")
    t.add_row("cached share of prompt tokens (sim prefix cache)", f"{tk['cached_share_of_prompt_tokens']:.0%}", "")
    console.print(t)
    out = OUT.with_name("engine-quick.json") if args.quick else OUT  # a smoke run never replaces the record
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    console.print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
