#!/usr/bin/env bash
# The suite three times in a row (copy A) while a second copy of the suite runs at the same time (copy B),
# on the same cores: docs/reliability.md. Run from a checkout with its venv: bash benchmarks/stress_suite.sh
# (it clones this checkout's HEAD twice into /tmp/stressA and /tmp/stressB; the log is /tmp/stress.log).
set -u
PY="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
rm -rf /tmp/stressA /tmp/stressB /tmp/stress.done /tmp/stress.log
git clone -q "$HERE" /tmp/stressA && git clone -q "$HERE" /tmp/stressB
( cd /tmp/stressB && while [ ! -f /tmp/stress.done ]; do PYTHONPATH=/tmp/stressB $PY -m pytest -q -p no:cacheprovider > /tmp/stressB.last 2>&1; echo "B: $(tail -1 /tmp/stressB.last) load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/stress.log; done ) &
cd /tmp/stressA
for i in 1 2 3; do
  start=$(date +%s)
  PYTHONPATH=/tmp/stressA $PY -m pytest -q -p no:cacheprovider > /tmp/stressA.$i 2>&1
  echo "A run $i: rc=$? $(tail -1 /tmp/stressA.$i) ($(( $(date +%s) - start )) s, load $(cut -d' ' -f1-3 /proc/loadavg))" >> /tmp/stress.log
done
touch /tmp/stress.done
wait
echo finished >> /tmp/stress.log
