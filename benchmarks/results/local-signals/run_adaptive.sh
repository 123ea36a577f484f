#!/bin/sh
# the adaptive forest with the yesno verifier on the embedded model's server (the one run_sc8.sh started,
# shared: --base-url), the first 30 problems one at a time so the run's pooled evidence builds in order
exec .venv/bin/python -m fot.solve benchmarks/results/local-baselines/arith150.jsonl --base-url "$1" \
    --model smollm2-135m-instruct --method adaptive --verifier yesno --trees 2 --rollouts 1 --reward-samples 1 \
    --eval-max-tokens 96 --samples 8 --seed 0 --parallel 1 --limit 30 --quiet \
    --out benchmarks/results/local-signals/adaptive-yesno.jsonl
