"""The meter: grading, intervals, the grid replayed from one run, Pareto frontier, prices, the sweep."""

import hashlib
import json
import random
from pathlib import Path

import pytest

from fot.backend.budget import Price
from fot.measure.meter import cheapest_reaching, diversity_pairs, grade, grid, pareto, replay, summarize, Cell
from fot.tasks import Arith
from fot.solve import main as solve_main
from fot.sweep import main as sweep_main
from helpers import write_problems

ROOT = Path(__file__).resolve().parent.parent


def _snap(r, tokens, answer, q, prompt=None, completion=None):
    prompt = tokens * 3 // 4 if prompt is None else prompt
    return {"rollout": r, "tokens": tokens, "answer": answer, "q": q, "calls": r + 1, "prompt": prompt,
            "completion": tokens - prompt if completion is None else completion, "cached": 0}


def _row(pid, ref, snapshots, answer, decision="majority", expert_usage=None, trees=3, rollouts=2):
    return {"id": pid, "question": "What is 1 + 1?", "reference": ref, "answer": answer, "decision": decision,
            "snapshots": snapshots, "expert_usage": expert_usage or {},
            "settings": {"trees": trees, "rollouts": rollouts, "activation_threshold": 0.0, "majority": 0.5,
                         "tie_break": "expert"}}


ROW = _row("a", "2", [
    [_snap(0, 100, "3", 10), _snap(1, 200, "2", 30), _snap(2, 300, "2", 40)],
    [_snap(0, 110, "3", 20), _snap(1, 220, "3", 25), _snap(2, 330, "2", 35)],
    [_snap(0, 120, "5", -10), _snap(1, 240, "4", 5), _snap(2, 360, "4", 15)],
], answer="2")


def test_replay_takes_the_first_t_trees_at_rollout_r():
    t = Arith()
    # 1 tree, rollout 0: tree 0 says 3
    assert replay(ROW, t, 1, 0)[:1] == ("3",) and replay(ROW, t, 1, 0)[1]["total"] == 100
    # 2 trees at rollout 0: both say 3 (unanimous)
    ans, usage, how = replay(ROW, t, 2, 0)
    assert (ans, how, usage["total"]) == ("3", "unanimous", 210)
    # 3 trees at rollout 0: 3, 3, 5 but tree 2 has Q -10 < 0: inactive; 3 and 3 vote
    assert replay(ROW, t, 3, 0)[0] == "3"
    # 3 trees at rollout 2: 2, 2, 4 -> majority 2, tokens 300 + 330 + 360
    ans, usage, how = replay(ROW, t, 3, 2)
    assert (ans, how, usage["total"]) == ("2", "majority", 990)
    assert usage["prompt"] == 225 + 247 + 270
    # a rollout past the end of a tree's snapshots uses its last
    assert replay(ROW, t, 3, 9)[1]["total"] == 990


def test_replay_uses_the_recorded_expert_only_for_the_full_cell():
    t = Arith()
    row = _row("b", "2", [[_snap(0, 100, "2", 10), _snap(1, 200, "2", 10)],
                          [_snap(0, 100, "3", 50), _snap(1, 200, "3", 50)]],
               answer="2", decision="expert", expert_usage={"prompt": 40, "completion": 10, "cached": 0},
               trees=2, rollouts=1)
    ans, usage, how = replay(row, t, 2, 1)
    assert (ans, how, usage["total"]) == ("2", "expert_recorded", 450)
    ans, usage, how = replay(row, t, 2, 0)  # smaller cell: the fallback stands in, and says it is not exact
    assert (ans, usage["total"]) == ("3", 200) and how.startswith("inexact:") and "expert" in how


def test_grid_cells_equal_a_direct_replay_of_the_snapshots():
    t = Arith()
    rng = random.Random(0)
    rows = []
    for i in range(25):
        snaps = [[_snap(r, 100 * (r + 1) + k, str(rng.choice([2, 2, 3])), rng.uniform(-20, 60)) for r in range(4)]
                 for k in range(4)]
        rows.append(_row(f"p{i}", "2", snaps, answer="2", trees=4, rollouts=3))
    cells = grid(rows, t, [1, 2, 3, 4], [0, 1, 2, 3])
    assert len(cells) == 16
    for c in cells:
        replays = [replay(r, t, c.trees, c.rollouts) for r in rows]
        right = sum(1 for a, _, _ in replays if a == "2")
        assert c.correct == right and c.accuracy == pytest.approx(right / 25)
        assert c.tokens_mean == pytest.approx(sum(u["total"] for _, u, _ in replays) / 25)
        assert c.ci95[0] <= c.accuracy <= c.ci95[1]


def test_cell_prices():
    price = Price(input=1.0, output=4.0)
    row = _row("c", "2", [[_snap(0, 1000, "2", 10, prompt=800, completion=200)]], answer="2", trees=1, rollouts=0)
    (cell,) = grid([row], Arith(), [1], [0], price)
    assert cell.usd_mean == pytest.approx((800 * 1.0 + 200 * 4.0) / 1e6)
    assert cell.usd_per_solved == pytest.approx(cell.usd_mean)


def _cell(t, r, acc, tokens):
    return Cell(t, r, 10, 10, int(acc * 10), acc, (acc, acc), tokens, None, None, None, 0, 0)


def test_pareto_frontier_cheapest_cell_and_diversity_pairs_on_known_points():
    cells = [_cell(1, 1, 0.5, 100), _cell(1, 2, 0.55, 200), _cell(2, 1, 0.7, 210), _cell(1, 4, 0.6, 400),
             _cell(2, 2, 0.65, 420), _cell(4, 1, 0.8, 430), _cell(4, 2, 0.8, 800)]
    front = [(c.trees, c.rollouts) for c in pareto(cells)]
    assert front == [(1, 1), (1, 2), (2, 1), (4, 1)]
    assert (cheapest_reaching(cells, 0.75).trees, cheapest_reaching(cells, 0.75).rollouts) == (4, 1)
    assert cheapest_reaching(cells, 0.9) is None
    pairs = {((w.trees, w.rollouts), (n.trees, n.rollouts)) for w, n in diversity_pairs(cells)}
    assert ((2, 1), (1, 2)) in pairs and ((4, 1), (1, 4)) in pairs and ((4, 1), (2, 2)) in pairs


def test_grading_and_summary_label_oracle_separately():
    t = Arith()
    rows = [grade({"answer": "2", "answers_seen": ["3", "2"], "tokens": {"prompt": 80, "completion": 20,
                   "cached": 0, "total": 100}, "calls": 3}, t, "2"),
            grade({"answer": "3", "answers_seen": ["3", "4"], "tokens": {"prompt": 80, "completion": 20,
                   "cached": 0, "total": 100}, "calls": 3}, t, "4"),
            grade({"answer": "5", "answers_seen": ["5"], "tokens": {"prompt": 80, "completion": 20, "cached": 0,
                   "total": 100}, "calls": 3}, t, None)]
    assert [r["correct"] for r in rows] == [True, False, None]
    assert [r["oracle_correct"] for r in rows] == [True, True, None]
    s = summarize(rows)
    assert (s.graded, s.correct, s.accuracy, s.oracle_pass_at_k) == (2, 1, 0.5, 1.0)
    assert s.tokens_per_solved == 300


def test_sweep_writes_json_markdown_and_a_png_and_independent_cells_agree(tmp_path):
    probs = tmp_path / "p.jsonl"
    probs.write_text("".join(json.dumps(r) + "\n" for r in Arith.generate(16, seed=2, digits=2)))
    out = tmp_path / "sweep"
    rc = sweep_main([str(probs), "--sim", "--trees", "1,2", "--rollouts", "0,1,2", "--out", str(out),
                     "--independent", "--tie-break", "q", "--price-in", "1", "--price-out", "2",
                     "--baselines", "sc,bon", "--samples", "1,2,4"])
    assert rc == 0
    data = json.loads((out / "sweep.json").read_text())
    assert len(data["cells"]) == 6 and data["meta"]["simulated"] is True
    # with the tie-break by the rule's fallback the decision is the same everywhere: the replay is exact
    for v in data["validation"]:
        assert v["inside"] and v["measured"] == v["predicted"] and v["diff"] == 0 and v["verdict"] == "same grades"
        assert v["replay_only"] == v["measured_only"] == 0 and v["status"] in ("run", "replayed exactly")
        assert v["measured_tokens"] == pytest.approx(v["predicted_tokens"])
    assert [c["samples"] for c in data["baselines"]["sc"]] == [1, 2, 4]
    # the question table: the 2-tree cells against one deeper tree and both baselines, paired
    kinds = {q["kind"] for q in data["questions"]}
    assert {"sc", "bon"} <= kinds
    for q in data["questions"]:
        if q["b"] is not None:
            # chosen on half A, measured on the other half only
            assert q["n"] == 8 and q["chosen_on"] == 8 and q["ci95"][0] <= q["diff"] <= q["ci95"][1]
    md = (out / "sweep.md").read_text()
    assert "Is the forest worth its tokens?" in md and "## Baseline: sc" in md
    assert all(c["usd_mean"] > 0 for c in data["cells"])
    assert "| trees | rollouts |" in (out / "sweep.md").read_text()
    png = (out / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_a_binding_budget_share_marks_smaller_forests_inexact_and_a_tree_budget_replays_exactly(tmp_path):
    """Issue 11: with --budget, each tree's share is budget / T, so a replayed 1-tree cell is not what a
    1-tree run would do; with --tree-budget it is (checked against independent runs)."""
    probs = tmp_path / "p.jsonl"
    probs.write_text("".join(json.dumps(r) + "\n" for r in Arith.generate(12, seed=5, digits=2)))
    run = lambda out, *a: sweep_main([str(probs), "--sim", "--trees", "1,3", "--rollouts", "1,3", "--out",  # noqa: E731
                                      str(out), "--tie-break", "q", *a])
    assert run(tmp_path / "share", "--budget", "3000") == 0
    cells = {(c["trees"], c["rollouts"]): c for c in json.loads((tmp_path / "share" / "sweep.json").read_text())["cells"]}
    # (since rewards are cheaper, in some problems the problem's own cap binds first: marked all the same)
    assert cells[(1, 3)]["inexact"] > 0 and ("share" in cells[(1, 3)]["inexact_reason"]
                                             or "problem budget" in cells[(1, 3)]["inexact_reason"])
    assert "replayed approximately" in (tmp_path / "share" / "sweep.md").read_text()
    assert cells[(3, 3)]["inexact"] == 0  # the run itself

    assert run(tmp_path / "tree", "--tree-budget", "1000", "--independent") == 0
    data = json.loads((tmp_path / "tree" / "sweep.json").read_text())
    assert all(c["inexact"] == 0 for c in data["cells"])
    for v in data["validation"]:  # replayed == measured, answers and ledger tokens
        assert v["diff"] == 0 and v["measured_tokens"] == pytest.approx(v["predicted_tokens"])
    rows = [json.loads(x) for x in (tmp_path / "tree" / "run.jsonl").read_text().splitlines()]
    assert any(t["stopped"] == "budget" for r in rows for t in r["trees"])  # the tree budget did bind


# -- the results record: typed, versioned, and old files still read ------------------------------------------

RECORDED = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "local-baselines"


def _rows(name):
    return [json.loads(line) for line in (RECORDED / name).read_text().splitlines() if line.strip()]


def test_a_results_file_of_the_format_before_schema_2_reads_and_replays_to_its_recorded_figures():
    from fot.measure.meter import grid, sample_curve, summarize
    from fot.measure.results import Record
    from fot.tasks import Arith

    sc = _rows("sc8.jsonl")  # written 2026-11-26 by fot before the record had a schema (schema 1)
    assert all("schema" not in r for r in sc) and Record.from_row(sc[0]).schema == 1
    s = summarize(sc)
    assert (s.problems, s.correct) == (150, 70)  # 46.7%, as docs/local.md records
    curve = sample_curve(sc, Arith(), [1, 2, 4, 8])
    assert [round(c.accuracy, 3) for c in curve] == [0.373, 0.373, 0.413, 0.467]
    assert [round(c.tokens_mean) for c in curve] == [123, 293, 617, 1281]
    forest = _rows("forest2x1.jsonl")
    cells = {(c.trees, c.rollouts): c for c in grid(forest, Arith(), [1, 2], [0, 1])}
    assert round(cells[(2, 1)].accuracy, 3) == 0.153 and round(cells[(1, 0)].accuracy, 3) == 0.187


def test_a_new_row_says_its_schema_and_provenance(tmp_path):
    from fot.measure.results import SCHEMA, Record

    probs, out = write_problems(tmp_path, 2, seed=1, name="p.jsonl"), tmp_path / "o.jsonl"
    assert solve_main([str(probs), "--sim", "--trees", "2", "--rollouts", "1", "--quiet", "--out", str(out)]) == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert row["schema"] == SCHEMA == 2
    assert row["provenance"]["problems_sha256"] == hashlib.sha256(probs.read_bytes()).hexdigest()
    assert row["provenance"]["fot"] and ("commit" in row["provenance"]) == (ROOT / ".git").exists()
    rec = Record.from_row(row)
    assert rec.schema == 2 and rec.tokens.total == row["tokens"]["total"] and rec.method == "forest"


def test_the_summary_says_how_much_of_the_charge_no_server_reported(tmp_path):
    """Calls cut off in flight (a proof's stop, a timeout) are charged their whole reservation: the summary
    shows that part apart, so a stop that saved tokens does not read as if it spent them all."""
    from rich.console import Console

    from fot.solve import print_summary

    probs, out = write_problems(tmp_path, 2, seed=4, name="p.jsonl"), tmp_path / "o.jsonl"
    assert solve_main([str(probs), "--sim", "--method", "sc", "--samples", "2", "--quiet", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summarize(rows).unknown_tokens_mean == 0
    console = Console(record=True, width=200)
    print_summary(console, rows, None, "fot.sim", 1.0)
    assert "unreported" not in console.export_text()
    rows[0]["tokens"] = {**rows[0]["tokens"], "unknown": 300, "total": rows[0]["tokens"]["total"] + 300}
    s = summarize(rows)
    assert s.unknown_tokens_mean == 150 and s.tokens_mean == pytest.approx(summarize(rows[1:]).tokens_mean / 2
                                                                            + rows[0]["tokens"]["total"] / 2)
    print_summary(console, rows, None, "fot.sim", 1.0)
    import re

    assert re.search(r"of them unreported \(mean\)\s*│\s*150: calls cut off", console.export_text())
