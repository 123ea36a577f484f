"""Issue 12: what broke when the engine was attacked as a user's bad day would; one test per defect."""

import asyncio
import contextlib
import json

import pytest

from fot import Budget, BudgetExhausted, Engine, FotError, LLMClient, LLMError, Problem, SolveError
from fot.engine import minimum_budget
from fot.tasks import get_task
from helpers import FakeBackend, ok


def _replies(critique_status=400, eval_delay=0.5):
    """Answers at once, a critique that fails without retry, self-evaluations that take a while."""
    def reply(role, body):
        if role == "critique":
            return critique_status, {"error": {"message": "bad request (test)", "type": "invalid_request_error"}}, 0
        if role == "evaluate":
            return 200, ok(body, "Looks right.\nScore: 70", 12), eval_delay
        return 200, ok(body, "2 + 2 = 4\nFinal Answer: 4", 20), 0
    return reply


async def test_a_failed_call_cancels_its_siblings_so_the_result_holds_every_call_and_token(tmp_path):
    # the critique fails while the selected node's re-score is still in flight: before, the re-score ran on
    # after the result was written, so the result's tokens and calls fell short of the ledger
    async with FakeBackend(_replies()) as fake:
        async with Engine(fake.base_url, "fake", trace=tmp_path / "trace.jsonl") as engine:
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=1, rollouts=1)
            await asyncio.sleep(1.0)  # anything still running would land in the ledger now
            rows = [row for row in engine.ledger.rows if row.problem == "p1"]
            assert r.calls == len(rows)
            assert r.tokens["total"] == sum(row.total_tokens for row in rows)
            assert len(fake.served) == sum(row.outcome in ("ok", "cancelled") for row in rows)  # every served request is a row
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert len(trace) == len(rows)


async def test_the_trace_counts_choices_and_marks_cut_off_calls_cancelled(tmp_path):
    async with FakeBackend(_replies()) as fake:
        async with Engine(fake.base_url, "fake", trace=tmp_path / "trace.jsonl") as engine:
            await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=1, rollouts=1)
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert all(t["choices"] == t["n"] for t in trace if t["outcome"] == "ok")
    assert any(t["choices"] >= 1 for t in trace)
    cut = [t for t in trace if t["role"] == "evaluate" and t["rollout"] == 1]
    assert cut and all(t["outcome"] == "cancelled" for t in cut), cut


async def test_a_response_dropped_mid_body_is_charged_its_reservation_so_the_cap_holds_upstream():
    # the backend did the work and the connection died after the headers: before, such calls were free,
    # so with half of them dropped the backend served twice the cap while the budget said "within"
    calls = {"n": 0}

    def reply(role, body):
        calls["n"] += 1
        return "drop" if calls["n"] % 2 else (200, ok(body, "Final Answer: 4", 30), 0)

    cap = 2000
    async with FakeBackend(reply) as fake:
        budget = Budget(tokens=cap)
        async with LLMClient(fake.base_url, "fake", budget=budget, max_attempts=1) as llm:
            with pytest.raises(BudgetExhausted):
                for _ in range(200):
                    try:
                        await llm.chat([{"role": "user", "content": "What is 2 + 2?"}], max_tokens=100)
                    except LLMError as e:
                        assert e.kind == "connection"
        served = sum(s["usage"]["total_tokens"] for s in fake.served)
        assert served <= cap  # what the backend really did stays inside the cap
        assert budget.spent_tokens >= served  # and what we count covers it
        dropped = [r for r in llm.ledger.rows if r.outcome == "connection"]
        assert dropped and all(r.charged_unknown > 0 for r in dropped)
        assert budget.spent_tokens == sum(r.total_tokens for r in llm.ledger.rows)


async def test_a_connection_that_never_opened_costs_nothing():
    budget = Budget(tokens=10_000)
    from fot.backend.local import free_port
    async with LLMClient(f"http://127.0.0.1:{free_port()}/v1", "fake", budget=budget, max_attempts=1) as llm:
        with pytest.raises(LLMError):
            await llm.chat([{"role": "user", "content": "What is 2 + 2?"}], max_tokens=100)
    assert budget.spent_tokens == 0 and llm.ledger.rows[0].charged_unknown == 0


@pytest.mark.parametrize("key", ["sk-a1b2", "k9x"])
async def test_a_short_api_key_echoed_by_the_backend_reaches_neither_results_nor_trace(tmp_path, key):
    def reply(role, body):
        return 401, {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}, 0

    async with FakeBackend(reply) as fake:
        async with Engine(fake.base_url, "fake", api_key=key, trace=tmp_path / "trace.jsonl", max_attempts=1) as engine:
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=1, rollouts=0)
    assert r.answer is None and r.error
    assert key not in json.dumps(r.to_dict())
    assert key not in (tmp_path / "trace.jsonl").read_text()


async def test_errors_are_typed_and_agent_code_can_ask_for_an_exception():
    def reply(role, body):
        return 500, {"error": {"message": "boom", "type": "server_error"}}, 0

    async with FakeBackend(reply) as fake:
        async with Engine(fake.base_url, "fake", max_attempts=1) as engine:
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=2, rollouts=1)
            assert r.answer is None and r.error_kind == "backend"
            with pytest.raises(SolveError) as caught:
                await engine.solve(Problem("p2", "What is 2 + 2?"), task="arith", trees=1, rollouts=0,
                                   raise_errors=True)
    e = caught.value
    assert isinstance(e, FotError) and e.kind == "backend" and e.result.id == "p2"
    assert isinstance(e.__cause__, LLMError) and e.__cause__.status == 500


async def test_a_budget_too_small_for_the_forest_is_refused_before_anything_is_sent():
    served = []

    def reply(role, body):
        served.append(role)
        return 200, ok(body, "Final Answer: 4", 5), 0

    async with FakeBackend(reply) as fake:
        async with Engine(fake.base_url, "fake") as engine:
            least = minimum_budget("What is 2 + 2?", get_task("arith"), engine.config.with_(trees=3))
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=3, rollouts=1, budget=least - 1)
            assert r.error_kind == "budget" and str(least) in r.error and r.calls == 0 and not served
            with pytest.raises(SolveError):
                await engine.solve(Problem("p2", "What is 2 + 2?"), task="arith", trees=3, budget=10, raise_errors=True)
            r = await engine.solve(Problem("p3", "What is 2 + 2?"), task="arith", trees=3, rollouts=0, budget=least)
            assert r.answer == "4"  # the minimum is enough for an answer from every tree
            assert all(t["answer"] == "4" for t in r.trees)


async def test_a_question_the_task_cannot_judge_is_an_input_error_not_a_search():
    async with FakeBackend(lambda role, body: (200, ok(body, "Final Answer: 24", 5), 0)) as fake:
        async with Engine(fake.base_url, "fake") as engine:
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="game24", trees=1, rollouts=0)
    assert r.error_kind == "input" and r.calls == 0 and not fake.served


# -- the command line: environment failures, one-line errors, settings that do nothing, a second run ----------

import errno  # noqa: E402
import fcntl  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from fot.solve import main  # noqa: E402
from helpers import read_rows, write_problems  # noqa: E402

SIM = ["--sim", "--trees", "2", "--rollouts", "1", "--quiet"]


def _one_line_err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_a_trace_on_a_full_disk_stops_the_run_and_marks_nothing_finished(tmp_path, capsys):
    probs, out = write_problems(tmp_path, 4, seed=3, name="p.jsonl"), tmp_path / "out.jsonl"
    rc = main([str(probs), *SIM, "--out", str(out), "--trace", "/dev/full"])
    err = _one_line_err(capsys)
    assert rc == 1 and "No space left on device" in err and "trace" in err
    assert not out.exists() or read_rows(out) == []  # before: every problem "finished" with OSError
    assert main([str(probs), *SIM, "--out", str(out)]) == 0  # the rerun does them all
    assert len(read_rows(out)) == 4


def test_results_on_a_full_disk_stop_with_one_line_and_only_whole_lines(tmp_path, capsys, monkeypatch):
    probs, out = write_problems(tmp_path, 5, seed=3, name="p.jsonl"), tmp_path / "out.jsonl"
    import fot.solve as solve

    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > 4:  # two problems written, each a trees line then a results line
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(solve.os, "fsync", fsync)
    rc = main([str(probs), *SIM, "--parallel", "1", "--out", str(out)])
    err = _one_line_err(capsys)
    assert rc == 1 and "cannot write results" in err and "No space left" in err
    assert len(read_rows(out)) == 2  # the two written lines, whole; the failed one cut back off
    assert [r["id"] for r in read_rows(tmp_path / "out.trees.jsonl")] == [r["id"] for r in read_rows(out)]
    monkeypatch.setattr(solve.os, "fsync", real_fsync)
    assert main([str(probs), *SIM, "--out", str(out)]) == 0 and len(read_rows(out)) == 5


@pytest.mark.parametrize("where, rc, words", [
    ("out-under-a-file", 1, "cannot write"),
    ("trace-is-a-directory", 2, "--trace is a directory"),
    ("out-is-a-directory", 2, "--out is a directory"),
])
def test_unusable_output_paths_get_one_line(tmp_path, capsys, where, rc, words):
    probs = write_problems(tmp_path, 2, seed=3, name="p.jsonl")
    (tmp_path / "afile").write_text("x")
    args = {"out-under-a-file": ["--out", str(tmp_path / "afile" / "out.jsonl")],
            "trace-is-a-directory": ["--out", str(tmp_path / "o.jsonl"), "--trace", str(tmp_path)],
            "out-is-a-directory": ["--out", str(tmp_path)]}[where]
    assert main([str(probs), *SIM, *args]) == rc
    assert words in _one_line_err(capsys)


@pytest.mark.parametrize("args, words", [
    (["--budget", "0"], "--budget must be >= 1"),
    (["--run-budget", "0"], "--run-budget must be >= 1"),
    (["--timeout", "0"], "--timeout must be > 0"),
    (["--base-url", "http://127.0.0.1:99999/v1"], "Port out of range"),
])
def test_settings_that_would_do_nothing_are_refused(tmp_path, capsys, args, words):
    probs = write_problems(tmp_path, 2, seed=3, name="p.jsonl")
    with pytest.raises(SystemExit) as e:
        main([str(probs), "--quiet", "--out", str(tmp_path / "o.jsonl"), *args])
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_a_budget_too_small_for_the_forest_is_refused_up_front_with_the_minimum(tmp_path, capsys):
    probs, out = write_problems(tmp_path, 2, seed=3, name="p.jsonl"), tmp_path / "o.jsonl"
    assert main([str(probs), *SIM, "--budget", "50", "--out", str(out)]) == 2
    err = _one_line_err(capsys)
    least = int(err.split("below the ")[1].split()[0])
    assert f"give --budget {least}" in err and (not out.exists() or out.read_text() == "")
    assert main([str(probs), *SIM, "--budget", str(least), "--out", str(out)]) == 0
    assert all(r["answer"] is not None or r["error_kind"] for r in read_rows(out))


def test_a_rerun_with_other_settings_is_refused_unless_asked(tmp_path, capsys):
    probs, out = write_problems(tmp_path, 4, seed=3, name="p.jsonl"), tmp_path / "o.jsonl"
    assert main([str(probs), *SIM, "--limit", "2", "--out", str(out)]) == 0
    assert read_rows(out)[0]["run"]["trees"] == 2 and read_rows(out)[0]["run"]["model"] == "fot-sim"
    capsys.readouterr()
    assert main([str(probs), "--sim", "--trees", "3", "--rollouts", "1", "--quiet", "--out", str(out)]) == 2
    assert "trees 2 -> 3" in _one_line_err(capsys) and len(read_rows(out)) == 2
    assert main([str(probs), *SIM, "--budget", "5000", "--out", str(out)]) == 2
    assert main([str(probs), *SIM, "--out", str(out)]) == 0 and len(read_rows(out)) == 4  # same settings: resumes
    assert main([str(probs), "--sim", "--trees", "3", "--rollouts", "1", "--quiet", "--out", str(out),
                 "--resume-changed", "--limit", "4"]) == 0


def test_a_second_run_on_the_same_out_is_refused_while_the_first_holds_it(tmp_path, capsys):
    probs, out = write_problems(tmp_path, 2, seed=3, name="p.jsonl"), tmp_path / "o.jsonl"
    with open(str(out) + ".lock", "a") as held:  # what a first run holds for its whole length
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main([str(probs), *SIM, "--out", str(out)]) == 2
        assert "another fot.solve run is writing" in _one_line_err(capsys)
        assert not out.exists()
    assert main([str(probs), *SIM, "--out", str(out)]) == 0 and len(read_rows(out)) == 2


def test_two_real_runs_at_once_write_each_problem_once(tmp_path):
    probs, out = write_problems(tmp_path, 6, seed=3, name="p.jsonl"), tmp_path / "o.jsonl"
    cmd = [sys.executable, "-m", "fot.solve", str(probs), *SIM, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    rows = read_rows(out)
    assert len(rows) == len({r["id"] for r in rows}) == 6
    assert codes in ([0, 0], [0, 2])  # the second either waited its turn (nothing left to do) or was refused


def _loading_libraries(pid: int) -> bool:
    """True once the child is loading the HTTP client (an aiohttp extension is mapped): inside fot.solve's
    own imports, past the interpreter's start, which is Python's, not ours."""
    try:
        return "/aiohttp/" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("when", ["while the libraries load", 0.5, 1.0])
def test_ctrl_c_during_start_up_exits_130_not_by_the_signal(tmp_path, when):
    probs = write_problems(tmp_path, 200, seed=3, name="p.jsonl")  # still running when the signal comes
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    p = subprocess.Popen([sys.executable, "-m", "fot.solve", str(probs), *SIM, "--out", str(tmp_path / "o.jsonl")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if isinstance(when, float):
        time.sleep(when)
    else:
        deadline = time.monotonic() + 30
        while not _loading_libraries(p.pid) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.002)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()[-300:]
    assert b"Traceback" not in err and b"interrupted" in err


async def test_memory_holds_recent_rows_only_and_nothing_of_finished_problems(tmp_path):
    # v1 kept every ledger row (about 1 KB a call, without end); benchmarks/memory.py shows RSS over 50,000 calls
    from fot.backend.ledger import CallRecord, Ledger

    led = Ledger(tmp_path / "t.jsonl", keep=100)
    for i in range(1000):
        led.add(CallRecord(role="answer", problem=f"p{i}", prompt_tokens=3, completion_tokens=2))
    assert len(led.rows) == 100 and len(led) == 1000 and led.totals().total_tokens == 5000
    assert len(Ledger.read(tmp_path / "t.jsonl").rows) == 1000  # the trace has them all

    async with FakeBackend(lambda role, body: (200, ok(body, "Final Answer: 4\nScore: 70", 5), 0)) as fake:
        async with Engine(fake.base_url, "fake") as engine:
            def endless():
                i = 0
                while True:  # v1 listed the problems first: an endless stream never started
                    i += 1
                    yield Problem(f"e{i}", "What is 2 + 2?")

            got = []
            async with contextlib.aclosing(engine.solve_many(endless(), parallel=3, task="arith", trees=1,
                                                             rollouts=0)) as results:
                async for r in results:
                    got.append(r)
                    if len(got) == 7:
                        break
            assert all(r.answer == "4" for r in got)
            await asyncio.sleep(0.2)
            assert not engine.ledger.calls_by_problem  # finished problems leave nothing behind
