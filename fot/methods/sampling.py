"""What the three sampling baselines share: independent samples on the forest's own answer prompt
(fot/search/baselines.py runs and decides them), replayed at every smaller count from one run."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from .base import SAMPLE_SETTINGS, Method, MethodRun
from ..search.decision import SAMPLE_RULES
from .forest import distinct

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..measure.results import Result
    from ..tasks import Task


class Sampling(Method):
    tree_search = False
    preset_sizes = ("samples",)

    def samples(self, asked: int) -> int:
        return asked

    def recorded(self) -> tuple[str, ...]:
        return SAMPLE_SETTINGS

    def settings(self, cfg: "SearchConfig", budget: int | None, names: dict, samples: int) -> dict:
        return {"samples": self.samples(samples), "seed": cfg.seed, "verifier": names["verifier"],
                "temperature": cfg.temperatures[0], "keep_logprobs": cfg.keep_logprobs,
                "decision": cfg.decision if cfg.decision in SAMPLE_RULES else None}

    async def run(self, run: MethodRun, result: "Result") -> "Result":
        from ..search.baselines import run_sampling

        sr = await run_sampling(run.question, run.task, run.llm, run.cfg, run.budget, run.problem_id,
                                method=self.name, samples=self.samples(run.samples), verifier=run.verifier,
                                reward_llm=run.reward_llm)
        return self.fill(result, sr, run)

    def fill(self, result: "Result", sr, run: MethodRun) -> "Result":
        """The result of a problem from its samples (every sampling method's the same way)."""
        r = result
        r.answer, r.text, r.decision = sr.answer, sr.text, sr.how
        r.samples = [{f.name: getattr(s, f.name) for f in fields(s) if f.name != "failure"} for s in sr.samples]
        r.evaluation = {"asked": sr.eval_asked, "parsed": sr.eval_parsed}
        r.answers_seen = distinct((s.answer for s in sr.samples if s.answer is not None), run.task, r.question)
        r.failures = [s.failure for s in sr.samples if s.failure is not None]
        if sr.answer is None and not r.error:
            r.error = "; ".join(s.error for s in sr.samples if s.error) or "no sample produced an answer"
            kinds = {s.error_kind for s in sr.samples if s.error_kind}
            r.error_kind = "backend" if "backend" in kinds else (kinds.pop() if kinds else "no_answer")
        return r

    def replay(self, row: dict, task: "Task", size: tuple[int, int] | int) -> tuple[str | None, dict, str]:
        from ..measure.meter import replay_samples

        return replay_samples(row, task, size if isinstance(size, int) else size[0])
