#!/bin/sh
# runs.sh — how fast runs flow: a throwaway PostgreSQL with durable commits (fsync on,
# synchronous_commit on), one scheduler and 4 workers (64 slots each) on this machine, `noop` steps.
#
#   independent  20,000 one-task runs (made beforehand in one transaction), drained by 4 workers
#   wide         one run: a start task, 20,000 parallel tasks, an end task
#   chain        one run of 500 tasks in a line: the hand-off, from a task's end on its worker to
#                its successor's start on a worker, from the workers' own clocks (WEIR_WORKER_TRACE)
#   scale        wide runs of 1,000, 10,000 and 100,000 tasks: tasks/s and the scheduler's peak RSS
#
# Throughput is tasks over the time from the first claim to the last completion (attempts'
# timestamps, the database's clock). "cpu" is the CPU time each kind of process used during the
# phase: PostgreSQL (every backend of the cluster), the scheduler, the 4 workers. The scheduler's
# peak memory is VmHWM from /proc. Usage: sh bench/runs.sh [build/weir]. SCALE_MAX=10000 skips
# the 100,000-task run; SCHED_ARGS adds flags to the scheduler (e.g. --tick 100ms), SLOTS sets the
# workers' slots (64); PHASES picks phases ("independent wide chain scale", the default), as
# bench/compare.sh does.
set -eu
cd "$(dirname "$0")/.."
WEIR=${1:-build/weir}
WEIR=$(cd "$(dirname "$WEIR")" && pwd)/$(basename "$WEIR")
. tests/pg.sh
. bench/db.sh
TMP=$(mktemp -d /tmp/weir-bench-runs.XXXXXX)
WPIDS=""
cleanup() {
  for p in $WPIDS; do kill -TERM "$p" 2>/dev/null || true; done
  [ -n "${SP:-}" ] && kill -TERM "$SP" 2>/dev/null || true
  sleep 0.5
  for p in $WPIDS; do kill -KILL "$p" 2>/dev/null || true; done
  bench_db_stop
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
bench_db bench "$TMP"
"$WEIR" migrate --database "$DB" >/dev/null
# the 100,000-task pipeline needs more than the sandbox's default 64 MiB and 200 M instructions to compile
"$WEIR" scheduler --database "$DB" --listen 127.0.0.1:0 --port-file "$TMP/port" --max-body 64MiB \
  --lua-memory 1GiB --lua-instructions 4000000000 \
  --artifacts "$TMP/artifacts" ${SCHED_ARGS:-} 2>"$TMP/scheduler.log" &
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
  while :; do
    left=$(poll "SELECT count(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = '$1' AND r.state IN ('queued', 'running')")
    case $left in
      0) return ;;
      *[!0-9]*|'') echo "bench: waiting for $1: $left" >&2; exit 1 ;;
    esac
    sleep 0.2
  done
}

# rate PIPELINE : tasks/s from the first claim to the last completion of its runs' attempts
rate() {
  q "SELECT round(count(*) / extract(epoch FROM max(a.finished_at) - min(a.started_at))) || ' tasks/s (' || count(*) ||
            ' tasks in ' || round(extract(epoch FROM max(a.finished_at) - min(a.started_at))::numeric, 2) || ' s)'
     FROM attempts a JOIN tasks t ON t.id = a.task_id JOIN runs r ON r.id = t.run_id JOIN pipelines p ON p.id = r.pipeline_id
     WHERE p.name = '$1'"
}

# CPU seconds used so far by PostgreSQL's processes, the scheduler and the workers
PGPM=$(head -n 1 "$PGTMP/data/postmaster.pid")
ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'; }
cpu_now() { echo "$(ticks $PGPM $(pgrep -P $PGPM)) $(ticks $SP) $(ticks $WPIDS)"; }
# cpu_since "BEFORE" : the CPU each used since BEFORE (a cpu_now), in seconds
cpu_since() {
  set -- $1 $(cpu_now)
  hz=$(getconf CLK_TCK)
  awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" -v e="$5" -v f="$6" -v hz="$hz" \
    'BEGIN { printf "cpu: postgres %.2f s, scheduler %.2f s, workers %.2f s", (d - a) / hz, (e - b) / hz, (f - c) / hz }'
}

# since T0 : seconds from T0 (a date +%s.%N) to now, to two places
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# phase NAME : whether PHASES asks for it
phase() { case " ${PHASES:-independent wide chain scale} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

peak_rss() { awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$SP/status"; }
# the peak from now on: compiling a big pipeline (weir apply, in the scheduler's sandbox) has a
# peak of its own, reported apart from the run's (Linux resets VmHWM on "5" > clear_refs); the
# scheduler gives the compile's memory back on its next tick, so wait for that first
reset_peak() { sleep 0.5; echo 5 >"/proc/$SP/clear_refs" 2>/dev/null || true; }

# settle : VACUUM ANALYZE before each phase after the first, as pgbench does before its runs.
# Each phase is then measured on a settled database, not while autovacuum cleans up after the
# phase before it (the 40,000 tasks of the throughput phases made a 500-task chain's hand-off
# 20-30 % slower and PostgreSQL's CPU during it about 40 % more). The time it took is printed.
settle() {
  [ "$(q "SELECT EXISTS (SELECT FROM runs)")" = t ] || return 0 # the first phase: nothing to settle
  t0=$(date +%s.%N)
  q "VACUUM ANALYZE" >/dev/null
  echo "settle:      VACUUM ANALYZE in $(since "$t0") s"
}

start_workers() {
  for i in 1 2 3 4; do
    WEIR_WORKER_TRACE="$TMP/trace$i" "$WEIR" worker --scheduler "$WEIR_URL" --token "$WK" --slots ${SLOTS:-64} \
      --name "bench-$i" --dir "$TMP/w$i" 2>"$TMP/worker$i.log" &
    WPIDS="$WPIDS $!"
  done
}

echo "== runs: 4 workers x 64 slots, noop steps, durable commits, on $(nproc) cores"

# independent runs, made before the workers start so that they are drained at full speed
if phase independent; then
  cat >"$TMP/single.lua" <<'LUA'
pipeline "single" { max_active_runs = 1000 }
task "only" { step = "noop" }
LUA
  "$WEIR" apply "$TMP/single.lua" >/dev/null
  t0=$(date +%s.%N)
  q "SELECT count(weir_run_create('single', '{}', 'manual', 'bench')) FROM generate_series(1, 20000)" >/dev/null
  echo "independent: 20,000 runs created in $(since "$t0") s (one transaction)"
  start_workers
  c0=$(cpu_now)
  wait_runs single
  echo "independent: $(rate single); runs admitted 1,000 at a time (max_active_runs); $(cpu_since "$c0")"
else
  start_workers
fi

if phase wide; then
  wide wide20k 20000
  settle
  reset_peak
  c0=$(cpu_now)
  "$WEIR" trigger wide20k >/dev/null
  wait_runs wide20k
  echo "wide:        $(rate wide20k), scheduler peak RSS $(peak_rss); $(cpu_since "$c0")"
fi

if phase chain; then
  cat >"$TMP/chain.lua" <<'LUA'
pipeline "chain" {}
local prev
for i = 1, 500 do prev = task(string.format("c%03d", i)) { step = "noop", after = prev } end
LUA
  "$WEIR" apply "$TMP/chain.lua" >/dev/null
  settle
  c0=$(cpu_now)
  "$WEIR" trigger chain >/dev/null
  wait_runs chain
  cat "$TMP"/trace? >"$TMP/trace.all"
  q "CREATE TABLE bench_trace (what text, task_id bigint, attempt int, us bigint)"
  $PSQL -X -q -c "\\copy bench_trace FROM '$TMP/trace.all' WITH (FORMAT text, DELIMITER ' ')" "$DB"
  q "SELECT 'chain:       500 tasks in ' || (SELECT round(extract(epoch FROM r.finished_at - r.started_at)::numeric, 2)
              FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'chain') ||
            ' s; hand-off (a task ends on its worker -> its successor starts on a worker) p50 ' ||
            round((percentile_cont(0.5) WITHIN GROUP (ORDER BY h) / 1000)::numeric, 2) || ' ms, p99 ' ||
            round((percentile_cont(0.99) WITHIN GROUP (ORDER BY h) / 1000)::numeric, 2) || ' ms, max ' ||
            round((max(h) / 1000.0)::numeric, 2) || ' ms'
       FROM (SELECT b.us - a.us AS h FROM task_edges e JOIN tasks t ON t.id = e.downstream_id
               JOIN runs r ON r.id = t.run_id JOIN pipelines p ON p.id = r.pipeline_id AND p.name = 'chain'
               JOIN bench_trace a ON a.task_id = e.upstream_id AND a.what = 'done'
               JOIN bench_trace b ON b.task_id = e.downstream_id AND b.what = 'start') x"
  echo "chain:       $(cpu_since "$c0")"
fi

for n in 1000 10000 100000; do
  phase scale || continue
  [ "$n" -gt "${SCALE_MAX:-100000}" ] && continue
  reset_peak
  wide "w$n" "$n"
  compiled=$(peak_rss)
  settle
  reset_peak
  c0=$(cpu_now)
  "$WEIR" trigger "w$n" >/dev/null
  wait_runs "w$n"
  echo "scale $n: $(rate "w$n"), scheduler peak RSS $(peak_rss) (applying it: $compiled); $(cpu_since "$c0")"
done
txs=$(curl -s "$WEIR_URL/metrics" | awk '/^weir_batch_transactions_total/ {print $2}')
ops=$(curl -s "$WEIR_URL/metrics" | awk '/^weir_batch_operations_total/ {print $2}')
echo "group commit: $txs transactions carried $ops statements (each completion statement carries every completion of its loop turn)"
