"""Seconds of CPU to extract an answer from hostile replies (issue 21, item 7), rerunnable on any checkout.

Each reply is one a backend that ignores max_tokens could send: no readable answer, built so that a
pattern retried from every position does quadratic work. Run with the Python whose `fot` is the tree
to measure (see benchmarks/serve_sigterm.py for a venv that imports another checkout).

    python benchmarks/extraction.py --kb 20 100          # this checkout
    python benchmarks/extraction.py --uncapped --kb 100  # with the caps lifted: the scans alone
"""

from __future__ import annotations

import argparse
import time

from fot.forest import BEST
from fot.tasks import Arith, Game24, Generic, MathTask
from fot.verifiers import parse_score


def replies(n: int) -> dict[str, tuple]:
    g = Game24()
    return {
        "game24 '1+1a' repeated": (g.extract, "1+1a" * (n // 4)),
        "game24 nested parentheses, '= 5'": (g.extract, "(" * (n // 2) + "1" + ")" * (n // 2 - 4) + "= 5"),
        "game24 rule_check '1 1 1 ... = 5'": (lambda t: g.rule_check("4 7 8 8", t), "1 " * (n // 2) + "= 5"),
        "game24 long LaTeX side '= 24'": (g.extract, "\\times " * (n // 7) + "= 24"),
        "arith '1,1,1,...'": (Arith().extract, "1," * (n // 2)),
        "math '\\boxed{' repeated": (MathTask().extract, "\\boxed{" * (n // 7)),
        "generic 'the answer is: x' lines": (Generic().extract, "the answer is: x\n" * (n // 17)),
        "score line 'Score' + spaces + 'x'": (parse_score, "Score" + " " * n + "x"),
        "expert 'best' + spaces + 'x'": (BEST.findall, "best" + " " * n + "x"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", type=int, nargs="+", default=[100], help="reply sizes, thousands of characters")
    ap.add_argument("--uncapped", action="store_true", help="lift tasks.base.MAX_EXAMINED and verifiers.MAX_SCORE_LINE (this tree's caps)")
    args = ap.parse_args()
    if args.uncapped:
        import fot.tasks.base as base
        import fot.verifiers as verifiers

        base.MAX_EXAMINED = verifiers.MAX_SCORE_LINE = 10**12
    for kb in args.kb:
        for name, (f, text) in replies(kb * 1000).items():
            t0 = time.process_time()
            try:
                f(text)
                outcome = ""
            except Exception as e:  # noqa: BLE001 -- a crash is a result too
                outcome = f" ({type(e).__name__})"
            print(f"{kb:4d} KB  {name:38s} {time.process_time() - t0:9.3f} s{outcome}", flush=True)


if __name__ == "__main__":
    main()
