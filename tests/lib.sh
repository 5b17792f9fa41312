# lib.sh — sourced by the shell test suites: pass/fail bookkeeping that ends with
# the line "N passed, N failed", and small helpers for HTTP and SQL checks.
# Suites get WEIR (the binary), and for integration suites PGCONN (a libpq
# conninfo of a freshly created, migrated database) and PSQL (a psql command line).

T_PASS=0
T_FAIL=0
SUITE=${SUITE:-shell}

ok() { T_PASS=$((T_PASS + 1)); echo "ok   $SUITE.$1"; }
not_ok() { T_FAIL=$((T_FAIL + 1)); echo "FAIL $SUITE.$1: $2"; }

# check NAME CONDITION-COMMAND... : passes when the command succeeds.
check() {
  name=$1; shift
  if "$@"; then ok "$name"; else not_ok "$name" "$*"; fi
}

# check_eq NAME GOT EXPECTED
check_eq() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got [$2], expected [$3]"; fi
}

# check_contains NAME HAYSTACK NEEDLE
check_contains() {
  case "$2" in *"$3"*) ok "$1" ;; *) not_ok "$1" "[$2] does not contain [$3]" ;; esac
}

finish() {
  # this file's own temporary files (a suite's scheduler log was shown already if it failed)
  rm -f "$BODY"
  [ -n "${SCHED_DIR:-}" ] && rm -rf "$SCHED_DIR"
  echo "$T_PASS passed, $T_FAIL failed"
  [ "$T_FAIL" -eq 0 ]
}

# sql "SELECT ..." : one value, unaligned, from the suite's database.
sql() { $PSQL -X -A -t -q -c "$1" "$PGCONN"; }

# explained CONN : the SQL on stdin in one session, with auto_explain printing the plan of every
# statement it runs (those inside functions too, as that session plans them); psql's output
explained() {
  { printf '%s\n' "LOAD 'auto_explain';" "SET auto_explain.log_min_duration = 0;" \
      "SET auto_explain.log_nested_statements = on;" "SET auto_explain.log_level = notice;" \
      "SET client_min_messages = notice;"
    cat; } | $PSQL -X -q -v ON_ERROR_STOP=1 "$1" 2>&1
}

# plans_of FILE TEXT : the plans in FILE (explained's output) of the statements whose text has TEXT
plans_of() {
  awk -v x="$2" '/^NOTICE:  duration/ { if (index(b, x)) printf "%s", b; b = "" } { b = b $0 "\n" }
    END { if (index(b, x)) printf "%s", b }' "$1"
}

# whole_scans TABLE... : how many scans in the plans on stdin read one of the tables whole: a
# sequential scan, or an index scan without an index condition (on its line after), which reads
# the whole index
whole_scans() {
  awk -v t="$(echo "$*" | tr ' ' '|')" 'prev { if ($0 !~ /Index Cond/) n++; prev = 0 }
    $0 ~ ("Seq Scan on (" t ") ") { n++ }
    $0 ~ ("Index (Only )?Scan using [a-z_]+ on (" t ") ") { prev = 1 }
    END { print n + 0 }'
}

# start_scheduler [FLAGS...] : migrates the suite's database and starts a scheduler on a
# free port; sets URL and SCHED_PID. The scheduler's log goes to $SCHED_LOG.
start_scheduler() {
  "$WEIR" migrate --database "$PGCONN" >/dev/null || return 1
  SCHED_DIR=$(mktemp -d /tmp/weir-sched.XXXXXX)
  SCHED_LOG=$SCHED_DIR/scheduler.log
  "$WEIR" scheduler --database "$PGCONN" --listen 127.0.0.1:0 --port-file "$SCHED_DIR/port" "$@" \
    >"$SCHED_LOG" 2>&1 &
  SCHED_PID=$!
  i=0
  while [ ! -s "$SCHED_DIR/port" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
  [ -s "$SCHED_DIR/port" ] || { cat "$SCHED_LOG"; return 1; }
  URL="http://127.0.0.1:$(cat "$SCHED_DIR/port")"
  i=0
  until curl -fs "$URL/healthz" >/dev/null 2>&1 || [ $i -ge 100 ]; do sleep 0.05; i=$((i + 1)); done
  export URL SCHED_PID
}

# stop_scheduler : SIGTERM, and a check that it exited cleanly (ASan reports surface here).
stop_scheduler() {
  kill -TERM "$SCHED_PID" 2>/dev/null
  wait "$SCHED_PID"
  rc=$?
  if [ $rc -ne 0 ]; then echo "--- scheduler log"; cat "$SCHED_LOG"; fi
  return $rc
}

# status METHOD PATH [CURL ARGS...] : prints the HTTP status; the body goes to $BODY.
BODY=$(mktemp /tmp/weir-body.XXXXXX)
status() {
  m=$1; p=$2; shift 2
  curl -s -o "$BODY" -w '%{http_code}' -X "$m" "$@" "$URL$p"
}

# ---- for suites that run pipelines (they set TMP, WEIR_URL and WEIR_TOKEN) ----

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# wait_for SECONDS SQL EXPECTED : polls until the query answers EXPECTED; prints the last answer.
wait_for() {
  end=$(($(now_ms) + $1 * 1000))
  while :; do
    v=$(sql "$2") || break
    [ "$v" = "$3" ] && break
    [ "$(now_ms)" -ge $end ] && break
    sleep 0.05
  done
  echo "$v"
}

# wait_file SECONDS FILE : until FILE exists and is not empty.
wait_file() {
  end=$(($(now_ms) + $1 * 1000))
  until [ -s "$2" ]; do [ "$(now_ms)" -ge $end ] && return 1; sleep 0.05; done
}

# wait_run SECONDS RUN : until the run has ended; prints its state.
wait_run() {
  [ -n "$2" ] || { echo "no run"; return; }
  wait_for "$1" "SELECT state IN ('succeeded', 'failed', 'cancelled') FROM runs WHERE id = $2" t >/dev/null
  rstate "$2"
}

# apply NAME : applies the pipeline whose Lua source is on stdin (kept as $TMP/NAME.lua).
apply() {
  cat >"$TMP/$1.lua"
  "$WEIR" apply "$TMP/$1.lua" >"$TMP/$1.apply" 2>&1 || { cat "$TMP/$1.apply"; return 1; }
}

# trigger PIPELINE : starts a run with the CLI; prints its id.
trigger() { "$WEIR" trigger "$1" -o json | jq -r .run; }

rstate() { sql "SELECT state FROM runs WHERE id = $1"; }

# start_stack LEASE : a scheduler with that lease, a 100 ms tick and its artifacts under $TMP;
# an operator token OP and a worker token WORK; WEIR_URL, WEIR_TOKEN (OP) and WEIR_HOME exported
# for the CLI. A scheduler that does not start ends the suite.
start_stack() {
  start_scheduler --lease "$1" --tick 100ms --artifacts "$TMP/artifacts" || { not_ok start "no scheduler"; finish; exit 1; }
  OP=$("$WEIR" token create --role operator --name ops --database "$PGCONN")
  WORK=$("$WEIR" token create --role worker --name workers --database "$PGCONN")
  export WEIR_URL="$URL" WEIR_TOKEN="$OP" WEIR_HOME="$TMP/home"
}

# ml_stack NAME : for the suites that run the ML plugin on scikit-learn's data: PLUGINS (the
# build's plugin directory) and DATA (the datasets, WEIR_SKLEARN_DATA to override) set, the
# suite ended when breast_cancer.csv is missing, then start_stack 5s and a 4-slot worker NAME
# loading the plugins (its log $TMP/worker.log, its pid WPID).
ml_stack() {
  PLUGINS=$(cd "$(dirname "$WEIR")/plugins" && pwd)
  DATA=${WEIR_SKLEARN_DATA:-/usr/lib/python3/dist-packages/sklearn/datasets/data}
  if [ ! -f "$DATA/breast_cancer.csv" ]; then
    not_ok data "$DATA/breast_cancer.csv is missing: apt-get install python3-sklearn (make deps)"
    finish; exit 1
  fi
  start_stack 5s
  "$WEIR" worker --scheduler "$URL" --token "$WORK" --slots 4 --name "$1" --dir "$TMP/w" --plugin-dir "$PLUGINS" \
    >"$TMP/worker.log" 2>&1 &
  WPID=$!
}
