"""MCTSr: the formulas on hand-built trees, and whole trees against fot.sim (a simulated backend)."""

import asyncio
import math

import pytest

from fot import Budget, LLMClient
from fot.config import SearchConfig
from fot.search.mctsr import MCTSrTree, Node, backpropagate, fully_expanded, q_value, select, uct
from fot.sim import SimProfile
from fot.tasks import Arith
from fot.search.verifiers import SelfEvaluation, parse_score


def _tree():
    root = Node("", None, index=-1)  # the hidden root: never scored
    a = root.add(Node("a", "1", rewards=[10.0, 10.0], index=0))
    d = root.add(Node("d", None, rewards=[-50.0], dummy=True, index=1))
    a1 = a.add(Node("a1", "2", rewards=[40.0], index=2))
    a2 = a.add(Node("a2", "3", rewards=[-5.0], index=3))
    for n in (a, d, a1, a2):
        n.Q = n.q_own
    return root, a, d, a1, a2


def test_q_is_half_min_plus_mean_and_none_without_a_readable_sample():
    assert q_value([80, 20, 50]) == pytest.approx(0.5 * (20 + 50))
    assert q_value([]) is None  # not 0: "no readable score" is not "a neutral score"


def test_n_counts_evaluations_so_a_scored_node_has_n_at_least_one():
    root, a, d, a1, a2 = _tree()
    assert (a.visits, d.visits, a1.visits, root.visits) == (2, 1, 1, 0)


def test_uct_formula():
    root, a, d, a1, a2 = _tree()
    # the roots' parent is never scored (N = 0): they compete on Q alone, as in the official code
    assert uct(a, 1.4, 1e-5) == pytest.approx(10.0) and uct(d, 1.4, 1e-5) == pytest.approx(-50.0)
    assert uct(a1, 1.4, 1e-5) == pytest.approx(40 + 1.4 * math.sqrt(math.log(3) / (1 + 1e-5)))
    # the bonus is small on the -100..100 reward scale: it breaks near-ties, it does not swamp Q
    assert uct(a1, 1.4, 1e-5) - a1.Q < 2


def test_an_unscored_node_is_not_a_magnet_for_selection():
    root, a, d, a1, a2 = _tree()
    a3 = a.add(Node("a3", "9", index=4))  # every evaluation unreadable
    assert uct(a3, 1.4, 1e-5) < uct(d, 1.4, 1e-5)
    assert select([a, d, a1, a2, a3], 1.4, 1e-5, 5) is a1


def test_fully_expanded_needs_max_children_and_a_better_child():
    root, a, d, a1, a2 = _tree()
    assert not fully_expanded(a, 3)  # two children of three
    assert fully_expanded(a, 2)  # at the limit, and a1 (40) beats a (10)
    a1.rewards = [5.0]
    assert not fully_expanded(a, 2)  # at the limit, but no child is better: still worth refining
    assert fully_expanded(a, 2, cap=True)  # the cap (round three's default) closes it at the limit all the same


def test_the_exploration_bonus_is_on_the_scale_of_q_when_scaled_by_the_range():
    root, a, d, a1, a2 = _tree()
    raw, scaled = uct(a1, 1.4, 1e-5) - a1.Q, uct(a1, 1.4, 1e-5, 200.0) - a1.Q
    assert raw < 2 and scaled == pytest.approx(200 * raw) and scaled > 100


async def test_max_children_is_enforced_even_when_every_refinement_scores_worse(make_sim):
    tree, res = await _scripted_tree(make_sim, lambda t: -60 if _dummy(t) else (20 if "Better." in t else 80),
                                     rollouts=8)
    assert max(len(n.children) for n in tree.nodes) <= 3


def test_selection_exploits_the_best_q():
    root, a, d, a1, a2 = _tree()
    nodes = [a, d, a1, a2]
    assert select(nodes, 1.4, 1e-5, 3) is a1  # the best answer is refined again
    a1.rewards, a1.Q = [-30.0], -30.0
    assert select(nodes, 1.4, 1e-5, 3) is a  # a refinement that scored worse sends the search back to its parent
    assert select(nodes, 1.4, 1e-5, 2) is a  # a1 no longer beats a, so a is not fully expanded at 2 children
    assert select([d], 1.4, 1e-5, 2) is d and select([a], 1.4, 1e-5, 1) is a


def test_backpropagation_averages_own_q_with_the_best_child_without_compounding():
    root, a, d, a1, a2 = _tree()
    a11 = a1.add(Node("a11", "4", rewards=[90.0], index=4))
    a11.Q = 90.0
    backpropagate(a1)
    assert a1.Q == pytest.approx(0.5 * (40 + 90))  # 65
    assert a.Q == pytest.approx(0.5 * (10 + 65))  # 37.5, then stops below the hidden root
    backpropagate(a1)  # recomputed from the nodes' own samples: the same again, not halved again
    assert a1.Q == pytest.approx(65) and a.Q == pytest.approx(37.5)
    assert a11.Q == 90.0 and d.Q == -50.0 and root.Q is None


@pytest.mark.parametrize("text,score", [
    ("The steps hold.\nScore: 85", 85), ("Checked.\nscore = -40.", -40), ("**Score:** 70/100", 70),
    ("Score: 30\nOn reflection the last step is wrong.\nScore: -20", -20), ("[Score] 55", 55),
    ("no idea", None), ("13 - 8 = 5 and then 5 * 6 = 30, which", None), ("7/10", None),
    ("Score: 120", None), ("I'd give it a score of 80 out of 100 because", None), ("Score: 7/10", None),
    # the common forms instruction-tuned models write
    ("Final score: 70", 70), ("**Final Score:** 70", 70), ("Score: 70 (out of 100)", 70), ("Score:\n70", 70),
    ("**Score:**\n\n-40", -40), ("Overall score: 65 out of 100.", 65),
    # ... and what is still not a score
    ("I give it a score of 70.", None), ("Final answer: 70", None), ("Score:\nThe answer is 70", None),
    ("Score:\n70 apples", None), ("Final score: 70 because it is close", None), ("Score:\n150", None)])
def test_score_parsing_is_strict_about_the_final_score_line(text, score):
    assert parse_score(text) == score


async def test_full_score_suppression():
    v = SelfEvaluation(llm=None, full_score=95, penalty=50)
    assert v.suppress(97) == 47 and v.suppress(94) == 94


def _tree_for(llm, cfg, budget, question="What is 6 * 7?", index=0):
    v = SelfEvaluation(llm, cfg.eval_max_tokens, cfg.full_score, cfg.full_score_penalty)
    return MCTSrTree(index=index, question=question, original_question=question, task=Arith(), llm=llm,
                     verifier=v, config=cfg, budget=budget, problem_id="p", seed=index)


async def test_a_tree_snapshots_after_every_rollout(make_sim):
    sim = await make_sim()
    # the audited shape: both roots scored, every new node scored (round three's defaults skip both; next test)
    cfg = SearchConfig(rollouts=5, logprob_threshold=None, reward_cache="off", dummy_scoring="always")
    budget = Budget(name="tree")
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        res = await _tree_for(llm, cfg, budget).run()
    assert [s.rollout for s in res.snapshots] == [0, 1, 2, 3, 4, 5]
    tokens = [s.tokens for s in res.snapshots]
    assert tokens == sorted(tokens) and tokens[0] > 0 and tokens[-1] == budget.spent_tokens == res.tokens
    assert res.stopped == "done" and res.rollouts_done == 5
    assert res.answer is not None and res.answer in res.answers_seen
    # 2 roots scored + per rollout: critique, rescore, refine, evaluate
    roles = [r.role for r in llm.ledger.rows]
    assert roles.count("answer") == 1 and roles.count("refine") == 5 and roles.count("critique") == 5
    assert roles.count("evaluate") == 2 + 5 + 5


async def test_rewards_are_cached_per_answer_and_the_dummy_is_scored_only_when_selection_needs_it(make_sim):
    profile = SimProfile(p_first=1.0, p_break=0.0, hardness_sd=0.0, tree_sd=0.0, eval_right=(60.0, 5.0))
    sim = await make_sim(profile=profile)
    cfg = SearchConfig(rollouts=4, logprob_threshold=None)  # defaults: 1 sample, cache per tree, lazy dummy
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        res = await _tree_for(llm, cfg, Budget(name="tree")).run()
        evals = [r for r in llm.ledger.rows if r.role == "evaluate"]
    # every answer is the same right one, scored about 60 (>= 0): the dummy is never needed, and each
    # refinement reuses the first answer's rewards; only the selected nodes' extra samples are calls
    assert res.eval_cached == 4 and len(evals) == 1 + 4 and all(r.n == 1 for r in evals)
    dummy = next(n for n in res.node_records if n["role"] == "dummy")
    assert dummy["n"] == 0 and dummy["q"] is None
    refs = [n for n in res.node_records if n["role"] == "refine"]
    assert all(n["rewards"] and n["rewards"][0].get("cached") for n in refs)  # later ones: its re-scorings
    # an answer the verifier leans against (Q < 0) makes the restart point worth scoring
    bad = SimProfile(p_first=0.0, p_fix=0.0, hardness_sd=0.0, tree_sd=0.0, eval_wrong=(-60.0, 5.0))
    sim2 = await make_sim(profile=bad)
    async with LLMClient(sim2.base_url, "fot-sim") as llm:
        res = await _tree_for(llm, cfg, Budget(name="tree")).run()
    dummy = next(n for n in res.node_records if n["role"] == "dummy")
    assert dummy["n"] >= 1 and dummy["rewards"][0]["rollout"] == 1


async def test_sparse_activation_stops_a_tree_whose_best_q_stays_below_the_threshold(make_sim):
    bad = SimProfile(p_first=0.0, p_fix=0.0, hardness_sd=0.0, tree_sd=0.0, eval_wrong=(-60.0, 5.0))
    sim = await make_sim(profile=bad)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        stopped = await _tree_for(llm, SearchConfig(rollouts=6, logprob_threshold=None), Budget(name="a")).run()
        full = await _tree_for(llm, SearchConfig(rollouts=6, logprob_threshold=None, sparse_stop=None),
                               Budget(name="b")).run()
    assert (stopped.stopped, stopped.rollouts_done, stopped.rollouts_saved) == ("inactive", 1, 5)
    assert (full.stopped, full.rollouts_done, full.rollouts_saved) == ("done", 6, 0)
    assert stopped.tokens < full.tokens / 2
    # a tree the verifier leans toward keeps going
    good = SimProfile(p_first=1.0, p_break=0.0, hardness_sd=0.0, tree_sd=0.0, eval_right=(60.0, 5.0))
    sim2 = await make_sim(profile=good)
    async with LLMClient(sim2.base_url, "fot-sim") as llm:
        res = await _tree_for(llm, SearchConfig(rollouts=3, logprob_threshold=None), Budget()).run()
    assert res.stopped == "done" and res.rollouts_done == 3


async def test_rollout_critical_path_runs_independent_calls_concurrently(make_sim):
    sim = await make_sim(ttft_s=0.1)
    cfg = SearchConfig(rollouts=3, logprob_threshold=None)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        await _tree_for(llm, cfg, Budget()).run()
        rows = sorted(llm.ledger.rows, key=lambda r: r.started)
    # init: answer -> score (dummy scored alongside); rollout: (critique | rescore) -> refine -> score. Shown by
    # overlap, not by time: each rollout's critique and rescore are in flight at once, its refine after both
    def span(r):
        return r.started, r.started + r.latency_s

    for rollout in range(1, 4):
        mine = [r for r in rows if r.rollout == rollout]
        critique = next(r for r in mine if r.role == "critique")
        rescore = next(r for r in mine if r.role == "evaluate" and r.started <= critique.started + critique.latency_s)
        refine = next(r for r in mine if r.role == "refine")
        (a0, a1), (b0, b1) = span(critique), span(rescore)
        assert a0 < b1 and b0 < a1, f"rollout {rollout}: critique and rescore overlap"
        assert refine.started >= a1 - 1e-3, f"rollout {rollout}: refine waits for its critique"
    assert sim.stats.max_in_flight == 2


async def test_a_tree_stops_cleanly_on_its_budget_and_keeps_its_best_answer(make_sim):
    sim = await make_sim()
    cfg = SearchConfig(rollouts=50, logprob_threshold=None, min_tokens=16)
    budget = Budget(tokens=2500, name="tree")
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        res = await _tree_for(llm, cfg, budget).run()
    assert res.stopped == "budget" and res.rollouts_done < 50
    assert res.answer is not None
    assert budget.spent_tokens <= 2500 and res.tokens == budget.spent_tokens
    real = sim.stats.reported_prompt + sim.stats.reported_completion
    assert real <= 2500


async def test_low_logprob_steps_are_regenerated(make_sim):
    # every regeneration a fresh draw (temp_spread small, no cost): what is measured is the correction, not the
    # simulated temperature's repetition of a tree's greedy answer
    profile = SimProfile(p_first=0.3, logprob_right=-0.1, logprob_wrong=-3.0, hardness_sd=0, tree_sd=0,
                         temp_spread=0.01, temp_cost=0)
    sim = await make_sim(profile=profile)
    cfg = SearchConfig(rollouts=0, logprob_threshold=-1.5, max_corrections=3)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        results = await asyncio.gather(*(_tree_for(llm, cfg, Budget(), f"What is {i} * 3?", i).run()
                                         for i in range(20)))
        answers = sum(1 for r in llm.ledger.rows if r.role == "answer")
    corrected = sum(r.corrections for r in results)
    assert corrected > 0 and answers == 20 + corrected
    # regenerating low-confidence (here: wrong) first answers lifts first-answer accuracy above 0.3
    right = sum(1 for i, r in enumerate(results) if r.answer == str(i * 3))
    assert right / 20 > 0.5


async def test_self_correction_fires_at_the_official_threshold_on_a_log_prob_backend(make_sim):
    """Default threshold -1 (official): wrong first answers averaging -1.3 are regenerated; at -0.8 nothing fires."""
    from fot.search.mctsr import confidence

    fired = {}
    for wrong in (-1.3, -0.8):
        profile = SimProfile(p_first=0.2, logprob_right=-0.2, logprob_wrong=wrong, hardness_sd=0, tree_sd=0)
        sim = await make_sim(profile=profile)
        async with LLMClient(sim.base_url, "fot-sim") as llm:
            results = await asyncio.gather(*(_tree_for(llm, SearchConfig(rollouts=0), Budget(), f"What is {i} + 5?",
                                                       i).run() for i in range(12)))
        fired[wrong] = sum(r.corrections for r in results)
    assert fired[-1.3] > 0 and fired[-0.8] == 0

    class Choice:  # a backend that returns prompt log-probs too: the mean is over both, as the official code's
        logprobs = [-0.5, -0.5]
        prompt_logprobs = [None, -2.0, -2.0, -2.0, -2.0]  # (the first prompt token has none)
    assert confidence(Choice()) == pytest.approx(-9.0 / 6) and confidence(type("C", (), {"logprobs": None})()) is None


# -- the search on a scripted backend (fot.sim with a script: rewards chosen by the test) -----------

def _graded(user: str) -> str:
    return user.split("Answer to grade:\n", 1)[1]


def _script(score_of, answer="First try: 6 * 7 = 41. \\boxed{41}"):
    """Answers, refines and scores as the test says; 'Better.' marks each refinement of a draft."""
    def script(role, user, req):
        if role == "evaluate":
            return f"Checked the steps.\nScore: {score_of(_graded(user))}"
        if role == "refine":
            draft = user.split("Draft answer:\n", 1)[1].split("\n\nCritique:\n", 1)[0]
            return draft + " Better."
        if role == "critique":
            return "Recheck the product."
        return answer
    return script


def _dummy(text: str) -> bool:
    return "know" in text or "understand" in text or "not sure" in text


async def _scripted_tree(make_sim, score_of, rollouts=8, k=1, **kw):
    sim = await make_sim(script=_script(score_of))
    # the script scores each text, and these tests are about selection on those rewards: a refinement that
    # keeps its parent's answer must be scored, not take its parent's rewards from the cache
    cfg = SearchConfig(rollouts=rollouts, reward_samples=k, logprob_threshold=None, reward_cache="off", **kw)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        tree = _tree_for(llm, cfg, Budget())
        res = await tree.run()
    return tree, res


async def test_a_tree_exploits_the_branch_its_rewards_favour(make_sim):
    # each refinement of the real answer scores 15 more (20, 35, 50, ... capped below full marks)
    tree, res = await _scripted_tree(make_sim, lambda t: -60 if _dummy(t) else min(90, 20 + 15 * t.count("Better.")))
    dummy = next(n for n in tree.nodes if n.dummy)
    assert res.rollouts_done == 8
    assert not dummy.children  # never wasted a rollout on "I don't know"
    assert res.depth == 8 and res.depth >= 3  # every rollout refined the best answer again
    assert res.q == 90 and res.answer == "41"


async def test_a_refinement_that_scores_worse_sends_the_search_back_to_the_better_parent(make_sim):
    # the official scale: with the bonus scaled by the range the less-visited child is explored first
    tree, res = await _scripted_tree(make_sim, lambda t: -60 if _dummy(t) else (20 if "Better." in t else 80),
                                     uct_scale="raw")
    first = tree.nodes[1] if tree.nodes[0].dummy else tree.nodes[0]
    assert not first.dummy and len(first.children) >= 2  # the parent got a second child
    assert res.q == 80  # and its own, better answer is returned


async def test_the_dummy_root_is_not_expanded_while_a_real_answer_scores_higher(make_sim):
    tree, res = await _scripted_tree(make_sim, lambda t: -60 if _dummy(t) else 30)
    dummy = next(n for n in tree.nodes if n.dummy)
    assert not dummy.children and res.rollouts_done == 8


async def test_the_dummy_root_is_expanded_when_every_real_answer_scores_lower(make_sim):
    tree, res = await _scripted_tree(make_sim, lambda t: 10 if _dummy(t) else -70, rollouts=2)
    dummy = next(n for n in tree.nodes if n.dummy)
    assert dummy.children  # the check above can fail: here the dummy is the best place to restart


async def test_unreadable_self_evaluations_are_dropped_and_counted_not_scored_zero(make_sim):
    sim = await make_sim(profile=SimProfile(eval_unreadable=1.0))
    # sparse_stop off: an unscored tree is inactive and would stop, and this test counts every rollout's samples
    cfg = SearchConfig(rollouts=3, reward_samples=2, logprob_threshold=None, sparse_stop=None)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        res = await _tree_for(llm, cfg, Budget()).run()
    assert res.eval_asked == 2 * 2 + 3 * (1 + 2) and res.eval_parsed == 0
    assert res.answer is not None and res.q is None  # an answer, but no evidence for it


async def test_with_no_readable_evaluation_a_tree_returns_the_answer_it_reached_most_often(make_sim):
    answers = iter(["\\boxed{41}", "\\boxed{42}", "\\boxed{42}", "\\boxed{43}"])

    def script(role, user, req):
        if role == "evaluate":
            return "I like it."  # never a score line
        if role in ("answer", "refine"):
            return next(answers)
        return "Check it."

    sim = await make_sim(script=script)
    cfg = SearchConfig(rollouts=3, reward_samples=1, logprob_threshold=None)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        tree = _tree_for(llm, cfg, Budget())
        res = await tree.run()
    assert res.answer == "42" and res.q is None and res.eval_parsed == 0
    dummy = next(n for n in tree.nodes if n.dummy)
    assert not dummy.children  # with nothing scored, ties go to a real answer, not "I don't know"


async def test_self_correction_keeps_the_more_confident_sample(make_sim):
    # the first answer is below the log-prob threshold; its regeneration is even less confident
    def script(role, user, req):
        if role == "refine":  # the regeneration prompt
            return "Recomputed: \\boxed{40}", False
        if role == "evaluate":
            return "Fine.\nScore: 10"
        return "6 * 7 = 42. \\boxed{42}", True

    sim = await make_sim(script=script, profile=SimProfile(logprob_right=-2.0, logprob_wrong=-4.0))
    cfg = SearchConfig(rollouts=0, logprob_threshold=-1.5, max_corrections=1)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        res = await _tree_for(llm, cfg, Budget()).run()
        roles = [r.role for r in llm.ledger.rows]
    assert res.corrections == 1 and roles.count("answer") == 2  # regenerated once ...
    assert res.answer == "42"  # ... and the more confident first sample kept
