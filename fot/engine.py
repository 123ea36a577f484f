"""The library API: `async with Engine(...) as engine: result = await engine.solve(question)`.

An `Engine` owns one LLM client (so one set of endpoints, concurrency rule, throttle and retry policy
for everything it runs), one ledger and an optional run budget; each problem gets its own child budget and each
tree a share of that. `solve` never sees a reference answer: grading is the meter's job, after.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import AsyncIterator, Callable, Iterable

from .baselines import SAMPLING_METHODS, run_sampling
from . import prompts, tokens
from .budget import Budget, Price
from .config import SearchConfig
from .errors import BackendUnreachable, EnvironmentFailure, SolveError, error_kind
from .forest import run_forest
from .mctsr import TreeResult
from .ledger import Ledger
from .endpoints import public_url
from .llm import LLMClient
from .policies import UNSET, DecisionRule, Verifier
from .problems import Problem
from .tasks import Task, detect_task, get_task


METHODS = ("forest", "mctsr", *SAMPLING_METHODS)  # mctsr = one tree; cot, sc, bon: fot/baselines.py


def minimum_budget(question: str, task: Task, cfg: SearchConfig, method: str = "forest") -> int:
    """The fewest tokens with which `method` can get its first answer(s): a forest needs one from every
    tree (each tree's share is its allowance, the problem budget less the decision reserve split T
    ways), a sampling method one sample. Below this the engine would send nothing, so it refuses."""
    first_call = tokens.byte_bound(prompts.answer(question, "", task.instructions)) + cfg.min_tokens
    if method in SAMPLING_METHODS:
        return first_call
    trees = 1 if method == "mctsr" else cfg.trees
    if cfg.tree_budget is not None:
        return trees * first_call
    return math.ceil(trees * first_call / (1 - cfg.decision_reserve)) + 1  # +1: the share is rounded down


@dataclass
class Result:
    id: str
    question: str
    task: str
    answer: str | None
    text: str
    decision: str
    trees: list[dict]
    snapshots: list[list[dict]]  # per tree: [{rollout, tokens, answer, q, calls}, ...]
    tokens: dict
    calls: int
    cost_usd: float
    wall_s: float
    expert_tokens: int = 0
    expert_usage: dict = field(default_factory=dict)
    error: str = ""
    error_kind: str = ""  # why there is no answer, one of fot.errors.ERROR_KINDS ("" when answered)
    answers_seen: list[str] = field(default_factory=list)  # every distinct answer any node produced
    settings: dict = field(default_factory=dict)  # what the meter needs to replay the decision
    method: str = "forest"
    samples: list[dict] = field(default_factory=list)  # cot / sc / bon: every sample, in seed order
    evaluation: dict = field(default_factory=dict)  # self-evaluation samples asked for and read
    early_stopped: bool = False
    budget_bound: dict = field(default_factory=dict)  # {"problem": bool, "trees": [bool]}: which caps shaped the search
    # every tree's every node (forest methods): the trees file's line, not the results line, which stays small
    forest: list[dict] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """The results line: everything but the node record (`trees_line`), about six times its size."""
        d = asdict(self)
        d.pop("forest")
        return d

    def trees_line(self) -> dict:
        """The trees file's line for this problem (docs/viewer.md)."""
        return {"id": self.id, "trees": self.forest}


class Engine:
    """`base_url` is one OpenAI-compatible server; `base_urls` several replicas of one model, shared by least
    outstanding requests (fot.endpoints). `concurrency` caps requests in flight per endpoint; by default there
    is no cap (the work in flight is the concurrency) and a 429 or 503 lowers it (fot.endpoints: the rule)."""

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None, *,
                 base_urls: list[str] | None = None, concurrency: int | None = None, rps: float | None = None, timeout: float = 120.0, max_attempts: int = 6,
                 price: Price | None = None, run_budget: int | None = None, run_budget_usd: float | None = None,
                 trace: str | os.PathLike | None = None, config: SearchConfig | None = None,
                 reward_model: tuple[str, str] | None = None, context_window: int | None = None,
                 raise_errors: bool = False, trace_text: bool = False, max_n: int | None = None):
        if base_url is not None and base_urls:
            raise ValueError("pass base_url (one server) or base_urls (several), not both")
        urls = list(base_urls or [base_url or os.environ.get("OPENAI_BASE_URL") or ""])
        if not all(urls):
            raise ValueError("no backend: pass base_url (or set OPENAI_BASE_URL) to an OpenAI-compatible server")
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
            answers = await llm.endpoints.models(check_timeout)
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
                    on_rollout: Callable[[str, TreeResult], None] | None = None, **settings) -> Result:
        """Solve one problem with `method` (a forest by default; `mctsr` is one tree; `cot`, `sc`, `bon`
        sample `samples` answers, see fot/baselines.py). `budget` caps its tokens (never exceeded);
        settings override SearchConfig.

        `verifier` and `decision` take a registry key (fot.policies) or agent code's own object;
        `example_pool` is a list of solved (question, solution) pairs for the "example" tree input;
        `on_tree(tree_result)` is called as each tree finishes, `on_rollout(problem_id, tree_result)` as each
        rollout of a tree does (progress; forest methods only).

        A problem that ends without an answer says why in `error_kind` (fot.errors.ERROR_KINDS); with
        `raise_errors` (default: the engine's) it raises `SolveError` instead, the result attached. A
        failure of the run's own environment (the trace's disk) always raises `EnvironmentFailure`."""
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}'; known: {', '.join(METHODS)}")
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
        if method == "mctsr":
            trees = 1
        cfg = self.config.with_(trees=trees, rollouts=rollouts, verifier=verifier, decision=decision, **settings)
        if cfg.verifier == "reward_model" and verifier_obj is None and self.reward_llm is None:
            raise ValueError("verifier='reward_model' needs Engine(reward_model=(base_url, model))")
        pb = self.budget.child(tokens=budget, usd=budget_usd, name=f"problem:{problem.id}")
        t0 = time.monotonic()
        question = problem.question  # the reference (problem.answer) is never passed on
        error, kind, cause = "", "", None
        fr = sr = None
        refused = getattr(the_task, "validate", lambda q: None)(question)
        if refused:
            error, kind = f"the {the_task.name} task cannot judge this question: {refused}", "input"
        elif budget is not None and budget < (least := minimum_budget(question, the_task, cfg, method)):
            error, kind = (f"budget {budget} is below the {least} tokens this {method} needs for its first answer"
                           f"{'s' if method in ('forest',) and cfg.trees > 1 else ''}; nothing was sent"), "budget"
        try:
            if kind:
                pass
            elif method in SAMPLING_METHODS:
                sr = await run_sampling(question, the_task, self.llm, cfg, pb, problem.id, method=method,
                                        samples=samples, verifier=verifier_obj, reward_llm=self.reward_llm)
            else:
                fr = await run_forest(question, the_task, self.llm, cfg, pb, problem.id, verifier=verifier_obj,
                                      decision=decision_obj, example_pool=example_pool, reward_llm=self.reward_llm,
                                      on_tree=on_tree, on_rollout=None if on_rollout is None else
                                      (lambda t, pid=problem.id: on_rollout(pid, t)))
        except (EnvironmentFailure, asyncio.CancelledError):
            # not this problem's fault: the run stops and the problem is not recorded as finished
            self.ledger.calls_by_problem.pop(problem.id, None)
            raise
        except Exception as e:  # a fault we did not expect must not lose the other problems
            error, kind, cause = f"{type(e).__name__}: {e}", error_kind(e), e
        wall = time.monotonic() - t0
        calls = self.ledger.calls_by_problem.pop(problem.id, 0)  # done: nothing of it stays in memory
        tokens = {"prompt": pb.spent.prompt_tokens, "completion": pb.spent.completion_tokens,
                  "cached": pb.spent.cached_tokens, "unknown": pb.spent.unknown_tokens, "total": pb.spent_tokens}
        settings = {"trees": cfg.trees, "rollouts": cfg.rollouts, "activation_threshold": cfg.activation_threshold,
                    "majority": cfg.majority, "tie_break": cfg.tie_break, "early_stop": cfg.early_stop, "seed": cfg.seed,
                    "decision": getattr(decision_obj, "name", None) if decision_obj is not None else cfg.decision,
                    "verifier": type(verifier_obj).__name__ if verifier_obj is not None else cfg.verifier,
                    "budget": budget, "tree_budget": cfg.tree_budget,
                    "tree_allowance": "per_tree" if cfg.tree_budget is not None else ("share" if budget else "none")}
        if sr is not None:
            settings = {"samples": len(sr.samples), "seed": cfg.seed, "verifier": settings["verifier"],
                        "temperature": cfg.temperatures[0]}
        r = Result(problem.id, question, the_task.name, None, "", "none", [], [], tokens, calls, pb.spent.usd, wall,
                   error=error, error_kind=kind, settings=settings, method=method)
        if sr is not None:
            r = self._sampling_result(r, sr, the_task)
        elif fr is not None:
            r = self._forest_result(r, fr, the_task)
        if r.answer is None and (self.raise_errors if raise_errors is None else raise_errors):
            failures = [x.failure for x in (fr.trees if fr else sr.samples if sr else []) if x.failure is not None]
            raise SolveError(r) from (cause or (failures[-1] if failures else None))
        return r

    @staticmethod
    def _distinct(answers: Iterable[str], task: Task, question: str) -> list[str]:
        seen: list[str] = []
        for a in answers:
            if not any(task.equivalent(a, b, question) for b in seen):
                seen.append(a)
        return seen

    def _sampling_result(self, r: Result, sr, task: Task) -> Result:
        r.answer, r.text, r.decision = sr.answer, sr.text, sr.how
        r.samples = [{f.name: getattr(s, f.name) for f in fields(s) if f.name != "failure"} for s in sr.samples]
        r.evaluation = {"asked": sr.eval_asked, "parsed": sr.eval_parsed}
        r.answers_seen = self._distinct((s.answer for s in sr.samples if s.answer is not None), task, r.question)
        if sr.answer is None and not r.error:
            r.error = "; ".join(s.error for s in sr.samples if s.error) or "no sample produced an answer"
            kinds = {s.error_kind for s in sr.samples if s.error_kind}
            r.error_kind = "backend" if "backend" in kinds else (kinds.pop() if kinds else "no_answer")
        return r

    def _forest_result(self, r: Result, fr, task: Task) -> Result:
        r.answer, r.text, r.decision = fr.answer, fr.text, fr.decision.how
        r.trees = [{"index": t.index, "input": t.input_kind, "input_note": t.input_note, "question": t.question,
                    "hint": t.hint, "temperature": t.temperature, "answer": t.answer, "q": t.q,
                    "rollouts": t.rollouts_done, "nodes": t.nodes, "depth": t.depth, "corrections": t.corrections,
                    "eval_asked": t.eval_asked, "eval_parsed": t.eval_parsed, "stopped": t.stopped,
                    "tokens": t.tokens, "error": t.error} for t in fr.trees]
        r.snapshots = [[asdict(s) for s in t.snapshots] for t in fr.trees]
        r.forest = [{"index": t.index, "input": t.input_kind, "question": t.question, "hint": t.hint,
                     "temperature": t.temperature, "answer": t.answer, "q": t.q, "best": t.best, "stopped": t.stopped,
                     "nodes": t.node_records} for t in fr.trees]
        r.evaluation = {"asked": sum(t.eval_asked for t in fr.trees), "parsed": sum(t.eval_parsed for t in fr.trees)}
        r.expert_tokens, r.expert_usage = fr.expert_tokens, fr.expert_usage
        r.early_stopped, r.budget_bound = fr.early_stopped, fr.budget_bound
        r.answers_seen = self._distinct((a for t in fr.trees for a in t.answers_seen), task, r.question)
        if fr.answer is None and not r.error:
            r.error = "; ".join(fr.errors) or "no tree produced an answer"
            stops = {t.stopped for t in fr.trees}
            r.error_kind = "backend" if "errors" in stops else "budget" if "budget" in stops else \
                "cancelled" if "cancelled" in stops else "no_answer"
        return r

    async def solve_many(self, problems: Iterable[str | Problem], *, parallel: int = 4,
                         **kwargs) -> AsyncIterator[Result]:
        """Solve problems `parallel` at a time; yields each result as soon as it is done. The problems
        are drawn from the iterable as slots free up, so a long (or endless) stream costs no memory."""
        source = iter(problems)
        pending: set[asyncio.Task] = set()
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
                for t in done:
                    yield t.result()
        finally:
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


_END = object()
