"""The library API: `async with Engine(...) as engine: result = await engine.solve(question)`.

An `Engine` owns one LLM client (so one set of endpoints, concurrency rule, throttle and retry policy
for everything it runs), one ledger and an optional run budget; each problem gets its own child budget and each
tree a share of that. `solve` never sees a reference answer: grading is the meter's job, after.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import AsyncIterator, Callable, Iterable

from .backend.budget import Budget, Price
from .config import UNSET, SearchConfig
from .search.decision import DecisionRule
from .backend.endpoints import public_url
from .errors import BackendUnreachable, EnvironmentFailure, SolveError, UsageError, error_kind
from .backend.ledger import Ledger
from .backend.llm import LLMClient
from .search.mctsr import TreeResult
from .methods import METHODS, MethodRun, get_method
from .tasks.problems import Problem
from .measure.results import Result
from .tasks import Task, detect_task, get_task
from .search.verifiers import Verifier

__all__ = ["Engine", "METHODS", "Result", "minimum_budget"]


def minimum_budget(question: str, task: Task, cfg: SearchConfig, method: str = "forest") -> int:
    """The fewest tokens with which `method` gets its first answer(s) (each method says: fot/methods/)."""
    m = get_method(method)
    return m.minimum_budget(question, task, m.configure(cfg))


class Engine:
    """`base_url` is one OpenAI-compatible server; `base_urls` several replicas of one model, shared by least
    outstanding requests (fot.backend.endpoints). `concurrency` caps requests in flight per endpoint; by default there
    is no cap (the work in flight is the concurrency) and a 429 or 503 lowers it (fot.backend.endpoints: the rule)."""

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None, *,
                 base_urls: list[str] | None = None, concurrency: int | None = None, rps: float | None = None, timeout: float = 120.0, max_attempts: int = 6,
                 price: Price | None = None, run_budget: int | None = None, run_budget_usd: float | None = None,
                 trace: str | os.PathLike | None = None, config: SearchConfig | None = None,
                 reward_model: tuple[str, str] | None = None, context_window: int | None = None,
                 raise_errors: bool = False, trace_text: bool = False, max_n: int | None = None):
        if base_url is not None and base_urls:
            raise UsageError("pass base_url (one server) or base_urls (several), not both")
        urls = list(base_urls or [base_url or os.environ.get("OPENAI_BASE_URL") or ""])
        if not all(urls):
            raise UsageError("no backend: pass base_url (or set OPENAI_BASE_URL) to an OpenAI-compatible server")
        self.base_urls = urls
        self.base_url = urls[0]
        self.model = model or os.environ.get("FOT_MODEL")
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.config = config or SearchConfig()
        self.price = price
        self.ledger = Ledger(trace)
        self.budget = Budget(tokens=run_budget, usd=run_budget_usd, price=price, name="run")
        self._client_kw = dict(concurrency=concurrency, rps=rps, timeout=timeout, max_attempts=max_attempts,
                               context_window=context_window, trace_text=trace_text, max_n=max_n)
        self.llm: LLMClient | None = None
        self.down_at_start: list[str] = []  # endpoints that did not answer at start (taken out, probed)
        self._reward_model = reward_model
        self.reward_llm: LLMClient | None = None
        self.raise_errors = raise_errors  # solve raises SolveError instead of returning a result with an error

    async def __aenter__(self) -> "Engine":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self, check_timeout: float = 10.0) -> None:
        """Check the endpoints answer (and pick the first model listed if none was named). Endpoints that do
        not answer are taken out and probed until they do (`down_at_start`); none answering is an error."""
        llm = LLMClient(self.base_urls, self.model or "", self._api_key, ledger=self.ledger, price=self.price,
                        budget=self.budget, min_tokens=self.config.min_tokens, **self._client_kw)
        try:
            # never longer than a request may take: a replica that hangs must not cost more than --timeout here
            answers = await llm.endpoints.models(min(check_timeout, self._client_kw["timeout"]))
            refused = [(ep, f) for ep, _, f in answers if f is not None and f.status in (401, 403)]
            if refused:
                ep, f = refused[0]
                raise BackendUnreachable(f"backend at {ep.public} refused the API key (HTTP {f.status})")
            down = [(ep, f) for ep, _, f in answers if f is not None and f.status is None]
            if len(down) == len(answers):
                ep, f = down[0]
                raise BackendUnreachable(f"backend at {ep.public} is unreachable ({f})" if len(down) == 1 else
                                         f"none of the {len(down)} endpoints is reachable (first: {f})")
            ids = next((m for _, m, _ in answers if m), [])  # some servers have no /models; the first call will tell
            if self.model is None:
                if not ids:
                    raise BackendUnreachable(f"backend at {public_url(self.base_url)} lists no models; pass a model name")
                self.model = ids[0]
        except BaseException:
            await llm.aclose()
            raise
        for ep, _ in down:
            llm.endpoints.mark_down(ep)
        self.down_at_start = [ep.public for ep, _ in down]
        llm.model = self.model
        self.llm = llm
        if self._reward_model is not None:
            url, name = self._reward_model
            self.reward_llm = LLMClient(url, name, self._api_key, ledger=self.ledger, price=self.price,
                                        min_tokens=self.config.min_tokens, **self._client_kw)

    async def aclose(self) -> None:
        for c in (self.llm, self.reward_llm):
            if c is not None:
                await c.aclose()
        self.ledger.close()

    async def solve(self, problem: str | Problem, *, task: str | Task = "auto", method: str = "forest",
                    trees: int = UNSET, rollouts: int = UNSET, samples: int = 8, budget: int | None = None,
                    budget_usd: float | None = None, example_pool: list[tuple[str, str]] | None = None,
                    verifier: str | Verifier = UNSET, decision: str | DecisionRule = UNSET,
                    raise_errors: bool | None = None, on_tree: Callable[[TreeResult], None] | None = None,
                    on_rollout: Callable[[str, TreeResult], None] | None = None, context: str | None = None,
                    **settings) -> Result:
        """Solve one problem with `method` (a forest by default; `mctsr` is one tree; `cot`, `sc`, `bon`
        sample `samples` answers, see fot/search/baselines.py). `budget` caps its tokens (never exceeded);
        settings override SearchConfig.

        `verifier` and `decision` take a registry key (fot.search.verifiers, fot.search.decision) or agent code's own object;
        `example_pool` is a list of solved (question, solution) pairs for the "example" tree input;
        `context` (an agent's system prompt, earlier turns) is given to every call as a system message, never
        made part of the question the task detects and a grader compares;
        `on_tree(tree_result)` is called as each tree finishes, `on_rollout(problem_id, tree_result)` as each
        rollout of a tree does (progress; forest methods only).

        A problem that ends without an answer says why in `error_kind` (fot.errors.ERROR_KINDS); with
        `raise_errors` (default: the engine's) it raises `SolveError` instead, the result attached. A
        failure of the run's own environment (the trace's disk) always raises `EnvironmentFailure`."""
        the_method = get_method(method)
        if self.llm is None:
            await self.start()
        assert self.llm is not None
        if isinstance(problem, str):
            problem = Problem(id=f"q{len(self.ledger)}-{time.monotonic_ns() % 10**6}", question=problem)
        the_task = detect_task([problem.question], [None]) if task == "auto" else get_task(task)
        verifier_obj = decision_obj = None
        if verifier is not UNSET and not isinstance(verifier, str):
            verifier_obj, verifier = verifier, UNSET
        if decision is not UNSET and not isinstance(decision, str):
            decision_obj, decision = decision, UNSET
        cfg = the_method.configure(self.config.with_(trees=trees, rollouts=rollouts, verifier=verifier,
                                                     decision=decision, **settings))
        if cfg.verifier == "reward_model" and verifier_obj is None and self.reward_llm is None:
            raise UsageError("verifier='reward_model' needs Engine(reward_model=(base_url, model))")
        pb = self.budget.child(tokens=budget, usd=budget_usd, name=f"problem:{problem.id}")
        t0 = time.monotonic()
        question = problem.question  # the reference (problem.answer) is never passed on
        names = {"verifier": type(verifier_obj).__name__ if verifier_obj is not None else cfg.verifier,
                 "decision": getattr(decision_obj, "name", None) if decision_obj is not None else cfg.decision}
        r = Result(problem.id, question, the_task.name, None, "", "none", [], [], {}, 0, 0.0, 0.0,
                   settings=the_method.settings(cfg, budget, names, samples), method=the_method.name)
        cause = None
        refused = the_task.validate(question)
        if refused:
            r.error, r.error_kind = f"the {the_task.name} task cannot judge this question: {refused}", "input"
        elif budget is not None and budget < (least := the_method.minimum_budget(question, the_task, cfg)):
            r.error, r.error_kind = (f"budget {budget} is below the {least} tokens this {the_method.name} needs for "
                                     f"its first answer{'s' if the_method.trees(cfg) > 1 else ''}; nothing was sent"), \
                "budget"
        if context:
            self.llm.contexts[problem.id] = context
        try:
            if not r.error_kind:
                run = MethodRun(question, the_task, self.llm, cfg, pb, problem.id, samples=samples,
                                verifier=verifier_obj, decision=decision_obj, example_pool=example_pool,
                                reward_llm=self.reward_llm, on_tree=on_tree,
                                on_rollout=None if on_rollout is None else (lambda t, pid=problem.id: on_rollout(pid, t)))
                r = await the_method.run(run, r)
        except (EnvironmentFailure, asyncio.CancelledError):
            # not this problem's fault: the run stops and the problem is not recorded as finished
            self.ledger.calls_by_problem.pop(problem.id, None)
            raise
        except Exception as e:  # a fault we did not expect must not lose the other problems
            r.error, r.error_kind, cause = f"{type(e).__name__}: {e}", error_kind(e), e
        finally:
            self.llm.contexts.pop(problem.id, None)
        r.wall_s = time.monotonic() - t0
        r.calls = self.ledger.calls_by_problem.pop(problem.id, 0)  # done: nothing of it stays in memory
        r.tokens = {"prompt": pb.spent.prompt_tokens, "completion": pb.spent.completion_tokens,
                    "cached": pb.spent.cached_tokens, "unknown": pb.spent.unknown_tokens, "total": pb.spent_tokens}
        r.cost_usd = pb.spent.usd
        if r.answer is None and (self.raise_errors if raise_errors is None else raise_errors):
            raise SolveError(r) from (cause or (r.failures[-1] if r.failures else None))
        return r

    async def solve_many(self, problems: Iterable[str | Problem], *, parallel: int = 4,
                         **kwargs) -> AsyncIterator[Result]:
        """Solve problems `parallel` at a time; yields each result as soon as it is done. The problems
        are drawn from the iterable as slots free up, so a long (or endless) stream costs no memory."""
        source = iter(problems)
        pending: set[asyncio.Task] = set()
        finished: list[asyncio.Task] = []  # done, not yet yielded
        try:
            while True:
                while len(pending) < max(1, parallel):
                    p = next(source, _END)
                    if p is _END:
                        break
                    pending.add(asyncio.create_task(self.solve(p, **kwargs)))
                if not pending:
                    return
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                finished = list(done)
                while finished:
                    yield finished.pop(0).result()
        finally:
            for t in pending:
                t.cancel()
            # the failures of problems that finished beside the one that stopped us are retrieved here, or
            # asyncio prints each as "Task exception was never retrieved" after the run's own clean message
            await asyncio.gather(*pending, *finished, return_exceptions=True)


_END = object()
