"""Datasets by name (fot/tasks/datasets.py), `fot datasets`, and the command line's rough edges: --version,
every option's default in its help, errors naming the program as it was run. Each test builds a tiny data
directory: the real one (/work/shared/data) is never needed."""

import json
import re
import subprocess
import sys

import pytest

from fot.__main__ import main as fot_main
from fot.tasks.datasets import DatasetError, data_dir, load, select
from helpers import read_rows


def tiny_data(root):
    (root / "gsm8k").mkdir(parents=True)
    (root / "gsm8k" / "test.jsonl").write_text("\n".join(json.dumps(
        {"question": f"What is {a} * {b}?", "answer": f"{a} * {b} = <<{a}*{b}={a * b}>>\n#### {a * b}"})
        for a, b in ((3, 4), (6, 7), (8, 9))) + "\n")
    (root / "aime").mkdir()
    for year in (2024, 2025):
        (root / "aime" / f"aime{year}.jsonl").write_text(json.dumps(
            {"id": f"{year}-I-1", "problem": "Find 2 + 3.", "answer": 5}) + "\n")
    (root / "strategyqa").mkdir()
    (root / "strategyqa" / "dev.json").write_text(json.dumps([
        {"qid": "a1", "question": "Is the sun hot?", "answer": True, "facts": ["it is"]},
        {"qid": "a2", "question": "Is ice hot?", "answer": False}]))
    return root


def test_datasets_by_name_and_split(tmp_path, monkeypatch):
    root = tiny_data(tmp_path / "data")
    gsm = load(select("gsm8k", root))
    assert [p.answer.split("####")[-1].strip() for p in gsm] == ["12", "42", "72"]
    assert [p.id for p in load(select("aime", root))] == ["2024-I-1", "2025-I-1"]  # all: both years
    assert [p.id for p in load(select("aime:2025", root))] == ["2025-I-1"]
    sq = load(select("strategyqa", root))
    assert [(p.id, p.answer) for p in sq] == [("a1", "yes"), ("a2", "no")] and sq[0].meta["facts"] == ["it is"]
    monkeypatch.setenv("FOT_DATA", str(root))
    assert data_dir(None) == (root, "$FOT_DATA") and data_dir("elsewhere")[1] == "--data-dir"
    monkeypatch.delenv("FOT_DATA")
    assert data_dir(None)[0].parts[-2:] == ("shared", "data")  # ../shared/data next to the checkout


def test_a_missing_file_or_a_bad_name_is_one_line_naming_it(tmp_path):
    root = tiny_data(tmp_path / "data")
    with pytest.raises(DatasetError) as e:
        select("math500", root)
    assert str(root / "math500" / "test.jsonl") in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DatasetError, match="known: gsm8k"):
        select("mnist", root)
    with pytest.raises(DatasetError, match="splits: all, 2024, 2025"):
        select("aime:1999", root)


def test_solve_runs_a_dataset_by_name_and_fot_datasets_lists_it(tmp_path, capsys, monkeypatch):
    root = tiny_data(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert fot_main(["solve", "--dataset", "gsm8k", "--data-dir", str(root), "--sim", "--method", "sc",
                     "--samples", "2", "--quiet"]) == 0
    out = tmp_path / "fot-results" / "gsm8k-test-sc.jsonl"  # named after the dataset, not its file
    rows = read_rows(out)
    end = capsys.readouterr().err.strip().splitlines()[-1]  # the last line: where the files are, how to view them
    assert f"results {out.relative_to(tmp_path)}" in end and end.endswith(f"See them: python -m fot view {out.relative_to(tmp_path)}")
    assert len(rows) == 3 and {r["task"] for r in rows} == {"gsm8k"} and all(r["correct"] is not None for r in rows)
    capsys.readouterr()
    assert fot_main(["solve", "--dataset", "math500", "--data-dir", str(root), "--sim"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(root / "math500" / "test.jsonl") in err and err.startswith("python -m fot solve")
    assert fot_main(["solve", "x.jsonl", "--dataset", "gsm8k", "--sim"]) == 2
    assert "not both" in capsys.readouterr().err
    assert fot_main(["datasets", "--data-dir", str(root)]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"gsm8k:test\s+3 problems", listing) and re.search(r"strategyqa:dev\s+2 problems", listing)
    assert re.search(r"math500:test\s+missing: .*math500/test.jsonl not found", listing)


def test_version_defaults_in_help_and_the_program_named_as_run(capsys):
    assert fot_main(["--version"]) == 0 and re.fullmatch(r"fot \d+\.\d+\.\d+\n", capsys.readouterr().out)
    for command in ("solve", "serve"):  # (fot.sweep's own options are issue 26's file, fot/sweep.py)
        with pytest.raises(SystemExit):
            fot_main([command, "--help"])
        text = capsys.readouterr().out
        entries = re.split(r"\n  (?=-)", text.split("options:", 1)[1])[1:]
        missing = [e.split()[0] for e in entries if "default" not in e and not e.startswith("-h")]
        assert not missing, f"{command}: no default shown for {missing}"
    done = subprocess.run([sys.executable, "-m", "fot", "serve", "--port", "x"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("python -m fot serve: error: argument --port")
    done = subprocess.run([sys.executable, "-m", "fot.serve", "--port", "x"], capture_output=True, text=True)
    assert done.stderr.startswith("python -m fot.serve: error")


def test_a_sweep_runs_a_dataset_by_name_and_refuses_neither(tmp_path, capsys):
    from fot.sweep import main as sweep_main

    root = tiny_data(tmp_path / "data")
    out = tmp_path / "sweep"
    assert sweep_main(["--dataset", "gsm8k", "--data-dir", str(root), "--sim", "--trees", "1,2", "--rollouts", "0",
                       "--quiet", "--out", str(out)]) == 0
    meta = json.loads((out / "sweep.json").read_text())["meta"]
    assert meta["problems_file"] == "--dataset gsm8k" and meta["n"] == 3 and meta["task"] == "gsm8k"
    with pytest.raises(SystemExit) as e:
        sweep_main(["--sim", "--out", str(tmp_path / "none")])
    assert e.value.code == 2 and "--dataset NAME" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()  # nothing written
