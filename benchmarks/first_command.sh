#!/usr/bin/env bash
# The README's first command as a new user runs it: a fresh clone, a fresh venv, install included (issue 22).
# Times the install and the solve separately and records the load average before, between and after.
#
#   bash benchmarks/first_command.sh [BRANCH] [DIR]     # default: the current branch, into a temporary folder
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
branch="${1:-$(git -C "$repo" rev-parse --abbrev-ref HEAD)}"
dir="${2:-$(mktemp -d)/fot}"
git clone -q -b "$branch" "$repo" "$dir"
cd "$dir"
echo "clone of $branch at $(git rev-parse --short HEAD) in $dir"
export FOT_CACHE="$dir/.fot-cache"  # a machine that has never fetched the model (pip's download cache stays warm)
echo "before:  $(uptime)"
t0=$(date +%s.%N)
python3 -m venv .venv && .venv/bin/pip install -q -e '.[local]'
t1=$(date +%s.%N)
echo "installed: $(uptime)"
.venv/bin/python -m fot.solve examples/arith.jsonl --limit 10
t2=$(date +%s.%N)
echo "after:   $(uptime)"
python3 -c "print(f'install {$t1 - $t0:.1f} s, solve {$t2 - $t1:.1f} s, total {$t2 - $t0:.1f} s')"
