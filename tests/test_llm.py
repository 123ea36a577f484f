"""The LLM client against fot.sim (a simulated backend) over real HTTP on loopback."""

import asyncio
import json
import time

import pytest

from fot import Budget, BudgetExhausted, CallTag, Ledger, LLMClient, LLMError, Price

from fot.search import prompts
from fot.sim import sim_tokens

Q = "What is 7 + 8?"


def client_for(sim, **kw) -> LLMClient:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return LLMClient(sim.base_url, "fot-sim", api_key="sk-test", **kw)


async def test_usage_is_the_servers_exact_count_and_cached_tokens_are_read(make_sim):
    sim = await make_sim()
    async with client_for(sim) as llm:
        first = await llm.chat(prompts.answer(Q), role="answer", tag=CallTag("p1", 0, 0))
        second = await llm.chat(prompts.critique(Q, first.text), role="critique", tag=CallTag("p1", 0, 1))
    r1, r2 = first.record, second.record
    assert "\\boxed{" in first.text
    assert r1.prompt_tokens == sim.stats.reported_prompt - r2.prompt_tokens
    assert r1.completion_tokens == len(sim_tokens(first.text))
    assert not r1.estimated and r1.outcome == "ok" and r1.attempts == 1
    # the critique shares the system + question prefix with the first call
    assert r1.cached_tokens == 0 and r2.cached_tokens > 0
    assert r2.cached_tokens == sim.stats.reported_cached
    assert (r1.problem, r1.tree, r1.rollout, r1.role) == ("p1", 0, 0, "answer")


async def test_ledger_totals_equal_the_sims_reported_usage_under_concurrency(make_sim, tmp_path):
    sim = await make_sim(ttft_s=0.01)
    ledger = Ledger(tmp_path / "trace.jsonl")
    async with client_for(sim, ledger=ledger, concurrency=8) as llm:
        qs = [f"What is {a} * {b}?" for a in range(2, 8) for b in range(3, 7)]
        await asyncio.gather(*(llm.chat(prompts.answer(q), n=1 + i % 3, tag=CallTag(q, i % 4))
                               for i, q in enumerate(qs)))
    ledger.close()
    t = ledger.totals()
    assert t.calls == len(qs) and t.failed == 0
    assert t.prompt_tokens == sim.stats.reported_prompt
    assert t.completion_tokens == sim.stats.reported_completion
    assert t.cached_tokens == sim.stats.reported_cached
    reread = Ledger.read(tmp_path / "trace.jsonl")
    assert reread.totals().total_tokens == t.total_tokens
    assert sum(v.calls for v in ledger.by("tree").values()) == len(qs)


@pytest.mark.parametrize("kind", ["429", "500", "503", "hang", "truncate", "nonjson", "not_completion"])
async def test_each_fault_kind_is_retried_until_success(make_sim, kind):
    sim = await make_sim(faults={kind: 0.5}, hang_s=5.0, retry_after_s=0.02)
    async with client_for(sim, timeout=0.3, max_attempts=12) as llm:
        calls = await asyncio.gather(*(llm.chat(prompts.answer(f"What is {i} + 3?"), seed=i) for i in range(12)))
    assert all("\\boxed{" in c.text for c in calls)
    assert sim.stats.faults[kind] > 0
    retried = [c.record for c in calls if c.record.attempts > 1]
    assert retried, "with a 50% fault rate some call must have needed a retry"
    assert sum(c.record.attempts for c in calls) == sim.stats.requests
    if kind in ("hang", "truncate", "nonjson"):
        # the server may have charged for these: counted at the reservation, never dropped
        assert all(r.charged_unknown > 0 for r in retried)
    else:
        assert all(r.charged_unknown == 0 for r in retried)


@pytest.mark.parametrize("kind,expected", [("429", "rate_limit"), ("500", "server"), ("hang", "timeout"),
                                           ("truncate", "malformed"), ("nonjson", "not_completion")])
async def test_a_call_that_keeps_failing_raises_a_typed_error_and_is_recorded(make_sim, kind, expected):
    sim = await make_sim(faults={kind: 1.0}, hang_s=5.0, retry_after_s=0.01)
    ledger = Ledger()
    async with client_for(sim, timeout=0.2, max_attempts=3, ledger=ledger) as llm:
        with pytest.raises(LLMError) as info:
            await llm.chat(prompts.answer(Q), role="evaluate", tag=CallTag("p9", 2, 5))
    assert info.value.kind == expected
    row = ledger.rows[-1]
    assert row is info.value.record
    assert (row.outcome, row.attempts, row.role, row.tree) == (expected, 3, "evaluate", 2)
    assert sim.stats.requests == 3


async def test_retry_after_is_honoured(make_sim):
    sim = await make_sim(faults={"429": 1.0}, retry_after_s=0.25)
    async with client_for(sim, max_attempts=3) as llm:
        waits = []
        backoff = llm._backoff
        llm._backoff = lambda exc, failures: waits.append(backoff(exc, failures)) or waits[-1]
        with pytest.raises(LLMError):
            await llm.chat(prompts.answer(Q))
    # two waits of Retry-After (0.25 s, +10% jitter at most) between three attempts, not the 0.05 s backoff cap
    # (tenacity also asks for the wait after the last attempt, to decide to stop; it does not sleep it)
    assert len(waits) >= 2 and all(0.25 <= w <= 0.275 for w in waits), waits
    assert sim.stats.requests == 3


async def test_client_errors_are_not_retried(make_sim):
    sim = await make_sim()
    llm = LLMClient(sim.base_url, "fot-sim", api_key="sk-test")
    with pytest.raises(LLMError) as info:
        await llm.chat([{"role": "user", "content": ""}] * 0)  # no messages: HTTP 400, this request's fault
    assert info.value.kind == "client" and info.value.record.attempts == 1
    await llm.chat(prompts.answer(Q))  # the endpoint is fine: a 400 refuses nothing else
    await llm.aclose()


async def test_a_refusal_of_the_model_is_not_retried_and_nothing_more_is_sent(make_sim):
    sim = await make_sim()
    llm = LLMClient(sim.base_url, "no-such-model", api_key="sk-test")
    with pytest.raises(LLMError) as info:
        await llm.chat(prompts.answer(Q))
    assert info.value.kind == "refused" and info.value.record.attempts == 1 and "404" in str(info.value)
    with pytest.raises(LLMError) as again:
        await llm.chat(prompts.answer(Q))
    await llm.aclose()
    assert again.value.kind == "refused" and sim.stats.requests == 1  # the second was never sent


async def test_missing_usage_is_counted_with_a_tokenizer_and_marked_estimated(make_sim):
    sim = await make_sim(faults={"no_usage": 1.0})
    async with client_for(sim) as llm:
        c = await llm.chat(prompts.answer(Q))
    r = c.record
    assert r.estimated and r.outcome == "ok"
    true_completion = sim.stats.unreported_completion
    true_prompt = sim.stats.unreported_prompt
    assert abs(r.completion_tokens - true_completion) <= 0.35 * true_completion
    assert abs(r.prompt_tokens - true_prompt) <= 0.35 * true_prompt


async def test_n_fallback_when_the_backend_ignores_n(make_sim):
    sim = await make_sim(ignore_n=True)
    async with client_for(sim) as llm:
        c = await llm.chat(prompts.answer(Q), n=4, seed=11, temperature=0.8)
        assert len(c.choices) == 4 and c.record.requests == 4
        assert len(set(c.texts)) > 1, "the made-up choices must be separate samples"
        assert llm.n_supported is False
        before = sim.stats.requests
        c2 = await llm.chat(prompts.answer("What is 2 + 2?"), n=3)
        assert len(c2.choices) == 3 and sim.stats.requests - before == 3  # straight to separate requests
    total = c.record.completion_tokens + c2.record.completion_tokens
    assert total == sim.stats.reported_completion


async def test_n_is_used_when_the_backend_honours_it(make_sim):
    sim = await make_sim()
    async with client_for(sim) as llm:
        c = await llm.chat(prompts.answer(Q), n=5, temperature=1.0)
    assert len(c.choices) == 5 and c.record.requests == 1 and sim.stats.requests == 1
    assert llm.n_supported is True


async def test_short_n_fault_is_made_up(make_sim):
    sim = await make_sim(faults={"short_n": 1.0})
    async with client_for(sim) as llm:
        c = await llm.chat(prompts.answer(Q), n=4)
    assert len(c.choices) == 4 and c.record.requests > 1


async def test_completion_tokens_counted_for_one_choice_are_corrected(make_sim):
    sim = await make_sim(usage_one_choice=True)
    async with client_for(sim) as llm:
        await llm.chat(prompts.answer("What is 1 + 1?"))  # an n=1 call calibrates the tokenizer ratio
        c = await llm.chat(prompts.answer(Q), n=4)
    r = c.record
    true = sum(len(sim_tokens(t)) for t in c.texts)
    assert r.estimated
    assert abs(r.completion_tokens - true) <= 0.1 * true
    assert r.completion_tokens > 2 * len(sim_tokens(c.texts[0]))


async def test_with_logprobs_completion_tokens_counted_for_one_choice_are_exact(make_sim):
    sim = await make_sim(usage_one_choice=True)  # llama.cpp's server does this
    async with client_for(sim) as llm:
        c = await llm.chat(prompts.answer(Q), n=4, logprobs=True, temperature=1.0)
    assert c.record.completion_tokens == sum(len(sim_tokens(t)) for t in c.texts) and not c.record.estimated
    assert c.record.completion_tokens > sim.stats.reported_completion  # more than the server said


async def test_n_above_max_n_goes_as_several_requests_of_at_most_max_n(make_sim):
    sim = await make_sim()
    async with client_for(sim, max_n=2) as llm:
        c = await llm.chat(prompts.answer(Q), n=5, seed=3, temperature=1.0)
        assert len(c.choices) == 5 and c.record.requests == 3 and sim.stats.requests == 3  # 2 + 2 + 1
        assert llm.n_supported is True
        one = await llm.chat(prompts.answer(Q), n=2)
        assert len(one.choices) == 2 and one.record.requests == 1
    assert c.record.completion_tokens + one.record.completion_tokens == sim.stats.reported_completion


async def test_logprobs_are_returned_per_token(make_sim):
    sim = await make_sim()
    async with client_for(sim) as llm:
        c = await llm.chat(prompts.answer(Q), logprobs=True)
    ch = c.choices[0]
    assert ch.logprobs is not None and len(ch.logprobs) == c.record.completion_tokens
    assert ch.mean_logprob is not None and ch.mean_logprob < 0


async def test_concurrency_cap_holds(make_sim):
    sim = await make_sim(ttft_s=0.1)
    async with client_for(sim, concurrency=3) as llm:
        await asyncio.gather(*(llm.chat(prompts.answer(f"What is {i} + 1?")) for i in range(9)))
    assert sim.stats.max_in_flight == 3 and sim.stats.requests == 9


async def test_request_rate_throttle(make_sim):
    sim = await make_sim()
    async with client_for(sim, rps=10) as llm:
        sent = []
        post = llm.endpoints.post

        async def spy(*a, **kw):
            sent.append(time.monotonic())
            return await post(*a, **kw)

        llm.endpoints.post = spy
        await asyncio.gather(*(llm.chat(prompts.answer(f"What is {i} + 1?")) for i in range(25)))
    # a rate, not a speed: no request is sent before the ten ahead of it are a full period old (a slow machine
    # can only spread them further apart)
    assert len(sent) == 25
    assert all(sent[i] - sent[i - 10] >= 1.0 - 1e-3 for i in range(10, 25)), [round(t - sent[0], 3) for t in sent]


async def test_budget_caps_real_tokens_and_clamps_max_tokens(make_sim):
    sim = await make_sim(ttft_s=0.005)
    budget = Budget(tokens=3000, name="problem")
    ledger = Ledger()
    async with client_for(sim, budget=budget, ledger=ledger, concurrency=6, min_tokens=8) as llm:
        async def worker(i: int) -> int:
            done = 0
            while True:
                try:
                    await llm.chat(prompts.answer(f"What is {i} * {done}?"), max_tokens=200)
                except BudgetExhausted:
                    return done
                done += 1
        counts = await asyncio.gather(*(worker(i) for i in range(6)))
    assert sum(counts) >= 5
    real = sim.stats.reported_prompt + sim.stats.reported_completion
    assert real <= 3000 and budget.spent_tokens == real
    assert budget.reserved_tokens == 0 and budget.overrun_tokens == 0
    assert any(r.max_tokens < 200 for r in ledger.rows if r.outcome == "ok"), "the tail calls should be clamped"
    assert ledger.rows[-1].outcome == "budget" or any(r.outcome == "budget" for r in ledger.rows)


async def test_dollar_cost_in_the_ledger(make_sim):
    sim = await make_sim()
    price = Price(input=2.0, output=8.0, cached_input=0.5)
    async with client_for(sim, price=price) as llm:
        c1 = await llm.chat(prompts.answer(Q))
        c2 = await llm.chat(prompts.critique(Q, c1.text))
    r = c2.record
    expected = ((r.prompt_tokens - r.cached_tokens) * 2.0 + r.cached_tokens * 0.5 + r.completion_tokens * 8.0) / 1e6
    assert r.cached_tokens > 0 and r.cost_usd == pytest.approx(expected)


async def test_the_api_key_never_reaches_the_trace_or_errors(make_sim, tmp_path):
    secret = "sk-live-DO-NOT-LEAK-0123456789abcdef"
    sim = await make_sim(faults={"500": 1.0})
    ledger = Ledger(tmp_path / "trace.jsonl")
    llm = LLMClient(sim.base_url, "fot-sim", api_key=secret, max_attempts=2, backoff_base=0.01, ledger=ledger)
    with pytest.raises(LLMError) as info:
        await llm.chat(prompts.answer(Q))
    await llm.aclose()
    ledger.close()
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in (tmp_path / "trace.jsonl").read_text()
    assert secret not in json.dumps(vars(info.value.record))


async def test_a_small_context_clamps_max_tokens_and_refuses_prompts_that_cannot_fit(make_sim):
    sim = await make_sim()
    async with client_for(sim, context_window=300, min_tokens=16) as llm:
        c = await llm.chat(prompts.answer(Q), max_tokens=1000)
        assert c.record.max_tokens < 300 - c.record.prompt_tokens + 20
        before = sim.stats.requests
        with pytest.raises(LLMError) as info:
            await llm.chat(prompts.answer("What is 1 + 1? " + "Consider every case. " * 200), max_tokens=100)
    assert info.value.kind == "context" and info.value.record.outcome == "context"
    assert sim.stats.requests == before  # never sent to fail


def test_a_trace_torn_by_a_crash_is_continued_on_a_fresh_line(tmp_path):
    from fot.backend.ledger import CallRecord

    path = tmp_path / "trace.jsonl"
    path.write_text('{"role": "answer", "prompt_tokens": 5}\n{"role": "crit')
    with Ledger(path) as led:
        led.add(CallRecord(role="refine", prompt_tokens=7))
    rows = Ledger.read(path).rows
    assert [(r.role, r.prompt_tokens) for r in rows] == [("answer", 5), ("refine", 7)]
