"""What `fot serve` answers to hostile requests and connections (issue 21, item 8), on any checkout.

fot serve and fot.sim (the SIMULATED backend, a test double) run in this process; each request is
sent raw and its status and error code printed, then an idle and a slow-header connection are held
to see when the server lets go (up to --hold seconds).

    python benchmarks/serve_hostile.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from fot.config import SearchConfig
from fot.engine import Engine
from fot.serve import FotServer, ServeConfig
from fot.sim import SimConfig, SimServer

MSGS = [{"role": "user", "content": "What is 17 * 23?"}]
HUGE = "1" + "0" * 5000


def requests() -> dict[str, bytes]:
    j = lambda d: json.dumps(d).encode()  # noqa: E731
    return {
        "JSON nested 100,000 deep": b'{"model": "fot", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "a 5,000-digit integer": b'{"model": "fot", "messages": [], "x": ' + HUGE.encode() + b"}",
        'model "fot-<5000 digits>"': j({"model": "fot-" + HUGE, "messages": MSGS}),
        'stream_options: "x"': j({"model": "fot", "messages": MSGS, "stream": True, "stream_options": "x"}),
        "fot.budget: 10**400 (fot)": j({"model": "fot", "messages": MSGS, "fot": {"budget": 10**400}}),
        "fot.budget: 10**400 (cot)": j({"model": "cot", "messages": MSGS, "fot": {"budget": 10**400}}),
        "a question game24 cannot judge": j({"model": "fot", "messages": MSGS, "fot": {"task": "game24"}}),
    }


async def held(port: int, data: bytes, hold: float) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(reader.read(), hold)
        return f"closed by the server after {time.monotonic() - t0:.1f} s"
    except asyncio.TimeoutError:
        return f"still open after {hold:.0f} s"
    finally:
        writer.close()


async def main(hold: float) -> None:
    async with SimServer(SimConfig()) as sim:
        engine = Engine(sim.base_url, "fot-sim", config=SearchConfig(reward_samples=1))
        await engine.start()
        try:
            async with FotServer(engine, ServeConfig(port=0, trees=2, rollouts=1)) as server:
                async with aiohttp.ClientSession() as http:
                    for name, body in requests().items():
                        async with http.post(server.base_url + "/chat/completions", data=body,
                                             headers={"Content-Type": "application/json"}) as r:
                            err = (await r.json()).get("error") or {}
                        print(f"{name:34s} {r.status}  code={err.get('code')}  param={err.get('param')}")
                print(f"{'idle connection':34s} {await held(server.port, b'', hold)}")
                print(f"{'headers never finished':34s} "
                      f"{await held(server.port, b'POST /v1/chat/completions HTTP/1.1' + bytes([13, 10]), hold)}")
        finally:
            await engine.aclose()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hold", type=float, default=60.0)
    asyncio.run(main(ap.parse_args().hold))
