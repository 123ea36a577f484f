"""Baselines on the forest's token axis: cot, sc, bon, replayed for smaller N from one run."""

import json

import pytest

from fot.engine import Engine
from fot.measure.meter import compare, replay_samples, sample_curve
from fot.tasks.problems import Problem
from fot.solve import main
from fot.tasks import Arith
from helpers import read_rows, write_problems


async def test_smaller_n_replayed_from_one_run_equals_an_independent_run(make_sim):
    sim = await make_sim()
    probs = [Problem(f"p{i}", f"What is {i} * 7 + 2?") for i in range(12)]
    async with Engine(sim.base_url) as engine:
        big = {r.id: r.to_dict() async for r in engine.solve_many(probs, method="sc", samples=8, task="arith")}
        for n in (1, 3, 5):
            async for r in engine.solve_many(probs, method="sc", samples=n, task="arith"):
                answer, usage, how = replay_samples(big[r.id], Arith(), n)
                assert answer == r.answer and how == r.decision
                assert usage["total"] == r.tokens["total"]  # measured (ledger) against replayed tokens
    assert len({r["answer"] for r in big.values()}) > 3


def _script(role, user, req):
    """Sample i answers 41 (i even) or 42 (i odd, and only for seeds 1 and 3); the verifier likes 42."""
    if role == "evaluate":
        return "Checked.\nScore: " + ("90" if "boxed{42}" in user else "-40")
    i = req.seed % 1000
    return "\\boxed{42}" if i in (1, 3) else "\\boxed{41}"


async def test_sc_takes_the_majority_and_bon_the_verifiers_pick(make_sim):
    sim = await make_sim(script=_script)
    async with Engine(sim.base_url) as engine:
        sc = await engine.solve("What is 6 * 7?", task="arith", method="sc", samples=6)
        bon = await engine.solve("What is 6 * 7?", task="arith", method="bon", samples=6, reward_samples=1)
        cot = await engine.solve("What is 6 * 7?", task="arith", method="cot")
        roles = [row.role for row in engine.ledger.rows if row.problem == bon.id]
    assert (sc.answer, sc.decision) == ("41", "majority") and len(sc.samples) == 6
    assert (bon.answer, bon.decision) == ("42", "best_q") and roles.count("evaluate") == 6
    assert len(cot.samples) == 1 and cot.answer == "41"
    assert bon.evaluation == {"asked": 6, "parsed": 6}
    # bon at n = 1 has only sample 0 to pick from
    assert replay_samples(bon.to_dict(), Arith(), 1)[0] == "41"


def test_the_cli_runs_a_baseline_and_the_meter_compares_it_with_the_forest_on_the_same_problems(tmp_path):
    probs = write_problems(tmp_path, 16, seed=2, name="a.jsonl")
    assert main([str(probs), "--sim", "--method", "sc", "--samples", "6", "--out", str(tmp_path / "sc.jsonl"),
                 "--quiet"]) == 0
    assert main([str(probs), "--sim", "--trees", "2", "--rollouts", "1", "--out", str(tmp_path / "f.jsonl"),
                 "--quiet"]) == 0
    sc_rows, forest_rows = read_rows(tmp_path / "sc.jsonl"), read_rows(tmp_path / "f.jsonl")
    assert all(r["method"] == "sc" and len(r["samples"]) == 6 for r in sc_rows)
    summary = json.loads((tmp_path / "sc.summary.json").read_text())
    assert summary["method"] == "sc" and summary["samples"] == 6
    curve = sample_curve(sc_rows, Arith(), [1, 2, 6])
    assert [c.label for c in curve] == ["sc@1", "sc@2", "sc@6"]
    assert curve[0].tokens_mean < curve[1].tokens_mean < curve[2].tokens_mean
    from fot.measure.meter import grid

    (forest,) = grid(forest_rows, Arith(), [2], [1])
    diff, ratio = compare(forest, curve[2])
    assert diff.n == 16 and diff.diff == pytest.approx(forest.accuracy - curve[2].accuracy)
    assert ratio == pytest.approx(curve[2].tokens_mean / forest.tokens_mean)
