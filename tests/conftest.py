import pytest

from fot.sim import SimConfig, SimServer


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
