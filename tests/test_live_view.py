"""`fot view --watch` in headless Chromium while `fot solve` runs against fot.sim (a SIMULATED backend), and
the viewer's fixes of issue 27: the method named, samples with their votes, sortable columns, axis numbers
formatted, a problem file refused."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fot import view
from fot.backend.local import free_port
from fot.solve import main as solve_main
from helpers import read_rows, write_problems
from test_view import CHROMIUM, browser  # noqa: F401 -- the fixture: headless Chromium through Playwright

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# fot.sim with 80 ms to first token: a small run lasts seconds, so the page can be seen while it goes
SLOW_SIM = """
import asyncio, sys
from fot.sim import SimConfig, SimProfile, SimServer
async def main():
    async with SimServer(SimConfig(ttft_s=0.08, profile=SimProfile(p_first=0.6)), port=int(sys.argv[1])) as s:
        print(s.base_url, flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""


def wait_until(condition, what: str, deadline_s: float = 120.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def evaluate(page, script: str):
    """`page.evaluate`, or None while the page reloads itself (it does when a result lands: on a busy machine
    that can be mid-poll, and the evaluation's context is gone); the caller polls again."""
    from playwright.sync_api import Error

    try:
        return page.evaluate(script)
    except Error as e:
        if "context was destroyed" in str(e) or "navigat" in str(e):
            return None
        raise


def started(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ENV)


def test_watch_keeps_the_page_current_while_a_run_goes(browser, tmp_path):  # noqa: F811
    probs = write_problems(tmp_path, 4, seed=3, name="arith.jsonl")
    out = tmp_path / "run.jsonl"
    sim_port, view_port = free_port(), free_port()
    procs = [started(["-c", SLOW_SIM, str(sim_port)])]
    try:
        wait_until(lambda: procs[0].stdout.readline().startswith("http"), "fot.sim")
        procs.append(started(["-m", "fot", "view", "--watch", str(out), "--port", str(view_port)]))
        assert "watching" in procs[1].stdout.readline()
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://127.0.0.1:{view_port}/")
        assert "waiting for the run" in page.locator("#live-counts").text_content()  # before the run starts
        solve = started(["-m", "fot", "solve", str(probs), "--base-url", f"http://127.0.0.1:{sim_port}/v1",
                         "--model", "fot-sim", "--trees", "3", "--rollouts", "6", "--reward-samples", "1",
                         "--parallel", "1", "--out", str(out)])
        procs.append(solve)
        # a problem in flight: its trees, their rollouts and answers, and the vote as it stands
        head = wait_until(lambda: evaluate(page, """() => { const b = document.querySelector('.live-problem');
            return b && b.querySelectorAll('.live-tree').length === 3 && b.querySelector('h3').textContent.includes(
              'decision') ? b.querySelector('h3').textContent : null; }"""), "a problem in flight with an answer")
        assert head.startswith("In flight: ") and ("not decided yet" in head or "none leads yet" in head)
        live = json.loads(view.live_path(out).read_text())  # what the page draws from
        assert all(t["answer"] is not None and t["tokens"] > 0 for p in live["inflight"] for t in p["trees"]
                   if t["rollouts"] > 0) or not live["inflight"]
        counts = page.locator("#live-counts").text_content()
        assert counts.startswith("running") and re.search(r"\d+ of 4 problems done", counts) and "calls" in counts
        page.screenshot(path=str(tmp_path / "live.png"))
        # results written while the page is open are shown without a reload by hand
        wait_until(lambda: page.locator("tr.problem").count() >= 1, "the first result on the page")
        assert solve.wait(timeout=300) == 0
        wait_until(lambda: "run finished" in (page.locator("#live-counts").text_content() or ""), "the end")
        wait_until(lambda: page.locator("tr.problem").count() == 4, "every result on the page")
        assert "4 of 4 problems done" in page.locator("#live-counts").text_content()
        assert page.locator(".live-problem").count() == 0 and page.locator("#live-recent tr").count() > 1
        assert errors == []
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)


def test_watch_refuses_what_it_cannot_follow(tmp_path):
    probs = write_problems(tmp_path, 2, seed=1, name="arith.jsonl")
    done = subprocess.run([sys.executable, "-m", "fot", "view", "--watch", str(probs)], capture_output=True, text=True,
                          env=ENV, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is a problem file, not results" in done.stderr


@pytest.fixture(scope="module")
def sc_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sc")
    probs = write_problems(tmp, 5, seed=4, name="arith.jsonl")
    out = tmp / "sc.jsonl"
    assert solve_main([str(probs), "--sim", "--method", "sc", "--samples", "5", "--sim-profile", "p_first=0.4",
                       "--out", str(out), "--quiet"]) == 0
    return out


def test_an_sc_run_names_its_method_and_shows_its_samples_votes(browser, sc_results, tmp_path):  # noqa: F811
    html = tmp_path / "sc.html"
    assert view.main([str(sc_results), "-o", str(html)]) == 0
    rows = read_rows(sc_results)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(html.as_uri())
    assert "method sc" in page.locator("#summary").text_content()
    assert page.locator("tr.problem td:nth-child(8)").all_text_contents() == ["sc"] * 5
    assert page.locator("tr.problem td:nth-child(9)").all_text_contents() == ["5 samples"] * 5  # not "trees 0"
    page.locator("tr.problem").first.click()
    answers = [s["answer"] for s in rows[0]["samples"]]
    votes = {r.split("\t")[0]: r for r in page.locator("#sample-votes tr").all_inner_texts()[1:]}
    for a in set(answers):
        key = "(no answer)" if a is None else a
        assert votes[key].split("\t")[1] == f"{answers.count(a)} of 5"
    returned = [r for r in votes.values() if "returned" in r]
    assert len(returned) == 1 and returned[0].startswith(str(rows[0]["answer"]))
    assert page.locator("#samples tr").count() == 6
    assert not view.live_path(sc_results).exists()  # nobody watched this run: it left no live file


@pytest.fixture(scope="module")
def forest_results(tmp_path_factory):  # made before the browser opens: sync Playwright holds an event loop
    tmp = tmp_path_factory.mktemp("forest")
    probs = write_problems(tmp, 5, seed=6, name="arith.jsonl")
    out = tmp / "f.jsonl"
    assert solve_main([str(probs), "--sim", "--trees", "2", "--rollouts", "3", "--out", str(out), "--quiet"]) == 0
    return out


def test_columns_sort_and_axis_numbers_are_formatted(forest_results, browser, tmp_path):  # noqa: F811
    out = forest_results
    html = tmp_path / "f.html"
    assert view.main([str(out), "-o", str(html)]) == 0
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(html.as_uri())
    tokens = lambda: [int(t.replace(",", "")) for t in page.locator("tr.problem td:nth-child(7)").all_text_contents()]  # noqa: E731
    assert len(set(tokens())) > 1  # else the sort would prove nothing
    page.locator('th[data-key="tokens"]').click()
    assert tokens() == sorted(tokens())
    page.locator('th[data-key="tokens"]').click()
    assert tokens() == sorted(tokens(), reverse=True)
    page.locator('th[data-key="id"]').click()
    ids = page.locator("tr.problem td:nth-child(2)").all_text_contents()
    assert ids == sorted(ids)
    page.locator("tr.problem").first.click()
    labels = page.locator("#tokens-chart svg text").all_text_contents()
    assert labels and not [x for x in labels if re.search(r"\.\d{4,}", x)]  # no 0.6000000000000001


def test_a_problem_file_given_as_results_is_refused_in_one_line(tmp_path, capsys):
    probs = write_problems(tmp_path, 3, seed=1, name="arith.jsonl")
    assert view.main([str(probs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a problem file, not results" in err
    assert not probs.with_suffix(".html").exists()  # no page made next to a problem file
