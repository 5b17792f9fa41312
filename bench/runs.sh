#!/bin/sh
# runs.sh — how fast runs flow: a throwaway PostgreSQL with durable commits (fsync on,
# synchronous_commit on), one scheduler and 4 workers on this machine, `noop` steps.
#
#   independent  20,000 one-task runs (made beforehand in one transaction), drained by 4 workers
#   wide         one run: a start task, 20,000 parallel tasks, an end task
#   chain        one run of 500 tasks in a line: per task, claim-to-completion as the database saw
#                it (covers the hand-off: the successor is leased in its predecessor's completion
#                transaction, so a task's cycle = commit + answer + worker start + noop + report)
#   scale        wide runs of 1,000, 10,000 and 100,000 tasks: tasks/s and the scheduler's peak RSS
#
# Figures are from the database's own timestamps (transaction start times); the scheduler's peak
# memory is VmHWM from /proc. Usage: sh bench/runs.sh [build/weir]. SCALE_MAX=10000 skips the
# 100,000-task run.
set -eu
cd "$(dirname "$0")/.."
WEIR=${1:-build/weir}
WEIR=$(cd "$(dirname "$WEIR")" && pwd)/$(basename "$WEIR")
. tests/pg.sh
TMP=$(mktemp -d /tmp/weir-bench-runs.XXXXXX)
WPIDS=""
cleanup() {
  for p in $WPIDS; do kill -TERM "$p" 2>/dev/null || true; done
  [ -n "${SP:-}" ] && kill -TERM "$SP" 2>/dev/null || true
  sleep 0.5
  for p in $WPIDS; do kill -KILL "$p" 2>/dev/null || true; done
  pg_stop
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
pg_start
pg_createdb bench
DB=$(pg_conn bench)
q() { $PSQL -X -A -t -q -c "$1" "$DB"; }
"$WEIR" migrate --database "$DB" >/dev/null
"$WEIR" scheduler --database "$DB" --listen 127.0.0.1:0 --port-file "$TMP/port" --max-body 64MiB \
  --artifacts "$TMP/artifacts" 2>"$TMP/scheduler.log" &
SP=$!
while [ ! -s "$TMP/port" ]; do sleep 0.05; done
export WEIR_URL="http://127.0.0.1:$(cat "$TMP/port")"
export WEIR_TOKEN=$("$WEIR" token create --role operator --database "$DB")
WK=$("$WEIR" token create --role worker --database "$DB")

wide() {  # wide NAME N
  cat >"$TMP/$1.lua" <<LUA
pipeline "$1" { max_active_runs = 1000 }
local s = task "start" { step = "noop" }
local items = {}
for i = 1, $2 do items[i] = i end
local fan = foreach("n", items, function() return { step = "noop", after = s } end)
task "end" { step = "noop", after = fan, trigger_rule = "all_done" }
LUA
  "$WEIR" apply "$TMP/$1.lua" >/dev/null
}

# wait_runs PIPELINE : until no run of it is queued or running
wait_runs() {
  while [ "$(q "SELECT count(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = '$1' AND r.state IN ('queued', 'running')")" != 0 ]; do
    sleep 0.2
  done
}

# rate PIPELINE TASKS : tasks/s between the first start and the last finish of its runs
rate() {
  q "SELECT round($2 / extract(epoch FROM max(finished_at) - min(started_at))) || ' tasks/s (' ||
            round(extract(epoch FROM max(finished_at) - min(started_at))::numeric, 2) || ' s)'
     FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = '$1'"
}

peak_rss() { awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$SP/status"; }

start_workers() {
  for i in 1 2 3 4; do
    "$WEIR" worker --scheduler "$WEIR_URL" --token "$WK" --slots 64 --name "bench-$i" --dir "$TMP/w$i" \
      2>"$TMP/worker$i.log" &
    WPIDS="$WPIDS $!"
  done
}

echo "== runs: 4 workers x 64 slots, noop steps, durable commits, on $(nproc) cores"

# independent runs, made before the workers start so that they are drained at full speed
cat >"$TMP/single.lua" <<'LUA'
pipeline "single" { max_active_runs = 1000 }
task "only" { step = "noop" }
LUA
"$WEIR" apply "$TMP/single.lua" >/dev/null
t0=$(date +%s.%N)
q "SELECT count(weir_run_create('single', '{}', 'manual', 'bench')) FROM generate_series(1, 20000)" >/dev/null
echo "independent: 20,000 runs created in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s (one transaction)"
start_workers
wait_runs single
echo "independent: $(rate single 20000); runs admitted 1,000 at a time (max_active_runs)"

wide wide20k 20000
"$WEIR" trigger wide20k >/dev/null
wait_runs wide20k
echo "wide:        $(rate wide20k 20002), scheduler peak RSS so far $(peak_rss)"

cat >"$TMP/chain.lua" <<'LUA'
pipeline "chain" {}
local prev
for i = 1, 500 do prev = task(string.format("c%03d", i)) { step = "noop", after = prev } end
LUA
"$WEIR" apply "$TMP/chain.lua" >/dev/null
"$WEIR" trigger chain >/dev/null
wait_runs chain
q "SELECT 'chain:       500 tasks in ' || round(extract(epoch FROM r.finished_at - r.started_at)::numeric, 2) ||
          ' s; per task claim-to-completion p50 ' ||
          round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.finished_at - a.started_at)) * 1000)::numeric, 2) ||
          ' ms, p99 ' ||
          round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM a.finished_at - a.started_at)) * 1000)::numeric, 2) ||
          ' ms'
     FROM runs r JOIN pipelines p ON p.id = r.pipeline_id JOIN tasks t ON t.run_id = r.id
     JOIN attempts a ON a.task_id = t.id WHERE p.name = 'chain' GROUP BY r.id"

for n in 1000 10000 ${SCALE_MAX:-100000}; do
  [ "$n" -gt "${SCALE_MAX:-100000}" ] && continue
  wide "w$n" "$n"
  "$WEIR" trigger "w$n" >/dev/null
  wait_runs "w$n"
  echo "scale $n:   $(rate "w$n" $((n + 2))), scheduler peak RSS $(peak_rss)"
done
txs=$(curl -s "$WEIR_URL/metrics" | awk '/^weir_batch_transactions_total/ {print $2}')
ops=$(curl -s "$WEIR_URL/metrics" | awk '/^weir_batch_operations_total/ {print $2}')
echo "group commit: $txs transactions carried $ops statements (each completion statement carries every completion of its loop turn)"
