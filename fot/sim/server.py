"""`fot.sim`: an OpenAI-compatible *simulated* backend over real HTTP, for tests and engine benchmarks.

A test double, named so everywhere: it serves `/v1/chat/completions` and `/v1/models` with
answers drawn by `SimSolver` (a solver of known skill), a latency and batching-capacity model,
a prefix cache (so `cached_tokens` behaves like vLLM/llama.cpp), and fault injection by rate.

Latency: each request takes ttft + (longest choice's completion tokens) / decode rate, while
holding one of `capacity` slots; requests beyond the capacity queue, a crude model of
continuous batching. Busy slot-time is counted so saturation can be measured.

Faults, drawn per request with the configured rates (reproducible: keyed on the request body and
how many identical bodies came before): 429 with Retry-After, 500, 503, a hang past any sane
client timeout, a 200 whose JSON body is truncated, a 200 whose connection drops after the
headers and half the body (`drop`), a 200 whose body is not JSON (an HTML page), a 200 whose JSON is
not a completion (`not_completion`: no work done, as from a server that is not OpenAI-compatible), a
response with no `usage`, and a response with fewer choices than `n`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable

from aiohttp import web

from .reward import add_reward_routes

from ..backend.appserver import AppServer
from .solver import Request, ScriptedSolver, SimProfile, SimSolver, normalize_question, sim_tokens, stable_hash

FAULT_KINDS = ("429", "500", "503", "hang", "truncate", "drop", "nonjson", "not_completion", "no_usage", "short_n")


@dataclass
class SimConfig:
    model: str = "fot-sim"
    seed: int = 0
    profile: SimProfile = field(default_factory=SimProfile)
    problems: dict[str, str] = field(default_factory=dict)  # normalized question -> reference
    ttft_s: float = 0.0  # time to first token
    decode_tps: float = math.inf  # completion tokens per second per request
    capacity: int | None = None  # concurrent requests served; None = unlimited
    faults: dict[str, float] = field(default_factory=dict)  # kind -> rate, kinds in FAULT_KINDS
    retry_after_s: float = 0.05
    hang_s: float = 3600.0
    ignore_n: bool = False  # like llama-cpp-python's server: always one choice
    usage_one_choice: bool = False  # like llama.cpp's server: completion_tokens of choice 0 only
    prefix_cache: bool = True
    cache_block: int = 16  # tokens per prefix-cache block
    record: bool = False  # keep every request body in `SimBackend.bodies` (tests: what did the engine send?)
    # tests: a scripted solver instead of the profile, script(role, user_message, request) -> text or (text, right)
    script: Callable[[str, str, Request], "str | tuple[str, bool | None]"] | None = None

    def __post_init__(self) -> None:
        bad = set(self.faults) - set(FAULT_KINDS)
        if bad:
            raise ValueError(f"unknown fault kinds {sorted(bad)}; known: {', '.join(FAULT_KINDS)}")
        if sum(self.faults.values()) > 1:
            raise ValueError("fault rates sum to more than 1")


@dataclass
class SimStats:
    requests: int = 0
    ok: int = 0
    faults: Counter = field(default_factory=Counter)
    # usage the server reported in successful responses (what a client can see)
    reported_prompt: int = 0
    reported_completion: int = 0
    reported_cached: int = 0
    # tokens of work done whose response was lost (truncated/non-JSON/missing usage)
    unreported_prompt: int = 0
    unreported_completion: int = 0
    served_by_question: Counter = field(default_factory=Counter)  # prompt + completion tokens of work done
    busy_slot_s: float = 0.0
    max_in_flight: int = 0
    in_flight: int = 0
    started: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["faults"] = dict(self.faults)
        d["served_by_question"] = dict(self.served_by_question)
        return d


class SimBackend:
    """The request handler and its state; `app()` gives the aiohttp application."""

    def __init__(self, config: SimConfig):
        self.config = config
        self.stats = SimStats()
        self._seen: Counter = Counter()
        self._cache: OrderedDict[int, None] = OrderedDict()
        self._slots: asyncio.Semaphore | None = None
        self.bodies: list[str] = []

    @property
    def solver(self) -> SimSolver:
        c = self.config
        if c.script is not None:
            return ScriptedSolver(profile=c.profile, seed=c.seed, script=c.script)
        return SimSolver(profile=c.profile, problems=c.problems, seed=c.seed)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/sim/stats", self.get_stats)
        add_reward_routes(app, self)  # fot/sim/reward.py: a simulated process reward model at /v1/pooling
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.config.model, "object": "model", "created": 0, "owned_by": "fot-sim (a test double)"}]})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_dict())

    # -- pieces --------------------------------------------------------------------------------

    def _draw_fault(self, body_key: int, occurrence: int) -> str | None:
        faults = self.config.faults
        if not faults:
            return None
        u = random.Random(stable_hash(self.config.seed, "fault", body_key, occurrence)).random()
        acc = 0.0
        for kind in FAULT_KINDS:
            acc += faults.get(kind, 0.0)
            if u < acc:
                return kind
        return None

    def _cached_tokens(self, tokens: list[str]) -> int:
        """Longest prefix, in whole blocks, seen in an earlier prompt; then remember this one."""
        if not self.config.prefix_cache:
            return 0
        b = self.config.cache_block
        h, hit, still = 0, 0, True
        for i in range(b, len(tokens) + 1, b):
            h = stable_hash(h, tokens[i - b:i])
            if still and h in self._cache:
                hit = i
                self._cache.move_to_end(h)
            else:
                still = False
                self._cache[h] = None
        while len(self._cache) > 200_000:
            self._cache.popitem(last=False)
        return hit

    @staticmethod
    def _error(status: int, message: str, kind: str, headers: dict | None = None) -> web.Response:
        return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status,
                                 headers=headers)

    async def _serve_time(self, completion_lengths: list[int]) -> None:
        c = self.config
        if c.capacity is not None and self._slots is None:
            self._slots = asyncio.Semaphore(c.capacity)
        duration = c.ttft_s + (max(completion_lengths, default=0) / c.decode_tps if c.decode_tps != math.inf else 0.0)
        if self._slots is not None:
            await self._slots.acquire()
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        t0 = time.monotonic()
        try:
            if duration > 0:
                await asyncio.sleep(duration)
        finally:
            self.stats.busy_slot_s += time.monotonic() - t0
            self.stats.in_flight -= 1
            if self._slots is not None:
                self._slots.release()

    # -- the endpoint --------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        c = self.config
        self.stats.requests += 1
        if c.record:
            self.bodies.append(await request.text())
        try:
            body = await request.json()
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
            n = int(body.get("n") or 1)
            temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
            seed = body.get("seed")
            max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
            want_logprobs = bool(body.get("logprobs"))
            top_logprobs = int(body.get("top_logprobs") or 0) if want_logprobs else 0
            if not 0 <= top_logprobs <= 20:
                raise ValueError("top_logprobs must be from 0 to 20")
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            return self._error(400, f"bad request: {e}", "invalid_request_error")
        if body.get("model") not in (c.model, None):
            return self._error(404, f"model '{body.get('model')}' not found", "not_found_error")

        body_key = stable_hash(json.dumps(body, sort_keys=True))
        occurrence = self._seen[body_key]
        self._seen[body_key] += 1
        fault = self._draw_fault(body_key, occurrence)
        if fault:
            self.stats.faults[fault] += 1
        if fault == "429":
            return self._error(429, "rate limited (simulated)", "rate_limit_error", headers={
                "Retry-After": str(max(1, math.ceil(c.retry_after_s))),
                "retry-after-ms": str(int(c.retry_after_s * 1000))})
        if fault in ("500", "503"):
            return self._error(int(fault), "server error (simulated)", "server_error")
        if fault == "hang":
            await asyncio.sleep(c.hang_s)
            return self._error(504, "hung (simulated)", "server_error")
        if fault == "not_completion":
            return web.json_response({"status": "ok", "service": "not an OpenAI-compatible server (simulated)"})

        # generate
        solver = self.solver
        req = Request(messages=messages, seed=seed, temperature=temperature, occurrence=occurrence)
        n_out = 1 if (c.ignore_n or fault == "short_n") else n
        if fault == "short_n" and n > 1:
            n_out = max(1, n // 2)
        choices, lengths = [], []
        for i in range(n_out):
            out = solver.respond(req, i)
            toks = sim_tokens(out.text)
            finish = "stop"
            if max_tokens is not None and len(toks) > int(max_tokens):
                toks = toks[: int(max_tokens)]
                out.text = " ".join(toks)
                finish = "length"
            lengths.append(len(toks))
            choice = {"index": i, "message": {"role": "assistant", "content": out.text}, "finish_reason": finish}
            if want_logprobs:
                rng = random.Random(stable_hash(c.seed, "lp", body_key, occurrence, i))
                lps = solver.logprobs(out, len(toks), rng, top=top_logprobs, tokens=toks)
                choice["logprobs"] = {"content": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode()),
                     "top_logprobs": [{"token": a, "logprob": alp, "bytes": list(a.encode())} for a, alp in alts]}
                    for t, (lp, alts) in zip(toks, lps)]}
            else:
                choice["logprobs"] = None
            choices.append(choice)

        prompt_toks: list[str] = []
        for m in messages:
            prompt_toks += ["<|im_start|>", str(m.get("role"))] + sim_tokens(str(m.get("content") or "")) + ["<|im_end|>"]
        prompt_toks += ["<|im_start|>", "assistant"]
        cached = self._cached_tokens(prompt_toks)
        completion = lengths[0] if (c.usage_one_choice and lengths) else sum(lengths)

        await self._serve_time(lengths)
        # the work done for each problem, reported or not: what a cap must hold upstream
        user = str(messages[-1].get("content") or "") if isinstance(messages[-1], dict) else ""
        self.stats.served_by_question[normalize_question(ScriptedSolver.question_of(user))] += \
            len(prompt_toks) + sum(lengths)

        usage = {"prompt_tokens": len(prompt_toks), "completion_tokens": completion,
                 "total_tokens": len(prompt_toks) + completion,
                 "prompt_tokens_details": {"cached_tokens": cached}}
        payload = {"id": f"simcmpl-{body_key:x}-{occurrence}", "object": "chat.completion",
                   "created": int(time.time()), "model": c.model, "choices": choices,
                   "system_fingerprint": "fot-sim"}
        if fault == "no_usage":
            self.stats.unreported_prompt += len(prompt_toks)
            self.stats.unreported_completion += sum(lengths)
        else:
            payload["usage"] = usage
        if fault == "truncate":
            self.stats.unreported_prompt += len(prompt_toks)
            self.stats.unreported_completion += sum(lengths)
            text = json.dumps(payload)
            return web.Response(body=text[: len(text) // 2].encode(), status=200, content_type="application/json")
        if fault == "drop":  # the work is done, the headers promise the whole body, the connection dies
            self.stats.unreported_prompt += len(prompt_toks)
            self.stats.unreported_completion += sum(lengths)
            data = json.dumps(payload).encode()
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.content_length = len(data)
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            if request.transport is not None:
                request.transport.close()
            return resp
        if fault == "nonjson":
            self.stats.unreported_prompt += len(prompt_toks)
            self.stats.unreported_completion += sum(lengths)
            return web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", status=200,
                                content_type="text/html")
        if fault != "no_usage":
            self.stats.reported_prompt += len(prompt_toks)
            self.stats.reported_completion += completion
            self.stats.reported_cached += cached
        self.stats.ok += 1
        return web.json_response(payload)


class SimServer(AppServer):
    """The simulated backend on a loopback port, in this process: `async with SimServer(cfg) as s:`."""

    backlog = 4096  # thousands of clients connect at once (benchmarks/client_cpu.py)

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.backend = SimBackend(config or SimConfig())
        self.host, self.port = host, port

    def app(self) -> web.Application:
        return self.backend.app()

    @property
    def config(self) -> SimConfig:
        return self.backend.config

    @property
    def stats(self) -> SimStats:
        return self.backend.stats
