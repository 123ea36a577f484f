"""`python -m fot.sim`: serve the simulated backend (a test double) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..tasks.problems import ProblemFileError, load_problems
from .server import FAULT_KINDS, SimConfig, SimServer
from .solver import SimProfile, normalize_question


def _pair(s: str) -> tuple[float, float]:
    a, b = s.split(",")
    return float(a), float(b)


def _fault(s: str) -> tuple[str, float]:
    kind, _, rate = s.partition("=")
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"unknown fault '{kind}'; known: {', '.join(FAULT_KINDS)}")
    r = float(rate)
    if not 0 <= r <= 1:
        raise argparse.ArgumentTypeError(f"fault rate must be in [0, 1], got {r}")
    return kind, r


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fot.sim", description=(
        "A SIMULATED OpenAI-compatible backend for tests and engine benchmarks. It is a test double "
        "with a solver of known skill, not a model: never report its numbers as a model's."))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--model", default="fot-sim")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--problems", help="problem file with references (JSONL/JSON/CSV); plain arithmetic is computed")
    d = SimProfile()
    ap.add_argument("--p-first", type=float, default=d.p_first)
    ap.add_argument("--p-fix", type=float, default=d.p_fix)
    ap.add_argument("--p-break", type=float, default=d.p_break)
    ap.add_argument("--expert-auroc", type=float, default=d.expert_auroc,
                    help="the expert's skill (AUROC of its judgement of one candidate); default: the self-evaluation's")
    ap.add_argument("--eval-auroc", type=float, default=d.eval_auroc,
                    help="the self-evaluation scores' AUROC against correctness (moves the wrong mean)")
    ap.add_argument("--temp-spread", type=float, default=d.temp_spread)
    ap.add_argument("--temp-cost", type=float, default=d.temp_cost)
    ap.add_argument("--logprob-right", type=float, default=d.logprob_right)
    ap.add_argument("--logprob-wrong", type=float, default=d.logprob_wrong)
    ap.add_argument("--logprob-reply-sd", type=float, default=d.logprob_reply_sd)
    ap.add_argument("--hardness-sd", type=float, default=d.hardness_sd)
    ap.add_argument("--tree-sd", type=float, default=d.tree_sd)
    ap.add_argument("--eval-right", type=_pair, default=d.eval_right, metavar="MEAN,SD")
    ap.add_argument("--eval-wrong", type=_pair, default=d.eval_wrong, metavar="MEAN,SD")
    ap.add_argument("--answer-tokens", type=int, default=d.answer_tokens)
    ap.add_argument("--ttft", type=float, default=0.0, help="seconds to first token")
    ap.add_argument("--decode-tps", type=float, default=float("inf"), help="completion tokens/s per request")
    ap.add_argument("--capacity", type=int, default=None, help="concurrent requests served (default unlimited)")
    ap.add_argument("--fault", type=_fault, action="append", default=[], metavar="KIND=RATE",
                    help=f"inject a fault at a rate; kinds: {', '.join(FAULT_KINDS)}")
    ap.add_argument("--retry-after", type=float, default=0.05)
    ap.add_argument("--hang", type=float, default=3600.0, help="seconds a 'hang' fault lasts")
    ap.add_argument("--ignore-n", action="store_true", help="return one choice whatever n is (like llama-cpp-python's server)")
    ap.add_argument("--usage-one-choice", action="store_true", help="count completion tokens of choice 0 only")
    ap.add_argument("--no-prefix-cache", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problems: dict[str, str] = {}
    if args.problems:
        try:
            problems = {normalize_question(p.question): p.answer for p in load_problems(args.problems)
                        if p.answer is not None}
        except ProblemFileError as e:
            print(f"fot.sim: {e}", file=sys.stderr)
            return 2
    try:
        profile = SimProfile(p_first=args.p_first, p_fix=args.p_fix, p_break=args.p_break,
                             expert_auroc=args.expert_auroc, eval_auroc=args.eval_auroc, temp_spread=args.temp_spread,
                             temp_cost=args.temp_cost, logprob_right=args.logprob_right,
                             logprob_wrong=args.logprob_wrong, logprob_reply_sd=args.logprob_reply_sd,
                             hardness_sd=args.hardness_sd, tree_sd=args.tree_sd, eval_right=args.eval_right,
                             eval_wrong=args.eval_wrong, answer_tokens=args.answer_tokens)
        config = SimConfig(model=args.model, seed=args.seed, profile=profile, problems=problems, ttft_s=args.ttft,
                           decode_tps=args.decode_tps, capacity=args.capacity, faults=dict(args.fault),
                           retry_after_s=args.retry_after, hang_s=args.hang, ignore_n=args.ignore_n,
                           usage_one_choice=args.usage_one_choice, prefix_cache=not args.no_prefix_cache)
    except ValueError as e:
        print(f"fot.sim: {e}", file=sys.stderr)
        return 2

    async def serve() -> None:
        async with SimServer(config, host=args.host, port=args.port) as server:
            print(f"fot.sim: SIMULATED backend (a test double, not a model) serving '{config.model}' at "
                  f"{server.base_url} with {len(problems)} reference problems; Ctrl-C stops it", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"fot.sim: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
