"""fot.sim's knobs mean what they say (a SIMULATED backend, a test double): a tree's aptitude is fixed for
the tree, log-probs carry a confidence gap, the verifier has the AUROC asked for, temperature trades
accuracy for diversity, input kinds move aptitude, and the expert picks among what it is shown."""

import json
import random
import statistics

import aiohttp

from fot import LLMClient
from fot.backend.budget import Budget
from fot.config import SearchConfig
from fot.search import prompts
from fot.search.forest import run_forest
from fot.sim import SimProfile, SimSolver
from fot.sim.solver import Request, extract_answer, same_answer
from fot.tasks import get_task


def auroc(pos: list[float], neg: list[float]) -> float:
    """P(a right answer's score > a wrong one's), ties half."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _right(solver: SimSolver, messages: list[dict], seed: int, temperature: float = 0.7) -> bool:
    out = solver.respond(Request(messages, seed=seed, temperature=temperature, occurrence=0), 0)
    return bool(out.right)


def test_one_inputs_calls_share_its_aptitude_whatever_the_seed():
    """Fails on the old sim, which drew aptitude per (input, seed): with a large input effect and no
    hardness, the calls of one input agree on right-or-wrong far more often than coin flips."""
    solver = SimSolver(SimProfile(p_first=0.5, hardness_sd=0.0, tree_sd=30.0, temp_cost=0.0), seed=2)
    agree = 0
    for i in range(40):
        msgs = prompts.answer(f"What is {i} * 7 + 3?")
        outcomes = {_right(solver, msgs, seed=s) for s in range(8)}
        agree += len(outcomes) == 1
    assert agree >= 28  # ~36 expected; independent draws would agree on 8 of 8 about 1 time in 128


async def test_every_call_of_one_tree_has_the_same_aptitude(make_sim):
    sim = await make_sim(record=True, profile=SimProfile(p_first=0.3, p_fix=0.3))
    cfg = SearchConfig(trees=1, rollouts=4, inputs=("raw",), reward_samples=1, logprob_threshold=None)
    async with LLMClient(sim.base_url, "fot-sim") as llm:
        await run_forest("What is 13 * 17 - 5?", get_task("arith"), llm, cfg, Budget(), "p0")
    solver = sim.backend.solver
    users = [json.loads(b)["messages"][-1]["content"] for b in sim.backend.bodies]
    tree_calls = [u for u in users if solver.role_of(u) in ("answer", "refine")]
    assert len(tree_calls) >= 3
    assert len({solver.aptitude(u) for u in tree_calls}) == 1


def test_different_inputs_have_independent_aptitudes():
    solver = SimSolver(SimProfile(tree_sd=1.0), seed=0)
    raw = prompts.answer("Tom has 3 apples. He buys 4 more. How many apples does he have?")[1]["content"]
    shuffled = prompts.answer("He buys 4 more. Tom has 3 apples. How many apples does he have?")[1]["content"]
    rephrased = prompts.answer("In other words (version 7): Tom has 3 apples. He buys 4 more. How many apples "
                               "does he have?")[1]["content"]
    assert len({solver.aptitude(raw), solver.aptitude(shuffled), solver.aptitude(rephrased)}) == 3
    # the same problem: the shuffled and rephrased inputs keep the problem's hardness and truth
    assert solver.truth(SimSolver.question_of(shuffled)) == solver.truth(SimSolver.question_of(raw))


def test_input_diversity_has_the_size_set():
    """Accuracy of 'one input asked 4 times' vs '4 inputs asked once': with tree_sd 0 the same, with a
    large tree_sd the 4 inputs disagree far more often (diversity is a measurable effect)."""
    def disagreement(tree_sd: float) -> float:
        solver = SimSolver(SimProfile(p_first=0.5, hardness_sd=0.0, tree_sd=tree_sd, temp_cost=0.0), seed=4)
        split = 0
        for i in range(60):
            q = f"Ann has {i} pens. Bob has 5 pens. How many pens do they have?"
            variants = [q, f"Bob has 5 pens. Ann has {i} pens. How many pens do they have?",
                        f"In other words (version 1): {q}", f"In other words (version 2): {q}"]
            got = {_right(solver, prompts.answer(v), seed=k, temperature=0.0) for k, v in enumerate(variants)}
            split += len(got) == 2
        return split / 60
    assert disagreement(0.0) == 0.0  # greedy, no input effect: every input gives the same answer
    assert disagreement(3.0) > 0.3


def test_temperature_trades_accuracy_for_diversity():
    solver = SimSolver(SimProfile(p_first=0.7, hardness_sd=0.0, tree_sd=0.0, temp_spread=0.5, temp_cost=1.0), seed=1)
    def stats(t: float) -> tuple[float, float]:
        acc, distinct = [], []
        for i in range(80):
            msgs = prompts.answer(f"What is {i} + 41?")
            outs = [solver.respond(Request(msgs, seed=s, temperature=t, occurrence=0), 0) for s in range(6)]
            acc += [bool(o.right) for o in outs]
            distinct.append(len({extract_answer(o.text) for o in outs}))
        return statistics.fmean(acc), statistics.fmean(distinct)
    cold, hot = stats(0.0), stats(1.5)
    assert cold[1] == 1.0  # greedy: one answer
    assert hot[1] > 1.5 and hot[0] < cold[0] - 0.1


def test_verifier_informativeness_sets_the_auroc():
    for target in (0.6, 0.9):
        solver = SimSolver(SimProfile(eval_auroc=target), seed=3)
        pos, neg = [], []
        for i in range(150):
            q = f"What is {i} + 8?"
            for cand, bucket in ((f"so \\boxed{{{i + 8}}}", pos), (f"so \\boxed{{{i + 9}}}", neg)):
                t = solver.respond(Request(prompts.evaluate(q, cand), seed=i, temperature=1.0, occurrence=0), 0).text
                bucket.append(int(t.rsplit("Score:", 1)[1]))
        assert abs(auroc(pos, neg) - target) < 0.05, (target, auroc(pos, neg))
    assert abs(SimProfile().verifier_auroc - 0.877) < 0.001  # the default's, documented in docs/sim.md


def test_a_yes_no_grade_carries_the_verifier_in_its_log_probs():
    solver = SimSolver(SimProfile(eval_auroc=0.8), seed=5)
    rng = random.Random(0)
    pos, neg = [], []
    for i in range(120):
        q = f"What is {i} + 3?"
        for cand, bucket in ((f"\\boxed{{{i + 3}}}", pos), (f"\\boxed{{{i + 4}}}", neg)):
            msgs = [prompts.evaluate(q, cand)[0], {"role": "user", "content": f"Question: {q}\n\nAnswer to grade:\n"
                    f"{cand}\n\nIs the answer correct? Reply Yes or No."}]
            out = solver.respond(Request(msgs, seed=i, temperature=1.0, occurrence=0), 0)
            assert out.text in ("Yes", "No")
            (lp, alts), = solver.logprobs(out, 1, rng, top=2)
            bucket.append(dict(alts)["Yes"])
    assert abs(auroc(pos, neg) - 0.8) < 0.07


def test_the_expert_picks_only_among_the_candidates_shown_with_the_skill_set():
    def right_share(skill: float, with_right: bool) -> float:
        solver = SimSolver(SimProfile(expert_auroc=skill), seed=6)
        hits = 0
        for i in range(200):
            q = f"What is {i} + 5?"
            cands = [f"\\boxed{{{i + 6}}}", f"\\boxed{{{i + 7}}}"] + ([f"\\boxed{{{i + 5}}}"] if with_right else [])
            random.Random(i).shuffle(cands)
            out = solver.respond(Request(prompts.expert(q, cands), seed=i, temperature=0.0, occurrence=0), 0)
            pick = int(out.text.rsplit("Best:", 1)[1])
            assert 1 <= pick <= len(cands)
            hits += same_answer(extract_answer(cands[pick - 1]), str(i + 5))
        return hits / 200
    assert right_share(0.95, with_right=False) == 0.0  # no right candidate shown: it cannot be right
    assert abs(right_share(0.5, with_right=True) - 1 / 3) < 0.1  # no skill: a random pick among 3
    assert right_share(0.95, with_right=True) > 0.8


async def test_chat_replies_carry_openai_logprobs_with_a_confidence_gap(make_sim):
    sim = await make_sim(profile=SimProfile(p_first=0.5, logprob_right=-0.2, logprob_wrong=-1.2, logprob_reply_sd=0.2))
    right, wrong = [], []
    async with aiohttp.ClientSession() as http:
        for i in range(40):
            body = {"model": "fot-sim", "messages": prompts.answer(f"What is {i} * 3?"), "logprobs": True,
                    "top_logprobs": 3, "seed": i, "temperature": 0.7}
            async with http.post(f"{sim.base_url}/chat/completions", json=body) as r:
                choice = (await r.json())["choices"][0]
            content = choice["logprobs"]["content"]
            assert all(len(t["top_logprobs"]) == 3 and t["top_logprobs"][0]["logprob"] == t["logprob"]
                       and sum(2.718281828 ** a["logprob"] for a in t["top_logprobs"]) <= 1.0 + 1e-9 for t in content)
            mean = statistics.fmean(t["logprob"] for t in content)
            ok = same_answer(extract_answer(choice["message"]["content"]), str(i * 3))
            (right if ok else wrong).append(mean)
    assert right and wrong
    assert statistics.fmean(right) - statistics.fmean(wrong) > 0.6
