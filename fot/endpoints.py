"""The HTTP side of the LLM client: one connection pool per endpoint, built once, and which endpoint
serves each request.

Transport: aiohttp, chosen by measurement (benchmarks/client_cpu.py, docs/performance.md). The openai
client's request path (httpx) cost about 1.2 ms of CPU per call at 100 requests in flight and grew
with the number in flight (its pool scans every connection per request); aiohttp's pool takes a free
connection in O(1). The openai client stays the public contract on the other side: `fot serve` is
driven by it in the tests. One TLS context for the process, one session (pool) per endpoint.

Several endpoints (replicas of one model, `--base-url` given several times): each request goes to the
endpoint with the fewest outstanding requests among those that are up and under their limit (ties
in turn). A call
may name a preferred endpoint (its tree's, so the same question's prompts meet the same prefix cache);
it wins unless it has more than `AFFINITY_SLACK` requests outstanding above the least loaded one.

The concurrency rule (docs/performance.md): an endpoint's limit starts at its cap (`--concurrency`;
none by default, so the work in flight -- problems x trees x samples -- is the concurrency and a
forest is never throttled by the client) and adapts to the backend: a 429 or 503 ("overloaded")
halves it, at most once a second, and each success gives 1/limit back (additive increase), never
above the cap. Latency is not used as a signal: an LLM call's latency follows its completion length.

Health: a refused connection takes an endpoint out at once; timeouts, dropped connections and 5xx
take it out after `FAILS_TO_EJECT` in a row. An endpoint that is out is probed (GET /models) with
backoff and put back as soon as it answers. When every endpoint is out, requests still go to them,
so the retry policy (fot.llm), not the picker, decides when a call has failed.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import time
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import aiohttp

AFFINITY_SLACK = 4
FAILS_TO_EJECT = 3
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
    """One failed request, with what the retry policy needs: its kind (fot.llm's error kinds), the
    HTTP status and headers if there was a response, whether the request was sent (a request that
    was never sent cannot have been charged), and the endpoint that failed (a retry goes elsewhere)."""

    def __init__(self, kind: str, message: str, *, status: int | None = None, headers: Any = None,
                 sent: bool = True, endpoint: "Endpoint | None" = None):
        super().__init__(message)
        self.kind, self.status, self.headers, self.sent, self.endpoint = kind, status, headers, sent, endpoint


def status_kind(status: int) -> str:
    if status == 429:
        return "rate_limit"
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
    last_cut: float = 0.0
    public: str = ""
    index: int = 0
    proxy: str | None = None
    session: aiohttp.ClientSession | None = field(default=None, repr=False)
    prober: asyncio.Task | None = field(default=None, repr=False)

    def room(self) -> bool:
        return self.outstanding < self.limit

    def stats(self) -> dict:
        return {"endpoint": self.public, "served": self.served, "failed": self.failed, "ejected": self.ejected,
                "up": self.up, "limit": None if math.isinf(self.limit) else math.floor(self.limit)}


class Endpoints:
    """The endpoints of one model, and the requests in flight to them."""

    def __init__(self, urls: Sequence[str], api_key: str | None = None, *, cap: int | None = None,
                 timeout: float = 120.0):
        if not urls:
            raise ValueError("no endpoint: give at least one base URL")
        if cap is not None and cap < 1:
            raise ValueError("concurrency must be >= 1")
        c = math.inf if cap is None else float(cap)
        self.all = [Endpoint(url=u.rstrip("/"), cap=c, limit=c, public=public_url(u.rstrip("/")), index=i,
                             proxy=env_proxy(u)) for i, u in enumerate(urls)]
        self._turn = 0
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # the key goes into this header and nowhere else: never into rows, errors or logs
        self._headers = {"Authorization": f"Bearer {api_key or 'not-needed'}", "Content-Type": "application/json"}
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
        self._turn += 1  # ties go round, so a light load is spread too
        least = min(open_, key=lambda e: (e.outstanding, (e.index - self._turn) % len(eps)))
        if prefer is not None:
            p = eps[prefer % len(eps)]
            if p in open_ and p.outstanding <= least.outstanding + AFFINITY_SLACK:
                return p
        return least

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
                timeout=self.timeout, headers=self._headers, auto_decompress=True)
        return ep.session

    async def post(self, ep: Endpoint, path: str, body: dict, timeout: float | None = None) -> Any:
        """POST a JSON body to one endpoint and return its JSON reply; raises HTTPFailure."""
        data = json.dumps(body).encode()
        try:
            kw: dict = {} if timeout is None else {"timeout": aiohttp.ClientTimeout(total=timeout)}
            if ep.proxy is not None:
                kw["proxy"] = ep.proxy
            async with self._session(ep).post(ep.url + path, data=data, **kw) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except Exception as exc:
            failure = _failure(exc, ep)
            self._failed(ep, failure)
            raise failure from exc
        if status >= 400:
            failure = HTTPFailure(status_kind(status), f"HTTP {status} from {ep.public}: {_error_message(raw)}",
                                  status=status, headers=headers, endpoint=ep)
            self._failed(ep, failure)
            raise failure
        try:
            reply = json.loads(raw)
        except ValueError:
            failure = HTTPFailure("malformed", f"the reply from {ep.public} is not JSON: {raw[:80]!r}", status=status,
                                  endpoint=ep)
            self._failed(ep, failure)
            raise failure from None
        self._answered(ep)
        return reply

    def _answered(self, ep: Endpoint) -> None:
        ep.served += 1
        ep.streak = 0
        if ep.limit < ep.cap:
            before = math.floor(ep.limit)
            ep.limit = min(ep.cap, ep.limit + 1 / ep.limit)  # additive increase: about +1 per limit's worth
            if math.floor(ep.limit) > before:
                self._wake()  # room for one more

    def _failed(self, ep: Endpoint, failure: HTTPFailure) -> None:
        ep.failed += 1
        if failure.kind == "rate_limit" or failure.status == 503:
            now = time.monotonic()
            if now - ep.last_cut >= CUT_INTERVAL_S:  # one cut per burst of refusals
                ep.last_cut = now
                ep.limit = max(1.0, min(ep.limit, ep.outstanding) / 2)
            return  # overloaded, not down
        if failure.kind in ("client", "malformed"):
            ep.streak = 0  # the endpoint answered; the request or the reply was bad
            return
        ep.streak += 1
        refused = failure.kind == "connection" and not failure.sent
        if ep.up and (refused or ep.streak >= FAILS_TO_EJECT) and len(self.all) > 1:
            self._eject(ep)

    # -- health ---------------------------------------------------------------------------------------------

    def _eject(self, ep: Endpoint) -> None:
        ep.up = False
        ep.ejected += 1
        if ep.prober is None or ep.prober.done():
            ep.prober = asyncio.get_running_loop().create_task(self._probe_until_up(ep))
        self._wake(everyone=True)  # waiters for it pick another

    async def _probe_until_up(self, ep: Endpoint) -> None:
        wait = PROBE_FIRST_S
        while not self._closed:
            await asyncio.sleep(wait)
            if await self._answers(ep):
                ep.up, ep.streak = True, 0
                self._wake(everyone=True)
                return
            wait = min(PROBE_MAX_S, wait * 2)

    async def _answers(self, ep: Endpoint, timeout: float = 2.0) -> bool:
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


def _failure(exc: BaseException, ep: Endpoint) -> HTTPFailure:
    """An aiohttp / socket exception as an HTTPFailure: was the request sent, and what kind of failure."""
    name = type(exc).__name__
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
