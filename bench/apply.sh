#!/bin/sh
# apply.sh — time to apply a 10,000-task pipeline to a real scheduler on a
# throwaway PostgreSQL (durable commits): the first apply (compile in the
# scheduler's sandbox + store the version) and a re-apply (compile + no-op).
# Prints medians of several runs. Usage: sh bench/apply.sh [build/weir]
set -eu
cd "$(dirname "$0")/.."
WEIR=${1:-build/weir}
. tests/pg.sh
RUNS=${RUNS:-5}
TMP=$(mktemp -d /tmp/weir-bench.XXXXXX)
trap 'kill $SP 2>/dev/null; pg_stop; rm -rf "$TMP"' EXIT INT TERM
pg_start
pg_createdb bench
DB=$(pg_conn bench)
"$WEIR" migrate --database "$DB" >/dev/null
"$WEIR" scheduler --database "$DB" --listen 127.0.0.1:0 --port-file "$TMP/port" --max-body 64MiB 2>"$TMP/log" &
SP=$!
while [ ! -s "$TMP/port" ]; do sleep 0.05; done
export WEIR_URL="http://127.0.0.1:$(cat "$TMP/port")"
export WEIR_TOKEN=$("$WEIR" token create --role operator --database "$DB")

# A layered DAG: 100 layers of 100 tasks, each depending on one task of the layer before.
gen() {
  cat <<LUA
pipeline "$1" { params = { seed = param.int(0) } }
local prev = {}
for layer = 1, 100 do
  local cur = {}
  for i = 1, 100 do
    local up = prev[i]
    cur[i] = task(string.format("t%03d-%03d", layer, i)) {
      step = "noop", after = up and { up } or nil, priority = i % 7,
    }
  end
  prev = cur
end
LUA
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.1f\n", (e - s) / 1e6 }'; }

: >"$TMP/first"
: >"$TMP/again"
for r in $(seq 1 "$RUNS"); do
  gen "big$r" >"$TMP/big.lua"
  s=$(date +%s%N); "$WEIR" apply "$TMP/big.lua" >/dev/null; e=$(date +%s%N)
  ms "$s" "$e" >>"$TMP/first"
  s=$(date +%s%N); "$WEIR" apply "$TMP/big.lua" >/dev/null; e=$(date +%s%N)
  ms "$s" "$e" >>"$TMP/again"
done
echo "apply 10,000-task pipeline, new version:  median $(median <"$TMP/first") ms over $RUNS runs (weir apply end to end)"
echo "apply 10,000-task pipeline, unchanged:    median $(median <"$TMP/again") ms over $RUNS runs"
