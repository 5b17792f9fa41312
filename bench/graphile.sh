#!/bin/sh
# graphile.sh — graphile-worker, the PostgreSQL job queue that issue 3 measures weir against, on
# this machine: a throwaway PostgreSQL like runs.sh's (fsync on, synchronous_commit on) and 4
# worker processes (bench/graphile.js).
#
#   chain    500 jobs in a line, each added once its predecessor's success is written back: the
#            hand-off, from a job's end to its successor's start, from the workers' own clocks
#   noop     20,000 no-op jobs, added beforehand in one transaction, over 4 processes x 16
#            concurrent jobs, graphile-worker's defaults: jobs/s from the first start to the last end
#   batched  the same with its batching on (a local queue per process, completions gathered)
#
# Usage: sh bench/graphile.sh [PHASES] (default "chain noop batched"). It needs node and npm and
# installs graphile-worker 0.18.0 with pg 8.23.1 into build/bench-node the first time; where it
# cannot, it says why and exits 0 ("graphile: skipped ...").
set -eu
cd "$(dirname "$0")/.."
PHASES=${1:-chain noop batched}
NODE_DIR=$PWD/build/bench-node
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "graphile: skipped (node and npm are needed: apt-get install nodejs npm)"
  exit 0
fi
if [ ! -d "$NODE_DIR/node_modules/graphile-worker" ]; then
  mkdir -p "$NODE_DIR"
  if ! npm install --prefix "$NODE_DIR" --no-audit --no-fund graphile-worker@0.18.0 pg@8.23.1 \
    >"$NODE_DIR/install.log" 2>&1; then
    echo "graphile: skipped (npm install failed; see $NODE_DIR/install.log)"
    exit 0
  fi
fi
export NODE_PATH="$NODE_DIR/node_modules"
. tests/pg.sh
. bench/db.sh
TMP=$(mktemp -d /tmp/weir-bench-graphile.XXXXXX)
NPIDS=""
cleanup() {
  for p in $NPIDS; do kill -KILL "$p" 2>/dev/null || true; done
  bench_db_stop
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
bench_db gw "$TMP"
export GW_DB="postgres://weir@/gw?host=$PGHOST_DIR&port=$PGPORT_T"
node -e 'require("graphile-worker").runMigrations({ connectionString: process.env.GW_DB })' >/dev/null
q "CREATE TABLE bench_trace (what text, i int, us bigint)"

# start MODE CONCURRENCY : 4 worker processes, once each listens
start() {
  NPIDS=""
  for i in 1 2 3 4; do
    node bench/graphile.js "$1" "$TMP/trace$i" "$2" 500 2>"$TMP/node$i.log" &
    NPIDS="$NPIDS $!"
  done
  i=0
  for p in $NPIDS; do
    i=$((i + 1))
    while [ ! -e "$TMP/trace$i.ready" ]; do
      kill -0 "$p" 2>/dev/null || { echo "graphile: worker $i did not start:" >&2; cat "$TMP/node$i.log" >&2; exit 1; }
      sleep 0.05
    done
  done
}

# finish : once no job has been left for a second, the workers write their traces and stop (it
# gives up after five minutes)
finish() {
  idle=0 polls=0
  while [ $idle -lt 5 ]; do
    if [ "$(poll "SELECT count(*) FROM graphile_worker.jobs")" = 0 ]; then idle=$((idle + 1)); else idle=0; fi
    polls=$((polls + 1))
    [ $polls -lt 1500 ] || { echo "graphile: jobs still left after 5 minutes" >&2; cat "$TMP"/node?.log >&2; exit 1; }
    sleep 0.2
  done
  for p in $NPIDS; do kill -TERM "$p"; done
  for p in $NPIDS; do wait "$p" || true; done
  NPIDS=""
  cat "$TMP"/trace[1-4] >"$TMP/trace.all"
  rm -f "$TMP"/trace[1-4] "$TMP"/trace[1-4].ready
  q "TRUNCATE bench_trace"
  $PSQL -X -q -c "\\copy bench_trace FROM '$TMP/trace.all' WITH (FORMAT text, DELIMITER ' ')" "$DB"
}

for phase in $PHASES; do
  case $phase in
  chain)
    start chain 1
    q "SELECT graphile_worker.add_job('link', json_build_object('i', 1))" >/dev/null
    finish
    q "SELECT 'graphile chain: ' || count(*) || ' jobs; hand-off (a job ends on its worker -> its successor starts) p50 ' ||
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY h) / 1000)::numeric, 2) || ' ms, p99 ' ||
              round((percentile_cont(0.99) WITHIN GROUP (ORDER BY h) / 1000)::numeric, 2) || ' ms'
         FROM (SELECT b.us - a.us AS h FROM bench_trace a JOIN bench_trace b ON b.i = a.i + 1 AND b.what = 'start'
                WHERE a.what = 'done') x"
    ;;
  noop | batched)
    q "SELECT count(graphile_worker.add_job('noop', '{}')) FROM generate_series(1, 20000)" >/dev/null
    start "$phase" 16
    finish
    q "SELECT 'graphile $phase: ' || count(*) FILTER (WHERE what = 'done') || ' jobs, ' ||
              round(count(*) FILTER (WHERE what = 'done') / ((max(us) - min(us)) / 1e6)) || ' jobs/s'
         FROM bench_trace"
    ;;
  *) echo "graphile: no phase $phase (chain, noop, batched)" >&2; exit 2 ;;
  esac
done
