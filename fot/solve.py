"""`python -m fot.solve PROBLEMS`: run the forest on every problem of a file, resumably.

Each result is one JSON line in `--out`, written (and fsynced) as soon as its problem finishes;
re-running with the same `--out` skips the ids already there. Every node of every tree goes to
`<out>.trees.jsonl` (one line per problem, written just before its result; `--no-trees` to skip),
which `python -m fot.view <out>` draws. At the end, a summary: accuracy
of the returned answers with a 95% Wilson interval, oracle pass@k (labelled: any node right),
tokens and dollars per solved problem, wall time, calls and errors.

Exit status: 0 done; 2 bad usage or bad input (also: another run holds --out, or --out holds
results made with other settings); 1 backend unreachable, or the environment failed (disk full,
output unwritable: nothing is marked finished); 130 interrupted (finished results are kept; run
the same command again to resume).
"""

from __future__ import annotations

import os
import sys

try:  # Ctrl-C while the libraries load is an interrupt like any other: exit 130, not death by the signal
    import argparse
    import asyncio
    import json
    import time
    from contextlib import AsyncExitStack, aclosing
    from pathlib import Path

    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.table import Table

    import dataclasses
    from dataclasses import dataclass, field

    from .backend.budget import Price
    from .config import BackendSettings, RunSettings, SearchConfig
    from .distributed import RayUnavailable  # not Ray itself: that is imported only with --ray
    from .engine import Engine, Result, minimum_budget
    from .errors import EnvironmentFailure, FotError
    from .methods import get_method
    from .measure.meter import grade, summarize
    from .options import Parser, add_config_option, add_settings, build, program, read_settings
    from .tasks.problems import Problem, ProblemFileError, load_problems
    from .measure.results import (append_line, changed_settings, close_lines, lock_output, open_lines, provenance,
                          prune_trees, read_finished, run_settings, trees_path)
    from .runtime import tune_gc
    from .tasks import datasets, detect_task, get_task
    from .upstream import check_sim, default_method, kind_of, price_of, search_config, start_upstream
    from .view import LiveState, live_path
except KeyboardInterrupt:
    print("fot.solve: interrupted while starting; nothing was run", file=sys.stderr, flush=True)
    # Not SystemExit: an interrupt that passed through some library's import leaves CPython set to die by
    # the signal at exit whatever we raise. Nothing is open or started yet, so there is nothing to clean up.
    os._exit(130)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROGRESS_EVERY_S = 5.0  # without a terminal (a log, CI, nohup): one progress line on stderr this often
LIVE_EVERY_S = 1.0  # <out>.live.json, for `fot view --watch`, is rewritten this often

# what the summary's decision labels mean (fot/search/decision.py, fot/search/baselines.py)
DECISION_LABELS = {
    "unanimous": "every tree that voted gave the same answer",
    "majority": "more than half of the votes for one answer",
    "plurality": "the most common answer without a majority (sc)",
    "expert": "no majority: an expert prompt chose among the trees' answers",
    "fallback": "no majority and no expert choice: the largest group, then the best Q",
    "single": "only one tree or sample gave an answer",
    "best_q": "the sample with the best self-evaluation (bon)",
    "best_q_unscored": "bon, but no sample's self-evaluation could be read: the first answer",
    "none": "no answer at all (budget, errors, or nothing extractable)",
}


def say(message: str) -> None:
    """Errors and notices go to stderr as plain, unwrapped lines (easy to grep, never reflowed)."""
    print(f"{program('fot.solve')}: {message}", file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    ap = Parser(prog="python -m fot.solve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("problems", nargs="?", default="",
                    help="JSONL, JSON list or CSV with id, question (or problem/Puzzles), answer (or --dataset NAME)")
    add_options(ap)
    return ap


def add_options(ap: argparse.ArgumentParser, skip: frozenset[str] = frozenset(), title: str = "") -> list[str]:
    """fot.solve's options, one per settings field (fot/config.py: backend, search, run), on its own parser or
    on fot.sweep's; `skip` names the fields the caller owns. Returns the fields added."""
    if "config" not in skip:
        add_config_option(ap)
    added = add_settings(ap, BackendSettings, f"{title}backend", skip=skip)
    added += add_settings(ap, SearchConfig, f"{title}search (every setting of MCTSr and FoT: fot/config.py)",
                          skip=skip)
    added += add_settings(ap, RunSettings, f"{title}run", skip=skip)
    return added


@dataclass(frozen=True)
class SolveSettings:
    """One run of fot.solve: the problem file and the three kinds of settings. `search` holds only what was
    given; the rest comes from the upstream's preset (fot/upstream.py) and SearchConfig's defaults."""

    problems: str
    backend: BackendSettings = field(default_factory=BackendSettings)
    search: dict = field(default_factory=dict)
    run: RunSettings = field(default_factory=RunSettings)

    @property
    def method(self) -> str:
        return self.run.method or default_method(self.backend)

    def config(self) -> SearchConfig:
        return search_config(self.backend, self.search)


def settings_from(args: argparse.Namespace, skip: frozenset[str] = frozenset()) -> SolveSettings:
    """The Namespace, turned into settings here and nowhere else: the config file under the command line,
    the environment's defaults under both; `skip` names what the caller's own options mean (fot.sweep's
    --trees is a list). Raises ValueError (with the option's name) on a bad value."""
    _, backend, search, run = read_settings(args, skip)
    return SolveSettings(args.problems, backend, search, build(RunSettings, run))


def check_questions(path: str, problems: list[Problem], task) -> None:
    """A question the task cannot judge (e.g. not a Game-of-24 puzzle) is refused before anything runs."""
    for p in problems:
        why = task.validate(p.question)
        if why:
            raise ProblemFileError(path, p.line, "question", f"problem '{p.id}': {why}")


def load_examples(path: str | None, problems_path: str, problems: list[Problem]) -> list[tuple[str, str]] | None:
    """The user's solved problems for 'example' trees: every one needs a worked answer; the problem
    file itself is refused, and an example whose question is one of the problems is dropped."""
    if path is None:
        return None
    if Path(path).resolve() == Path(problems_path).resolve():
        raise ProblemFileError(path, None, None, "--examples is the problem file itself; give solved problems "
                               "that are not being tested")
    examples = load_problems(path)
    for ex in examples:
        if ex.answer is None or not ex.answer.strip():
            raise ProblemFileError(path, ex.line, "answer", f"example '{ex.id}' has no worked answer")
    asked = {" ".join(p.question.lower().split()) for p in problems}
    kept = [(ex.question, ex.answer) for ex in examples if " ".join(ex.question.lower().split()) not in asked]
    if len(kept) < len(examples):
        say(f"--examples: {len(examples) - len(kept)} example(s) are problems of this run and are not shown")
    return kept


def default_out(s: SolveSettings) -> Path:
    """fot-results/<problems>-<method>.jsonl: one default per method (the method the run will use: sc on the
    embedded model when none is given), so trying a second method does not run into the first's results."""
    name = s.run.dataset.replace(":", "-") if s.run.dataset else Path(s.problems).stem
    return Path("fot-results") / f"{name}-{s.method}.jsonl"


def free_out(out: Path) -> Path:
    """A results path next to `out` that holds nothing yet: out-2.jsonl, out-3.jsonl, ..."""
    for i in range(2, 1000):
        candidate = out.with_name(f"{out.stem}-{i}{out.suffix}")
        if not candidate.exists():
            return candidate
    return out.with_name(f"{out.stem}-new{out.suffix}")


class BackendRefuses(FotError):
    """Every endpoint refuses the model, key or API (fot.backend.endpoints `refusal`): the run stops."""

    kind = "backend"


def backend_answered(row: dict) -> bool:
    """Did some call of this problem get an answer from the backend (tokens it counted or we read)?"""
    t = row.get("tokens") or {}
    return (t.get("prompt") or 0) + (t.get("completion") or 0) > 0



def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def print_summary(console: Console, rows: list[dict], price: Price | None, backend: str, wall: float,
                  endpoints: list[dict] | None = None) -> dict:
    s = summarize(rows, price)
    t = Table(title=f"fot: {s.problems} problems on {backend}", show_header=False)
    t.add_column("metric", style="bold")
    t.add_column("value")
    if s.accuracy is not None:
        lo, hi = s.accuracy_ci95
        t.add_row("accuracy (returned answer)", f"{s.accuracy:.1%}  [95% CI {lo:.1%} - {hi:.1%}]  ({s.correct}/{s.graded})")
        t.add_row("oracle pass@k (any node or sample right; not accuracy)", f"{s.oracle_pass_at_k:.1%}")
    else:
        t.add_row("accuracy", "n/a (no references to grade against)")
    t.add_row("tokens per problem (mean / median)", f"{s.tokens_mean:,.0f} / {s.tokens_median:,.0f}")
    t.add_row("  prompt / completion / cached (mean)",
              f"{s.prompt_tokens_mean:,.0f} / {s.completion_tokens_mean:,.0f} / {s.cached_tokens_mean:,.0f}")
    if s.unknown_tokens_mean:
        t.add_row("  of them unreported (mean)", f"{s.unknown_tokens_mean:,.0f}: calls cut off or timed out, charged at "
                  "their whole reservation (an upper bound)")
    t.add_row("tokens per solved problem", _fmt(s.tokens_per_solved))
    if price is not None:
        t.add_row("dollars (total / per solved)", f"${s.usd_total:.4f} / " + (
            "n/a" if s.usd_per_solved is None else f"${s.usd_per_solved:.4f}"))
    t.add_row("decisions", ", ".join(f"{k} {v}" for k, v in sorted(s.decisions.items())))
    for k in sorted(s.decisions):
        if k in DECISION_LABELS:
            t.add_row(f"  {k}", DECISION_LABELS[k])
    if s.eval_parse_rate is not None:
        t.add_row("self-evaluation scores read", f"{s.eval_parse_rate:.1%} of {s.eval_samples:,} samples "
                  "(unreadable ones are dropped, not scored)")
    if s.token_share:
        t.add_row("token share by role", ", ".join(f"{k} {v:.1%}" for k, v in s.token_share.items()))
    for sig in s.signals:  # fot.measure.signals: does the score (or the confidence) tell right from wrong?
        t.add_row(f"signal {sig.name}", sig.line().split(": ", 1)[1])
    t.add_row("calls / errors", f"{s.calls:,} / {s.errors}")
    t.add_row("wall time (run / mean per problem)", f"{wall:.1f} s / {s.wall_s_mean:.1f} s")
    for e in endpoints if endpoints and len(endpoints) > 1 else []:  # this run's requests, by replica
        t.add_row(f"  {e['endpoint']}", f"{e['served']:,} answered, {e['failed']:,} failed, taken out "
                  f"{e['ejected']} time(s){'' if e['up'] else ' (out now)'}")
    console.print(t)
    d = s.to_dict()
    if endpoints:
        d["endpoints"] = endpoints
    return d


def recorded_settings(s: SolveSettings, cfg: SearchConfig, task_name: str, model: str | None) -> dict:
    """What decides this run's results (fot.measure.results.run_settings), from the settings, not a Namespace."""
    values = {**{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()},
              "method": s.method, "samples": s.run.samples, "budget": s.run.budget, "task": task_name,
              "backend": kind_of(s.backend), "model": model}
    return run_settings(values, get_method(s.method).recorded())


def check_resume(s: SolveSettings, out: Path, done: dict[str, dict], recorded: dict) -> bool:
    """False (and says why) when --out holds results made with other settings and the user did not allow it."""
    if done and (changes := changed_settings(done, recorded)) and not s.run.resume_changed:
        say(f"{out} holds {len(done)} results made with other settings ({'; '.join(changes)}); give another "
            f"--out (e.g. --out {free_out(out)}), or --resume-changed to add to it anyway")
        return False
    return True


async def run(s: SolveSettings, problems: list[Problem], task_name: str, out: Path, done: dict[str, dict], fh,
              trees_fh=None, example_pool: list[tuple[str, str]] | None = None) -> int:
    b, r = s.backend, s.run
    method = get_method(s.method)
    price = price_of(b)
    todo = [p for p in problems if p.id not in done]
    refs = {p.id: p.answer for p in problems}
    if r.method is None and kind_of(b) == "embedded":
        say(f"embedded model: using --method {s.method} --samples {r.samples} (on this 135M model plain sampling did "
            "at least as well as the forest at a third of its tokens, docs/local.md; --method forest runs it)")
    cfg = method.configure(s.config())
    task = get_task(task_name)
    if r.budget is not None and todo:
        least, p = max(((minimum_budget(p.question, task, cfg, s.method), p) for p in todo), key=lambda lp: lp[0])
        if r.budget < least:
            say(f"--budget {r.budget} is below the {least} tokens a {s.method} needs for its first "
                f"answer{'s' if method.trees(cfg) > 1 else ''} on problem '{p.id}' "
                f"({s.problems}:{p.line}); give --budget {least} or more. Nothing was run")
            return EXIT_USAGE
    recorded = recorded_settings(s, cfg, task_name, b.model)
    if not b.model:
        recorded.pop("model")  # known once the backend names its first model, checked then
    if not check_resume(s, out, done, recorded):
        return EXIT_USAGE
    async with AsyncExitStack() as stack:
        try:
            up = await start_upstream(stack, b, seed=cfg.seed, problems=problems, say=say)
        except FotError as e:
            say(str(e))
            return EXIT_FAIL
        if up.kind == "embedded" and method.tree_search:
            say(f"embedded model: using --trees {cfg.trees} --rollouts {cfg.rollouts} --reward-samples "
                f"{cfg.reward_samples} --eval-max-tokens {cfg.eval_max_tokens} (its defaults: minutes, not hours, "
                "on 2 cores)")
        # the same for every engine of the run: this one, and each Ray worker's
        settings = dict(base_urls=up.base_urls, concurrency=up.concurrency, rps=b.rps, timeout=b.timeout,
                        max_attempts=b.max_attempts, price=price, config=cfg, context_window=up.context_window,
                        trace_text=r.trace_text, max_n=up.max_n)
        pool = None
        try:
            engine = Engine(None, up.model, b.api_key, run_budget=r.run_budget, trace=r.trace, **settings)
            stack.push_async_callback(engine.aclose)
            await engine.start()
            if r.ray is not None:
                from .distributed import RayPool, Secret, WorkerSettings

                pool = await stack.enter_async_context(RayPool(
                    WorkerSettings({"model": engine.model, **settings}, Secret(b.api_key),
                                   capped=r.run_budget is not None, keep_rows=r.trace is not None),
                    address=r.ray, workers=r.ray_workers, run_budget=r.run_budget, ledger=engine.ledger,
                    notice=say))
                say(f"Ray: {len(pool.workers)} workers" + (f" on {r.ray}" if r.ray else " (local)"))
        except FotError as e:
            say(str(e))
            return EXIT_FAIL
        backend = f"{up.label} [{engine.model}]"
        for url in engine.down_at_start:
            say(f"{url} does not answer; it is left out until it does")
        recorded = recorded_settings(s, cfg, task_name, engine.model)
        if not check_resume(s, out, done, recorded):
            return EXIT_USAGE
        if done:
            unrecorded = sum("run" not in row for row in done.values())
            say(f"resuming: {len(done)} finished problems in {out} are skipped" + (
                f" ({unrecorded} written before fot recorded settings: not checked)" if unrecorded else ""))
        rows = list(done.values())
        origin = provenance(s.problems)
        t0 = time.monotonic()
        progress = Progress(TextColumn("[bold]{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                            TextColumn("{task.fields[note]}"),
                            console=Console(stderr=True), disable=r.quiet or not todo)
        per_problem = method.rollouts_per_problem(cfg)
        tokens_before = engine.ledger.total.total_tokens

        calls_before = engine.ledger.total.calls

        def spent_tokens() -> int:
            return pool.spent_tokens if pool is not None else engine.ledger.total.total_tokens - tokens_before

        def spent() -> str:
            return f"{spent_tokens():,} tokens"

        live = LiveState(live_path(out), len(todo), s.method, backend)

        def counts(finished: bool = False) -> dict:
            graded = [row for row in rows[len(done):] if row.get("correct") is not None]
            return dict(done=len(rows) - len(done), correct=sum(bool(row["correct"]) for row in graded),
                        graded=len(graded), tokens=spent_tokens(), calls=engine.ledger.total.calls - calls_before,
                        elapsed_s=time.monotonic() - t0, finished=finished)

        async def report() -> None:
            """The live file every second; without a terminal, a progress line every few seconds (rich draws
            nothing then, and a long run would be silent for minutes)."""
            plain = not r.quiet and not Console(stderr=True).is_terminal
            last = time.monotonic()
            while True:
                await asyncio.sleep(LIVE_EVERY_S)
                c = counts()
                live.write(**c)
                if plain and time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    acc = f", acc {c['correct'] / c['graded']:.0%}" if c["graded"] else ""
                    say(f"{c['done']}/{len(todo)} problems{acc}, {c['calls']:,} calls, {c['tokens']:,} tokens, "
                        f"{c['elapsed_s']:.0f} s")

        reporter = asyncio.create_task(report()) if todo else None
        try:
            with progress:
                bar = progress.add_task("problems", total=len(todo), note="")
                # rollouts are the unit of work inside a problem, so their rate gives an ETA long before the
                # first problem ends; a problem that stops early (budget, early stop) gives back the rest
                steps = progress.add_task("rollouts", total=len(todo) * per_problem, note="",
                                          visible=per_problem > 0)
                rollouts_of: dict[str, int] = {}

                def on_rollout(problem_id: str, tree) -> None:
                    rollouts_of[problem_id] = rollouts_of.get(problem_id, 0) + 1
                    progress.update(steps, advance=1, note=spent())
                    live.rollout(problem_id, tree)

                # Results are held back until some call of this run has been answered: a backend that never
                # answers (a wrong model or key, a server that is not OpenAI-compatible) must not leave its
                # problems marked finished, or the rerun with the right settings would skip them.
                held: list[tuple[Result, dict]] = []
                answered = False
                async with aclosing((pool or engine).solve_many(todo, parallel=r.parallel, task=task_name,
                                                                budget=r.budget, example_pool=example_pool,
                                                                method=s.method, samples=r.samples,
                                                                on_rollout=on_rollout if per_problem else None)) \
                        as results:
                    async for result in results:
                        if pool is None and (refusal := engine.llm.endpoints.refusal()) is not None:
                            raise BackendRefuses(refusal)
                        row = grade({**result.to_dict(), "run": recorded, "provenance": origin}, task,
                                    refs.get(result.id))
                        held.append((result, row))
                        answered = answered or backend_answered(row)
                        if not answered:
                            progress.update(bar, advance=1, note=spent())
                            if len(held) >= r.parallel:  # a whole wave of problems and not one call answered
                                break
                            continue
                        progress.update(bar, advance=1)
                        for kept, row in held:
                            if trees_fh is not None and kept.forest:  # first: no result is ever without its trees
                                append_line(trees_fh, trees_path(out), kept.trees_line())
                            append_line(fh, out, row)
                            rows.append(row)
                            live.finished(row)
                            if per_problem:
                                progress.update(steps, advance=per_problem - rollouts_of.pop(kept.id, 0))
                        held = []
                        graded = [r for r in rows if r.get("correct") is not None]
                        acc = f"acc {sum(r['correct'] for r in graded) / len(graded):.0%}" if graded else ""
                        progress.update(bar, note=f"{acc}  {spent()}".strip())
        except (EnvironmentFailure, RayUnavailable) as e:
            say(f"{e}; stopped. Finished results are in {out}; fix it and run the same command to resume")
            return EXIT_FAIL
        except BackendRefuses as e:
            say(f"the backend refuses every call ({e}); stopped. Finished results are in {out}; nothing failed by "
                "the refusal is marked finished: fix the model, key or URL and run the same command to resume")
            return EXIT_FAIL
        finally:
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
                live.write(**counts(finished=True))
        if held:
            first = next((r["error"] for _, r in held if r.get("error")), "")
            say(f"no call to the backend was answered in this run ({len(held)} problem(s) tried, {len(todo)} to do"
                f"{'; first error: ' + first if first else ''}); nothing was marked finished: fix the backend "
                "and run the same command")
            return EXIT_FAIL
        summary = print_summary(Console(), rows, price, backend, time.monotonic() - t0,
                                None if pool is not None else engine.llm.endpoints.stats())
        if (death := up.died()) is not None:
            say(death)
            return EXIT_FAIL
        summary.update({"backend": backend, "task": task_name, "method": s.method, "trees": cfg.trees,
                        "rollouts": cfg.rollouts, "samples": r.samples, "budget": r.budget,
                        "simulated": up.simulated, "run": recorded, "wall_s": time.monotonic() - t0})
        if pool is not None:
            summary["ray"] = pool.summary()
        summary_path = out.with_name(out.stem + ".summary.json")
        try:
            summary_path.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
        except OSError as e:
            say(f"cannot write the summary {summary_path}: {e.strerror or e} (the results are in {out})")
            return EXIT_FAIL
        files = [f"results {out}", f"summary {summary_path}"]
        if not r.no_trees and trees_path(out).exists():
            files.insert(1, f"trees {trees_path(out)}")
        if r.trace:
            files.append(f"calls {r.trace}")
        run_as = program("python -m fot.solve")  # `fot solve`, `python -m fot solve` or `python -m fot.solve`
        fot = run_as[: -len(" solve")] if run_as.endswith(" solve") else "python -m fot"
        say("files: " + "; ".join(files) + f". See them: {fot} view {out}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        say("interrupted; finished results are kept; run the same command to resume")
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    try:
        settings = settings_from(args)
        check_sim(settings.backend)
    except ValueError as e:  # UsageError included: a value the settings refuse, named by its option
        ap.error(str(e))
    if settings.run.ray_workers is not None and settings.run.ray is None:
        ap.error("--ray-workers needs --ray")
    return execute(settings)


def read_problems(s: SolveSettings) -> tuple[list[Problem], SolveSettings]:
    """The problems, from the file or the named dataset (fot/tasks/datasets.py), and the settings with the
    dataset's file and task filled in (its file is what provenance hashes, its task the one that grades it)."""
    r = s.run
    if not r.dataset:
        if not s.problems:
            raise ProblemFileError("PROBLEMS", None, None, "no problem file given (or --dataset NAME; fot datasets lists "
                                   "them)")
        return load_problems(s.problems), s
    if s.problems:
        raise ProblemFileError(s.problems, None, None, f"give a problem file or --dataset {r.dataset}, not both")
    chosen = datasets.select(r.dataset, r.data_dir)
    run = dataclasses.replace(r, dataset=f"{chosen.dataset.name}:{chosen.split}",
                              task=chosen.dataset.task if r.task == "auto" else r.task)
    return datasets.load(chosen), dataclasses.replace(s, problems=str(chosen.paths[0]), run=run)


def execute(s: SolveSettings) -> int:
    """Run fot.solve with these settings (what `main` does after parsing; fot.sweep calls it for each run)."""
    tune_gc()
    r = s.run
    if r.ray is not None:
        from .distributed import require_ray

        try:
            require_ray()
        except RayUnavailable as e:
            say(str(e))
            return EXIT_FAIL
    try:
        problems, s = read_problems(s)
    except ProblemFileError as e:
        say(str(e))
        return EXIT_USAGE
    r = s.run
    if r.limit:
        problems = problems[: r.limit]
    task = r.task
    if task == "auto":
        task = detect_task([p.question for p in problems], [p.answer for p in problems], s.problems).name
    try:
        check_questions(s.problems, problems, get_task(task))
        example_pool = load_examples(r.examples, s.problems, problems)
    except ProblemFileError as e:
        say(str(e))
        return EXIT_USAGE
    out = Path(r.out) if r.out else default_out(s)
    try:
        lock = lock_output(out, r.trace)
    except ProblemFileError as e:
        say(str(e))
        return EXIT_USAGE
    except EnvironmentFailure as e:
        say(str(e))
        return EXIT_FAIL
    with lock:
        fh = trees_fh = None
        created = not out.exists(), not trees_path(out).exists()
        try:
            done = read_finished(out, r.retry_errors)
            fh = open_lines(out)
            if not r.no_trees:
                prune_trees(trees_path(out), done)
                trees_fh = open_lines(trees_path(out))
        except OSError as e:
            say(f"cannot use {out}: {e.strerror or e}")
            close_lines(fh, out, created[0])
            return EXIT_FAIL
        done = {k: v for k, v in done.items() if k in {p.id for p in problems}}
        try:
            return asyncio.run(run(s, problems, task, out, done, fh, trees_fh, example_pool))
        except KeyboardInterrupt:
            say(f"interrupted; finished results are in {out}; run the same command to resume")
            return EXIT_INTERRUPTED
        finally:
            close_lines(fh, out, created[0])
            close_lines(trees_fh, trees_path(out), created[1])

if __name__ == "__main__":
    sys.exit(main())
