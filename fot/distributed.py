"""Problems spread over Ray workers (`fot.solve --ray [ADDRESS]`): why and how.

Why: one process runs one event loop on one core. A forest is mostly waiting on the backend, but at
64 trees x 8 rollouts and several problems at once the search's own CPU (prompts, parsing, the
budget, the ledger) fills that core; Ray workers each run their own `Engine` on their own core, or on
other machines, against the same backend.

How, in four rules:

* **One writer.** The driver alone writes the results file and `<out>.trees.jsonl` (and the trace:
  each worker ships its problem's call rows back with its result). A problem is written when its
  result reaches the driver, once: a result for an id already written is dropped. Resume and
  exactly-once are therefore the single-process ones (fot/measure/results.py): nothing a worker does touches
  a file, and a result that never arrives was never written.

* **Leases keep the run budget.** With `--run-budget R`, each worker's `Engine` has a run budget
  that starts at 0 tokens and is raised by a *lease* when a problem is sent to it. The driver only
  sends a problem when R minus everything granted (to live and dead workers) covers the lease, so
  the grants never sum to more than R, and a worker's engine never spends past its grant (the usual
  reserve-then-settle rule of fot/backend/budget.py). When a problem ends, the worker gives back what is
  neither spent nor reserved, up to the unspent part of that problem's lease; the driver subtracts
  it from the grant. Worst-case overshoot: none, the whole run spends at most R, as without Ray.

  The lease is `--budget` (a problem never spends more: its own cap), or, without `--budget`,
  R // `--parallel` (an equal share of what `--parallel` problems at once could hold together; a
  problem may use room a finished neighbour on the same worker left, never more than its worker's
  grant). When less than a lease is left, the driver waits for problems in flight to give tokens
  back (like a budget reservation, which waits rather than clamps); with nothing in flight, the next
  problem is sent alone with what is left, so the tail runs one problem at a time until the budget
  is spent, and problems then end with `error_kind` "budget" as they would without Ray. While the
  run budget does not bind, results are those of the single-process run (fot.sim: the same answers,
  tokens and calls per problem); once it binds, which problems get the last tokens may differ.

* **A worker that dies loses nothing finished.** Its unfinished problems go back to the front of
  the queue and run again, from the start, on the workers left; what it was granted stays counted
  as spent (conservative: it may have spent less, never more), so the re-runs cannot push the run
  past R. Its partial work is in no result (tokens per problem are those of the finished attempt).
  Dead workers are not replaced; with none left the run stops (exit 1, finished results kept).

* **Progress is polled.** Every half second the driver asks each worker how many rollouts its
  problems have done and feeds the same `on_rollout` progress callback fot.solve uses; a re-run
  problem's count only moves once it passes where the lost attempt had got to.

`--parallel` is the number of problems in flight in total, spread over the workers (each problem
goes to the worker with fewest in flight); `--concurrency` and `--rps` are per worker (each worker
has its own HTTP client). Workers are async Ray actors named `fot-worker-<run>-<i>` in namespace
`fot`. Ray is imported only here, and only when `--ray` is given.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import urllib.parse
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable

from .engine import Engine, Result
from .errors import FotError
from .backend.ledger import CallRecord, Ledger
from .tasks.problems import Problem

RAY_MISSING = "--ray needs the ray extra: pip install 'fot[ray]'"
NAMESPACE = "fot"
POLL_S = 0.5  # how often progress is asked of the workers
READY_TIMEOUT_S = 120.0  # workers that cannot be placed (too few CPUs on the cluster) fail the run after this


class RayUnavailable(FotError):
    """Ray is not installed, the cluster cannot be reached, or no worker is left."""

    kind = "environment"


def require_ray():
    """The `ray` module, or RayUnavailable with the install command."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(RAY_MISSING) from None
    return ray


@dataclass(frozen=True)
class Secret:
    """The API key on its way to the workers: never shown by repr, logs or Ray's dashboard of arguments."""

    value: str | None

    def __repr__(self) -> str:
        return "Secret(***)"


@dataclass
class WorkerSettings:
    """What each worker's Engine is built from, the same as the single-process path's Engine: every
    keyword of `Engine(...)` (base URL, model, concurrency, timeout, config, price, ...) but the key."""

    engine: dict[str, Any]
    api_key: Secret = Secret(None)
    capped: bool = False  # a run budget: the worker's engine starts at 0 tokens and grows by leases
    keep_rows: bool = False  # ship each problem's call rows back (the driver writes the trace)


@dataclass
class Outcome:
    """What a worker sends back for one problem."""

    result: Result
    given_back: int  # tokens of the lease returned to the driver's pool
    spent: int  # the worker's whole spend so far (progress)
    rows: list[CallRecord] = field(default_factory=list)


class FotWorker:
    """One Ray actor: one Engine, any number of problems at once on its event loop."""

    def __init__(self, settings: WorkerSettings):
        from .runtime import tune_gc

        tune_gc()  # the worker's process is ours: the same collector setting as fot.solve's (fot/runtime.py)
        kw = dict(settings.engine)
        if settings.capped:
            kw["run_budget"] = 0  # raised by each lease
        self.engine = Engine(api_key=settings.api_key.value, **kw)
        self.rollouts: dict[str, int] = {}
        self.rows: dict[str, list[CallRecord]] | None = {} if settings.keep_rows else None
        if self.rows is not None:
            self.engine.ledger.observers.append(
                lambda row: self.rows.setdefault(row.problem, []).append(row) if row.problem in self.rollouts else None)

    async def ready(self) -> dict:
        await self.engine.start()
        return {"host": socket.gethostname(), "pid": os.getpid()}

    def pid(self) -> int:
        """The worker's process id (operators, and the test that kills one mid-run)."""
        return os.getpid()

    async def close(self) -> None:
        """Close the engine's connections (and its trace) before the actor is killed."""
        await self.engine.aclose()

    def progress(self) -> dict:
        return {"rollouts": dict(self.rollouts), "spent": self.engine.budget.spent_tokens}

    async def solve(self, problem: Problem, lease: int | None, kwargs: dict) -> Outcome:
        budget = self.engine.budget
        if lease is not None:
            budget.tokens += lease
        self.rollouts[problem.id] = 0

        def on_rollout(pid: str, tree) -> None:
            self.rollouts[pid] = self.rollouts.get(pid, 0) + 1
        try:
            result = await self.engine.solve(problem, on_rollout=on_rollout, **kwargs)
        finally:
            self.rollouts.pop(problem.id, None)
        given = 0
        if lease is not None:  # what is neither spent nor reserved, up to this lease's unspent part
            free = budget.tokens - budget.spent_tokens - budget.reserved_tokens
            given = max(0, min(lease - result.tokens["total"], free))
            budget.tokens -= given
        rows = self.rows.pop(problem.id, []) if self.rows is not None else []
        return Outcome(result, given, budget.spent_tokens, rows)


def start_ray(address: str | None, workers: int | None = None) -> bool:
    """Join the cluster at `address`, or start a local Ray with at least `workers` CPUs. False when Ray was
    already running in this process (agent code, tests, a sweep that started it once for all its runs):
    then it is used as it is and left running."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.ERROR)
        except Exception as e:  # ConnectionError, RuntimeError, ... whatever the client raises
            raise RayUnavailable(f"cannot connect to the Ray cluster at {address}: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    else:
        cpus = max(1, os.cpu_count() or 1)
        ray.init(num_cpus=max(cpus, workers or 1), include_dashboard=False, logging_level=logging.ERROR)
    return True


@dataclass
class Worker:
    """The driver's view of one actor: what it holds and what it was granted."""

    index: int
    actor: Any
    name: str
    granted: int = 0
    in_flight: int = 0
    spent: int = 0  # last reported
    alive: bool = True


@dataclass
class Flight:
    problem: Problem
    worker: Worker
    lease: int | None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """ray.init(address=...) retries an unreachable GCS for minutes; a plain TCP connect says so at once."""
    if address in ("auto", "local"):
        return
    u = urllib.parse.urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = u.hostname, u.port
    except ValueError:
        raise RayUnavailable(f"--ray {address!r}: expected HOST:PORT or ray://HOST:PORT") from None
    if not host or not port:
        raise RayUnavailable(f"--ray {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


class RayPool:
    """Ray workers for one run: `async with RayPool(...) as pool: async for r in pool.solve_many(...)`.

    `address`: None or "" starts a local Ray (`num_cpus` at least `workers`); anything else connects
    to that cluster. If this process already has Ray initialized (agent code, tests), that is used and
    left running. `workers` defaults to the cluster's CPUs (at least 1)."""

    def __init__(self, settings: WorkerSettings, *, address: str | None = None, workers: int | None = None,
                 run_budget: int | None = None, ledger: Ledger | None = None,
                 notice: Callable[[str], None] = lambda message: None):
        self.settings = settings
        self.address = address or None
        self.want = workers
        self.run_budget = run_budget
        self.ledger = ledger  # the driver's: call rows shipped back are added to it (its trace file)
        self.notice = notice
        self.workers: list[Worker] = []
        self.died = 0
        self.reruns = 0
        self._started_ray = False
        self._ray = None

    # -- start and stop ------------------------------------------------------------------------

    async def __aenter__(self) -> "RayPool":
        ray = self._ray = require_ray()
        self._started_ray = start_ray(self.address, self.want)
        try:
            n = self.want or max(1, int(ray.cluster_resources().get("CPU", 1)))
            run = uuid.uuid4().hex[:8]
            actor_class = ray.remote(num_cpus=1, max_restarts=0)(FotWorker)
            for i in range(n):
                name = f"fot-worker-{run}-{i}"
                actor = actor_class.options(name=name, namespace=NAMESPACE).remote(self.settings)
                self.workers.append(Worker(i, actor, name))
            try:
                await asyncio.wait_for(asyncio.gather(*(w.actor.ready.remote() for w in self.workers)),
                                       READY_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise RayUnavailable(f"{n} Ray workers could not all start within {READY_TIMEOUT_S:.0f} s "
                                     "(too few free CPUs on the cluster? give --ray-workers)") from None
            except ray.exceptions.RayError as e:
                cause = e.__cause__ or e  # the worker's own error (e.g. BackendUnreachable) when there is one
                raise RayUnavailable(f"Ray workers failed to start: {str(cause).strip().splitlines()[-1]}") from None
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        ray = self._ray
        if ray is None:
            return
        alive = [w for w in self.workers if w.alive]
        try:  # let the live workers close their connections; a worker that does not answer is killed anyway
            await asyncio.wait_for(asyncio.gather(*(w.actor.close.remote() for w in alive), return_exceptions=True),
                                   timeout=5.0)
        except (asyncio.TimeoutError, Exception):
            pass
        for w in self.workers:
            try:
                ray.kill(w.actor, no_restart=True)
            except Exception:  # already gone
                pass
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self._ray = None

    # -- the budget ----------------------------------------------------------------------------

    @property
    def granted(self) -> int:
        """Tokens committed out of the run budget: every live worker's grant, and every dead one's whole."""
        return sum(w.granted for w in self.workers)

    @property
    def spent_tokens(self) -> int:
        """Tokens the workers have reported spending so far (live; polled)."""
        return sum(w.spent for w in self.workers)

    def _lease(self, budget: int | None, parallel: int, in_flight: int) -> int | None | bool:
        """The lease for the next problem: None (no run budget), a token count, or False (wait)."""
        if self.run_budget is None:
            return None
        full = budget if budget is not None else max(1, self.run_budget // max(1, parallel))
        free = self.run_budget - self.granted
        if free >= full:
            return full
        if in_flight:
            return False  # problems in flight will give tokens back
        return max(0, free)  # the tail: alone, with what is left

    # -- the run ---------------------------------------------------------------------------------

    async def solve_many(self, problems: Iterable[Problem], *, parallel: int = 4, budget: int | None = None,
                         on_rollout: Callable[[str, Any], None] | None = None, **kwargs) -> AsyncIterator[Result]:
        """Like `Engine.solve_many`: yields each result as it arrives, `parallel` problems in flight in
        total. `budget` is the per-problem cap (and the lease); other keywords go to `Engine.solve`."""
        ray = self._ray
        assert ray is not None, "use `async with RayPool(...)`"
        kwargs = {**kwargs, "budget": budget}
        queue: deque[Problem] = deque(problems)
        flights: dict[asyncio.Future, Flight] = {}
        seen: dict[str, int] = {}  # rollouts reported per problem (the most any attempt reached)
        written: set[str] = set()
        last_poll = time.monotonic()
        try:
            while queue or flights:
                while queue and len(flights) < max(1, parallel):
                    live = [w for w in self.workers if w.alive]
                    if not live:
                        raise RayUnavailable("every Ray worker died; finished results are kept, run the same "
                                             "command to resume")
                    lease = self._lease(budget, parallel, len(flights))
                    if lease is False:
                        break
                    p = queue.popleft()
                    w = min(live, key=lambda w: (w.in_flight, w.index))
                    w.granted += lease or 0
                    w.in_flight += 1
                    flights[asyncio.ensure_future(w.actor.solve.remote(p, lease, kwargs))] = Flight(p, w, lease)
                done, _ = await asyncio.wait(flights, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
                if time.monotonic() - last_poll >= POLL_S:
                    last_poll = time.monotonic()
                    await self._poll(flights, seen, on_rollout)
                for fut in done:
                    f = flights.pop(fut)
                    f.worker.in_flight -= 1
                    try:
                        out: Outcome = fut.result()
                    except ray.exceptions.RayActorError as e:
                        self._lost(f, e, flights, queue)
                        continue
                    f.worker.granted -= out.given_back
                    f.worker.spent = max(f.worker.spent, out.spent)
                    seen.pop(f.problem.id, None)
                    if out.result.id in written:
                        continue
                    written.add(out.result.id)
                    if self.ledger is not None:
                        for row in out.rows:
                            self.ledger.add(row)
                        self.ledger.calls_by_problem.pop(out.result.id, None)
                    yield out.result
        finally:
            for fut in flights:
                fut.cancel()
            await asyncio.gather(*flights, return_exceptions=True)

    def _lost(self, f: Flight, error: Exception, flights: dict, queue: deque) -> None:
        """A worker died under this problem: mark it dead once (its grant stays counted as spent) and put
        the problem back at the front of the queue, to run again from the start on another worker."""
        w = f.worker
        if w.alive:
            w.alive = False
            self.died += 1
            try:
                self._ray.kill(w.actor, no_restart=True)  # if only unreachable, it must not go on spending
            except Exception:
                pass
            lost = sum(1 for g in flights.values() if g.worker is w) + 1
            self.notice(f"Ray worker {w.index} died ({type(error).__name__}); its {lost} unfinished problem(s) run "
                        f"again on the {sum(x.alive for x in self.workers)} left" +
                        (f"; the {w.granted:,} tokens it was granted stay counted against --run-budget"
                         if self.run_budget is not None else ""))
        self.reruns += 1
        queue.appendleft(f.problem)

    async def _poll(self, flights: dict, seen: dict[str, int], on_rollout: Callable[[str, Any], None] | None) -> None:
        live = [w for w in self.workers if w.alive and w.in_flight]
        replies = await asyncio.gather(*(asyncio.wait_for(asyncio.ensure_future(w.actor.progress.remote()), 5.0)
                                         for w in live), return_exceptions=True)
        flying = {f.problem.id for f in flights.values()}
        for w, reply in zip(live, replies):
            if isinstance(reply, BaseException):
                continue  # a dead worker shows up as its problems' errors
            w.spent = max(w.spent, reply["spent"])
            for pid, n in reply["rollouts"].items() if on_rollout is not None else ():
                if pid in flying and n > seen.get(pid, 0):
                    for _ in range(n - seen.get(pid, 0)):
                        on_rollout(pid, None)
                    seen[pid] = n

    def summary(self) -> dict:
        return {"workers": len(self.workers), "died": self.died, "reruns": self.reruns,
                "granted_to_dead_workers": sum(w.granted for w in self.workers if not w.alive)}
