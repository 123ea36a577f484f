#!/bin/sh
# Session of 2026-12-02 (second): the online methods run for real on the embedded model, each fot.solve
# starting its own llama.cpp server (SmolLM2-135M, 8 slots, 1 thread), the 150 problems of arith150 in file
# order, seed 0, resumable (--out). Usage: run_live.sh deepconf|adaptive|esc|bon-yesno|forest-yesno|forest-constrained
# The two forest runs share one server started apart (`python -m fot.backend.local serve --model GGUF --alias
# smollm2-135m-instruct --port PORT --threads 1 --slots 8`, its URL as $2) and take the first 40 problems only
# (about 4,000 tokens a problem: the whole 150 did not fit the session).
set -e
P=benchmarks/results/local-baselines/arith150.jsonl
D=benchmarks/results/local-signals
case "$1" in
deepconf) exec .venv/bin/python -m fot.solve $P --method deepconf --samples 8 --deepconf-warmup 4 --deepconf-keep 90 \
    --keep-logprobs 5 --seed 0 --parallel 2 --quiet --out $D/deepconf-live.jsonl ;;
adaptive) exec .venv/bin/python -m fot.solve $P --method adaptive --verifier yesno --trees 2 --rollouts 1 \
    --reward-samples 1 --eval-max-tokens 96 --samples 8 --keep-logprobs 5 --seed 0 --parallel 2 --quiet \
    --out $D/adaptive-yesno-live.jsonl ;;
esc) exec .venv/bin/python -m fot.solve $P --method esc --samples 8 --esc-window 2 --keep-logprobs 5 --seed 0 \
    --parallel 2 --quiet --out $D/esc-live.jsonl ;;
bon-yesno) exec .venv/bin/python -m fot.solve $P --method bon --verifier yesno --reward-samples 1 --samples 8 \
    --keep-logprobs 5 --seed 0 --parallel 2 --quiet --out $D/bon8-yesno-live.jsonl ;;
forest-yesno) exec .venv/bin/python -m fot.solve $P --base-url "$2" --model smollm2-135m-instruct --limit 40 --method forest --verifier yesno --trees 2 --rollouts 1 \
    --reward-samples 1 --eval-max-tokens 96 --seed 0 --parallel 2 --quiet --out $D/forest-yesno-live.jsonl ;;
forest-constrained) exec .venv/bin/python -m fot.solve $P --base-url "$2" --model smollm2-135m-instruct --limit 40 --method forest --verifier constrained --constrain grammar \
    --trees 2 --rollouts 1 --reward-samples 1 --eval-max-tokens 96 --seed 0 --parallel 2 --quiet \
    --out $D/forest-constrained-live.jsonl ;;
esac
