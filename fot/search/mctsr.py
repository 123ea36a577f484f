"""One MCTS-self-refine tree (Zhang et al. 2024), every constant from `SearchConfig`.

    roots       the model's first answer and a dummy answer ("I don't know"); the dummy is scored once
                selection could pick it (`dummy_scoring`)
    N(node)     how many reward samples the node has (the official code's count), so N >= 1 once scored
    Q_own       0.5 * (min(rewards) + mean(rewards)) of the node's own samples; None if none could be read
    Q(node)     Q_own for a leaf; 0.5 * (Q_own + max child Q) once it has children (backpropagation,
                recomputed from the node's own samples after every rollout, so it never compounds)
    select      argmax UCT over nodes not fully expanded, where
                UCT = Q + s * c * sqrt(ln(N_parent + 1) / (N + eps)), s = 200 (the reward range:
                UCB1 on Q normalised to [0, 1]; `uct_scale`) or 1 (official); the two roots have no
                scored parent: N_parent = 0 (official: they compete on Q alone), or with s = 200 the
                roots' own visits summed, so a root gets a bonus too (else no root is ever re-chosen)
                fully expanded = a proof, or max_children children (`max_children_rule="cap"`; the
                official rule also wants a child whose Q_own beats the node's)
    expand      critique the selected answer, then rewrite it from the critique (self-refine);
                the selected node gets one more reward sample alongside (official code)
    answer      the real node with the highest Q_own (its own evaluation, not its children's);
                with no readable evaluation at all, the answer the tree reached most often

Rewards are on a -100..100 scale; with the official c = 1.4 on that scale the bonus is 0-1.25 points
and UCT is greedy on Q (the audit: 27 of 640 selections differed). Scaled by the range, the bonus is
on the scale of Q, so a node refined often yields to a less-visited one (docs/search.md, measured).
docs/search.md compares every step with the paper and the official code.

Within a rollout, independent work runs concurrently: the critique of the selected node and
its extra reward sample; the k reward samples of the new node (one call with n = k).
After every rollout the tree records a `Snapshot` so the meter can replay smaller searches. Each node
keeps its critique, its evaluators' texts and its tokens, so `TreeResult.node_records` can describe the
whole tree once it is thrown away (the trees file, fot.view; docs/viewer.md).

The tree sees the question text only, never a reference answer.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

from . import prompts
from .aio import gather_all
from ..backend.budget import Budget, BudgetExhausted
from ..config import SearchConfig
from ..backend.ledger import CallTag
from ..backend.llm import LLMClient, LLMError
from .verifiers import Verifier
from ..tasks import Task, final_answer

T = TypeVar("T")
UNSCORED_Q = -100.0  # what selection assumes of a node none of whose evaluations could be read


@dataclass(eq=False)
class Node:
    text: str
    answer: str | None
    parent: "Node | None" = None
    children: list["Node"] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    Q: float | None = None  # backed-up value (see the module docstring)
    dummy: bool = False
    proven: bool = False  # a complete verifier proved it right (`Scores.proven`): terminal, never refined
    index: int = 0  # creation order: ties go to the older node
    rollout: int = 0  # the rollout that created it
    # for the node record (`record()`, fot.view): kept as the search runs, since the tree is thrown away after
    critique: str = ""  # the feedback on the parent that this refinement answers
    samples: list[dict] = field(default_factory=list)  # every reward sample asked: score (None: unreadable), text
    tokens: int = 0  # what making it cost: the critique of its parent and its answer (corrections included)
    eval_tokens: int = 0  # what scoring it cost, re-scoring when selected included

    @property
    def visits(self) -> int:
        return len(self.rewards)

    @property
    def q_own(self) -> float | None:
        return q_value(self.rewards)

    def add(self, child: "Node") -> "Node":
        child.parent = self
        self.children.append(child)
        return child

    def record(self) -> dict:
        """One node as the trees file keeps it (docs/viewer.md names the fields)."""
        parent = self.parent.index if self.parent is not None and self.parent.index >= 0 else None
        role = "dummy" if self.dummy else "root" if parent is None else "refine"
        return {"id": self.index, "parent": parent, "role": role, "rollout": self.rollout, "answer": self.answer,
                "q": self.Q, "q_own": self.q_own, "n": self.visits, "proven": self.proven, "tokens": self.tokens,
                "eval_tokens": self.eval_tokens, "text": self.text, "critique": self.critique,
                "rewards": self.samples}


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
    proven: bool = False  # the answer it holds was proven right (a complete verifier)


class RewardCache:
    """The rewards already drawn for each distinct answer (by the task's equivalence), so a node whose answer
    was scored before costs no call: it takes that node's rewards, re-scorings of it included. One per tree by
    default (`reward_cache="tree"`): a cache shared across trees would make a tree's spend depend on the
    others' timing, and the meter could no longer replay smaller forests from the snapshots."""

    def __init__(self, task: Task, question: str):
        self.task, self.question = task, question
        self.entries: list[tuple[int, Node]] = []  # (tree, node), first scored first

    def get(self, answer: str) -> tuple[int, Node] | None:
        for tree, node in self.entries:
            if node.rewards and self.task.equivalent(node.answer, answer, self.question):
                return tree, node
        return None

    def put(self, tree: int, node: Node) -> None:
        if node.answer is not None and node.rewards and self.get(node.answer) is None:
            self.entries.append((tree, node))


def confidence(choice) -> float | None:
    """The mean token log-prob self-correction compares with its threshold. The official FoT code averages
    over prompt and completion; a backend that returns prompt log-probs (a `prompt_logprobs` list on the
    choice) gets that mean. The OpenAI chat API returns completion log-probs only, so elsewhere (fot.sim,
    llama.cpp, OpenAI) the completion's mean stands in (docs/search.md)."""
    prompt = getattr(choice, "prompt_logprobs", None) or []
    completion = choice.logprobs or []
    both = [x for x in prompt if x is not None] + list(completion)
    return sum(both) / len(both) if both else None


def q_value(rewards: list[float]) -> float | None:
    return 0.5 * (min(rewards) + sum(rewards) / len(rewards)) if rewards else None


def _q(v: float | None) -> float:
    return UNSCORED_Q if v is None else v


REWARD_RANGE = 200.0  # rewards are in [-100, 100]


def uct(node: Node, c: float, eps: float, scale: float = 1.0) -> float:
    """UCT = Q + c * sqrt(ln(N_parent + 1) / (N + eps)). A node none of whose evaluations could be read
    counts as Q = -100 with N = 1 (the official code never has one: it re-asks until a score parses);
    with N = 0 its bonus (368-521) would make it win every selection, the very bug N >= 1 prevents. `scale`
    multiplies the bonus: REWARD_RANGE puts c on the scale of Q normalised to [0, 1] (`uct_scale="range"`)."""
    parent = node.parent
    if parent is None:
        parent_visits = 0
    elif parent.index < 0 and scale != 1.0:  # the hidden root: its visits are its children's, as in UCB1
        parent_visits = sum(ch.visits for ch in parent.children)
    else:
        parent_visits = parent.visits
    return _q(node.Q) + scale * c * math.sqrt(math.log(parent_visits + 1) / ((node.visits or 1) + eps))


def fully_expanded(node: Node, max_children: int, cap: bool = False) -> bool:
    """Closed to selection: a proof; with `cap`, `max_children` children; else (the official rule) that many
    and one child whose own Q beats the node's, so a node whose refinements all score worse stays open."""
    if node.proven:  # a proof cannot be improved on: refining it only spends
        return True
    if cap and len(node.children) >= max_children:
        return True
    own = _q(node.q_own)
    return len(node.children) >= max_children and any(_q(ch.q_own) > own for ch in node.children)


def select(nodes: list[Node], c: float, eps: float, max_children: int, scale: float = 1.0,
           cap: bool = False) -> Node | None:
    candidates = [n for n in nodes if not fully_expanded(n, max_children, cap)]
    if not candidates:
        return None
    return max(candidates, key=lambda n: (uct(n, c, eps, scale), not n.dummy, -n.index))  # ties: a real answer, then the older


def backpropagate(node: Node) -> None:
    """Q(a) = 0.5 * (Q_own(a) + max child Q), from `node` up to (not including) the hidden root."""
    a: Node | None = node
    while a is not None and a.parent is not None:
        kids = [ch.Q for ch in a.children if ch.Q is not None]
        own = a.q_own
        if not kids:
            a.Q = own
        else:
            a.Q = max(kids) if own is None else 0.5 * (own + max(kids))
        a = a.parent


@dataclass
class TreeResult:
    index: int
    input_kind: str
    temperature: float
    question: str = ""  # the input this tree really saw
    hint: str = ""
    input_note: str = ""  # why the input is the raw question when another kind was asked for
    answer: str | None = None
    text: str = ""
    q: float | None = None
    answers_seen: list[str] = field(default_factory=list)  # every distinct answer of any node (oracle pass@k)
    snapshots: list[Snapshot] = field(default_factory=list)
    rollouts_done: int = 0
    corrections: int = 0
    eval_asked: int = 0  # reward samples asked for
    eval_parsed: int = 0  # ... of which a score could be read
    eval_cached: int = 0  # new nodes whose answer was scored before: its rewards reused, no call
    nodes: int = 0
    depth: int = 0  # of the deepest node; a first answer is depth 0
    stopped: str = "done"  # done | proven | inactive | budget | errors | cancelled | early_stop
    rollouts_saved: int = 0  # rollouts not run because the tree was inactive (sparse activation) or proven
    proven: bool = False  # its answer was proven right (see `SearchConfig.proof`)
    roles: dict = field(default_factory=dict)  # tokens spent per role: answer, critique, refine, evaluate
    error: str = ""
    tokens: int = 0
    failure: Exception | None = field(default=None, repr=False)  # the last error itself (status, retry info)
    best: int | None = None  # the id of the node the tree returns
    node_records: list[dict] = field(default_factory=list, repr=False)  # every node (`Node.record`), for fot.view


class MCTSrTree:
    def __init__(self, *, index: int, question: str, original_question: str, task: Task, llm: LLMClient,
                 verifier: Verifier, config: SearchConfig, budget: Budget, problem_id: str, hint: str = "",
                 temperature: float = 0.7, seed: int = 0, input_kind: str = "raw", input_note: str = "",
                 on_rollout: Callable[[TreeResult], None] | None = None, reward_cache: RewardCache | None = None,
                 on_proof: Callable[[int], None] | None = None):
        self.on_proof = on_proof  # the forest: hears of this tree's first proof at once, to stop the others
        self.cfg = config
        self.on_rollout = on_rollout  # progress: hears of each finished rollout
        self.question, self.original_question, self.hint = question, original_question, hint
        self.task, self.llm, self.verifier, self.budget = task, llm, verifier, budget
        self.problem_id, self.temperature = problem_id, temperature
        self.answer_max_tokens = config.answer_cap(task)
        self.rng = random.Random(seed)
        self._seed = seed
        self._calls = 0
        self.root = Node(text="", answer=None, index=-1)  # hidden: parent of the two real roots, never scored
        self.nodes: list[Node] = []
        self.result = TreeResult(index=index, input_kind=input_kind, temperature=temperature, question=question,
                                 hint=hint, input_note=input_note)
        self.inflight = 0  # calls sent and not yet answered: what cancelling this tree would cut off
        self.cache = None if config.reward_cache == "off" else (
            reward_cache if reward_cache is not None and config.reward_cache == "problem"
            else RewardCache(task, original_question))
        self.dummy_pending = False  # the dummy root is not scored yet (`dummy_scoring="lazy"`)

    async def _counted(self, make: Callable[[], Awaitable[T]]) -> T:
        """`make()`'s call, counted while in flight (made here, so a call cancelled before it starts is never made)."""
        self.inflight += 1
        try:
            return await make()
        finally:
            self.inflight -= 1

    def _spend(self, role: str, tokens: int) -> None:
        self.result.roles[role] = self.result.roles.get(role, 0) + tokens

    # -- calls ---------------------------------------------------------------------------------

    def _tag(self, rollout: int) -> CallTag:
        return CallTag(self.problem_id, self.result.index, rollout)

    def _next_seed(self) -> int:
        self._calls += 1
        return self._seed * 10_007 + self._calls

    async def _generate(self, messages: list[dict], role: str, rollout: int) -> tuple[str, bool, int]:
        """(text, truncated, tokens spent) of a step. A step that breaks the task's rule or has a low mean
        log-prob is regenerated (up to max_corrections) from a refine prompt naming the problem, and the most
        confident rule-abiding sample is kept, not the last one (the official FoT code does the same)."""
        cfg = self.cfg
        want_lp = cfg.logprob_threshold is not None
        tried: list[tuple[bool, float, int, str, bool]] = []  # (abides, log-prob, -attempt, text, truncated)
        msgs = messages
        spent = 0
        for attempt in range(cfg.max_corrections + 1):
            c = await self._counted(lambda: self.llm.chat(
                msgs, role=role, tag=self._tag(rollout), max_tokens=self.answer_max_tokens,
                temperature=self.temperature, seed=self._next_seed(), logprobs=want_lp, budget=self.budget))
            text, choice = c.text, c.choices[0]
            spent += c.record.prompt_tokens + c.record.completion_tokens
            self._spend(role, c.record.prompt_tokens + c.record.completion_tokens)
            lp = confidence(choice)
            low_confidence = want_lp and lp is not None and lp < cfg.logprob_threshold
            broken = self.task.rule_check(self.original_question, text) is False
            tried.append((not broken, lp if lp is not None else 0.0, -attempt, text, choice.finish_reason == "length"))
            if not (low_confidence or broken) or attempt == cfg.max_corrections:
                break
            self.result.corrections += 1
            msgs = prompts.refine(self.question, text, prompts.BROKE_RULE if broken else prompts.LOW_CONFIDENCE,
                                  self.task.instructions)
        _, _, _, text, truncated = max(tried)
        return text, truncated, spent

    async def _score(self, node: Node, k: int, rollout: int, new: bool = False) -> None:
        if new and self.cache is not None and not node.dummy and node.answer is not None:
            hit = self.cache.get(node.answer)
            if hit is not None:
                tree, src = hit
                node.rewards = list(src.rewards)
                if src.proven:
                    self._mark_proven(node)
                where = f"node {src.index}" + ("" if tree == self.result.index else f" of tree {tree}")
                node.samples += [{"score": v, "text": f"cached: {where} has the same answer", "rollout": rollout,
                                  "cached": True} for v in src.rewards]
                self.result.eval_cached += 1
                if not node.children:
                    node.Q = node.q_own
                return
        scores = await self._counted(lambda: self.verifier.score(self.question, node.text, k, self._tag(rollout), self.budget,
                                                         seed=self._next_seed()))
        node.rewards.extend(scores.values)
        if getattr(scores, "proven", False):
            self._mark_proven(node)
        self._spend("evaluate", scores.tokens)
        node.samples += [{"score": v, "text": t, "rollout": rollout}
                         for v, t in (scores.samples or [(v, "") for v in scores.values])]
        node.eval_tokens += scores.tokens
        self.result.eval_asked += scores.asked
        self.result.eval_parsed += len(scores.values)
        if not node.children:
            node.Q = node.q_own
        if new and self.cache is not None and not node.dummy:
            self.cache.put(self.result.index, node)

    def _mark_proven(self, node: Node) -> None:
        if self.cfg.proof == "off":
            return
        first = not self.proven()
        node.proven = True
        if first and self.on_proof is not None:
            self.on_proof(self.result.index)

    def _new_node(self, text: str, dummy: bool = False, truncated: bool = False, rollout: int = 0) -> Node:
        answer = None if dummy else final_answer(self.task, text, truncated)
        node = Node(text=text, answer=answer, dummy=dummy, index=len(self.nodes), rollout=rollout)
        self.nodes.append(node)
        if answer is not None and not any(self.task.equivalent(answer, a, self.original_question)
                                          for a in self.result.answers_seen):
            self.result.answers_seen.append(answer)
        return node

    # -- the search ----------------------------------------------------------------------------

    def best(self) -> Node | None:
        """The real node with the best own evaluation. If no evaluation could be read, the tree has no
        evidence but its own answers: the one it reached most often (self-consistency within the
        tree), latest node first, so refinements still count."""
        real = [n for n in self.nodes if not n.dummy and n.answer is not None]
        scored = [n for n in real if n.q_own is not None]
        if scored:
            return max(scored, key=lambda n: (n.proven, n.q_own, -n.index))
        groups: list[list[Node]] = []
        for n in real:
            for g in groups:
                if self.task.equivalent(g[0].answer, n.answer, self.original_question):
                    g.append(n)
                    break
            else:
                groups.append([n])
        return max(groups, key=lambda g: (len(g), g[-1].index))[-1] if groups else None

    def _snapshot(self, rollout: int) -> None:
        b = self.best()
        self.result.snapshots.append(self._snap(rollout, b.answer if b else None, b.q_own if b else None,
                                                bool(b and b.proven)))

    def _snap(self, rollout: int, answer: str | None, q: float | None, proven: bool = False) -> Snapshot:
        sp = self.budget.spent
        return Snapshot(rollout=rollout, tokens=sp.total_tokens, answer=answer, q=q, calls=sp.calls,
                        prompt=sp.prompt_tokens, completion=sp.completion_tokens, cached=sp.cached_tokens,
                        proven=proven)

    def _inactive(self, done: int) -> bool:
        """Sparse activation, per rollout (`sparse_stop`): after `done` rollouts, is this tree's best own Q still
        below the activation threshold, so that its vote would not count? Such a tree stops expanding. Never
        where the verifier can prove: an unproven answer is -100 there, and refining is how a proof is found."""
        cfg = self.cfg
        if cfg.sparse_stop is None or done < cfg.sparse_stop or getattr(self.verifier, "can_prove", False):
            return False
        b = self.best()
        return b is None or b.q_own is None or b.q_own < cfg.activation_threshold

    def proven(self) -> bool:
        return any(n.proven for n in self.nodes)

    async def _init(self) -> None:
        k = self.cfg.reward_samples
        dummy = self.root.add(self._new_node(self.rng.choice(prompts.DUMMY_ANSWERS), dummy=True))

        async def first() -> None:
            text, truncated, spent = await self._generate(
                prompts.answer(self.question, self.hint, self.task.instructions), "answer", 0)
            node = self.root.add(self._new_node(text, truncated=truncated))
            node.tokens = spent
            await self._score(node, k, 0, new=True)

        if self.cfg.dummy_scoring == "always":
            await gather_all(first(), self._score(dummy, k, 0))
        else:  # scored once selection could pick it (`_rollout`): a restart point costs nothing until needed
            self.dummy_pending = True
            await first()

    def _candidates(self) -> list[Node]:
        return [n for n in self.nodes if not (n.dummy and self.dummy_pending)]

    async def _rollout(self, r: int) -> None:
        cfg = self.cfg
        cap = cfg.max_children_rule == "cap"
        if self.dummy_pending and not any(_q(n.Q) >= 0 for n in self.nodes
                                          if not n.dummy and not fully_expanded(n, cfg.max_children, cap)):
            self.dummy_pending = False  # no real answer the verifier leans toward: the restart point may win
            await self._score(next(n for n in self.nodes if n.dummy), cfg.reward_samples, r)
        node = select(self._candidates(), cfg.c, cfg.eps, cfg.max_children,
                      REWARD_RANGE if cfg.uct_scale == "range" else 1.0, cap)
        if node is None:
            return
        feedback_call = self._counted(lambda: self.llm.chat(
            prompts.critique(self.question, node.text), role="critique", tag=self._tag(r),
            max_tokens=cfg.critique_max_tokens, temperature=self.temperature, seed=self._next_seed(),
            budget=self.budget))
        if cfg.rescore_selected:
            feedback, _ = await gather_all(feedback_call, self._score(node, 1, r))
        else:
            feedback = await feedback_call
        self._spend("critique", feedback.record.prompt_tokens + feedback.record.completion_tokens)
        text, truncated, spent = await self._generate(prompts.refine(self.question, node.text, feedback.text,
                                                                     self.task.instructions), "refine", r)
        child = node.add(self._new_node(text, truncated=truncated, rollout=r))
        child.critique = feedback.text
        child.tokens = spent + feedback.record.prompt_tokens + feedback.record.completion_tokens
        await self._score(child, cfg.reward_samples, r, new=True)
        backpropagate(node)

    async def run(self) -> TreeResult:
        res = self.result
        try:
            await self._init()
            self._snapshot(0)
            failures = 0
            stop_at_proof = self.cfg.proof == "stop"
            for r in range(1, self.cfg.rollouts + 1):
                if stop_at_proof and self.proven():
                    res.stopped, res.rollouts_saved = "proven", self.cfg.rollouts - r + 1
                    break
                if self._inactive(r - 1):
                    res.stopped, res.rollouts_saved = "inactive", self.cfg.rollouts - r + 1
                    break
                try:
                    await self._rollout(r)
                    failures = 0
                except LLMError as e:
                    failures += 1
                    res.error, res.failure = str(e), e
                    if failures >= self.cfg.max_consecutive_failures:
                        res.stopped = "errors"
                        break
                res.rollouts_done = r
                self._snapshot(r)
                if self.on_rollout is not None:
                    self.on_rollout(res)
        except BudgetExhausted as e:
            res.stopped, res.failure = "budget", e
        except LLMError as e:
            res.stopped, res.error, res.failure = "errors", str(e), e
        except asyncio.CancelledError:
            res.stopped = "cancelled"
            self._finish()
            raise
        self._finish()
        return res

    def depth(self, node: Node) -> int:
        d = 0
        while node.parent is not None and node.parent is not self.root:
            node, d = node.parent, d + 1
        return d

    def _finish(self) -> None:
        res = self.result
        b = self.best()
        res.answer, res.text, res.q = (b.answer, b.text, b.q_own) if b else (None, "", None)
        res.best = b.index if b else None
        res.proven = bool(b and b.proven)
        res.node_records = [n.record() for n in self.nodes]
        res.tokens = self.budget.spent_tokens
        res.nodes = len(self.nodes)
        res.depth = max((self.depth(n) for n in self.nodes), default=0)
        if not res.snapshots or res.snapshots[-1].tokens != res.tokens:
            # the work after the last snapshot (a rollout cut short) still cost tokens
            last = res.snapshots[-1].rollout if res.snapshots else 0
            if res.snapshots:  # what the tree returns when stopped here includes that partial work
                res.snapshots[-1] = self._snap(last, res.answer, res.q, res.proven)
            else:
                self._snapshot(0)
