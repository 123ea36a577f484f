"""Small helpers shared by the command-line tests."""

import asyncio
import json
from pathlib import Path

from fot.tasks import Arith


def write_problems(tmp_path, n: int, seed: int, name: str) -> Path:
    """A generated arithmetic problem file (ids arith-001 ...) with references."""
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in Arith.generate(n, seed=seed)))
    return path


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class FakeBackend:
    """A loopback OpenAI-compatible backend whose every reply a test writes: `reply(role, body)` returns
    (status, json payload, delay seconds) or the string "drop" (a 200 whose body is cut off mid-way)."""

    def __init__(self, reply):
        self.reply = reply
        self.served: list[dict] = []  # requests answered with 200 (the backend did the work)
        self.headers: list[dict] = []  # every chat request's headers
        self._runner = None

    async def __aenter__(self):
        from aiohttp import web

        from fot.local import free_port
        from fot.sim.solver import ScriptedSolver

        async def models(request):
            return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

        async def chat(request):
            self.headers.append(dict(request.headers))
            body = await request.json()
            role = ScriptedSolver.role_of(body["messages"][-1]["content"])
            out = self.reply(role, body)
            if out == "drop":
                full = ok(body, "The answer is 4.\nFinal Answer: 4", 30)
                self.served.append({"role": role, "body": body, "usage": full["usage"]})
                payload = json.dumps(full).encode()
                resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
                resp.content_length = len(payload)
                await resp.prepare(request)
                await resp.write(payload[: len(payload) // 2])
                request.transport.close()  # the connection drops after the headers and half the body
                return resp
            status, payload, delay = out
            await asyncio.sleep(delay)
            if status == 200:
                self.served.append({"role": role, "body": body, "usage": payload.get("usage")})
            return web.json_response(payload, status=status)

        app = web.Application()
        app.router.add_get("/v1/models", models)
        app.router.add_post("/v1/chat/completions", chat)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)  # a reply held for a long delay is not waited for
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        return self

    async def __aexit__(self, *exc):
        await self._runner.cleanup()


def ok(body: dict, text: str, completion: int, prompt: int = 50) -> dict:
    """A well-formed chat completion with usage."""
    return {"id": "x", "object": "chat.completion", "model": "fake",
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        for i in range(int(body.get("n") or 1))],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion * int(body.get("n") or 1),
                      "total_tokens": prompt + completion * int(body.get("n") or 1)}}
