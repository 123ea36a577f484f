"""The forest (Bi et al. 2025): T MCTSr trees on one problem, run concurrently, then one decision.

- Input diversity: tree i gets its input kind and temperature from `fot.search.inputs.assign` (each kind
  once, then the kinds that can vary again, each at its next temperature, so kinds and temperatures are
  not in lockstep; `INPUT_KINDS`: the raw question, a rephrasing by the model, the question's independent
  givens reordered, or a worked example shown first) and its own seed. Inputs are prepared first, and a
  repeat of an earlier tree's is replaced by an unused variant (`distinct_inputs`). A kind that cannot vary
  the input says why (`TreeResult.input_note`); the result keeps the input each tree really saw.
- Dynamic self-correction happens inside each tree (`MCTSrTree._generate`).
- The decision is a `fot.search.decision.DecisionRule` (default `majority_first`; the paper's order is
  `activation_first`): sparse activation, a vote, and with no decision by vote an expert prompt
  that compares one representative of each answer; if that call fails or cannot be read, the
  rule's fallback (the largest group, then the best Q in it).
- A proof decides (`SearchConfig.proof`, default "stop"): when a complete verifier proves a tree's answer
  (the Game-of-24 rule check), that answer wins the vote outright, its tree stops, and the forest
  cancels the other trees, counting the calls it cut off. "win" keeps the vote rule and lets every tree run.
- Optional consensus early stop (the paper's CGDM early termination, `early_stop`): once the rule says no
  remaining tree's vote could change the decision (`DecisionRule.settled`, which respects activation),
  the rest are cancelled. Where a remaining tree could still bring a proof that would win, it never settles.

Trees share nothing until the decision, so tree t's snapshots at rollout r are exactly what a
forest of the first t trees with r rollouts would have seen; the result keeps them for the meter,
which replays them through the same decision-rule object.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Callable

from . import prompts
from ..backend.budget import Budget, BudgetExhausted
from ..config import SearchConfig
from ..backend.ledger import CallTag
from ..backend.llm import LLMClient, LLMError
from .mctsr import MCTSrTree, RewardCache, Snapshot, TreeResult
from .decision import Decision, DecisionRule, Vote, decision_rule, vote
from .aio import gather_all
from .inputs import INPUT_KINDS, InputContext, Shuffle, TreeInput, assign, nearest_examples
from .verifiers import Verifier, make_verifier
from ..tasks import Task

BEST = re.compile(r"best\s*(?:[:=]\s*)?(?:candidate\s*)?(\d+)", re.I)  # not `\s*[:=]?\s*`: quadratic in spaces


def votes_of(trees: list[TreeResult]) -> list[Vote]:
    return [Vote(r.index, r.answer, r.q, proven=r.proven) for r in trees]


@dataclass
class ForestResult:
    answer: str | None
    text: str
    decision: Decision
    trees: list[TreeResult]
    expert_tokens: int = 0
    expert_usage: dict = field(default_factory=dict)  # prompt, completion, cached of the expert call
    early_stopped: bool = False
    stop_reason: str = ""  # proof | consensus: why the other trees were cancelled
    cancelled_calls: int = 0  # calls in flight when they were (their reservations are charged: `unknown`)
    errors: list[str] = field(default_factory=list)
    budget_bound: dict = field(default_factory=dict)  # did the problem's cap / each tree's cap clamp or refuse a call


async def run_forest(question: str, task: Task, llm: LLMClient, cfg: SearchConfig, budget: Budget,
                     problem_id: str, *, verifier: Verifier | None = None, decision: DecisionRule | None = None,
                     example_pool: list[tuple[str, str]] | None = None,
                     reward_llm: LLMClient | None = None,
                     on_tree: Callable[[TreeResult], None] | None = None,
                     on_rollout: Callable[[TreeResult], None] | None = None) -> ForestResult:
    """Search one problem. `verifier` / `decision` default to the ones `cfg` names; `example_pool` is
    the user's solved problems (without one, the task's own exemplars); `on_tree` hears of each tree
    as it finishes, before the decision; `on_rollout` of each rollout as it finishes (progress)."""
    T = cfg.trees
    if cfg.tree_budget is not None:  # the same allowance at any forest size: smaller forests replay exactly
        shares = [budget.child(tokens=cfg.tree_budget, name=f"{budget.name}/tree{i}") for i in range(T)]
    elif budget.tokens is not None:
        share = int(budget.tokens * (1 - cfg.decision_reserve)) // T
        shares = [budget.child(tokens=share, name=f"{budget.name}/tree{i}") for i in range(T)]
    else:
        shares = [budget.child(name=f"{budget.name}/tree{i}") for i in range(T)]
    made: dict[int, MCTSrTree] = {}
    shared_cache = RewardCache(task, question) if cfg.reward_cache == "problem" else None
    if verifier is None:
        verifier = make_verifier(cfg, task, question, llm, reward_llm)
    rule = decision or decision_rule(cfg.decision, cfg.activation_threshold, cfg.majority)
    examples = list(example_pool or task.exemplars)  # the user's own, else the task's
    answer_cap = cfg.answer_cap(task)

    def context(i: int, rank: int) -> InputContext:
        return InputContext(question, task, llm, shares[i], i, rank, problem_id, cfg.seed * 1000 + i, examples,
                            answer_cap)

    async def prepare(i: int) -> tuple[TreeInput, float]:
        kind, rank, temperature = assign(cfg.inputs, cfg.temperatures, i)
        try:
            inp = await INPUT_KINDS[kind].prepare(context(i, rank))
        except BudgetExhausted:
            inp = TreeInput(question, kind="raw", note=f"{kind}: no budget left to prepare it")
        return inp, temperature

    async def one(i: int, inp: TreeInput, temperature: float) -> TreeResult:
        seed = cfg.seed * 1000 + i
        tree = MCTSrTree(index=i, question=inp.question, original_question=question, task=task, llm=llm,
                         verifier=verifier, config=cfg, budget=shares[i], problem_id=problem_id, hint=inp.hint,
                         temperature=temperature, seed=seed, input_kind=inp.kind, input_note=inp.note,
                         on_rollout=on_rollout, reward_cache=shared_cache, on_proof=on_proof)
        if shares[i].spent_tokens:
            tree.result.roles["input"] = shares[i].spent_tokens  # the rephrasing, charged to the tree
        made[i] = tree
        return await tree.run()

    early, stop_reason, cancelled_calls = False, "", 0

    def stop_others(i: int | None, reason: str) -> None:
        """Cancel every tree but `i`, now: a call cancelled here was in flight; none starts after."""
        nonlocal early, stop_reason, cancelled_calls
        if stop_reason:
            return
        early, stop_reason = True, reason
        for j, t in enumerate(tasks):
            if j != i and not t.done():
                cancelled_calls += made[j].inflight if j in made else 0
                t.cancel()

    def on_proof(i: int) -> None:  # called by tree i the moment a node of it is proven
        if cfg.proof == "stop" and T > 1:
            stop_others(i, "proof")

    prepared = distinct_inputs(await gather_all(*(prepare(i) for i in range(T))), context, question, examples)

    tasks = [asyncio.create_task(one(i, *prepared[i])) for i in range(T)]
    if on_tree is not None:  # progress for whoever shows it (fot.serve's stream): each tree as it finishes
        for t in tasks:
            t.add_done_callback(lambda t: None if t.cancelled() or t.exception() else on_tree(t.result()))
    proof_wins = cfg.proof != "off"
    can_prove = proof_wins and bool(getattr(verifier, "can_prove", False))
    try:
        pending = set(tasks)
        finished: list[TreeResult] = []
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            # a tree's own failure re-raises here (all are cancelled below); a tree a proof cancelled has none
            finished += [t.result() for t in done if not (stop_reason and t.cancelled())]
            if not pending:
                break
            if not stop_reason and cfg.early_stop and not can_prove and rule.settled(
                    votes_of(finished), len(pending), task, question):
                stop_others(None, "consensus")
            if stop_reason:
                await asyncio.gather(*pending, return_exceptions=True)
                break
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    trees = []
    for i, t in enumerate(tasks):
        if t.cancelled():  # early stop: keep what the tree did and spent (its last snapshot holds its tokens)
            inp, temperature = prepared[i]
            r = made[i].result if i in made else TreeResult(
                index=i, input_kind=inp.kind, temperature=temperature, question=inp.question, hint=inp.hint,
                input_note=inp.note, tokens=shares[i].spent_tokens, snapshots=[Snapshot(0, shares[i].spent_tokens, None, None,
                                                                   shares[i].spent.calls)])
            r.stopped = "early_stop"
        else:
            r = t.result()
            if early and r.stopped == "cancelled":
                r.stopped = "early_stop"
        trees.append(r)
    bound = {"problem": budget.bound > 0, "trees": [b.bound > 0 for b in shares]}

    verdict = vote(rule, votes_of(trees), task, question, cfg.tie_break, proof_wins=proof_wins)
    expert_tokens = 0
    expert_usage = {"prompt": 0, "completion": 0, "cached": 0}
    errors = [f"tree {r.index}: {r.error}" for r in trees if r.error]
    if verdict.needs_expert:
        sp = budget.spent
        before = (sp.prompt_tokens, sp.completion_tokens, sp.cached_tokens)
        verdict = await _expert(question, llm, cfg, budget, problem_id, rule, verdict, trees, errors)
        expert_usage = {"prompt": sp.prompt_tokens - before[0], "completion": sp.completion_tokens - before[1],
                        "cached": sp.cached_tokens - before[2]}
        expert_tokens = expert_usage["prompt"] + expert_usage["completion"]
    if verdict.answer is not None and not verdict.text:
        for ans, members in verdict.groups:
            if ans == verdict.answer:
                best = max(members, key=lambda i: trees[i].q if trees[i].q is not None else float("-inf"))
                verdict.text = trees[best].text
    return ForestResult(answer=verdict.answer, text=verdict.text, decision=verdict, trees=trees,
                        expert_tokens=expert_tokens, expert_usage=expert_usage, early_stopped=early,
                        stop_reason=stop_reason, cancelled_calls=cancelled_calls, errors=errors, budget_bound=bound)


def distinct_inputs(prepared: list[tuple[TreeInput, float]], context: Callable[[int, int], InputContext],
                    question: str, examples: list[tuple[str, str]]) -> list[tuple[TreeInput, float]]:
    """Each tree's input, a repeat of an earlier tree's replaced by a variant no tree has yet (another
    reordering, then another worked example), with the reason in its note; a repeat stays only when the
    kinds have nothing left to give (say, a question with no premises to reorder and no examples)."""
    seen: dict[tuple[str, str], int] = {}
    for i, (inp, _) in enumerate(prepared):  # first, every input as prepared: a spare never takes a later tree's
        seen.setdefault((inp.question, inp.hint), i)
    out = []
    for i, (inp, temperature) in enumerate(prepared):
        first = seen[(inp.question, inp.hint)]
        if first != i:
            spare = [TreeInput(v, kind="shuffle") for v in Shuffle.variants(context(i, 0))]
            spare += [TreeInput(question, hint=f"A worked example of a similar problem:\nQ: {q}\nA: {sol}",
                                kind="example") for q, sol in nearest_examples(question, examples)]
            new = next((x for x in spare if (x.question, x.hint) not in seen), None)
            if new is not None:
                new.note = f"{inp.kind}: the same input as tree {first}, so {new.kind} instead"
                inp = new
                seen[(inp.question, inp.hint)] = i
            else:
                inp.note = (inp.note + "; " if inp.note else "") + f"the same input as tree {first}: no other variant"
        out.append((inp, temperature))
    return out


async def _expert(question: str, llm: LLMClient, cfg: SearchConfig, budget: Budget, problem_id: str,
                  rule: DecisionRule, decision: Decision, trees: list[TreeResult], errors: list[str]) -> Decision:
    """No decision by vote: show the expert one representative (best Q) of each answer and let it pick."""
    qs = {r.index: (r.q if r.q is not None else float("-inf")) for r in trees}
    reps = []
    for ans, members in decision.groups:
        best = max(members, key=lambda i: qs[i])
        reps.append((ans, trees[best].text))
    try:
        c = await llm.chat(prompts.expert(question, [t for _, t in reps]), role="expert",
                           tag=CallTag(problem_id, None, None), max_tokens=cfg.expert_max_tokens, temperature=0.0,
                           budget=budget)
    except (LLMError, BudgetExhausted) as e:
        errors.append(f"expert: {e}")
        return rule.fallback(decision, votes_of(trees))
    picks = BEST.findall(c.text) or re.findall(r"candidate\s*(\d+)", c.text, re.I)  # weak models skip the format
    k = int(picks[-1]) if picks else 0
    if not 1 <= k <= len(reps):
        return rule.fallback(decision, votes_of(trees))
    decision.answer, decision.text, decision.how = reps[k - 1][0], reps[k - 1][1], "expert"
    return decision
