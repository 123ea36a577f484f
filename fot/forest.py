"""The forest (Bi et al. 2025): T MCTSr trees on one problem, run concurrently, then one decision.

- Input diversity: tree i gets input kind `inputs[i % len]` (raw question, a rephrasing by the
  model, the premises shuffled, or the most similar worked example from a pool prepended) and
  temperature `temperatures[i % len]`, with its own seed.
- Sparse activation: only trees whose best Q reaches `activation_threshold` vote (all trees with
  an answer if none does; the decision says so).
- Dynamic self-correction happens inside each tree (`MCTSrTree._generate`).
- Consensus-guided decision (`decide`): unanimous / majority of the active trees; with no
  majority, an expert prompt compares one representative of each answer and picks; if that call
  fails or cannot be parsed, the answer with the highest summed Q (recorded as `fallback_q`).
- Optional early stop: once more than half of all trees have finished with the same answer, no
  other tree can change the vote; the rest are cancelled.

Trees share nothing until the decision, so tree t's snapshots at rollout r are exactly what a
forest of the first t trees with r rollouts would have seen; the result keeps them for the meter.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field

from . import prompts
from .budget import Budget, BudgetExhausted
from .config import SearchConfig
from .ledger import CallTag
from .llm import LLMClient, LLMError
from .mctsr import MCTSrTree, TreeResult
from .tasks import Task
from .verifiers import RuleVerifier, SelfEvaluation, Verifier

BEST = re.compile(r"best\s*[:=]?\s*(?:candidate\s*)?(\d+)", re.I)


@dataclass
class Decision:
    answer: str | None
    text: str
    how: str  # unanimous | majority | expert | fallback_q | single | none
    active: list[int]  # tree indexes that voted
    groups: list[tuple[str, list[int]]]  # (answer, trees) for each distinct answer among the active
    sparse_fallback: bool = False  # no tree passed the threshold, so all trees with an answer voted


def group_answers(items: list[tuple[int, str]], task: Task, question: str) -> list[tuple[str, list[int]]]:
    groups: list[tuple[str, list[int]]] = []
    for idx, ans in items:
        for rep, members in groups:
            if task.equivalent(rep, ans, question):
                members.append(idx)
                break
        else:
            groups.append((ans, [idx]))
    return groups


def tally(trees: list[tuple[int, str | None, float | None]], task: Task, question: str, threshold: float,
          majority: float) -> tuple[Decision, bool]:
    """The vote without the expert: (decision so far, whether the expert is needed).

    `trees` are (index, answer, best Q). Pure, so the meter replays it for smaller forests."""
    answered = [(i, a, q if q is not None else float("-inf")) for i, a, q in trees if a is not None]
    active = [(i, a, q) for i, a, q in answered if q >= threshold]
    sparse_fallback = False
    if not active and answered:
        active, sparse_fallback = answered, True
    groups = group_answers([(i, a) for i, a, _ in active], task, question)
    ids = [i for i, _, _ in active]
    if not groups:
        return Decision(None, "", "none", ids, groups, sparse_fallback), False
    groups.sort(key=lambda g: -len(g[1]))
    top_answer, top_members = groups[0]
    if len(active) == 1:
        return Decision(top_answer, "", "single", ids, groups, sparse_fallback), False
    if len(groups) == 1:
        return Decision(top_answer, "", "unanimous", ids, groups, sparse_fallback), False
    if len(top_members) > majority * len(active) and len(top_members) > len(groups[1][1]):
        return Decision(top_answer, "", "majority", ids, groups, sparse_fallback), False
    return Decision(None, "", "expert", ids, groups, sparse_fallback), True


def fallback_by_q(decision: Decision, qs: dict[int, float]) -> Decision:
    """The documented fallback when no expert verdict is available: the answer with the highest summed Q."""
    best = max(decision.groups, key=lambda g: (sum(qs.get(i, 0.0) for i in g[1]), len(g[1])))
    decision.answer, decision.how = best[0], "fallback_q"
    return decision


def shuffle_premises(question: str, rng: random.Random) -> str:
    """Shuffle every sentence but the last (the question itself); unchanged if there is only one."""
    sentences = re.split(r"(?<=[.!])\s+", question.strip())
    if len(sentences) < 3:
        return question
    head, last = sentences[:-1], sentences[-1]
    for _ in range(5):
        rng.shuffle(head)
        if " ".join(head + [last]) != question.strip():
            break
    return " ".join(head + [last])


def nearest_example(question: str, pool: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The worked example whose question shares the most words with this one (Jaccard)."""
    words = set(re.findall(r"\w+", question.lower()))
    best, best_sim = None, -1.0
    for q, sol in pool:
        if q.strip() == question.strip():
            continue  # never show the problem itself
        w = set(re.findall(r"\w+", q.lower()))
        sim = len(words & w) / (len(words | w) or 1)
        if sim > best_sim:
            best, best_sim = (q, sol), sim
    return best


@dataclass
class ForestResult:
    answer: str | None
    text: str
    decision: Decision
    trees: list[TreeResult]
    expert_tokens: int = 0
    expert_usage: dict = field(default_factory=dict)  # prompt, completion, cached of the expert call
    early_stopped: bool = False
    errors: list[str] = field(default_factory=list)


async def _tree_input(kind: str, i: int, question: str, llm: LLMClient, budget: Budget, cfg: SearchConfig,
                      problem_id: str, pool: list[tuple[str, str]] | None) -> tuple[str, str, str]:
    """(question variant, hint, the kind actually used) for tree i."""
    if kind == "rephrase":
        try:
            c = await llm.chat(prompts.rephrase(question), role="rephrase", tag=CallTag(problem_id, i, 0),
                               max_tokens=min(cfg.answer_max_tokens, 256), temperature=0.7,
                               seed=cfg.seed * 1000 + i, budget=budget)
            text = c.text.strip()
            if text and len(text) < 4 * len(question) + 200:
                return text, "", "rephrase"
        except LLMError:
            pass
        return question, "", "raw"
    if kind == "shuffle":
        shuffled = shuffle_premises(question, random.Random(cfg.seed * 1000 + i))
        return shuffled, "", "shuffle" if shuffled != question else "raw"
    if kind == "example" and pool:
        ex = nearest_example(question, pool)
        if ex is not None:
            return question, f"A worked example of a similar problem:\nQ: {ex[0]}\nA: {ex[1]}", "example"
    return question, "", "raw"


async def run_forest(question: str, task: Task, llm: LLMClient, cfg: SearchConfig, budget: Budget,
                     problem_id: str, *, verifier: Verifier | None = None,
                     example_pool: list[tuple[str, str]] | None = None) -> ForestResult:
    T = cfg.trees
    if budget.tokens is not None:
        share = int(budget.tokens * (1 - cfg.decision_reserve)) // T
        shares = [budget.child(tokens=share, name=f"{budget.name}/tree{i}") for i in range(T)]
    else:
        shares = [budget.child(name=f"{budget.name}/tree{i}") for i in range(T)]
    if verifier is None:
        self_eval = SelfEvaluation(llm, cfg.eval_max_tokens, cfg.full_score, cfg.full_score_penalty)
        use_rule = cfg.verifier == "rule" or (cfg.verifier == "auto" and task.rule_check(question, "") is not None)
        verifier = RuleVerifier(task, question, fallback=self_eval) if use_rule else self_eval

    async def one(i: int) -> TreeResult:
        kind = cfg.inputs[i % len(cfg.inputs)]
        temperature = cfg.temperatures[i % len(cfg.temperatures)]
        try:
            variant, hint, used = await _tree_input(kind, i, question, llm, shares[i], cfg, problem_id, example_pool)
        except BudgetExhausted:
            variant, hint, used = question, "", "raw"
        tree = MCTSrTree(index=i, question=variant, original_question=question, task=task, llm=llm,
                         verifier=verifier, config=cfg, budget=shares[i], problem_id=problem_id, hint=hint,
                         temperature=temperature, seed=cfg.seed * 1000 + i, input_kind=used)
        return await tree.run()

    tasks = [asyncio.create_task(one(i)) for i in range(T)]
    early = False
    try:
        if cfg.early_stop and T > 1:
            pending = set(tasks)
            finished: list[TreeResult] = []
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                finished += [t.result() for t in done]
                groups = group_answers([(r.index, r.answer) for r in finished if r.answer is not None], task, question)
                if pending and any(len(m) > T / 2 for _, m in groups):
                    early = True
                    for t in pending:
                        t.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
        else:
            await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    trees = []
    for i, t in enumerate(tasks):
        if t.cancelled():
            trees.append(TreeResult(index=i, input_kind=cfg.inputs[i % len(cfg.inputs)],
                                    temperature=cfg.temperatures[i % len(cfg.temperatures)], stopped="early_stop",
                                    tokens=shares[i].spent_tokens))
        else:
            r = t.result()
            if early and r.stopped == "cancelled":
                r.stopped = "early_stop"
            trees.append(r)

    decision, need_expert = tally([(r.index, r.answer, r.q) for r in trees], task, question,
                                  cfg.activation_threshold, cfg.majority)
    expert_tokens = 0
    expert_usage = {"prompt": 0, "completion": 0, "cached": 0}
    errors = [f"tree {r.index}: {r.error}" for r in trees if r.error]
    if need_expert and cfg.tie_break == "q":
        decision = fallback_by_q(decision, {r.index: (r.q if r.q is not None else 0.0) for r in trees})
        decision.how = "q"
    elif need_expert:
        sp = budget.spent
        before = (sp.prompt_tokens, sp.completion_tokens, sp.cached_tokens)
        decision = await _expert(question, task, llm, cfg, budget, problem_id, decision, trees, errors)
        expert_usage = {"prompt": sp.prompt_tokens - before[0], "completion": sp.completion_tokens - before[1],
                        "cached": sp.cached_tokens - before[2]}
        expert_tokens = expert_usage["prompt"] + expert_usage["completion"]
    texts = {r.index: r.text for r in trees}
    if decision.answer is not None and not decision.text:
        for ans, members in decision.groups:
            if ans == decision.answer:
                best = max(members, key=lambda i: trees[i].q if trees[i].q is not None else float("-inf"))
                decision.text = texts[best]
    return ForestResult(answer=decision.answer, text=decision.text, decision=decision, trees=trees,
                        expert_tokens=expert_tokens, expert_usage=expert_usage, early_stopped=early, errors=errors)


async def _expert(question: str, task: Task, llm: LLMClient, cfg: SearchConfig, budget: Budget, problem_id: str,
                  decision: Decision, trees: list[TreeResult], errors: list[str]) -> Decision:
    """No majority: show the expert one representative (best Q) of each answer and let it pick."""
    qs = {r.index: (r.q if r.q is not None else 0.0) for r in trees}
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
        return fallback_by_q(decision, qs)
    picks = BEST.findall(c.text) or re.findall(r"candidate\s*(\d+)", c.text, re.I)  # weak models skip the format
    k = int(picks[-1]) if picks else 0
    if not 1 <= k <= len(reps):
        return fallback_by_q(decision, qs)
    decision.answer, decision.text, decision.how = reps[k - 1][0], reps[k - 1][1], "expert"
    return decision
