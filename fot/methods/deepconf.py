"""DeepConf online (Fu et al. 2025): confidence-filtered sampling with early termination.

The first `deepconf_warmup` traces run to the end with token log-probs and set a threshold (the
lowest group confidence that `deepconf_keep` percent of them reach); every later trace is streamed
and cut at the first window of tokens whose confidence falls below it: the server stops decoding,
the tokens served up to the stop are what it costs, and a cut trace does not vote. The vote is the
finished traces' answers summed by their confidence. Trace i is sc's sample i (same seed), so the
method replays exactly from a plain sc run that kept log-probs (`--keep-logprobs`), and from its own
run at any smaller count (fot/search/early.py decides all three)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import SAMPLE_SETTINGS, MethodRun
from .esc import _row
from .sampling import Sampling

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..measure.results import Result
    from ..tasks import Task

TOP_LOGPROBS = 5  # alternatives per token for the confidence, when --keep-logprobs does not say


class DeepConf(Sampling):
    name = "deepconf"
    summary = "--samples traces; after --deepconf-warmup, each is cut when its confidence falls (DeepConf online)"

    def recorded(self) -> tuple[str, ...]:
        return (*SAMPLE_SETTINGS, "deepconf_warmup", "deepconf_keep")

    def settings(self, cfg: "SearchConfig", budget: int | None, names: dict, samples: int) -> dict:
        return {**super().settings(cfg, budget, names, samples), "deepconf_warmup": cfg.deepconf_warmup,
                "deepconf_keep": cfg.deepconf_keep, "keep_logprobs": cfg.keep_logprobs or TOP_LOGPROBS}

    async def run(self, run: MethodRun, result: "Result") -> "Result":
        from ..search.aio import gather_all
        from ..search.baselines import SamplingResult, draw_sample
        from ..search.early import decide_deepconf, deepconf_threshold

        cfg, n = run.cfg, self.samples(run.samples)
        k = cfg.keep_logprobs or TOP_LOGPROBS
        warmup = min(cfg.deepconf_warmup, n)
        sr = SamplingResult(None, "", "none")
        sr.samples = await gather_all(*(draw_sample(run.question, run.task, run.llm, cfg, run.budget, run.problem_id,
                                                    i, sr, logprobs_at_least=k) for i in range(warmup)))
        threshold = deepconf_threshold([_row(s) for s in sr.samples], cfg.deepconf_keep)
        if n > warmup:
            sr.samples += await gather_all(*(stream_trace(run, i, threshold, k) for i in range(warmup, n)))
        d = decide_deepconf([_row(s) for s in sr.samples], run.task, run.question, n, warmup, cfg.deepconf_keep)
        sr.answer, sr.how = d.answer, d.how
        sr.text = next((s.text for s in sr.samples if s.answer is not None and d.answer is not None
                        and s.stopped_at is None and run.task.equivalent(s.answer, d.answer, run.question)), "")
        return self.fill(result, sr, run)

    def replay(self, row: dict, task: "Task", size: tuple[int, int] | int) -> tuple[str | None, dict, str]:
        from ..measure.results import Record
        from ..search.early import decide_deepconf

        rec = Record.from_row(row)
        n = size if isinstance(size, int) else size[0]
        s = rec.settings
        d = decide_deepconf(rec.samples, task, rec.question, n, s.get("deepconf_warmup", 4), s.get("deepconf_keep", 90.0))
        return d.answer, d.usage, d.how


async def stream_trace(run: MethodRun, i: int, threshold: float | None, k: int):
    """Trace i, streamed and cut when its last window's confidence falls below `threshold`."""
    from ..backend.budget import BudgetExhausted
    from ..backend.llm import LLMError
    from ..errors import error_kind
    from ..search import prompts
    from ..search.baselines import Sample, kept_logprobs
    from ..search.confidence import WINDOW
    from ..tasks import final_answer

    def low(conf: list[float]) -> bool:
        return threshold is not None and len(conf) >= WINDOW and sum(conf[-WINDOW:]) / WINDOW < threshold

    own = run.budget.child(name=f"{run.budget.name}/sample{i}")
    s = Sample(index=i, answer=None)
    try:
        c = await run.llm.chat_stream(prompts.answer(run.question, "", run.task.instructions), stop_if=low,
                                      role="answer", tag=_tag(run.problem_id, i), max_tokens=run.cfg.answer_cap(run.task),
                                      temperature=run.cfg.temperatures[0], seed=run.cfg.seed * 1000 + i, top_logprobs=k,
                                      budget=own)
        s.text = c.text
        s.logprobs, s.confidence = kept_logprobs(c.choices[0])
        if c.choices[0].finish_reason == "stopped":
            s.stopped_at = len(s.logprobs or [])
        else:
            s.answer = final_answer(run.task, c.text, c.choices[0].finish_reason == "length")
    except (LLMError, BudgetExhausted) as e:
        s.error, s.error_kind, s.failure = f"{type(e).__name__}: {e}", error_kind(e), e
    sp = own.spent
    s.tokens, s.prompt, s.completion, s.cached = sp.total_tokens, sp.prompt_tokens, sp.completion_tokens, sp.cached_tokens
    return s


def _tag(problem_id: str, i: int):
    from ..backend.ledger import CallTag

    return CallTag(problem_id, i, 0)
