"""What a user would do instead of a forest with the same tokens: plain sampling.

    cot   one chain-of-thought sample (the forest's own answer prompt)
    sc    self-consistency: the most common answer of N independent samples
    bon   best-of-N: the sample that the forest's own verifier scores highest

(`mctsr`, one deep tree, is the forest with T = 1; the methods themselves are in fot/methods/.)

Samples are independent requests with seeds `seed*1000 + i`, so the first n samples of a run of
N are exactly what a run of n would have drawn. Each records its answer, its Q (bon only) and its
tokens, and `fot.measure.meter.replay_samples` replays every n <= N from one run, as the forest grid is.
The answer prompt, extractor, temperature and token accounting are the forest's, so the
comparison is on one token axis. None of this sees a reference answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import prompts
from .aio import gather_all
from ..backend.budget import Budget, BudgetExhausted
from ..config import SearchConfig
from ..errors import UsageError, error_kind
from ..backend.ledger import CallTag
from ..backend.llm import LLMClient, LLMError
from .mctsr import q_value
from .confidence import trace_confidence
from .decision import SAMPLE_RULES, Vote, decision_rule, group_answers
from .verifiers import Verifier, make_verifier
from ..tasks import Task, final_answer

@dataclass
class Sample:
    index: int
    answer: str | None
    q: float | None = None  # bon: the verifier's Q; None if not scored or unreadable
    text: str = ""
    tokens: int = 0  # this sample's own tokens (its scoring included), not cumulative
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    error: str = ""
    error_kind: str = ""  # fot.errors.ERROR_KINDS
    logprobs: list[float] | None = None  # with keep_logprobs: each answer token's log-prob ...
    confidence: list[float] | None = None  # ... and its confidence (fot.backend.llm.Choice.confidences)
    eval_tokens: int = 0  # bon: what scoring it cost (part of `tokens`), for the meter's signals
    stopped_at: int | None = None  # deepconf: the trace was stopped after this many tokens (it does not vote)
    failure: Exception | None = field(default=None, repr=False, compare=False)  # the error itself, not recorded


@dataclass
class SamplingResult:
    answer: str | None
    text: str
    how: str  # single | majority | plurality | best_q | none
    samples: list[Sample] = field(default_factory=list)
    eval_asked: int = 0
    eval_parsed: int = 0


def logprob_request(cfg: SearchConfig, at_least: int = 0) -> dict:
    """The chat() arguments that ask for token log-probs when `keep_logprobs` (or a caller) wants them."""
    k = max(cfg.keep_logprobs, at_least)
    return {"logprobs": True, "extra": {"top_logprobs": k}} if k else {}


def kept_logprobs(choice) -> tuple[list[float] | None, list[float] | None]:
    """A choice's token log-probs and confidences, rounded for the record (4 decimals: far below any
    threshold a rule would set)."""
    if not choice.logprobs:
        return None, None
    return [round(x, 4) for x in choice.logprobs], [round(x, 4) for x in choice.confidences or []]


def decide_samples(method: str, samples: list[dict] | list[Sample], task: Task,
                   question: str, rule: str | None = None) -> tuple[str | None, str, int | None]:
    """(answer, how, index of the sample whose text stands for it) from the given samples, in index
    order; the same function decides a run and its replays. `rule`: one of decision.SAMPLE_RULES
    (votes weighted by score or by confidence) instead of the method's own (majority, best Q)."""
    rows = [vars(s) if isinstance(s, Sample) else s for s in samples]
    answered = [r for r in rows if r.get("answer") is not None]
    if not answered:
        return None, "none", None
    if rule in SAMPLE_RULES:
        votes = [Vote(r["index"], r["answer"], r.get("q"), confidence=trace_confidence(r.get("confidence"))) for r in answered]
        d = decision_rule(rule).decide(votes, task, question)
        return d.answer, d.how, d.groups[0][1][0] if d.groups else None
    if method == "bon":
        best = max(answered, key=lambda r: (r["q"] if r.get("q") is not None else float("-inf"), -r["index"]))
        return best["answer"], "best_q" if best.get("q") is not None else "best_q_unscored", best["index"]
    groups = group_answers([(r["index"], r["answer"]) for r in answered], task, question)  # ties: first seen
    top, members = groups[0]
    if len(answered) == 1:
        return top, "single", members[0]
    return top, "majority" if len(members) * 2 > len(answered) else "plurality", members[0]


async def draw_sample(question: str, task: Task, llm: LLMClient, cfg: SearchConfig, budget: Budget,
                      problem_id: str, i: int, out: "SamplingResult", *, verifier: Verifier | None = None,
                      logprobs_at_least: int = 0) -> Sample:
    """Sample i (seed `seed*1000 + i`, whichever method draws it, so every method's i-th sample is
    the same), scored by `verifier` if given; its failure is recorded on it, not raised."""
    # a child budget per sample: its tokens are its own, the problem budget stays the outer cap
    own = budget.child(name=f"{budget.name}/sample{i}")
    s = Sample(index=i, answer=None)
    try:
        messages = prompts.answer(question, "", task.instructions)
        c = await llm.chat(messages, role="answer", tag=CallTag(problem_id, i, 0), max_tokens=cfg.answer_cap(task),
                           temperature=cfg.temperatures[0], seed=cfg.seed * 1000 + i, budget=own,
                           **logprob_request(cfg, logprobs_at_least))
        s.text = c.text
        s.logprobs, s.confidence = kept_logprobs(c.choices[0])
        s.answer = final_answer(task, c.text, c.choices[0].finish_reason == "length")
        if verifier is not None and s.answer is not None:
            scores = await verifier.score(question, c.text, cfg.reward_samples, CallTag(problem_id, i, 0), own,
                                          seed=cfg.seed * 1000 + 500 + i)
            out.eval_asked += scores.asked
            out.eval_parsed += len(scores.values)
            s.q = q_value(scores.values)
            s.eval_tokens = scores.tokens
    except (LLMError, BudgetExhausted) as e:
        s.error, s.error_kind, s.failure = f"{type(e).__name__}: {e}", error_kind(e), e
    sp = own.spent
    s.tokens, s.prompt, s.completion, s.cached = sp.total_tokens, sp.prompt_tokens, sp.completion_tokens, \
        sp.cached_tokens
    return s


async def run_sampling(question: str, task: Task, llm: LLMClient, cfg: SearchConfig, budget: Budget,
                       problem_id: str, *, method: str, samples: int, verifier: Verifier | None = None,
                       reward_llm: LLMClient | None = None) -> SamplingResult:
    n = samples  # (cot asks for 1: fot/methods/cot.py)
    if n < 1:
        raise UsageError("samples must be >= 1")
    if method == "bon" and verifier is None:
        verifier = make_verifier(cfg, task, question, llm, reward_llm)
    out = SamplingResult(None, "", "none")

    async def one(i: int) -> Sample:
        return await draw_sample(question, task, llm, cfg, budget, problem_id, i, out,
                                 verifier=verifier if method == "bon" else None)

    out.samples = await gather_all(*(one(i) for i in range(n)))
    out.answer, out.how, chosen = decide_samples(method, out.samples, task, question, cfg.decision)
    if chosen is not None:
        out.text = out.samples[chosen].text
    return out
