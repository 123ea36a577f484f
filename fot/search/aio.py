"""Running calls side by side without leaving any behind.

`asyncio.gather` lets the other awaitables run on when one fails: their calls keep spending after
the problem's result is written, so a result's tokens and calls would fall short of its ledger.
`gather_all` cancels the rest and waits for them before the first error goes on, so when a step
of the search returns or raises, every call it started has settled.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable


async def gather_all(*aws: Awaitable[Any]) -> list[Any]:
    """Like `asyncio.gather`, but on the first error (or our own cancellation) the siblings are
    cancelled and awaited before it propagates."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
