# e2e.sh — end to end with real processes only: a real PostgreSQL, the real `weir scheduler`,
# two real `weir worker`s (each with its own --dir and queue) and the real CLI. Pipelines are Lua
# files of shell steps, applied with `weir apply`; every scenario is checked against what the
# database recorded (tasks, attempts, events): each task completed exactly once, none lost.
#
#   1 a diamond DAG, in order          6 a gate that rejects: downstream skipped, reason shown
#   2 a fan-out of 100 and a fan-in    7 an approval that lets the run go on
#   3 success on the third attempt     8 artifacts from one worker to the other, verified
#   4 a timeout kills the step         9 logs read back and followed (-f)
#   5 a cancel kills the step         10 reliability: a worker killed mid-step and right after
#                                        its claim, stale and repeated reports, the scheduler
#                                        killed and restarted, its database connection cut
#
# Workers: w1 serves queues default and q1, w2 default and q2. Both take the scenarios' default
# tasks; q1/q2 pin a task to one of them. The scheduler runs with a 2 s lease, so a dead
# worker's attempt is requeued within about 2 s.
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-e2e.XXXXXX)
SHARED=$TMP/shared
mkdir -p "$SHARED"
export SHARED
# Workers are started (and restarted) over half a minute: a private copy of the binary keeps a
# rebuild in the checkout meanwhile ("Permission denied" while the linker writes it) out of the run.
cp "$WEIR" "$TMP/weir" && WEIR=$TMP/weir
LEASE=2s
TICK=100ms

cleanup() {
  for p in ${W1_PID:-} ${W2_PID:-}; do kill -KILL "$p" 2>/dev/null; done
  [ -n "${SCHED_PID:-}" ] && kill -KILL "$SCHED_PID" 2>/dev/null
  # the step orphaned by the worker killed in 10a, if the suite stopped before it was killed
  [ -f "$SHARED/victim.pid" ] && kill -KILL "$(cat "$SHARED/victim.pid")" 2>/dev/null
  [ -n "${PGMAINT:-}" ] && [ -n "${DBNAME:-}" ] &&
    $PSQL -X -q -c "ALTER DATABASE \"$DBNAME\" ALLOW_CONNECTIONS true" "$PGMAINT" >/dev/null 2>&1
  [ -n "${E2E_KEEP:-}" ] && { echo "kept $TMP $SCHED_DIR"; return; }
  rm -rf "$TMP" "$BODY" ${SCHED_DIR:+"$SCHED_DIR"}
}
trap cleanup EXIT

start_scheduler --lease $LEASE --tick $TICK --artifacts "$TMP/artifacts" \
  || { not_ok start "scheduler did not start"; finish; exit 1; }
PORT=${URL##*:}
DBNAME=$(sql "SELECT current_database()")
PGMAINT=${PGMAINT:-$(echo "$PGCONN" | sed "s/dbname=[^ ]*/dbname=postgres/")}
OP=$("$WEIR" token create --role operator --name ops --database "$PGCONN")
WORK=$("$WEIR" token create --role worker --name workers --database "$PGCONN")
export WEIR_URL="$URL" WEIR_TOKEN="$OP" WEIR_HOME="$TMP/home"

# --- helpers -------------------------------------------------------------------------------------


# start_worker NAME QUEUES : starts a worker (its own --dir); sets W1_PID/W1_JOB or W2_PID/W2_JOB.
# w2 keeps its artifact cache under 200KiB (--cache-max): one 300 KB input at a time.
# A wrapper subshell waits for it and keeps its exit status in NAME.rc, so that a worker killed
# on purpose does not make bash report "Killed" in the suite's output.
start_worker() {
  rm -f "$TMP/$1.pid" "$TMP/$1.rc"
  ( SHARED=$SHARED "$WEIR" worker --scheduler "$URL" --token "$WORK" --slots 4 --name "$1" \
      --label "queue=$2" --dir "$TMP/$1" --kill-grace 1s $( [ "$1" = w2 ] && echo --cache-max 200KiB ) \
      >>"$TMP/$1.log" 2>&1 &
    echo $! >"$TMP/$1.pid"
    wait $!
    echo $? >"$TMP/$1.rc" ) 2>/dev/null &
  job=$!
  wait_file 10 "$TMP/$1.pid"
  case $1 in
    w1) W1_PID=$(cat "$TMP/w1.pid") W1_JOB=$job ;;
    w2) W2_PID=$(cat "$TMP/w2.pid") W2_JOB=$job ;;
  esac
}
# worker_rc NAME : waits (at most 30 s) for the worker to exit; prints its exit status.
worker_rc() { wait_file 30 "$TMP/$1.rc" && cat "$TMP/$1.rc"; }

# restart_worker NAME : starts a worker again after it was killed; waits until both are claiming.
restart_worker() {
  n0=$(sql "SELECT count(*) FROM workers WHERE name = '$1'")
  start_worker "$1" "default,q${1#w}"
  wait_for 15 "SELECT count(*) > $n0 FROM workers WHERE name = '$1'" t >/dev/null
  wait_claims 2 || echo "restart_worker $1: no claim" >&2
  W1_ID=$(sql "SELECT max(id) FROM workers WHERE name = 'w1'")
  W2_ID=$(sql "SELECT max(id) FROM workers WHERE name = 'w2'")
}

# wait_claims N : until the scheduler holds exactly N open claims (the workers are registered,
# idle, and each holds one claim: a newer claim of a worker answers its older one, even one whose
# statement was in a batch at the time — fixed in 445ec46 after this suite caught it).
wait_claims() {
  end=$(($(now_ms) + 15000))
  until curl -s "$URL/metrics" | grep -qx "weir_claims_waiting $1"; do
    [ "$(now_ms)" -ge $end ] && { curl -s "$URL/metrics" | grep '^weir_claims_waiting' >&2; return 1; }
    sleep 0.05
  done
}


# apply_steps NAME DESCRIPTION SECONDS : 16 parallel steps of that many seconds, then "last".
apply_steps() {
  apply "$1" <<EOF2
pipeline "$1" { description = "$2" }
local items = {} for i = 1, 16 do items[i] = i end
local steps = foreach("step", items, function(i) return { exec = "sleep $3; echo step " .. i } end)
task "last" { after = steps, exec = "echo last" }
EOF2
}

tstate() { sql "SELECT state FROM tasks WHERE run_id = $1 AND name = '$2'"; }
tid() { sql "SELECT id FROM tasks WHERE run_id = $1 AND name = '$2'"; }
# attempts RUN TASK : the states of the task's attempts, in order.
attempts() {
  sql "SELECT string_agg(a.state, ' ' ORDER BY a.number) FROM attempts a JOIN tasks t ON t.id = a.task_id
       WHERE t.run_id = $1 AND t.name = '$2'"
}
# worker_of RUN TASK N : the name of the worker that ran attempt N.
worker_of() {
  sql "SELECT w.name FROM attempts a JOIN tasks t ON t.id = a.task_id JOIN workers w ON w.id = a.worker_id
       WHERE t.run_id = $1 AND t.name = '$2' AND a.number = $3"
}

# once RUN : the run's bookkeeping, for "every task completed exactly once, none lost":
#   tasks=N        tasks of the run (= the run's tasks_total)
#   final=N        tasks in a final state (succeeded, failed, skipped, cancelled, blessed, rejected)
#   succeeded=N    tasks that succeeded
#   multi=N        worker tasks whose number of succeeded attempts is not 1 if the task
#                  succeeded, 0 otherwise (a task completed twice, or success without an attempt)
#   events=N       tasks without exactly one event into their final state
#   running=N      attempts still running
#   done=N total=N the run's tasks_done and tasks_total counters
#   run_events=N   events that took the run into its final state
once() {
  sql "WITH t AS (SELECT id, kind, state FROM tasks WHERE run_id = $1),
        sa AS (SELECT task_id, count(*) FILTER (WHERE state = 'succeeded') AS s,
                      count(*) FILTER (WHERE state = 'running') AS r
                 FROM attempts WHERE task_id IN (SELECT id FROM t) GROUP BY task_id),
        ev AS (SELECT e.task_id, count(*) AS n FROM events e JOIN t ON t.id = e.task_id
                WHERE e.kind = 'task.state' AND e.to_state = t.state GROUP BY e.task_id)
       SELECT 'tasks=' || count(*)
         || ' final=' || count(*) FILTER (WHERE t.state IN ('succeeded', 'failed', 'skipped', 'cancelled', 'blessed', 'rejected'))
         || ' succeeded=' || count(*) FILTER (WHERE t.state = 'succeeded')
         || ' multi=' || count(*) FILTER (WHERE t.kind = 'task'
                           AND coalesce(sa.s, 0) <> CASE WHEN t.state = 'succeeded' THEN 1 ELSE 0 END)
         || ' events=' || count(*) FILTER (WHERE coalesce(ev.n, 0) <> 1)
         || ' running=' || coalesce(sum(sa.r), 0)
         || ' done=' || (SELECT tasks_done FROM runs WHERE id = $1)
         || ' total=' || (SELECT tasks_total FROM runs WHERE id = $1)
         || ' run_events=' || (SELECT count(*) FROM events e JOIN runs r ON r.id = e.run_id
                               WHERE r.id = $1 AND e.kind = 'run.state' AND e.to_state = r.state)
         FROM t LEFT JOIN sa ON sa.task_id = t.id LEFT JOIN ev ON ev.task_id = t.id"
}
# once_ok N SUCCEEDED : what once prints for a finished run of N tasks, SUCCEEDED of them succeeded.
once_ok() { echo "tasks=$1 final=$1 succeeded=$2 multi=0 events=0 running=0 done=$1 total=$1 run_events=1"; }

# alive PID : the process exists and is not a zombie (an orphan's zombie may stay unreaped here).
alive() { st=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
# group_alive PGID : some process of the group is alive.
group_alive() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'; }
# wait_gone MS PGID : until no process of the group is alive; prints how long it took (ms), or "alive".
wait_gone() {
  t0=$(now_ms)
  end=$((t0 + $1))
  while group_alive "$2"; do [ "$(now_ms)" -ge $end ] && { echo alive; return; }; sleep 0.02; done
  echo $(($(now_ms) - t0))
}

# wk METHOD PATH [CURL ARGS...] : as a worker (the workers' token); the status, body in $BODY.
wk() { m=$1; p=$2; shift 2; status "$m" "$p" -H "Authorization: Bearer $WORK" "$@"; }

# snapshot : what refused or repeated reports must leave alone.
snapshot() {
  sql "SELECT (SELECT string_agg(id || ':' || state || ':' || attempt || ':' || failures || ':' || lost, ',' ORDER BY id) FROM tasks)
    || '|' || (SELECT string_agg(task_id || '.' || number || ':' || state || ':' || log_bytes, ',' ORDER BY task_id, number) FROM attempts)
    || '|' || (SELECT count(*) FROM events) || '|' || (SELECT count(*) FROM attempt_logs)
    || '|' || (SELECT string_agg(id || ':' || state || ':' || tasks_done, ',' ORDER BY id) FROM runs)"
}

# --- workers -------------------------------------------------------------------------------------

start_worker w1 default,q1
start_worker w2 default,q2
check workers_registered wait_claims 2
W1_ID=$(sql "SELECT id FROM workers WHERE name = 'w1'")
W2_ID=$(sql "SELECT id FROM workers WHERE name = 'w2'")

# --- pipelines -----------------------------------------------------------------------------------

apply diamond <<'EOF' || not_ok apply_diamond "apply failed"
pipeline "diamond" { description = "a -> b, c -> d" }
local a = task "a" { exec = "sleep 0.1; echo a" }
local b = task "b" { after = a, exec = "sleep 0.3; touch $SHARED/b.done" }
local c = task "c" { after = a, exec = "sleep 0.2; touch $SHARED/c.done" }
task "d" { after = { b, c }, exec = "test -f $SHARED/b.done && test -f $SHARED/c.done && echo both there" }
EOF

apply fan <<'EOF' || not_ok apply_fan "apply failed"
pipeline "fan" { description = "100 tasks, then one that gathers them" }
local items = {} for i = 1, 100 do items[i] = i end
local fan = foreach("fan", items, function(i)
  return { exec = "sleep 0.05; echo " .. i .. " >> $SHARED/fan.log" }
end)
task "gather" { after = fan, exec = "n=$(wc -l < $SHARED/fan.log); echo gathered $n; test $n -eq 100" }
EOF

apply flaky <<'EOF' || not_ok apply_flaky "apply failed"
pipeline "flaky" { description = "fails twice, then succeeds" }
task "flaky" {
  retries = { max = 3, backoff = "200ms", factor = 1, jitter = false },
  exec = "n=$(cat $SHARED/flaky.count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > $SHARED/flaky.count; "
      .. "echo attempt $WEIR_ATTEMPT count $n; test $n -ge 3 || { echo not yet >&2; exit 7; }",
}
EOF

apply slow <<'EOF' || not_ok apply_slow "apply failed"
pipeline "slow" { description = "a step that outlives its timeout" }
task "slow" { timeout = "1s",
  exec = "sleep 30 & echo $! > $SHARED/slow.pid; cut -d' ' -f5 /proc/self/stat > $SHARED/slow.pgid; wait" }
EOF

apply gated <<'EOF' || not_ok apply_gated "apply failed"
pipeline "gated" { description = "a gate that rejects a weak model" }
local eval = task "evaluate" { exec = "echo '{\"accuracy\": 0.5, \"loss\": 0.9}' > $WEIR_METRICS_FILE" }
local bless = gate "bless" { metrics = eval, thresholds = { accuracy = { min = 0.8 } } }
task "deploy" { after = bless, exec = "echo deployed; touch $SHARED/deployed" }
EOF

apply signed <<'EOF' || not_ok apply_signed "apply failed"
pipeline "signed" { description = "waits for a person" }
local prep = task "prep" { exec = "echo prepared" }
local ok = approval "sign-off" { after = prep, message = "ship run ${run.id}?" }
task "ship" { after = ok, exec = "echo shipped" }
EOF

apply handoff <<'EOF' || not_ok apply_handoff "apply failed"
pipeline "handoff" { description = "an artifact made on w1 (queue q1), checked on w2 (queue q2)" }
local make = task "make" {
  resources = { queue = "q1" },
  outputs = { "blob", "digest" },
  exec = "head -c 300000 /dev/urandom > $WEIR_OUTPUT_DIR/blob.bin; "
      .. "sha256sum $WEIR_OUTPUT_DIR/blob.bin | cut -c1-64 > $WEIR_OUTPUT_DIR/digest.txt; cat $WEIR_OUTPUT_DIR/digest.txt",
}
task "check" {
  resources = { queue = "q2" },
  outputs = { "seen" },
  exec = { "sh", "-c", "got=$(sha256sum < $1 | cut -c1-64); want=$(cat $2); echo got $got; echo want $want; "
        .. "test \"$got\" = \"$want\" && echo $got > $WEIR_OUTPUT_DIR/seen.txt && wc -c < $1",
           "check", make.outputs.blob, make.outputs.digest },
}
EOF

apply chatty <<'EOF' || not_ok apply_chatty "apply failed"
pipeline "chatty" { description = "prints slowly, for logs -f" }
task "chatty" { exec = "sleep 0.5; for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.2; done" }
EOF

apply long <<'EOF' || not_ok apply_long "apply failed"
pipeline "long" { description = "cancelled mid-step" }
local long = task "long" { exec = "sleep 30 & echo $! > $SHARED/long.pid; wait" }
task "after-long" { after = long, exec = "echo never" }
EOF

# --- 1-8: independent runs at once ----------------------------------------------------------------

R_DIAMOND=$(trigger diamond)
R_FAN=$(trigger fan)
R_FLAKY=$(trigger flaky)
R_SLOW=$(trigger slow)
R_GATED=$(trigger gated)
R_SIGNED=$(trigger signed)
R_HANDOFF=$(trigger handoff)
check triggered test -n "$R_DIAMOND" -a -n "$R_FAN" -a -n "$R_FLAKY" -a -n "$R_SLOW" -a -n "$R_GATED" \
  -a -n "$R_SIGNED" -a -n "$R_HANDOFF"

# 1. diamond
check_eq diamond_succeeded "$(wait_run 30 "$R_DIAMOND")" succeeded
check_eq diamond_once "$(once "$R_DIAMOND")" "$(once_ok 4 4)"
# attempt times (database clock): b and c start after a ends, d after both b and c end
check_eq diamond_b_c_after_a "$(sql "SELECT bool_and(x.started_at >= y.finished_at) FROM attempts x JOIN tasks tx ON tx.id = x.task_id,
  attempts y JOIN tasks ty ON ty.id = y.task_id
  WHERE tx.run_id = $R_DIAMOND AND ty.run_id = $R_DIAMOND AND tx.name IN ('b', 'c') AND ty.name = 'a'")" t
check_eq diamond_d_after_b_c "$(sql "SELECT bool_and(x.started_at >= y.finished_at) FROM attempts x JOIN tasks tx ON tx.id = x.task_id,
  attempts y JOIN tasks ty ON ty.id = y.task_id
  WHERE tx.run_id = $R_DIAMOND AND ty.run_id = $R_DIAMOND AND tx.name = 'd' AND ty.name IN ('b', 'c')")" t
# and the audit trail: d was queued only after both b and c had succeeded
check_eq diamond_d_queued_after_events "$(sql "SELECT (SELECT min(id) FROM events WHERE task_id = $(tid "$R_DIAMOND" d) AND to_state = 'queued')
  > (SELECT max(id) FROM events WHERE task_id IN ($(tid "$R_DIAMOND" b), $(tid "$R_DIAMOND" c)) AND to_state = 'succeeded')")" t
check_eq diamond_b_c_overlap "$(sql "SELECT count(*) FROM attempts x JOIN tasks tx ON tx.id = x.task_id, attempts y JOIN tasks ty ON ty.id = y.task_id
  WHERE tx.run_id = $R_DIAMOND AND tx.name = 'b' AND ty.run_id = $R_DIAMOND AND ty.name = 'c'
  AND x.started_at < y.finished_at AND y.started_at < x.finished_at")" 1
check_contains diamond_d_saw_both "$("$WEIR" logs "$R_DIAMOND" d)" "both there"

# 2. fan-out of 100 and a fan-in
check_eq fan_succeeded "$(wait_run 60 "$R_FAN")" succeeded
check_eq fan_once "$(once "$R_FAN")" "$(once_ok 101 101)"
check_eq fan_all_100_ran "$(sort -n "$SHARED/fan.log" | uniq | wc -l)" 100
check_eq fan_no_task_ran_twice "$(wc -l <"$SHARED/fan.log")" 100
check_eq fan_gather_one_attempt "$(attempts "$R_FAN" gather)" succeeded
check_eq fan_gather_after_all "$(sql "SELECT g.started_at >= max(a.finished_at) FROM attempts a JOIN tasks t ON t.id = a.task_id,
  attempts g WHERE t.run_id = $R_FAN AND t.grp = 'fan' AND g.task_id = $(tid "$R_FAN" gather) GROUP BY g.started_at")" t
check_contains fan_gather_counted "$("$WEIR" logs "$R_FAN" gather)" "gathered 100"
check_eq fan_spread_over_both_workers "$(sql "SELECT count(DISTINCT a.worker_id) FROM attempts a JOIN tasks t ON t.id = a.task_id
  WHERE t.run_id = $R_FAN AND t.grp = 'fan'")" 2

# 3. success on the third attempt
check_eq flaky_succeeded "$(wait_run 30 "$R_FLAKY")" succeeded
check_eq flaky_attempts "$(attempts "$R_FLAKY" flaky)" "failed failed succeeded"
check_eq flaky_once "$(once "$R_FLAKY")" "$(once_ok 1 1)"
check_eq flaky_counter "$(cat "$SHARED/flaky.count")" 3
check_eq flaky_exit_codes "$(sql "SELECT string_agg(coalesce(exit_code::text, '-'), ' ' ORDER BY number) FROM attempts
  WHERE task_id = $(tid "$R_FLAKY" flaky)")" "7 7 0"
check_eq flaky_retry_events "$(sql "SELECT string_agg(from_state || '>' || to_state, ' ' ORDER BY id) FROM events
  WHERE task_id = $(tid "$R_FLAKY" flaky)")" \
  "pending>queued queued>running running>retrying retrying>queued queued>running running>retrying retrying>queued queued>running running>succeeded"
check_eq flaky_failures_counted "$(sql "SELECT failures FROM tasks WHERE id = $(tid "$R_FLAKY" flaky)")" 2
# the backoff (200 ms, no jitter) separates each attempt from the failure before it
check_eq flaky_backoff_kept "$(sql "SELECT bool_and(n.started_at >= p.finished_at + interval '190 ms') FROM attempts p
  JOIN attempts n ON n.task_id = p.task_id AND n.number = p.number + 1 WHERE p.task_id = $(tid "$R_FLAKY" flaky)")" t
check_contains flaky_log_third "$("$WEIR" logs "$R_FLAKY" flaky)" "attempt 3 count 3"
check_contains flaky_log_first "$("$WEIR" logs "$R_FLAKY" flaky --attempt 1 2>&1)" "not yet"

# 4. a timeout
check_eq slow_failed "$(wait_run 30 "$R_SLOW")" failed
check_eq slow_attempt_timed_out "$(attempts "$R_SLOW" slow)" timed_out
check_contains slow_error_says_timeout "$(sql "SELECT error FROM tasks WHERE id = $(tid "$R_SLOW" slow)")" "timed out"
check_eq slow_once "$(once "$R_SLOW")" "$(once_ok 1 0)"
# killed by the worker at 1 s, not by the scheduler's backstop (timeout + 30 s)
check_eq slow_killed_in_time "$(sql "SELECT finished_at - started_at < interval '10 s' FROM attempts
  WHERE task_id = $(tid "$R_SLOW" slow)")" t
SLOW_PID=$(cat "$SHARED/slow.pid" 2>/dev/null)
SLOW_PGID=$(cat "$SHARED/slow.pgid" 2>/dev/null)
check slow_pids_written test -n "$SLOW_PID" -a -n "$SLOW_PGID"
check slow_group_gone test "$(wait_gone 3000 "$SLOW_PGID")" != alive
check slow_sleep_gone eval "! alive $SLOW_PID"
check_contains slow_show_failed "$("$WEIR" run show "$R_SLOW")" "timed out"

# 6. a gate that rejects
check_eq gated_ended "$(wait_run 30 "$R_GATED")" succeeded
check_eq gated_states "$(sql "SELECT string_agg(name || '=' || state, ' ' ORDER BY name) FROM tasks WHERE run_id = $R_GATED")" \
  "bless=rejected deploy=skipped evaluate=succeeded"
check_eq gated_once "$(once "$R_GATED")" "$(once_ok 3 1)"
check_eq gated_deploy_never_ran "$(sql "SELECT count(*) FROM attempts WHERE task_id = $(tid "$R_GATED" deploy)")" 0
check gated_deploy_no_side_effect test ! -e "$SHARED/deployed"
check_eq gated_metrics_recorded "$(sql "SELECT metrics->>'accuracy' FROM tasks WHERE id = $(tid "$R_GATED" evaluate)")" 0.5
check_contains gated_reason_in_db "$(sql "SELECT reason FROM runs WHERE id = $R_GATED")" 'gate "bless" rejected'
SHOW=$("$WEIR" run show "$R_GATED")
check_contains gated_show_reason "$SHOW" 'gate "bless" rejected'
check_contains gated_show_metric "$SHOW" "accuracy"

# 7. an approval
check_eq signed_waiting "$(wait_for 30 "SELECT state FROM tasks WHERE run_id = $R_SIGNED AND name = 'sign-off'" waiting)" waiting
check_eq signed_run_running "$(rstate "$R_SIGNED")" running
check_eq signed_ship_pending "$(tstate "$R_SIGNED" ship)" pending
check_contains signed_show_hint "$("$WEIR" run show "$R_SIGNED")" "weir approve|reject $R_SIGNED sign-off"
check_contains signed_approve "$("$WEIR" approve "$R_SIGNED" sign-off -m "go")" succeeded
check_eq signed_succeeded "$(wait_run 30 "$R_SIGNED")" succeeded
check_eq signed_once "$(once "$R_SIGNED")" "$(once_ok 3 3)"
check_eq signed_ship_after_approval "$(sql "SELECT (SELECT min(id) FROM events WHERE task_id = $(tid "$R_SIGNED" ship) AND to_state = 'queued')
  > (SELECT id FROM events WHERE task_id = $(tid "$R_SIGNED" sign-off) AND to_state = 'succeeded')")" t
check_eq signed_approver "$(sql "SELECT actor FROM events WHERE task_id = $(tid "$R_SIGNED" sign-off) AND to_state = 'succeeded'")" ops

# 8. artifacts between workers
check_eq handoff_succeeded "$(wait_run 30 "$R_HANDOFF")" succeeded
check_eq handoff_once "$(once "$R_HANDOFF")" "$(once_ok 2 2)"
check_eq handoff_make_on_w1 "$(worker_of "$R_HANDOFF" make 1)" w1
check_eq handoff_check_on_w2 "$(worker_of "$R_HANDOFF" check 1)" w2
BLOB=$(sql "SELECT outputs->>'blob' FROM tasks WHERE id = $(tid "$R_HANDOFF" make)")
check_eq handoff_blob_size "$(sql "SELECT size FROM artifacts WHERE sha256 = '$BLOB'")" 300000
check_contains handoff_consumer_verified "$("$WEIR" logs "$R_HANDOFF" check)" "got $BLOB"
check_contains handoff_consumer_size "$("$WEIR" logs "$R_HANDOFF" check)" 300000
check handoff_in_w2_cache test -f "$TMP/w2/cache/$BLOB"
check handoff_not_in_w1_cache test ! -e "$TMP/w1/cache/$BLOB"
check_eq handoff_w2_cache_sha "$(sha256sum <"$TMP/w2/cache/$BLOB" 2>/dev/null | cut -c1-64)" "$BLOB"
SEEN=$(sql "SELECT outputs->>'seen' FROM tasks WHERE id = $(tid "$R_HANDOFF" check)")
check_eq handoff_consumer_output "$(printf '%s\n' "$BLOB" | sha256sum | cut -c1-64)" "$SEEN"
# a second blob on w2, whose cache holds 200KiB: the first one (no attempt holds it now) goes,
# the new one, which its attempt held while the cache was trimmed, stays
R_HANDOFF2=$(trigger handoff)
check_eq handoff2_succeeded "$(wait_run 30 "$R_HANDOFF2")" succeeded
BLOB2=$(sql "SELECT outputs->>'blob' FROM tasks WHERE id = $(tid "$R_HANDOFF2" make)")
check handoff2_new_in_cache test -f "$TMP/w2/cache/$BLOB2"
check handoff2_old_evicted test ! -e "$TMP/w2/cache/$BLOB"

# --- 9. logs, read back and followed -------------------------------------------------------------

R_CHATTY=$(trigger chatty)
check_eq chatty_running "$(wait_for 20 "SELECT state FROM tasks WHERE run_id = $R_CHATTY" running)" running
FOLLOW_START=$(now_ms)
FOLLOW=$(timeout 30 "$WEIR" logs -f "$R_CHATTY" chatty 2>"$TMP/follow.err")
check_eq follow_exit_0 "$?" 0
FOLLOW_END=$(now_ms)
LINES=$(seq 1 10 | sed 's/^/line /')
check_eq follow_all_lines "$FOLLOW" "$LINES"
# it was following a step still printing: the task finished after -f started, and -f ended with it
check_eq follow_task_ended_after_start "$(sql "SELECT extract(epoch FROM finished_at) * 1000 > $FOLLOW_START FROM tasks
  WHERE run_id = $R_CHATTY")" t
check_eq follow_ended_with_task "$(sql "SELECT $FOLLOW_END - extract(epoch FROM finished_at) * 1000 < 5000 FROM tasks
  WHERE run_id = $R_CHATTY")" t
check_eq chatty_succeeded "$(wait_run 20 "$R_CHATTY")" succeeded
check_eq logs_read_back "$("$WEIR" logs "$R_CHATTY" chatty)" "$LINES"
check_eq chatty_once "$(once "$R_CHATTY")" "$(once_ok 1 1)"

# --- 5. cancel mid-step ----------------------------------------------------------------------------

R_LONG=$(trigger long)
check long_step_started wait_file 20 "$SHARED/long.pid"
LONG_PID=$(cat "$SHARED/long.pid")
LONG_PGID=$(ps -o pgid= -p "$LONG_PID" | tr -d ' ')
check long_step_alive alive "$LONG_PID"
check long_group_alive group_alive "$LONG_PGID"
check_contains cancel_cli "$("$WEIR" run cancel "$R_LONG")" cancelled
T=$(wait_gone 2000 "$LONG_PGID")
check cancel_killed_within_2s test "$T" != alive
check cancel_sleep_gone eval "! alive $LONG_PID"
check_eq cancel_run_state "$(rstate "$R_LONG")" cancelled
check_eq cancel_attempt "$(attempts "$R_LONG" long)" cancelled
check_eq cancel_tasks "$(sql "SELECT string_agg(name || '=' || state, ' ' ORDER BY name) FROM tasks WHERE run_id = $R_LONG")" \
  "after-long=cancelled long=cancelled"
# the worker, told to stop, reports nothing more: nothing changes after the cancel
BEFORE=$(snapshot)
sleep 0.5
check_eq cancel_nothing_after "$(snapshot)" "$BEFORE"
check_eq cancel_once "$(once "$R_LONG")" "$(once_ok 2 0)"
check_contains cancel_shown "$("$WEIR" run show "$R_LONG")" "cancelled"

# --- 10a. a worker killed with SIGKILL mid-step ------------------------------------------------------

apply crash <<'EOF' || not_ok apply_crash "apply failed"
pipeline "crash" { description = "its worker dies under the victim's first attempt" }
local pre = task "pre" { exec = "echo pre" }
local victim = task "victim" { after = pre,
  exec = "echo attempt $WEIR_ATTEMPT; if [ $WEIR_ATTEMPT = 1 ]; then sleep 30 & echo $! > $SHARED/victim.pid; wait; fi; echo victim done" }
local items = {} for i = 1, 6 do items[i] = i end
local side = foreach("side", items, function(i) return { after = pre, exec = "sleep 0.2; echo side " .. i } end)
task "post" { after = { victim, side }, exec = "echo post" }
EOF
R_CRASH=$(trigger crash)
check victim_started wait_file 20 "$SHARED/victim.pid"
VICTIM=$(tid "$R_CRASH" victim)
# mid-step: the lease has been renewed by a heartbeat at least once
check_eq victim_heartbeat_seen "$(wait_for 10 "SELECT a.heartbeat_at IS NOT NULL AND a.lease_expires_at > a.started_at
  + interval '2 seconds' FROM attempts a WHERE a.task_id = $VICTIM AND a.number = 1" t)" t
DEAD=$(worker_of "$R_CRASH" victim 1)
case $DEAD in w1) DEAD_PID=$W1_PID DEAD_ID=$W1_ID OTHER=w2 OTHER_ID=$W2_ID ;; *) DEAD_PID=$W2_PID DEAD_ID=$W2_ID OTHER=w1 OTHER_ID=$W1_ID ;; esac
KILLED_AT=$(now_ms)
kill -KILL "$DEAD_PID"
check_eq crash_worker_killed "$(worker_rc "$DEAD")" 137
check_eq crash_run_succeeded "$(wait_run 30 "$R_CRASH")" succeeded
check_eq crash_victim_attempts "$(attempts "$R_CRASH" victim)" "lost succeeded"
check_eq crash_victim_rerun_on_other "$(worker_of "$R_CRASH" victim 2)" "$OTHER"
check_eq crash_lost_counted "$(sql "SELECT lost || '/' || failures FROM tasks WHERE id = $VICTIM")" 1/0
check_eq crash_lost_event "$(sql "SELECT count(*) FROM events WHERE task_id = $VICTIM AND from_state = 'running'
  AND to_state = 'queued' AND detail->>'error' = 'lease expired'")" 1
# requeued by the lease (2 s), not earlier and not much later
check_eq crash_requeued_after_lease "$(sql "SELECT extract(epoch FROM a.finished_at) * 1000 - $KILLED_AT BETWEEN 0 AND 8000
  FROM attempts a WHERE a.task_id = $VICTIM AND a.number = 1")" t
check_eq crash_once "$(once "$R_CRASH")" "$(once_ok 9 9)"
check_contains crash_log_second_attempt "$("$WEIR" logs "$R_CRASH" victim)" "victim done"

# 10b. the dead worker's stale attempt: its completion, log chunk and heartbeat change nothing
BEFORE=$(snapshot)
check_eq stale_complete_409 "$(wk POST "/v1/workers/$DEAD_ID/attempts/$VICTIM/1/complete" -d '{"status": "succeeded", "exit_code": 0}')" 409
check_contains stale_complete_says "$(jq -r .error.message "$BODY")" "not current"
printf 'late line\n' | python3 -c 'import sys, zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read()))' >"$TMP/chunk.z"
check_eq stale_log_409 "$(wk POST "/v1/workers/$DEAD_ID/attempts/$VICTIM/1/logs?seq=5" \
  -H 'Content-Type: application/zlib' -H 'X-Weir-Raw-Length: 10' --data-binary @"$TMP/chunk.z")" 409
check_eq stale_heartbeat_200 "$(wk POST "/v1/workers/$DEAD_ID/heartbeat" -d "{\"attempts\": [{\"task_id\": $VICTIM, \"attempt\": 1}]}")" 200
check_eq stale_heartbeat_says_lost "$(jq -S -c '.stale' "$BODY")" "[{\"attempt\":1,\"reason\":\"lost\",\"task_id\":$VICTIM}]"
# the live worker's finished attempt is stale as well, to anyone
check_eq stale_other_worker_409 "$(wk POST "/v1/workers/$DEAD_ID/attempts/$VICTIM/2/complete" -d '{"status": "succeeded", "exit_code": 0}')" 409

# 10c. a completion sent again after its answer was lost: accepted once, as a duplicate
check_eq repeat_complete_200 "$(wk POST "/v1/workers/$OTHER_ID/attempts/$VICTIM/2/complete" -d '{"status": "succeeded", "exit_code": 0}')" 200
check_eq repeat_complete_duplicate "$(jq -c '[.state, .duplicate]' "$BODY")" '["succeeded",true]'
check_eq repeat_complete_different_status_409 "$(wk POST "/v1/workers/$OTHER_ID/attempts/$VICTIM/2/complete" -d '{"status": "failed", "exit_code": 1}')" 409
# the heartbeat above marks the dead worker active again (it did call); only the state matters here
check_eq stale_and_repeat_changed_nothing "$(snapshot)" "$BEFORE"
check_eq crash_once_after_reports "$(once "$R_CRASH")" "$(once_ok 9 9)"
kill -KILL "$(cat "$SHARED/victim.pid")" 2>/dev/null
rm -f "$SHARED/victim.pid"

# the dead worker comes back (a new registration, the same --dir)
restart_worker "$DEAD"
check_eq crash_worker_back "$(sql "SELECT count(*) FROM workers WHERE name = '$DEAD'")" 2

# 10a'. a worker killed right after its claim, before its first heartbeat (one every 2/3 s): the
# step itself SIGKILLs its worker (its parent) on the first attempt, milliseconds after the claim
apply kamikaze <<'EOF2' || not_ok apply_kamikaze "apply failed"
pipeline "kamikaze" { description = "the first attempt kills its worker at once" }
task "kamikaze" { exec = "if [ $WEIR_ATTEMPT = 1 ]; then kill -9 $PPID; exit 0; fi; echo survived attempt $WEIR_ATTEMPT" }
EOF2
R_KAMI=$(trigger kamikaze)
check_eq kamikaze_succeeded "$(wait_run 30 "$R_KAMI")" succeeded
check_eq kamikaze_attempts "$(attempts "$R_KAMI" kamikaze)" "lost succeeded"
DEAD=$(worker_of "$R_KAMI" kamikaze 1)
check kamikaze_other_worker test "$(worker_of "$R_KAMI" kamikaze 2)" != "$DEAD"
check kamikaze_lost_event test "$(sql "SELECT count(*) FROM events WHERE task_id = $(tid "$R_KAMI" kamikaze)
  AND to_state = 'queued' AND detail->>'error' = 'lease expired'")" = 1
check_eq kamikaze_once "$(once "$R_KAMI")" "$(once_ok 1 1)"
check_contains kamikaze_log "$("$WEIR" logs "$R_KAMI" kamikaze)" "survived attempt 2"
check_eq kamikaze_worker_killed "$(worker_rc "$DEAD")" 137
restart_worker "$DEAD"

# --- 10d. the scheduler killed with SIGKILL mid-run, restarted on the same database and port -------

apply_steps restart "outlives its scheduler" 0.4 || not_ok apply_restart "apply failed"
R_RESTART=$(trigger restart)
check_eq restart_some_done "$(wait_for 30 "SELECT count(*) >= 3 FROM tasks WHERE run_id = $R_RESTART AND state = 'succeeded'" t)" t
kill -KILL "$SCHED_PID"
{ wait "$SCHED_PID"; } 2>/dev/null
check_eq restart_killed_mid_run "$(sql "SELECT state || ' ' || (tasks_done < tasks_total) FROM runs WHERE id = $R_RESTART")" "running true"
# workers notice: claims, heartbeats and completions fail while it is away
sleep 0.5
KILL_OLD=$SCHED_PID
SCHED_LOG2=$SCHED_DIR/scheduler2.log
"$WEIR" scheduler --database "$PGCONN" --listen "127.0.0.1:$PORT" --lease $LEASE --tick $TICK \
  --artifacts "$TMP/artifacts" >"$SCHED_LOG2" 2>&1 &
SCHED_PID=$!
SCHED_LOG=$SCHED_LOG2
i=0
until curl -fs "$URL/healthz" >/dev/null 2>&1 || [ $i -ge 200 ]; do sleep 0.05; i=$((i + 1)); done
if ! curl -fs "$URL/healthz" -o /dev/null; then
  not_ok restart_listening_again "the scheduler did not start again: $(tail -n 5 "$SCHED_LOG2")"
  finish
  exit 1
fi
ok restart_listening_again
check_contains restart_same_port "$(cat "$SCHED_LOG2")" "listening on http://127.0.0.1:$PORT"
check restart_old_one_dead eval "! kill -0 $KILL_OLD 2>/dev/null"
check_eq restart_run_succeeded "$(wait_run 60 "$R_RESTART")" succeeded
check_eq restart_once "$(once "$R_RESTART")" "$(once_ok 17 17)"
check_eq restart_last_once "$(attempts "$R_RESTART" last)" succeeded
check restart_workers_claiming wait_claims 2
check_eq restart_no_worker_gone "$(sql "SELECT count(*) FROM workers WHERE state = 'active' AND id IN ($W1_ID, $W2_ID)")" 2
# both workers reconnected: a new run needs each of them (q1 on w1, q2 on w2)
R_HANDOFF2=$(trigger handoff)
check_eq restart_new_run "$(wait_run 30 "$R_HANDOFF2")" succeeded
check_eq restart_new_run_on_both "$(worker_of "$R_HANDOFF2" make 1) $(worker_of "$R_HANDOFF2" check 1)" "w1 w2"
check_eq restart_new_run_once "$(once "$R_HANDOFF2")" "$(once_ok 2 2)"

# --- 10e. the scheduler's database connection cut mid-run ---------------------------------------------

apply_steps dbcut "outlives its scheduler's database connection" 0.3 || not_ok apply_dbcut "apply failed"
R_CUT=$(trigger dbcut)
check_eq dbcut_some_done "$(wait_for 30 "SELECT count(*) >= 2 FROM tasks WHERE run_id = $R_CUT AND state = 'succeeded'" t)" t
maint() { $PSQL -X -A -t -q -c "$1" "$PGMAINT"; }
terminate() { maint "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$DBNAME' AND pid <> pg_backend_pid()"; }
# a cut it recovers from at once
check_eq dbcut_terminated "$(terminate)" 1
end=$(($(now_ms) + 10000))
until [ "$(grep -c 'db: connected' "$SCHED_LOG")" -ge 2 ] || [ "$(now_ms)" -ge $end ]; do sleep 0.05; done
check_contains dbcut_lost_logged "$(cat "$SCHED_LOG")" "db: connection lost"
check_eq dbcut_reconnected "$(grep -c 'db: connected' "$SCHED_LOG")" 2
# a cut that lasts: new connections are refused for a while, so the 503s are certain
maint "ALTER DATABASE \"$DBNAME\" ALLOW_CONNECTIONS false"
check_eq dbcut_terminated_again "$(terminate)" 1
end=$(($(now_ms) + 5000))
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" = 503 ] || [ "$(now_ms)" -ge $end ]; do sleep 0.02; done
check_eq dbcut_healthz_503 "$(curl -s -o "$BODY" -w '%{http_code}' "$URL/healthz")" 503
check_contains dbcut_healthz_says "$(cat "$BODY")" unavailable
check_eq dbcut_api_503 "$(status GET "/v1/runs/$R_CUT" -H "Authorization: Bearer $OP")" 503
check_contains dbcut_api_says "$(jq -r .error.message "$BODY")" "database unavailable"
check_eq dbcut_worker_route_503 "$(wk POST "/v1/workers/$W1_ID/heartbeat" -d '{"attempts": []}')" 503
ERR=$("$WEIR" run show "$R_CUT" 2>&1)
check_contains dbcut_cli_says "$ERR" "database unavailable"
sleep 0.5
maint "ALTER DATABASE \"$DBNAME\" ALLOW_CONNECTIONS true"
end=$(($(now_ms) + 15000))
until curl -fs "$URL/healthz" >/dev/null 2>&1 || [ "$(now_ms)" -ge $end ]; do sleep 0.05; done
check dbcut_healthz_back curl -fs "$URL/healthz" -o /dev/null
check_eq dbcut_run_succeeded "$(wait_run 60 "$R_CUT")" succeeded
check_eq dbcut_once "$(once "$R_CUT")" "$(once_ok 17 17)"
R_HANDOFF3=$(trigger handoff)
check_eq dbcut_new_run_on_both "$(wait_run 30 "$R_HANDOFF3") $(worker_of "$R_HANDOFF3" make 1) $(worker_of "$R_HANDOFF3" check 1)" \
  "succeeded w1 w2"

# --- everything, once more: no task of any run completed twice, none left behind ------------------

check_eq all_runs_ended "$(sql "SELECT count(*) FROM runs WHERE state NOT IN ('succeeded', 'failed', 'cancelled')")" 0
check_eq all_no_double_success "$(sql "SELECT count(*) FROM (SELECT task_id FROM attempts WHERE state = 'succeeded'
  GROUP BY task_id HAVING count(*) > 1) x")" 0
check_eq all_no_double_success_event "$(sql "SELECT count(*) FROM (SELECT task_id FROM events WHERE kind = 'task.state'
  AND to_state = 'succeeded' GROUP BY task_id HAVING count(*) > 1) x")" 0
check_eq all_no_attempt_running "$(sql "SELECT count(*) FROM attempts WHERE state = 'running'")" 0
check_eq all_counters "$(sql "SELECT count(*) FROM runs WHERE tasks_done <> tasks_total")" 0

# --- shutdown: workers drain and exit 0, the scheduler stops cleanly --------------------------------

kill -TERM "$W1_PID" "$W2_PID"
RC1=$(worker_rc w1)
RC2=$(worker_rc w2)
check_eq workers_exit_0 "$RC1 $RC2" "0 0"
[ "$RC1 $RC2" = "0 0" ] || { echo "--- w1"; tail -n 30 "$TMP/w1.log"; echo "--- w2"; tail -n 30 "$TMP/w2.log"; }
W1_PID= W2_PID=
check clean_shutdown stop_scheduler
SCHED_PID=
finish
