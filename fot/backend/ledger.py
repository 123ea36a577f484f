"""The ledger: one row per LLM call, the raw material of the meter.

Every call the engine makes (successful or not) becomes a `CallRecord`. Rows can be streamed to
a JSONL file as they happen (whole lines, flushed), so a crash loses at most the call in flight.
Summaries group rows by problem, tree or role; token totals are what the backend reported unless
a row says `estimated` (no usage in the response, or usage corrected for a server that counted
one choice of n).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Callable, Iterable

from ..errors import EnvironmentFailure


@dataclass(frozen=True)
class CallTag:
    """Where a call comes from in the search; carried into its ledger row."""

    problem: str | None = None
    tree: int | None = None
    rollout: int | None = None


@dataclass
class CallRecord:
    role: str
    problem: str | None = None
    tree: int | None = None
    rollout: int | None = None
    model: str = ""
    n: int = 1  # choices asked for
    choices: int = 0  # choices received
    requests: int = 0  # HTTP requests made (retries and n fallback included)
    attempts: int = 0  # attempts of the first request, retries included
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False  # some of these tokens are our count, not the server's
    charged_unknown: int = 0  # failed attempts the server may have charged (counted at their reservation)
    max_tokens: int = 0  # per choice, after the budget's clamp
    latency_s: float = 0.0
    endpoint: str = ""  # the endpoint(s) that served it, comma-separated (several: a retry moved, or n was split)
    outcome: str = "ok"  # ok | error kind (rate_limit, server, timeout, connection, malformed, client) | budget | cancelled
    error: str = ""
    cost_usd: float = 0.0
    started: float = field(default_factory=time.time)
    # only with trace_text (`--trace-text`): the messages sent and the texts received. The API key is never in
    # either (it lives in the HTTP client only); rows without them leave the keys out of the trace altogether
    messages: list | None = None
    texts: list | None = None

    @property
    def total_tokens(self) -> int:
        """What this call counts against a budget: the reported tokens plus the upper bound charged
        when its outcome is unknown."""
        return self.prompt_tokens + self.completion_tokens + self.charged_unknown


@dataclass
class Totals:
    calls: int = 0
    failed: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    unknown_tokens: int = 0
    estimated_calls: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens + self.unknown_tokens

    def add(self, r: CallRecord) -> None:
        self.calls += 1
        self.failed += r.outcome != "ok"
        self.requests += r.requests
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.cached_tokens += r.cached_tokens
        self.unknown_tokens += r.charged_unknown
        self.estimated_calls += r.estimated
        self.cost_usd += r.cost_usd
        self.latency_s += r.latency_s


KEEP_ROWS = 1024  # rows kept in memory; the trace file has every one


class Ledger:
    """Every row goes to the trace file (when there is one) as it is added; memory keeps only the
    running totals, the calls of the problems still in flight, and the last `keep` rows.

    A long run must not grow with its calls (v1 kept every row: 148 MiB for 9,243 calls), so `rows`
    and `by()` see the recent rows only; `Ledger.read(path)` loads a whole trace for analysis."""

    def __init__(self, path: str | os.PathLike | None = None, fsync: bool = False, keep: int | None = KEEP_ROWS):
        self.rows: deque[CallRecord] = deque(maxlen=keep)
        self.total = Totals()  # every row ever added
        self.calls_by_problem: dict[str | None, int] = defaultdict(int)  # the engine pops a problem when it ends
        # called with every row as it is added: whoever needs one problem's rows (fot.serve's usage) keeps
        # them itself, since `rows` forgets old ones
        self.observers: list[Callable[[CallRecord], None]] = []
        self.path = Path(path) if path is not None else None
        self._fsync = fsync
        self._fh: IO[str] | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                torn = False
                if self.path.is_file() and self.path.stat().st_size > 0:
                    with open(self.path, "rb") as fh:
                        fh.seek(-1, os.SEEK_END)
                        torn = fh.read(1) != b"\n"
                self._fh = open(self.path, "a", encoding="utf-8")
                if torn:  # a crash mid-line: end that line so the next row is not glued to it
                    self._fh.write("\n")
            except OSError as e:
                raise EnvironmentFailure(f"cannot write the trace {self.path}", e) from None

    def add(self, row: CallRecord) -> None:
        self.rows.append(row)
        self.total.add(row)
        self.calls_by_problem[row.problem] += 1
        for observe in self.observers:
            observe(row)
        if self._fh is not None:
            try:
                d = asdict(row)
                for k in ("messages", "texts"):
                    if d[k] is None:
                        del d[k]
                self._fh.write(json.dumps(d, separators=(",", ":")) + "\n")
                self._fh.flush()
                if self._fsync:
                    os.fsync(self._fh.fileno())
            except OSError as e:  # the disk, not the call, failed: stop the run rather than lose the trace
                raise EnvironmentFailure(f"cannot write the trace {self.path}", e) from None

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError:  # a write that failed is still buffered; its failure was already raised
                pass

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Calls recorded, all of them (not only the rows still in memory)."""
        return self.total.calls

    def totals(self, rows: Iterable[CallRecord] | None = None) -> Totals:
        if rows is None:
            return replace(self.total)
        t = Totals()
        for r in rows:
            t.add(r)
        return t

    def by(self, key: str) -> dict[object, Totals]:
        """Totals of the rows in memory grouped by a row field: 'problem', 'tree', 'role', 'outcome', ...
        (load the trace with `Ledger.read` to group a whole run)."""
        groups: dict[object, Totals] = defaultdict(Totals)
        for r in self.rows:
            groups[getattr(r, key)].add(r)
        return dict(groups)

    @staticmethod
    def read(path: str | os.PathLike) -> "Ledger":
        """Load rows from a JSONL trace; a torn last line (crash mid-write) is skipped."""
        led = Ledger(keep=None)
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue
                led.add(CallRecord(**d))
        return led
