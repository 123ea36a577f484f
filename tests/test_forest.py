"""The forest and the library API against fot.sim (a simulated backend)."""

import random


from fot import Budget, LLMClient
from fot.config import SearchConfig
from fot.engine import Engine
from fot.search.forest import run_forest
from fot.search.policies import Vote, decision_rule, nearest_examples, shuffle_premises
from fot.tasks.problems import Problem
from fot.sim import SimProfile
from fot.sim.solver import normalize_question
from fot.tasks import Arith, Game24

FAST = dict(logprob_threshold=None, inputs=("raw",))


def tally(trees, task, question, threshold, majority, rule="activation_first"):
    """The decision of `rule` on (index, answer, q) triples, and whether it needs the expert."""
    d = decision_rule(rule, threshold, majority).decide([Vote(*t) for t in trees], task, question)
    return d, d.needs_expert


def test_tally_paths():
    t, q = Arith(), "What is 1 + 1?"
    d, expert = tally([(0, "2", 10.0), (1, "2.0", 5.0), (2, "2", 1.0)], t, q, 0.0, 0.5)
    assert (d.answer, d.how, expert) == ("2", "unanimous", False)
    d, expert = tally([(0, "2", 10.0), (1, "3", 5.0), (2, "2", 1.0)], t, q, 0.0, 0.5)
    assert (d.answer, d.how) == ("2", "majority")
    d, expert = tally([(0, "2", 10.0), (1, "3", 5.0)], t, q, 0.0, 0.5)
    assert expert and d.how == "expert" and d.answer is None
    d, expert = tally([(0, "2", 10.0), (1, "3", 5.0), (2, "4", 5.0), (3, "2", 1.0)], t, q, 0.0, 0.5)
    assert expert  # 2 of 4 is not more than half
    d, expert = tally([(0, None, None), (1, None, None)], t, q, 0.0, 0.5)
    assert (d.answer, d.how) == (None, "none")


def test_sparse_activation_keeps_low_q_trees_out_of_the_vote():
    t, q = Arith(), "What is 1 + 1?"
    trees = [(0, "2", 40.0), (1, "3", -20.0), (2, "3", -30.0)]
    d, _ = tally(trees, t, q, 0.0, 0.5)
    assert (d.answer, d.how, d.active) == ("2", "single", [0])
    d, _ = tally(trees, t, q, -50.0, 0.5)  # everyone active: "3" wins the vote
    assert (d.answer, d.how) == ("3", "majority")
    d, _ = tally(trees, t, q, 90.0, 0.5)  # nobody passes: all vote, and the decision says so
    assert d.sparse_fallback and d.answer == "3"


def test_input_diversity_helpers():
    q = "Tom has 3 apples. Ann has 4 apples. Bob has 2 apples. How many apples are there?"
    s = shuffle_premises(q, random.Random(1))
    assert s != q and s.endswith("How many apples are there?") and sorted(s.split()) == sorted(q.split())
    assert shuffle_premises("What is 2 + 2?", random.Random(1)) == "What is 2 + 2?"
    pool = [("Tom has 5 pears. How many pears?", "5"), ("What is the capital of Peru?", "Lima"), (q, "9")]
    ranked = nearest_examples(q, pool)
    assert ranked[0][0] == "Tom has 5 pears. How many pears?" and len(ranked) == 2  # never the problem itself


async def test_trees_run_concurrently(make_sim):
    sim = await make_sim(ttft_s=0.05)
    async with LLMClient(sim.base_url, "fot-sim", concurrency=256) as llm:
        cfg = SearchConfig(trees=8, rollouts=2, **FAST)
        await run_forest("What is 3 * 9?", Arith(), llm, cfg, Budget(), "p8")
        firsts = [r for r in llm.ledger.rows if r.role == "answer" and r.rollout == 0]
    # shown by overlap, not by time: all 8 trees' first answers were in flight at once (one slow machine
    # cannot make calls that were sent together look sequential)
    assert len(firsts) == 8 and sim.stats.max_in_flight >= 8
    assert max(r.started for r in firsts) < min(r.started + r.latency_s for r in firsts)


async def test_the_search_never_sees_the_reference(make_sim):
    secret = "7319-XYZZY"
    sim = await make_sim(record=True)
    async with Engine(sim.base_url) as engine:
        r = await engine.solve(Problem("p1", "What is 2 * 9?", answer=secret), trees=2, rollouts=2)
        assert r.answer is not None
        assert sim.backend.bodies and not any(secret in b for b in sim.backend.bodies)
        # the check itself can fail: a secret that does reach the backend is found
        await engine.solve(Problem("p2", f"What is 2 * 9? ({secret})"), trees=1, rollouts=0)
    assert any(secret in b for b in sim.backend.bodies)


async def test_expert_decides_when_trees_disagree(make_sim):
    profile = SimProfile(p_first=0.3, p_fix=0.0, p_break=0.0, hardness_sd=0.0, tree_sd=0.0, expert_auroc=1.0,
                         distractor_weights=(0.34, 0.33, 0.33))
    sim = await make_sim(profile=profile)
    cfg = SearchConfig(trees=3, rollouts=0, activation_threshold=-101, **FAST)
    expert_cases = 0
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        for i in range(30):
            q = f"What is {i} + 17?"
            fr = await run_forest(q, Arith(), llm, cfg, Budget(), f"p{i}")
            if fr.decision.how == "expert":
                expert_cases += 1
                answers = {r.answer for r in fr.trees}
                assert fr.answer in answers and fr.expert_tokens > 0
                if str(i + 17) in answers:
                    assert fr.answer == str(i + 17)  # this simulated expert is always right
        rows = [r for r in llm.ledger.rows if r.role == "expert"]
    assert expert_cases >= 3 and len(rows) == expert_cases


async def test_expert_failure_falls_back_to_the_largest_group_then_its_best_q():
    from fot.search.forest import _expert
    from fot.search.mctsr import TreeResult

    trees = [TreeResult(0, "raw", 0.7, answer="4", text="... \\boxed{4}", q=10.0),
             TreeResult(1, "raw", 0.7, answer="5", text="... \\boxed{5}", q=30.0),
             TreeResult(2, "raw", 0.7, answer="4", text="... \\boxed{4}", q=15.0),
             TreeResult(3, "raw", 0.7, answer="6", text="... \\boxed{6}", q=-5.0)]
    d, need = tally([(t.index, t.answer, t.q) for t in trees], Arith(), "What is 2 + 2?", -101, 0.5)
    assert need
    dead = LLMClient("http://127.0.0.1:9/v1", "none", max_attempts=1, timeout=2)  # nothing listens on port 9
    errors: list[str] = []
    rule = decision_rule("activation_first", -101, 0.5)
    d = await _expert("What is 2 + 2?", dead, SearchConfig(), Budget(), "p", rule, d, trees, errors)
    await dead.aclose()
    # "4" has two trees, "5" one (with the best single Q): agreement wins
    assert (d.answer, d.how) == ("4", "fallback") and errors and "expert" in errors[0]


async def test_game24_uses_its_rule_check_as_verifier_and_for_self_correction(make_sim):
    profile = SimProfile(p_first=0.3, p_fix=0.5, hardness_sd=0.0, tree_sd=0.0)
    sim = await make_sim(profile=profile)
    cfg = SearchConfig(trees=2, rollouts=3, max_corrections=2, **FAST)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        fr = await run_forest("4 9 10 13", Game24(), llm, cfg, Budget(), "g1")
        roles = [r.role for r in llm.ledger.rows]
    assert "evaluate" not in roles  # the complete rule check scores, no LLM self-evaluation
    assert sum(r.corrections for r in fr.trees) > 0  # invalid expressions were regenerated
    assert Game24().grade(fr.answer, None, "4 9 10 13")


async def test_early_stop_cancels_the_rest_once_a_majority_is_certain(make_sim):
    profile = SimProfile(p_first=1.0, hardness_sd=0.0, tree_sd=0.0)
    sim = await make_sim(profile=profile, ttft_s=0.01)
    # tree 0 has few rollouts... all trees share the config, so make later trees slower with bigger inputs
    cfg = SearchConfig(trees=5, rollouts=3, early_stop=True, **FAST)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        fr = await run_forest("What is 5 + 5?", Arith(), llm, cfg, Budget(), "e1")
    assert fr.answer == "10"
    stopped = [r.stopped for r in fr.trees]
    assert fr.early_stopped == ("early_stop" in stopped)
    assert stopped.count("done") >= 3


async def test_engine_problem_budget_is_never_exceeded(make_sim):
    sim = await make_sim()
    async with Engine(sim.base_url) as engine:
        results = [r async for r in engine.solve_many([Problem(f"b{i}", f"What is {i} * 4?") for i in range(6)],
                                                      trees=4, rollouts=8, budget=6000, parallel=3)]
    assert len(results) == 6
    for r in results:
        assert r.tokens["total"] <= 6000
        assert any(t["stopped"] == "budget" for t in r.trees)
        assert r.answer is not None
        assert [s["rollout"] for s in r.snapshots[0]][0] == 0
    real = sim.stats.reported_prompt + sim.stats.reported_completion
    assert real == sum(r.tokens["total"] for r in results)


async def test_references_in_the_sim_problem_file_drive_a_gsm8k_shaped_problem(make_sim):
    q = "Tom has 3 boxes of 12 eggs. He breaks 5. How many eggs are left?"
    perfect = SimProfile(p_first=1.0, p_break=0.0, hardness_sd=0.0, tree_sd=0.0)
    sim = await make_sim(problems={normalize_question(q): "31"}, profile=perfect)
    async with Engine(sim.base_url) as engine:
        r = await engine.solve(Problem("g", q), task="gsm8k", trees=3, rollouts=2)
    # the rephrased and the shuffled inputs are still recognised as the same problem by the sim
    assert [t["input"] for t in r.trees] == ["raw", "rephrase", "shuffle"]
    assert [t["answer"] for t in r.trees] == ["31"] * 3 and r.decision == "unanimous"


async def test_an_external_reward_model_scores_instead_of_self_evaluation(make_sim):
    policy = await make_sim(seed=1)
    judge = await make_sim(seed=2, model="judge")
    async with Engine(policy.base_url, reward_model=(judge.base_url, "judge")) as engine:
        r = await engine.solve("What is 4 * 4?", task="arith", trees=2, rollouts=2, verifier="reward_model")
        roles = {row.role for row in engine.ledger.rows}
    assert r.answer is not None
    assert "reward_model" in roles and "evaluate" not in roles
    assert judge.stats.requests > 0 and policy.stats.requests > 0


class Colour:
    """A task brought by agent code: the answer is a colour word."""

    name = "colour"
    instructions = "Answer with one colour word as \\boxed{COLOUR}."

    def extract(self, text):
        import re
        m = re.findall(r"\\boxed\{(\w+)\}", text)
        return m[-1].lower() if m else None

    def equivalent(self, a, b, question=""):
        return a.lower() == b.lower()

    def grade(self, answer, reference, question=""):
        return answer is not None and answer.lower() == reference.lower()

    def rule_check(self, question, text):
        return None


async def test_a_custom_task_from_agent_code(make_sim):
    q = "What colour is a clear daytime sky?"
    sim = await make_sim(problems={normalize_question(q): "blue"}, record=True,
                         profile=SimProfile(p_first=1.0, p_break=0.0, hardness_sd=0.0, tree_sd=0.0))
    async with Engine(sim.base_url) as engine:
        r = await engine.solve(q, task=Colour(), trees=2, rollouts=1)
    assert r.task == "colour" and r.answer == "blue"
    assert any("one colour word" in b for b in sim.backend.bodies)  # its instructions reached the prompt


async def test_answer_steps_use_the_tasks_cap_and_a_cut_off_answer_does_not_vote(make_sim):
    import json as _json

    from fot.tasks import MathTask

    sim = await make_sim(record=True, profile=SimProfile(answer_tokens=600, p_first=1.0, hardness_sd=0, tree_sd=0))
    cfg = SearchConfig(trees=2, rollouts=0, **FAST)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        cut = await run_forest("What is 3 + 5?", Arith(), llm, cfg, Budget(), "a")
        whole = await run_forest("What is 3 + 6?", MathTask(), llm, cfg, Budget(), "m")
    caps = [_json.loads(b)["max_tokens"] for b in sim.backend.bodies if "Solve the question step by step" in b]
    assert sorted(set(caps)) == [Arith.answer_max_tokens, MathTask.answer_max_tokens]
    # arith's 256-token cap cuts a 600-token solution before its \boxed{}: its stray last number must not vote
    assert cut.answer is None and all(t.answer is None for t in cut.trees)
    assert whole.answer == "9"


async def test_an_early_stopped_forest_keeps_the_cancelled_trees_tokens_and_marks_smaller_cells():
    from fot.measure.meter import replay
    from helpers import FakeBackend, ok

    def reply(role, body):
        # tree i's calls carry seeds i * 10007 + k; tree 4's never come back, so trees 0-3 (who all agree)
        # finish first and settle the vote whatever the machine's speed: the early stop is not a race
        tree = int(body.get("seed") or 0) // 10_007
        text = {"evaluate": "It checks out.\nScore: 80", "critique": "Nothing to fix."}.get(
            role, "5 + 5 = 10. The answer is \\boxed{10}.")
        return 200, ok(body, text, 12), 3600.0 if tree == 4 else 0.0

    async with FakeBackend(reply) as fake, Engine(fake.base_url, "fake") as engine:
        r = (await engine.solve("What is 5 + 5?", task="arith", trees=5, rollouts=3, early_stop=True,
                                inputs=("raw",), logprob_threshold=None)).to_dict()
    assert r["early_stopped"] and any(t["stopped"] == "early_stop" for t in r["trees"])
    assert sum(t["tokens"] for t in r["trees"]) == r["tokens"]["total"]  # cancelled trees' tokens are kept
    answer, usage, how = replay(r, Arith(), 5, 3)
    assert answer == r["answer"] and usage["total"] == r["tokens"]["total"]  # the full cell replays exactly
    assert replay(r, Arith(), 3, 3)[2].startswith("inexact:early stop")
