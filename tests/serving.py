"""`fot serve --sim` as a user starts it (a child process on loopback), for the tests of real clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fot.backend.local import free_port

Q = "What is 17 * 23?"
# a small forest on a simulated solver that is nearly always right, so answers can be checked
SMALL = ["--trees", "2", "--rollouts", "1", "--reward-samples", "1", "--samples", "3",
         "--sim-profile", "p_first=0.999"]


@dataclass
class Serving:
    proc: subprocess.Popen
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=10) as r:
            return json.loads(r.read())

    def spent(self) -> int:
        """The tokens the server has spent upstream so far (its run budget's count)."""
        return self.health()["run_budget"]["spent"]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return out


def start_serving(*args: str) -> Serving:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "fot", "serve", "--sim", "--port", str(port), *SMALL, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    s = Serving(proc, port)
    deadline = time.monotonic() + 90
    while True:
        try:
            s.health()
            return s
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = s.stop() if proc.poll() is None else proc.communicate()[0]
                raise RuntimeError(f"fot serve did not start: {out}")
            time.sleep(0.2)
