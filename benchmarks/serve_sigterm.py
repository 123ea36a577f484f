"""What a `fot serve` forest does upstream after SIGTERM (issue 21, item 6), rerunnable on any checkout.

fot.sim (the SIMULATED backend, a test double, 20 ms to first token) runs in this process and counts
requests; `fot serve` from the given tree runs in another. One `fot-64x64` request is sent, SIGTERM
follows once the sim has served 200 calls, and the script reports the upstream calls made after the
signal, how long the process took to exit, and what the client got.

    python benchmarks/serve_sigterm.py                                            # this checkout
    python benchmarks/serve_sigterm.py --engine-tree /tmp/fot-main --python PY     # another checkout's

PY must import fot from that tree (an editable install of this checkout would win over PYTHONPATH):
e.g. a venv whose site-packages holds a .pth naming the tree and then this venv's site-packages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp

from fot.local import free_port
from fot.sim import SimConfig, SimProfile, SimServer


async def run(tree: Path, python: str, model: str, after_calls: int) -> dict:
    async with SimServer(SimConfig(profile=SimProfile(p_first=0.999), ttft_s=0.02)) as sim:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            python, "-m", "fot", "serve", "--upstream", sim.base_url, "--model", "fot-sim", "--port",
            str(port), "--log-level", "WARNING", cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(url + "/health"):
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)

            async def ask():
                try:
                    async with http.post(url + "/v1/chat/completions", json={
                            "model": model, "messages": [{"role": "user", "content": "What is 17 * 23?"}]}) as r:
                        await r.read()
                        return r.status
                except aiohttp.ClientError as e:
                    return type(e).__name__

            request = asyncio.create_task(ask())
            while sim.stats.requests < after_calls:
                await asyncio.sleep(0.01)
            at_signal, t0 = sim.stats.requests, time.monotonic()
            proc.send_signal(signal.SIGTERM)
            status = await request
            answered_s = time.monotonic() - t0
            code = await proc.wait()
            exit_s = time.monotonic() - t0
        return {"tree": str(tree), "model": model, "calls_at_signal": at_signal,
                "calls_after_signal": sim.stats.requests - at_signal,
                "peak_calls_in_flight": sim.stats.max_in_flight, "client_got": status,
                "answered_after_s": round(answered_s, 2), "exited_after_s": round(exit_s, 2), "exit": code}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine-tree", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--model", default="fot-64x64")
    ap.add_argument("--after-calls", type=int, default=200)
    args = ap.parse_args()
    print(asyncio.run(run(args.engine_tree.resolve(), args.python, args.model, args.after_calls)))


if __name__ == "__main__":
    main()
