"""`python -m fot.solve` end to end: results, resume, bad input, exit codes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fot.backend.local import free_port

from fot.solve import main
from helpers import read_rows, write_problems

ROOT = Path(__file__).resolve().parent.parent


def _problems(tmp_path, n=8, name="arith.jsonl"):
    return write_problems(tmp_path, n, seed=4, name=name)


def test_end_to_end_on_the_simulated_backend(tmp_path, capsys):
    probs = _problems(tmp_path)
    out = tmp_path / "out.jsonl"
    trace = tmp_path / "trace.jsonl"
    rc = main([str(probs), "--sim", "--trees", "2", "--rollouts", "2", "--out", str(out), "--trace", str(trace),
               "--price-in", "1", "--price-out", "2", "--quiet"])
    assert rc == 0
    rows = read_rows(out)
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
    for r in rows:
        assert set(r) >= {"id", "answer", "reference", "correct", "oracle_correct", "decision", "tokens", "calls",
                          "cost_usd", "wall_s", "trees", "snapshots", "error"}
        assert r["correct"] == (r["answer"] == r["reference"])
        assert r["oracle_correct"] >= r["correct"]
        # one snapshot per rollout; a tree sparse activation stopped (inactive) has fewer
        t0 = r["trees"][0]
        assert [s["rollout"] for s in r["snapshots"][0]] == list(range(t0["rollouts"] + 1))
        assert t0["rollouts"] == 2 or t0["stopped"] == "inactive"
        assert r["cost_usd"] > 0
    printed = capsys.readouterr().out
    assert "SIMULATED" in printed and "oracle pass@k" in printed and "accuracy" in printed
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["problems"] == 8 and summary["simulated"] is True
    calls = [json.loads(line) for line in trace.read_text().splitlines()]
    assert sum(r["calls"] for r in rows) == len(calls)


def test_resume_skips_finished_ids_and_repairs_a_torn_line(tmp_path):
    probs = _problems(tmp_path)
    out = tmp_path / "out.jsonl"
    assert main([str(probs), "--sim", "--trees", "1", "--rollouts", "1", "--out", str(out), "--limit", "3",
                 "--quiet"]) == 0
    first = read_rows(out)
    assert len(first) == 3
    with open(out, "a") as fh:
        fh.write('{"id": "arith-00')  # a crash mid-write
    assert main([str(probs), "--sim", "--trees", "1", "--rollouts", "1", "--out", str(out), "--quiet"]) == 0
    rows = read_rows(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == 8 == len(set(ids))
    assert rows[:3] == first  # the finished ones were kept as they were, not redone


@pytest.mark.parametrize("content,name,message", [
    ("", "empty.jsonl", "is empty"),
    ('{"question": "What is 1 + 1?"}\n{"id": 2, "question": 5.5, "answer": {"x": 1}}\n', "bad.jsonl",
     "bad.jsonl:2: field 'answer'"),
    ('{"question": "What is 1 + 1?"}\nnot json\n', "bad2.jsonl", "bad2.jsonl:2: not valid JSON"),
])
def test_bad_input_exits_2_naming_file_line_and_field(tmp_path, capsys, content, name, message):
    path = tmp_path / name
    path.write_text(content)
    out = tmp_path / "out.jsonl"
    assert main([str(path), "--sim", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err.replace("\n", "")
    assert not out.exists()


@pytest.mark.parametrize("args", [["--trees", "0"], ["--budget", "-5"], ["--rollouts", "x"], ["--task", "chess"]])
def test_bad_options_exit_2(tmp_path, args):
    probs = _problems(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([str(probs), "--sim", *args])
    assert info.value.code == 2


def test_no_backend_and_no_local_extra_names_the_install_command(tmp_path, capsys, monkeypatch):
    import importlib.util

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "xllamacpp" else real(name, *a))
    assert main([str(_problems(tmp_path)), "--out", str(tmp_path / "o.jsonl")]) == 1
    assert "pip install -e '.[local]'" in capsys.readouterr().err


def test_unreachable_backend_exits_1_quickly_naming_the_url(tmp_path, capsys, monkeypatch):
    from fot.backend.endpoints import Endpoints

    asked, real = [], Endpoints.models

    async def models(self, timeout):
        asked.append(timeout)
        return await real(self, timeout)

    monkeypatch.setattr(Endpoints, "models", models)
    rc = main([str(_problems(tmp_path)), "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o.jsonl")])
    assert rc == 1 and len(asked) == 1, "quickly: one look at the endpoint, no retries"
    assert "http://127.0.0.1:9/v1" in capsys.readouterr().err



@pytest.mark.slow
def test_ctrl_c_exits_130_keeps_whole_lines_and_resumes(tmp_path):
    port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "fot.sim", "--port", str(port), "--ttft", "0.03"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sim.stdout.readline()  # the banner: it is listening
        probs = _problems(tmp_path, n=30)
        out = tmp_path / "out.jsonl"
        cmd = [sys.executable, "-m", "fot.solve", str(probs), "--base-url", f"http://127.0.0.1:{port}/v1",
               "--trees", "2", "--rollouts", "2", "--parallel", "2", "--out", str(out), "--quiet"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "resume" in err
        partial = out.read_text()
        assert partial.endswith("\n")
        n_partial = len(partial.splitlines())
        assert 3 <= n_partial < 30
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        ids = [r["id"] for r in read_rows(out)]
        assert len(ids) == 30 == len(set(ids))
    finally:
        sim.send_signal(signal.SIGINT)
        sim.communicate(timeout=10)


def test_the_summary_reports_how_many_self_evaluations_could_be_read(tmp_path, capsys):
    probs = _problems(tmp_path, n=6)
    out = tmp_path / "out.jsonl"
    assert main([str(probs), "--sim", "--sim-profile", "eval_unreadable=0.5", "--trees", "2", "--rollouts", "2",
                 "--out", str(out), "--quiet"]) == 0
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    rows = read_rows(out)
    asked = sum(t["eval_asked"] for r in rows for t in r["trees"])
    parsed = sum(t["eval_parsed"] for r in rows for t in r["trees"])
    assert summary["eval_samples"] == asked > 0 and summary["eval_parse_rate"] == pytest.approx(parsed / asked)
    assert 0.3 < summary["eval_parse_rate"] < 0.7
    assert "self-evaluation scores read" in capsys.readouterr().out
