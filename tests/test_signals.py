"""Signals any model can give (issue 25), each shown to move what it should on fot.sim (a SIMULATED
backend) or a small fake: log-probs kept, yesno / constrained / prm verifiers, weighted and
confidence votes, esc and deepconf (online, tokens counted to the stop), the adaptive forest, and the
meter's signals."""

import asyncio
import json
import statistics

import pytest

from fot.backend.llm import Choice, LLMClient, _logprobs
from fot.engine import Engine
from fot.measure.meter import grade
from fot.measure.signals import auroc, ece, measure_signals
from fot.methods import METHODS
from fot.search.confidence import group_confidences, stop_index, trace_confidence
from fot.search.decision import Vote, decision_rule
from fot.search.baselines import decide_samples
from fot.search.early import decide_deepconf, decide_esc
from fot.search.verifiers import Constrained, read_constrained, yes_no_score
from fot.backend.ledger import CallTag
from fot.tasks import Arith
from fot.tasks.problems import Problem
from fot.sim.solver import SimProfile
from helpers import FakeBackend

ARITH = Arith()


def _problems(n: int, seed: int = 5) -> list[tuple[Problem, str]]:
    return [(Problem(r["id"], r["question"]), r["answer"]) for r in Arith.generate(n, seed=seed)]


async def _run(engine, problems, **kw) -> list[dict]:
    refs = {p.id: ref for p, ref in problems}
    rows = [r.to_dict() async for r in engine.solve_many([p for p, _ in problems], task="arith", **kw)]
    return [grade(r, ARITH, refs[r["id"]]) for r in rows]


def _acc(rows) -> float:
    return sum(bool(r["correct"]) for r in rows) / len(rows)


def _tokens(rows) -> float:
    return statistics.fmean(r["tokens"]["total"] for r in rows)


# -- the pieces, alone ---------------------------------------------------------------------------------

def test_log_probs_and_their_alternatives_are_kept_and_give_token_confidence():
    lp = {"content": [{"token": "4", "logprob": -0.1, "top_logprobs": [{"token": "4", "logprob": -0.1},
                                                                       {"token": "5", "logprob": -2.9}]},
                      {"token": "2", "logprob": -1.0, "top_logprobs": []}]}
    lps, tops = _logprobs(lp)
    c = Choice("42", logprobs=lps, top_logprobs=tops)
    assert lps == [-0.1, -1.0] and tops[0] == [("4", -0.1), ("5", -2.9)]
    assert c.confidences == pytest.approx([1.5, -1.0])  # minus the mean of the alternatives; the token's own without


def test_auroc_and_calibration_are_what_they_say():
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5  # ties count half
    assert auroc([1.0, 2.0], [True, True]) is None
    assert ece([0.95, 0.95], [True, True]) == pytest.approx(0.05)


def test_trace_confidence_and_the_online_stop():
    conf = [3.0] * 20 + [0.5] * 20
    assert group_confidences([1.0, 2.0, 3.0], window=2) == [1.5, 2.5]
    assert trace_confidence(conf, window=4) == pytest.approx(0.5)  # the bottom tenth of its windows
    assert stop_index(conf, threshold=2.0, window=4) == 22  # the first window below 2.0 ends at token 22
    assert stop_index(conf, threshold=0.1, window=4) is None
    assert stop_index([0.1] * 3, threshold=2.0, window=4) is None  # no full window: never cut


def test_weighted_votes_follow_the_scores_and_confidence_votes_the_confident():
    votes = [Vote(0, "1", -90.0), Vote(1, "1", -80.0), Vote(2, "2", 95.0)]
    assert decision_rule("majority_first").decide(votes, ARITH, "q").answer == "1"
    assert decision_rule("weighted").decide(votes, ARITH, "q").answer == "2"  # 0.975 against 0.05 + 0.1
    unscored = [Vote(0, "1", None), Vote(1, "1", None), Vote(2, "2", None)]
    assert decision_rule("weighted").decide(unscored, ARITH, "q").answer == "1"  # no scores: the majority
    confident = [Vote(0, "1", None, confidence=1.0), Vote(1, "1", None, confidence=1.1), Vote(2, "2", None, confidence=5.0),
                 Vote(3, "3", None, confidence=0.9)]
    assert decision_rule("confidence").decide(confident, ARITH, "q").answer == "2"  # top half: 5.0 and 1.1
    assert decision_rule("confidence").decide(unscored, ARITH, "q").answer == "1"  # no log-probs: the majority


def test_yes_no_score_reads_the_first_tokens_distribution():
    assert yes_no_score([("Yes", -0.1), ("No", -2.4)]) > 80
    assert yes_no_score([(" no", -0.1), ("YES", -2.4), ("The", -0.5)]) < -80  # spellings summed, others ignored
    assert yes_no_score([("The", -0.1)]) is None  # neither: unreadable, never 0


def test_constrained_scores_are_read_from_json_or_a_score_line():
    assert read_constrained('{"score": 40}') == 40.0
    assert read_constrained('{\n "score": -7\n') == -7.0  # cut off after the number
    assert read_constrained("Score: 12") == 12.0
    assert read_constrained('{"score": 400}') is None


def test_esc_and_deepconf_decide_from_samples_as_the_run_would():
    s = [{"index": i, "answer": a, "prompt": 10, "completion": 5, "cached": 0} for i, a in enumerate("11223344")]
    d = decide_esc(s, ARITH, "q", 8, 2)
    assert (d.answer, d.used, d.usage["total"], d.how) == ("1", 2, 30, "window_agrees")
    d = decide_esc([{**x, "answer": str(x["index"])} for x in s], ARITH, "q", 8, 2)
    assert d.used == 8 and d.how == "plurality"  # no window agrees: all eight, the majority
    hi, lo = [4.0] * 20, [4.0] * 5 + [0.5] * 15
    t = [{"index": i, "answer": "7" if i % 2 == 0 else "9", "confidence": hi if i % 2 == 0 else lo, "prompt": 10,
          "completion": 20, "cached": 0} for i in range(6)]
    t[1]["confidence"] = hi  # a confident warm-up trace answering 9
    d = decide_deepconf(t, ARITH, "q", 6, warmup=2, keep=90)
    assert d.stopped == [3, 5] and d.answer == "7"
    assert d.usage["completion"] == 4 * 20 + 2 * 16  # the cut traces pay up to their stop only


# -- on fot.sim (SIMULATED), each moves what it should ------------------------------------------------

async def test_confidence_from_log_probs_tells_right_from_wrong_only_when_the_model_does(make_sim):
    problems = _problems(24)
    for gap, low, high in ((0.9, 0.8, 1.01), (0.0, 0.3, 0.7)):
        sim = await make_sim(profile=SimProfile(logprob_right=-0.3, logprob_wrong=-0.3 - gap, logprob_reply_sd=0.15))
        async with Engine(sim.base_url) as engine:
            rows = await _run(engine, problems, method="sc", samples=6, keep_logprobs=5)
        (conf,) = [s for s in measure_signals(rows) if s.name == "confidence"]
        assert conf.parse_rate == 1.0 and low <= conf.auroc <= high, (gap, conf)


async def test_confidence_vote_beats_the_majority_when_log_probs_are_informative(make_sim):
    problems = _problems(40, seed=9)
    sim = await make_sim(profile=SimProfile(p_first=0.35, logprob_right=-0.2, logprob_wrong=-1.2,
                                            logprob_reply_sd=0.2))
    async with Engine(sim.base_url) as engine:
        sc = await _run(engine, problems, method="sc", samples=8, keep_logprobs=5)
        run = await _run(engine, problems[:5], method="sc", samples=8, keep_logprobs=5, decision="confidence")
    # on the same samples (sc's), the confidence vote against the majority
    conf = [ARITH.grade(decide_samples("sc", r["samples"], ARITH, r["question"], "confidence")[0], r["reference"], "")
            for r in sc]
    assert sum(conf) / len(conf) > _acc(sc) + 0.1
    assert {r["decision"] for r in run} <= {"confidence", "unanimous"}  # and a run decides by it when asked
    assert run[0]["settings"]["decision"] == "confidence"


async def test_yesno_and_prm_scores_carry_the_profiles_informativeness(make_sim):
    problems = _problems(20, seed=3)
    seen = {}
    for auroc_set in (0.95, 0.5):
        sim = await make_sim(profile=SimProfile(eval_auroc=auroc_set))
        async with Engine(sim.base_url, reward_model=(sim.base_url, "sim-prm")) as engine:
            for v in ("yesno", "prm"):
                rows = await _run(engine, problems, method="bon", samples=6, verifier=v)
                (sig,) = [s for s in measure_signals(rows) if s.name == v]
                seen[(v, auroc_set)] = sig
                assert sig.parse_rate == 1.0 and sig.tokens_per_problem > 0
    for v in ("yesno", "prm"):
        assert seen[(v, 0.95)].auroc > 0.8 and abs(seen[(v, 0.5)].auroc - 0.5) < 0.2, v


async def test_weighted_votes_beat_the_majority_with_an_informative_verifier(make_sim):
    problems = _problems(40, seed=13)
    sim = await make_sim(profile=SimProfile(p_first=0.35, eval_auroc=0.95))
    async with Engine(sim.base_url) as engine:
        bon = await _run(engine, problems, method="bon", samples=8, verifier="yesno")
        weighted = await _run(engine, problems, method="bon", samples=8, verifier="yesno", decision="weighted")
        sc = await _run(engine, problems, method="sc", samples=8)
    assert _acc(weighted) > _acc(sc)
    assert weighted[0]["settings"]["decision"] == "weighted" and bon[0]["settings"]["decision"] is None


async def test_esc_stops_early_when_samples_agree_and_replays_from_an_sc_run(make_sim):
    problems = _problems(16, seed=21)
    sim = await make_sim(profile=SimProfile(p_first=0.9))
    async with Engine(sim.base_url) as engine:
        esc = await _run(engine, problems, method="esc", samples=8, esc_window=2)
        sc = {r["id"]: r for r in await _run(engine, problems, method="sc", samples=8)}
    assert _tokens(esc) < 0.6 * _tokens(sc.values())
    for r in esc:  # the same decision and tokens from sc's samples, and from its own at every n
        answer, usage, how = METHODS["esc"].replay({**sc[r["id"]], "settings": r["settings"]}, ARITH, 8)
        assert (answer, usage["total"], how) == (r["answer"], r["tokens"]["total"], r["decision"])
        assert METHODS["esc"].replay(r, ARITH, 8)[0] == r["answer"]


async def test_deepconf_online_cuts_low_confidence_traces_and_pays_only_to_the_stop(make_sim):
    problems = _problems(24, seed=17)
    sim = await make_sim(profile=SimProfile(p_first=0.4, logprob_right=-0.2, logprob_wrong=-1.2,
                                  logprob_reply_sd=0.2, answer_tokens=60))
    async with Engine(sim.base_url) as engine:
        dc = await _run(engine, problems, method="deepconf", samples=8, deepconf_warmup=3)
        sc = await _run(engine, problems, method="sc", samples=8, keep_logprobs=5)
    cut = sum(1 for r in dc for s in r["samples"] if s.get("stopped_at") is not None)
    assert cut > 0 and _acc(dc) >= _acc(sc)
    # fot.sim does not stream: a cut trace is charged what the server decoded, and no saving is claimed
    assert _tokens(dc) == pytest.approx(_tokens(sc), rel=0.05)


def _streaming_fake(lps_for):
    """A loopback server that streams a chat completion token by token with log-probs (llama.cpp's shape)."""
    from aiohttp import web

    from fot.backend.local import free_port

    class Fake:
        sent: list[int] = []

        async def __aenter__(self):
            async def chat(request):
                body = await request.json()
                lps = lps_for(body.get("seed", 0))  # per token: (its log-prob, each alternative's)
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                n = 0
                try:
                    for k, (lp, alt) in enumerate(lps):
                        tok = " 7" if k == len(lps) - 1 else " x"
                        top = [{"token": tok, "logprob": lp}, {"token": "a", "logprob": alt}, {"token": "b", "logprob": alt}]
                        chunk = {"choices": [{"index": 0, "delta": {"content": tok}, "finish_reason": None,
                                              "logprobs": {"content": [{"token": tok, "logprob": lp,
                                                                        "top_logprobs": top}]}}]}
                        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        n += 1
                        await asyncio.sleep(0.002)
                    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 30, "completion_tokens": len(lps), "total_tokens": 30 + len(lps)}}
                    await resp.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                finally:
                    Fake.sent.append(n)
                return resp

            app = web.Application()
            app.router.add_post("/v1/chat/completions", chat)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            self.port = free_port()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
            self.base_url = f"http://127.0.0.1:{self.port}/v1"
            return self

        async def __aexit__(self, *exc):
            await self.runner.cleanup()

    return Fake()


async def test_a_streamed_trace_is_cut_at_its_first_low_window_and_counted_to_there():
    sure, unsure = (-0.05, -6.0), (-1.1, -1.1)  # token confidence 4.02 (alternatives far below) and 1.1
    calm, shaky = [sure] * 60, [sure] * 20 + [unsure] * 40
    async with _streaming_fake(lambda seed: calm if seed % 2 == 0 else shaky) as fake:
        llm = LLMClient(fake.base_url, "fake")
        low = lambda conf: len(conf) >= 16 and sum(conf[-16:]) / 16 < 2.0  # noqa: E731
        whole = await llm.chat_stream([{"role": "user", "content": "q"}], stop_if=low, seed=0)
        cut = await llm.chat_stream([{"role": "user", "content": "q"}], stop_if=low, seed=1)
        await llm.aclose()
    assert whole.choices[0].finish_reason == "stop" and whole.record.completion_tokens == 60
    # the window's mean, ((16 - k) * 4.017 + k * 1.1) / 16, is first below 2.0 at k = 12 unsure tokens: token 32
    assert cut.choices[0].finish_reason == "stopped" and cut.record.completion_tokens == 32
    assert len(cut.choices[0].logprobs) == 32 and min(fake.sent) < 60  # the server stopped sending
    assert cut.record.prompt_tokens == 30  # the same prompt's count, learnt from the finished stream


async def test_constrained_sends_the_schema_and_falls_back_plainly_when_refused():
    seen = []

    def reply(role, body):
        seen.append(body)
        if "response_format" in body:
            return 400, {"error": {"message": "response_format is not supported"}}, 0
        return 200, {"choices": [{"message": {"content": "Fine.\nScore: 30"}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 20, "completion_tokens": 5}}, 0

    async with FakeBackend(reply) as fake:
        llm = LLMClient(fake.base_url, "fake", max_attempts=1)
        v = Constrained(llm, 64)
        first = await v.score("What is 2+2?", "4", 1, CallTag("p", 0, 0), None)
        second = await v.score("What is 2+2?", "5", 1, CallTag("p", 1, 0), None)
        await llm.aclose()
    assert "response_format" in seen[0] and "response_format" not in seen[1]
    assert first.values == [30.0] and second.values == [30.0]
    assert v.unconstrained == 2 and len(seen) == 3  # refused once, then never asked again


def test_the_adaptive_verdict_reads_the_run_not_the_reference():
    from fot.methods.adaptive import verdict

    def s(i, a, q):
        return {"index": i, "answer": a, "q": q}

    assert verdict([s(0, "1", 20.0), s(1, "2", None), s(2, "3", None)], ARITH, "q").startswith("uninformative: 1 of 3")
    assert verdict([s(0, "1", 15.0), s(1, "2", 15.0), s(2, "3", 15.4)], ARITH, "q").startswith(
        "uninformative: every score within 1 point")
    assert verdict([s(0, "1", -100.0), s(1, "2", -100.0)], ARITH, "q") == ""  # two floor scores: no evidence
    assert verdict([s(0, "1", 90.0), s(1, "1", 80.0), s(2, "2", -40.0)], ARITH, "q") == ""  # favours the consensus
    assert "AUROC 0.00" in verdict([s(0, "1", -90.0), s(1, "1", -80.0), s(2, "2", 40.0)], ARITH, "q")


async def test_the_adaptive_forest_stops_paying_for_a_verifier_that_says_nothing(make_sim):
    problems = _problems(12, seed=29)
    mute = await make_sim(profile=SimProfile(eval_unreadable=1.0))
    async with Engine(mute.base_url) as engine:
        rows = await _run(engine, problems, method="adaptive", trees=2, rollouts=2, samples=6)
    assert {r["decision"] for r in rows} <= {"sampling", "probe_unanimous"}
    assert all(not r["trees"] for r in rows)
    assert any(r["evaluation"].get("verdict", "").startswith("uninformative: 0 of") for r in rows)
    talking = await make_sim(profile=SimProfile(eval_auroc=0.95))
    async with Engine(talking.base_url) as engine:
        rows = await _run(engine, problems, method="adaptive", trees=2, rollouts=2, samples=6)
    assert any(r["trees"] for r in rows)  # an informative verifier keeps the forest
    assert all(r["evaluation"]["verdict"] in ("informative", "probe unanimous") for r in rows)


async def test_the_adaptive_forest_learns_over_the_run_that_a_verifier_is_not_worth_paying(make_sim):
    problems = _problems(40, seed=31)
    sim = await make_sim(profile=SimProfile(eval_unreadable=0.6))  # some problems' probes read, most not
    async with Engine(sim.base_url) as engine:
        rows = await _run(engine, problems, method="adaptive", trees=4, rollouts=1, samples=6, parallel=2)
    later = [r for r in rows if r["evaluation"].get("verdict", "").startswith("uninformative over the run")]
    assert later, [r["evaluation"].get("verdict") for r in rows]
    assert all(r["evaluation"].get("asked", 0) == 0 and not r["trees"] for r in later)  # the verifier no longer paid
