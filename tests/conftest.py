import gc
import signal

import hypothesis  # noqa: F401 -- imported now, not compiled late: CPython 3.11.7 can raise "AST constructor
import pytest  # recursion depth mismatch" when a module is compiled while the collector runs old tests' finalizers

from fot.sim import SimConfig, SimServer


# A suite started in the background (nohup, `cmd &` in a script, some CI runners) inherits SIGINT ignored, and
# every child it starts would inherit that too: the tests that stop a child with Ctrl-C would hang. A handler of
# our own is reset to the default in each child at exec, so the children answer Ctrl-C however the suite began.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _collect_garbage():
    """Finalize each test's leftovers (sockets, transports) while its own loop is still known."""
    yield
    gc.collect()


@pytest.fixture
async def make_sim():
    """Start simulated backends (fot.sim, a test double) on loopback; all stopped after the test."""
    servers: list[SimServer] = []

    async def start(**kw) -> SimServer:
        server = await SimServer(SimConfig(**kw)).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.stop()


# `fot serve --sim` as a user starts it, for the client tests (tests/test_client_*.py): one per test module


@pytest.fixture(scope="module")
def served():
    from serving import start_serving

    s = start_serving()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def spent_server():
    """A server whose run budget (1 token) is spent before any request: every preset request is a 429."""
    from serving import start_serving

    s = start_serving("--run-budget", "1")
    yield s
    s.stop()
