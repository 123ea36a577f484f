"""Early-stopping self-consistency (ESC, Li et al. 2024): samples in windows, stopping at the first
window whose answers all agree; on agreement the rest of the samples are never paid for.

Sample i is the same as sc's sample i (seed `seed*1000 + i`), so ESC at any smaller budget, and
ESC over a plain sc run's samples, replay exactly (fot/search/early.py decides both)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import SAMPLE_SETTINGS, MethodRun
from .sampling import Sampling

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..measure.results import Result
    from ..tasks import Task


class EarlyStopping(Sampling):
    name = "esc"
    summary = "up to --samples samples in windows of --esc-window, stopping when a window agrees"

    def recorded(self) -> tuple[str, ...]:
        return (*SAMPLE_SETTINGS, "esc_window")

    def settings(self, cfg: "SearchConfig", budget: int | None, names: dict, samples: int) -> dict:
        return {**super().settings(cfg, budget, names, samples), "esc_window": cfg.esc_window}

    async def run(self, run: MethodRun, result: "Result") -> "Result":
        from ..search.aio import gather_all
        from ..search.baselines import SamplingResult, draw_sample
        from ..search.early import decide_esc, esc_stops, esc_windows

        n, window = self.samples(run.samples), run.cfg.esc_window
        sr = SamplingResult(None, "", "none")
        for w in esc_windows(n, window):
            batch = await gather_all(*(draw_sample(run.question, run.task, run.llm, run.cfg, run.budget,
                                                   run.problem_id, i, sr) for i in w))
            sr.samples += batch
            if esc_stops([_row(s) for s in batch], run.task, run.question) is not None:
                break
        d = decide_esc([_row(s) for s in sr.samples], run.task, run.question, n, window)
        sr.answer, sr.how = d.answer, d.how
        sr.text = next((s.text for s in sr.samples if s.answer is not None and d.answer is not None
                        and run.task.equivalent(s.answer, d.answer, run.question)), "")
        return self.fill(result, sr, run)

    def replay(self, row: dict, task: "Task", size: tuple[int, int] | int) -> tuple[str | None, dict, str]:
        from ..measure.results import Record
        from ..search.early import decide_esc

        rec = Record.from_row(row)
        n = size if isinstance(size, int) else size[0]
        d = decide_esc(rec.samples, task, rec.question, n, rec.settings.get("esc_window", 2))
        return d.answer, d.usage, d.how


def _row(s) -> dict:
    return {k: v for k, v in vars(s).items() if k != "failure"}
