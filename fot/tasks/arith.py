"""`python -m fot.tasks.arith --n 40 --seed 0 > problems.jsonl`: write a generated arithmetic set."""

from __future__ import annotations

import argparse
import json
import sys

from .builtin import Arith


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fot.tasks.arith", description=__doc__)
    ap.add_argument("--n", type=int, default=40, help="how many problems")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ops", default="+-*", help="operators to draw from")
    ap.add_argument("--digits", type=int, default=1, help="digits per operand")
    ap.add_argument("--terms", type=int, default=2, help="operands per problem")
    args = ap.parse_args(argv)
    if args.n < 1 or args.digits < 1 or args.terms < 2 or not set(args.ops) <= set("+-*"):
        ap.error("need --n >= 1, --digits >= 1, --terms >= 2 and --ops from '+-*'")
    for row in Arith.generate(args.n, args.seed, args.ops, args.digits, args.terms):
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
