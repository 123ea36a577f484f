"""The node record (trees file), the trace's optional texts, progress, and fot.view in a real browser."""

import json
import shutil
from pathlib import Path

import pytest

from fot import Engine
from fot.results import trees_path
from fot.solve import main as solve_main
from fot.verifiers import Scores
from helpers import read_rows, write_problems


def _check_tree(tree: dict) -> None:
    nodes = tree["nodes"]
    ids = [n["id"] for n in nodes]
    assert ids == list(range(len(nodes)))
    assert [n["role"] for n in nodes].count("dummy") == 1
    for n in nodes:
        assert n["parent"] is None or n["parent"] < n["id"]  # a tree: parents are older
        assert (n["role"] == "refine") == (n["parent"] is not None)
        assert n["n"] == sum(s["score"] is not None for s in n["rewards"])
    real = [n for n in nodes if n["role"] != "dummy" and n["q_own"] is not None and n["answer"] is not None]
    if real:
        assert tree["best"] == max(real, key=lambda n: (n["q_own"], -n["id"]))["id"]


async def test_every_node_is_recorded_with_its_critique_and_the_evaluators_texts(make_sim):
    sim = await make_sim()
    async with Engine(sim.base_url, "fot-sim") as engine:
        heard = []
        r = await engine.solve("What is 17 * 23?", task="arith", trees=2, rollouts=3,
                               on_rollout=lambda pid, t: heard.append((pid, t.index, t.rollouts_done)))
    assert "forest" not in r.to_dict() and "critique" not in json.dumps(r.to_dict())
    line = r.trees_line()
    assert line["id"] == r.id and len(line["trees"]) == 2
    for tree in line["trees"]:
        _check_tree(tree)
        assert tree["question"] and tree["input"] and tree["temperature"] > 0
        refines = [n for n in tree["nodes"] if n["role"] == "refine"]
        assert len(refines) == 3 and all(n["critique"] and n["tokens"] > 0 and n["rollout"] >= 1 for n in refines)
        assert all("Score" in s["text"] for n in tree["nodes"] for s in n["rewards"])
        assert sum(n["eval_tokens"] for n in tree["nodes"]) > 0
    assert sorted(t for _, t, _ in heard) == [0, 0, 0, 1, 1, 1] and {p for p, _, _ in heard} == {r.id}


class OldVerifier:
    """A verifier written before Scores had samples: only values and asked."""

    async def score(self, question, text, k, tag, budget, seed=None):
        return Scores([50.0], asked=1)


async def test_a_verifier_without_texts_still_works_and_records_its_scores(make_sim):
    sim = await make_sim()
    async with Engine(sim.base_url, "fot-sim") as engine:
        r = await engine.solve("What is 2 + 2?", task="arith", trees=1, rollouts=2, verifier=OldVerifier())
    nodes = r.forest[0]["nodes"]
    assert r.answer is not None and all(s == {"score": 50.0, "text": "", "rollout": s["rollout"]}
                                        for n in nodes for s in n["rewards"])


def test_solve_writes_one_trees_line_per_problem_and_resumes_it(tmp_path, capsys):
    probs = write_problems(tmp_path, 4, seed=4, name="arith.jsonl")
    out = tmp_path / "o.jsonl"
    args = [str(probs), "--sim", "--trees", "2", "--rollouts", "2", "--out", str(out), "--quiet"]
    assert solve_main([*args, "--limit", "2"]) == 0
    tp = tmp_path / "o.trees.jsonl"
    assert trees_path(out) == tp
    first = read_rows(tp)
    assert [r["id"] for r in first] == [r["id"] for r in read_rows(out)]
    # a crash after a trees line, before its result: an orphan (and a torn line) that the resume must drop
    orphan = {"id": "arith-004", "trees": []}
    with open(tp, "a") as fh:
        fh.write(json.dumps(orphan) + "\n" + '{"id": "arith-0')
    assert solve_main(args) == 0
    results, trees = read_rows(out), read_rows(tp)
    assert sorted(r["id"] for r in results) == sorted(r["id"] for r in trees)
    assert len(trees) == 4 and all(len(t["trees"]) == 2 for t in trees)
    for t in trees:
        for tree in t["trees"]:
            _check_tree(tree)
    assert "nodes_detail" not in out.read_text() and '"critique"' not in out.read_text()


def test_no_trees_and_trace_text(tmp_path):
    probs = write_problems(tmp_path, 1, seed=4, name="arith.jsonl")
    out, trace, plain = tmp_path / "o.jsonl", tmp_path / "t.jsonl", tmp_path / "p.jsonl"
    assert solve_main([str(probs), "--sim", "--trees", "1", "--rollouts", "1", "--out", str(out), "--quiet",
                       "--no-trees", "--trace", str(trace), "--trace-text", "--api-key", "sk-secret-123"]) == 0
    assert not trees_path(out).exists()
    rows = read_rows(trace)
    assert all(r["messages"] and r["texts"] for r in rows if r["outcome"] == "ok")
    assert "sk-secret-123" not in trace.read_text()
    assert solve_main([str(probs), "--sim", "--trees", "1", "--rollouts", "1", "--out", str(tmp_path / "o2.jsonl"),
                       "--quiet", "--trace", str(plain)]) == 0
    assert all("messages" not in r and "texts" not in r for r in read_rows(plain))


def test_progress_shows_problems_rollouts_tokens_and_eta(tmp_path, capsys):
    probs = write_problems(tmp_path, 3, seed=4, name="arith.jsonl")
    assert solve_main([str(probs), "--sim", "--trees", "2", "--rollouts", "2", "--out", str(tmp_path / "o.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "problems" in err and "3/3" in err
    assert "rollouts" in err and "12/12" in err  # 3 problems x 2 trees x 2 rollouts
    assert "tokens" in err and "eta" in err
