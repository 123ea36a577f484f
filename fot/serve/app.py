"""The aiohttp application around one started `Engine`: routes, middlewares (errors as OpenAI's error object,
the server's own key), each request's forest under its slot and budget, streaming, and a stop that cancels
the forests still running."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
import uuid
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

from ..backend.appserver import AppServer
from ..backend.endpoints import public_url
from ..engine import Engine, Result, minimum_budget
from ..errors import FotError, UsageError
from ..backend.ledger import Totals
from ..search.mctsr import TreeResult
from ..methods import get_method
from ..tasks.problems import Problem
from ..tasks import detect_task, get_task
from .admission import Admission, RequestMeter
from .protocol import (ApiError, Plan, ServeConfig, is_preset, plan_of, preset_names, refuse_unhonoured, split_messages,
                       usage_of)

MAX_MODELS = 8  # upstream models the presets may run on at once (`fot-4x8/<model>`), each with its own client

log = logging.getLogger("fot.serve")


class FotServer(AppServer):
    """The aiohttp application around one started `Engine`: `async with FotServer(engine, cfg) as s:`."""

    def __init__(self, engine: Engine, config: ServeConfig | None = None):
        if engine.llm is None:
            raise UsageError("start the engine first (await engine.start()): the server needs its model name")
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
        self._engines: dict[str, Engine] = {}  # `fot-4x8/<model>`: one engine per other upstream model, made on use
        self._engines_lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None  # passthrough requests (a name that is not a preset)
        self.passed = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        return app

    # start, base_url: fot/backend/appserver.py (the handler also polls its transport, so a forest stops with its
    # client whether or not aiohttp cancels the handler)

    async def stop(self) -> None:
        """Cancel every running forest first, so its upstream calls stop now and its client is told why
        (503); only then close the connections. aiohttp alone would let the handlers run on for up to
        its shutdown timeout (60 s), spending upstream all the while, and then answer 200."""
        self._stopping = True
        for job in list(self._jobs):
            job.cancel()
        await super().stop()
        for e in self._engines.values():
            if e.llm is not None:
                await e.llm.aclose()  # its ledger and budget are the main engine's: closed with it
        if self._http is not None:
            await self._http.close()

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
        return preset_names(self.config, self.engine.model)

    async def models(self, request: web.Request) -> web.Response:
        owner = "fot (upstream: fot.sim, a SIMULATED backend)" if self.config.simulated else "fot"
        data = [{"id": p, "object": "model", "created": 0, "owned_by": owner}
                for p in self.presets()]
        # a plain model name is passed through: the upstream's own model is one the clients may name
        data.append({"id": self.engine.model, "object": "model", "created": 0, "owned_by": "upstream (passed through)"})
        return web.json_response({"object": "list", "data": data})

    async def health(self, request: web.Request) -> web.Response:
        b = self.engine.budget
        llm = self.engine.llm
        return web.json_response({
            "status": "ok", "upstream": public_url(self.engine.base_url), "model": self.engine.model,
            "upstreams": llm.endpoints.stats() if llm is not None else [],
            "simulated": self.config.simulated, "active": self.admission.active, "waiting": self.admission.waiting,
            "served": self.served, "passed_through": self.passed, "other_models": sorted(self._engines),
            "run_budget": {"tokens": b.tokens, "spent": b.spent_tokens}})

    def _shutting_down(self) -> ApiError:
        return ApiError(503, "the server is shutting down: the request was cancelled before an answer; retry "
                        "against a running server", "server_error", code="server_shutting_down")

    async def _body(self, request: web.Request) -> tuple[bytes, object]:
        """The JSON body. Whatever the decoder refuses is the client's mistake, not ours: besides syntax,
        nesting past the recursion limit (RecursionError) and integers past 4,300 digits (ValueError)."""
        try:
            raw = await asyncio.wait_for(request.read(), self.config.body_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {self.config.body_timeout_s:g} s",
                           code="request_timeout") from None
        try:
            return raw, json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise ApiError(400, "the body is not valid JSON: nested too deeply", code="invalid_json") from None
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            why = str(e) if not isinstance(e, UnicodeDecodeError) else "not UTF-8"
            raise ApiError(400, f"the body is not valid JSON: {why[:200]}", code="invalid_json") from None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        if self._stopping:
            raise self._shutting_down()
        raw, body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        if not is_preset(body.get("model"), self.engine.model or ""):
            return await self._passthrough(request, raw, body)
        n = body.get("n")
        if n is not None and n != 1:
            raise ApiError(400, "'n' must be 1: a forest returns one decided answer (ask again for another)",
                           param="n")
        refuse_unhonoured(body)
        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise ApiError(400, "'stream_options' must be an object, e.g. {\"include_usage\": true}",
                           param="stream_options")
        include_usage = bool((options or {}).get("include_usage")) if stream else False
        question, context = split_messages(body.get("messages"))
        plan = plan_of(body, self.config, self.engine.model or "")
        engine = await self._engine_for(plan.model)
        task = detect_task([question], [None]) if plan.task == "auto" else get_task(plan.task)
        refused = task.validate(question)
        if refused:
            raise ApiError(400, f"the {task.name} task cannot judge this question: {refused}", param="messages",
                           code="bad_question")
        cfg = get_method(plan.method).configure(engine.config.with_(trees=plan.trees, rollouts=plan.rollouts,
                                                                    **sampling_of(plan)))
        if plan.max_tokens is not None and plan.max_tokens < cfg.min_tokens:
            raise ApiError(400, f"'max_tokens' {plan.max_tokens} is below the {cfg.min_tokens} tokens fot's smallest "
                           "call needs (--min-tokens)", param="max_tokens")
        least = minimum_budget(question, task, cfg, plan.method)
        if plan.budget is not None and plan.budget < least:
            raise ApiError(400, f"budget {plan.budget} is below the {least} tokens this {plan.method} needs for its "
                           f"first answer(s); give fot.backend.budget >= {least}", param="fot.backend.budget",
                           code="budget_too_small", extra={"minimum_budget": least})
        run = self.engine.budget
        if run.tokens is not None and run.remaining_tokens() < least:
            raise ApiError(429, f"the server's run budget is spent ({run.spent_tokens} of {run.tokens} tokens)",
                           "insufficient_quota", code="run_budget_exhausted")
        rid = f"chatcmpl-fot-{uuid.uuid4().hex[:24]}"
        model = body["model"]
        async with self.admission.slot(self._retry_after()) as queued_s:
            if stream:
                return await self._stream(request, rid, model, question, plan, queued_s, include_usage, started,
                                          engine, context)
            result, roles = await self._solve(request, rid, question, plan, engine=engine, context=context)
            reply = self._completion(rid, model, result, roles, queued_s, plan.budget, started, plan.model)
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
                     progress: Callable[[list[TreeResult]], Awaitable[None]] | None = None,
                     engine: Engine | None = None, context: str = "") -> tuple[Result, dict[str, Totals]]:
        """Run one forest, cancelling it the moment its client is gone; `progress` is given the trees
        that finished since it was last called."""
        if self._stopping:  # queued while the server began to stop
            raise self._shutting_down()
        finished: list[TreeResult] = []
        kwargs: dict = {"task": plan.task, "method": plan.method, "trees": plan.trees, "rollouts": plan.rollouts,
                        "samples": plan.samples, "budget": plan.budget, "raise_errors": False,
                        "context": context or None, **sampling_of(plan)}
        if progress is not None and get_method(plan.method).tree_search:
            kwargs["on_tree"] = finished.append
        if plan.seed is not None:
            kwargs["seed"] = plan.seed
        self.meter.open(rid)
        job = asyncio.create_task((engine or self.engine).solve(Problem(id=rid, question=question), **kwargs))
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
             started: float, upstream: str | None = None) -> dict:
        d = {"id": rid, "method": result.method, "answer": result.answer, "decision": result.decision,
             "task": result.task, "upstream_model": upstream or self.engine.model,
             "simulated": self.config.simulated,
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
                    budget: int | None, started: float, upstream: str | None = None) -> dict:
        """The chat completion for a finished forest; an upstream failure with no answer carries an `error`
        and the status to send (the tokens already spent are still reported)."""
        reply: dict = {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
                       "system_fingerprint": "fot", "usage": usage_of(roles),
                       "fot": self._fot(rid, result, roles, queued_s, budget, started, upstream)}
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
                      queued_s: float, include_usage: bool, started: float, engine: Engine | None = None,
                      context: str = "") -> web.StreamResponse:
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
                    "trees_done": done_trees, "trees": plan.trees}}))

        await resp.write(chunk({"role": "assistant", "content": ""}))
        try:
            result, roles = await self._solve(request, rid, question, plan, tick=keepalive, progress=progress,
                                              engine=engine, context=context)
        except ApiError as e:  # the stream has begun: the refusal is an error event (the server is stopping)
            await resp.write(f"data: {self._scrub(json.dumps(e.body()))}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        reply = self._completion(rid, model, result, roles, queued_s, plan.budget, started, plan.model)
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

    # -- other upstream models, and plain names passed through -------------------------------------------

    async def _engine_for(self, model: str | None) -> Engine:
        """The engine a preset runs on: the server's own, or (`fot-4x8/<model>`) one for that upstream model,
        sharing the server's ledger and run budget, so usage, --trace and --run-budget cover it too."""
        if model is None or model == self.engine.model:
            return self.engine
        async with self._engines_lock:
            if model not in self._engines:
                if len(self._engines) >= MAX_MODELS:
                    raise ApiError(400, f"presets already run on {MAX_MODELS} other upstream models "
                                   f"({', '.join(self._engines)}); use one of them", param="model")
                main = self.engine
                other = Engine(None, model, main._api_key, base_urls=main.base_urls, config=main.config,
                               price=main.price, **main._client_kw)
                other.ledger, other.budget = main.ledger, main.budget
                try:
                    await other.start()
                except FotError as e:
                    raise ApiError(502, f"the upstream failed: {self._scrub(str(e))}", "upstream_error",
                                   code="upstream_failed") from None
                self._engines[model] = other
            return self._engines[model]

    async def _passthrough(self, request: web.Request, raw: bytes, body: dict) -> web.StreamResponse:
        """A model name that is not a preset goes to the upstream as it came, and its reply (status, body,
        usage, stream) comes back as it is: the server can stay between an agent and its model. Only the
        authorization is the server's own: the upstream gets the upstream key, never the client's."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=30, sock_read=self.engine._client_kw["timeout"]))
        endpoints = self.engine.llm.endpoints
        url, headers = endpoints.all[0].url + "/chat/completions", dict(endpoints._headers[0])
        stream = bool(body.get("stream"))
        try:
            async with self._http.post(url, data=raw, headers=headers) as up:
                kind = up.headers.get("Content-Type", "application/json")
                if "text/event-stream" in kind:  # the upstream streams: relay its events as they come
                    resp = web.StreamResponse(status=up.status, headers={"Content-Type": kind,
                                                                          "Cache-Control": "no-cache"})
                    await resp.prepare(request)
                    async for data in up.content.iter_any():
                        await resp.write(data)
                    await resp.write_eof()
                    self.passed += 1
                    return resp
                data = await up.read()
                status = up.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise ApiError(502, f"the upstream failed: {self._scrub(f'{type(e).__name__}: {e}')}", "upstream_error",
                           code="upstream_failed") from None
        self.passed += 1
        text = self._scrub(data.decode("utf-8", "replace"))
        reply = None
        try:
            reply = json.loads(text)
        except ValueError:
            pass
        if isinstance(reply, dict) and isinstance(reply.get("usage"), dict):
            log.info("passthrough %s tokens=%s", body.get("model"), reply["usage"].get("total_tokens"))
        if stream and status == 200 and isinstance(reply, dict) and reply.get("object") == "chat.completion":
            return await self._as_stream(request, reply, body)  # an upstream that does not stream (fot.sim)
        return web.Response(text=text, status=status, content_type="application/json")

    async def _as_stream(self, request: web.Request, reply: dict, body: dict) -> web.StreamResponse:
        """A whole completion sent as the events a stream would have had (role, text, finish, usage)."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        base = {k: reply.get(k) for k in ("id", "created", "model", "system_fingerprint")}

        def event(choices: list, **extra) -> bytes:
            return f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': choices, **extra})}\n\n" \
                .encode()

        for c in reply.get("choices") or []:
            i, message = c.get("index", 0), c.get("message") or {}
            await resp.write(event([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
            await resp.write(event([{"index": i, "delta": {"content": message.get("content") or ""},
                                     "finish_reason": None}]))
            await resp.write(event([{"index": i, "delta": {}, "finish_reason": c.get("finish_reason", "stop")}]))
        if (body.get("stream_options") or {}).get("include_usage") and reply.get("usage") is not None:
            await resp.write(event([], usage=reply["usage"]))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def sampling_of(plan: Plan) -> dict:
    """The request's sampling fields as search settings: `temperature` for every tree and sample (instead of
    the forest's own cycle), `max_tokens` as the cap of each answer, which is what the reply's text is."""
    out: dict = {}
    if plan.temperature is not None:
        out["temperatures"] = (plan.temperature,)
    if plan.max_tokens is not None:
        out["answer_max_tokens"] = plan.max_tokens
    return out
