"""fot.serve driven by the real openai client, against fot.sim (the SIMULATED backend, a test double)."""

import asyncio
import json
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import pytest

from fot.config import SearchConfig
from fot.engine import Engine, minimum_budget
from fot.backend.ledger import Ledger
from fot.serve import FotServer, ServeConfig, plan_of, question_of, split_messages
from fot.sim import SimConfig, SimProfile, SimServer
from fot.tasks import detect_task

UPSTREAM_KEY = "sk-upstream-secret-4242"
Q = "What is 17 * 23?"
SURE = SimProfile(p_first=0.999)  # a simulated solver that is nearly always right: answers can be checked


@dataclass
class Served:
    sim: SimServer
    engine: Engine
    server: FotServer
    trace: Path

    def client(self, key: str = "anything", **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.base_url, api_key=key, max_retries=0, **kw)

    def aclient(self, key: str = "anything", **kw) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.server.base_url, api_key=key, max_retries=0, **kw)

    def ledger_usage(self, request_id: str) -> dict:
        """The sum of that request's rows in the engine's trace file (the whole ledger, read back)."""
        rows = [r for r in Ledger.read(self.trace).rows if r.problem == request_id]
        assert rows, f"no ledger rows for {request_id}"
        return {"prompt_tokens": sum(r.prompt_tokens for r in rows),
                "completion_tokens": sum(r.completion_tokens for r in rows),
                "total_tokens": sum(r.total_tokens for r in rows),
                "cached_tokens": sum(r.cached_tokens for r in rows)}


@pytest.fixture
async def serve(tmp_path):
    """fot.serve in front of fot.sim, both on loopback in this process; all stopped after the test."""
    stack = AsyncExitStack()

    async def start(sim: SimConfig | None = None, engine_kw: dict | None = None, **config) -> Served:
        sim_server = await stack.enter_async_context(SimServer(sim or SimConfig(profile=SURE)))
        trace = tmp_path / f"trace-{len(list(tmp_path.iterdir()))}.jsonl"
        engine = Engine(sim_server.base_url, "fot-sim", UPSTREAM_KEY, trace=trace,
                        config=SearchConfig(reward_samples=1), **(engine_kw or {}))
        await engine.start()
        stack.push_async_callback(engine.aclose)
        config = {"port": 0, "trees": 2, "rollouts": 1, "samples": 4, "simulated": True, **config}
        server = await stack.enter_async_context(FotServer(engine, ServeConfig(**config)))
        return Served(sim_server, engine, server, trace)

    yield start
    await stack.aclose()


def fot_of(obj) -> dict:
    return obj.to_dict()["fot"]


def assert_usage_is_ledger(usage: dict, served: Served, request_id: str) -> None:
    want = served.ledger_usage(request_id)
    assert usage["prompt_tokens"] == want["prompt_tokens"]
    assert usage["completion_tokens"] == want["completion_tokens"]
    assert usage["total_tokens"] == want["total_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == want["cached_tokens"]


# -- answers, usage, presets ---------------------------------------------------------------------

async def test_sync_client_answer_and_usage_equal_to_the_ledger(serve):
    s = await serve()
    r = await asyncio.to_thread(s.client().chat.completions.create, model="fot-2x2",
                                messages=[{"role": "user", "content": Q}])
    f = fot_of(r)
    assert r.object == "chat.completion" and r.model == "fot-2x2" and r.choices[0].finish_reason == "stop"
    assert f["answer"] == "391" and "391" in r.choices[0].message.content
    assert f["method"] == "forest" and len(f["trees"]) == 2 and all("q" in t and "answer" in t for t in f["trees"])
    assert f["simulated"] is True and f["error_kind"] == ""
    assert_usage_is_ledger(r.usage.to_dict(), s, f["id"])
    assert r.usage.total_tokens == f["tokens"]["total"]  # the budget's count agrees with the ledger's
    assert sum(v["total"] for v in f["tokens_by_role"].values()) == r.usage.total_tokens
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens_details.cached_tokens > 0


async def test_async_client_presets_by_model_name_and_extra_body(serve):
    s = await serve()
    async with s.aclient() as client:
        async def ask(model, **kw):
            return fot_of(await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": Q}], **kw))

        sc, bon, cot, mctsr, forest, named = await asyncio.gather(
            ask("sc-3"), ask("bon-2"), ask("cot"), ask("mctsr-2"), ask("fot-3x1"), ask("fot-2x1-fot-sim"))
        assert (sc["method"], len(sc["samples"])) == ("sc", 3)
        assert (bon["method"], len(bon["samples"])) == ("bon", 2)
        assert (cot["method"], len(cot["samples"])) == ("cot", 1)
        assert mctsr["method"] == "mctsr" and len(mctsr["trees"]) == 1 and mctsr["trees"][0]["rollouts"] == 2
        assert forest["method"] == "forest" and len(forest["trees"]) == 3
        assert named["method"] == "forest" and len(named["trees"]) == 2
        over = await ask("fot", extra_body={"fot": {"method": "sc", "samples": 5, "task": "arith", "seed": 3}})
        assert (over["method"], len(over["samples"]), over["task"]) == ("sc", 5, "arith")
        deep = await ask("fot", extra_body={"fot": {"trees": 3, "rollouts": 2}})
        assert len(deep["trees"]) == 3 and {t["rollouts"] for t in deep["trees"]} == {2}


async def test_budget_is_held_per_request(serve):
    s = await serve()
    client = s.client()
    free = await asyncio.to_thread(client.chat.completions.create, model="fot-3x3",
                                   messages=[{"role": "user", "content": Q}])
    budget = free.usage.total_tokens // 2  # binds: the unbudgeted forest spent twice this
    r = await asyncio.to_thread(client.chat.completions.create, model="fot-3x3",
                                messages=[{"role": "user", "content": Q}], extra_body={"fot": {"budget": budget}})
    f = fot_of(r)
    assert f["budget"] == budget
    assert 0 < r.usage.total_tokens <= budget
    assert_usage_is_ledger(r.usage.to_dict(), s, f["id"])


async def test_server_default_budget_and_run_budget(serve):
    s = await serve(budget=1500, engine_kw={"run_budget": 4000})
    async with s.aclient() as client:
        spent, refused = 0, None
        for _ in range(10):
            try:
                r = await client.chat.completions.create(model="fot", messages=[{"role": "user", "content": Q}])
            except openai.RateLimitError as e:
                refused = e
                break
            assert fot_of(r)["budget"] == 1500 and r.usage.total_tokens <= 1500
            spent += r.usage.total_tokens
        assert refused is not None and refused.code == "run_budget_exhausted"
        assert spent <= 4000 and s.engine.budget.spent_tokens == spent


async def test_context_messages_are_given_to_the_engine(serve):
    s = await serve(sim=SimConfig(record=True))
    r = await s.aclient().chat.completions.create(model="cot", messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": Q}])
    assert fot_of(r)["answer"] is not None
    sent = "\n".join(s.sim.backend.bodies)
    assert "You are terse." in sent and "assistant: Hello." in sent and "17 * 23" in sent
    assert question_of([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]) \
        == "a\nb"


def test_plan_of_model_names():
    cfg = ServeConfig(trees=4, rollouts=8, samples=8)
    p = plan_of({"model": "fot-4x8-Qwen/Qwen2.5-Math-1.5B-Instruct"}, cfg, "Qwen/Qwen2.5-Math-1.5B-Instruct")
    assert (p.method, p.trees, p.rollouts) == ("forest", 4, 8)
    assert plan_of({"model": "sc-16"}, cfg, "m").samples == 16
    assert plan_of({"model": "mctsr-3"}, cfg, "m").rollouts == 3
    assert plan_of({"model": "fot-2x0"}, cfg, "m").rollouts == 0
    assert plan_of({"model": "fot-1b-chat"}, cfg, "1b-chat").trees == 4  # an upstream name may start with digits


# -- streaming -----------------------------------------------------------------------------------

async def test_sync_stream_with_usage(serve):
    s = await serve()

    def run():
        with s.client().chat.completions.create(model="fot", messages=[{"role": "user", "content": Q}], stream=True,
                                                stream_options={"include_usage": True}) as stream:
            return list(stream)

    chunks = await asyncio.to_thread(run)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert "391" in text and finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    f = last.to_dict()["fot"]
    assert f["answer"] == "391" and len({c.id for c in chunks}) == 1 and chunks[0].id == f["id"]
    assert_usage_is_ledger(last.usage.to_dict(), s, f["id"])
    # progress: one text-less chunk per tree as it finishes, before the decided text
    progress = [c.to_dict()["fot"]["progress"] for c in chunks if "progress" in (c.to_dict().get("fot") or {})]
    assert [p["trees_done"] for p in progress] == list(range(1, len(f["trees"]) + 1)) and len(f["trees"]) >= 2
    assert sorted(p["tree"] for p in progress) == list(range(len(f["trees"])))
    first_text = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    last_progress = max(i for i, c in enumerate(chunks) if "progress" in (c.to_dict().get("fot") or {}))
    assert last_progress < first_text


async def test_async_stream_without_usage(serve):
    s = await serve()
    async with s.aclient() as client:
        stream = await client.chat.completions.create(model="sc-2", messages=[{"role": "user", "content": Q}],
                                                      stream=True)
        chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)
    assert "391" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"


# -- models, health ------------------------------------------------------------------------------

async def test_models_and_health(serve):
    s = await serve()
    ids = [m.id for m in (await s.aclient().models.list()).data]
    assert {"fot", "fot-2x1", "fot-2x1/fot-sim", "sc-4", "bon-4", "cot", "mctsr-1", "fot-sim"} <= set(ids)
    async with aiohttp.ClientSession() as http:
        async with http.get(s.server.base_url.replace("/v1", "/health")) as r:
            h = await r.json()
    assert r.status == 200 and h["status"] == "ok" and h["model"] == "fot-sim" and h["simulated"] is True
    assert UPSTREAM_KEY not in json.dumps(h)


async def test_several_upstreams_share_the_forests_and_health_counts_each(serve):
    async with SimServer(SimConfig(profile=SURE)) as second:
        s = await serve()
        engine = Engine(base_urls=[s.sim.base_url, second.base_url], model="fot-sim", api_key=UPSTREAM_KEY,
                        config=SearchConfig(reward_samples=1))
        await engine.start()
        try:
            async with FotServer(engine, ServeConfig(port=0, trees=2, rollouts=1, simulated=True)) as server:
                client = openai.AsyncOpenAI(base_url=server.base_url, api_key="-", max_retries=0)
                replies = await asyncio.gather(*(client.chat.completions.create(
                    model="fot", messages=[{"role": "user", "content": f"What is {i} * 9?"}]) for i in range(6)))
                await client.close()
                async with aiohttp.ClientSession() as http:
                    async with http.get(server.base_url.replace("/v1", "/health")) as r:
                        h = await r.json()
        finally:
            await engine.aclose()
    assert all(str(i * 9) in rep.choices[0].message.content for i, rep in enumerate(replies))
    served = {u["endpoint"]: u["served"] for u in h["upstreams"]}
    assert served == {s.sim.base_url: s.sim.stats.requests, second.base_url: second.stats.requests}
    assert min(served.values()) > 0 and UPSTREAM_KEY not in json.dumps(h)


# -- errors --------------------------------------------------------------------------------------

async def post(served: Served, payload, headers: dict | None = None) -> tuple[int, dict, dict]:
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    async with aiohttp.ClientSession() as http:
        async with http.post(served.server.base_url + "/chat/completions", data=data,
                             headers={"Content-Type": "application/json", **(headers or {})}) as r:
            return r.status, await r.json(), dict(r.headers)


def assert_openai_error(body: dict, code: str | None = None) -> dict:
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in json.dumps(body) and UPSTREAM_KEY not in json.dumps(body)
    if code is not None:
        assert err["code"] == code
    return err


async def test_bad_requests_are_400(serve):
    s = await serve()
    msgs = [{"role": "user", "content": Q}]
    status, body, _ = await post(s, b"{not json")
    assert status == 400 and assert_openai_error(body, "invalid_json")
    for payload, param in [({"model": "fot"}, "messages"), ({"model": "fot", "messages": []}, "messages"),
                           ({"model": "fot", "messages": [{"role": "system", "content": "x"}]}, "messages"),
                           ({"messages": msgs}, "model"),
                           ({"model": "fot", "messages": msgs, "n": 2}, "n"),
                           ({"model": "fot", "messages": msgs, "fot": {"trees": 0}}, "fot.trees"),
                           ({"model": "fot", "messages": msgs, "fot": {"trees": "4"}}, "fot.trees"),
                           ({"model": "fot", "messages": msgs, "fot": {"widht": 4}}, "fot.widht"),
                           ({"model": "fot", "messages": msgs, "fot": {"method": "beam"}}, "fot.method"),
                           ({"model": "fot", "messages": msgs, "fot": {"task": "chess"}}, "fot.task"),
                           ({"model": "fot", "messages": msgs, "tools": [{"type": "function"}]}, "tools")]:
        status, body, _ = await post(s, payload)
        assert status == 400, payload
        assert assert_openai_error(body)["param"] == param
    with pytest.raises(openai.BadRequestError) as e:
        await s.aclient().chat.completions.create(model="fot", messages=msgs, n=2)
    assert e.value.status_code == 400 and e.value.param == "n"
    assert s.sim.stats.requests == 0  # nothing refused ever reached the upstream


async def test_budget_too_small_is_400_with_the_minimum(serve):
    s = await serve()
    least = minimum_budget(Q, detect_task([Q], [None]), SearchConfig(reward_samples=1).with_(trees=3, rollouts=1))
    with pytest.raises(openai.BadRequestError) as e:
        await s.aclient().chat.completions.create(model="fot-3x1", messages=[{"role": "user", "content": Q}],
                                                  extra_body={"fot": {"budget": least - 1}})
    assert e.value.code == "budget_too_small" and e.value.param == "fot.backend.budget"
    assert e.value.response.json()["minimum_budget"] == least
    assert str(least) in e.value.message
    r = await s.aclient().chat.completions.create(model="fot-3x1", messages=[{"role": "user", "content": Q}],
                                                  extra_body={"fot": {"budget": least}})
    assert r.usage.total_tokens <= least


async def test_server_api_key_401(serve):
    s = await serve(api_key="serve-key")
    msgs = [{"role": "user", "content": Q}]
    with pytest.raises(openai.AuthenticationError) as e:
        await s.aclient("wrong").chat.completions.create(model="cot", messages=msgs)
    assert e.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        await s.aclient("wrong").models.list()
    r = await s.aclient("serve-key").chat.completions.create(model="cot", messages=msgs)
    assert fot_of(r)["answer"] == "391"


async def test_unknown_model_404_and_out_of_range_sizes_400(serve):
    s = await serve()
    for model in ("cot-3", "sc-2x2"):  # a preset's shape with the wrong sizes: fot's own 404
        status, body, _ = await post(s, {"model": model, "messages": [{"role": "user", "content": Q}]})
        assert status == 404, model
        assert assert_openai_error(body, "model_not_found")["param"] == "model"
    for model in ("gpt-4o", "fot-4x8-some-other-model", "fot-"):  # not a preset: passed through, the upstream's 404
        status, body, _ = await post(s, {"model": model, "messages": [{"role": "user", "content": Q}]})
        assert status == 404 and "not found" in body["error"]["message"], model
    with pytest.raises(openai.NotFoundError):
        await s.aclient().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": Q}])
    for model, param in (("fot-0x8", "trees"), ("sc-0", "samples"), ("fot-65x1", "trees")):
        status, body, _ = await post(s, {"model": model, "messages": [{"role": "user", "content": Q}]})
        assert status == 400 and assert_openai_error(body)["param"] == param, model
    async with aiohttp.ClientSession() as http:
        async with http.get(s.server.base_url + "/nowhere") as r:
            assert r.status == 404 and assert_openai_error(await r.json())


async def until(condition) -> None:
    """Wait for the server to reach a state (a request admitted, one queued)."""
    while not condition():
        await asyncio.sleep(0.01)


async def test_full_queue_is_429_with_retry_after(serve):
    s = await serve(sim=SimConfig(profile=SURE, ttft_s=0.4), max_active=1, queue_limit=1)
    payload = {"model": "cot", "messages": [{"role": "user", "content": Q}]}
    first = asyncio.create_task(post(s, payload))
    await until(lambda: s.server.admission.active >= 1)
    second = asyncio.create_task(post(s, payload))
    await until(lambda: s.server.admission.waiting >= 1)
    status, body, headers = await post(s, payload)
    assert status == 429 and assert_openai_error(body, "queue_full")["type"] == "rate_limit_error"
    assert int(headers["Retry-After"]) >= 1
    assert [(await t)[0] for t in (first, second)] == [200, 200]  # the queued one waited and was answered
    with pytest.raises(openai.RateLimitError):  # the openai client sees the same
        first = asyncio.create_task(post(s, payload))
        await until(lambda: s.server.admission.active >= 1)
        second = asyncio.create_task(post(s, payload))
        await until(lambda: s.server.admission.waiting >= 1)
        try:
            await s.aclient().chat.completions.create(**payload)
        finally:
            await asyncio.gather(first, second)


async def test_upstream_down_is_502_and_never_shows_the_upstream_key(serve, caplog):
    s = await serve(engine_kw={"max_attempts": 1})
    await s.sim.stop()
    caplog.set_level("DEBUG")
    status, body, _ = await post(s, {"model": "fot", "messages": [{"role": "user", "content": Q}]})
    assert status == 502
    err = assert_openai_error(body, "upstream_failed")
    assert err["type"] == "upstream_error" and body["fot"]["error_kind"] == "backend" and body["fot"]["answer"] is None
    with pytest.raises(openai.APIStatusError) as e:
        await s.aclient().chat.completions.create(model="sc-2", messages=[{"role": "user", "content": Q}])
    assert e.value.status_code == 502
    with pytest.raises(openai.APIError) as e:  # a stream has begun when the upstream fails: an error event
        stream = await s.aclient().chat.completions.create(model="cot", messages=[{"role": "user", "content": Q}],
                                                           stream=True)
        async for _ in stream:
            pass
    assert "upstream" in e.value.message
    assert UPSTREAM_KEY not in caplog.text and UPSTREAM_KEY not in s.trace.read_text()


# -- cancellation --------------------------------------------------------------------------------

async def wait_quiet(s: Served, settle: float = 1.0) -> int:
    """The upstream's request count once the cancelled forest has let go; then check it stays put."""
    await asyncio.sleep(0.5)
    seen = s.sim.stats.requests
    await asyncio.sleep(settle)
    assert s.sim.stats.requests == seen, "upstream calls went on after the client left"
    assert s.sim.stats.in_flight == 0
    assert s.server.admission.active == 0 and s.server.admission.waiting == 0
    assert s.engine.budget.reserved_tokens == 0
    return seen


async def test_disconnect_cancels_the_forest(serve):
    s = await serve(sim=SimConfig(profile=SURE, ttft_s=0.1))
    async with aiohttp.ClientSession() as http:
        with pytest.raises(asyncio.TimeoutError):
            await http.post(s.server.base_url + "/chat/completions", json={
                "model": "fot-2x8", "messages": [{"role": "user", "content": Q}]},
                timeout=aiohttp.ClientTimeout(total=0.6))
    seen = await wait_quiet(s)
    assert 0 < seen < 40  # a whole 2x8 forest makes far more calls than it made before the client left


async def test_stream_closed_by_the_client_cancels_the_forest(serve):
    s = await serve(sim=SimConfig(profile=SURE, ttft_s=0.1))
    client = s.aclient()
    stream = await client.chat.completions.create(model="fot-2x8", messages=[{"role": "user", "content": Q}],
                                                  stream=True)
    first = await stream.__anext__()
    assert first.choices[0].delta.role == "assistant"
    await asyncio.sleep(0.3)
    await stream.close()
    await client.close()
    seen = await wait_quiet(s)
    assert 0 < seen < 40


async def test_client_leaving_the_queue_frees_its_place(serve):
    s = await serve(sim=SimConfig(profile=SURE, ttft_s=0.5), max_active=1, queue_limit=1)
    payload = {"model": "cot", "messages": [{"role": "user", "content": Q}]}
    first = asyncio.create_task(post(s, payload))
    await until(lambda: s.server.admission.active >= 1)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(asyncio.TimeoutError):
            await http.post(s.server.base_url + "/chat/completions", json=payload,
                            timeout=aiohttp.ClientTimeout(total=0.2))
    await asyncio.sleep(0.1)
    assert s.server.admission.waiting == 0
    assert (await first)[0] == 200
    assert s.sim.stats.requests == 1  # the one that left never reached the upstream


def test_command_serves_until_sigterm(tmp_path):
    """`python -m fot serve --sim`: the whole command, as a user starts it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from fot.backend.local import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "fot", "serve", "--sim", "--port", str(port), "--budget", "4000",
                             "--trees", "2", "--rollouts", "1", "--api-key", UPSTREAM_KEY],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                ids = [m.id for m in client.models.list().data]
                break
            except openai.APIConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert "fot-2x1" in ids
        r = client.chat.completions.create(model="fot", messages=[{"role": "user", "content": Q}])
        assert r.to_dict()["fot"]["budget"] == 4000 and 0 < r.usage.total_tokens <= 4000
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "stopping: 1 requests served" in out and UPSTREAM_KEY not in out and "Traceback" not in out
    assert "per-request budget: 4,000 tokens" in out and "passed through to the upstream" in out


# -- stopping, hostile input, connections (issue 21) ---------------------------------------------

async def wait_for(condition, what: str, deadline_s: float = 60.0) -> None:
    """Wait for a state, failing with `what` if it is not reached by the deadline (a hang, not slowness)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        assert loop.time() < end, f"never reached: {what}"
        await asyncio.sleep(0.02)


async def test_sigterm_cancels_running_forests_and_their_upstream_calls(make_sim):
    """`fot serve` in its own process in front of a fot.sim in this one, so the upstream's own count of
    requests says what the forest did after the signal."""
    import os
    import signal
    import sys

    from fot.backend.local import free_port

    sim = await make_sim(profile=SURE, ttft_s=0.02)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fot", "serve", "--upstream", sim.base_url, "--model", "fot-sim", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def up() -> bool:
                try:
                    async with http.get(url + "/health") as r:
                        return r.status == 200
                except aiohttp.ClientConnectionError:
                    assert proc.returncode is None, "fot serve exited while starting"
                    return False

            loop = asyncio.get_running_loop()
            end = loop.time() + 60
            while not await up():
                assert loop.time() < end, "fot serve never came up"
                await asyncio.sleep(0.1)

            async def ask() -> tuple[int, dict]:
                async with http.post(url + "/v1/chat/completions", json={
                        "model": "fot-16x64", "messages": [{"role": "user", "content": Q}]}) as r:
                    return r.status, await r.json()

            request = asyncio.create_task(ask())
            await wait_for(lambda: sim.stats.requests >= 50, "the forest calling its upstream")
            at_signal, in_flight = sim.stats.requests, sim.stats.in_flight
            proc.send_signal(signal.SIGTERM)
            status, body = await asyncio.wait_for(request, 60)
        out = (await asyncio.wait_for(proc.stdout.read(), 60)).decode()
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    after = sim.stats.requests - at_signal
    assert status == 503 and assert_openai_error(body, "server_shutting_down")["type"] == "server_error"
    assert body["usage"]["total_tokens"] > 0  # what the cancelled forest spent is still reported
    assert proc.returncode == 0 and "Traceback" not in out, out
    # What was sent before the signal may still arrive, and the loop turns before `fot serve` handles it can
    # each start about as many calls as complete in them: a few times the forest's concurrency at most. A
    # 16x64 forest left running makes thousands more (benchmarks/serve_sigterm.py on 64x64: 16,375 before).
    peak = sim.stats.max_in_flight
    assert after <= 3 * peak + 20, (after, in_flight, peak)
    assert sim.stats.in_flight == 0


async def test_hostile_bodies_are_400_naming_the_field(serve):
    s = await serve()
    msgs = [{"role": "user", "content": Q}]
    deep = b'{"model": "fot", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, body, _ = await post(s, deep)
    assert status == 400 and "deep" in assert_openai_error(body, "invalid_json")["message"]
    huge = "1" + "0" * 5000
    status, body, _ = await post(s, '{"model": "fot", "messages": [], "x": ' + huge + "}")
    assert status == 400 and assert_openai_error(body, "invalid_json")
    for payload, param in [({"model": "fot-" + huge, "messages": msgs}, "trees"),
                           ({"model": "sc-" + huge, "messages": msgs}, "samples"),
                           ({"model": "fot-2x" + huge, "messages": msgs}, "rollouts"),
                           ({"model": "fot", "messages": msgs, "stream": True, "stream_options": "x"}, "stream_options"),
                           ({"model": "fot", "messages": msgs, "fot": {"budget": 10**400}}, "fot.backend.budget"),
                           ({"model": "cot", "messages": msgs, "fot": {"budget": 10**400}}, "fot.backend.budget"),
                           ({"model": "fot", "messages": msgs, "fot": {"seed": 10**400}}, "fot.seed"),
                           ({"model": "fot", "messages": msgs, "fot": {"task": ["arith"]}}, "fot.task")]:
        status, body, _ = await post(s, payload)
        assert status == 400, (str(payload)[:80], body)
        err = assert_openai_error(body)
        assert err["param"] == param and len(err["message"]) < 300, err
    status, body, _ = await post(s, {"model": "fot", "messages": [{"role": "user", "content": "make 24"}],
                                     "fot": {"task": "game24"}})
    assert status == 400 and assert_openai_error(body, "bad_question")["param"] == "messages"
    assert s.sim.stats.requests == 0


async def test_idle_and_slow_connections_are_closed(serve):
    s = await serve(idle_timeout_s=0.3, body_timeout_s=0.3)
    port = s.server.port

    async def closed_by_server(data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        await writer.drain()
        try:  # the server ends it; aiohttp's default would hold it for an hour (keepalive_timeout 3630 s)
            return await asyncio.wait_for(reader.read(), 60)
        finally:
            writer.close()

    assert await closed_by_server(b"") == b""  # connected, never asked anything
    assert await closed_by_server(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n") == b""  # headers never end
    slow_body = await closed_by_server(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                       b"application/json\r\nContent-Length: 100\r\n\r\n{\"model\"")
    assert slow_body.startswith(b"HTTP/1.1 408") and b"request_timeout" in slow_body
    assert s.sim.stats.requests == 0
    # a request that works for longer than the idle timeout is not idle: it is answered
    s.sim.backend.config.ttft_s = 0.2
    status, body, _ = await post(s, {"model": "fot-2x2", "messages": [{"role": "user", "content": Q}]})
    assert status == 200 and body["fot"]["wall_s"] > 0.3


def test_command_refuses_a_bad_or_busy_port_in_one_line():
    import socket
    import subprocess
    import sys

    run = [sys.executable, "-m", "fot", "serve", "--sim", "--port"]
    bad = subprocess.run(run + ["99999"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--port must be <= 65535" in bad.stderr and len(bad.stderr.splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = subprocess.run(run + [str(taken.getsockname()[1])], capture_output=True, text=True, timeout=120)
    assert busy.returncode == 1, busy.stderr
    errors = [line for line in busy.stderr.splitlines() if "ERROR" in line or "Traceback" in line]
    assert len(errors) == 1 and "cannot listen on 127.0.0.1" in errors[0] and "in use" in errors[0], busy.stderr


async def test_stopping_the_server_ends_a_stream_with_an_error_event_and_refuses_the_queue(serve):
    s = await serve(sim=SimConfig(profile=SURE, ttft_s=0.05), max_active=1, queue_limit=1)
    client = s.aclient()
    stream = await client.chat.completions.create(model="fot-2x8", messages=[{"role": "user", "content": Q}],
                                                  stream=True)
    assert (await stream.__anext__()).choices[0].delta.role == "assistant"
    queued = asyncio.create_task(post(s, {"model": "cot", "messages": [{"role": "user", "content": Q}]}))
    await wait_for(lambda: s.server.admission.waiting == 1 and s.sim.stats.requests > 0, "one running, one queued")
    stopping = asyncio.create_task(s.server.stop())
    with pytest.raises(openai.APIError) as e:
        async for _ in stream:
            pass
    assert "shutting down" in e.value.message
    status, body, _ = await queued
    assert status == 503 and assert_openai_error(body, "server_shutting_down")
    await asyncio.wait_for(stopping, 60)
    await client.close()
    assert s.sim.stats.in_flight == 0 and s.engine.budget.reserved_tokens == 0


# -- a proxy a user can leave in place (issue 27) ------------------------------------------------

async def test_plain_names_are_ordinary_chat_and_presets_a_forest_each_billed_as_the_upstream_counted(serve):
    s = await serve(sim=SimConfig(profile=SURE, record=True))
    client = s.aclient()

    def upstream_spend() -> int:  # what fot.sim itself reported serving
        return s.sim.stats.reported_prompt + s.sim.stats.reported_completion

    before, calls = upstream_spend(), s.sim.stats.requests
    plain = await client.chat.completions.create(model="fot-sim", messages=[{"role": "user", "content": Q}],
                                                 max_tokens=77, temperature=0.2, seed=5)
    assert s.sim.stats.requests == calls + 1  # ordinary chat: one upstream call, the body as the client sent it
    sent = json.loads(s.sim.backend.bodies[-1])
    assert (sent["model"], sent["max_tokens"], sent["temperature"], sent["seed"]) == ("fot-sim", 77, 0.2, 5)
    assert plain.usage.total_tokens == upstream_spend() - before and plain.id.startswith("simcmpl-")
    assert "fot" not in plain.to_dict()
    before = upstream_spend()
    stream = await client.chat.completions.create(model="fot-sim", messages=[{"role": "user", "content": Q}],
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "391" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.total_tokens == upstream_spend() - before

    before, calls = upstream_spend(), s.sim.stats.requests
    forest = await client.chat.completions.create(model="fot-2x1/fot-sim", messages=[{"role": "user", "content": Q}])
    assert s.sim.stats.requests - calls > 2 and fot_of(forest)["method"] == "forest"
    assert forest.usage.total_tokens == upstream_spend() - before  # the whole forest, as the upstream counted it
    assert fot_of(forest)["upstream_model"] == "fot-sim"
    async with aiohttp.ClientSession() as http:
        async with http.get(s.server.base_url.removesuffix("/v1") + "/health") as h:
            assert (await h.json())["passed_through"] == 2
    with pytest.raises(openai.NotFoundError):  # a plain name the upstream does not serve: its own 404, relayed
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": Q}])


async def test_a_system_prompt_is_context_for_every_call_not_the_graded_question(serve):
    s = await serve(sim=SimConfig(profile=SURE, record=True))
    system = "You are a pirate. Answer every question in pirate speak, matey."
    r = await s.aclient().chat.completions.create(model="fot-2x1", messages=[
        {"role": "system", "content": system}, {"role": "user", "content": Q}])
    f = fot_of(r)
    assert f["answer"] == "391" and f["task"] == "arith"  # the question alone was detected and solved
    bodies = [json.loads(b) for b in s.sim.backend.bodies]
    assert len(bodies) > 2
    for b in bodies:  # every call carries it, once, at the start, as a system message
        assert b["messages"][0]["role"] == "system" and b["messages"][0]["content"].startswith(system)
        assert sum(system in str(m["content"]) for m in b["messages"]) == 1
    assert split_messages([{"role": "system", "content": system}, {"role": "user", "content": Q}]) == (Q, system)


async def test_temperature_and_max_tokens_have_their_meaning_and_what_cannot_be_honoured_is_400(serve):
    s = await serve(sim=SimConfig(profile=SURE, record=True))
    r = await s.aclient().chat.completions.create(model="sc-3", messages=[{"role": "user", "content": Q}],
                                                  temperature=0.3, max_tokens=150)
    assert fot_of(r)["answer"] == "391"
    bodies = [json.loads(b) for b in s.sim.backend.bodies]
    assert {b.get("temperature") for b in bodies} == {0.3}  # every sample at the asked temperature
    assert max(b["max_tokens"] for b in bodies) <= 150  # each answer, so the reply, within max_tokens
    n = len(bodies)
    await s.aclient().chat.completions.create(model="sc-3", messages=[{"role": "user", "content": Q}])
    later = [json.loads(b) for b in s.sim.backend.bodies[n:]]
    assert max(b["max_tokens"] for b in later) > 150 and {b.get("temperature") for b in later} != {0.3}  # binding
    for field, value in (("stop", ["\n"]), ("logprobs", True), ("logit_bias", {"1": 2}), ("temperature", 3),
                         ("max_tokens", 0), ("max_tokens", 4), ("seed", "x")):
        status, body, _ = await post(s, {"model": "fot", "messages": [{"role": "user", "content": Q}], field: value})
        assert status == 400 and assert_openai_error(body)["param"] == field, (field, value)
