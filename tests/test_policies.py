"""The pluggable rules (fot.search.policies): input kinds, verifiers, decision rules, and their one home."""

import json
import random
from collections import Counter

import pytest

from fot import Budget, LLMClient
from fot.config import SearchConfig
from fot.engine import Engine
from fot.search.forest import run_forest
from fot.measure.meter import replay
from fot.search.policies import (DECISION_RULES, INPUT_KINDS, UNSET, InputContext, MajorityFirst, Scores, Vote,
                          decision_rule, shuffle_premises)
from fot.tasks.problems import Problem
from fot.sim import SimProfile
from fot.solve import main
from fot.tasks import Arith, Game24, GSM8K

Q = "What is 2 + 2?"


def votes(*triples):
    return [Vote(*t) for t in triples]


# -- decision rules ---------------------------------------------------------------------------------

def test_the_fallback_never_penalises_agreement():
    rule = decision_rule("activation_first", threshold=-101)
    vs = votes((0, "4", -50.0), (1, "4", -50.0), (2, "5", -10.0), (3, "4", -40.0), (4, "5", -20.0), (5, "6", 0.0))
    d = rule.decide(vs, Arith(), Q)
    assert d.needs_expert  # 3 of 6 is not a majority
    # summed Q would pick "6" (0 > -30 > -140); the largest group wins, its best Q breaks ties between groups
    assert rule.fallback(d, vs).answer == "4"
    d = rule.decide(votes((0, "4", -50.0), (1, "5", -10.0)), Arith(), Q)
    assert rule.fallback(d, votes((0, "4", -50.0), (1, "5", -10.0))).answer == "5"


def test_an_unscored_tree_does_not_pass_activation():
    rule = decision_rule("activation_first", threshold=0.0)
    d = rule.decide(votes((0, "4", None), (1, "5", 10.0), (2, "4", None)), Arith(), Q)
    assert (d.answer, d.how, d.active) == ("5", "single", [1])
    d = rule.decide(votes((0, "4", None), (1, "5", None), (2, "4", None)), Arith(), Q)
    assert d.sparse_fallback and d.answer == "4"  # nobody scored: all vote, and the decision says so


def test_majority_first_takes_a_majority_of_all_trees_before_activation():
    vs = votes((0, "4", -60.0), (1, "4", -70.0), (2, "5", 80.0))
    assert decision_rule("majority_first").decide(vs, Arith(), Q).answer == "4"
    assert decision_rule("activation_first").decide(vs, Arith(), Q).answer == "5"
    tie = votes((0, "4", -60.0), (1, "5", 80.0))  # no majority: activation breaks the tie
    assert decision_rule("majority_first").decide(tie, Arith(), Q).answer == "5"


@pytest.mark.parametrize("name", list(DECISION_RULES))
def test_settled_only_when_no_remaining_vote_could_change_the_decision(name):
    """Brute force: whenever `settled` says so, every way the remaining trees could vote gives the same answer."""
    rule = decision_rule(name, threshold=0.0)
    rng = random.Random(7)
    answers, qs = ["4", "5", None], [-50.0, 80.0, None]
    checked = 0
    for _ in range(3000):
        T = rng.randint(2, 6)
        done = rng.randint(1, T - 1)
        finished = [Vote(i, rng.choice(answers), rng.choice(qs)) for i in range(done)]
        if not rule.settled(finished, T - done, Arith(), Q):
            continue
        checked += 1
        decided = rule.decide(finished, Arith(), Q)
        for _ in range(30):
            rest = [Vote(i, rng.choice(answers), rng.choice(qs)) for i in range(done, T)]
            full = rule.decide(finished + rest, Arith(), Q)
            assert not full.needs_expert and full.answer == decided.answer
    assert checked > 20


def _early_stop_script(role, user, req):
    """Trees 0-2 (temperature 0.7) answer 41 and score -50; tree 3 (temperature 1.0) answers 42 slowly, scores 80."""
    if role == "evaluate":
        return "Checked.\nScore: " + ("80" if "boxed{42}" in user else "-50")
    if req.temperature == 1.0:
        return "slow " * 150 + "so \\boxed{42}"
    return "quick \\boxed{41}"


@pytest.mark.parametrize("name,expected", [("activation_first", "42"), ("majority_first", "41")])
async def test_early_stop_respects_activation(make_sim, name, expected):
    sim = await make_sim(script=_early_stop_script, decode_tps=3000)
    answers = {}
    async with LLMClient(sim.base_url, "fot-sim", concurrency=64) as llm:
        for early in (False, True):
            cfg = SearchConfig(trees=4, rollouts=1, inputs=("raw",), temperatures=(0.7, 0.7, 0.7, 1.0),
                               logprob_threshold=None, early_stop=early, decision=name)
            fr = await run_forest("What is 6 * 7?", Arith(), llm, cfg, Budget(), f"e{early}")
            answers[early] = (fr.answer, fr.early_stopped)
    assert answers[False][0] == answers[True][0] == expected  # stopping early never changes the decision
    # the paper's rule cannot stop: three agreeing trees below the threshold do not count
    assert answers[True][1] == (name == "majority_first")


async def test_on_a_noise_verifier_the_forest_is_no_worse_than_a_plain_majority(make_sim):
    noise = SimProfile(p_first=0.45, eval_right=(20.0, 40.0), eval_wrong=(20.0, 40.0), p_fix=0.2)
    sim = await make_sim(profile=noise)
    cfg = SearchConfig(trees=5, rollouts=2, inputs=("raw",), logprob_threshold=None, sparse_stop=None)
    forest_right = majority_right = 0
    async with LLMClient(sim.base_url, "fot-sim", concurrency=64) as llm:
        for i in range(60):
            q, truth = f"What is {i} * 7 + 3?", str(i * 7 + 3)
            fr = await run_forest(q, Arith(), llm, cfg, Budget(), f"n{i}")
            counts = Counter(t.answer for t in fr.trees if t.answer is not None)
            top = counts.most_common()
            if len(top) == 1 or (top and top[0][1] > top[1][1] and top[0][1] * 2 > sum(counts.values())):
                assert fr.answer == top[0][0]  # a strict majority of the trees is never overruled
            majority = top[0][0] if top else None  # ties: the first-seen answer
            forest_right += fr.answer == truth
            majority_right += majority == truth
    assert forest_right >= majority_right


# -- one object for the forest and the meter ---------------------------------------------------------

class CountingRule(MajorityFirst):
    name = "counting"

    def __init__(self):
        super().__init__(threshold=0.0, majority=0.5)
        self.calls = 0

    def decide(self, votes, task, question):
        self.calls += 1
        return super().decide(votes, task, question)


class ParityVerifier:
    """Agent code's own verifier: even answers are good. It gets every argument the tree passes."""

    def __init__(self):
        self.seen_seeds = []

    async def score(self, question, text, k, tag, budget, seed=None):
        self.seen_seeds.append(seed)
        ans = Arith().extract(text)
        return Scores([80.0 if ans is not None and int(ans) % 2 == 0 else -80.0], asked=1)


async def test_agent_code_passes_its_own_verifier_and_decision_rule_and_the_meter_replays_with_it(make_sim):
    sim = await make_sim()
    rule, verifier = CountingRule(), ParityVerifier()
    async with Engine(sim.base_url) as engine:
        r = await engine.solve(Problem("p", "What is 6 * 8?"), task="arith", trees=3, rollouts=2, tie_break="q",
                               verifier=verifier, decision=rule)
        roles = {row.role for row in engine.ledger.rows}
    assert "evaluate" not in roles and verifier.seen_seeds and all(s is not None for s in verifier.seen_seeds)
    assert rule.calls == 1 and r.settings["decision"] == "counting"
    answer, usage, how = replay(r.to_dict(), Arith(), 3, 2, rule)
    assert rule.calls == 2 and answer == r.answer and usage["total"] == r.tokens["total"]
    with pytest.raises(ValueError, match="not registered"):
        replay(r.to_dict(), Arith(), 3, 2)  # a rule the registry does not know must be passed in


# -- settings ----------------------------------------------------------------------------------------

def test_unset_keeps_a_setting_and_none_is_a_value():
    cfg = SearchConfig()
    assert cfg.logprob_threshold == -1.0
    assert cfg.with_(logprob_threshold=None).logprob_threshold is None
    assert cfg.with_(logprob_threshold=UNSET, trees=UNSET).logprob_threshold == -1.0


@pytest.mark.parametrize("bad", [dict(decision="vote"), dict(verifier="oracle"), dict(inputs=("raw", "mirror"))])
def test_search_config_checks_names_against_the_registries(bad):
    with pytest.raises(ValueError, match="known"):
        SearchConfig(**bad)


# -- input diversity ---------------------------------------------------------------------------------

def _ctx(question, task, rank=0, examples=(), seed=3):
    return InputContext(question, task, None, Budget(), 0, rank, "p", seed, list(examples), 256)


@pytest.mark.parametrize("kind", ["shuffle", "example"])
async def test_every_input_kind_changes_a_game24_puzzle_or_says_why(kind):
    inp = await INPUT_KINDS[kind].prepare(_ctx("2 6 8 13", Game24(), examples=Game24.exemplars))
    assert inp.kind == kind and (inp.question, inp.hint) != ("2 6 8 13", "")
    if kind == "shuffle":
        assert sorted(inp.question.split()) == ["13", "2", "6", "8"]


async def test_arithmetic_is_shuffled_by_commuting_and_single_premise_text_says_why():
    inp = await INPUT_KINDS["shuffle"].prepare(_ctx("What is 4 - 8?", Arith()))
    assert inp.question == "What is -8 + 4?" and Arith().grade("-4", "-4") and inp.kind == "shuffle"
    inp = await INPUT_KINDS["shuffle"].prepare(_ctx("What is 6 + 6?", Arith()))
    assert inp.kind == "raw" and "nothing to reorder" in inp.note
    inp = await INPUT_KINDS["shuffle"].prepare(_ctx("How tall is the tower?", GSM8K()))
    assert inp.kind == "raw" and inp.note
    inp = await INPUT_KINDS["example"].prepare(_ctx("What is 6 + 6?", Arith(), examples=[]))
    assert inp.kind == "raw" and "--examples" in inp.note


async def test_the_second_example_tree_gets_the_second_nearest_example():
    pool = list(Arith.exemplars)
    first = await INPUT_KINDS["example"].prepare(_ctx("What is 7 * 5?", Arith(), rank=0, examples=pool))
    second = await INPUT_KINDS["example"].prepare(_ctx("What is 7 * 5?", Arith(), rank=1, examples=pool))
    assert "7 * 8" in first.hint and first.hint != second.hint


async def test_a_four_tree_game24_forest_sees_four_different_inputs_and_the_result_records_them(make_sim):
    sim = await make_sim()
    async with Engine(sim.base_url) as engine:
        # proof="win": a proof would cancel the trees still preparing their input, and this test reads all four
        r = await engine.solve("2 6 8 13", task="game24", trees=4, rollouts=0, proof="win")
    seen = {(t["question"], t["hint"]) for t in r.trees}
    assert len(seen) == 4 and [t["input"] for t in r.trees] == ["raw", "rephrase", "shuffle", "example"]


def test_examples_file_feeds_example_trees_and_the_problem_file_itself_is_refused(tmp_path, capsys):
    probs = tmp_path / "p.jsonl"
    probs.write_text(json.dumps({"id": "a", "question": "What is 3 + 4?", "answer": "7"}) + "\n")
    ex = tmp_path / "ex.jsonl"
    ex.write_text(json.dumps({"question": "What is 30 + 40?", "answer": "30 + 40 = 70. \\boxed{70}"}) + "\n"
                  + json.dumps({"question": "What is 3 + 4?", "answer": "7"}) + "\n")
    out = tmp_path / "o.jsonl"
    assert main([str(probs), "--sim", "--trees", "4", "--rollouts", "0", "--examples", str(ex), "--out", str(out),
                 "--quiet"]) == 0
    row = json.loads(out.read_text())
    hints = [t["hint"] for t in row["trees"] if t["input"] == "example"]
    assert hints and "What is 30 + 40?" in hints[0]  # the user's example, nearest by words
    assert "1 example(s) are problems of this run" in capsys.readouterr().err
    assert main([str(probs), "--sim", "--examples", str(probs), "--out", str(tmp_path / "x.jsonl")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n" + json.dumps({"question": "What is 1 + 1?"}) + "\n")
    assert main([str(probs), "--sim", "--examples", str(bad), "--out", str(tmp_path / "y.jsonl")]) == 2
    assert "bad.jsonl:2: field 'answer'" in capsys.readouterr().err


async def test_a_new_input_kind_is_one_class_and_one_registration(make_sim):
    from fot.search.policies import TreeInput

    class Reverse:
        name = "reverse"

        async def prepare(self, ctx):
            return TreeInput("What is " + " ".join(reversed(ctx.question[8:-1].split())) + "?", kind="reverse")

    with pytest.raises(ValueError):
        SearchConfig(inputs=("raw", "reverse"))
    INPUT_KINDS["reverse"] = Reverse()
    try:
        sim = await make_sim()
        async with Engine(sim.base_url) as engine:
            r = await engine.solve("What is 3 * 5?", task="arith", trees=2, rollouts=0, inputs=("raw", "reverse"))
        assert [t["question"] for t in r.trees] == ["What is 3 * 5?", "What is 5 * 3?"]
    finally:
        del INPUT_KINDS["reverse"]


def test_the_public_face_exports_the_seams_agent_code_implements():
    import fot

    for name in ("Engine", "SearchConfig", "UNSET", "Verifier", "Scores", "DecisionRule", "Vote", "Decision",
                 "InputKind", "TreeInput"):
        assert name in fot.__all__ and getattr(fot, name) is not None
    assert all(hasattr(fot, name) for name in fot.__all__)


def test_kinds_and_temperatures_are_not_in_lockstep_and_raw_is_never_repeated():
    from fot.search.inputs import assign

    kinds = ("raw", "rephrase", "shuffle", "example")
    got = [assign(kinds, (0.7, 1.0), i) for i in range(8)]
    assert [k for k, _, _ in got].count("raw") == 1
    assert len({(k, r) for k, r, _ in got}) == 8  # no (kind, rank) twice: each tree its own variant
    for kind in ("rephrase", "shuffle", "example"):  # every kind that repeats runs at both temperatures
        assert {t for k, _, t in got if k == kind} == {0.7, 1.0}


def test_premise_shuffle_keeps_dependent_sentences_and_abbreviations_with_what_they_lean_on():
    q = ("There are twice as many boys as girls at Dr. Wertz's school. Carla is downloading a 200 GB file. "
         "Normally she can download 2 GB/minute. Then she restarts. Tom has 3.5 apples. How much time does it take?")
    for seed in range(20):
        s = shuffle_premises(q, random.Random(seed))
        assert "Dr. Wertz's school." in s and "Carla is downloading a 200 GB file. Normally she can download 2 GB/minute. "\
            "Then she restarts." in s and "3.5 apples" in s and s.endswith("How much time does it take?")
    assert any(shuffle_premises(q, random.Random(seed)) != q for seed in range(20))  # and still reorders
    dependent = "Josh buys a house. He repairs it. Then he sells it. How much did he make?"
    assert shuffle_premises(dependent, random.Random(1)) == dependent  # one independent premise: nothing to move


async def test_a_rephrasing_that_drops_a_number_is_refused_with_the_reason():
    from fot.search.inputs import Rephrase

    class Fake:
        def __init__(self, text):
            self.text = text

        async def chat(self, *a, **k):
            return type("C", (), {"text": self.text})()

    q = "Ann has 12 apples and gives 5 away. How many are left?"
    ctx = _ctx(q, Arith())
    ctx.llm = Fake("Ann starts with a dozen apples and gives some away. How many remain?")
    got = await Rephrase().prepare(ctx)
    assert got.kind == "raw" and got.question == q and "12" in got.note and "5" in got.note
    ctx.llm = Fake("After giving 5 of her 12 apples away, how many does Ann have?")
    got = await Rephrase().prepare(ctx)
    assert got.kind == "rephrase" and not got.note


async def test_eight_trees_get_eight_distinct_inputs_where_the_kinds_can_supply_them(make_sim):
    sim = await make_sim()
    async with Engine(sim.base_url) as engine:
        r = await engine.solve("4 7 8 8", task="game24", trees=8, rollouts=0, proof="win")
    assert len({(t["question"], t["hint"]) for t in r.trees}) == 8


def test_a_repeated_input_is_replaced_by_an_unused_variant_or_kept_and_said_so():
    """Two trees prepared the same input (a model that rephrases identically): the later one takes a
    reordering no tree has; with nothing left to give, the repeat stays and its note says so."""
    from fot.search.forest import distinct_inputs
    from fot.search.policies import TreeInput

    q = "2 6 8 13"
    same = [(TreeInput("Use 2, 6, 8 and 13 to make 24.", kind="rephrase"), t) for t in (0.7, 1.0)]
    got = distinct_inputs(same, lambda i, r: _ctx(q, Game24()), q, [])
    assert got[0][0].question == "Use 2, 6, 8 and 13 to make 24." and not got[0][0].note
    assert got[1][0].kind == "shuffle" and sorted(got[1][0].question.split()) == ["13", "2", "6", "8"]
    assert got[1][0].note == "rephrase: the same input as tree 0, so shuffle instead" and got[1][1] == 1.0
    q = "What is 6 + 6?"  # commuting gives the same text: nothing to reorder, and no examples
    same = [(TreeInput(q, kind="raw"), 0.7), (TreeInput(q, kind="raw"), 1.0)]
    got = distinct_inputs(same, lambda i, r: _ctx(q, Arith()), q, [])
    assert got[1][0].question == q and got[1][0].note.endswith("the same input as tree 0: no other variant")
