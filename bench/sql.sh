#!/bin/sh
# sql.sh — the hand-off's SQL alone: weir_claim and weir_complete_many driven by PL/pgSQL loops
# (bench/sql_drain.sql) on a throwaway PostgreSQL, no scheduler, no HTTP, no fsync wait, so
# that a change to the state machine's functions can be measured apart from the noise of the
# whole system. A wide run of 5,000 tasks (claims of 64, then their completions), 5,000
# independent one-task runs (max_active_runs 1,000) drained the same way, and a chain of 300
# (each hop completes a task and claims its successor in one transaction).
#
# Usage: sh bench/sql.sh [WEIR [WEIR_B]]. With two binaries, each makes and migrates its own
# databases and the rounds alternate between them (ROUNDS, default 3): compare the medians.
# Prints per binary: wide and independent claim and completion µs per task and the backend's
# CPU µs per task;
# chain hop p50 and p99 µs and CPU µs per hop.
set -eu
cd "$(dirname "$0")/.."
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
A=$(abs "${1:-build/weir}")
B=${2:+$(abs "$2")}
. tests/pg.sh
TMP=$(mktemp -d /tmp/weir-bench-sql.XXXXXX)
trap 'pg_stop; rm -rf "$TMP"' EXIT INT TERM
pg_start

# mkdb NAME WEIR MODE N : a database migrated by WEIR with pipeline "p" (MODE wide or chain) and worker w1
mkdb() {
  pg_createdb "$1"
  db=$(pg_conn "$1")
  "$2" migrate --database "$db" >/dev/null
  "$2" scheduler --database "$db" --listen 127.0.0.1:0 --port-file "$TMP/port.$1" 2>"$TMP/scheduler.$1.log" &
  sp=$!
  while [ ! -s "$TMP/port.$1" ]; do sleep 0.05; done
  if [ "$3" = indep ]; then
    printf 'pipeline "p" { max_active_runs = 1000 }\ntask "only" { step = "noop" }\n'
  elif [ "$3" = wide ]; then
    printf 'pipeline "p" {}\nlocal s = task "start" { step = "noop" }\nlocal items = {}\nfor i = 1, %s do items[i] = i end\nlocal fan = foreach("n", items, function() return { step = "noop", after = s } end)\ntask "end" { step = "noop", after = fan, trigger_rule = "all_done" }\n' "$4"
  else
    printf 'pipeline "p" {}\nlocal prev\nfor i = 1, %s do prev = task(string.format("c%%05d", i)) { step = "noop", after = prev } end\n' "$4"
  fi >"$TMP/p.$1.lua"
  WEIR_URL="http://127.0.0.1:$(cat "$TMP/port.$1")" WEIR_TOKEN=$("$2" token create --role operator --database "$db") \
    "$2" apply "$TMP/p.$1.lua" >/dev/null
  kill "$sp"; wait "$sp" 2>/dev/null || true
  $PSQL -X -q -c "INSERT INTO workers (name, queues, slots) VALUES ('w1', '{default}', 64)" "$db"
}

# drain NAME MODE : one call of the drain; prints its NOTICE's numbers
drain() {
  case $2 in indep) call="drain_wide(5000)" ;; *) call="drain_$2()" ;; esac
  { cat bench/sql_drain.sql; echo "CALL pg_temp.$call;"; } |
    $PSQL -X -q "$(pg_conn "$1")" 2>&1 | sed -n "s/.*NOTICE:  $2 //p"
}

echo "== sql: the hand-off's functions alone (bench/sql_drain.sql), $(nproc) cores"
for bin in A ${B:+B}; do
  eval w=\$$bin
  mkdb "wide$bin" "$w" wide 5000
  mkdb "indep$bin" "$w" indep 1
  mkdb "chain$bin" "$w" chain 300
  : >"$TMP/wide$bin.out"
  : >"$TMP/indep$bin.out"
  : >"$TMP/chain$bin.out"
done
for r in $(seq "${ROUNDS:-3}"); do
  for bin in A ${B:+B}; do
    drain "wide$bin" wide >>"$TMP/wide$bin.out"
    drain "indep$bin" indep >>"$TMP/indep$bin.out"
    drain "chain$bin" chain >>"$TMP/chain$bin.out"
  done
done
med() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for bin in A ${B:+B}; do
  eval w=\$$bin
  c="$TMP/chain$bin.out"
  echo "$w"
  for k in wide indep; do
    f="$TMP/$k$bin.out"
    printf '  %-6s %s tasks; claim %s µs/task, completion %s µs/task, backend CPU %s µs/task (medians of %s)\n' "$k:" \
      "$(head -n 1 "$f" | cut -d' ' -f1)" "$(cut -d' ' -f2 "$f" | med)" "$(cut -d' ' -f3 "$f" | med)" \
      "$(cut -d' ' -f4 "$f" | med)" "$(wc -l <"$f")"
  done
  echo "  chain: $(head -n 1 "$c" | cut -d' ' -f1) hops; hop p50 $(cut -d' ' -f2 "$c" | med) µs, p99 $(cut -d' ' -f3 "$c" | med) µs, backend CPU $(cut -d' ' -f4 "$c" | med) µs/hop (medians of $(wc -l <"$c"))"
done
