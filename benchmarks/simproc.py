"""`python -m fot.sim` (the SIMULATED backend, a test double) in its own process, for the benchmarks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimProcess:
    """`python -m fot.sim` in its own process (its own core), as a real backend would be."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "fot.sim", "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.proc.stdout.readline()  # the banner: listening
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/sim/stats") as r:
            return json.loads(r.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
