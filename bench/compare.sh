#!/bin/sh
# compare.sh — weir against graphile-worker (bench/graphile.sh) in one run on this machine, so that
# the ratios hold whatever else the shared machine is doing: ROUNDS (3) rounds of a 500-task chain
# on each, in turn, then throughput on each (weir's 20,000 independent runs and 20,000-task wide
# DAG; graphile-worker's 20,000 jobs with its defaults and with its batching). Each round starts
# its own PostgreSQL, as runs.sh and graphile.sh do. It ends with the medians and the ratios.
# Usage: sh bench/compare.sh [build/weir]
set -eu
cd "$(dirname "$0")/.."
WEIR=${1:-build/weir}
OUT=$(mktemp /tmp/weir-bench-compare.XXXXXX)
trap 'rm -f "$OUT" "$OUT.run"' EXIT INT TERM
# run WHAT COMMAND... : the command's output, or why it failed
run() {
  what=$1
  shift
  "$@" >"$OUT.run" 2>&1 || { echo "compare: $what failed:" >&2; tail -20 "$OUT.run" >&2; exit 1; }
  cat "$OUT.run"
}
for r in $(seq "${ROUNDS:-3}"); do
  run "weir's chain" env PHASES=chain sh bench/runs.sh "$WEIR" | grep '^chain: .*hand-off' | sed "s/^/round $r weir /" |
    tee -a "$OUT"
  g=$(run "graphile-worker's chain" sh bench/graphile.sh chain)
  case $g in *skipped*) echo "$g"; exit 0 ;; esac
  echo "$g" | sed "s/^/round $r /" | tee -a "$OUT"
done
run "weir's throughput" env PHASES="independent wide" sh bench/runs.sh "$WEIR" |
  grep -E '^(independent|wide): .*tasks/s' | sed 's/^/weir /' | tee -a "$OUT"
run "graphile-worker's throughput" sh bench/graphile.sh "noop batched" | tee -a "$OUT"
[ "$(grep -c -e ' weir chain:' -e '^weir independent:' -e '^weir wide:' -e 'graphile' "$OUT")" = \
  "$((2 * ${ROUNDS:-3} + 4))" ] || { echo "compare: a phase printed no figure:" >&2; cat "$OUT" >&2; exit 1; }

# the figure after WORD on each line that has it
after() { sed -n "s/.* $1 \([0-9.]*\) .*/\1/p"; }
median() { sort -n | awk '{v[NR] = $1} END {printf "%.2f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for w in p50 p99; do
  weir=$(grep ' weir chain:' "$OUT" | after "$w" | median)
  gw=$(grep ' graphile chain:' "$OUT" | after "$w" | median)
  # per round, graphile's figure over weir's; then their median
  ratio=$(for r in $(seq "${ROUNDS:-3}"); do
    a=$(grep "^round $r weir" "$OUT" | after "$w")
    b=$(grep "^round $r graphile" "$OUT" | after "$w")
    awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.2f\n", b / a }'
  done | median)
  echo "summary: chain hand-off $w, median of rounds: weir $weir ms, graphile-worker $gw ms; graphile-worker/weir per round, median: ${ratio}x"
done
tput() { grep "$1" "$OUT" | sed -n 's/.* \([0-9]*\) \(tasks\|jobs\)\/s.*/\1/p'; }
indep=$(tput '^weir independent:')
wide=$(tput '^weir wide:')
plain=$(tput '^graphile noop:')
batched=$(tput '^graphile batched:')
awk -v i="$indep" -v w="$wide" -v p="$plain" -v b="$batched" 'BEGIN {
  printf "summary: throughput, weir independent %d and wide %d tasks/s; graphile-worker %d jobs/s (defaults), %d (batched)\n", i, w, p, b
  if (p > 0 && b > 0) printf "summary: weir/graphile-worker: independent %.2fx and wide %.2fx its defaults, %.2fx and %.2fx its batching\n", i / p, w / p, i / b, w / b
}'
