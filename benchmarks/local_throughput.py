"""Completion tokens per second of the embedded llama.cpp server at 1, 2, 4, 8 requests in flight (issue 22).

Starts the embedded server (`fot.backend.local.LocalServer`, SmolLM2-135M unless --gguf) with as many slots
as the largest level, then for each level keeps that many requests in flight until --requests have
finished: arithmetic questions from examples/arith.jsonl, `max_tokens` --max-tokens, temperature
0.7, a seed per request. Per level it reports the aggregate rate (all completion tokens / wall
time) and the per-request rate (a request's completion tokens / its latency, the mean over
requests): the first is what a forest gets, the second what one sample sees. The machine's load
average is recorded before and after each level: on a shared machine it says what the numbers mean.

    python benchmarks/local_throughput.py                      # -> benchmarks/results/local-xllamacpp/throughput.json
    python benchmarks/local_throughput.py --threads 1 --out /tmp/t1.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path

import aiohttp

from fot.backend.local import LocalServer, LocalServerConfig, default_threads

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "local-xllamacpp" / "throughput.json"


def questions() -> list[str]:
    return [json.loads(line)["question"] for line in (ROOT / "examples" / "arith.jsonl").read_text().splitlines()]


async def level(session: aiohttp.ClientSession, url: str, model: str, in_flight: int, requests: int,
                max_tokens: int, qs: list[str]) -> dict:
    todo = iter(range(requests))
    done: list[dict] = []

    async def worker() -> None:
        for i in todo:
            body = {"model": model, "max_tokens": max_tokens, "temperature": 0.7, "seed": i,
                    "messages": [{"role": "user", "content": f"{qs[i % len(qs)]} Think step by step."}]}
            t0 = time.monotonic()
            async with session.post(url, json=body) as r:
                r.raise_for_status()
                reply = await r.json()
            done.append({"latency_s": time.monotonic() - t0, "completion": reply["usage"]["completion_tokens"]})

    load0 = os.getloadavg()
    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    wall = time.monotonic() - t0
    tokens = sum(d["completion"] for d in done)
    return {"in_flight": in_flight, "requests": len(done), "completion_tokens": tokens, "wall_s": round(wall, 2),
            "aggregate_tok_s": round(tokens / wall, 1),
            "per_request_tok_s": round(sum(d["completion"] / d["latency_s"] for d in done) / len(done), 1),
            "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in os.getloadavg()]}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="1,2,4,8", help="requests in flight, comma-separated")
    ap.add_argument("--requests", type=int, default=16, help="requests per level")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="server threads (default: fot's, half the cores)")
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    qs = questions()
    import xllamacpp

    async with LocalServer(LocalServerConfig(gguf=a.gguf, slots=max(levels), n_threads=a.threads)) as srv:
        url = f"{srv.base_url}/chat/completions"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            await level(session, url, srv.model, 1, 2, 8, qs)  # warm-up, not recorded
            rows = []
            for n in levels:
                rows.append(await level(session, url, srv.model, n, a.requests, a.max_tokens, qs))
                print(f"{n:>2} in flight: {rows[-1]['aggregate_tok_s']:6.1f} completion tok/s in all, "
                      f"{rows[-1]['per_request_tok_s']:6.1f} per request  ({rows[-1]['requests']} requests, "
                      f"{rows[-1]['wall_s']} s, load {rows[-1]['load_before'][0]} -> {rows[-1]['load_after'][0]})",
                      flush=True)
    record = {"model": srv.gguf.name, "xllamacpp": xllamacpp.__version__, "threads": a.threads or default_threads(),
              "slots": max(levels), "max_tokens": a.max_tokens, "cpus": os.cpu_count(), "machine": platform.machine(),
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
              "levels": rows,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    asyncio.run(main())
