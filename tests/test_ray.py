"""`fot.solve --ray`: problems over Ray workers (fot/distributed.py) on a local Ray started here.

What must hold with workers: every problem written exactly once, by the driver, even when a worker is
killed mid-run; the run budget held across workers, the dead worker's partial spend included (counted
by the backend itself, fot.sim's /sim/stats); the same answers as the single-process run; resume;
and no Ray at all without --ray.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed (pip install -e '.[ray]')")

from fot.local import free_port  # noqa: E402
from fot.solve import main  # noqa: E402
from fot.sweep import main as sweep_main  # noqa: E402
from helpers import read_rows, write_problems  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (2 CPUs: 2 workers); fot.solve --ray uses it as it finds it initialized."""
    os.environ["PYTHONPATH"] = ENV["PYTHONPATH"]  # the workers import this checkout's fot
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


class SimProcess:
    """`python -m fot.sim` in its own process, with latency, so a run lasts long enough to kill a worker in,
    and so its /sim/stats count every token served, a dead worker's lost work included."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "fot.sim", "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
        self.proc.stdout.readline()  # the banner: listening
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def served_tokens(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/sim/stats") as r:
            s = json.loads(r.read())
        return s["reported_prompt"] + s["reported_completion"] + s["unreported_prompt"] + s["unreported_completion"]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=10)


@pytest.fixture
def sim():
    s = SimProcess("--ttft", "0.05")
    yield s
    s.close()


def kill_a_worker_when(out: Path, finished: int, killed: list, delay: float = 0.15) -> threading.Thread:
    """`delay` seconds after `finished` results are written (the next problems are then part-way), SIGKILL
    one of the run's Ray workers (named actors, fot/distributed.py)."""
    def watch():
        deadline = time.time() + 60
        while time.time() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= finished:
                time.sleep(delay)
                names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                               if a["name"].startswith("fot-worker-"))
                actor = ray.get_actor(names[0], namespace="fot")
                pid = ray.get(actor.pid.remote())
                os.kill(pid, signal.SIGKILL)
                killed.append((names[0], pid, len(out.read_text().splitlines())))
                return
            time.sleep(0.01)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def by_id(rows):
    return {r["id"]: r for r in rows}


def test_a_killed_worker_loses_nothing_and_changes_no_answer(local_ray, sim, tmp_path, capsys):
    probs = write_problems(tmp_path, 16, seed=4, name="arith.jsonl")
    common = [str(probs), "--base-url", sim.base_url, "--trees", "2", "--rollouts", "2", "--budget", "6000",
              "--parallel", "4", "--quiet"]
    single = tmp_path / "single.jsonl"
    assert main([*common, "--out", str(single)]) == 0
    served_before = sim.served_tokens()

    out = tmp_path / "ray.jsonl"
    run_budget = 16 * 6000 + 4 * 6000  # never binds, even with a dead worker's grants held: answers comparable
    killed: list = []
    watcher = kill_a_worker_when(out, 3, killed)
    assert main([*common, "--run-budget", str(run_budget), "--out", str(out), "--ray"]) == 0
    watcher.join(5)
    assert killed and killed[0][2] < 16, "the worker was killed mid-run"
    err = capsys.readouterr().err
    assert "died" in err and "run again" in err

    rows = read_rows(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == 16 == len(set(ids))  # every problem exactly once
    trees = read_rows(out.with_name("ray.trees.jsonl"))
    assert sorted(t["id"] for t in trees) == sorted(ids)
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["ray"]["workers"] == 2 and summary["ray"]["died"] == 1 and summary["ray"]["reruns"] >= 1
    # fot.sim answers by the request's seed: the same search gives the same answers, wherever it ran
    ref = by_id(read_rows(single))
    for r in rows:
        s = ref[r["id"]]
        assert (r["answer"], r["correct"], r["tokens"]["total"], r["calls"]) == \
            (s["answer"], s["correct"], s["tokens"]["total"], s["calls"])
    assert sum(r["correct"] for r in rows) == sum(s["correct"] for s in ref.values())
    # the backend's own count, the dead worker's lost work included (calls it finished before dying),
    # is inside the run budget
    served = sim.served_tokens() - served_before
    assert sum(r["tokens"]["total"] for r in rows) <= served <= run_budget


def test_the_run_budget_holds_across_workers_when_it_binds_and_one_dies(local_ray, sim, tmp_path, capsys):
    probs = write_problems(tmp_path, 14, seed=5, name="arith.jsonl")
    out = tmp_path / "tight.jsonl"
    run_budget = 27_000  # about five problems' worth at --budget 6000: most of the run is refused
    killed: list = []
    watcher = kill_a_worker_when(out, 1, killed)
    rc = main([str(probs), "--base-url", sim.base_url, "--trees", "2", "--rollouts", "2", "--budget", "6000",
               "--run-budget", str(run_budget), "--parallel", "4", "--out", str(out), "--quiet", "--ray"])
    watcher.join(5)
    assert rc == 0 and killed
    rows = read_rows(out)
    assert len(rows) == 14 == len({r["id"] for r in rows})
    assert any(r["error_kind"] == "budget" for r in rows)  # it did bind
    served = sim.served_tokens()  # everything the backend did for this run, lost attempts included
    assert sum(r["tokens"]["total"] for r in rows) <= served <= run_budget
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["ray"]["died"] == 1
    assert summary["ray"]["granted_to_dead_workers"] > 0  # what it was granted stayed counted


def test_resume_with_ray_skips_finished_problems_and_matches_the_single_process_run(local_ray, tmp_path, capsys):
    probs = write_problems(tmp_path, 12, seed=6, name="arith.jsonl")
    common = [str(probs), "--sim", "--trees", "2", "--rollouts", "2", "--quiet"]
    out = tmp_path / "out.jsonl"
    assert main([*common, "--out", str(out), "--limit", "5", "--ray"]) == 0
    first = read_rows(out)
    assert len(first) == 5
    capsys.readouterr()
    assert main([*common, "--out", str(out), "--ray"]) == 0
    assert "resuming: 5 finished problems" in capsys.readouterr().err
    rows = read_rows(out)
    assert rows[:5] == first and len(rows) == 12 == len({r["id"] for r in rows})
    assert len(read_rows(out.with_name("out.trees.jsonl"))) == 12
    single = tmp_path / "single.jsonl"
    assert main([*common, "--out", str(single)]) == 0
    ref = by_id(read_rows(single))
    assert {r["id"]: (r["answer"], r["tokens"]["total"]) for r in rows} == \
        {k: (s["answer"], s["tokens"]["total"]) for k, s in ref.items()}


def test_the_trace_is_written_by_the_driver_with_every_call_of_the_results(local_ray, tmp_path):
    probs = write_problems(tmp_path, 6, seed=7, name="arith.jsonl")
    out, trace = tmp_path / "out.jsonl", tmp_path / "calls.jsonl"
    assert main([str(probs), "--sim", "--trees", "2", "--rollouts", "1", "--out", str(out), "--trace", str(trace),
                 "--quiet", "--ray", "--ray-workers", "2"]) == 0
    rows, calls = read_rows(out), read_rows(trace)
    assert sum(r["calls"] for r in rows) == len(calls) > 0
    assert {c["problem"] for c in calls} == {r["id"] for r in rows}


def test_sweep_passes_ray_through_to_its_runs(local_ray, tmp_path):
    probs = write_problems(tmp_path, 4, seed=8, name="arith.jsonl")
    assert sweep_main([str(probs), "--sim", "--trees", "1,2", "--rollouts", "1", "--out", str(tmp_path / "sw"),
                       "--quiet", "--ray"]) == 0
    summary = json.loads((tmp_path / "sw" / "run.summary.json").read_text())
    assert summary["ray"]["workers"] == 2 and summary["problems"] == 4
    assert "--ray" in json.loads((tmp_path / "sw" / "sweep.json").read_text())["meta"]["command"]


def test_without_ray_nothing_imports_ray(tmp_path):
    probs = write_problems(tmp_path, 3, seed=9, name="arith.jsonl")
    code = ("import sys, fot.solve, fot.sweep\n"
            f"rc = fot.solve.main([{str(probs)!r}, '--sim', '--trees', '1', '--rollouts', '1', '--quiet', "
            f"'--out', {str(tmp_path / 'o.jsonl')!r}])\n"
            "print(rc, 'ray' in sys.modules, 'fot.distributed' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.stdout.split()[-3:] == ["0", "False", "True"], done.stderr  # the module loads, Ray does not


def test_ray_missing_exits_1_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    out = tmp_path / "o.jsonl"
    assert main([str(write_problems(tmp_path, 2, seed=1, name="a.jsonl")), "--sim", "--out", str(out), "--ray"]) == 1
    assert capsys.readouterr().err.strip().endswith("--ray needs the ray extra: pip install 'fot[ray]'")
    assert not out.exists()


def test_an_unreachable_cluster_exits_1_quickly_naming_it(tmp_path):
    probs = write_problems(tmp_path, 2, seed=1, name="a.jsonl")
    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run([sys.executable, "-m", "fot.solve", str(probs), "--sim", "--out", str(tmp_path / "o.jsonl"),
                           "--quiet", "--ray", address], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 1  # quickly: `timeout=60` above is the guard against a hang
    assert f"cannot reach the Ray cluster at {address}" in done.stderr
    assert not read_rows(tmp_path / "o.jsonl") if (tmp_path / "o.jsonl").exists() else True


def test_ctrl_c_with_ray_exits_130_keeps_whole_lines_and_resumes(sim, tmp_path):
    probs = write_problems(tmp_path, 30, seed=10, name="arith.jsonl")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "fot.solve", str(probs), "--base-url", sim.base_url, "--trees", "2", "--rollouts",
           "2", "--parallel", "2", "--out", str(out), "--quiet", "--ray", "--ray-workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    partial = out.read_text()
    assert partial.endswith("\n") and 3 <= len(partial.splitlines()) < 30
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in read_rows(out)]
    assert len(ids) == 30 == len(set(ids))
