"""`python -m fot.serve`: a Forest of Thought behind an OpenAI-compatible endpoint.

Any agent that speaks the OpenAI chat API can use the forest by changing one URL: each
`POST /v1/chat/completions` is one problem, solved by one `Engine` shared by every request (so
one concurrency cap toward the upstream), under a per-request token budget inside an optional
server-wide one. The reply is an ordinary chat completion whose `usage` is what the whole forest
spent upstream (the sum of that request's ledger rows), plus a `fot` object with the decision.

The model name picks the method (`fot`, `fot-4x8`, `fot-4x8-<upstream model>`, `mctsr-8`,
`sc-16`, `bon-8`, `cot`); `extra_body={"fot": {...}}` overrides it. Requests beyond
`--max-active` wait, at most `--queue-limit` of them; more are refused with 429 and Retry-After.
A client that goes away cancels its forest: no upstream call outlives its request.
See docs/serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import math
import os
import re
import signal
import sys
import time
import uuid
from collections import defaultdict
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from aiohttp import web

from .budget import Price
from .config import SearchConfig
from .engine import METHODS, Engine, Result, minimum_budget
from .appserver import AppServer
from .endpoints import public_url
from .errors import FotError
from .ledger import CallRecord, Totals
from .mctsr import TreeResult
from .problems import Problem
from .runtime import tune_gc
from .tasks import TASKS, detect_task, get_task

log = logging.getLogger("fot.serve")

# beyond these a request is a mistake, not a search; a budget past 10**15 tokens is no cap a float can hold exactly
LIMITS = {"trees": 64, "rollouts": 64, "samples": 256, "budget": 10**15}  # = fot.solve.MAX_TOKENS
EXTRA_KEYS = ("method", "trees", "rollouts", "samples", "budget", "task", "seed")
PRESET = re.compile(r"^(?P<method>fot|mctsr|sc|bon|cot)(?:-(?P<a>\d+)(?:x(?P<b>\d+))?)?(?:-(?P<upstream>.+))?$")
UNSUPPORTED = ("tools", "functions", "tool_choice", "response_format")  # a forest answers in text only


class ApiError(Exception):
    """A refusal, carried to the reply as OpenAI's error object with its HTTP status."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers, self.extra = headers or {}, extra or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code},
                **self.extra}


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8100
    api_key: str | None = None  # clients must send it as a Bearer token; None: no check
    max_active: int = 8  # forests solved at once
    queue_limit: int = 32  # requests waiting for a slot; more are refused with 429
    budget: int | None = None  # tokens per request when the request names none
    trees: int = 4
    rollouts: int = 8
    samples: int = 8
    task: str = "auto"
    keepalive_s: float = 10.0  # a stream sends an SSE comment this often while the forest works
    poll_s: float = 0.2  # how often a running request checks that its client is still there
    idle_timeout_s: float = 15.0  # a connection with no request (or a request's headers unfinished) is closed after this
    body_timeout_s: float = 30.0  # a request body that has not arrived whole by then is refused (408)
    simulated: bool = False  # the upstream is fot.sim: say so in every reply


@dataclass(frozen=True)
class Plan:
    """What one request asks the engine for."""

    method: str
    trees: int
    rollouts: int
    samples: int
    budget: int | None
    task: str
    seed: int | None = None


@dataclass
class Admission:
    """At most `max_active` forests at once, at most `queue_limit` waiting: a caller beyond that is better
    told to come back (429) than left hanging while its own timeout runs out."""

    max_active: int
    queue_limit: int
    active: int = 0
    waiting: int = 0
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)

    @asynccontextmanager
    async def slot(self, retry_after: int) -> AsyncIterator[float]:
        """Yields the seconds spent waiting in the queue."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_active)
        if self.active + self.waiting >= self.max_active + self.queue_limit:
            raise ApiError(429, f"the server is busy: {self.active} requests running and {self.waiting} waiting "
                           f"(--queue-limit {self.queue_limit}); retry after {retry_after} s", "rate_limit_error",
                           code="queue_full", headers={"Retry-After": str(retry_after)})
        t0 = time.monotonic()
        self.waiting += 1
        try:
            await self._slots.acquire()  # a client that leaves while queued is cancelled here: it leaves the queue
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield time.monotonic() - t0
        finally:
            self.active -= 1
            self._slots.release()


class RequestMeter:
    """Each request's ledger rows, grouped by role, while it runs: its `usage` is their sum, so the bill a
    client sees and the trace agree by construction (the engine's ledger keeps only recent rows)."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, Totals]] = {}

    def open(self, request_id: str) -> None:
        self._open[request_id] = defaultdict(Totals)

    def observe(self, row: CallRecord) -> None:
        roles = self._open.get(row.problem or "")
        if roles is not None:
            roles[row.role].add(row)

    def close(self, request_id: str) -> dict[str, Totals]:
        return dict(self._open.pop(request_id, {}))


def usage_of(roles: dict[str, Totals]) -> dict:
    """OpenAI's usage object for a whole forest. `total_tokens` also counts calls whose outcome is unknown
    (cut off mid-reply: charged at their reservation, as the budget does), so it can exceed prompt +
    completion; `fot.tokens.unknown` says by how much."""
    t = Totals()
    for r in roles.values():
        for name in ("calls", "prompt_tokens", "completion_tokens", "cached_tokens", "unknown_tokens"):
            setattr(t, name, getattr(t, name) + getattr(r, name))
    return {"prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
            "total_tokens": t.total_tokens, "prompt_tokens_details": {"cached_tokens": t.cached_tokens}}


# -- reading a request ---------------------------------------------------------------------------

def _text(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text can be read
        parts = []
        for p in content:
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise ApiError(400, f"{where}: only text content parts are supported", param=where)
            parts.append(p["text"])
        return "\n".join(parts)
    if content is None:
        return ""
    raise ApiError(400, f"{where} must be a string or a list of text parts", param=where)


def question_of(messages: object) -> str:
    """The last user message is the problem; everything before it (system prompt included) is written
    ahead of it as context, since every call of the search starts from this one question text."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]")
        turns.append((m["role"], _text(m.get("content"), f"messages[{i}].content")))
    last = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=None)
    if last is None or not turns[last][1].strip():
        raise ApiError(400, "no user message with text: the last user message is the problem", param="messages")
    context = [f"{role}: {text}" for role, text in turns[:last] if text.strip()]
    question = turns[last][1].strip()
    if not context:
        return question
    return "Context (earlier messages):\n" + "\n".join(context) + f"\n\nQuestion: {question}"


def _shown(value: object) -> str:
    """A value for an error message: a number of thousands of digits is described, not echoed."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else f"a {len(str(value))}-digit number"
    return text if len(text) <= 80 else text[:77] + "..."


def _int(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ApiError(400, f"'{name}' must be an integer >= {least}, got {_shown(value)}", param=name)
    limit = LIMITS.get(name.rsplit(".", 1)[-1])
    if limit is not None and value > limit:
        raise ApiError(400, f"'{name}' must be at most {limit}, got {_shown(value)}", param=name)
    return value


def _size(digits: str | None, name: str) -> int | None:
    """A size from a model name; more digits than any limit has is refused before int() sees them
    (it refuses past 4,300 digits with a ValueError, and is slow long before that)."""
    if digits is None:
        return None
    if len(digits) > 6:
        raise ApiError(400, f"'{name}' in the model name must be at most {LIMITS[name]}, got a {len(digits)}-digit "
                       "number", param=name)
    return int(digits)


def plan_of(body: dict, config: ServeConfig, upstream_model: str) -> Plan:
    """The method from the model name, then `extra_body.fot` on top."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' must name a preset, e.g. 'fot' or 'fot-4x8' (GET /v1/models)", param="model")
    m = PRESET.match(model)
    not_found = ApiError(404, f"the model '{model}' does not exist on this server: use fot, fot-TxR, mctsr-R, sc-N, "
                         f"bon-N or cot, optionally followed by -{upstream_model} (GET /v1/models)",
                         "invalid_request_error", param="model", code="model_not_found")
    if m is None or (m["upstream"] is not None and m["upstream"] != upstream_model):
        raise not_found
    method = {"fot": "forest"}.get(m["method"], m["method"])
    if (m["b"] is not None and method != "forest") or (m["a"] is not None and method == "cot"):
        raise not_found
    a = _size(m["a"], {"forest": "trees", "mctsr": "rollouts"}.get(method, "samples"))
    b = _size(m["b"], "rollouts")
    trees, rollouts, samples = config.trees, config.rollouts, config.samples
    if method == "forest":
        trees, rollouts = a if a is not None else trees, b if b is not None else rollouts
    elif method == "mctsr":
        trees, rollouts = 1, a if a is not None else rollouts
    elif method in ("sc", "bon"):
        samples = a if a is not None else samples
    for name, value in (("trees", trees), ("rollouts", rollouts), ("samples", samples)):
        _int(value, name, 0 if name == "rollouts" else 1)
    fot = body.get("fot") or {}
    if not isinstance(fot, dict):
        raise ApiError(400, "'fot' (extra_body) must be an object", param="fot")
    unknown = sorted(set(fot) - set(EXTRA_KEYS))
    if unknown:
        raise ApiError(400, f"unknown 'fot' setting(s) {', '.join(unknown)}; known: {', '.join(EXTRA_KEYS)}",
                       param=f"fot.{unknown[0]}")
    method = fot.get("method", method)
    if method not in METHODS:
        raise ApiError(400, f"'fot.method' must be one of {', '.join(METHODS)}", param="fot.method")
    task = fot.get("task", config.task)
    if not isinstance(task, str) or (task != "auto" and task not in TASKS):
        raise ApiError(400, f"'fot.task' must be auto or one of {', '.join(TASKS)}", param="fot.task")
    budget = _int(fot["budget"], "fot.budget", 1) if fot.get("budget") is not None else config.budget
    seed = fot.get("seed")
    # bounded so that the seeds derived from it (seed * 10,007 + call) still fit an upstream's int64 `seed`
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -2**31 <= seed < 2**31):
        raise ApiError(400, f"'fot.seed' must be an integer from -2**31 to 2**31 - 1, got {_shown(seed)}",
                       param="fot.seed")
    return Plan(method=method, trees=_int(fot.get("trees", trees), "fot.trees", 1),
                rollouts=_int(fot.get("rollouts", rollouts), "fot.rollouts", 0),
                samples=_int(fot.get("samples", samples), "fot.samples", 1),
                budget=budget, task=task, seed=seed)


# -- the server ----------------------------------------------------------------------------------

class FotServer(AppServer):
    """The aiohttp application around one started `Engine`: `async with FotServer(engine, cfg) as s:`."""

    def __init__(self, engine: Engine, config: ServeConfig | None = None):
        if engine.llm is None:
            raise ValueError("start the engine first (await engine.start()): the server needs its model name")
        self.engine = engine
        self.config = config or ServeConfig()
        self.admission = Admission(self.config.max_active, self.config.queue_limit)
        self.meter = RequestMeter()
        engine.ledger.observers.append(self.meter.observe)
        self.host, self.port = self.config.host, self.config.port
        self.served = 0
        self._wall_ewma = 1.0  # recent seconds per request, for Retry-After
        self._secrets = [s for s in (engine._api_key,) if s]
        self.keepalive_timeout = self.config.idle_timeout_s
        self._jobs: set[asyncio.Task] = set()  # the forests running now, cancelled at once when the server stops
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        return app

    # start, base_url: fot/appserver.py (the handler also polls its transport, so a forest stops with its
    # client whether or not aiohttp cancels the handler)

    async def stop(self) -> None:
        """Cancel every running forest first, so its upstream calls stop now and its client is told why
        (503); only then close the connections. aiohttp alone would let the handlers run on for up to
        its shutdown timeout (60 s), spending upstream all the while, and then answer 200."""
        self._stopping = True
        for job in list(self._jobs):
            job.cancel()
        await super().stop()

    # -- middlewares -------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _error_response(self, e: ApiError) -> web.Response:
        body = json.loads(self._scrub(json.dumps(e.body())))
        return web.json_response(body, status=e.status, headers=e.headers)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        """Every refusal is OpenAI's error object with its status; a fault of ours is a 500 without a traceback."""
        try:
            return await handler(request)
        except ApiError as e:
            return self._error_response(e)
        except ConnectionResetError:  # the client is gone: nobody to answer
            raise
        except web.HTTPException as e:  # aiohttp's own: unknown route, wrong method, body too large
            if e.status < 400:
                raise
            kind = "not_found_error" if e.status == 404 else "invalid_request_error"
            return self._error_response(ApiError(e.status, e.reason, kind))
        except Exception as e:  # noqa: BLE001 -- nothing may reach the client as a traceback
            log.error("internal error on %s: %s", request.path, self._scrub(f"{type(e).__name__}: {e}"))
            return self._error_response(ApiError(500, "internal server error", "server_error"))

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        key = self.config.api_key
        if key and request.path.startswith("/v1/"):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
                raise ApiError(401, "missing or wrong API key (Authorization: Bearer ...)", "authentication_error",
                               code="invalid_api_key")
        return await handler(request)

    # -- endpoints ---------------------------------------------------------------------------

    def presets(self) -> list[str]:
        c = self.config
        return list(dict.fromkeys(["fot", f"fot-{c.trees}x{c.rollouts}", "fot-2x4", "fot-4x8", f"fot-{c.trees}x{c.rollouts}-{self.engine.model}",
                f"mctsr-{c.rollouts}", f"sc-{c.samples}", "sc-16", f"bon-{c.samples}", "cot"]))

    async def models(self, request: web.Request) -> web.Response:
        owner = "fot (upstream: fot.sim, a SIMULATED backend)" if self.config.simulated else "fot"
        data = [{"id": p, "object": "model", "created": 0, "owned_by": owner}
                for p in self.presets()]
        return web.json_response({"object": "list", "data": data})

    async def health(self, request: web.Request) -> web.Response:
        b = self.engine.budget
        llm = self.engine.llm
        return web.json_response({
            "status": "ok", "upstream": public_url(self.engine.base_url), "model": self.engine.model,
            "upstreams": llm.endpoints.stats() if llm is not None else [],
            "simulated": self.config.simulated, "active": self.admission.active, "waiting": self.admission.waiting,
            "served": self.served, "run_budget": {"tokens": b.tokens, "spent": b.spent_tokens}})

    def _shutting_down(self) -> ApiError:
        return ApiError(503, "the server is shutting down: the request was cancelled before an answer; retry "
                        "against a running server", "server_error", code="server_shutting_down")

    async def _body(self, request: web.Request) -> object:
        """The JSON body. Whatever the decoder refuses is the client's mistake, not ours: besides syntax,
        nesting past the recursion limit (RecursionError) and integers past 4,300 digits (ValueError)."""
        try:
            raw = await asyncio.wait_for(request.read(), self.config.body_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {self.config.body_timeout_s:g} s",
                           code="request_timeout") from None
        try:
            return json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise ApiError(400, "the body is not valid JSON: nested too deeply", code="invalid_json") from None
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            why = str(e) if not isinstance(e, UnicodeDecodeError) else "not UTF-8"
            raise ApiError(400, f"the body is not valid JSON: {why[:200]}", code="invalid_json") from None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        if self._stopping:
            raise self._shutting_down()
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        n = body.get("n")
        if n is not None and n != 1:
            raise ApiError(400, "'n' must be 1: a forest returns one decided answer (ask again for another)",
                           param="n")
        for key in UNSUPPORTED:
            if body.get(key):
                raise ApiError(400, f"'{key}' is not supported: the forest answers in plain text", param=key)
        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise ApiError(400, "'stream_options' must be an object, e.g. {\"include_usage\": true}",
                           param="stream_options")
        include_usage = bool((options or {}).get("include_usage")) if stream else False
        question = question_of(body.get("messages"))
        plan = plan_of(body, self.config, self.engine.model or "")
        task = detect_task([question], [None]) if plan.task == "auto" else get_task(plan.task)
        refused = getattr(task, "validate", lambda q: None)(question)
        if refused:
            raise ApiError(400, f"the {task.name} task cannot judge this question: {refused}", param="messages",
                           code="bad_question")
        cfg = self.engine.config.with_(trees=1 if plan.method == "mctsr" else plan.trees, rollouts=plan.rollouts)
        least = minimum_budget(question, task, cfg, plan.method)
        if plan.budget is not None and plan.budget < least:
            raise ApiError(400, f"budget {plan.budget} is below the {least} tokens this {plan.method} needs for its "
                           f"first answer(s); give fot.budget >= {least}", param="fot.budget",
                           code="budget_too_small", extra={"minimum_budget": least})
        run = self.engine.budget
        if run.tokens is not None and run.remaining_tokens() < least:
            raise ApiError(429, f"the server's run budget is spent ({run.spent_tokens} of {run.tokens} tokens)",
                           "insufficient_quota", code="run_budget_exhausted")
        rid = f"chatcmpl-fot-{uuid.uuid4().hex[:24]}"
        model = body["model"]
        async with self.admission.slot(self._retry_after()) as queued_s:
            if stream:
                return await self._stream(request, rid, model, question, plan, queued_s, include_usage, started)
            result, roles = await self._solve(request, rid, question, plan)
            reply = self._completion(rid, model, result, roles, queued_s, plan.budget, started)
            self._log(rid, model, result, reply["usage"])
            if reply.get("error"):
                raise ApiError(reply.pop("status"), reply["error"]["message"], reply["error"]["type"],
                               code=reply["error"]["code"], extra={"usage": reply["usage"], "fot": reply["fot"]})
            return web.json_response(reply)

    # -- solving -----------------------------------------------------------------------------

    def _retry_after(self) -> int:
        waves = (self.admission.waiting + self.admission.active) / self.admission.max_active
        return max(1, math.ceil(self._wall_ewma * max(1.0, waves)))

    async def _solve(self, request: web.Request, rid: str, question: str, plan: Plan,
                     tick: Callable[[], Awaitable[None]] | None = None,
                     progress: Callable[[list[TreeResult]], Awaitable[None]] | None = None
                     ) -> tuple[Result, dict[str, Totals]]:
        """Run one forest, cancelling it the moment its client is gone; `progress` is given the trees
        that finished since it was last called."""
        if self._stopping:  # queued while the server began to stop
            raise self._shutting_down()
        finished: list[TreeResult] = []
        kwargs: dict = {"task": plan.task, "method": plan.method, "trees": plan.trees, "rollouts": plan.rollouts,
                        "samples": plan.samples, "budget": plan.budget, "raise_errors": False}
        if progress is not None and plan.method in ("forest", "mctsr"):
            kwargs["on_tree"] = finished.append
        if plan.seed is not None:
            kwargs["seed"] = plan.seed
        self.meter.open(rid)
        job = asyncio.create_task(self.engine.solve(Problem(id=rid, question=question), **kwargs))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        last_tick = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({job}, timeout=self.config.poll_s)
                if self._stopping:
                    break
                if finished and progress is not None:
                    news, finished[:] = list(finished), []
                    await progress(news)
                if done:
                    break
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError("the client went away")
                if tick is not None and time.monotonic() - last_tick >= self.config.keepalive_s:
                    await tick()
                    last_tick = time.monotonic()
            if not self._stopping:
                result = job.result()
        except BaseException:  # the client left: no upstream call outlives the request
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            roles = self.meter.close(rid)
            log.info("%s cancelled (client gone); spent %s tokens", rid, usage_of(roles)["total_tokens"])
            raise
        if self._stopping:  # stop() has cancelled the forest
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            roles = self.meter.close(rid)
            log.info("%s cancelled (server stopping); spent %s tokens", rid, usage_of(roles)["total_tokens"])
            e = self._shutting_down()
            e.extra = {"usage": usage_of(roles)}
            raise e
        roles = self.meter.close(rid)
        self.served += 1
        self._wall_ewma = 0.8 * self._wall_ewma + 0.2 * result.wall_s
        return result, roles

    def _fot(self, rid: str, result: Result, roles: dict[str, Totals], queued_s: float, budget: int | None,
             started: float) -> dict:
        d = {"id": rid, "method": result.method, "answer": result.answer, "decision": result.decision,
             "task": result.task, "upstream_model": self.engine.model, "simulated": self.config.simulated,
             "budget": budget, "tokens": result.tokens,
             "tokens_by_role": {role: {"calls": t.calls, "prompt": t.prompt_tokens, "completion": t.completion_tokens,
                                       "cached": t.cached_tokens, "unknown": t.unknown_tokens, "total": t.total_tokens}
                                for role, t in sorted(roles.items())},
             "calls": result.calls, "wall_s": round(result.wall_s, 4), "queue_s": round(queued_s, 4),
             # the server's own time on this request, neither queueing nor solving (reading, checks, this reply)
             "proxy_s": round(max(0.0, time.monotonic() - started - queued_s - result.wall_s), 4),
             "error_kind": result.error_kind, "error": self._scrub(result.error)}
        if result.trees:
            d["trees"] = [{"answer": t["answer"], "q": t["q"], "rollouts": t["rollouts"], "stopped": t["stopped"]}
                          for t in result.trees]
        if result.samples:
            d["samples"] = [{"answer": s["answer"], "q": s["q"]} for s in result.samples]
        return d

    def _completion(self, rid: str, model: str, result: Result, roles: dict[str, Totals], queued_s: float,
                    budget: int | None, started: float) -> dict:
        """The chat completion for a finished forest; an upstream failure with no answer carries an `error`
        and the status to send (the tokens already spent are still reported)."""
        reply: dict = {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
                       "system_fingerprint": "fot", "usage": usage_of(roles),
                       "fot": self._fot(rid, result, roles, queued_s, budget, started)}
        kind = result.error_kind if result.answer is None else ""
        if kind in ("backend", "input", "environment", "internal", "cancelled"):
            status, etype, code = {"backend": (502, "upstream_error", "upstream_failed"),
                                   "input": (400, "invalid_request_error", "bad_question")}.get(
                kind, (500, "server_error", kind))
            message = "the upstream failed: " + self._scrub(result.error) if kind == "backend" else \
                self._scrub(result.error) if kind == "input" else "internal server error"
            reply.update(status=status, error={"message": message, "type": etype, "param": None, "code": code})
            return reply
        text = result.text or (result.answer or "")
        finish = "length" if kind == "budget" else "stop"  # the budget ran out before any answer
        reply["choices"] = [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": finish}]
        return reply

    def _log(self, rid: str, model: str, result: Result, usage: dict) -> None:
        log.info("%s %s method=%s answer=%r tokens=%d wall=%.2fs error_kind=%s", rid, model, result.method,
                 result.answer, usage["total_tokens"], result.wall_s, result.error_kind or "-")

    async def _stream(self, request: web.Request, rid: str, model: str, question: str, plan: Plan,
                      queued_s: float, include_usage: bool, started: float) -> web.StreamResponse:
        """Server-sent events as the openai client reads them: the role, a chunk without text per tree as it
        finishes (its answer and Q under `fot.progress`), then the decided text (a forest's answer is only
        known at its end), the finish reason, the usage when asked, and [DONE]."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        created = int(time.time())

        def chunk(delta: dict | None, finish: str | None = None, **extra) -> bytes:
            c = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fot",
                 "choices": [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                                       "finish_reason": finish}], **extra}
            return f"data: {json.dumps(c)}\n\n".encode()

        async def keepalive() -> None:
            await resp.write(b": the forest is working\n\n")

        done_trees = 0

        async def progress(trees: list[TreeResult]) -> None:
            """A chunk with no text per finished tree; clients that read `fot` see the forest grow."""
            nonlocal done_trees
            for t in trees:
                done_trees += 1
                await resp.write(chunk({}, fot={"progress": {
                    "tree": t.index, "answer": t.answer, "q": t.q, "tokens": t.tokens, "stopped": t.stopped,
                    "trees_done": done_trees, "trees": 1 if plan.method == "mctsr" else plan.trees}}))

        await resp.write(chunk({"role": "assistant", "content": ""}))
        try:
            result, roles = await self._solve(request, rid, question, plan, tick=keepalive, progress=progress)
        except ApiError as e:  # the stream has begun: the refusal is an error event (the server is stopping)
            await resp.write(f"data: {self._scrub(json.dumps(e.body()))}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        reply = self._completion(rid, model, result, roles, queued_s, plan.budget, started)
        self._log(rid, model, result, reply["usage"])
        if reply.get("error"):  # the openai client raises APIError on an event carrying `error`
            err = {"error": reply["error"], "usage": reply["usage"], "fot": reply["fot"]}
            await resp.write(f"data: {self._scrub(json.dumps(err))}\n\n".encode())
        else:
            choice = reply["choices"][0]
            await resp.write(chunk({"content": choice["message"]["content"]}))
            await resp.write(chunk({}, choice["finish_reason"], fot=reply["fot"]))
            if include_usage:
                await resp.write(chunk(None, usage=reply["usage"], fot=reply["fot"]))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


# -- the command ---------------------------------------------------------------------------------

class _OneLineErrors(argparse.ArgumentParser):
    """A usage error is one line: argparse's default puts the whole usage (22 lines here) before it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def parser() -> argparse.ArgumentParser:
    from .policies import DECISION_RULES
    from .solve import MAX_TOKENS, _base_url, _non_negative_float, _positive_float, _positive_int

    ap = _OneLineErrors(prog="python -m fot.serve", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    s = ap.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_positive_int("--port", 0, 65535), default=8100)
    s.add_argument("--server-api-key", default=os.environ.get("FOT_SERVE_API_KEY"),
                   help="clients must send this as 'Authorization: Bearer KEY' (default $FOT_SERVE_API_KEY; none: open)")
    s.add_argument("--max-active", type=_positive_int("--max-active", 1), default=8, help="forests solved at once")
    s.add_argument("--queue-limit", type=_positive_int("--queue-limit", 0), default=32,
                   help="requests waiting for a slot; beyond it: 429 with Retry-After")
    s.add_argument("--idle-timeout", type=_positive_float("--idle-timeout"), default=15.0, metavar="SECONDS",
                   help="close a connection idle (or still sending its headers) this long; a body not whole by "
                   "twice this is refused with 408")
    s.add_argument("--trace", default=None, help="write every upstream call to this JSONL file")
    s.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    b = ap.add_argument_group("upstream")
    b.add_argument("--upstream", "--base-url", dest="upstream", type=_base_url, action="append", default=None,
                   metavar="URL", help="OpenAI-compatible upstream (default $OPENAI_BASE_URL; none: the embedded "
                   "local model); several: replicas of one model, shared by least load (docs/scale.md)")
    b.add_argument("--model", default=os.environ.get("FOT_MODEL"), help="upstream model (default $FOT_MODEL, "
                   "else the upstream's first model)")
    b.add_argument("--api-key", default=None, help="the upstream's API key (default $OPENAI_API_KEY); never sent "
                   "to clients, logged or traced")
    b.add_argument("--sim", action="store_true", help="use fot.sim, the SIMULATED backend (a test double)")
    b.add_argument("--gguf", default=os.environ.get("FOT_GGUF"), help="with no --upstream: serve this GGUF locally")
    b.add_argument("--n-ctx", type=_positive_int("--n-ctx", 256), default=4096)
    b.add_argument("--n-threads", type=_positive_int("--n-threads", 1), default=None,
                   help="local server threads (default: half the cores, docs/local.md)")
    b.add_argument("--slots", type=_positive_int("--slots", 1), default=None,
                   help="local server parallel slots: requests decoded together (default 8, docs/local.md)")
    b.add_argument("--concurrency", type=_positive_int("--concurrency", 1), default=None,
                   help="cap on upstream requests in flight per upstream (default: none, the forests in flight decide "
                   "and a 429 or 503 lowers it; the slot count for the embedded model)")
    b.add_argument("--rps", type=_non_negative_float("--rps"), default=None)
    b.add_argument("--timeout", type=_positive_float("--timeout"), default=120.0, help="seconds per upstream call")
    b.add_argument("--max-attempts", type=_positive_int("--max-attempts", 1), default=6,
                   help="attempts per upstream call, retries included")
    g = ap.add_argument_group("search (defaults for the presets; a request's model name and extra_body override)")
    g.add_argument("--task", default="auto", choices=["auto", *TASKS])
    g.add_argument("--trees", type=_positive_int("--trees", 1), default=None, help="trees of 'fot' (default 4)")
    g.add_argument("--rollouts", type=_positive_int("--rollouts", 0), default=None,
                   help="rollouts per tree of 'fot' (default 8)")
    g.add_argument("--samples", type=_positive_int("--samples", 1), default=8, help="samples of 'sc' and 'bon'")
    g.add_argument("--reward-samples", type=_positive_int("--reward-samples", 1), default=None)
    g.add_argument("--eval-max-tokens", type=_positive_int("--eval-max-tokens", 16), default=None)
    g.add_argument("--budget", type=_positive_int("--budget", 1, MAX_TOKENS), default=None,
                   help="tokens per request when it names none (hard cap)")
    g.add_argument("--run-budget", type=_positive_int("--run-budget", 1, MAX_TOKENS), default=None,
                   help="tokens for the server's whole life; once spent, requests get 429 insufficient_quota")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--decision", choices=list(DECISION_RULES), default="majority_first")
    g.add_argument("--tie-break", choices=["expert", "q"], default="expert")
    g.add_argument("--early-stop", action="store_true")
    p = ap.add_argument_group("prices (USD per million tokens)")
    p.add_argument("--price-in", type=_non_negative_float("--price-in"), default=None)
    p.add_argument("--price-out", type=_non_negative_float("--price-out"), default=None)
    p.add_argument("--price-cached", type=_non_negative_float("--price-cached"), default=None)
    return ap


async def serve(args: argparse.Namespace, ready: Callable[[FotServer], None] | None = None) -> int:
    """Start the upstream (fot.sim, a given URL, or the embedded model), the engine and the server; run
    until SIGINT or SIGTERM, then stop cleanly: the forests still running are cancelled with their requests."""
    price = None
    if args.price_in is not None or args.price_out is not None:
        price = Price(input=args.price_in or 0.0, output=args.price_out or 0.0, cached_input=args.price_cached)
    preset = {"trees": 4, "rollouts": 8, "reward_samples": 3, "eval_max_tokens": 192}
    concurrency, context_window, model, max_n = args.concurrency, None, args.model, None
    async with AsyncExitStack() as stack:
        if args.sim:
            from .sim import SimConfig, SimServer

            sim = await stack.enter_async_context(SimServer(SimConfig(seed=args.seed)))
            base_url, model, backend = sim.base_url, "fot-sim", "fot.sim (SIMULATED backend, a test double)"
        elif args.upstream:
            base_url, backend = args.upstream, ", ".join(public_url(u) for u in args.upstream)
        else:
            from .local import LocalServer, LocalServerConfig

            log.info("no --upstream: starting the embedded local model server (llama.cpp)")
            try:
                local = await stack.enter_async_context(LocalServer(LocalServerConfig(
                    gguf=args.gguf, n_ctx=args.n_ctx, n_threads=args.n_threads, slots=args.slots)))
            except FotError as e:
                log.error("%s", e)
                return 1
            base_url, model, context_window = local.base_url, local.model, args.n_ctx
            concurrency = args.concurrency or local.slots  # as many in flight as it decodes together
            max_n = local.slots  # it refuses a larger n
            preset = {"trees": 2, "rollouts": 1, "reward_samples": 1, "eval_max_tokens": 96}  # docs/local.md
            backend = f"local llama.cpp server ({local.gguf.name})"
        chosen = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in preset.items()}
        cfg = SearchConfig(trees=chosen["trees"], rollouts=chosen["rollouts"], reward_samples=chosen["reward_samples"],
                           eval_max_tokens=chosen["eval_max_tokens"], seed=args.seed, early_stop=args.early_stop,
                           tie_break=args.tie_break, decision=args.decision)
        api_key = args.api_key if args.api_key is not None else os.environ.get("OPENAI_API_KEY")
        try:
            engine = Engine(None, model, api_key, base_urls=[base_url] if isinstance(base_url, str) else base_url,
                            concurrency=concurrency, rps=args.rps, timeout=args.timeout,
                            max_attempts=args.max_attempts, price=price, run_budget=args.run_budget,
                            trace=args.trace, config=cfg, context_window=context_window, max_n=max_n)
            stack.push_async_callback(engine.aclose)
            await engine.start()
        except FotError as e:
            log.error("%s", e)
            return 1
        config = ServeConfig(host=args.host, port=args.port, api_key=args.server_api_key, max_active=args.max_active,
                             queue_limit=args.queue_limit, budget=args.budget, trees=cfg.trees, rollouts=cfg.rollouts,
                             samples=args.samples, task=args.task, simulated=bool(args.sim),
                             idle_timeout_s=args.idle_timeout, body_timeout_s=2 * args.idle_timeout)
        try:
            server = await stack.enter_async_context(FotServer(engine, config))
        except OSError as e:  # the port is taken, or the host is not one of ours: the environment, one line
            log.error("cannot listen on %s:%s: %s", args.host, args.port, e.strerror or e)
            return 1
        log.info("fot.serve: %s on %s [%s]; presets: %s", server.base_url, backend, engine.model,
                 ", ".join(server.presets()))
        if ready is not None:
            ready(server)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: %d requests served, %d tokens spent upstream", server.served, engine.budget.spent_tokens)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    from .solve import base_urls_or_env

    args.upstream = base_urls_or_env(ap, args.upstream)
    tune_gc()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        log.info("stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
