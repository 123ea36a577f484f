"""One MCTS-self-refine tree (Zhang et al. 2024), every constant from `SearchConfig`.

    roots       the model's first answer and a dummy answer ("I don't know"), both scored
    Q(node)     0.5 * (min(rewards) + mean(rewards)), rewards = k self-evaluation samples
    select      argmax UCT over nodes not fully expanded, where
                UCT = Q + c * sqrt(ln(N_parent + 1) / (N + eps))
                fully expanded = max_children children and at least one child better than the node
    expand      critique the selected answer, then rewrite it from the critique (self-refine)
    backprop    Q'(a) = 0.5 * (Q(a) + max child Q), from the expanded node up to the root

Within a rollout, independent work runs concurrently: the critique of the selected node and
its extra reward sample; the k reward samples of the new node (one call with n = k).
After every rollout the tree records a `Snapshot` so the meter can replay smaller searches.

The tree sees the question text only, never a reference answer.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field

from . import prompts
from .budget import Budget, BudgetExhausted
from .config import SearchConfig
from .ledger import CallTag
from .llm import LLMClient, LLMError
from .tasks import Task
from .verifiers import Verifier


@dataclass(eq=False)
class Node:
    text: str
    answer: str | None
    parent: "Node | None" = None
    children: list["Node"] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    Q: float = 0.0
    visits: int = 0
    dummy: bool = False
    index: int = 0  # creation order: ties in selection go to the older node

    def add(self, child: "Node") -> "Node":
        child.parent = self
        self.children.append(child)
        return child


@dataclass
class Snapshot:
    rollout: int  # 0 = after the roots were made and scored
    tokens: int  # cumulative tokens of this tree (its input preparation included)
    answer: str | None
    q: float | None
    calls: int
    prompt: int = 0  # the split of `tokens`, for pricing
    completion: int = 0
    cached: int = 0


def q_value(rewards: list[float]) -> float:
    return 0.5 * (min(rewards) + sum(rewards) / len(rewards)) if rewards else 0.0


def uct(node: Node, c: float, eps: float) -> float:
    parent_visits = node.parent.visits if node.parent is not None else 0
    return node.Q + c * math.sqrt(math.log(parent_visits + 1) / (node.visits + eps))


def fully_expanded(node: Node, max_children: int) -> bool:
    return len(node.children) >= max_children and any(ch.Q > node.Q for ch in node.children)


def select(nodes: list[Node], c: float, eps: float, max_children: int) -> Node | None:
    candidates = [n for n in nodes if not fully_expanded(n, max_children)]
    if not candidates:
        return None
    return max(candidates, key=lambda n: (uct(n, c, eps), -n.index))


def backpropagate(node: Node) -> None:
    """Q'(a) = 0.5 * (Q(a) + max child Q), from `node` up to (not including) the hidden root."""
    a: Node | None = node
    while a is not None and a.parent is not None:
        if a.children:
            a.Q = 0.5 * (a.Q + max(ch.Q for ch in a.children))
        a = a.parent


@dataclass
class TreeResult:
    index: int
    input_kind: str
    temperature: float
    answer: str | None = None
    text: str = ""
    q: float | None = None
    answers_seen: list[str] = field(default_factory=list)  # every distinct answer of any node (oracle pass@k)
    snapshots: list[Snapshot] = field(default_factory=list)
    rollouts_done: int = 0
    corrections: int = 0
    stopped: str = "done"  # done | budget | errors | cancelled | early_stop
    error: str = ""
    tokens: int = 0


class MCTSrTree:
    def __init__(self, *, index: int, question: str, original_question: str, task: Task, llm: LLMClient,
                 verifier: Verifier, config: SearchConfig, budget: Budget, problem_id: str, hint: str = "",
                 temperature: float = 0.7, seed: int = 0, input_kind: str = "raw"):
        self.cfg = config
        self.question, self.original_question, self.hint = question, original_question, hint
        self.task, self.llm, self.verifier, self.budget = task, llm, verifier, budget
        self.problem_id, self.temperature = problem_id, temperature
        self.rng = random.Random(seed)
        self._seed = seed
        self._calls = 0
        self.root = Node(text="", answer=None, index=-1)  # hidden: parent of the two real roots
        self.nodes: list[Node] = []
        self.result = TreeResult(index=index, input_kind=input_kind, temperature=temperature)

    # -- calls ---------------------------------------------------------------------------------

    def _tag(self, rollout: int) -> CallTag:
        return CallTag(self.problem_id, self.result.index, rollout)

    def _next_seed(self) -> int:
        self._calls += 1
        return self._seed * 10_007 + self._calls

    async def _generate(self, messages: list[dict], role: str, rollout: int) -> str:
        """A step, regenerated (up to max_corrections) when it breaks the task's rule or has a low log-prob."""
        want_lp = self.cfg.logprob_threshold is not None
        text = ""
        for attempt in range(self.cfg.max_corrections + 1):
            c = await self.llm.chat(messages, role=role, tag=self._tag(rollout), max_tokens=self.cfg.answer_max_tokens,
                                    temperature=self.temperature, seed=self._next_seed(), logprobs=want_lp,
                                    budget=self.budget)
            text = c.text
            lp = c.choices[0].mean_logprob
            low_confidence = want_lp and lp is not None and lp < self.cfg.logprob_threshold
            broken = self.task.rule_check(self.original_question, text) is False
            if not (low_confidence or broken) or attempt == self.cfg.max_corrections:
                return text
            self.result.corrections += 1
        return text

    async def _score(self, node: Node, k: int, rollout: int) -> None:
        scores = await self.verifier.score(self.question, node.text, k, self._tag(rollout), self.budget,
                                           seed=self._next_seed())
        node.rewards.extend(scores)
        node.Q = q_value(node.rewards)

    def _new_node(self, text: str, dummy: bool = False) -> Node:
        answer = None if dummy else self.task.extract(text)
        node = Node(text=text, answer=answer, dummy=dummy, index=len(self.nodes))
        self.nodes.append(node)
        if answer is not None and not any(self.task.equivalent(answer, a, self.original_question)
                                          for a in self.result.answers_seen):
            self.result.answers_seen.append(answer)
        return node

    # -- the search ----------------------------------------------------------------------------

    def best(self) -> Node | None:
        real = [n for n in self.nodes if not n.dummy and n.answer is not None]
        return max(real, key=lambda n: (n.Q, -n.index)) if real else None

    def _snapshot(self, rollout: int) -> None:
        b = self.best()
        self.result.snapshots.append(self._snap(rollout, b.answer if b else None, b.Q if b else None))

    def _snap(self, rollout: int, answer: str | None, q: float | None) -> Snapshot:
        sp = self.budget.spent
        return Snapshot(rollout=rollout, tokens=sp.total_tokens, answer=answer, q=q, calls=sp.calls,
                        prompt=sp.prompt_tokens, completion=sp.completion_tokens, cached=sp.cached_tokens)

    async def _init(self) -> None:
        k = self.cfg.reward_samples
        dummy = self.root.add(self._new_node(self.rng.choice(prompts.DUMMY_ANSWERS), dummy=True))

        async def first() -> None:
            text = await self._generate(prompts.answer(self.question, self.hint, self.task.instructions), "answer", 0)
            node = self.root.add(self._new_node(text))
            await self._score(node, k, 0)

        await asyncio.gather(first(), self._score(dummy, k, 0))
        self.root.visits = 1

    async def _rollout(self, r: int) -> None:
        cfg = self.cfg
        node = select(self.nodes, cfg.c, cfg.eps, cfg.max_children)
        if node is None:
            return
        feedback_call = self.llm.chat(prompts.critique(self.question, node.text), role="critique", tag=self._tag(r),
                                      max_tokens=cfg.critique_max_tokens, temperature=self.temperature,
                                      seed=self._next_seed(), budget=self.budget)
        if cfg.rescore_selected:
            feedback, _ = await asyncio.gather(feedback_call, self._score(node, 1, r))
        else:
            feedback = await feedback_call
        text = await self._generate(prompts.refine(self.question, node.text, feedback.text, self.task.instructions), "refine", r)
        child = node.add(self._new_node(text))
        await self._score(child, cfg.reward_samples, r)
        backpropagate(node)
        a: Node | None = node
        while a is not None:
            a.visits += 1
            a = a.parent

    async def run(self) -> TreeResult:
        res = self.result
        try:
            await self._init()
            self._snapshot(0)
            failures = 0
            for r in range(1, self.cfg.rollouts + 1):
                try:
                    await self._rollout(r)
                    failures = 0
                except LLMError as e:
                    failures += 1
                    res.error = str(e)
                    if failures >= self.cfg.max_consecutive_failures:
                        res.stopped = "errors"
                        break
                res.rollouts_done = r
                self._snapshot(r)
        except BudgetExhausted:
            res.stopped = "budget"
        except LLMError as e:
            res.stopped, res.error = "errors", str(e)
        except asyncio.CancelledError:
            res.stopped = "cancelled"
            self._finish()
            raise
        self._finish()
        return res

    def _finish(self) -> None:
        res = self.result
        b = self.best()
        res.answer, res.text, res.q = (b.answer, b.text, b.Q) if b else (None, "", None)
        res.tokens = self.budget.spent_tokens
        if not res.snapshots or res.snapshots[-1].tokens != res.tokens:
            # the work after the last snapshot (a rollout cut short) still cost tokens
            last = res.snapshots[-1].rollout if res.snapshots else 0
            if res.snapshots:  # what the tree returns when stopped here includes that partial work
                res.snapshots[-1] = self._snap(last, res.answer, res.q)
            else:
                self._snapshot(0)
