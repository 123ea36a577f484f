#!/bin/sh
# sc@8 on the embedded model (SmolLM2-135M, llama.cpp server, 8 slots, 1 thread), keeping every sample's
# token log-probs and top-5 confidences: sc@1..8, the confidence rule, DeepConf-online and ESC replay from it.
exec .venv/bin/python -m fot.solve benchmarks/results/local-baselines/arith150.jsonl --method sc --samples 8 \
    --seed 0 --parallel 2 --keep-logprobs 5 --quiet --out benchmarks/results/local-signals/sc8.jsonl
