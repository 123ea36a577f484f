#!/usr/bin/env bash
# Issue 10's before/after: the search as it was (commit ab85275, v1) and as it is now, on the same
# problems, seed and backend, measured by benchmarks/search_shape.py (tree depth, branching, dummy
# expansions, accuracy). Writes benchmarks/results/search-before-after/; the fot.sim runs take about
# a minute each, the embedded-model runs about 40-60 minutes each on 2 cores (run in the background;
# resumable: rerun the same command).
#   bash benchmarks/search_before_after.sh sim     # fot.sim (SIMULATED), 200 GSM8K-shaped problems
#   bash benchmarks/search_before_after.sh local   # the embedded SmolLM2-135M, 40 arithmetic problems
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
out=$here/benchmarks/results/search-before-after
before=${FOT_BEFORE_TREE:-/tmp/fot-before}
[ -d "$before" ] || git worktree add -q "$before" ab85275
mkdir -p "$out"
run() {  # run NAME TREE ARGS...: search_shape.py with the engine from TREE
    local name=$1 tree=$2; shift 2
    (cd "$tree" && PYTHONPATH="$tree" python "$here/benchmarks/search_shape.py" "$@" --seed 0 --quiet --out "$out/$name.jsonl")
}
case "${1:-sim}" in
sim)
    head -200 ../shared/data/gsm8k/test.jsonl > /tmp/gsm200.jsonl   # the data stay outside the repo
    for when in before after; do
        tree=$here; [ $when = before ] && tree=$before
        run sim-default-$when "$tree" /tmp/gsm200.jsonl --sim --task gsm8k --trees 4 --rollouts 8 --parallel 8 --concurrency 256
        run sim-noise-$when "$tree" /tmp/gsm200.jsonl --sim --sim-noise --task gsm8k --trees 4 --rollouts 8 --parallel 8 --concurrency 256
    done ;;
local)
    for when in before after; do
        tree=$here; [ $when = before ] && tree=$before
        run local-$when "$tree" "$here/examples/arith.jsonl" --trees 2 --rollouts 3 --reward-samples 1 --parallel 1 --limit 40
    done ;;
esac
python benchmarks/search_shape.py --report $(ls "$out"/*.jsonl | grep -v shapes)
