#!/usr/bin/env bash
# Diversity vs volume on the real embedded model (SmolLM2-135M-Instruct, llama.cpp, 2 cores):
# a forest of 4 trees x 1 rollout against one tree x 6 rollouts, at about the same number of
# calls, on examples/arith.jsonl. Results and summaries land in benchmarks/results/local-arith/.
# Needs the local extra. Takes about 30 minutes on 2 cores (first 16 problems).
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/local-arith
mkdir -p "$out"
python -m fot.solve examples/arith.jsonl --trees 4 --rollouts 1 --reward-samples 1 --seed 0 --parallel 1 --limit 16 \
    --out "$out/forest-4x1.jsonl" --trace "$out/forest-4x1.trace.jsonl" --quiet
python -m fot.solve examples/arith.jsonl --trees 1 --rollouts 6 --reward-samples 1 --seed 0 --parallel 1 --limit 16 \
    --out "$out/tree-1x6.jsonl" --trace "$out/tree-1x6.trace.jsonl" --quiet
