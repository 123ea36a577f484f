"""The token-budget controller: a hard cap that is never exceeded, by any number of concurrent callers.

The rule, in one place:

    before a call   reserve  prompt_bound + n * max_tokens   at this budget and every ancestor,
                    clamping max_tokens to what is left; if a clamp would be needed while other
                    calls still hold reservations, wait for them to settle instead (they usually
                    give most of it back); refuse with BudgetExhausted when even `min_tokens`
                    cannot be funded and nothing is outstanding.
    after the call  settle   to the real usage (or release to zero if nothing was charged).

Invariant at every level: spent + reserved <= cap. Since a server never returns more than
`max_tokens` per choice and the prompt reservation is an upper bound on the prompt (see
`fot.tokens.byte_bound` and the client's calibration), spent never exceeds cap. A settle that is
larger than its reservation is recorded as `overrun_tokens` so a broken bound cannot hide.

Budgets nest: a run budget holds problem budgets, which hold per-tree shares; a child is
checked against its own cap and against all its ancestors. Children may be over-committed
(shares summing to more than the parent); the parent still holds the line.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from .errors import UsageError, FotError


class BudgetExhausted(FotError):
    """Not even a minimal call can be funded: the caller should stop cleanly."""

    kind = "budget"

    def __init__(self, budget: "Budget", needed: int, available: int):
        self.budget_name = budget.name
        self.needed = needed
        self.available = available
        super().__init__(
            f"budget '{budget.name}' exhausted: a call needs at least {needed} tokens, "
            f"{available} left"
        )


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None  # None: cached prompt tokens cost the same as input

    def cost(self, prompt: int, completion: int, cached: int = 0) -> float:
        cached = min(cached, prompt)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return ((prompt - cached) * self.input + cached * cached_rate + completion * self.output) / 1e6


@dataclass
class Reservation:
    """What one call holds between reserve and settle."""

    budget: "Budget"
    prompt_tokens: int  # reserved for the prompt (an upper bound)
    max_tokens: int  # per choice, after clamping: send this to the server
    n: int
    tokens: int  # prompt_tokens + n * max_tokens
    usd: float
    settled: bool = False


@dataclass
class Spend:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    unknown_tokens: int = 0  # calls whose outcome is unknown (cut off, unreadable): charged at their reservation
    usd: float = 0.0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens + self.unknown_tokens


@dataclass(eq=False)
class Budget:
    """A cap in tokens and/or dollars, optionally inside a parent budget. None means no cap."""

    tokens: int | None = None
    usd: float | None = None
    price: Price | None = None
    name: str = "run"
    parent: "Budget | None" = None
    spent: Spend = field(default_factory=Spend)
    reserved_tokens: int = 0
    reserved_usd: float = 0.0
    overrun_tokens: int = 0
    bound: int = 0  # calls this level clamped or refused (the meter: was a replayed search shaped by this cap?)
    _cond: asyncio.Condition | None = field(default=None, repr=False)
    _waiting: int = field(default=0, repr=False)
    _wakers: set = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.tokens is not None and self.tokens < 0:
            raise UsageError(f"budget '{self.name}': tokens must be >= 0, got {self.tokens}")
        if self.usd is not None and self.usd < 0:
            raise UsageError(f"budget '{self.name}': usd must be >= 0, got {self.usd}")
        if self.price is None and self.parent is not None:
            self.price = self.parent.price
        if self.usd is not None and self.price is None:
            raise UsageError(f"budget '{self.name}': a dollar cap needs a price table")

    # -- structure ---------------------------------------------------------------------------

    def child(self, tokens: int | None = None, usd: float | None = None, name: str = "") -> "Budget":
        return Budget(tokens=tokens, usd=usd, price=self.price, name=name or f"{self.name}/child", parent=self)

    def chain(self) -> list["Budget"]:
        out, b = [], self
        while b is not None:
            out.append(b)
            b = b.parent
        return out

    def _root(self) -> "Budget":
        return self.chain()[-1]

    def _condition(self) -> asyncio.Condition:
        root = self._root()
        if root._cond is None:
            root._cond = asyncio.Condition()
        return root._cond

    # -- reading -------------------------------------------------------------------------------

    @property
    def spent_tokens(self) -> int:
        return self.spent.total_tokens

    def remaining_tokens(self) -> float:
        """Tokens this budget could still fund, given its ancestors (inf when uncapped)."""
        room = math.inf
        for b in self.chain():
            if b.tokens is not None:
                room = min(room, b.tokens - b.spent_tokens - b.reserved_tokens)
        return room

    def _usd_of(self, prompt: int, completion: int) -> float:
        return 0.0 if self.price is None else self.price.cost(prompt, completion)

    def _completion_room(self, b: "Budget", prompt_tokens: int) -> float:
        """How many completion tokens level `b` can fund after the prompt."""
        room = math.inf
        if b.tokens is not None:
            room = b.tokens - b.spent_tokens - b.reserved_tokens - prompt_tokens
        if b.usd is not None:
            assert b.price is not None
            left = b.usd - b.spent.usd - b.reserved_usd - b.price.cost(prompt_tokens, 0)
            room = min(room, math.floor(left / b.price.output * 1e6) if b.price.output > 0 else math.inf)
        return room

    # -- reserve / settle ----------------------------------------------------------------------

    def try_reserve(self, prompt_tokens: int, max_tokens: int, n: int = 1, min_tokens: int = 1) -> Reservation | None:
        """Reserve now, or return None when the caller should wait for outstanding reservations.

        Raises BudgetExhausted when not even `min_tokens` per choice can be funded and no
        reservation is outstanding on the levels that limit it.
        """
        if max_tokens < 1 or n < 1 or prompt_tokens < 0:
            raise UsageError("max_tokens and n must be >= 1, prompt_tokens >= 0")
        min_tokens = max(1, min(min_tokens, max_tokens))
        levels = self.chain()
        rooms = [(b, self._completion_room(b, prompt_tokens)) for b in levels]
        room = min(r for _, r in rooms)
        per_choice = min(max_tokens, math.floor(room / n) if room != math.inf else max_tokens)
        if per_choice < max_tokens:
            limiting = [b for b, r in rooms if r < n * max_tokens]
            if any(b.reserved_tokens > 0 or b.reserved_usd > 0 for b in limiting):
                return None  # others may give tokens back: wait rather than clamp or refuse
        if per_choice < max_tokens:
            for b, r in rooms:
                b.bound += r < n * max_tokens
        if per_choice < min_tokens:
            tight = min(rooms, key=lambda br: br[1])[0]
            avail = max(0, int(min(room + prompt_tokens, tight.remaining_tokens())))
            raise BudgetExhausted(tight, prompt_tokens + n * min_tokens, avail)
        tokens = prompt_tokens + n * per_choice
        usd = self._usd_of(prompt_tokens, n * per_choice)
        for b in levels:
            b.reserved_tokens += tokens
            b.reserved_usd += usd
        return Reservation(self, prompt_tokens, per_choice, n, tokens, usd)

    async def reserve(self, prompt_tokens: int, max_tokens: int, n: int = 1, min_tokens: int = 1) -> Reservation:
        """Reserve, waiting while outstanding calls may give back enough for a full call."""
        res = self.try_reserve(prompt_tokens, max_tokens, n, min_tokens)
        if res is not None:  # the common case: funded at once, no lock to take
            return res
        cond = self._condition()
        async with cond:
            while True:
                res = self.try_reserve(prompt_tokens, max_tokens, n, min_tokens)
                if res is not None:
                    return res
                root = self._root()
                root._waiting += 1
                try:
                    await cond.wait()
                finally:
                    root._waiting -= 1

    def settle(self, res: Reservation, prompt: int, completion: int, cached: int = 0, unknown: int = 0) -> None:
        """Replace a reservation with what the backend really charged. `unknown`: tokens the backend
        may have charged without telling us (a response cut off or unreadable), counted as spent."""
        if res.settled:
            raise RuntimeError("reservation settled twice")
        res.settled = True
        real = prompt + completion + unknown
        usd = 0.0 if self.price is None else self.price.cost(prompt, completion, cached)
        if unknown:  # priced as the reservation was: an upper bound
            usd += res.usd * unknown / res.tokens if res.tokens else 0.0
        for b in res.budget.chain():
            b.reserved_tokens -= res.tokens
            b.reserved_usd -= res.usd
            if abs(b.reserved_usd) < 1e-12:
                b.reserved_usd = 0.0
            b.spent.prompt_tokens += prompt
            b.spent.completion_tokens += completion
            b.spent.cached_tokens += cached
            b.spent.unknown_tokens += unknown
            b.spent.usd += usd
            b.spent.calls += 1 if real else 0
            if real > res.tokens:
                b.overrun_tokens += real - res.tokens
        self._notify()

    def charge_unknown(self, res: Reservation) -> None:
        """The call's outcome is unknown (sent, then cut off or unreadable): it may have cost its whole
        reservation, so that is what it spends. This is what keeps the cap true when a backend did
        work it never reported."""
        self.settle(res, 0, 0, 0, unknown=res.tokens)

    def release(self, res: Reservation) -> None:
        """Give a reservation back untouched (the backend charged nothing)."""
        self.settle(res, 0, 0, 0)

    def _notify(self) -> None:
        root = self._root()
        cond = root._cond
        if cond is None or root._waiting == 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        async def wake() -> None:
            async with cond:
                cond.notify_all()

        task = loop.create_task(wake())
        root._wakers.add(task)  # keep a reference until it has run
        task.add_done_callback(root._wakers.discard)
