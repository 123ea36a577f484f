"""Who gets a slot: at most `--max-active` forests at once, a bounded queue behind them, and each request's
own bill (its ledger rows by role) while it runs."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

from ..backend.ledger import CallRecord, Totals
from .protocol import ApiError


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
