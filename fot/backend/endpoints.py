"""The HTTP side of the LLM client: one connection pool per endpoint, built once, and which endpoint
serves each request.

Transport: aiohttp, chosen by measurement (benchmarks/client_cpu.py, docs/performance.md). The openai
client's request path (httpx) cost about 1.2 ms of CPU per call at 100 requests in flight and grew
with the number in flight (its pool scans every connection per request); aiohttp's pool takes a free
connection in O(1). The openai client stays the public contract on the other side: `fot serve` is
driven by it in the tests. One TLS context for the process, one session (pool) per endpoint.

Several endpoints (replicas of one model, `--base-url` given several times): each request goes to the
endpoint with the least expected wait among those that are up and under their limit: its outstanding
requests + 1, times its recent seconds per completion token (a "peak EWMA" pick, as in Finagle and
linkerd; ties in turn). Seconds per token, not per call, because an LLM call's latency follows its
completion length; a replica that is slow (or hangs until the timeout) then gets calls only when the
fast ones are that much busier. An estimate not refreshed decays (`LATENCY_DECAY_S`), so a replica
that was slow is tried again in a while. A call may name a preferred endpoint (its tree's, so the same
question's prompts meet the same prefix cache); it wins unless it has more than `AFFINITY_SLACK`
requests outstanding above the chosen one, or is more than `AFFINITY_SLOWER` times (and
`AFFINITY_FLOOR_S` seconds) slower per token: a tree pinned to a slow replica would make every one of
its calls slow, while a few milliseconds of noise must not break a tree's prefix cache.

The concurrency rule (docs/performance.md): an endpoint's limit starts at its cap (`--concurrency`;
none by default, so the work in flight -- problems x trees x samples -- is the concurrency and a
forest is never throttled by the client) and adapts to the backend: a 429 or 503 ("overloaded")
halves it, at most once a second, and each success gives 1/limit back (additive increase), never
above the cap. Latency is not used as a signal: an LLM call's latency follows its completion length.

Health: a refused connection, a refusal of the model or key (401, 403, 404, 405, 501: `refusal`) and
a whole 200 reply that is not a completion (an HTML page; JSON without choices, which the caller
reports with `bad_reply`) take an endpoint out at once; timeouts, dropped connections, 5xx and
bodies cut off take it out after `FAILS_TO_EJECT` in a row. A 200 is not a success until the caller has read a completion
out of it (`answered`). An endpoint that is out is probed with backoff by the owner's probe (fot.backend.llm:
a one-token chat completion, so a replica whose `/models` answers while its chat hangs or refuses is
not let back in) and put back as soon as the probe succeeds. When every endpoint is out, requests
still go to them, so the retry policy (fot.backend.llm), not the picker, decides when a call has failed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import ssl
import time
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import aiohttp

from ..errors import UsageError

AFFINITY_SLACK = 4
AFFINITY_SLOWER, AFFINITY_FLOOR_S = 4.0, 0.002  # a preferred endpoint this much slower per token is passed over
LATENCY_ALPHA = 0.3  # weight of the newest observation in an endpoint's seconds-per-token estimate
LATENCY_DECAY_S = 10.0  # an estimate not refreshed for this long counts e times less
FAILS_TO_EJECT = 3
REFUSALS = frozenset({401, 403, 404, 405, 501})  # this endpoint cannot serve this model with this key at all
CUT_INTERVAL_S = 1.0
PROBE_FIRST_S, PROBE_MAX_S = 0.25, 5.0

_SSL: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """One TLS context for the process: loading the system's certificates costs tens of milliseconds."""
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return _SSL


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for this URL (HTTPS_PROXY / HTTP_PROXY, unless NO_PROXY covers it),
    as the openai client would use; read once per endpoint, not on every request."""
    u = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(u.hostname or ""):
        return None
    return urllib.request.getproxies().get(u.scheme)


def public_url(url: str) -> str:
    """The URL as it may be shown and stored: no user:password@ part, no query."""
    u = urllib.parse.urlsplit(url)
    host = u.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if u.port:
        netloc += f":{u.port}"
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, "", ""))


class HTTPFailure(Exception):
    """One failed request, with what the retry policy needs: its kind (fot.backend.llm's error kinds), the
    HTTP status and headers if there was a response, whether the request was sent (a request that
    was never sent cannot have been charged), and the endpoint that failed (a retry goes elsewhere).

Kinds: rate_limit, server, timeout, connection, malformed (a body we could not read, perhaps cut off),
not_completion (a whole 200 reply that is not a completion: an HTML page, JSON without choices),
refused (401/403/404/405/501), client (any other 4xx, or a request that could not be built)."""

    def __init__(self, kind: str, message: str, *, status: int | None = None, headers: Any = None,
                 sent: bool = True, endpoint: "Endpoint | None" = None, charged: bool | None = None):
        super().__init__(message)
        self.kind, self.status, self.headers, self.sent, self.endpoint = kind, status, headers, sent, endpoint
        self.charged = charged  # None: unknown once sent; False: the reply shows no work was done


def status_kind(status: int) -> str:
    if status == 429:
        return "rate_limit"
    if status in REFUSALS:
        return "refused"  # not retried: every call to this endpoint would get the same answer
    return "server" if status >= 500 or status in (408, 409) else "client"


@dataclass(eq=False)
class Endpoint:
    url: str  # base URL as given (".../v1"); `public` is the one shown and recorded
    cap: float  # the user's cap on requests in flight (inf: none)
    limit: float = math.inf  # the adaptive limit, <= cap
    outstanding: int = 0
    served: int = 0  # requests answered (any HTTP status)
    failed: int = 0  # requests that failed (status >= 400 included)
    ejected: int = 0  # times taken out
    streak: int = 0  # failures in a row
    up: bool = True
    refused: str = ""  # the last refusal (HTTP 401/403/404/405/501) since this endpoint last answered
    latency: float | None = None  # seconds per completion token, recent (EWMA); None: not yet measured
    latency_at: float = 0.0
    last_cut: float = 0.0
    public: str = ""
    index: int = 0
    proxy: str | None = None
    session: aiohttp.ClientSession | None = field(default=None, repr=False)
    prober: asyncio.Task | None = field(default=None, repr=False)

    def room(self) -> bool:
        return self.outstanding < self.limit

    def per_token(self, now: float) -> float:
        """The seconds-per-token estimate, decayed while it is not refreshed (0 until measured: try it)."""
        if self.latency is None:
            return 0.0
        return self.latency * math.exp(-(now - self.latency_at) / LATENCY_DECAY_S)

    def observe(self, seconds: float, completion_tokens: int, now: float) -> None:
        x = seconds / (completion_tokens + 1)
        self.latency = x if self.latency is None else \
            LATENCY_ALPHA * x + (1 - LATENCY_ALPHA) * self.per_token(now)
        self.latency_at = now

    def stats(self) -> dict:
        return {"endpoint": self.public, "served": self.served, "failed": self.failed, "ejected": self.ejected,
                "up": self.up, "limit": None if math.isinf(self.limit) else math.floor(self.limit)}


class Endpoints:
    """The endpoints of one model, and the requests in flight to them."""

    def __init__(self, urls: Sequence[str], api_key: str | None = None, *, cap: int | None = None,
                 timeout: float = 120.0, probe: "Callable[[Endpoint], Awaitable[bool]] | None" = None):
        if not urls:
            raise UsageError("no endpoint: give at least one base URL")
        if cap is not None and cap < 1:
            raise UsageError("concurrency must be >= 1")
        c = math.inf if cap is None else float(cap)
        self.all = [Endpoint(url=_without_credentials(u).rstrip("/"), cap=c, limit=c, public=public_url(u.rstrip("/")),
                             index=i, proxy=env_proxy(u)) for i, u in enumerate(urls)]
        self._turn = 0
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # the key goes into these headers and nowhere else: never into rows, errors or logs. A URL's own
        # user:password (a proxy in front of the server) is sent as Basic auth instead of the key, as curl would
        bearer = {"Authorization": f"Bearer {api_key or 'not-needed'}", "Content-Type": "application/json"}
        self._headers = [_basic_auth(u) or bearer for u in urls]
        self._probe = probe or self._models_answer
        self._waiters: deque[asyncio.Future] = deque()
        self._closed = False

    # -- choosing an endpoint -------------------------------------------------------------------------

    def _pick(self, prefer: int | None, avoid: Endpoint | None) -> Endpoint | None:
        eps = self.all
        if len(eps) == 1:
            return eps[0] if eps[0].room() else None
        live = [e for e in eps if e.up and e is not avoid] or [e for e in eps if e.up] or eps
        open_ = [e for e in live if e.room()]
        if not open_:
            return None
        now = time.monotonic()
        self._turn += 1  # ties go round, so a light load is spread too
        best = min(open_, key=lambda e: ((e.outstanding + 1) * e.per_token(now), e.outstanding,
                                         (e.index - self._turn) % len(eps)))
        if prefer is not None:
            p = eps[prefer % len(eps)]
            if p in open_ and p.outstanding <= best.outstanding + AFFINITY_SLACK and \
                    (p.latency is None or best.latency is None or
                     p.latency <= AFFINITY_SLOWER * best.latency + AFFINITY_FLOOR_S):
                return p  # (measured estimates, not decayed ones: a fresh and a stale one are not compared)
        return best

    async def acquire(self, prefer: int | None = None, avoid: Endpoint | None = None) -> Endpoint:
        """An endpoint with room for one more request (waiting for one if all are at their limit)."""
        while (ep := self._pick(prefer, avoid)) is None:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake()  # we were woken but will not use the room: pass it on
                raise
        ep.outstanding += 1
        return ep

    def release(self, ep: Endpoint) -> None:
        ep.outstanding -= 1
        self._wake()

    def _wake(self, everyone: bool = False) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                if not everyone:
                    return

    def other_up(self, ep: Endpoint | None) -> bool:
        """Is there an endpoint, other than `ep`, to retry on straight away?"""
        return ep is not None and any(e.up and e is not ep for e in self.all)

    # -- one request --------------------------------------------------------------------------------------

    def _session(self, ep: Endpoint) -> aiohttp.ClientSession:
        if ep.session is None:
            ssl_arg = ssl_context() if ep.url.startswith("https:") else False
            ep.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=ssl_arg, ttl_dns_cache=300),
                timeout=self.timeout, headers=self._headers[ep.index], auto_decompress=True)
        return ep.session

    async def post(self, ep: Endpoint, path: str, body: dict, timeout: float | None = None, *,
                   health: bool = True) -> Any:
        """POST a JSON body to one endpoint and return its JSON reply; raises HTTPFailure. The caller
        reports a reply it could use with `answered`, one it could not with `bad_reply`; failures here
        are counted here (`health=False`: a probe's, which count toward nothing)."""
        data = json.dumps(body).encode()
        t0 = time.monotonic()
        try:
            kw: dict = {} if timeout is None else {"timeout": aiohttp.ClientTimeout(total=timeout)}
            if ep.proxy is not None:
                kw["proxy"] = ep.proxy
            async with self._session(ep).post(ep.url + path, data=data, **kw) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except Exception as exc:
            failure = _failure(exc, ep)
            if health:
                self._failed(ep, failure, time.monotonic() - t0)
            raise failure from exc
        if status >= 400:
            failure = HTTPFailure(status_kind(status), f"HTTP {status} from {ep.public}: {_error_message(raw)}",
                                  status=status, headers=headers, endpoint=ep)
            if health:
                self._failed(ep, failure, time.monotonic() - t0)
            raise failure
        try:
            return json.loads(raw)
        except ValueError:
            # JSON cut off is a completion we could not read; a page of something else is no completion at all
            cut = raw.lstrip()[:1] in (b"{", b"[")
            failure = HTTPFailure("malformed" if cut else "not_completion",
                                  f"the reply from {ep.public} is not JSON: {raw[:80]!r}", status=status, endpoint=ep)
            if health:
                self._failed(ep, failure, time.monotonic() - t0)
            raise failure from None

    async def stream(self, ep: Endpoint, path: str, body: dict):
        """POST a JSON body and yield the server-sent events' data, one parsed JSON object each, until
        `[DONE]`; leaving the loop closes the connection (the server stops decoding). Raises HTTPFailure."""
        kw: dict = {} if ep.proxy is None else {"proxy": ep.proxy}
        t0 = time.monotonic()
        try:
            async with self._session(ep).post(ep.url + path, data=json.dumps(body).encode(), **kw) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    failure = HTTPFailure(status_kind(resp.status), f"HTTP {resp.status} from {ep.public}: "
                                          f"{_error_message(raw)}", status=resp.status, headers=resp.headers, endpoint=ep)
                    self._failed(ep, failure, time.monotonic() - t0)
                    raise failure
                if resp.content_type == "application/json":  # a server that does not stream: one whole reply
                    yield json.loads(await resp.read())
                    return
                async for line in resp.content:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    yield json.loads(data)
        except HTTPFailure:
            raise
        except (GeneratorExit, asyncio.CancelledError):
            raise
        except Exception as exc:
            failure = _failure(exc, ep)
            self._failed(ep, failure, time.monotonic() - t0)
            raise failure from exc

    def bad_reply(self, ep: Endpoint, what: str, seconds: float, charged: bool | None = None) -> HTTPFailure:
        """The endpoint answered 200 with JSON that is not a completion: a failure that takes it out at once."""
        failure = HTTPFailure("not_completion", f"the reply from {ep.public} is not a completion: {what}",
                              endpoint=ep, charged=charged)
        self._failed(ep, failure, seconds)
        return failure

    def answered(self, ep: Endpoint, seconds: float, completion_tokens: int) -> None:
        """The endpoint answered with a completion the caller could read."""
        ep.observe(seconds, completion_tokens, time.monotonic())
        ep.served += 1
        ep.streak = 0
        ep.refused = ""
        if ep.limit < ep.cap:
            before = math.floor(ep.limit)
            ep.limit = min(ep.cap, ep.limit + 1 / ep.limit)  # additive increase: about +1 per limit's worth
            if math.floor(ep.limit) > before:
                self._wake()  # room for one more

    def _failed(self, ep: Endpoint, failure: HTTPFailure, seconds: float = 0.0) -> None:
        ep.failed += 1
        if failure.kind == "rate_limit" or failure.status == 503:
            now = time.monotonic()
            if now - ep.last_cut >= CUT_INTERVAL_S:  # one cut per burst of refusals
                ep.last_cut = now
                ep.limit = max(1.0, min(ep.limit, ep.outstanding) / 2)
            return  # overloaded, not down
        if failure.kind == "client":
            if failure.sent:
                ep.streak = 0  # the endpoint answered: this request was bad, not the endpoint
            return  # (not sent: it never left the process and says nothing of the endpoint)
        if failure.kind == "refused":
            ep.refused = str(failure)
            self._probe_in_background(ep)  # even when it is the only one: a fixed model or key is noticed
        if failure.sent and failure.kind in ("timeout", "connection"):
            ep.observe(seconds, 0, time.monotonic())  # a hang is slow: the picker should know
        ep.streak += 1
        at_once = failure.kind in ("refused", "not_completion") or (failure.kind == "connection" and not failure.sent)
        if ep.up and (at_once or ep.streak >= FAILS_TO_EJECT) and len(self.all) > 1:
            self._eject(ep)

    def refusal(self) -> str | None:
        """When every endpoint has refused the model or key since it last answered: the first refusal
        (no call can succeed; the run should stop rather than fail every problem). Otherwise None."""
        if all(ep.refused for ep in self.all):
            return self.all[0].refused
        return None

    # -- health ---------------------------------------------------------------------------------------------

    def _eject(self, ep: Endpoint) -> None:
        ep.up = False
        ep.ejected += 1
        self._probe_in_background(ep)
        self._wake(everyone=True)  # waiters for it pick another

    def _probe_in_background(self, ep: Endpoint) -> None:
        if not self._closed and (ep.prober is None or ep.prober.done()):
            ep.prober = asyncio.get_running_loop().create_task(self._probe_until_up(ep))

    async def _probe_until_up(self, ep: Endpoint) -> None:
        wait = PROBE_FIRST_S
        while not self._closed:
            await asyncio.sleep(wait)
            try:
                ok = await self._probe(ep)
            except Exception:  # a probe that breaks must not end the probing, nor surface as an unretrieved error
                ok = False
            if ok:
                ep.up, ep.streak, ep.refused = True, 0, ""
                ep.latency = None  # measure it afresh
                self._wake(everyone=True)
                return
            wait = min(PROBE_MAX_S, wait * 2)

    async def _models_answer(self, ep: Endpoint, timeout: float = 2.0) -> bool:
        """The fallback probe (no owner's probe given): GET /models answers below 500."""
        try:
            async with self._session(ep).get(ep.url + "/models", timeout=aiohttp.ClientTimeout(total=timeout),
                                             proxy=ep.proxy) as r:
                await r.read()
                return r.status < 500
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def models(self, timeout: float) -> list[tuple[Endpoint, list[str] | None, HTTPFailure | None]]:
        """Ask every endpoint for its models: (endpoint, model ids or None if it lists none, failure)."""
        async def one(ep: Endpoint):
            try:
                async with self._session(ep).get(ep.url + "/models", timeout=aiohttp.ClientTimeout(total=timeout),
                                                 proxy=ep.proxy) as r:
                    raw = await r.read()
                    if r.status >= 400:
                        return ep, None, HTTPFailure(status_kind(r.status), f"HTTP {r.status} from {ep.public}",
                                                     status=r.status, endpoint=ep)
                data = json.loads(raw).get("data")
                return ep, [m["id"] for m in data if isinstance(m, dict) and "id" in m] if isinstance(data, list) \
                    else None, None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                return ep, None, _failure(exc, ep)
            except (ValueError, AttributeError, TypeError):
                return ep, None, None  # it answers, but lists no models we can read

        return list(await asyncio.gather(*(one(ep) for ep in self.all)))

    def mark_down(self, ep: Endpoint) -> None:
        """Take an endpoint out (it did not answer at start) and probe it until it does."""
        if ep.up and len(self.all) > 1:
            self._eject(ep)

    def stats(self) -> list[dict]:
        return [ep.stats() for ep in self.all]

    async def aclose(self) -> None:
        self._closed = True
        for ep in self.all:
            if ep.prober is not None:
                ep.prober.cancel()
                await asyncio.gather(ep.prober, return_exceptions=True)
            if ep.session is not None:
                await ep.session.close()
                ep.session = None


def _without_credentials(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    if u.username is None and u.password is None:
        return url
    return urllib.parse.urlunsplit((u.scheme, u.netloc.rpartition("@")[2], u.path, u.query, u.fragment))


def _basic_auth(url: str) -> dict | None:
    """Headers with Basic auth from a URL's user:password, or None when it has none."""
    u = urllib.parse.urlsplit(url)
    if u.username is None and u.password is None:
        return None
    pair = f"{urllib.parse.unquote(u.username or '')}:{urllib.parse.unquote(u.password or '')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode(), "Content-Type": "application/json"}


def _failure(exc: BaseException, ep: Endpoint) -> HTTPFailure:
    """An aiohttp / socket exception as an HTTPFailure: was the request sent, and what kind of failure."""
    name = type(exc).__name__
    if isinstance(exc, (ValueError, TypeError, aiohttp.InvalidURL)):
        # raised while the request was being built (aiohttp checks its URL and headers before connecting):
        # it never left the process, so it cannot have been charged, and a retry would fail the same way
        return HTTPFailure("client", f"the request to {ep.public} could not be made ({name}: {exc})", sent=False,
                           endpoint=ep)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return HTTPFailure("timeout", f"connecting to {ep.public} timed out", sent=False, endpoint=ep)
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's total timeout, once the request was out
        return HTTPFailure("timeout", f"no reply from {ep.public} in time ({name})", endpoint=ep)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return HTTPFailure("connection", f"cannot connect to {ep.public} ({name}: {exc.os_error})", sent=False,
                           endpoint=ep)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return HTTPFailure("connection", f"the connection to {ep.public} failed ({name}: {exc})", endpoint=ep)
    return HTTPFailure("malformed", f"{name} reading the reply from {ep.public}: {exc}", endpoint=ep)


def _error_message(raw: bytes) -> str:
    """The server's own error message, if its body says one (OpenAI's shape), else the body's start."""
    try:
        err = json.loads(raw).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str):
            return msg[:200]
    except (ValueError, AttributeError):
        pass
    return raw[:120].decode("utf-8", "replace")
