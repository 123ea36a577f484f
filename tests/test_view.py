"""The node record (trees file), the trace's optional texts, progress, and fot.view in a real browser."""

import json
import shutil
from pathlib import Path

import pytest

from fot import Engine
from fot.measure.results import trees_path
from fot.solve import main as solve_main
from fot.search.verifiers import Scores
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
    # no node record in the results line (its tokens per role, {"critique": N}, are not a critique's text)
    assert "forest" not in r.to_dict() and '"critique": "' not in json.dumps(r.to_dict())
    line = r.trees_line()
    assert line["id"] == r.id and len(line["trees"]) == 2
    for tree in line["trees"]:
        _check_tree(tree)
        assert tree["question"] and tree["input"] and tree["temperature"] > 0
        refines = [n for n in tree["nodes"] if n["role"] == "refine"]
        assert len(refines) == 3 and all(n["critique"] and n["tokens"] > 0 and n["rollout"] >= 1 for n in refines)
        assert all("Score" in s["text"] or (s.get("cached") and s["text"].startswith("cached: node"))
                   for n in tree["nodes"] for s in n["rewards"])
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
    own = [s for n in nodes for s in n["rewards"] if not s.get("cached")]  # (a repeated answer's are reused)
    assert r.answer is not None and own and all(s == {"score": 50.0, "text": "", "rollout": s["rollout"]} for s in own)


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
    assert "nodes_detail" not in out.read_text() and '"critique":"' not in out.read_text()


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


# ---- fot.view ---------------------------------------------------------------------------------------

from fot import view  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)
INJECTED = "a model wrote </script><script>alert(1)</script> and <!-- this"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A real fot.sim run of 6 problems (a weak simulated solver, so some answers are wrong), one node's text
    made hostile to the page's <script> tag."""
    tmp = tmp_path_factory.mktemp("view")
    probs = write_problems(tmp, 6, seed=4, name="arith.jsonl")
    out = tmp / "o.jsonl"
    assert solve_main([str(probs), "--sim", "--trees", "3", "--rollouts", "2", "--sim-profile", "p_first=0.1,p_fix=0.05",
                       "--out", str(out), "--quiet", "--seed", "2"]) == 0
    lines = read_rows(trees_path(out))
    lines[0]["trees"][0]["nodes"][1]["text"] = INJECTED
    trees_path(out).write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


def test_the_data_cannot_close_its_script_tag(results):
    page = view.render(view.page_data(results))
    assert page.count("</script>") == 2  # the data tag's and the code's: none from the data
    data = page.split('<script id="data" type="application/json">')[1].split("</script>")[0]
    assert "<" not in data and json.loads(data)["problems"][0]["forest"][0]["nodes"][1]["text"] == INJECTED


def test_view_command_writes_next_to_the_results_and_refuses_a_missing_file(results, tmp_path, capsys):
    assert view.main([str(results)]) == 0
    assert results.with_suffix(".html").is_file()
    assert view.main([str(tmp_path / "nope.jsonl")]) == 2
    assert view.main([str(tmp_path)]) == 2  # a directory without sweep.json
    assert "sweep.json" in capsys.readouterr().err
    from fot.__main__ import main as fot_main

    assert fot_main(["view", str(results), "-o", str(tmp_path / "via-fot.html")]) == 0
    assert (tmp_path / "via-fot.html").read_text() == results.with_suffix(".html").read_text()


def test_results_without_a_trees_file_still_open_and_say_why(browser, results, tmp_path):
    bare = tmp_path / "bare.jsonl"
    shutil.copy(results, bare)  # no bare.trees.jsonl: --no-trees, or results older than the record
    assert view.main([str(bare)]) == 0
    page, errors = _open(browser, bare.with_suffix(".html"))
    page.locator("tr.problem").nth(1).click()
    assert page.locator("#no-forest").is_visible() and page.locator("#detail .tree").count() == 0
    assert page.locator("#vote tr").count() > 1  # the vote comes from the results line alone
    assert errors == []


@pytest.fixture
def browser():
    """Per test: sync Playwright keeps an event loop running in this thread while it is open, which would
    break later tests that call asyncio.run (fot.solve's main)."""
    if CHROMIUM is None:
        pytest.skip("no chromium executable (apt-get install -y chromium): the viewer's browser tests need one")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, html: Path):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    page.goto(html.as_uri())
    return page, errors


def test_the_page_shows_every_problem_and_its_forest_and_a_node_when_clicked(browser, results, tmp_path):
    html = tmp_path / "r.html"
    assert view.main([str(results), "-o", str(html)]) == 0
    rows, trees = read_rows(results), read_rows(trees_path(results))
    page, errors = _open(browser, html)
    assert page.locator("tr.problem").count() == len(rows) == 6
    page.locator("tr.problem").first.click()
    first = trees[0]["trees"]
    assert page.locator("#detail .tree").count() == len(first) == 3
    assert page.locator("#detail g.node").count() == sum(len(t["nodes"]) for t in first)
    assert page.locator("#detail g.node.dummy").count() == 3
    assert page.locator("#detail g.node.best").count() == sum(t["best"] is not None for t in first)
    page.locator('.tree[data-tree="0"] g.node[data-id="1"]').click()
    assert page.locator("#node-text").text_content() == INJECTED
    assert page.locator("#node-rewards tr").count() == 1 + len(first[0]["nodes"][1]["rewards"])
    refine = next(n for n in first[0]["nodes"] if n["role"] == "refine")
    page.locator(f'.tree[data-tree="0"] g.node[data-id="{refine["id"]}"]').click()
    assert page.locator("#node-critique").text_content() == refine["critique"]
    assert page.locator("#tokens-chart polyline").count() == 3
    assert errors == []


def test_the_result_filter_shows_only_wrong_answers(browser, results, tmp_path):
    html = tmp_path / "r.html"
    view.main([str(results), "-o", str(html)])
    rows = read_rows(results)
    wrong = [r["id"] for r in rows if r["correct"] is False]
    assert 0 < len(wrong) < len(rows)  # else the filter test would prove nothing
    page, errors = _open(browser, html)
    page.select_option("#f-correct", "wrong")
    visible = page.locator("tr.problem:not([hidden]) td:nth-child(2)").all_text_contents()
    assert visible == wrong
    assert page.locator("#shown").text_content().startswith(f"{len(wrong)} of 6")
    page.select_option("#f-correct", "all")
    page.select_option("#f-decision", rows[0]["decision"])
    assert page.locator("tr.problem:not([hidden])").count() == sum(r["decision"] == rows[0]["decision"] for r in rows)
    assert errors == []


def test_a_sweep_directory_is_drawn_with_its_frontier_and_baselines(browser, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    shutil.copy(ROOT / "benchmarks/results/sim-arith-baselines/sweep.json", sweep / "sweep.json")
    data = json.loads((sweep / "sweep.json").read_text())
    assert view.main([str(sweep)]) == 0
    page, errors = _open(browser, sweep / "sweep.html")
    cells = [c for c in data["cells"] if c["accuracy"] is not None and not c.get("inexact")]
    assert page.locator("#sweep-svg circle.cell").count() == len(cells)
    assert page.locator("#sweep-svg .pareto-ring").count() == len(data["pareto"])
    assert page.locator("#sweep-svg rect.baseline").count() == sum(len(v) for v in data["baselines"].values())
    page.locator('#sweep-svg circle.cell[data-label="1x0"]').hover()
    assert "1 tree × 0 rollouts" in page.locator("#cell").text_content()
    assert errors == []


def test_approximate_cells_are_drawn_apart_and_the_frontier_can_hold_a_baseline(browser, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    data = json.loads((ROOT / "benchmarks/results/sim-arith-baselines/sweep.json").read_text())
    data["cells"][1]["inexact"] = 3  # 1x1: replayed approximately on 3 problems
    data["frontier"] = ["1x0", "sc@2", "1x1", "4x4"]  # a baseline on it; an approximate cell never is
    (sweep / "sweep.json").write_text(json.dumps(data))
    assert view.main([str(sweep)]) == 0
    page, errors = _open(browser, sweep / "sweep.html")
    assert page.locator("#sweep-svg circle.approx").count() == 1
    assert page.locator('#sweep-svg circle.approx[data-label="1x1"]').get_attribute("fill") == "none"
    assert page.locator("#sweep-svg circle.cell").count() == len([c for c in data["cells"] if c["accuracy"] is not None])
    assert page.locator("#sweep-svg .pareto-ring").count() == 3  # 1x0, sc@2, 4x4: the approximate 1x1 is left off
    page.locator('#sweep-svg circle.approx[data-label="1x1"]').hover()
    assert "replayed approximately (3 of" in page.locator("#cell").text_content()
    assert errors == []


# ---- fot.sweep: its options, its progress, no matplotlib ---------------------------------------------

from fot.sweep import main as sweep_main  # noqa: E402


def test_sweep_help_lists_what_it_passes_to_solve_and_refuses_an_unknown_option(capsys):
    with pytest.raises(SystemExit) as e:
        sweep_main(["--help"])
    assert e.value.code == 0
    helptext = capsys.readouterr().out
    assert "passed through to fot.solve" in helptext
    for option in ("--sim", "--budget", "--parallel", "--no-trees", "--trace-text", "--limit"):
        assert option in helptext
    with pytest.raises(SystemExit) as e:
        sweep_main(["p.jsonl", "--out", "x", "--bogus", "1"])
    assert e.value.code == 2
    assert "python -m fot.sweep: error: unrecognized arguments: --bogus" in capsys.readouterr().err


def test_sweep_passes_options_through_shows_progress_and_prints_its_table_without_matplotlib(
        tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    probs = write_problems(tmp_path, 3, seed=4, name="arith.jsonl")
    out = tmp_path / "sweep"
    # an option's value first, before the problem file: rebuilt from the parse, it cannot be taken for it
    rc = sweep_main(["--budget", "60000", str(probs), "--sim", "--trees", "1,2", "--rollouts", "0,1", "--out",
                     str(out), "--seed", "3"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "| trees | rollouts |" in captured.out
    assert "not drawn" in captured.err and not (out / "sweep.png").exists()
    assert "problems" in captured.err and "rollouts" in captured.err and "3/3" in captured.err  # solve's progress
    rows = read_rows(out / "run.jsonl")
    assert {r["run"]["budget"] for r in rows} == {60000} and {r["run"]["seed"] for r in rows} == {3}
    assert len(read_rows(out / "run.trees.jsonl")) == 3
    data = view.page_data(out)
    assert data["kind"] == "sweep" and len(data["problems"]) == 3 and all(p["forest"] for p in data["problems"])


# ---- hostile files and non-finite numbers (issue 21) ------------------------------------------------

def strict_page_data(html: Path) -> dict:
    """The page's data as a strict JSON parser (the browser's JSON.parse) reads it: NaN and Infinity refused."""
    text = html.read_text(encoding="utf-8")
    data = text.split('<script id="data" type="application/json">')[1].split("</script>")[0]
    return json.loads(data, parse_constant=lambda c: pytest.fail(f"the page's data holds {c}: not JSON"))


def test_non_finite_prices_and_budgets_are_refused_by_name(tmp_path, capsys):
    from fot.serve import main as serve_main

    probs = write_problems(tmp_path, 2, seed=1, name="p.jsonl")
    out = tmp_path / "o.jsonl"
    for flag, value in [("--price-in", "inf"), ("--price-out", "nan"), ("--price-cached", "1e400"),
                        ("--price-in", "-1"), ("--rps", "inf"), ("--timeout", "inf"), ("--budget", "1" + "0" * 400)]:
        for main, args in ((solve_main, [str(probs), "--sim", "--out", str(out)]), (serve_main, ["--sim"])):
            with pytest.raises(SystemExit) as e:
                main([*args, flag, value])
            err = capsys.readouterr().err
            assert e.value.code == 2 and f"argument {flag}: {flag} must be" in err, (flag, value, err)
            assert len(err) < 2000  # the usage and one line, not a 400-digit echo
    assert not out.exists()
    from fot.sweep import main as sweep_main

    for flag, value in [("--price-in", "inf"), ("--price-cached", "nan"), ("--target", "inf"), ("--target", "200")]:
        with pytest.raises(SystemExit) as e:
            sweep_main([str(probs), "--sim", "--out", str(tmp_path / "sweep"), flag, value])
        assert e.value.code == 2 and f"argument {flag}: " in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_a_row_with_nan_is_never_half_written(tmp_path):
    import os

    from fot.measure.results import append_line, open_lines

    out = tmp_path / "o.jsonl"
    fd = open_lines(out)
    try:
        append_line(fd, out, {"id": "a", "cost_usd": 0.5})
        with pytest.raises(ValueError):
            append_line(fd, out, {"id": "b", "cost_usd": float("inf")})
    finally:
        os.close(fd)
    assert out.read_text() == '{"id":"a","cost_usd":0.5}\n'


HOSTILE_LINES = [
    '{"id": "surrogate", "question": "lone \\ud800 half", "answer": "\\udfff", "correct": true}',
    '{"id": "null-sample", "question": "q", "method": "sc", "samples": [null, {"answer": "4", "score": 1}]}',
    '{"id": "not-finite", "question": "q", "cost_usd": NaN, "wall_s": Infinity, "tokens": {"total": 1e400}}',
    '{"id": "bad-shapes", "question": "q", "trees": [null, 3], "snapshots": "x", "tokens": [], "samples": "abc"}',
]


def hostile_results(tmp_path) -> Path:
    out = tmp_path / "hostile.jsonl"
    out.write_bytes("\n".join(HOSTILE_LINES).encode() + b'\n{"id": "\xff\xfe not utf-8", "question": "q"}\n'
                    + b"[" * 100_000 + b"\n")
    nodes = [None, {"id": 0, "parent": None, "text": "\ud83d", "rewards": [None]}, {"id": 1, "parent": 0},
             {"id": 2, "parent": 99}, {"id": 3, "parent": 4}, {"id": 4, "parent": 3}, {"id": {"x": 1}, "parent": 0}, {"id": 5, "parent": [0]},
             {"id": 1, "parent": None}]  # an orphan, a cycle, an id that is an object, an id twice
    trees_path(out).write_text(json.dumps({"id": "surrogate", "trees": [None, {"index": 0, "nodes": nodes}]})
                               + '\n{"id": "null-sample", "trees": "not a list"}\n')
    out.with_name("hostile.summary.json").write_text('{"accuracy": NaN, "backend": "x"}')
    return out


def test_hostile_results_render_as_strict_json_without_a_traceback(tmp_path, capsys):
    out = hostile_results(tmp_path)
    assert view.main([str(out)]) == 0, capsys.readouterr().err
    data = strict_page_data(out.with_suffix(".html"))
    by_id = {p["id"]: p for p in data["problems"]}
    assert len(by_id) == 5 and by_id["surrogate"]["question"] == "lone \ud800 half"
    assert by_id["null-sample"]["samples"] == [{"answer": None, "score": None}, {"answer": "4", "score": 1}]
    assert by_id["not-finite"]["tokens"] == {"total": None} and data["summary"]["accuracy"] is None
    assert by_id["bad-shapes"]["trees"] == [] and by_id["bad-shapes"]["snapshots"] == []
    drawn = by_id["surrogate"]["forest"][0]["nodes"]
    assert [n["id"] for n in drawn] == [0, 1] and drawn[0]["rewards"] == [] and drawn[1]["parent"] == 0
    assert by_id["null-sample"]["forest"] is None


def test_hostile_results_open_in_the_browser(browser, tmp_path):
    out = hostile_results(tmp_path)
    assert view.main([str(out)]) == 0
    page, errors = _open(browser, out.with_suffix(".html"))
    assert page.locator("tr.problem").count() == 5
    for i in range(5):
        page.locator("tr.problem").nth(i).click()
        if page.locator("#detail g.node").count():
            page.locator("#detail g.node").first.click()
    assert errors == []


@pytest.mark.parametrize("text,said", [
    ("{\n  \"cells\": [\n", "sweep.json: line 3"),
    ('{"cells": [null]}', "cells[0] must be an object"),
    ('{"cells": "x"}', "'cells' must be a list"),
    ('{"cells": [{"accuracy": "high"}]}', "cells[0].accuracy must be a number"),
    ('{"cells": [], "baselines": {"sc": [{"ci95": [1]}]}}', "baselines.sc[0].ci95"),
    ('{"cells": [], "pareto": [1, 2]}', "'pareto' must be"),
    ('{"cells": [], "frontier": [[1, 2]]}', "'frontier' must be"),
    ("[1, 2]", "must be an object"),
    ("[" * 100_000, "sweep.json: not JSON"),
])
def test_a_malformed_sweep_json_is_named_with_what_is_wrong(tmp_path, capsys, text, said):
    (tmp_path / "sweep.json").write_text(text)
    assert view.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert said in err and str(tmp_path / "sweep.json") in err and "Traceback" not in err
    assert not (tmp_path / "sweep.html").exists()
