"""The LLM client: chat completions against one model on one or more endpoints (fot.backend.endpoints: the
HTTP pools, the choice of endpoint, the concurrency rule, health), with the engine's single retry policy.

Per attempt, in this order: reserve from the budget (waiting if the budget is tight), pass the
request-rate throttle, take a slot on an endpoint, make the HTTP request, settle the budget to the
real usage. Reserving before taking a slot means a slot is only ever held by a funded call, so
budget waits cannot deadlock the pool.

Retries (tenacity, one policy): 429, 5xx, timeouts, connection errors and malformed bodies are
retried with full-jitter exponential backoff, or after exactly `Retry-After` when the server sends
it; with several endpoints a retry goes to another endpoint straight away when one is up. Other 4xx
are not retried. A refusal of the model, key or API (401, 403, 404, 405, 501) is not retried either,
and once every endpoint refuses, calls fail at once without being sent (`refusal`): no call can
succeed, so the engine stops the run instead of failing each problem in turn. A call that still fails raises `LLMError` with its kind; either way it is a row in
the ledger, which names the endpoint(s) that served it. The first attempt runs outside tenacity's
loop (it costs CPU on every call; see docs/performance.md).

What a failed attempt cost: an error status (429, 5xx) or a request that never left the process (a
connection never made, a request the HTTP client could not build) charges nothing and the
reservation is released. Once a request has been sent, any other end (a timeout, a
connection dropped mid-body, an unreadable body, our own cancellation) leaves its cost unknown: the
backend may have done the work, so the budget keeps the whole reservation (an upper bound) and the
row records it as `charged_unknown`; a row's total includes it, so a problem's tokens are the sum
of its rows.

Usage: the server's `usage` (prompt, completion, cached) is used when present. Without it we
count with `fot.backend.tokens`, mark the row `estimated`, and charge the rest of the reservation as
`charged_unknown` (our count may be below the server's). For n > 1 we check `completion_tokens`
against the texts: some servers count one choice only; then we scale up and mark it.

n > 1: sent as `n` until a backend returns fewer choices than asked (llama-cpp-python's server
ignores `n`); the rest are made up with separate concurrent requests (seed offset per extra request
so they are different samples), and from then on this client sends separate requests straight away.
`max_n` caps `n` per request for a backend that refuses more (llama.cpp's server: its slot count);
a larger `n` goes as several requests of at most `max_n`, with seeds offset as llama.cpp offsets
its own choices (choice i samples with seed + i), so the samples are the same either way.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from asyncio_throttle import Throttler
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from . import tokens
from .budget import Budget, BudgetExhausted, Price, Reservation
from .endpoints import Endpoint, Endpoints, HTTPFailure
from ..errors import UsageError, LLMError
from .ledger import CallRecord, CallTag, Ledger

RETRYABLE = frozenset({"rate_limit", "server", "timeout", "connection", "malformed", "not_completion"})
PROBE_TIMEOUT_S = 10.0  # a probe's chat call; the request timeout when that is shorter
PROBE_MESSAGES = ({"role": "user", "content": "Reply with OK."},)


class MalformedResponse(Exception):
    pass


@dataclass
class Choice:
    text: str
    finish_reason: str | None = None
    logprobs: list[float] | None = None  # per completion token, when asked for and given
    top_logprobs: list[list[tuple[str, float]]] | None = None  # per token, its top alternatives (top_logprobs)

    @property
    def mean_logprob(self) -> float | None:
        if not self.logprobs:
            return None
        return sum(self.logprobs) / len(self.logprobs)

    @property
    def confidences(self) -> list[float] | None:
        """DeepConf's token confidence (Fu et al. 2025): minus the mean log-prob of the top-k alternatives
        at each token; high where the model was sure (its alternatives far below the pick). Where the
        server sent no alternatives it is the sampled token's own log-prob (also higher when surer, on
        another scale: do not mix the two in one threshold)."""
        if not self.logprobs:
            return None
        tops = self.top_logprobs or []
        out = []
        for i, lp in enumerate(self.logprobs):
            top = tops[i] if i < len(tops) else None
            out.append(-sum(a for _, a in top) / len(top) if top else lp)
        return out


@dataclass
class Completion:
    choices: list[Choice]
    record: CallRecord

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.choices]


@dataclass(slots=True)
class _Request:
    """One HTTP request's state across its attempts (one object, not a closure's dozen cells: with
    thousands in flight, every object the garbage collector must traverse costs CPU)."""

    messages: Sequence[dict]
    n: int
    max_tokens: int
    seed: int | None
    params: dict
    budget: Budget | None
    row: CallRecord
    prompt_est: int
    prompt_reserve: int
    prefer: int | None
    failed_on: Endpoint | None = None  # the endpoint of the last failed attempt


def classify(exc: BaseException) -> str:
    """Map an exception from one attempt to an error kind."""
    if isinstance(exc, HTTPFailure):
        return exc.kind
    if isinstance(exc, (MalformedResponse, json.JSONDecodeError, ValueError, TypeError, AttributeError)):
        return "malformed"
    return "other"


def may_have_been_charged(exc: BaseException, kind: str) -> bool:
    """After the request was sent, did the backend perhaps do (and charge) the work? Only an error
    status or a connection that never opened says no."""
    if kind in ("rate_limit", "server", "client", "refused"):
        return False
    if isinstance(exc, HTTPFailure) and exc.charged is not None:
        return exc.charged
    return not isinstance(exc, HTTPFailure) or exc.sent


def retry_after_s(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or HTTP date)."""
    headers = getattr(exc, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(ra) if ra else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class LLMClient:
    """Chat completions against one model on one or more OpenAI-compatible endpoints (replicas)."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str,
        api_key: str | None = None,
        *,
        concurrency: int | None = None,
        rps: float | None = None,
        timeout: float = 120.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_max: float = 120.0,
        budget: Budget | None = None,
        ledger: Ledger | None = None,
        price: Price | None = None,
        min_tokens: int = 1,
        context_window: int | None = None,
        trace_text: bool = False,
        affinity: bool = True,
        max_n: int | None = None,
    ):
        if max_attempts < 1:
            raise UsageError("max_attempts must be >= 1")
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        # concurrency: the cap on requests in flight per endpoint; None = no cap (fot.backend.endpoints: the rule)
        self.endpoints = Endpoints(urls, api_key, cap=concurrency, timeout=timeout, probe=self._probe)
        self.timeout = timeout
        self.model = model
        self.base_url = urls[0]
        # a problem's context (an agent's system prompt, earlier turns: fot serve), given to each of its calls
        self.contexts: dict[str, str] = {}
        self.affinity = affinity and len(urls) > 1  # a tree's calls prefer one endpoint (its prefix cache)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.budget = budget
        self.ledger = ledger if ledger is not None else Ledger()
        self.price = price or (budget.price if budget is not None else None)
        self.min_tokens = min_tokens
        self.context_window = context_window  # prompt + completion limit of the server, when small and known
        self.trace_text = trace_text  # ledger rows keep the messages and completion texts (--trace-text)
        # the key goes to the endpoints' Authorization header and nowhere else: never into rows, errors or logs
        self._secret = api_key or ""
        self._throttle = Throttler(rate_limit=rps, period=1.0) if rps else None
        self.n_supported: bool | None = None  # learnt from the first n > 1 response
        self.max_n = max_n  # the most choices one request may ask for; None = no limit
        self._prompt_ratio: float | None = None  # max observed server prompt tokens / our estimate
        self._completion_ratio: float = 1.0  # server completion tokens / our count, from n = 1 calls
        self._n1_calls = 0
        self._stream_prompts: dict[int, int] = {}  # a prompt's server count, for streams cut before their usage

    async def aclose(self) -> None:
        await self.endpoints.aclose()

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the public call -----------------------------------------------------------------------

    async def chat(
        self,
        messages: Sequence[dict],
        *,
        role: str = "answer",
        tag: CallTag | None = None,
        n: int = 1,
        max_tokens: int = 512,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: list[str] | None = None,
        logprobs: bool = False,
        budget: Budget | None = None,
        extra: dict | None = None,
    ) -> Completion:
        """One logical call (maybe several HTTP requests); always leaves one row in the ledger.

        `extra`: request fields sent as they are, for what not every backend takes: constrained output
        (`grammar`, `json_schema` on llama.cpp; `response_format`), `top_logprobs`, ..."""
        tag = tag or CallTag()
        budget = budget if budget is not None else self.budget
        if tag.problem is not None and (context := self.contexts.get(tag.problem)):
            messages = with_context(messages, context)
        row = CallRecord(role=role, problem=tag.problem, tree=tag.tree, rollout=tag.rollout,
                         model=self.model, n=n)
        if (refusal := self.endpoints.refusal()) is not None:
            row.outcome, row.error = "refused", f"not sent: every endpoint refuses ({_short(refusal, self._secret)})"
            self.ledger.add(row)
            raise LLMError("refused", row.error, row)
        params: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "stop": stop,
                                  "logprobs": True if logprobs else None, **(extra or {})}
        if self.affinity and tag.problem is not None:
            params["prefer"] = zlib.crc32(f"{tag.problem}/{tag.tree}".encode())
        t0 = time.monotonic()
        choices: list[Choice] = []
        try:
            if n > 1 and self.n_supported is False:
                choices = await self._separate(messages, n, 0, max_tokens, seed, params, budget, row)
            else:
                first = min(n, self.max_n or n)
                choices = await self._request(messages, first, max_tokens, seed, params, budget, row)
                if len(choices) < first:
                    self.n_supported = False
                elif first > 1:
                    self.n_supported = True
                if len(choices) < n:
                    choices += await self._separate(messages, n - len(choices), len(choices), max_tokens, seed,
                                                    params, budget, row, per=self.max_n if self.n_supported else 1)
        except BudgetExhausted as e:
            row.outcome, row.error = "budget", str(e)
            raise
        except LLMError as e:
            row.outcome, row.error = e.kind, str(e)
            e.record = row
            raise
        except asyncio.CancelledError:  # cut off (early stop, a failed sibling, Ctrl-C): not an "ok" call
            row.outcome, row.error = "cancelled", "cancelled before the call finished"
            raise
        finally:
            row.choices = len(choices)
            if self.trace_text:
                row.messages, row.texts = [dict(m) for m in messages], [c.text for c in choices]
            row.latency_s = time.monotonic() - t0
            if self.price is not None:
                row.cost_usd = self.price.cost(row.prompt_tokens, row.completion_tokens, row.cached_tokens) + \
                    self.price.cost(row.charged_unknown, 0)
            self.ledger.add(row)
        if logprobs and n == 1 and not row.estimated and row.requests == 1:  # a prompt a cut stream may need
            self._stream_prompts[_prompt_key(messages)] = row.prompt_tokens
        return Completion(choices=choices, record=row)

    async def chat_stream(self, messages: Sequence[dict], *, stop_if: "Callable[[list[float]], bool]",
                          role: str = "answer", tag: CallTag | None = None, max_tokens: int = 512,
                          temperature: float | None = None, seed: int | None = None, top_logprobs: int = 5,
                          budget: Budget | None = None) -> Completion:
        """One streamed completion with token log-probs, ended by the caller: after every token,
        `stop_if(confidences so far)` (fot.backend.llm.Choice.confidences); when it says so the
        connection is closed and llama.cpp / vLLM stop decoding. Tokens are counted as received: the
        completion up to the stop, the prompt as the server counted this same prompt before (else our
        estimate, marked `estimated`). The choice's finish_reason is "stopped" when cut. One attempt
        (a stream cut by a failure cannot be resumed): a failure raises LLMError."""
        tag = tag or CallTag()
        budget = budget if budget is not None else self.budget
        row = CallRecord(role=role, problem=tag.problem, tree=tag.tree, rollout=tag.rollout, model=self.model, n=1,
                         requests=1, attempts=1)
        prompt_est, prompt_reserve = self._prompt_reservation(messages)
        mt = self._fit_context(prompt_est, max_tokens)
        res = await budget.reserve(prompt_reserve, mt, min_tokens=self.min_tokens) if budget is not None else None
        mt = res.max_tokens if res is not None else mt
        row.max_tokens = mt
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "max_tokens": mt, "stream": True,
                                "stream_options": {"include_usage": True}, "logprobs": True,
                                "top_logprobs": top_logprobs}
        if temperature is not None:
            body["temperature"] = temperature
        if seed is not None:
            body["seed"] = seed
        text, lps, tops, finish, usage, whole_cut = [], [], [], None, None, False
        choice = Choice("")
        t0 = time.monotonic()
        ep = await self.endpoints.acquire(None, None)
        try:
            async for event in self.endpoints.stream(ep, "/chat/completions", body):
                if isinstance(event.get("usage"), dict):
                    usage = event["usage"]
                whole = False
                for c in (event.get("choices") or [])[:1]:
                    whole = isinstance(c.get("message"), dict)  # not streamed: the whole reply at once
                    delta = c.get("message") if whole else (c.get("delta") or {})
                    text.append(delta.get("content") or "")
                    got, top = _logprobs(c.get("logprobs"))
                    lps += got or []
                    tops += top or [[] for _ in got or []]
                    finish = c.get("finish_reason") or finish
                choice = Choice("".join(text), finish, lps or None, tops if any(tops) else None)
                if whole:
                    # the server decoded it all and charges it all; the trace is cut where a stream would have
                    # been, for the vote, and its tokens are the server's (no saving is claimed)
                    conf = choice.confidences or []
                    at = next((k for k in range(1, len(conf) + 1) if stop_if(conf[:k])), None)
                    if at is not None:
                        choice = Choice("", "stopped", lps[:at], tops[:at] if any(tops) else None)
                        finish, whole_cut = "stopped", True
                    break
                if lps and finish is None and stop_if(choice.confidences or []):
                    finish = "stopped"
                    break
        except BaseException as exc:
            kind = classify(exc) if isinstance(exc, Exception) else "cancelled"
            row.outcome, row.error = kind, _short(exc, self._secret)
            row.charged_unknown = prompt_reserve + mt
            if res is not None:
                budget.charge_unknown(res)
            self.ledger.add(row)
            if isinstance(exc, Exception):
                raise LLMError(kind, row.error, row) from exc
            raise
        finally:
            self.endpoints.release(ep)
        key = _prompt_key(messages)
        if (finish != "stopped" or whole_cut) and isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            prompt = usage["prompt_tokens"]
            completion = usage.get("completion_tokens") or len(lps)
            details = usage.get("prompt_tokens_details")
            cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
            self._stream_prompts[key] = prompt
        else:
            prompt, completion, cached = self._stream_prompts.get(key, prompt_est), len(lps), 0
            row.estimated = key not in self._stream_prompts
        self.endpoints.answered(ep, time.monotonic() - t0, completion)
        if res is not None:
            budget.settle(res, prompt, completion, cached)
        row.prompt_tokens, row.completion_tokens, row.cached_tokens, row.choices = prompt, completion, cached, 1
        row.latency_s = time.monotonic() - t0
        if self.price is not None:
            row.cost_usd = self.price.cost(prompt, completion, cached)
        self.ledger.add(row)
        choice.finish_reason = finish
        return Completion(choices=[choice], record=row)

    async def pool(self, messages: Sequence[dict], *, role: str = "reward_model", tag: CallTag | None = None,
                   budget: Budget | None = None, path: str = "/pooling") -> tuple[Any, int]:
        """One call to a reward model's pooling endpoint (vLLM `/pooling`; fot.sim's): (its JSON reply, the
        tokens it cost). Prompt tokens only, reserved before and settled to the reply's `usage` (our
        estimate, marked, without one); a row in the ledger like any call. One attempt: a failure raises
        LLMError."""
        tag = tag or CallTag()
        budget = budget if budget is not None else self.budget
        row = CallRecord(role=role, problem=tag.problem, tree=tag.tree, rollout=tag.rollout, model=self.model, n=1,
                         requests=1, attempts=1, max_tokens=0)
        est, reserve = self._prompt_reservation(messages)
        res = await budget.reserve(reserve, 1, min_tokens=1) if budget is not None else None
        t0 = time.monotonic()
        ep = await self.endpoints.acquire(None, None)
        try:
            reply = await self.endpoints.post(ep, path, {"model": self.model, "messages": list(messages)})
        except BaseException as exc:
            kind = classify(exc) if isinstance(exc, Exception) else "cancelled"
            row.outcome, row.error = kind, _short(exc, self._secret)
            if res is not None:
                if may_have_been_charged(exc, kind):
                    row.charged_unknown = reserve + 1
                    budget.charge_unknown(res)
                else:
                    budget.release(res)
            self.ledger.add(row)
            if isinstance(exc, Exception):
                raise LLMError(kind, row.error, row) from exc
            raise
        finally:
            self.endpoints.release(ep)
        usage = reply.get("usage") if isinstance(reply, dict) else None
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        row.estimated = not isinstance(prompt, int)
        row.prompt_tokens = prompt if isinstance(prompt, int) else est
        if res is not None:
            budget.settle(res, row.prompt_tokens, 0)
        row.latency_s = time.monotonic() - t0
        if self.price is not None:
            row.cost_usd = self.price.cost(row.prompt_tokens, 0, 0)
        self.ledger.add(row)
        return reply, row.prompt_tokens

    async def _separate(self, messages, count, seed_offset, max_tokens, seed, params, budget, row,
                        per: int | None = 1) -> list[Choice]:
        """`count` more choices in concurrent requests of at most `per` each (None: one request)."""
        per = per or count

        async def some(i: int) -> list[Choice]:
            s = None if seed is None else seed + seed_offset + i
            return await self._request(messages, min(per, count - i), max_tokens, s, params, budget, row)

        results = await asyncio.gather(*(some(i) for i in range(0, count, per)), return_exceptions=True)
        out: list[Choice] = []
        for r in results:
            if isinstance(r, BaseException):
                raise r
            out += r
        return out

    # -- one HTTP request with retries ---------------------------------------------------------

    def _prompt_reservation(self, messages: Sequence[dict]) -> tuple[int, int]:
        """(estimate, reservation) for the prompt. The reservation is an upper bound: the byte
        bound until the server has told us a prompt size, then our estimate scaled by the largest
        server/estimate ratio seen (+15% and a margin), never above the byte bound."""
        est = tokens.count_messages(messages)
        bound = tokens.byte_bound(messages)
        if self._prompt_ratio is None:
            return est, bound
        return est, min(bound, math.ceil(est * max(1.0, self._prompt_ratio) * 1.15) + 16)

    def _backoff(self, exc: BaseException | None, failures: int) -> float:
        """Exactly Retry-After when the server sent one, else full-jitter exponential backoff."""
        ra = retry_after_s(exc)
        if ra is not None:
            return min(ra, self.retry_after_max) * random.uniform(1.0, 1.1)
        cap = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
        return random.uniform(0, cap)

    def _backoff_or_elsewhere(self, exc: BaseException | None, failures: int) -> float:
        """No wait when another endpoint is up to take the retry; the backoff otherwise."""
        if self.endpoints.other_up(getattr(exc, "endpoint", None)):
            return 0.0
        return self._backoff(exc, failures)

    def _fit_context(self, prompt_est: int, max_tokens: int) -> int:
        """Clamp max_tokens so prompt + completion fits the server's context; refuse a prompt that cannot."""
        if self.context_window is None:
            return max_tokens
        prompt = math.ceil(prompt_est * max(1.0, self._prompt_ratio or 1.0) * 1.1) + 8
        room = self.context_window - prompt
        if room < max(1, self.min_tokens):
            raise LLMError("context", f"the prompt (about {prompt} tokens) does not fit the server's context of "
                                      f"{self.context_window} tokens with room for an answer; not sent")
        return min(max_tokens, room)

    async def _request(self, messages, n, max_tokens, seed, params, budget, row) -> list[Choice]:
        prompt_est, prompt_reserve = self._prompt_reservation(messages)
        req = _Request(messages, n, self._fit_context(prompt_est, max_tokens), seed, params, budget, row, prompt_est,
                       prompt_reserve, params.get("prefer"))
        row.requests += 1
        try:
            try:
                return await self._attempt(req)  # the common case, without the retry machinery's overhead
            except Exception as first:
                if classify(first) not in RETRYABLE or self.max_attempts < 2:
                    raise
                await asyncio.sleep(self._backoff_or_elsewhere(first, 1))
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.max_attempts - 1),
                wait=lambda state: self._backoff_or_elsewhere(
                    state.outcome.exception() if state.outcome else None, state.attempt_number + 1),
                retry=retry_if_exception(lambda e: isinstance(e, Exception) and classify(e) in RETRYABLE),
                reraise=True,
            )
            return await retrying(self._attempt, req)
        except BudgetExhausted:
            raise
        except Exception as exc:
            kind = classify(exc)
            status = getattr(exc, "status", None)
            what = str(exc) if isinstance(exc, HTTPFailure) else f"{type(exc).__name__} from {self.base_url}: {exc}"
            raise LLMError(kind, f"{_short(what, self._secret)} (after {row.attempts} attempt(s))",
                           status=status if isinstance(status, int) else None,
                           retry_after=retry_after_s(exc), attempts=row.attempts) from exc

    async def _attempt(self, req: "_Request") -> list[Choice]:
        """One attempt: reserve, throttle, a slot on an endpoint, the HTTP request, settle."""
        row, budget, n = req.row, req.budget, req.n
        row.attempts += 1
        res: Reservation | None = None
        sent = False
        mt = req.max_tokens
        if budget is not None:
            res = await budget.reserve(req.prompt_reserve, req.max_tokens, n=n, min_tokens=self.min_tokens)
            mt = res.max_tokens
        row.max_tokens = mt
        kwargs = {k: v for k, v in req.params.items() if v is not None and k != "prefer"}
        if n > 1:
            kwargs["n"] = n
        if req.seed is not None:
            kwargs["seed"] = req.seed
        try:
            if self._throttle is not None:
                async with self._throttle:
                    pass
            body = {"model": self.model, "messages": list(req.messages), "max_tokens": mt, **kwargs}
            ep = await self.endpoints.acquire(req.prefer, req.failed_on)
            t0 = time.monotonic()
            try:
                sent = True
                resp = await self.endpoints.post(ep, "/chat/completions", body)
            finally:
                self.endpoints.release(ep)
            del body
            if ep.public not in row.endpoint.split(","):
                row.endpoint = f"{row.endpoint},{ep.public}" if row.endpoint else ep.public
            try:
                choices, prompt, completion, cached, estimated = self._read(resp, req.messages, req.prompt_est)
            except MalformedResponse as e:  # a 200 that is not a completion counts against the endpoint
                # JSON with no choices at all shows no work was done; with choices we could not read, it may have been
                charged = None if isinstance(resp, dict) and "choices" in resp else False
                raise self.endpoints.bad_reply(ep, str(e), time.monotonic() - t0, charged) from None
            self.endpoints.answered(ep, time.monotonic() - t0, completion)
        except BaseException as exc:
            req.failed_on = getattr(exc, "endpoint", None)  # a retry goes elsewhere
            kind = classify(exc) if isinstance(exc, Exception) else "cancelled"
            if sent and may_have_been_charged(exc, kind):
                row.charged_unknown += req.prompt_reserve + n * mt  # an upper bound of what was charged
                if res is not None:
                    budget.charge_unknown(res)
            elif res is not None:
                budget.release(res)
            raise
        # without usage, our count may be below the server's: the rest of the reservation is unknown
        unknown = max(0, req.prompt_reserve + n * mt - prompt - completion) if estimated else 0
        row.charged_unknown += unknown
        if res is not None:
            budget.settle(res, prompt, completion, cached, unknown=unknown)
        row.prompt_tokens += prompt
        row.completion_tokens += completion
        row.cached_tokens += cached
        row.estimated = row.estimated or estimated
        return choices

    async def _probe(self, ep: Endpoint) -> bool:
        """Is this endpoint (taken out) fit to come back? Only a chat completion proves it: `/models` can
        answer while chat hangs or refuses. One token, funded by the budget (never waited for: when it
        cannot be funded the endpoint stays out) and recorded in the ledger like any call (role "probe")."""
        messages = PROBE_MESSAGES
        row = CallRecord(role="probe", model=self.model, n=1, endpoint=ep.public, requests=1, attempts=1)
        est, reserve = self._prompt_reservation(messages)
        res: Reservation | None = None
        t0 = time.monotonic()
        try:
            if self.budget is not None:
                try:
                    res = self.budget.try_reserve(reserve, 1)
                except BudgetExhausted:
                    res = None
                if res is None:
                    row.outcome, row.error = "budget", "not sent: the budget cannot fund a probe"
                    return False
            row.max_tokens = 1
            try:
                resp = await self.endpoints.post(ep, "/chat/completions", {
                    "model": self.model, "messages": list(messages), "max_tokens": 1},
                    timeout=min(self.timeout, PROBE_TIMEOUT_S), health=False)
                _, prompt, completion, cached, estimated = self._read(resp, messages, est)
            except Exception as exc:
                kind = classify(exc)
                row.outcome, row.error = kind, _short(exc, self._secret)
                if may_have_been_charged(exc, kind):
                    row.charged_unknown = reserve + 1
                    if res is not None:
                        self.budget.charge_unknown(res)
                elif res is not None:
                    self.budget.release(res)
                return False
            unknown = max(0, reserve + 1 - prompt - completion) if estimated else 0
            if res is not None:
                self.budget.settle(res, prompt, completion, cached, unknown=unknown)
            row.prompt_tokens, row.completion_tokens, row.cached_tokens = prompt, completion, cached
            row.charged_unknown, row.estimated = unknown, estimated
            return True
        finally:
            row.latency_s = time.monotonic() - t0
            if self.price is not None:
                row.cost_usd = self.price.cost(row.prompt_tokens, row.completion_tokens, row.cached_tokens) + \
                    self.price.cost(row.charged_unknown, 0)
            self.ledger.add(row)

    def _read(self, resp: Any, messages, prompt_est: int) -> tuple[list[Choice], int, int, int, bool]:
        """Choices and usage from a response body; raises MalformedResponse on garbage."""
        raw_choices = resp.get("choices") if isinstance(resp, dict) else None
        if not isinstance(raw_choices, list) or not raw_choices:
            raise MalformedResponse(f"response has no choices: {str(resp)[:120]!r}")
        choices = []
        for c in raw_choices:
            msg = c.get("message") if isinstance(c, dict) else None
            text = msg.get("content") if isinstance(msg, dict) else None
            if not isinstance(text, str):
                raise MalformedResponse("a choice has no text content")
            lps, tops = _logprobs(c.get("logprobs"))
            choices.append(Choice(text=text, finish_reason=c.get("finish_reason"), logprobs=lps, top_logprobs=tops))
        usage = resp.get("usage")
        if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int) \
                or not isinstance(usage.get("completion_tokens"), int):
            return choices, prompt_est, sum(tokens.count_text(c.text) for c in choices), 0, True
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        details = usage.get("prompt_tokens_details")
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        if prompt_est > 0:
            ratio = prompt / prompt_est
            self._prompt_ratio = ratio if self._prompt_ratio is None else max(self._prompt_ratio, ratio)
        estimated = False
        if len(choices) == 1:
            # the server/our-count ratio, learnt from n = 1 calls: on the first 64, then one in 16 (counting
            # a completion's tokens is a good part of the client's CPU per call)
            self._n1_calls += 1
            if self._n1_calls <= 64 or self._n1_calls % 16 == 0:
                counted = tokens.count_text(choices[0].text)
                if counted > 0:
                    self._completion_ratio = 0.9 * self._completion_ratio + 0.1 * (completion / counted)
            return choices, prompt, completion, cached, estimated
        lengths = [len(c.logprobs) if c.logprobs else 0 for c in choices]
        if all(lengths) and completion == lengths[0] != sum(lengths):
            # the server counted the first choice only (llama.cpp does); the log-probs count every token
            return choices, prompt, sum(lengths), cached, estimated
        counted = [tokens.count_text(c.text) for c in choices]
        if counted[0] > 0 and completion > 0:
            one = self._completion_ratio * counted[0]
            everything = self._completion_ratio * sum(counted)
            if abs(math.log(completion / one)) < abs(math.log(completion / everything)):
                # the server counted one choice: scale its count to the rest and say so
                completion = completion + round(completion / counted[0] * sum(counted[1:]))
                estimated = True
        return choices, prompt, completion, cached, estimated


def _prompt_key(messages: Sequence[dict]) -> int:
    return zlib.crc32(json.dumps(list(messages), sort_keys=True).encode())


def _logprobs(lp: Any) -> tuple[list[float] | None, list[list[tuple[str, float]]] | None]:
    """(each token's log-prob, each token's top alternatives' log-probs) from an OpenAI `logprobs` object;
    a server's -inf (a token it would never pick) is kept finite so the record stays JSON."""
    if not (isinstance(lp, dict) and isinstance(lp.get("content"), list) and lp["content"]):
        return None, None
    rows = [t for t in lp["content"] if isinstance(t, dict) and "logprob" in t]
    lps = [max(float(t["logprob"]), -1e4) for t in rows]
    tops = [[(str(a.get("token", "")), max(float(a["logprob"]), -1e4)) for a in (t.get("top_logprobs") or [])
             if isinstance(a, dict) and "logprob" in a] for t in rows]
    return lps or None, tops if any(tops) else None


def _short(exc: BaseException | str, secret: str = "") -> str:
    """An error message fit for results and traces: one line, and never the API key, however short
    (a backend may echo the key it refused). A key too short to cut out safely withholds the message."""
    s = str(exc).replace("\n", " ")
    if secret and secret in s:
        s = s.replace(secret, "***") if len(secret) >= 4 else "(the error message is withheld: it holds the API key)"
    return s[:300]


def with_context(messages: Sequence[dict], context: str) -> list[dict]:
    """The call's messages with the problem's context first, as one system message (merged into the search's
    own system prompt when it has one: some chat templates take a single system message, and only first)."""
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = f"{context}\n\n{out[0]['content']}"
        return out
    return [{"role": "system", "content": context}, *out]
