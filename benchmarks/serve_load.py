"""Load check of `fot serve` against fot.sim (the SIMULATED backend, a test double): not a timed test.

200 requests from 50 concurrent openai clients. The proxy runs as its own process (`python -m fot
serve --upstream SIM`), so its latency is not mixed with the clients' or the simulator's CPU; the
simulator runs here, in this process, so its counters can be read. Checked: every request is
answered or refused with 429 (none lost), every answer is within its budget, the sum of the
answered requests' `usage` is what the server spent and what the simulator reported serving.

Recorded per answered request: latency at the client; the forest's own wall time and its time in
the queue (from the reply's `fot` object); the proxy's overhead = latency - queue - forest wall,
i.e. HTTP in and out, parsing, validation and the reply (loopback, the openai client included: an
upper bound).

    python benchmarks/serve_load.py [--requests 200 --clients 50 --out benchmarks/results/serve-load]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fot.backend.local import free_port  # noqa: E402
from fot.sim import SimConfig, SimServer  # noqa: E402
from fot.tasks import Arith  # noqa: E402

PRESETS = ["fot-2x2", "fot", "sc-4", "mctsr-2", "cot"]


async def wait_ready(client: openai.AsyncOpenAI, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"fot serve exited with {proc.returncode}")
        try:
            await client.models.list()
            return
        except openai.APIConnectionError:
            await asyncio.sleep(0.2)
    raise SystemExit("fot serve did not start")


async def run(args: argparse.Namespace) -> dict:
    sim_cfg = SimConfig(ttft_s=args.ttft, decode_tps=args.decode_tps, capacity=args.sim_capacity)
    async with SimServer(sim_cfg) as sim:
        port = free_port()
        cmd = [sys.executable, "-m", "fot", "serve", "--upstream", sim.base_url, "--model", "fot-sim",
               "--port", str(port), "--max-active", str(args.max_active), "--queue-limit", str(args.queue_limit),
               "--budget", str(args.budget), "--run-budget", str(args.run_budget), "--concurrency",
               str(args.concurrency), "--trees", "2", "--rollouts", "2", "--reward-samples", "1",
               "--log-level", "WARNING"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}/v1"
        try:
            probe = openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0)
            await wait_ready(probe, proc)
            # warm-up, not measured: the first request pays for lazy imports on both sides (a cold start of
            # 1-2 s on the first wave of requests otherwise)
            warm = await asyncio.gather(*(probe.chat.completions.create(
                model=m, messages=[{"role": "user", "content": "What is 1 + 1?"}]) for m in PRESETS))
            warmup_tokens = sum(w.usage.total_tokens for w in warm)
            await probe.close()
            problems = Arith.generate(args.requests, seed=1)
            todo = list(enumerate(problems))
            outcomes: list[dict] = []

            async def client_loop(k: int) -> None:
                client = openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0, timeout=600)
                async with client:
                    await client.models.list()  # its connection and first-use costs, before the clock starts
                    await ready.wait()
                    while todo:
                        i, p = todo.pop(0)
                        model = PRESETS[i % len(PRESETS)]
                        t0 = time.perf_counter()
                        row = {"i": i, "model": model, "client": k}
                        try:
                            r = await client.chat.completions.create(
                                model=model, messages=[{"role": "user", "content": p["question"]}])
                            f = r.to_dict()["fot"]
                            row.update(status=200, latency_s=time.perf_counter() - t0, wall_s=f["wall_s"],
                                       queue_s=f["queue_s"], proxy_s=f["proxy_s"], tokens=r.usage.total_tokens, budget=f["budget"],
                                       calls=f["calls"], answer=f["answer"], right=f["answer"] == str(p["answer"]))
                        except openai.RateLimitError as e:
                            retry = float(e.response.headers.get("Retry-After", "1"))
                            row.update(status=429, latency_s=time.perf_counter() - t0, retry_after=retry,
                                       code=e.code)
                            outcomes.append(row)
                            await asyncio.sleep(retry)  # a polite client: come back after Retry-After
                            continue
                        except openai.APIError as e:
                            row.update(status=getattr(e, "status_code", None) or "error", error=str(e)[:200],
                                       latency_s=time.perf_counter() - t0)
                        outcomes.append(row)

            ready = asyncio.Event()
            loops = [asyncio.create_task(client_loop(k)) for k in range(args.clients)]
            await asyncio.sleep(1.0)
            ready.set()
            t_start = time.perf_counter()
            await asyncio.gather(*loops)
            elapsed = time.perf_counter() - t_start
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/health") as r:
                    health = await r.json()
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        stats = sim.stats
    return summarize(args, outcomes, elapsed, health, stats, proc.returncode, out, warmup_tokens)


def pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def summarize(args, outcomes, elapsed, health, stats, returncode, server_out, warmup_tokens) -> dict:
    ok = [o for o in outcomes if o["status"] == 200]
    refused = [o for o in outcomes if o["status"] == 429]
    other = [o for o in outcomes if o["status"] not in (200, 429)]
    lat = [o["latency_s"] for o in ok]
    over = [o["latency_s"] - o["queue_s"] - o["wall_s"] for o in ok]
    spent_answered = sum(o["tokens"] for o in ok)
    served_upstream = stats.reported_prompt + stats.reported_completion
    result = {
        "backend": "fot.sim (SIMULATED backend, a test double): latencies are the simulator's, not a model's",
        "settings": {k: getattr(args, k) for k in ("requests", "clients", "max_active", "queue_limit", "budget",
                                                    "run_budget", "concurrency", "ttft", "decode_tps", "sim_capacity")}
        | {"presets": PRESETS, "trees_x_rollouts_of_fot": "2x2", "reward_samples": 1},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "2-core machine shared with another CPU-bound benchmark while this ran"},
        "requests": len(outcomes), "answered": len(ok), "refused_429": len(refused), "other_errors": len(other),
        "lost": args.requests - len(outcomes),
        "refusal_codes": sorted({o.get("code") for o in refused}),
        "wall_s": round(elapsed, 2), "answered_per_s": round(len(ok) / elapsed, 2),
        "latency_s": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "max": max(lat, default=None)},
        "queue_s": {"p50": pct([o["queue_s"] for o in ok], 50), "p99": pct([o["queue_s"] for o in ok], 99)},
        "forest_wall_s": {"p50": pct([o["wall_s"] for o in ok], 50), "p99": pct([o["wall_s"] for o in ok], 99)},
        "proxy_overhead_ms": {"p50": pct(over, 50) * 1e3 if over else None, "p99": pct(over, 99) * 1e3 if over else None,
                              "mean": float(np.mean(over)) * 1e3 if over else None},
        "server_side_overhead_ms": {"p50": pct([o["proxy_s"] * 1e3 for o in ok], 50),
                                    "p99": pct([o["proxy_s"] * 1e3 for o in ok], 99)},
        "upstream_calls_per_answer": {"mean": float(np.mean([o["calls"] for o in ok])) if ok else None},
        "budget": {"per_request": args.budget, "max_spent_by_a_request": max((o["tokens"] for o in ok), default=0),
                   "requests_over_budget": sum(o["tokens"] > o["budget"] for o in ok),
                   "run_budget": args.run_budget, "server_spent": health["run_budget"]["spent"],
                   "sum_of_answered_usage": spent_answered, "warmup_usage": warmup_tokens,
                   "upstream_reported": served_upstream},
        "sim_answers_right": sum(o["right"] for o in ok),  # the simulator's skill, not a model's
        "server_exit": returncode, "server_log_tail": server_out.splitlines()[-3:],
    }
    checks = {"none_lost": result["lost"] == 0 and not other,
              "budget_held": result["budget"]["requests_over_budget"] == 0
              and health["run_budget"]["spent"] <= args.run_budget,
              "usage_is_what_was_spent": spent_answered + warmup_tokens == health["run_budget"]["spent"]
              == served_upstream,
              "server_stopped_cleanly": returncode == 0}
    result["checks"] = checks
    result["outcomes"] = outcomes
    return result


def report(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    ms = lambda x: "n/a" if x is None else f"{x * 1e3:,.0f} ms"  # noqa: E731
    rows = [("backend", "fot.sim (SIMULATED)"),
            ("requests / answered / 429 / other / lost",
             f"{result['requests']} / {result['answered']} / {result['refused_429']} / {result['other_errors']} / "
             f"{result['lost']}"),
            ("latency p50 / p90 / p99", " / ".join(ms(result["latency_s"][k]) for k in ("p50", "p90", "p99"))),
            ("queue wait p50 / p99", " / ".join(ms(result["queue_s"][k]) for k in ("p50", "p99"))),
            ("forest wall p50 / p99", " / ".join(ms(result["forest_wall_s"][k]) for k in ("p50", "p99"))),
            ("proxy overhead p50 / p99 / mean", " / ".join(
                f"{result['proxy_overhead_ms'][k]:.1f} ms" for k in ("p50", "p99", "mean"))),
            ("  of which inside the server p50 / p99", " / ".join(
                f"{result['server_side_overhead_ms'][k]:.1f} ms" for k in ("p50", "p99"))),
            ("answered per second", f"{result['answered_per_s']}"),
            ("upstream calls per answer (mean)", f"{result['upstream_calls_per_answer']['mean']:.1f}"),
            ("max tokens of a request / budget", f"{result['budget']['max_spent_by_a_request']:,} / "
                                                 f"{result['budget']['per_request']:,}"),
            ("server spent = sum of usage (+ warm-up) = upstream",
             f"{result['budget']['server_spent']:,} = {result['budget']['sum_of_answered_usage']:,} "
             f"(+ {result['budget']['warmup_usage']:,}) = {result['budget']['upstream_reported']:,}"),
            ("checks", ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in result["checks"].items()))]
    width = max(len(k) for k, _ in rows)
    table = "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
    print(table)
    (out / "table.txt").write_text(table + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    ok = [o for o in result["outcomes"] if o["status"] == 200]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].hist([o["latency_s"] for o in ok], bins=30, color="tab:blue")
    ax[0].set(xlabel="latency at the client (s)", ylabel="requests", title="answered requests")
    ax[1].hist([(o["latency_s"] - o["queue_s"] - o["wall_s"]) * 1e3 for o in ok], bins=30, color="tab:orange")
    ax[1].set(xlabel="proxy overhead (ms)", title="latency - queue - forest wall")
    fig.suptitle("fot serve under load, against fot.sim (SIMULATED backend)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "serve_load.png", dpi=80)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--max-active", type=int, default=16)
    ap.add_argument("--queue-limit", type=int, default=24)
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--run-budget", type=int, default=5_000_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--ttft", type=float, default=0.02, help="simulated time to first token, seconds")
    ap.add_argument("--decode-tps", type=float, default=3000.0, help="simulated completion tokens per second")
    ap.add_argument("--sim-capacity", type=int, default=32, help="simulated concurrent requests served")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/serve-load"))
    args = ap.parse_args()
    result = asyncio.run(run(args))
    report(result, Path(args.out))
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
