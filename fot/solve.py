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
    import urllib.parse
    from contextlib import AsyncExitStack, aclosing, nullcontext
    from pathlib import Path

    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.table import Table

    from .budget import Price
    from .config import SearchConfig
    from .distributed import RayUnavailable  # not Ray itself: that is imported only with --ray
    from .engine import METHODS, Engine, minimum_budget
    from .errors import EnvironmentFailure, FotError
    from .meter import grade, summarize
    from .problems import Problem, ProblemFileError, load_problems
    from .runtime import tune_gc
    from .results import (append_line, changed_settings, lock_output, prune_trees, read_finished, run_settings,
                          trees_path)
    from .policies import DECISION_RULES
    from .tasks import TASKS, detect_task, get_task
except KeyboardInterrupt:
    print("fot.solve: interrupted while starting; nothing was run", file=sys.stderr, flush=True)
    # Not SystemExit: an interrupt that passed through some library's import leaves CPython set to die by
    # the signal at exit whatever we raise. Nothing is open or started yet, so there is nothing to clean up.
    os._exit(130)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def say(message: str) -> None:
    """Errors and notices go to stderr as plain, unwrapped lines (easy to grep, never reflowed)."""
    print(f"fot.solve: {message}", file=sys.stderr, flush=True)


def _positive_int(name: str, minimum: int):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {s!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {v}")
        return v
    return parse


def _non_negative_float(name: str):
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {s!r}") from None
        if not v >= 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {s}")
        return v
    return parse


def _positive_float(name: str):
    def parse(s: str) -> float:
        v = _non_negative_float(name)(s)
        if v == 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {s}")
        return v
    return parse


def _base_url(s: str) -> str:
    """Refuse a URL the HTTP client would choke on later (a port out of range, no host) now, by name."""
    try:
        u = urllib.parse.urlsplit(s)
        u.port  # noqa: B018 -- raises ValueError when out of range
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--base-url {s!r}: {e}") from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise argparse.ArgumentTypeError(f"--base-url {s!r}: expected http(s)://HOST[:PORT]/PATH")
    return s


def base_urls_or_env(ap: argparse.ArgumentParser, given: list[str] | None) -> list[str] | None:
    """The URLs given on the command line, else $OPENAI_BASE_URL (checked like --base-url), else None."""
    if given is None and os.environ.get("OPENAI_BASE_URL"):
        try:
            return [_base_url(os.environ["OPENAI_BASE_URL"])]
        except argparse.ArgumentTypeError as e:
            ap.error(f"$OPENAI_BASE_URL: {e}")
    return given


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fot.solve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("problems", help="JSONL, JSON list or CSV with id, question (or problem/Puzzles), answer")
    add_options(ap)
    return ap


def add_options(ap: argparse.ArgumentParser, skip: frozenset[str] = frozenset(),
                title: str = "") -> list[argparse.Action]:
    """fot.solve's options, on its own parser or on fot.sweep's (which passes them through, so its --help
    lists them and an unknown option is refused by the sweep itself); `skip` names the ones the caller owns."""
    added: list[argparse.Action] = []

    def group(name: str):
        g = ap.add_argument_group(f"{title}{name}")

        def add(*flags, **kw):
            if flags[0].lstrip("-").replace("-", "_") not in skip:
                added.append(g.add_argument(*flags, **kw))
        return add
    b = group("backend")
    b("--base-url", type=_base_url, action="append", default=None, metavar="URL",
      help="OpenAI-compatible server (default $OPENAI_BASE_URL); give it several times for replicas of one "
           "model: calls go to the least loaded, a failing one is taken out until it answers (docs/scale.md)")
    b("--model", default=os.environ.get("FOT_MODEL"), help="model name (default $FOT_MODEL, "
      "else the server's first model)")
    b("--api-key", default=None, help="API key (default $OPENAI_API_KEY); never printed or stored")
    b("--sim", action="store_true", help="run against fot.sim, the SIMULATED backend (a test double)")
    b("--sim-fault", action="append", default=[], metavar="KIND=RATE",
      help="with --sim: inject faults (429, 500, 503, hang, truncate, nonjson, no_usage, short_n)")
    b("--sim-profile", default="", metavar="K=V,...",
      help="with --sim: the simulated solver's skill, e.g. p_first=0.4,p_fix=0.3,eval_wrong=40:30 "
           "(see fot.sim.SimProfile)")
    b("--gguf", default=os.environ.get("FOT_GGUF"),
      help="with no --base-url: serve this GGUF locally (default $FOT_GGUF, else SmolLM2-135M)")
    b("--n-ctx", type=_positive_int("--n-ctx", 256), default=4096, help="local server context size (per slot)")
    b("--n-threads", type=_positive_int("--n-threads", 1), default=None,
      help="local server threads (default: half the cores, docs/local.md)")
    b("--slots", type=_positive_int("--slots", 1), default=None,
      help="local server parallel slots: requests decoded together (default 8, docs/local.md)")
    b("--concurrency", type=_positive_int("--concurrency", 1), default=None,
      help="cap on requests in flight per endpoint (default: none, the work in flight decides, and a 429 or "
           "503 lowers it; the slot count for the embedded local server; docs/performance.md); "
           "per worker with --ray")
    b("--rps", type=_non_negative_float("--rps"), default=None, help="requests per second cap")
    b("--timeout", type=_positive_float("--timeout"), default=120.0, help="seconds per request")
    s = group("search")
    s("--task", default="auto", choices=["auto", *TASKS])
    s("--method", default=None, choices=list(METHODS),
      help="forest (default; sc on the embedded local model, where sampling beat the forest: "
           "docs/local.md); mctsr = one tree; baselines on the same token axis: cot (one sample), "
           "sc (majority of --samples), bon (best of --samples by the same verifier)")
    s("--samples", type=_positive_int("--samples", 1), default=8,
      help="samples for sc / bon (default 8); smaller counts are replayed from the run")
    s("--trees", type=_positive_int("--trees", 1), default=None,
      help="trees per problem (default 4; 2 on the embedded local model)")
    s("--rollouts", type=_positive_int("--rollouts", 0), default=None,
      help="rollouts per tree (default 8; 1 on the embedded local model)")
    s("--reward-samples", type=_positive_int("--reward-samples", 1), default=None,
      help="self-evaluation samples per node (default 3; 1 on the embedded local model)")
    s("--eval-max-tokens", type=_positive_int("--eval-max-tokens", 16), default=None,
      help="completion cap of one self-evaluation, analysis and score line (default 192; 96 on the "
           "embedded local model)")
    s("--budget", type=_positive_int("--budget", 1), default=None, help="tokens per problem (hard cap)")
    s("--tree-budget", type=_positive_int("--tree-budget", 1), default=None,
      help="tokens per tree (hard cap), the same at any forest size, so smaller forests replay "
           "exactly; --budget stays the outer cap. Without it, each tree gets budget / trees")
    s("--run-budget", type=_positive_int("--run-budget", 1), default=None, help="tokens for the run")
    s("--seed", type=int, default=0)
    s("--parallel", type=_positive_int("--parallel", 1), default=4,
      help="problems at once (with --ray: in total, spread over the workers)")
    s("--decision", choices=list(DECISION_RULES), default="majority_first",
      help="how the forest decides (fot.policies): a majority of all trees first (default), or the "
           "paper's order, sparse activation first")
    s("--tie-break", choices=["expert", "q"], default="expert",
      help="no decision by vote: ask an expert prompt (default) or take the rule's fallback "
           "(largest group, then best Q)")
    s("--examples", default=None, metavar="FILE",
      help="your own solved problems (question + worked answer), shown to 'example' trees; "
           "never the problem file itself")
    s("--early-stop", action="store_true", help="stop once a majority of trees agree")
    o = group("output")
    o("--out", default=None, help="results JSONL (default fot-results/<problems>.jsonl); resumable")
    o("--limit", type=_positive_int("--limit", 1), default=None, help="first N problems only")
    o("--trace", default=None, help="write every call to this JSONL file")
    o("--trace-text", action="store_true",
      help="with --trace: keep each call's prompt messages and completion texts too (large)")
    o("--no-trees", action="store_true",
      help="do not keep the node record <out>.trees.jsonl (what fot.view draws)")
    o("--retry-errors", action="store_true", help="on resume, redo problems that ended in an error")
    o("--resume-changed", action="store_true",
      help="resume even though --out holds results made with other settings (they will be mixed)")
    o("--quiet", action="store_true", help="no progress display")
    d = group("distributed (Ray: fot/distributed.py, docs/scale.md)")
    d("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
      help="spread the problems over Ray workers, each with its own Engine (the 'ray' extra); no ADDRESS "
           "starts a local Ray, ADDRESS (host:port, ray://host:port, auto) joins a cluster, which must reach "
           "the backend. --parallel is then problems in flight in total, spread over the workers; "
           "--concurrency and --rps are per worker. Put it after PROBLEMS, or write --ray=ADDRESS")
    d("--ray-workers", type=_positive_int("--ray-workers", 1), default=None, metavar="N",
      help="with --ray: Ray workers (default: the cluster's CPUs, at least 1)")
    p = group("prices (USD per million tokens)")
    p("--price-in", type=_non_negative_float("--price-in"), default=None)
    p("--price-out", type=_non_negative_float("--price-out"), default=None)
    p("--price-cached", type=_non_negative_float("--price-cached"), default=None)
    return added


def sim_profile(spec: str):
    """'p_first=0.4,p_fix=0.3' -> SimProfile with those fields changed."""
    import dataclasses

    from .sim import SimProfile

    profile = SimProfile()
    fields = {f.name for f in dataclasses.fields(SimProfile)}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        if key not in fields or not value:
            raise ValueError(f"--sim-profile: '{part}' is not KEY=VALUE with KEY one of {', '.join(sorted(fields))}")
        current = getattr(profile, key)
        try:
            if isinstance(current, tuple):  # several numbers: eval_right=20:40
                parsed = tuple(float(v) for v in value.split(":"))
                if len(parsed) != len(current) and key != "distractor_weights":
                    raise ValueError
            else:
                parsed = type(current)(float(value)) if isinstance(current, int) else float(value)
        except ValueError:
            raise ValueError(f"--sim-profile: '{part}' needs {'numbers joined by :' if isinstance(current, tuple) else 'a number'}") from None
        profile = dataclasses.replace(profile, **{key: parsed})
    return profile


def sim_faults(specs: list[str]) -> dict[str, float]:
    from .sim import FAULT_KINDS

    faults: dict[str, float] = {}
    for spec in specs:
        kind, _, rate = spec.partition("=")
        try:
            r = float(rate)
        except ValueError:
            r = -1.0
        if kind not in FAULT_KINDS or not 0 <= r <= 1:
            raise ValueError(f"--sim-fault {spec!r}: expected KIND=RATE, KIND one of {', '.join(FAULT_KINDS)}, "
                             f"RATE in [0, 1]")
        faults[kind] = r
    if sum(faults.values()) > 1:
        raise ValueError("--sim-fault rates sum to more than 1")
    return faults


def check_questions(path: str, problems: list[Problem], task) -> None:
    """A question the task cannot judge (e.g. not a Game-of-24 puzzle) is refused before anything runs."""
    validate = getattr(task, "validate", None)
    if validate is None:
        return
    for p in problems:
        why = validate(p.question)
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
    t.add_row("tokens per solved problem", _fmt(s.tokens_per_solved))
    if price is not None:
        t.add_row("dollars (total / per solved)", f"${s.usd_total:.4f} / " + (
            "n/a" if s.usd_per_solved is None else f"${s.usd_per_solved:.4f}"))
    t.add_row("decisions", ", ".join(f"{k} {v}" for k, v in sorted(s.decisions.items())))
    if s.eval_parse_rate is not None:
        t.add_row("self-evaluation scores read", f"{s.eval_parse_rate:.1%} of {s.eval_samples:,} samples "
                  "(unreadable ones are dropped, not scored)")
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


async def run(args: argparse.Namespace, problems: list[Problem], task_name: str, out: Path,
              done: dict[str, dict], fh, trees_fh=None) -> int:
    price = None
    if args.price_in is not None or args.price_out is not None:
        price = Price(input=args.price_in or 0.0, output=args.price_out or 0.0, cached_input=args.price_cached)
    todo = [p for p in problems if p.id not in done]
    refs = {p.id: p.answer for p in problems}
    context_window = None
    concurrency, max_n = args.concurrency, None
    backend_kind = "sim" if args.sim else "server" if args.base_url else "embedded"
    preset = {"trees": 4, "rollouts": 8, "reward_samples": 3, "eval_max_tokens": 192}
    if backend_kind == "embedded":
        # Measured on 150 problems (docs/local.md): on the 135M model, 8 plain samples by majority did at least
        # as well as the 2x1 forest at a third of its tokens (it cannot write a readable self-evaluation) and
        # finish --limit 10 in about 2.5 minutes on 2 cores; a forest asked for gets the measured 2x1 cell.
        preset = {"trees": 2, "rollouts": 1, "reward_samples": 1, "eval_max_tokens": 96}
        if args.method is None:
            args.method = "sc"
            say(f"embedded model: using --method sc --samples {args.samples} (on this 135M model plain sampling did "
                "at least as well as the forest at a third of its tokens, docs/local.md; --method forest runs it)")
    args.method = args.method or "forest"
    chosen = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in preset.items()}
    for k, v in chosen.items():
        setattr(args, k, v)
    cfg = SearchConfig(trees=args.trees, rollouts=args.rollouts, reward_samples=args.reward_samples,
                       eval_max_tokens=args.eval_max_tokens,
                       seed=args.seed, early_stop=args.early_stop, tie_break=args.tie_break,
                       decision=args.decision, tree_budget=args.tree_budget)
    task = get_task(task_name)
    if args.budget is not None and todo:
        least, p = max(((minimum_budget(p.question, task, cfg, args.method), p) for p in todo), key=lambda lp: lp[0])
        if args.budget < least:
            say(f"--budget {args.budget} is below the {least} tokens a {args.method} needs for its first "
                f"answer{'s' if args.method == 'forest' and cfg.trees > 1 else ''} on problem '{p.id}' "
                f"({args.problems}:{p.line}); give --budget {least} or more. Nothing was run")
            return EXIT_USAGE
    recorded = run_settings(args, task_name, backend_kind, args.model)
    if not args.model:
        recorded.pop("model")  # known once the backend names its first model, checked then
    if done and (changes := changed_settings(done, recorded)) and not args.resume_changed:
        say(f"{out} holds {len(done)} results made with other settings ({'; '.join(changes)}); use another "
            "--out, or --resume-changed to add to it anyway")
        return EXIT_USAGE
    async with AsyncExitStack() as stack:
        if args.sim:
            from .sim import SimConfig, SimServer
            from .sim.solver import normalize_question

            sim = await stack.enter_async_context(SimServer(SimConfig(
                seed=args.seed, profile=args.sim_profile_parsed, faults=args.sim_faults_parsed, hang_s=600.0,
                problems={normalize_question(p.question): p.answer for p in problems if p.answer is not None})))
            base_url, model, backend = sim.base_url, "fot-sim", "fot.sim (SIMULATED backend, a test double)"
        elif args.base_url:
            base_url, model = args.base_url, args.model
            backend = args.base_url[0] if len(args.base_url) == 1 else f"{len(args.base_url)} endpoints"
        else:
            from .local import LocalServer, LocalServerConfig

            say("no --base-url: starting the embedded local model server (llama.cpp)")
            try:
                local = await stack.enter_async_context(LocalServer(LocalServerConfig(
                    gguf=args.gguf, n_ctx=args.n_ctx, n_threads=args.n_threads, slots=args.slots)))
            except FotError as e:
                say(str(e))
                return EXIT_FAIL
            base_url, model, context_window = local.base_url, local.model, args.n_ctx
            concurrency = args.concurrency or local.slots  # as many in flight as it decodes together
            max_n = local.slots  # it refuses a larger n
            if args.method in ("forest", "mctsr"):
                say(f"embedded model: using --trees {args.trees} --rollouts {args.rollouts} --reward-samples "
                    f"{args.reward_samples} --eval-max-tokens {args.eval_max_tokens} (its defaults: "
                    "minutes, not hours, on 2 cores)")
            backend = f"local llama.cpp server ({local.gguf.name})"
        api_key = args.api_key if args.api_key is not None else os.environ.get("OPENAI_API_KEY")
        # the same for every engine of the run: this one, and each Ray worker's
        settings = dict(base_urls=[base_url] if isinstance(base_url, str) else base_url, concurrency=concurrency,
                        rps=args.rps, timeout=args.timeout, price=price, config=cfg,
                        context_window=context_window, trace_text=args.trace_text,
                        max_n=max_n)
        pool = None
        try:
            engine = Engine(None, model, api_key, run_budget=args.run_budget, trace=args.trace, **settings)
            stack.push_async_callback(engine.aclose)
            await engine.start()
            if args.ray is not None:
                from .distributed import RayPool, Secret, WorkerSettings

                pool = await stack.enter_async_context(RayPool(
                    WorkerSettings({"model": engine.model, **settings}, Secret(api_key),
                                   capped=args.run_budget is not None, keep_rows=args.trace is not None),
                    address=args.ray, workers=args.ray_workers, run_budget=args.run_budget, ledger=engine.ledger,
                    notice=say))
                say(f"Ray: {len(pool.workers)} workers" + (f" on {args.ray}" if args.ray else " (local)"))
        except FotError as e:
            say(str(e))
            return EXIT_FAIL
        backend = f"{backend} [{engine.model}]"
        for url in engine.down_at_start:
            say(f"{url} does not answer; it is left out until it does")
        recorded = run_settings(args, task_name, backend_kind, engine.model)
        if done and (changes := changed_settings(done, recorded)) and not args.resume_changed:
            say(f"{out} holds {len(done)} results made with other settings ({'; '.join(changes)}); use another "
                "--out, or --resume-changed to add to it anyway")
            return EXIT_USAGE
        if done:
            unrecorded = sum("run" not in r for r in done.values())
            say(f"resuming: {len(done)} finished problems in {out} are skipped" + (
                f" ({unrecorded} written before fot recorded settings: not checked)" if unrecorded else ""))
        rows = list(done.values())
        t0 = time.monotonic()
        progress = Progress(TextColumn("[bold]{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                            TextColumn("{task.fields[note]}"),
                            console=Console(stderr=True), disable=args.quiet or not todo)
        tree_search = args.method in ("forest", "mctsr")
        per_problem = (args.trees if args.method == "forest" else 1) * args.rollouts if tree_search else 0
        tokens_before = engine.ledger.total.total_tokens

        def spent() -> str:
            if pool is not None:
                return f"{pool.spent_tokens:,} tokens"
            return f"{engine.ledger.total.total_tokens - tokens_before:,} tokens"

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

                async with aclosing((pool or engine).solve_many(todo, parallel=args.parallel, task=task_name,
                                                      budget=args.budget, example_pool=args.example_pool,
                                                      method=args.method, samples=args.samples,
                                                      on_rollout=on_rollout if per_problem else None)) as results:
                    async for result in results:
                        row = grade({**result.to_dict(), "run": recorded}, task, refs.get(result.id))
                        if trees_fh is not None and result.forest:  # first, so no result is ever without its trees
                            append_line(trees_fh, trees_path(out), result.trees_line())
                        append_line(fh, out, row)
                        rows.append(row)
                        graded = [r for r in rows if r.get("correct") is not None]
                        acc = f"acc {sum(r['correct'] for r in graded) / len(graded):.0%}" if graded else ""
                        progress.update(bar, advance=1, note=f"{acc}  {spent()}".strip())
                        if per_problem:
                            progress.update(steps, advance=per_problem - rollouts_of.pop(result.id, 0))
        except (EnvironmentFailure, RayUnavailable) as e:
            say(f"{e}; stopped. Finished results are in {out}; fix it and run the same command to resume")
            return EXIT_FAIL
        summary = print_summary(Console(), rows, price, backend, time.monotonic() - t0,
                                None if pool is not None else engine.llm.endpoints.stats())
        if backend_kind == "embedded" and (death := local.died()):
            say(death)
            return EXIT_FAIL
        summary.update({"backend": backend, "task": task_name, "method": args.method, "trees": args.trees,
                        "rollouts": args.rollouts, "samples": args.samples, "budget": args.budget,
                        "simulated": bool(args.sim), "run": recorded, "wall_s": time.monotonic() - t0})
        if pool is not None:
            summary["ray"] = pool.summary()
        summary_path = out.with_name(out.stem + ".summary.json")
        try:
            summary_path.write_text(json.dumps(summary, indent=1) + "\n")
        except OSError as e:
            say(f"cannot write the summary {summary_path}: {e.strerror or e} (the results are in {out})")
            return EXIT_FAIL
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
    args.base_url = base_urls_or_env(ap, args.base_url)
    tune_gc()
    if args.ray_workers is not None and args.ray is None:
        ap.error("--ray-workers needs --ray")
    if args.ray is not None:
        from .distributed import require_ray

        try:
            require_ray()
        except RayUnavailable as e:
            say(str(e))
            return EXIT_FAIL
    try:
        args.sim_profile_parsed = sim_profile(args.sim_profile)
        args.sim_faults_parsed = sim_faults(args.sim_fault)
    except ValueError as e:
        ap.error(str(e))
    try:
        problems = load_problems(args.problems)
    except ProblemFileError as e:
        say(str(e))
        return EXIT_USAGE
    if args.limit:
        problems = problems[: args.limit]
    task = args.task
    if task == "auto":
        task = detect_task([p.question for p in problems], [p.answer for p in problems], args.problems).name
    try:
        check_questions(args.problems, problems, get_task(task))
        args.example_pool = load_examples(args.examples, args.problems, problems)
    except ProblemFileError as e:
        say(str(e))
        return EXIT_USAGE
    out = Path(args.out) if args.out else Path("fot-results") / f"{Path(args.problems).stem}.jsonl"
    try:
        lock = lock_output(out, args.trace)
    except ProblemFileError as e:
        say(str(e))
        return EXIT_USAGE
    except EnvironmentFailure as e:
        say(str(e))
        return EXIT_FAIL
    with lock:
        trees_fh = None
        try:
            done = read_finished(out, args.retry_errors)
            fh = open(out, "a", encoding="utf-8")
            if not args.no_trees:
                prune_trees(trees_path(out), done)
                trees_fh = open(trees_path(out), "a", encoding="utf-8")
        except OSError as e:
            say(f"cannot use {out}: {e.strerror or e}")
            return EXIT_FAIL
        done = {k: v for k, v in done.items() if k in {p.id for p in problems}}
        with fh, (trees_fh or nullcontext()):
            try:
                return asyncio.run(run(args, problems, task, out, done, fh, trees_fh))
            except KeyboardInterrupt:
                say(f"interrupted; finished results are in {out}; run the same command to resume")
                return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
