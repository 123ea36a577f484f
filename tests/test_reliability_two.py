"""Issue 12: what broke when the engine was attacked as a user's bad day would; one test per defect."""

import asyncio
import json

import pytest

from fot import Budget, BudgetExhausted, Engine, FotError, LLMClient, LLMError, Problem, SolveError
from fot.engine import minimum_budget
from fot.tasks import get_task
from helpers import FakeBackend, ok


def _replies(critique_status=400, eval_delay=0.5):
    """Answers at once, a critique that fails without retry, self-evaluations that take a while."""
    def reply(role, body):
        if role == "critique":
            return critique_status, {"error": {"message": "bad request (test)", "type": "invalid_request_error"}}, 0
        if role == "evaluate":
            return 200, ok(body, "Looks right.\nScore: 70", 12), eval_delay
        return 200, ok(body, "2 + 2 = 4\nFinal Answer: 4", 20), 0
    return reply


async def test_a_failed_call_cancels_its_siblings_so_the_result_holds_every_call_and_token(tmp_path):
    # the critique fails while the selected node's re-score is still in flight: before, the re-score ran on
    # after the result was written, so the result's tokens and calls fell short of the ledger
    async with FakeBackend(_replies()) as fake:
        async with Engine(fake.base_url, "fake", trace=tmp_path / "trace.jsonl") as engine:
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=1, rollouts=1)
            await asyncio.sleep(1.0)  # anything still running would land in the ledger now
            rows = [row for row in engine.ledger.rows if row.problem == "p1"]
            assert r.calls == len(rows)
            assert r.tokens["total"] == sum(row.total_tokens for row in rows)
            assert len(fake.served) == sum(row.outcome in ("ok", "cancelled") for row in rows)  # every served request is a row
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert len(trace) == len(rows)


async def test_the_trace_counts_choices_and_marks_cut_off_calls_cancelled(tmp_path):
    async with FakeBackend(_replies()) as fake:
        async with Engine(fake.base_url, "fake", trace=tmp_path / "trace.jsonl") as engine:
            await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=1, rollouts=1)
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert all(t["choices"] == t["n"] for t in trace if t["outcome"] == "ok")
    assert any(t["choices"] >= 1 for t in trace)
    cut = [t for t in trace if t["role"] == "evaluate" and t["rollout"] == 1]
    assert cut and all(t["outcome"] == "cancelled" for t in cut), cut


async def test_a_response_dropped_mid_body_is_charged_its_reservation_so_the_cap_holds_upstream():
    # the backend did the work and the connection died after the headers: before, such calls were free,
    # so with half of them dropped the backend served twice the cap while the budget said "within"
    calls = {"n": 0}

    def reply(role, body):
        calls["n"] += 1
        return "drop" if calls["n"] % 2 else (200, ok(body, "Final Answer: 4", 30), 0)

    cap = 2000
    async with FakeBackend(reply) as fake:
        budget = Budget(tokens=cap)
        async with LLMClient(fake.base_url, "fake", budget=budget, max_attempts=1) as llm:
            with pytest.raises(BudgetExhausted):
                for _ in range(200):
                    try:
                        await llm.chat([{"role": "user", "content": "What is 2 + 2?"}], max_tokens=100)
                    except LLMError as e:
                        assert e.kind == "connection"
        served = sum(s["usage"]["total_tokens"] for s in fake.served)
        assert served <= cap  # what the backend really did stays inside the cap
        assert budget.spent_tokens >= served  # and what we count covers it
        dropped = [r for r in llm.ledger.rows if r.outcome == "connection"]
        assert dropped and all(r.charged_unknown > 0 for r in dropped)
        assert budget.spent_tokens == sum(r.total_tokens for r in llm.ledger.rows)


async def test_a_connection_that_never_opened_costs_nothing():
    budget = Budget(tokens=10_000)
    from fot.local import free_port
    async with LLMClient(f"http://127.0.0.1:{free_port()}/v1", "fake", budget=budget, max_attempts=1) as llm:
        with pytest.raises(LLMError):
            await llm.chat([{"role": "user", "content": "What is 2 + 2?"}], max_tokens=100)
    assert budget.spent_tokens == 0 and llm.ledger.rows[0].charged_unknown == 0


@pytest.mark.parametrize("key", ["sk-a1b2", "k9x"])
async def test_a_short_api_key_echoed_by_the_backend_reaches_neither_results_nor_trace(tmp_path, key):
    def reply(role, body):
        return 401, {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}, 0

    async with FakeBackend(reply) as fake:
        async with Engine(fake.base_url, "fake", api_key=key, trace=tmp_path / "trace.jsonl", max_attempts=1) as engine:
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=1, rollouts=0)
    assert r.answer is None and r.error
    assert key not in json.dumps(r.to_dict())
    assert key not in (tmp_path / "trace.jsonl").read_text()


async def test_errors_are_typed_and_agent_code_can_ask_for_an_exception():
    def reply(role, body):
        return 500, {"error": {"message": "boom", "type": "server_error"}}, 0

    async with FakeBackend(reply) as fake:
        async with Engine(fake.base_url, "fake", max_attempts=1) as engine:
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=2, rollouts=1)
            assert r.answer is None and r.error_kind == "backend"
            with pytest.raises(SolveError) as caught:
                await engine.solve(Problem("p2", "What is 2 + 2?"), task="arith", trees=1, rollouts=0,
                                   raise_errors=True)
    e = caught.value
    assert isinstance(e, FotError) and e.kind == "backend" and e.result.id == "p2"
    assert isinstance(e.__cause__, LLMError) and e.__cause__.status == 500


async def test_a_budget_too_small_for_the_forest_is_refused_before_anything_is_sent():
    served = []

    def reply(role, body):
        served.append(role)
        return 200, ok(body, "Final Answer: 4", 5), 0

    async with FakeBackend(reply) as fake:
        async with Engine(fake.base_url, "fake") as engine:
            least = minimum_budget("What is 2 + 2?", get_task("arith"), engine.config.with_(trees=3))
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="arith", trees=3, rollouts=1, budget=least - 1)
            assert r.error_kind == "budget" and str(least) in r.error and r.calls == 0 and not served
            with pytest.raises(SolveError):
                await engine.solve(Problem("p2", "What is 2 + 2?"), task="arith", trees=3, budget=10, raise_errors=True)
            r = await engine.solve(Problem("p3", "What is 2 + 2?"), task="arith", trees=3, rollouts=0, budget=least)
            assert r.answer == "4"  # the minimum is enough for an answer from every tree
            assert all(t["answer"] == "4" for t in r.trees)


async def test_a_question_the_task_cannot_judge_is_an_input_error_not_a_search():
    async with FakeBackend(lambda role, body: (200, ok(body, "Final Answer: 24", 5), 0)) as fake:
        async with Engine(fake.base_url, "fake") as engine:
            r = await engine.solve(Problem("p1", "What is 2 + 2?"), task="game24", trees=1, rollouts=0)
    assert r.error_kind == "input" and r.calls == 0 and not fake.served
