# runs.sh — the operator commands (cli/runs.c, cli/runshow.c) against a real scheduler, a real
# PostgreSQL and a real `weir worker`: trigger with parameters and --wait, runs, run show (the
# tree, a collapsed fan-out), watch, logs (whole, per attempt, -f across a retry), approve and
# reject, cancel and retry, workers, -o json everywhere, and the exit codes (1 failed or refused,
# 2 usage, 3 unreachable, 4 not found).
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-runs.XXXXXX)
start_scheduler || { not_ok start "scheduler did not start"; finish; exit 1; }
OP=$("$WEIR" token create --role operator --name ops --database "$PGCONN")
WORK=$("$WEIR" token create --role worker --name w1 --database "$PGCONN")
export WEIR_URL="$URL" WEIR_TOKEN="$OP" WEIR_HOME="$TMP/home"

"$WEIR" worker --scheduler "$URL" --token "$WORK" --slots 8 --name w1 --dir "$TMP/worker" \
  >"$TMP/worker.log" 2>&1 &
WORKER_PID=$!

# ok/fail decides a task's fate by a parameter; "flaky" fails its first attempt only; a fan-out of 12
cat >"$TMP/ops.lua" <<'EOF'
pipeline "ops" {
  params = { fail = param.string("no", "yes makes the check task fail"), n = param.int(3, "lines") },
  defaults = { retries = { max = 1, backoff = "1s" } },
}
local prep = task "prep" { exec = { "sh", "-c", "for i in $(seq 1 $WEIR_PARAM_N); do echo prep line $i; done" } }
local flaky = task "flaky" { after = prep, exec = { "sh", "-c",
  "echo attempt $WEIR_ATTEMPT; sleep 1; [ $WEIR_ATTEMPT -gt 1 ] || { echo boom >&2; exit 3; }" } }
local items = {} for i = 1, 12 do items[i] = i end
local fan = foreach("fan", items, function(i) return { exec = { "sh", "-c", "echo fan " .. i }, after = prep } end)
local check = task "check" { after = { flaky, fan }, retries = { max = 0 },
  exec = { "sh", "-c", "[ \"$WEIR_PARAM_FAIL\" != yes ] || { echo failing on purpose >&2; exit 1; }" } }
local ok = approval "sign-off" { after = check, message = "ship it?" }
task "ship" { after = ok, exec = { "echo", "shipped" } }
EOF
"$WEIR" apply "$TMP/ops.lua" >/dev/null
check apply_ops test $? -eq 0

# --- usage errors (2) and not found (4) ---------------------------------------------------------
for c in trigger runs "run show" "run watch" "run cancel" "run retry" logs approve reject workers; do
  OUT=$($WEIR $c --help 2>&1)
  check_contains "help_${c// /_}" "$OUT" "usage: weir"
done
"$WEIR" run show abc >/dev/null 2>&1;           check_eq show_bad_id_exit_2 "$?" 2
"$WEIR" run frob 1 >/dev/null 2>&1;             check_eq run_unknown_verb_exit_2 "$?" 2
"$WEIR" trigger ops -p novalue >/dev/null 2>&1; check_eq trigger_bad_param_exit_2 "$?" 2
"$WEIR" runs --limit 0 >/dev/null 2>&1;         check_eq runs_bad_limit_exit_2 "$?" 2
"$WEIR" run show 999 >/dev/null 2>&1;           check_eq show_unknown_run_exit_4 "$?" 4
"$WEIR" trigger nope >/dev/null 2>&1;           check_eq trigger_unknown_pipeline_exit_4 "$?" 4
ERR=$("$WEIR" trigger ops -p n=many 2>&1);      check_eq trigger_mistyped_exit_1 "$?" 1
check_contains trigger_mistyped_names_it "$ERR" '"n"'
WEIR_URL=http://127.0.0.1:1 "$WEIR" runs >/dev/null 2>&1; check_eq unreachable_exit_3 "$?" 3

# --- a run that waits for approval, then is approved ----------------------------------------------
OUT=$("$WEIR" trigger ops -p n=4 -o json)
RUN=$(echo "$OUT" | sed -n 's/.*"run": \([0-9]*\).*/\1/p')
check trigger_json_has_run test -n "$RUN"
i=0
until "$WEIR" run show "$RUN" | grep -q 'sign-off.*waiting' || [ $i -ge 300 ]; do sleep 0.1; i=$((i + 1)); done
SHOW=$("$WEIR" run show "$RUN")
check_contains show_header "$SHOW" "pipeline  ops, version 1"
check_contains show_params "$SHOW" "n=4"
check_contains show_tree_child "$SHOW" "└─"
check_contains show_fanout_collapsed "$SHOW" "fan-[1..12]"
check_contains show_fanout_counts "$SHOW" "12 succeeded"
check_contains show_waiting_hint "$SHOW" "weir approve|reject $RUN sign-off"
check_contains show_after_note "$SHOW" "(after fan-[1..12], flaky)"
check_contains show_flaky_second_attempt "$SHOW" "2/2"
check_eq show_json_tasks "$("$WEIR" run show "$RUN" -o json | grep -c '"name": "fan-')" 12
check_eq logs_whole "$("$WEIR" logs "$RUN" prep)" "$(printf 'prep line 1\nprep line 2\nprep line 3\nprep line 4')"
check_contains logs_attempt_1 "$("$WEIR" logs "$RUN" flaky --attempt 1 2>&1)" "attempt 1"
check_contains logs_latest_attempt "$("$WEIR" logs "$RUN" flaky)" "attempt 2"
"$WEIR" logs "$RUN" flaky --attempt 7 >/dev/null 2>&1; check_eq logs_missing_attempt_exit_4 "$?" 4
ERR=$("$WEIR" logs "$RUN" flaku 2>&1);          check_eq logs_unknown_task_exit_4 "$?" 4
check_contains logs_unknown_task_hint "$ERR" 'did you mean "flaky"'
ERR=$("$WEIR" approve "$RUN" prep 2>&1);        check_eq approve_not_approval_exit_1 "$?" 1
OUT=$("$WEIR" approve "$RUN" sign-off -m "fine by me")
check_contains approve_says_state "$OUT" "succeeded"
timeout 60 "$WEIR" run watch "$RUN" >"$TMP/watch.out"; check_eq watch_exit_0_on_success "$?" 0
check_contains watch_final_frame "$(cat "$TMP/watch.out")" "state     succeeded"
check_contains show_decision "$("$WEIR" run show "$RUN")" "approved by ops: fine by me"
ERR=$("$WEIR" logs "$RUN" sign-off 2>&1);       check_eq logs_of_approval_exit_1 "$?" 1
check_contains logs_of_approval_says_no_step "$ERR" "ran no step (it is succeeded)"
ERR=$("$WEIR" run cancel "$RUN" 2>&1);          check_eq cancel_ended_exit_1 "$?" 1

# --- a failing run: --wait exits 1; retry --task; reject -------------------------------------------
OUT=$(timeout 120 "$WEIR" trigger ops -p fail=yes --wait 2>&1); check_eq wait_failed_exit_1 "$?" 1
check_contains wait_names_failed_task "$OUT" "check failed"
RUN2=$(echo "$OUT" | sed -n 's/^run \([0-9]*\) of.*/\1/p' | head -n 1)
check_contains logs_failed_stderr "$("$WEIR" logs "$RUN2" check)" "failing on purpose"
OUT=$("$WEIR" run retry "$RUN2" --task check -o json)
check_contains retry_json "$OUT" '"reset"'
# check fails again (fail=yes is pinned in the run): the run ends failed once more
timeout 60 "$WEIR" run watch "$RUN2" >/dev/null; check_eq watch_exit_1_on_failure "$?" 1
# its second attempt came from the operator's retry, not from its budget of one: "2", not "2/1"
ROW=$("$WEIR" run show "$RUN2" | grep ' check ')
check retry_attempt_alone sh -c "echo '$ROW' | grep -Eq 'failed +2 '"
check prep_attempt_of_budget sh -c "\"$WEIR\" run show $RUN2 | grep ' prep ' | grep -q '1/2'"

# --- follow a log across a retry; reject; cancel ---------------------------------------------------
OUT=$("$WEIR" trigger ops -o json); RUN3=$(echo "$OUT" | sed -n 's/.*"run": \([0-9]*\).*/\1/p')
FOLLOW=$(timeout 60 "$WEIR" logs "$RUN3" flaky -f 2>"$TMP/follow.err"); check_eq follow_exit_0 "$?" 0
check_eq follow_both_attempts "$(echo "$FOLLOW" | tr '\n' ' ')" "attempt 1 boom attempt 2 "
check_contains follow_marks_attempt "$(cat "$TMP/follow.err")" "attempt 2 of flaky"
i=0
until "$WEIR" run show "$RUN3" | grep -q 'sign-off.*waiting' || [ $i -ge 300 ]; do sleep 0.1; i=$((i + 1)); done
check_contains reject_says_state "$("$WEIR" reject "$RUN3" sign-off -m "not today")" "rejected"
# a rejected approval ends the run succeeded, with a reason naming it (docs/protocol.md)
timeout 30 "$WEIR" run watch "$RUN3" >/dev/null; check_eq rejected_run_watch_exit_0 "$?" 0
SHOW=$("$WEIR" run show "$RUN3")
check_contains reject_comment_shown "$SHOW" "rejected by ops: not today"
check_contains reject_reason_shown "$SHOW" "reason    "
check_contains reject_skips_dependents "$SHOW" "⊘ ship"


OUT=$("$WEIR" trigger ops -o json); RUN4=$(echo "$OUT" | sed -n 's/.*"run": \([0-9]*\).*/\1/p')
check_contains cancel_says_cancelled "$("$WEIR" run cancel "$RUN4")" "cancelled"
check_contains runs_lists_cancelled "$("$WEIR" runs --state cancelled)" "$RUN4"

# --- lists ----------------------------------------------------------------------------------------
OUT=$("$WEIR" runs --pipeline ops)
check_contains runs_header "$OUT" "RUN  PIPELINE"
check_eq runs_limit_json "$("$WEIR" runs --limit 2 -o json | grep -c '"pipeline": "ops"')" 2
OUT=$("$WEIR" workers)
check_contains workers_row "$OUT" "w1"
check_contains workers_slots "$OUT" "/8"
check_contains workers_json "$("$WEIR" workers -o json)" '"slots": 8'

kill -TERM "$WORKER_PID" 2>/dev/null
wait "$WORKER_PID"
check_eq worker_drained_exit_0 "$?" 0
# a worker that drained says so before it exits: gone at once, not after three leases
check_eq worker_gone_after_exit "$("$WEIR" workers -o json | jq -r '.[] | select(.name == "w1") | .state')" gone
check clean_shutdown stop_scheduler
rm -rf "$TMP" "$SCHED_DIR"
finish
