"""`fot serve`: the command. Its options are generated from the settings (fot/options.py), the same fields
as `fot.solve`'s, plus the server's own below; the upstream starts as fot.solve's does (fot/upstream.py)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Callable

from ..config import BackendSettings, RunSettings, SearchConfig, setting
from ..engine import Engine
from ..errors import FotError
from ..options import Parser, add_config_option, add_settings, build, given, read_settings
from ..runtime import tune_gc
from ..upstream import check_sim, price_of, search_config, start_upstream
from .app import FotServer
from .protocol import DEFAULT_REQUEST_BUDGET, LIMITS, ServeConfig

log = logging.getLogger("fot.serve")

# the run settings a server takes: each request is a problem
RUN_FIELDS = ("task", "samples", "budget", "run_budget", "trace")


@dataclass(frozen=True)
class ServerSettings:
    """The server's own settings (the rest are fot.solve's: backend, search, and the run's budgets)."""

    host: str = setting("127.0.0.1", "the address to listen on (loopback by default)")
    port: int = setting(8100, "the port to listen on (0: any free one)", minimum=0, maximum=65535)
    server_api_key: str | None = setting(None, "clients must send this as 'Authorization: Bearer KEY' (default "
                                               "$FOT_SERVE_API_KEY; none: open)")
    max_active: int = setting(8, "forests solved at once", minimum=1)
    queue_limit: int = setting(32, "requests waiting for a slot; beyond it: 429 with Retry-After", minimum=0)
    idle_timeout: float = setting(15.0, "close a connection idle (or still sending its headers) this many seconds; "
                                        "a body not whole by twice this is refused with 408", above=0,
                                  metavar="SECONDS")
    log_level: str = setting("INFO", "how much to log", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def parser() -> argparse.ArgumentParser:
    from . import __doc__ as doc

    ap = Parser(prog="python -m fot.serve", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(ap)
    add_settings(ap, ServerSettings, "server")
    add_settings(ap, BackendSettings, "upstream")
    add_settings(ap, SearchConfig, "search (defaults for the presets; a request's model name and extra_body override)")
    add_settings(ap, RunSettings, "requests", only=RUN_FIELDS)
    for action in ap._actions:  # a server has a default request budget of its own (fot.solve has none)
        if action.dest == "budget":
            action.help = (f"tokens per request when the request names none (hard cap; default "
                           f"{DEFAULT_REQUEST_BUDGET}; none: no cap)")
    return ap


@dataclass(frozen=True)
class ServeSettings:
    server: ServerSettings
    backend: BackendSettings
    search: dict
    run: RunSettings

    def config(self) -> SearchConfig:
        return search_config(self.backend, self.search)


def settings_from(args: argparse.Namespace) -> ServeSettings:
    file_values, backend, search, run = read_settings(args)
    server = build(ServerSettings, given(args, ServerSettings, file_values))
    if server.server_api_key is None and os.environ.get("FOT_SERVE_API_KEY"):
        server = dataclasses.replace(server, server_api_key=os.environ["FOT_SERVE_API_KEY"])
    run = {k: v for k, v in run.items() if k in RUN_FIELDS}
    run.setdefault("budget", DEFAULT_REQUEST_BUDGET)  # `--budget none`: no cap (the request's own still holds)
    return ServeSettings(server, backend, search, build(RunSettings, run))


async def serve(s: ServeSettings, ready: Callable[[FotServer], None] | None = None) -> int:
    """Start the upstream (fot.sim, the given URLs, or the embedded model), the engine and the server; run
    until SIGINT or SIGTERM, then stop cleanly: the forests still running are cancelled with their requests."""
    b, r, srv = s.backend, s.run, s.server
    cfg = s.config()
    async with AsyncExitStack() as stack:
        try:
            up = await start_upstream(stack, b, seed=cfg.seed, say=log.info)
            engine = Engine(None, up.model, b.api_key, base_urls=up.base_urls, concurrency=up.concurrency,
                            rps=b.rps, timeout=b.timeout, max_attempts=b.max_attempts, price=price_of(b),
                            run_budget=r.run_budget, trace=r.trace, config=cfg, context_window=up.context_window)
            stack.push_async_callback(engine.aclose)
            await engine.start()
        except FotError as e:
            log.error("%s", e)
            return 1
        config = ServeConfig(host=srv.host, port=srv.port, api_key=srv.server_api_key, max_active=srv.max_active,
                             queue_limit=srv.queue_limit, budget=r.budget, trees=cfg.trees, rollouts=cfg.rollouts,
                             samples=min(r.samples, LIMITS["samples"]), task=r.task, simulated=up.simulated,
                             idle_timeout_s=srv.idle_timeout, body_timeout_s=2 * srv.idle_timeout)
        try:
            server = await stack.enter_async_context(FotServer(engine, config))
        except OSError as e:  # the port is taken, or the host is not one of ours: the environment, one line
            log.error("cannot listen on %s:%s: %s", srv.host, srv.port, e.strerror or e)
            return 1
        log.info("fot.serve: %s on %s [%s]; presets: %s; any other model name is passed through to the upstream",
                 server.base_url, up.label, engine.model, ", ".join(server.presets()))
        log.info("per-request budget: %s (a request's extra_body {\"fot\": {\"budget\": N}} overrides it; "
                 "--budget N or --budget none to change it)",
                 f"{r.budget:,} tokens" if r.budget is not None else "none (no cap)")
        if ready is not None:
            ready(server)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: %d requests served, %d tokens spent upstream", server.served, engine.budget.spent_tokens)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    try:
        settings = settings_from(args)
        check_sim(settings.backend)
    except ValueError as e:
        ap.error(str(e))
    tune_gc()
    logging.basicConfig(level=settings.server.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(serve(settings))
    except KeyboardInterrupt:
        log.info("stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
