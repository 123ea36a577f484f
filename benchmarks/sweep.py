"""The recorded entry point for sweeps: the same as `python -m fot.sweep` (see its --help).

Recorded runs (commands in benchmarks/results/README.md):
  python benchmarks/sweep.py ../shared/data/gsm8k/test.jsonl --sim --limit 200 --trees 1,2,4,8 \
      --rollouts 0,1,2,4,8 --out benchmarks/results/sim-gsm8k
"""

import sys

from fot.sweep import main

if __name__ == "__main__":
    sys.exit(main())
