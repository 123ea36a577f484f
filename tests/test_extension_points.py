"""Where to add a task, verifier, input kind, decision rule or method: one class and its registry line
(docs/architecture.md). Each test adds a toy one *only* through its registry and runs it end to end on
fot.sim (a SIMULATED backend, a test double); every registered method is run and replayed."""

import pytest

from fot import Engine
from fot.decision import DECISION_RULES, MajorityFirst
from fot.inputs import INPUT_KINDS, TreeInput
from fot.methods import METHODS
from fot.methods.sampling import Sampling
from fot.solve import main
from fot.tasks import TASKS, Arith, get_task
from fot.verifiers import VERIFIERS, Scores
from helpers import read_rows, write_problems

Q = "What is 3 * 4?"


@pytest.fixture
def registered():
    """Add entries to registries for one test, then take them out again."""
    added = []

    def add(registry: dict, key: str, value):
        registry[key] = value
        added.append((registry, key))

    yield add
    for registry, key in added:
        registry.pop(key, None)


@pytest.mark.parametrize("name", list(METHODS))
async def test_every_registered_method_runs_on_the_simulator_and_replays_its_own_run(make_sim, name):
    sim = await make_sim()
    method = METHODS[name]
    async with Engine(sim.base_url, "fot-sim") as engine:
        r = await engine.solve(Q, task="arith", method=name, trees=2, rollouts=2, samples=4)
    assert r.method == name and r.answer is not None and not r.error
    row = r.to_dict()
    size = (method.trees(engine.config.with_(trees=2)), 2) if method.tree_search else len(row["samples"])
    answer, usage, how = method.replay(row, Arith(), size)
    assert answer == r.answer, (answer, r.answer, how)
    assert usage["total"] <= r.tokens["total"] and usage["total"] > 0
    assert bool(r.forest) == method.tree_search  # a node record for the viewer exactly when it grows trees


async def test_a_method_is_one_class_and_one_registry_line(make_sim, registered, tmp_path):
    class FirstOfTwo(Sampling):  # the first answer of two samples: a toy
        name = "first2"
        summary = "the first of two samples"

        def samples(self, asked: int) -> int:
            return 2

        async def run(self, run, result):
            result = await super().run(run, result)
            firsts = [s for s in result.samples if s["answer"] is not None][:1]
            result.answer = firsts[0]["answer"] if firsts else None
            result.decision = "first"
            return result

    registered(METHODS, "first2", FirstOfTwo())
    sim = await make_sim()
    async with Engine(sim.base_url, "fot-sim") as engine:
        r = await engine.solve(Q, task="arith", method="first2")
    assert r.method == "first2" and len(r.samples) == 2 and r.decision == "first"


def test_the_command_line_offers_a_registered_method(registered, tmp_path):
    class Two(Sampling):
        name = "two"
        summary = "two samples by majority"

        def samples(self, asked: int) -> int:
            return 2

    registered(METHODS, "two", Two())
    probs, out = write_problems(tmp_path, 2, seed=1, name="p.jsonl"), tmp_path / "o.jsonl"
    assert main([str(probs), "--sim", "--method", "two", "--quiet", "--out", str(out)]) == 0
    rows = read_rows(out)
    assert [len(r["samples"]) for r in rows] == [2, 2] and {r["method"] for r in rows} == {"two"}


async def test_a_verifier_is_one_class_and_one_registry_line(make_sim, registered):
    class Fifty:
        async def score(self, question, text, k, tag, budget, seed=None):
            return Scores([50.0] * k, k)

    registered(VERIFIERS, "fifty", lambda ctx: Fifty())
    sim = await make_sim()
    async with Engine(sim.base_url, "fot-sim") as engine:
        r = await engine.solve(Q, task="arith", trees=2, rollouts=1, verifier="fifty")
    assert r.settings["verifier"] == "fifty" and all(t["q"] == 50.0 for t in r.trees if t["answer"] is not None)


async def test_an_input_kind_is_one_class_and_one_registry_line(make_sim, registered):
    class Shout:
        name = "shout"

        async def prepare(self, ctx):
            return TreeInput(ctx.question.upper(), kind="shout")

    registered(INPUT_KINDS, "shout", Shout())
    sim = await make_sim()
    async with Engine(sim.base_url, "fot-sim") as engine:
        r = await engine.solve(Q, task="arith", trees=2, rollouts=1, inputs=("raw", "shout"))
    assert [t["input"] for t in r.trees] == ["raw", "shout"] and r.trees[1]["question"] == Q.upper()


async def test_a_decision_rule_is_one_class_and_one_registry_line(make_sim, registered):
    class LastTree(MajorityFirst):
        name = "last_tree"

        def decide(self, votes, task, question):
            d = super().decide(votes, task, question)
            answered = [v for v in votes if v.answer is not None]
            if answered:
                d.answer, d.how = answered[-1].answer, "last"
            return d

    registered(DECISION_RULES, "last_tree", LastTree)
    sim = await make_sim()
    async with Engine(sim.base_url, "fot-sim") as engine:
        r = await engine.solve(Q, task="arith", trees=3, rollouts=1, decision="last_tree")
    assert r.decision == "last" and r.settings["decision"] == "last_tree"


def test_a_task_is_one_class_and_one_registry_line(registered, tmp_path):
    class Shouted(Arith):  # grades like arith, but only questions in capitals are its own
        name = "shouted"

        def validate(self, question):
            return None if question.isupper() else "not shouted"

    registered(TASKS, "shouted", Shouted)
    assert get_task("shouted").validate("WHAT IS 2 + 2?") is None
    probs, out = write_problems(tmp_path, 2, seed=1, name="p.jsonl"), tmp_path / "o.jsonl"
    assert main([str(probs), "--sim", "--task", "shouted", "--method", "cot", "--quiet", "--out", str(out)]) == 2
