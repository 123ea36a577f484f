"""The sweep never overstates (issue 26): an approximate replay is marked and kept out of every comparison,
validation counts flips both ways, the frontier is over everything measured, the headline is chosen on one
half and reported on the other, --target says how it read its number, and the chart's labels do not collide."""

import argparse
import json
import re

import pytest

from fot.measure.meter import Cell, grid, pareto
from fot.sweep import main as sweep_main, plot
from fot.tasks import Arith
from helpers import write_problems


def _snap(r, tokens, answer, q):
    return {"rollout": r, "tokens": tokens, "answer": answer, "q": q, "calls": r + 1, "prompt": tokens // 2,
            "completion": tokens - tokens // 2, "cached": 0}


def _row(pid, snapshots, answer, decision, expert_usage=None):
    return {"id": pid, "question": "What is 1 + 1?", "reference": "2", "answer": answer, "decision": decision,
            "snapshots": snapshots, "expert_usage": expert_usage or {},
            "settings": {"trees": 3, "rollouts": 1, "activation_threshold": 0.0, "majority": 0.5,
                         "tie_break": "expert", "decision": "majority_first"}}


def _cell(label_t, r, outcomes, tokens, method="forest", samples=0, ids=None):
    n = len(outcomes)
    ids = ids or [f"p{i:02d}" for i in range(n)]
    k = sum(outcomes)
    c = Cell(label_t, r, n, n, k, k / n, (k / n, k / n), float(tokens), None, None, None, 0, 0, method=method,
             samples=samples, ids=ids, outcomes=list(outcomes))
    c.answers, c.tokens = ["x"] * n, [tokens] * n  # per problem (set after, so the test reads on older Cells too)
    return c


def test_a_replayed_cell_that_needs_the_expert_tie_break_is_inexact_and_off_the_frontier():
    t = Arith()
    # 3 trees: at rollout 0, trees 0 and 1 disagree (2 against 3); the run (3 trees, rollout 1) is a majority
    rows = [_row(f"p{i}", [[_snap(0, 100, "2", 10), _snap(1, 200, "2", 10)],
                           [_snap(0, 100, "3", 50), _snap(1, 200, "2", 50)],
                           [_snap(0, 100, "3", 40), _snap(1, 200, "2", 40)]], "2", "majority") for i in range(6)]
    cells = {c.label: c for c in grid(rows, t, [1, 2, 3], [0, 1])}
    assert cells["2x0"].inexact == 6 and not cells["2x0"].exact and "expert" in cells["2x0"].inexact_reason
    assert cells["2x0"].status == "replayed approximately"
    assert cells["3x1"].status == "run" and cells["1x0"].status == "replayed exactly"
    assert cells["2x0"] not in pareto(list(cells.values()))


def test_validation_with_flips_in_opposite_directions_is_not_same():
    from fot.sweep import validate

    replayed = _cell(2, 1, [True, False, True, True], 500)
    measured = _cell(2, 1, [False, True, True, True], 510)  # the same accuracy, two problems flipped
    v = validate(replayed, measured)
    assert v["diff"] == 0 and v["replay_only"] == 1 and v["measured_only"] == 1
    assert "same" not in v["verdict"] and "1 right only in the replay" in v["verdict"]
    assert v["ci95"][0] < 0 < v["ci95"][1]
    assert validate(replayed, replayed)["verdict"] == "same grades"


def test_a_baseline_on_the_frontier_removes_a_dominated_forest_cell():
    forest = _cell(4, 2, [True] * 8 + [False] * 2, 3271)
    best_of_4 = _cell(0, 0, [True] * 10, 1743, method="bon", samples=4)
    assert forest in pareto([forest])
    front = pareto([forest, best_of_4])
    assert front == [best_of_4]
    approximate = _cell(2, 2, [True] * 10, 100)
    approximate.inexact, approximate.inexact_reason = 10, "the expert tie-break"
    assert pareto([forest, best_of_4, approximate]) == [best_of_4]  # an approximate cell removes no one


def test_target_reads_a_percentage_or_a_fraction_and_says_which():
    from fot.sweep import _accuracy

    assert (_accuracy("70").accuracy, _accuracy("70").given_as) == (0.7, "percentage")
    assert (_accuracy("70%").accuracy, _accuracy("0.7").given_as) == (0.7, "fraction")
    assert _accuracy("0.7").accuracy == 0.7 and "70.0%" in _accuracy("70").describe()
    assert "percentage" in _accuracy("70").describe()
    for bad in ("700", "-1", "abc", "nan%"):
        with pytest.raises(argparse.ArgumentTypeError):
            _accuracy(bad)


def test_the_headline_is_chosen_on_one_half_and_reported_on_the_other():
    from fot.measure.meter import halves
    from fot.sweep import questions

    ids = [f"p{i:02d}" for i in range(20)]
    a, b = halves(ids)
    assert a | b == set(ids) and not a & b and len(a) == len(b) == 10
    # a forest cell lucky on half A only: chosen there, its report on half B shows no lead
    lucky = [k in a for k in ids]
    cells = [_cell(2, 1, lucky, 300, ids=ids), _cell(1, 1, [True] * 10 + [False] * 10, 150, ids=ids),
             _cell(1, 2, [True] * 10 + [False] * 10, 280, ids=ids)]
    sc = [_cell(0, 0, [i % 2 == 0 for i in range(20)], 250, method="sc", samples=4, ids=ids)]
    rows = questions(cells, {"sc": sc})
    mine = [q for q in rows if q["a"] == "2x1" and q["b"] is not None]
    assert mine and all(q["n"] == 10 and q["a_accuracy"] == 0.0 for q in mine)


def test_sweep_png_labels_do_not_collide(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    # cells of different tree counts at almost the same point: their labels would sit on one another
    cells = [_cell(t, r, [True] * (4 + r) + [False] * (6 - r), 1000 * (r + 1) + t) for t in (1, 2, 4)
             for r in (0, 1, 2, 4)]
    boxes = []
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **kw):  # the labels as drawn, measured before the figure is closed
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        texts = [t for t in ax.texts if t.get_text()] + [t for t in ax.get_xticklabels() + ax.get_yticklabels()
                                                         if t.get_text() and t.get_visible()]
        boxes.extend(t.get_window_extent(renderer) for t in texts)
        return real_savefig(fig, *a, **kw)

    plt.Figure.savefig = spy
    try:
        assert plot(tmp_path / "s.png", cells, pareto(cells), "crowded")
    finally:
        plt.Figure.savefig = real_savefig
    assert len(boxes) > 12
    for i, p in enumerate(boxes):
        for q in boxes[i + 1:]:
            assert not p.overlaps(q), "two labels of sweep.png overlap"


def test_sweep_md_says_per_cell_run_replayed_exactly_or_approximately(tmp_path):
    probs = write_problems(tmp_path, 8, seed=3, name="p.jsonl")
    out = tmp_path / "s"
    assert sweep_main([str(probs), "--sim", "--trees", "1,3", "--rollouts", "0,1", "--out", str(out),
                       "--target", "60", "--baselines", "sc", "--samples", "1,2"]) == 0
    md = (out / "sweep.md").read_text()
    data = json.loads((out / "sweep.json").read_text())
    assert "| run |" in md and "replayed exactly" in md
    statuses = {c["trees"] * 10 + c["rollouts"]: c for c in data["cells"]}
    assert statuses[31]["inexact"] == 0
    assert data["target"]["given_as"] == "percentage" and "read as 60.0% (a percentage)" in md
    assert set(data["frontier"]) <= {c["trees"] and f"{c['trees']}x{c['rollouts']}" for c in data["cells"]} | {
        f"sc@{c['samples']}" for c in data["baselines"]["sc"]}
    for label in data["frontier"]:  # only exact cells on the frontier
        cell = next((c for c in data["cells"] + data["baselines"]["sc"]
                     if f"{c['trees']}x{c['rollouts']}" == label or f"sc@{c['samples']}" == label), None)
        assert cell is not None and cell["inexact"] == 0


def test_the_sweeps_frontier_counts_the_baselines(tmp_path):
    """A solver that is always right: one sample (sc@1) is as accurate as any forest and far cheaper, so no
    forest cell may be on the frontier (the sweep used to draw it over forest cells alone)."""
    probs = write_problems(tmp_path, 6, seed=1, name="p.jsonl")
    out = tmp_path / "s"
    assert sweep_main([str(probs), "--sim", "--sim-profile", "p_first=1.0,hardness_sd=0,tree_sd=0,p_break=0",
                       "--trees", "1,2", "--rollouts", "0,1", "--tie-break", "q", "--baselines", "sc",
                       "--samples", "1,2", "--out", str(out)]) == 0
    data = json.loads((out / "sweep.json").read_text())
    assert all(c["accuracy"] == 1.0 for c in data["cells"])
    assert data["pareto"] == []  # no forest cell: sc@1 is as accurate for fewer tokens
    assert data["frontier"] == ["sc@1"]
    forest_rows = [line for line in (out / "sweep.md").read_text().splitlines() if re.match(r"\| \d \| \d \| ", line)]
    assert len(forest_rows) == 4 and not any("(frontier)" in line for line in forest_rows)


def test_a_rule_that_reads_more_than_the_snapshots_is_replayed_approximately():
    from fot.search.decision import decision_rule

    class Confident(type(decision_rule("majority_first"))):
        name, replayable = "confident", False

    t = Arith()
    rows = [_row(f"p{i}", [[_snap(0, 100, "2", 10)], [_snap(0, 100, "2", 50)], [_snap(0, 100, "2", 40)]], "2",
                 "unanimous") for i in range(3)]
    cells = {c.label: c for c in grid(rows, t, [2, 3], [0, 1], rule=Confident())}  # the run: 3 x 1
    assert cells["3x1"].status == "run" and not cells["2x0"].exact and "confident" in cells["2x0"].inexact_reason
