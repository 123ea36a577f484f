"""An aiohttp application on a port, started and stopped with `async with`: what `fot serve` and
`fot.sim` (the SIMULATED backend) have in common."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

S = TypeVar("S", bound="AppServer")


class AppServer:
    """Subclasses give `app()`, `host` and `port` (0: the OS picks one, and `port` says which once started)."""

    host: str
    port: int
    backlog = 128  # connections waiting to be accepted
    keepalive_timeout: float | None = None  # seconds an idle connection (or one whose headers never end) is kept;
    # None: aiohttp's default, which is about an hour
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self: S) -> S:
        # handler_cancellation: a client that disconnects cancels its handler (off by default since aiohttp 3.9)
        kw = {} if self.keepalive_timeout is None else {"keepalive_timeout": self.keepalive_timeout}
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None, **kw)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=self.backlog)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self: S) -> S:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
