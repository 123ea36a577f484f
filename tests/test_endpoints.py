"""Several endpoints behind one engine (fot.endpoints), against fot.sim upstreams (SIMULATED backends,
test doubles) on loopback: spread, failover, health, affinity, the concurrency rule."""

import asyncio
import math
import time
from collections import Counter

import pytest

from fot import BackendUnreachable, Budget, CallTag, Engine, Ledger, LLMClient, prompts
from fot.endpoints import Endpoints, HTTPFailure
from fot.problems import Problem
from fot.sim import SimConfig, SimServer
from fot.tasks import Arith


def problems(n: int, seed: int = 5) -> list[Problem]:
    return [Problem(id=r["id"], question=r["question"], answer=r["answer"]) for r in Arith.generate(n, seed=seed)]


def served_by(rows) -> Counter:
    return Counter(e for r in rows if r.outcome == "ok" for e in r.endpoint.split(","))


async def test_one_of_three_upstreams_killed_mid_run_and_restarted_loses_no_problem(make_sim):
    sims = [await make_sim(ttft_s=0.01, seed=1) for _ in range(3)]
    urls = [s.base_url for s in sims]
    ps = problems(24)
    async with Engine(base_urls=urls, model="fot-sim", max_attempts=4,
                      config=None) as engine:
        results, phase = [], {}

        async def run():
            async for r in engine.solve_many(ps, parallel=6, trees=2, rollouts=2, budget=20_000):
                results.append(r)
                if len(results) == 6 and "killed" not in phase:
                    await sims[1].stop()
                    phase["killed"] = time.time()
                if len(results) == 14 and "back" not in phase:
                    sims[1] = await SimServer(SimConfig(ttft_s=0.01, seed=1), port=sims[1].port).start()
                    phase["back"] = time.time()

        await run()
        killed = urls[1]
        ep = next(e for e in engine.llm.endpoints.all if e.public == killed)
        # the run may end before the probe's next try: wait for the state (with a deadline), not for a time
        for _ in range(600):
            if ep.up:
                break
            await asyncio.sleep(0.05)
        phase["readmitted"] = time.time()
        more = [r async for r in engine.solve_many(problems(6, seed=6), parallel=6, trees=2, rollouts=2)]
        stats = {s["endpoint"]: s for s in engine.llm.endpoints.stats()}
        rows = list(engine.ledger.rows)
    await sims[1].stop()
    assert sorted(r.id for r in results) == sorted(p.id for p in ps)
    assert all(r.answer is not None and not r.error for r in results + more), [r.error for r in results if r.error]
    assert stats[killed]["ejected"] >= 1 and stats[killed]["up"]
    # calls were spread before the kill, moved off the killed one while it was down, came back once re-admitted
    assert rows, "the ledger keeps recent rows"
    before = [r for r in rows if r.started < phase["killed"]]
    during = [r for r in rows if phase["killed"] <= r.started < phase["back"]]
    after = [r for r in rows if r.started >= phase["readmitted"]]
    assert set(served_by(before)) == set(urls)
    assert served_by(during)[killed] == 0 and served_by(during)[urls[0]] > 0 and served_by(during)[urls[2]] > 0
    assert served_by(after)[killed] > 0
    # the ledger's total is what the three sims reported (the restarted one counted from its restart)
    assert all(r.endpoint in urls for r in rows if r.outcome == "ok")


async def test_calls_are_spread_by_least_outstanding_requests(make_sim):
    sims = [await make_sim(ttft_s=0.02) for _ in range(3)]
    async with LLMClient([s.base_url for s in sims], "fot-sim", affinity=False) as llm:
        await asyncio.gather(*(llm.chat(prompts.answer(f"What is {i} + 2?"), seed=i) for i in range(90)))
    counts = [s.stats.requests for s in sims]
    assert sum(counts) == 90 and min(counts) >= 25, counts


async def test_a_failed_call_is_retried_on_another_endpoint_at_once(make_sim):
    bad = await make_sim(faults={"500": 1.0})
    good = await make_sim()
    ledger = Ledger()
    async with LLMClient([bad.base_url, good.base_url], "fot-sim", max_attempts=2, backoff_base=5.0,
                         ledger=ledger, affinity=False) as llm:
        waits = []
        elsewhere = llm._backoff_or_elsewhere
        llm._backoff_or_elsewhere = lambda exc, failures: waits.append(elsewhere(exc, failures)) or waits[-1]
        calls = await asyncio.gather(*(llm.chat(prompts.answer(f"What is {i} + 5?"), seed=i) for i in range(10)))
        stats = llm.endpoints.stats()
    assert all("\\boxed{" in c.text for c in calls)
    assert all(c.record.endpoint == good.base_url for c in calls)
    assert bad.stats.requests >= 1 and any(c.record.attempts == 2 for c in calls)
    assert waits and all(w == 0 for w in waits), "a retry that can go elsewhere does not wait out the backoff"
    assert stats[0]["failed"] == bad.stats.requests


async def test_a_tree_prefers_one_endpoint_so_its_prompts_meet_one_prefix_cache(make_sim):
    sims = [await make_sim() for _ in range(3)]
    for affinity in (True, False):
        ledger = Ledger()
        async with LLMClient([s.base_url for s in sims], "fot-sim", ledger=ledger, affinity=affinity) as llm:
            for tree in range(6):  # one call at a time: no load difference, so affinity alone decides
                for step in range(4):
                    await llm.chat(prompts.answer(f"What is {tree} * 7?"), tag=CallTag("p", tree, step), seed=step)
        per_tree = {t: {r.endpoint for r in ledger.rows if r.tree == t} for t in range(6)}
        if affinity:
            assert all(len(eps) == 1 for eps in per_tree.values()), per_tree
            assert len({next(iter(e)) for e in per_tree.values()}) >= 2, "trees are spread over endpoints"
        else:
            assert any(len(eps) > 1 for eps in per_tree.values()), per_tree


async def test_the_cap_per_endpoint_holds_and_no_cap_means_the_work_in_flight(make_sim):
    sims = [await make_sim(ttft_s=0.05) for _ in range(2)]
    async with LLMClient([s.base_url for s in sims], "fot-sim", concurrency=3) as llm:
        await asyncio.gather(*(llm.chat(prompts.answer(f"What is {i} + 1?"), seed=i) for i in range(30)))
    assert [s.stats.max_in_flight for s in sims] == [3, 3]
    one = await make_sim(ttft_s=0.2)
    async with LLMClient(one.base_url, "fot-sim") as llm:  # default: no cap
        await asyncio.gather(*(llm.chat(prompts.answer(f"What is {i} + 1?"), seed=i) for i in range(120)))
    assert one.stats.max_in_flight == 120


async def test_a_429_halves_the_limit_and_successes_give_it_back_slowly():
    eps = Endpoints(["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"], cap=None)
    ep = eps.all[0]
    ep.outstanding = 40
    eps._failed(ep, HTTPFailure("rate_limit", "429", status=429, endpoint=ep))
    assert ep.limit == 20 and ep.up
    eps._failed(ep, HTTPFailure("rate_limit", "429", status=429, endpoint=ep))
    assert ep.limit == 20, "one cut per burst of refusals"
    for _ in range(20):
        eps.answered(ep, 0.01, 10)
    assert 20.9 < ep.limit < 21.1, "about +1 per limit's worth of successes"
    ep.outstanding = 21
    assert eps._pick(None, None) is eps.all[1]  # the full one is passed over
    capped = Endpoints(["http://127.0.0.1:9/v1"], cap=8).all[0]
    assert capped.limit == 8 and math.isinf(ep.cap)


async def test_start_leaves_out_an_endpoint_that_does_not_answer_and_refuses_when_none_does(make_sim):
    sim = await make_sim()
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    async with Engine(base_urls=[dead, sim.base_url]) as engine:
        assert engine.model == "fot-sim" and engine.down_at_start == [dead]
        r = await engine.solve("What is 6 * 7?", task="arith", trees=2, rollouts=1, budget=20_000)
        assert r.answer is not None
        assert {row.endpoint for row in engine.ledger.rows} == {sim.base_url}
    with pytest.raises(BackendUnreachable, match="none of the 2 endpoints"):
        async with Engine(base_urls=[dead, "http://127.0.0.1:7/v1"]):
            pass
    with pytest.raises(ValueError, match="not both"):
        Engine("http://a/v1", base_urls=["http://b/v1"])


async def test_budget_and_ledger_agree_with_the_upstreams_across_endpoints(make_sim):
    sims = [await make_sim(ttft_s=0.005) for _ in range(3)]
    budget = Budget(tokens=60_000)
    ledger = Ledger()
    async with LLMClient([s.base_url for s in sims], "fot-sim", budget=budget, ledger=ledger) as llm:
        await asyncio.gather(*(llm.chat(prompts.answer(f"What is {i} * 3?"), tag=CallTag(f"p{i}", 0, 0), n=2, seed=i)
                               for i in range(30)))
    assert ledger.total.prompt_tokens == sum(s.stats.reported_prompt for s in sims)
    assert ledger.total.completion_tokens == sum(s.stats.reported_completion for s in sims)
    assert budget.spent_tokens == ledger.total.total_tokens <= 60_000


def test_the_environments_proxy_is_used_as_the_openai_client_would_unless_no_proxy_covers_it(monkeypatch):
    from fot.endpoints import env_proxy

    for var in ("https_proxy", "no_proxy", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3129")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert env_proxy("https://api.example.com/v1") == "http://proxy.internal:3128"
    assert env_proxy("http://gpu-box:8000/v1") == "http://proxy.internal:3129"
    assert env_proxy("http://127.0.0.1:8000/v1") is None  # NO_PROXY covers it
    assert Endpoints(["https://api.example.com/v1"]).all[0].proxy == "http://proxy.internal:3128"
