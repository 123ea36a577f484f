"""The forest that stops paying for a verifier that says nothing.

A forest's search and vote run on its verifier's scores; on a model that cannot grade (the embedded
135M model wrote a readable score in 0 of 1,540 self-evaluations) every self-evaluation is tokens
spent for nothing. This method first draws the forest's first answers as scored samples (`trees` of
them: sample i is sc's and bon's sample i) and judges the verifier from the run itself, never the
reference:

- parse rate: under half of the scores could be read;
- spread: the readable scores (at least three) all within 1 point of each other (two are not enough:
  a good verifier gives two wrong answers the same floor score, -100, as often as not);
- agreement: where the answers disagree, scores that do not rank the answers that agree with the
  consensus (the most common answer) above the others (AUROC <= 0.5 against that label).

The evidence is also pooled over the run's problems (per client and verifier): each probe sample is
labelled by whether it agrees with the answer its problem finally returned (the consensus, not the
reference), and once the pooled parse rate is under half (8 samples asked at least) or the pooled
scores do not favour the agreeing samples (AUROC <= 0.5 over 16 labelled samples of both kinds),
later problems skip the probe's scoring altogether: the verifier is no longer paid for.

Any of these and the verifier is uninformative: the rest of the allowance is spent as plain sampling
(up to --samples samples in all, or until --budget runs out) and decided by majority, and the
result says so (`evaluation.verdict`, decision `sampling`). Otherwise the forest runs as usual, the
probe's tokens counted in its total. When the probe's answers all agree there is nothing to search
for: that answer is returned.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from .base import SAMPLE_SETTINGS, TREE_SETTINGS, Method, MethodRun, first_call
from .esc import _row
from .forest import Forest, distinct

if TYPE_CHECKING:
    from ..config import SearchConfig
    from ..measure.results import Result
    from ..tasks import Task

MIN_PARSE = 0.5
MIN_SPREAD = 1.0
MIN_SPREAD_SCORES = 3
POOL_ASKED, POOL_LABELLED = 8, 16


class Evidence:
    """What a run's probes said so far about one verifier (see the module's docstring)."""

    def __init__(self) -> None:
        self.asked = self.read = 0
        self.qs: list[float] = []
        self.agree: list[bool] = []

    def add(self, probe: list[dict], asked: int, parsed: int, final: str | None, task: "Task",
            question: str) -> None:
        self.asked, self.read = self.asked + asked, self.read + parsed
        for s in probe:
            if s.get("answer") is not None and s.get("q") is not None:
                if final is not None:
                    self.qs.append(s["q"])
                    self.agree.append(task.equivalent(s["answer"], final, question))

    def verdict(self) -> str:
        from ..measure.signals import auroc

        if self.asked >= POOL_ASKED and self.read < MIN_PARSE * self.asked:
            return f"uninformative over the run: {self.read} of {self.asked} scores readable"
        if len(self.qs) >= POOL_LABELLED:
            a = auroc(self.qs, self.agree)
            if a is not None and a <= 0.5:
                return (f"uninformative over the run: scores do not favour the answers that agree with each "
                        f"problem's returned one (AUROC {a:.2f} over {len(self.qs)})")
        return ""


_EVIDENCE: dict[tuple[int, str], Evidence] = {}  # (id of the client, verifier): one run's, while its client lives


def evidence(llm, verifier: str) -> Evidence:
    key = (id(llm), verifier)
    if key not in _EVIDENCE:
        if len(_EVIDENCE) > 64:
            _EVIDENCE.clear()
        _EVIDENCE[key] = Evidence()
    return _EVIDENCE[key]


def verdict(samples: list[dict], task: "Task", question: str, asked: int | None = None,
            parsed: int | None = None) -> str:
    """"" if the verifier looks informative on these scored samples, else why not (one line). `asked` /
    `parsed`: the self-evaluation samples behind them (several per candidate), when known."""
    from ..measure.signals import auroc
    from ..search.decision import group_answers

    answered = [s for s in samples if s.get("answer") is not None]
    if not answered:
        return ""
    read = [s for s in answered if s.get("q") is not None]
    asked, parsed = (len(answered), len(read)) if asked is None or parsed is None else (asked, parsed)
    if parsed < MIN_PARSE * asked:
        return f"uninformative: {parsed} of {asked} scores readable"
    if not read:
        return ""
    qs = [s["q"] for s in read]
    if len(qs) >= MIN_SPREAD_SCORES and max(qs) - min(qs) < MIN_SPREAD:
        return f"uninformative: every score within {MIN_SPREAD:g} point (spread {statistics.pstdev(qs):.2f})"
    groups = group_answers([(s["index"], s["answer"]) for s in read], task, question)
    if len(groups) > 1 and len(groups[0][1]) > len(groups[1][1]):  # a consensus to agree with
        top = set(groups[0][1])
        a = auroc(qs, [s["index"] in top for s in read])
        if a is not None and a <= 0.5:
            return f"uninformative: scores do not favour the consensus answer (AUROC {a:.2f} against it)"
    return ""


class AdaptiveForest(Method):
    name = "adaptive"
    tree_search = True  # it grows trees when its verifier earns them (else its samples replay like sc's)
    summary = "the forest, or plain sampling once its first answers show the verifier says nothing"
    preset_sizes = ("samples",)

    def samples(self, asked: int) -> int:
        return asked

    def trees(self, cfg: "SearchConfig") -> int:
        return cfg.trees

    def minimum_budget(self, question: str, task: "Task", cfg: "SearchConfig") -> int:
        return first_call(question, task, cfg)

    def recorded(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*TREE_SETTINGS, *SAMPLE_SETTINGS)))

    def settings(self, cfg: "SearchConfig", budget: int | None, names: dict, samples: int) -> dict:
        return {**Forest().settings(cfg, budget, names, samples), "samples": samples, "keep_logprobs": cfg.keep_logprobs}

    async def run(self, run: MethodRun, result: "Result") -> "Result":
        from ..backend.budget import BudgetExhausted
        from ..search.aio import gather_all
        from ..search.baselines import SamplingResult, decide_samples, draw_sample
        from ..search.verifiers import make_verifier

        cfg, n = run.cfg, max(run.samples, run.cfg.trees)
        pooled = evidence(run.llm, cfg.verifier if run.verifier is None else type(run.verifier).__name__)
        known = pooled.verdict()
        sr = SamplingResult(None, "", "none")
        probe: list[dict] = []
        if not known:
            verifier = run.verifier or make_verifier(cfg, run.task, run.question, run.llm, run.reward_llm)
            sr.samples = await gather_all(*(draw_sample(run.question, run.task, run.llm, cfg, run.budget,
                                                        run.problem_id, i, sr, verifier=verifier)
                                            for i in range(cfg.trees)))
            probe = [_row(s) for s in sr.samples]
        why = known or verdict(probe, run.task, run.question, sr.eval_asked, sr.eval_parsed)
        answers = [s["answer"] for s in probe if s.get("answer") is not None]
        unanimous = answers and len(distinct(answers, run.task, run.question)) == 1
        if why or unanimous:
            if why:
                for i in range(len(sr.samples), n):  # the rest as sampling, while the budget lasts
                    s = await draw_sample(run.question, run.task, run.llm, cfg, run.budget, run.problem_id, i, sr)
                    sr.samples.append(s)
                    if isinstance(s.failure, BudgetExhausted):
                        sr.samples.pop()
                        break
            sr.answer, sr.how, chosen = decide_samples("sc", sr.samples, run.task, run.question)
            sr.text = sr.samples[chosen].text if chosen is not None else ""
            pooled.add(probe, sr.eval_asked, sr.eval_parsed, sr.answer, run.task, run.question)
            from .sc import SelfConsistency

            r = SelfConsistency().fill(result, sr, run)
            r.decision = "sampling" if why else "probe_unanimous"
            r.evaluation = {**r.evaluation, "verdict": why or "probe unanimous", "probe": len(probe)}
            return r
        r = await Forest().run(run, result)
        pooled.add(probe, sr.eval_asked, sr.eval_parsed, r.answer, run.task, run.question)
        r.samples = probe
        r.answers_seen = distinct([*r.answers_seen, *answers], run.task, r.question)
        r.evaluation = {"asked": r.evaluation.get("asked", 0) + sr.eval_asked,
                        "parsed": r.evaluation.get("parsed", 0) + sr.eval_parsed, "verdict": "informative",
                        "probe": len(probe)}
        return r

    def replay(self, row: dict, task: "Task", size: tuple[int, int] | int) -> tuple[str | None, dict, str]:
        """Sampling results replay at every n >= the probe (the probe's scoring counted); a forest's
        result only as run."""
        from ..measure.meter import replay_samples
        from ..measure.results import Record

        rec = Record.from_row(row)
        n = size if isinstance(size, int) else len(rec.samples)  # a forest-sized replay: the run itself
        if rec.trees:
            full = rec.tokens.to_dict() if hasattr(rec.tokens, "to_dict") else dict(row.get("tokens", {}))
            return rec.answer, full, rec.decision if n >= len(rec.samples) else "inexact:the forest ran"
        answer, usage, how = replay_samples({**row, "method": "sc"}, task, max(n, rec.evaluation.get("probe") or 0))
        return answer, usage, how
