# runs_api.sh — the run state machine and the worker protocol (docs/protocol.md, docs/api.md
# "Runs") against a real scheduler and a real PostgreSQL, with curl playing the worker: triggers
# and parameter coercion, a diamond DAG and the trigger rules, stale attempts (fencing) and
# duplicate completions, retries with backoff, lease expiry and heartbeats, long-poll hand-off,
# run and task cancels, run retry, max_active_runs, approvals, gates, logs and their cap,
# artifacts, the worker list — and, throughout, the events table: every state change has its
# event, no task is completed twice, and a refused request changes nothing.
#
# Each scenario uses its own pipeline on its own queue, served by its own worker, so that no
# claim of one scenario can take a task of another.
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-runs-api.XXXXXX)
trap 'rm -rf "$TMP" "$BODY"' EXIT
start_scheduler --lease 2s --tick 50ms --max-log 2KiB --artifacts "$TMP/artifacts" \
  || { not_ok start "scheduler did not start"; finish; exit 1; }

OP=$("$WEIR" token create --role operator --name ops --database "$PGCONN")
VIEW=$("$WEIR" token create --role viewer --name viewer --database "$PGCONN")
WORK=$("$WEIR" token create --role worker --name w --database "$PGCONN")

# --- helpers -------------------------------------------------------------------------------------

# op|wk|vw METHOD PATH [CURL ARGS...] : the HTTP status as operator, worker or viewer; body in $BODY.
op() { m=$1; p=$2; shift 2; status "$m" "$p" -H "Authorization: Bearer $OP" "$@"; }
wk() { m=$1; p=$2; shift 2; status "$m" "$p" -H "Authorization: Bearer $WORK" "$@"; }
vw() { m=$1; p=$2; shift 2; status "$m" "$p" -H "Authorization: Bearer $VIEW" "$@"; }
# j FILTER : a value from the last answer's body.
j() { jq -r "$1" "$BODY"; }

# apply NAME LUA : applies a pipeline given as Lua source.
apply() {
  printf '%s\n' "$2" >"$TMP/$1.lua"
  "$WEIR" apply --url "$URL" --token "$OP" "$TMP/$1.lua" >"$TMP/$1.apply" 2>&1 || { cat "$TMP/$1.apply"; return 1; }
}

# trigger PIPELINE [PARAMS-JSON] : starts a run; prints its id (empty when refused).
trigger() {
  tp=${2:-}
  [ -n "$tp" ] || tp='{}'
  c=$(op POST "/v1/pipelines/$1/runs" -d "{\"params\": $tp}")
  [ "$c" = 201 ] && j .run || { echo "trigger $1: $c $(cat "$BODY")" >&2; echo ""; }
}

# register NAME QUEUE [SLOTS] : registers a worker serving one queue; prints its id.
register() {
  wk POST /v1/workers -d "{\"name\": \"$1\", \"slots\": ${3:-4}, \"queues\": [\"$2\"]}" >/dev/null
  j .worker_id
}

# claim WORKER [SLOTS] [WAIT_MS] : one claim; the answer is in $BODY, the status printed.
claim() { wk POST "/v1/workers/$1/claim" -d "{\"free_slots\": ${2:-1}, \"wait_ms\": ${3:-0}}"; }

# claimed WORKER SLOTS [WAIT_MS] : claims; prints the names of the tasks handed over, sorted.
claimed() {
  claim "$1" "$2" "${3:-0}" >/dev/null
  jq -r '[.tasks[].task] | sort | join(" ")' "$BODY"
}

# complete WORKER TASK_ID ATTEMPT STATUS [EXTRA JSON FIELDS] : prints the status.
complete() {
  wk POST "/v1/workers/$1/attempts/$2/$3/complete" -d "{\"status\": \"$4\"${5:+, $5}}"
}

# heartbeat WORKER TASK_ID ATTEMPT : renews one attempt; prints the status.
heartbeat() { wk POST "/v1/workers/$1/heartbeat" -d "{\"attempts\": [{\"task_id\": $2, \"attempt\": $3}]}"; }

# finish_task WORKER RUN NAME STATUS [EXTRA JSON FIELDS] : completes the task's current attempt.
finish_task() {
  complete "$1" "$(tid "$2" "$3")" "$(sql "SELECT attempt FROM tasks WHERE run_id = $2 AND name = '$3'")" "$4" "${5:-}"
}

tstate() { sql "SELECT state FROM tasks WHERE run_id = $1 AND name = '$2'"; }
tid() { sql "SELECT id FROM tasks WHERE run_id = $1 AND name = '$2'"; }
rstate() { sql "SELECT state FROM runs WHERE id = $1"; }
# states RUN : "name=state ..." of a run's tasks in name order.
states() { sql "SELECT string_agg(name || '=' || state, ' ' ORDER BY name) FROM tasks WHERE run_id = $1"; }

# wait_for SECONDS SQL EXPECTED : polls until the query answers EXPECTED; prints the last answer.
wait_for() {
  end=$(($(date +%s%N) / 1000000 + $1 * 1000))
  while :; do
    v=$(sql "$2")
    [ "$v" = "$3" ] && break
    [ $(($(date +%s%N) / 1000000)) -ge $end ] && break
    sleep 0.02
  done
  echo "$v"
}

# wait_claims N : waits until the scheduler holds N open claims (a background claim arrived).
wait_claims() {
  i=0
  until curl -s "$URL/metrics" | grep -qx "weir_claims_waiting $1" || [ $i -ge 200 ]; do sleep 0.01; i=$((i + 1)); done
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# hold_claim WORKER FILE : opens a long-poll claim for one slot in the background (answer to
# FILE, pid in HELD), waits until the scheduler holds it, and starts the clock T0.
hold_claim() {
  curl -s -o "$2" -H "Authorization: Bearer $WORK" -X POST "$URL/v1/workers/$1/claim" \
    -d '{"free_slots": 1, "wait_ms": 10000}' &
  HELD=$!
  wait_claims 1
  T0=$(now_ms)
}

# snapshot : counts and states the refused requests must leave alone.
snapshot() {
  sql "SELECT (SELECT string_agg(id || ':' || state || ':' || attempt || ':' || failures || ':' || coalesce(lease_expires_at::text, '-'), ',' ORDER BY id) FROM tasks)
    || '|' || (SELECT string_agg(task_id || '.' || number || ':' || state || ':' || log_bytes, ',' ORDER BY task_id, number) FROM attempts)
    || '|' || (SELECT count(*) FROM events) || '|' || (SELECT count(*) FROM attempt_logs) || '|' || (SELECT count(*) FROM task_outputs)
    || '|' || (SELECT string_agg(id || ':' || state || ':' || tasks_done, ',' ORDER BY id) FROM runs)"
}

# z : zlib-compresses stdin to stdout.
z() { python3 -c 'import sys, zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read()))'; }

# --- trigger -------------------------------------------------------------------------------------
apply params '
pipeline "params" {
  params = { n = param.int(3), x = param.number(1.5), day = param.string(), full = param.bool(false) },
  max_active_runs = 100,
  defaults = { resources = { queue = "pq" } },
}
local a = task "a" { exec = "true" }
task "b" { exec = "true", after = a }
task "c" { exec = "true", after = a }' || not_ok apply_params "apply failed"

RUNS0=$(sql "SELECT count(*) FROM runs")
check_eq trigger_201 "$(op POST /v1/pipelines/params/runs -d '{"params": {"day": "2026-01-01", "n": "7", "full": "yes"}}')" 201
R=$(j .run)
check_eq trigger_answer "$(j '"\(.pipeline) \(.state) \(.tasks)"')" "params running 3"
check_eq trigger_params_coerced "$(sql "SELECT params::text FROM runs WHERE id = $R")" \
  '{"n": 7, "x": 1.5, "day": "2026-01-01", "full": true}'
check_eq trigger_tasks_in_one_go "$(states "$R")" "a=queued b=pending c=pending"
check_eq trigger_run_counters "$(sql "SELECT tasks_total || '/' || tasks_done FROM runs WHERE id = $R")" "3/0"
check_eq trigger_edges "$(sql "SELECT count(*) FROM task_edges e JOIN tasks t ON t.id = e.downstream_id WHERE t.run_id = $R")" 2
check_eq trigger_events "$(sql "SELECT string_agg(kind || ':' || coalesce(from_state, '') || '>' || to_state, ' ' ORDER BY id) FROM events WHERE run_id = $R")" \
  "run.created:>queued run.state:queued>running task.state:pending>queued"
check_eq trigger_by_api "$(sql "SELECT trigger_kind FROM runs WHERE id = $R")" api
check_eq trigger_manual "$(op POST /v1/pipelines/params/runs -d '{"params": {"day": "d"}, "trigger": "manual"}')" 201
check_eq trigger_manual_kept "$(sql "SELECT trigger_kind FROM runs WHERE id = $(j .run)")" manual
check_eq trigger_bad_kind_400 "$(op POST /v1/pipelines/params/runs -d '{"params": {"day": "d"}, "trigger": "schedule"}')" 400
check_contains trigger_bad_kind_msg "$(cat "$BODY")" 'field \"trigger\" must be \"api\" or \"manual\"'
check_eq trigger_numeric_typed "$(op POST /v1/pipelines/params/runs -d '{"params": {"day": "d", "n": 8, "x": "2"}}')" 201
check_eq trigger_number_string "$(sql "SELECT params->>'x' FROM runs WHERE id = $(j .run)")" 2

BEFORE=$(snapshot)
check_eq trigger_int_fraction_400 "$(op POST /v1/pipelines/params/runs -d '{"params": {"day": "d", "n": "4.5"}}')" 400
check_contains trigger_int_fraction_names "$(j .error.message)" 'parameter "n" must be an integer'
check_eq trigger_int_word_400 "$(op POST /v1/pipelines/params/runs -d '{"params": {"day": "d", "n": "seven"}}')" 400
check_contains trigger_int_word_names "$(j .error.message)" 'parameter "n"'
check_eq trigger_bool_400 "$(op POST /v1/pipelines/params/runs -d '{"params": {"day": "d", "full": "maybe"}}')" 400
check_contains trigger_bool_names "$(j .error.message)" 'parameter "full"'
check_eq trigger_string_typed_400 "$(op POST /v1/pipelines/params/runs -d '{"params": {"day": 12}}')" 400
check_contains trigger_string_typed_names "$(j .error.message)" 'parameter "day" must be a string'
check_eq trigger_unknown_param_400 "$(op POST /v1/pipelines/params/runs -d '{"params": {"day": "d", "epochs": 3}}')" 400
check_contains trigger_unknown_param_names "$(j .error.message)" 'unknown parameter "epochs"'
check_eq trigger_missing_required_400 "$(op POST /v1/pipelines/params/runs -d '{"params": {"n": 1}}')" 400
check_contains trigger_missing_required_names "$(j .error.message)" 'parameter "day"'
check_contains trigger_missing_required_says "$(j .error.message)" 'required'
check_eq trigger_params_not_object_400 "$(op POST /v1/pipelines/params/runs -d '{"params": [1]}')" 400
check_contains trigger_params_not_object_names "$(j .error.message)" '"params"'
check_eq trigger_unknown_field_400 "$(op POST /v1/pipelines/params/runs -d '{"parms": {}}')" 400
check_contains trigger_unknown_field_names "$(j .error.message)" '"parms"'
check_eq trigger_bad_json_400 "$(op POST /v1/pipelines/params/runs -d '{"params": ')" 400
check_eq trigger_unknown_pipeline_404 "$(op POST /v1/pipelines/nosuch/runs -d '{}')" 404
check_contains trigger_unknown_pipeline_names "$(j .error.message)" '"nosuch"'
check_eq trigger_viewer_403 "$(vw POST /v1/pipelines/params/runs -d '{"params": {"day": "d"}}')" 403
check_eq trigger_worker_403 "$(wk POST /v1/pipelines/params/runs -d '{"params": {"day": "d"}}')" 403
check_eq trigger_refusals_wrote_nothing "$(snapshot)" "$BEFORE"
check_eq trigger_refusals_no_runs "$(sql "SELECT count(*) FROM runs")" $((RUNS0 + 3))

# ids that do not exist, and malformed ones
check_eq run_unknown_404 "$(vw GET /v1/runs/999999)" 404
check_contains run_unknown_message "$(j .error.message)" "no run 999999"
check_eq run_events_unknown_404 "$(vw GET /v1/runs/999999/events)" 404
check_eq run_cancel_unknown_404 "$(op POST /v1/runs/999999/cancel)" 404
check_contains run_cancel_unknown_message "$(j .error.message)" "no run 999999"
check_eq run_retry_unknown_404 "$(op POST /v1/runs/999999/retry -d '{}')" 404
check_eq run_bad_id_400 "$(vw GET /v1/runs/abc)" 400
check_contains run_bad_id_message "$(j .error.message)" '"abc"'
check_eq task_unknown_cancel_404 "$(op POST "/v1/runs/$R/tasks/nosuch/cancel")" 404
check_contains task_unknown_message "$(j .error.message)" "run $R has no task \"nosuch\""
check_eq task_unknown_approve_404 "$(op POST "/v1/runs/$R/tasks/nosuch/approve" -d '{}')" 404
check_eq task_unknown_logs_404 "$(vw GET "/v1/runs/$R/tasks/nosuch/logs")" 404
check_eq task_viewer_cancel_403 "$(vw POST "/v1/runs/$R/tasks/a/cancel")" 403
check_eq run_viewer_show_200 "$(vw GET "/v1/runs/$R")" 200
check_eq run_show_tasks "$(j '[.tasks[] | "\(.name):\(.state)"] | join(" ")')" "a:queued b:pending c:pending"
check_eq run_list_filtered "$(vw GET "/v1/runs?pipeline=params&state=running")" 200
check_eq run_list_count "$(j '.runs | length')" 3

WP=$(register wp pq)
check_eq worker_registered "$(echo "$WP" | grep -Eq '^[0-9]+$' && echo yes)" yes
check_eq register_slots_required_400 "$(wk POST /v1/workers -d '{"name": "x"}')" 400
check_contains register_slots_named "$(j .error.message)" '"slots"'
check_eq register_slots_range_400 "$(wk POST /v1/workers -d '{"name": "x", "slots": 0}')" 400
check_eq register_operator_403 "$(op POST /v1/workers -d '{"name": "x", "slots": 1}')" 403
BEFORE=$(snapshot)
check_eq claim_unknown_worker_404 "$(claim 999999 1 0)" 404
check_contains claim_unknown_worker_message "$(j .error.message)" "register again"
check_eq claim_bad_body_400 "$(wk POST "/v1/workers/$WP/claim" -d '{"free_slots": "many"}')" 400
check_contains claim_bad_body_names "$(j .error.message)" '"free_slots"'
check_eq claim_wait_cap_400 "$(wk POST "/v1/workers/$WP/claim" -d '{"free_slots": 1, "wait_ms": 600000}')" 400
check_contains claim_wait_cap_names "$(j .error.message)" '"wait_ms"'
check_eq complete_unknown_task_404 "$(complete "$WP" 999999 1 succeeded)" 404
check_eq complete_bad_status_400 "$(complete "$WP" "$(tid "$R" a)" 1 done)" 400
check_contains complete_bad_status_names "$(j .error.message)" '"status"'
check_eq complete_bad_outputs_400 "$(complete "$WP" "$(tid "$R" a)" 1 succeeded '"outputs": {"m": "xyz"}')" 400
check_contains complete_bad_outputs_names "$(j .error.message)" '"outputs"'
check_eq complete_bad_metrics_400 "$(complete "$WP" "$(tid "$R" a)" 1 succeeded '"metrics": [1]')" 400
check_eq complete_unclaimed_409 "$(complete "$WP" "$(tid "$R" a)" 1 succeeded)" 409
check_eq heartbeat_bad_body_400 "$(wk POST "/v1/workers/$WP/heartbeat" -d '{"attempts": [{"task_id": "x"}]}')" 400
check_contains heartbeat_bad_body_names "$(j .error.message)" '"attempts"'
check_eq heartbeat_unknown_worker_404 "$(heartbeat 999999 1 1)" 404
check_eq worker_refusals_wrote_nothing "$(snapshot)" "$BEFORE"
# the params runs go no further: cancel them so that nothing is left running
for r in $(sql "SELECT id FROM runs WHERE state IN ('queued', 'running')"); do op POST "/v1/runs/$r/cancel" >/dev/null; done
check_eq params_runs_cancelled "$(sql "SELECT count(*) FROM runs WHERE state <> 'cancelled'")" 0

# --- a diamond DAG: roots first, dependents only once all their upstream tasks succeeded ------------
apply diamond '
pipeline "diamond" { max_active_runs = 10, defaults = { resources = { queue = "dq" } } }
local a = task "a" { exec = "true" }
local b = task "b" { exec = "true", after = a }
local c = task "c" { exec = "true", after = a }
local d = task "d" { exec = "true", after = { b, c } }
task "alarm" { exec = "true", after = d, trigger_rule = "one_failed" }' || not_ok apply_diamond "apply failed"
WD=$(register wd dq)
R=$(trigger diamond)
check_eq diamond_roots_queued "$(states "$R")" "a=queued alarm=pending b=pending c=pending d=pending"
check_eq diamond_claim_root_only "$(claimed "$WD" 4)" "a"
check_eq diamond_running "$(tstate "$R" a)" running
check_eq diamond_nothing_more "$(claimed "$WD" 4)" ""
check_eq diamond_complete_a "$(finish_task "$WD" "$R" a succeeded)" 200
check_eq diamond_complete_a_state "$(j .state)" succeeded
check_eq diamond_fan_out "$(states "$R")" "a=succeeded alarm=pending b=queued c=queued d=pending"
check_eq diamond_claim_both "$(claimed "$WD" 4)" "b c"
check_eq diamond_complete_b "$(finish_task "$WD" "$R" b succeeded)" 200
check_eq diamond_join_waits "$(tstate "$R" d)" pending
check_eq diamond_join_counter "$(sql "SELECT upstream_pending FROM tasks WHERE run_id = $R AND name = 'd'")" 1
check_eq diamond_tasks_done_mid "$(sql "SELECT tasks_done FROM runs WHERE id = $R")" 2
check_eq diamond_complete_c "$(finish_task "$WD" "$R" c succeeded)" 200
check_eq diamond_join_ready "$(tstate "$R" d)" queued
check_eq diamond_claim_join "$(claimed "$WD" 4)" "d"
check_eq diamond_complete_d "$(finish_task "$WD" "$R" d succeeded)" 200
check_eq diamond_one_failed_skipped "$(tstate "$R" alarm)" skipped
check_contains diamond_one_failed_reason "$(sql "SELECT error FROM tasks WHERE run_id = $R AND name = 'alarm'")" "no upstream task failed"
check_eq diamond_run_succeeded "$(rstate "$R")" succeeded
check_eq diamond_counters "$(sql "SELECT tasks_total || '/' || tasks_done || '/' || tasks_failed FROM runs WHERE id = $R")" "5/5/0"
check_eq diamond_api_counters "$(vw GET "/v1/runs/$R" >/dev/null; j '"\(.state) \(.tasks_done)/\(.tasks_total) \(.tasks_failed)"')" "succeeded 5/5 0"
check_eq diamond_run_finished_at "$(sql "SELECT finished_at IS NOT NULL AND started_at IS NOT NULL FROM runs WHERE id = $R")" t
check_eq diamond_task_events "$(sql "SELECT string_agg(t.name || ':' || e.from_state || '>' || e.to_state, ' ' ORDER BY e.id)
  FROM events e JOIN tasks t ON t.id = e.task_id WHERE e.run_id = $R AND e.kind = 'task.state' AND t.name IN ('a', 'd', 'alarm')")" \
  "a:pending>queued a:queued>running a:running>succeeded d:pending>queued d:queued>running d:running>succeeded alarm:pending>skipped"
check_eq diamond_run_events "$(sql "SELECT string_agg(from_state || '>' || to_state, ' ' ORDER BY id) FROM events WHERE run_id = $R AND kind = 'run.state'")" \
  "queued>running running>succeeded"
check_eq diamond_api_events "$(vw GET "/v1/runs/$R/events" >/dev/null; j '[.events[] | select(.task == "b") | .to_state] | join(" ")')" "queued running succeeded"
check_eq diamond_complete_after_end_409 "$(finish_task "$WD" "$R" d failed)" 409

# --- trigger rules on a failure -----------------------------------------------------------------------
apply rules '
pipeline "rules" { max_active_runs = 10, defaults = { resources = { queue = "rq" } } }
local r1 = task "r1" { exec = "true" }
local r2 = task "r2" { exec = "true" }
task "succ" { exec = "true", after = { r1, r2 } }
task "done" { exec = "true", after = { r1, r2 }, trigger_rule = "all_done" }
task "onfail" { exec = "true", after = { r1, r2 }, trigger_rule = "one_failed" }' || not_ok apply_rules "apply failed"
WR=$(register wr rq)
RR=$(trigger rules)
check_eq rules_two_roots "$(claimed "$WR" 4)" "r1 r2"
check_eq rules_fail_r1 "$(finish_task "$WR" "$RR" r1 failed '"exit_code": 3')" 200
check_eq rules_fail_r1_state "$(j .state)" failed
check_eq rules_error_kept "$(sql "SELECT error FROM tasks WHERE run_id = $RR AND name = 'r1'")" "exit status 3"
# r2 is still running: one_failed fires at once, all_success is skipped at once, all_done waits
check_eq rules_at_once "$(states "$RR")" "done=pending onfail=queued r1=failed r2=running succ=skipped"
check_eq rules_run_still_running "$(rstate "$RR")" running
check_eq rules_claim_onfail "$(claimed "$WR" 4)" "onfail"
check_eq rules_r2_succeeds "$(finish_task "$WR" "$RR" r2 succeeded)" 200
check_eq rules_all_done_ready "$(tstate "$RR" done)" queued
check_eq rules_claim_done "$(claimed "$WR" 4)" "done"
check_eq rules_finish_onfail "$(finish_task "$WR" "$RR" onfail succeeded)" 200
check_eq rules_finish_done "$(finish_task "$WR" "$RR" done succeeded)" 200
check_eq rules_run_failed "$(rstate "$RR")" failed
check_eq rules_run_reason "$(sql "SELECT reason FROM runs WHERE id = $RR")" "1 task failed: r1"
check_eq rules_counters "$(sql "SELECT tasks_done || '/' || tasks_failed FROM runs WHERE id = $RR")" "5/1"

# --- fencing: stale attempts, another worker, duplicate completions ------------------------------------
apply stale '
pipeline "stale" { max_active_runs = 10, defaults = { resources = { queue = "sq" } } }
task "s" { exec = "true", retries = { max = 1, backoff = "50ms" } }' || not_ok apply_stale "apply failed"
WS=$(register ws sq)
WS2=$(register ws2 sq)
RS=$(trigger stale)
TS=$(tid "$RS" s)
check_eq stale_claim_1 "$(claimed "$WS" 1)" s
check_eq stale_fail_1 "$(complete "$WS" "$TS" 1 failed '"exit_code": 1, "error": "boom"')" 200
check_eq stale_fail_1_retrying "$(j .state)" retrying
# the retry is handed to a claim held open, once its backoff has passed
check_eq stale_claim_2 "$(claimed "$WS" 1 3000)" s
check_eq stale_attempt_2 "$(j '.tasks[0].attempt')" 2
printf 'old attempt\n' | z >"$TMP/chunk"
BEFORE=$(snapshot)
check_eq stale_complete_409 "$(complete "$WS" "$TS" 1 succeeded)" 409
check_contains stale_complete_message "$(j .error.message)" "attempt 1 of task $TS is not current"
check_eq stale_heartbeat_200 "$(heartbeat "$WS" "$TS" 1)" 200
check_eq stale_heartbeat_lists_it "$(j '.stale | map("\(.attempt):\(.reason)") | join(",")')" "1:failed"
check_eq stale_log_409 "$(wk POST "/v1/workers/$WS/attempts/$TS/1/logs?seq=0" -H 'X-Weir-Raw-Length: 12' --data-binary @"$TMP/chunk")" 409
check_eq other_worker_complete_409 "$(complete "$WS2" "$TS" 2 succeeded)" 409
check_eq other_worker_heartbeat_stale "$(heartbeat "$WS2" "$TS" 2 >/dev/null; j '.stale | map("\(.attempt):\(.reason)") | join(",")')" "2:superseded"
check_eq other_worker_log_409 "$(wk POST "/v1/workers/$WS2/attempts/$TS/2/logs?seq=0" -H 'X-Weir-Raw-Length: 12' --data-binary @"$TMP/chunk")" 409
check_eq future_attempt_409 "$(complete "$WS" "$TS" 3 succeeded)" 409
# progress rides on heartbeats: a stale attempt's, or another worker's, is not stored
hb_progress() { wk POST "/v1/workers/$1/heartbeat" -d "{\"attempts\": [{\"task_id\": $2, \"attempt\": $3, \"progress\": $4}]}"; }
check_eq progress_stale_200 "$(hb_progress "$WS" "$TS" 1 '{"fraction": 0.5, "note": "old"}')" 200
check_eq progress_other_worker_200 "$(hb_progress "$WS2" "$TS" 2 '{"fraction": 0.5, "note": "not mine"}')" 200
check_eq progress_not_stored "$(sql "SELECT count(*) FROM attempts WHERE task_id = $TS AND progress IS NOT NULL")" 0
check_eq progress_out_of_range_400 "$(hb_progress "$WS" "$TS" 2 '{"fraction": 1.5}')" 400
check_contains progress_400_names "$(j .error.message)" '"progress"'
check_eq stale_refusals_changed_nothing "$(snapshot)" "$BEFORE"
check_eq progress_current_200 "$(hb_progress "$WS" "$TS" 2 '{"fraction": 0.5, "note": "epoch 5/10"}')" 200
check_eq progress_current_stored "$(sql "SELECT progress->>'fraction' || ' ' || (progress->>'note') FROM attempts WHERE task_id = $TS AND number = 2")" "0.5 epoch 5/10"
check_eq stale_current_heartbeat "$(heartbeat "$WS" "$TS" 2 >/dev/null; j '.stale | length')" 0
check_eq stale_complete_current "$(complete "$WS" "$TS" 2 succeeded '"metrics": {"loss": 0.25}')" 200
check_eq stale_complete_current_state "$(j '"\(.state) \(.duplicate)"')" "succeeded null"
EV=$(sql "SELECT count(*) FROM events")
check_eq duplicate_completion_200 "$(complete "$WS" "$TS" 2 succeeded '"metrics": {"loss": 0.25}')" 200
check_eq duplicate_completion_flag "$(j .duplicate)" true
check_eq duplicate_no_event "$(sql "SELECT count(*) FROM events")" "$EV"
check_eq duplicate_completed_once "$(sql "SELECT count(*) FROM events WHERE task_id = $TS AND to_state = 'succeeded'")" 1
check_eq duplicate_conflicting_409 "$(complete "$WS" "$TS" 2 failed)" 409
check_eq duplicate_of_old_failure "$(complete "$WS" "$TS" 1 failed '"exit_code": 1' >/dev/null; j .duplicate)" true
check_eq stale_attempts_table "$(sql "SELECT string_agg(number || ':' || state || ':' || worker_id, ' ' ORDER BY number) FROM attempts WHERE task_id = $TS")" \
  "1:failed:$WS 2:succeeded:$WS"
check_eq stale_run_succeeded "$(rstate "$RS")" succeeded
check_eq stale_metrics_kept "$(sql "SELECT metrics->>'loss' FROM tasks WHERE id = $TS")" 0.25

# --- retries: fails twice, succeeds on the third attempt ----------------------------------------------
apply retry '
pipeline "retry" { max_active_runs = 10, defaults = { resources = { queue = "tq" } } }
task "flaky" { exec = "true", retries = { max = 2, backoff = "100ms" } }
task "never" { exec = "false", retries = { max = 1, backoff = "100ms" } }' || not_ok apply_retry "apply failed"
WT=$(register wt tq)
RT=$(trigger retry)
TF=$(tid "$RT" flaky)
TN=$(tid "$RT" never)
check_eq retry_claim_1 "$(claimed "$WT" 4)" "flaky never"
check_eq retry_fail_1 "$(complete "$WT" "$TF" 1 failed '"exit_code": 2')" 200
check_eq retry_fail_1_state "$(j .state)" retrying
check_eq retry_backoff_bounds "$(sql "SELECT (detail->>'retry_in_ms')::int BETWEEN 50 AND 100 FROM events WHERE task_id = $TF AND to_state = 'retrying'")" t
T0=$(now_ms)
check_eq retry_claim_2 "$(claimed "$WT" 1 3000)" flaky
check_eq retry_backoff_respected "$(sql "SELECT q.at - r.at >= ((r.detail->>'retry_in_ms')::int - 1) * interval '1 ms'
  FROM events r JOIN events q ON q.task_id = r.task_id AND q.from_state = 'retrying'
  WHERE r.task_id = $TF AND r.to_state = 'retrying'")" t
check_eq retry_claim_2_after_backoff "$([ $(($(now_ms) - T0)) -lt 1500 ] && echo prompt)" prompt
check_eq retry_fail_2 "$(complete "$WT" "$TF" 2 timed_out)" 200
check_eq retry_fail_2_state "$(j .state)" retrying
check_eq retry_claim_3 "$(claimed "$WT" 1 3000)" flaky
check_eq retry_succeed_3 "$(complete "$WT" "$TF" 3 succeeded)" 200
check_eq retry_succeed_3_state "$(j .state)" succeeded
check_eq retry_attempts "$(sql "SELECT string_agg(number || ':' || state, ' ' ORDER BY number) FROM attempts WHERE task_id = $TF")" \
  "1:failed 2:timed_out 3:succeeded"
check_eq retry_events "$(sql "SELECT string_agg(from_state || '>' || to_state, ' ' ORDER BY id) FROM events WHERE task_id = $TF")" \
  "pending>queued queued>running running>retrying retrying>queued queued>running running>retrying retrying>queued queued>running running>succeeded"
check_eq retry_failures_counted "$(sql "SELECT failures || '/' || attempt FROM tasks WHERE id = $TF")" "2/3"
check_eq retry_timed_out_error "$(sql "SELECT string_agg(detail->>'error', ',' ORDER BY id) FROM events WHERE task_id = $TF AND to_state = 'retrying'")" \
  "exit status 2,timed out"
# out of retries: the second failure fails the task, and the run
check_eq retry_never_1 "$(complete "$WT" "$TN" 1 failed '"exit_code": 1')" 200
check_eq retry_never_2 "$(claimed "$WT" 1 3000)" never
check_eq retry_never_fail "$(complete "$WT" "$TN" 2 failed '"exit_code": 1, "error": "still broken"' >/dev/null; j .state)" failed
check_eq retry_run_failed "$(rstate "$RT")" failed
check_eq retry_run_reason "$(sql "SELECT reason FROM runs WHERE id = $RT")" "1 task failed: never"
check_eq retry_task_error "$(sql "SELECT error FROM tasks WHERE id = $TN")" "still broken"

# --- leases: a silent claim is lost after the lease; heartbeats keep one alive -------------------------
apply lease '
pipeline "lease" { max_active_runs = 10, defaults = { resources = { queue = "lq" } } }
task "l" { exec = "true" }' || not_ok apply_lease "apply failed"
WL=$(register wl lq)
WL2=$(register wl2 lq)
RL=$(trigger lease)
TL=$(tid "$RL" l)
check_eq lease_claim_1 "$(claimed "$WL" 1)" l
check_eq lease_ms_answered "$(j '.tasks[0].lease_ms')" 2000
T0=$(now_ms)
# wl never heartbeats: wl2's claim, held open, gets the task once the 2 s lease has run out
check_eq lease_handed_over "$(claimed "$WL2" 1 6000)" l
EL=$(($(now_ms) - T0))
check_eq lease_not_before_expiry "$([ "$EL" -ge 1500 ] && echo late-enough)" late-enough
check_eq lease_promptly_after "$([ "$EL" -lt 4000 ] && echo prompt)" prompt
check_eq lease_next_attempt "$(j '.tasks[0].attempt')" 2
check_eq lease_attempts "$(sql "SELECT string_agg(number || ':' || state || ':' || worker_id, ' ' ORDER BY number) FROM attempts WHERE task_id = $TL")" \
  "1:lost:$WL 2:running:$WL2"
check_eq lease_lost_not_a_failure "$(sql "SELECT lost || '/' || failures FROM tasks WHERE id = $TL")" "1/0"
check_eq lease_lost_event "$(sql "SELECT from_state || '>' || to_state || ':' || (detail->>'error') FROM events WHERE task_id = $TL AND attempt = 1 AND from_state = 'running'")" \
  "running>queued:lease expired"
check_eq lease_lost_heartbeat_stale "$(heartbeat "$WL" "$TL" 1 >/dev/null; j '.stale | map("\(.attempt):\(.reason)") | join(",")')" "1:lost"
check_eq lease_lost_complete_409 "$(complete "$WL" "$TL" 1 succeeded)" 409
# wl2 heartbeats every 0.4 s for 3 s: well past the 2 s lease, the attempt stays its own
for i in 1 2 3 4 5 6 7 8; do heartbeat "$WL2" "$TL" 2 >/dev/null; sleep 0.4; done
check_eq lease_heartbeats_keep_it "$(heartbeat "$WL2" "$TL" 2 >/dev/null; j '.stale | length')" 0
check_eq lease_kept_running "$(sql "SELECT state || ':' || attempt FROM tasks WHERE id = $TL")" "running:2"
check_eq lease_renewed "$(sql "SELECT lease_expires_at > now() + interval '1 second' FROM tasks WHERE id = $TL")" t
check_eq lease_renewed_on_attempt "$(sql "SELECT a.heartbeat_at IS NOT NULL AND a.lease_expires_at = t.lease_expires_at
  FROM attempts a JOIN tasks t ON t.id = a.task_id AND a.number = t.attempt WHERE t.id = $TL")" t
check_eq lease_complete_2 "$(complete "$WL2" "$TL" 2 succeeded)" 200
check_eq lease_run_succeeded "$(rstate "$RL")" succeeded

# --- a heartbeat's batch: each table read once, whatever the batch's size (0018_heartbeat_batches.sql) -----
apply beats '
pipeline "beats" { max_active_runs = 10, defaults = { resources = { queue = "bq" } } }
local items = {}
for i = 1, 8 do items[i] = i end
foreach("b", items, function() return { exec = "true" } end)' || not_ok apply_beats "apply failed"
WB=$(register wb bq 8)
RB=$(trigger beats)
check_eq beats_claimed "$(claim "$WB" 8 >/dev/null; j '.tasks | length')" 8
BEATS=$(sql "SELECT jsonb_agg(jsonb_build_object('task_id', id, 'attempt', attempt) ORDER BY id) FROM tasks WHERE run_id = $RB")
TB1=$(sql "SELECT min(id) FROM tasks WHERE run_id = $RB")
# the batch names its first task twice, the second time with an attempt that does not exist
BEATS2=$(echo "$BEATS" | jq -c ". + [{\"task_id\": $TB1, \"attempt\": 2}]")
check_eq beats_batch_200 "$(wk POST "/v1/workers/$WB/heartbeat" -d "{\"attempts\": $BEATS2}")" 200
check_eq beats_only_the_wrong_one_stale "$(j '.stale | map("\(.task_id):\(.attempt):\(.reason)") | join(",")')" "$TB1:2:unknown attempt"
check_eq beats_all_renewed "$(sql "SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task_id AND a.number = t.attempt
  WHERE t.run_id = $RB AND a.heartbeat_at IS NOT NULL AND a.lease_expires_at = t.lease_expires_at")" 8
# a renewal reads tasks and attempts once each: no scan of either repeated per reported attempt
explained "$PGCONN" >"$TMP/beats.out" <<SQL
SET auto_explain.log_analyze = on;
SELECT weir_heartbeat($WB, '$BEATS', 2000)->>'code';
SQL
check_eq beats_plans_explained "$(grep -c -e 'Update on tasks' -e 'Update on attempts' "$TMP/beats.out")" 2
check_eq beats_scans_once "$(grep -E '(Scan|Scan using [a-z_]+) on (tasks|attempts|h)( [a-z_0-9]+)? .*loops=([2-9]|[1-9][0-9]+)\)' "$TMP/beats.out" | wc -l)" 0
for t in $(echo "$BEATS" | jq -r '.[].task_id'); do complete "$WB" "$t" 1 succeeded >/dev/null; done
check_eq beats_run_succeeded "$(wait_for 10 "SELECT state FROM runs WHERE id = $RB" succeeded)" succeeded

# --- long-poll hand-off: a held claim gets the successor as soon as its predecessor completes ----------
apply handoff '
pipeline "handoff" { max_active_runs = 10, defaults = { resources = { queue = "hq" } } }
local p = task "p" { exec = "true" }
task "q" { exec = "true", after = p }' || not_ok apply_handoff "apply failed"
WH=$(register wh hq 2)
WH2=$(register wh2 hq 2)
RH=$(trigger handoff)
check_eq handoff_claim_p "$(claimed "$WH" 1)" p
hold_claim "$WH2" "$TMP/held"
check_eq handoff_complete_p "$(finish_task "$WH" "$RH" p succeeded)" 200
wait $HELD
EL=$(($(now_ms) - T0))
check_eq handoff_successor_delivered "$(jq -r '[.tasks[].task] | join(" ")' "$TMP/held")" q
check_eq handoff_prompt "$([ "$EL" -lt 1000 ] && echo prompt || echo "${EL}ms")" prompt
check_eq handoff_leased_to_holder "$(sql "SELECT state || ':' || worker_id FROM tasks WHERE run_id = $RH AND name = 'q'")" "running:$WH2"
check_eq handoff_complete_q "$(finish_task "$WH2" "$RH" q succeeded)" 200
check_eq handoff_run_succeeded "$(rstate "$RH")" succeeded
# a newer claim of the same worker answers the older one at once, empty
hold_claim "$WH" "$TMP/older"
claim "$WH" 1 0 >/dev/null
wait $HELD
check_eq claim_newer_wins "$(jq -c . "$TMP/older")" '{"tasks":[],"cancel":[]}'
check_eq claim_newer_wins_prompt "$([ $(($(now_ms) - T0)) -lt 1000 ] && echo prompt)" prompt

# --- cancel: a run while its task runs; a single task ------------------------------------------------
apply cancel '
pipeline "cancel" { max_active_runs = 10, defaults = { resources = { queue = "cq" } } }
local long = task "long" { exec = "sleep 100" }
task "after" { exec = "true", after = long }
task "side" { exec = "true" }' || not_ok apply_cancel "apply failed"
WC=$(register wc cq 2)
RC=$(trigger cancel)
TLONG=$(tid "$RC" long)
check_eq cancel_claim "$(claimed "$WC" 2)" "long side"
check_eq cancel_side_done "$(finish_task "$WC" "$RC" side succeeded)" 200
# the worker keeps a claim open with no free slot: it only waits for cancels
curl -s -o "$TMP/cancels" -H "Authorization: Bearer $WORK" -X POST "$URL/v1/workers/$WC/claim" \
  -d '{"free_slots": 0, "wait_ms": 10000}' &
HELD=$!
wait_claims 1
T0=$(now_ms)
check_eq cancel_run_200 "$(op POST "/v1/runs/$RC/cancel")" 200
check_eq cancel_run_answer "$(j '"\(.state) \(.cancelled)"')" "cancelled 2"
wait $HELD
EL=$(($(now_ms) - T0))
check_eq cancel_delivered "$(jq -c '[(.tasks | length), (.cancel[] | [.task_id, .attempt])]' "$TMP/cancels")" "[0,[$TLONG,1]]"
check_eq cancel_delivered_prompt "$([ "$EL" -lt 1000 ] && echo prompt || echo "${EL}ms")" prompt
check_eq cancel_heartbeat_stale "$(heartbeat "$WC" "$TLONG" 1 >/dev/null; j '.stale | map("\(.attempt):\(.reason)") | join(",")')" "1:cancelled"
check_eq cancel_run_state "$(rstate "$RC")" cancelled
check_eq cancel_tasks "$(states "$RC")" "after=cancelled long=cancelled side=succeeded"
check_eq cancel_attempt "$(sql "SELECT state FROM attempts WHERE task_id = $TLONG")" cancelled
check_eq cancel_events "$(sql "SELECT string_agg(coalesce(t.name, 'run') || ':' || e.from_state || '>' || e.to_state, ' ' ORDER BY t.name NULLS LAST)
  FROM events e LEFT JOIN tasks t ON t.id = e.task_id WHERE e.run_id = $RC AND e.to_state = 'cancelled'")" \
  "after:pending>cancelled long:running>cancelled run:running>cancelled"
check_eq cancel_late_completion_409 "$(complete "$WC" "$TLONG" 1 failed '"exit_code": -15')" 409
check_eq cancel_again_409 "$(op POST "/v1/runs/$RC/cancel")" 409
check_contains cancel_again_message "$(j .error.message)" "already ended (cancelled)"
check_eq cancel_task_of_ended_409 "$(op POST "/v1/runs/$RC/tasks/after/cancel")" 409
check_eq cancel_viewer_403 "$(vw POST "/v1/runs/$RC/cancel")" 403

# one task: it is cancelled, its dependents skipped, the worker told on its next claim
RC2=$(trigger cancel)
T2=$(tid "$RC2" long)
check_eq task_cancel_claim "$(claimed "$WC" 1)" long
check_eq task_cancel_200 "$(op POST "/v1/runs/$RC2/tasks/long/cancel")" 200
check_eq task_cancel_answer "$(j '"\(.task) \(.state)"')" "long cancelled"
check_eq task_cancel_dependent_skipped "$(states "$RC2")" "after=skipped long=cancelled side=queued"
check_eq task_cancel_notice "$(claim "$WC" 0 5000 >/dev/null; jq -c '[.cancel[] | [.task_id, .attempt]]' "$BODY")" "[[$T2,1]]"
check_eq task_cancel_again_409 "$(op POST "/v1/runs/$RC2/tasks/long/cancel")" 409
check_contains task_cancel_again_message "$(j .error.message)" "already finished (cancelled)"
check_eq task_cancel_queued "$(op POST "/v1/runs/$RC2/tasks/side/cancel")" 200
check_eq task_cancel_run_ends "$(rstate "$RC2" | grep -Ev '^(queued|running)$')" "$(rstate "$RC2")"
check_eq task_cancel_counters "$(sql "SELECT tasks_done || '/' || tasks_total FROM runs WHERE id = $RC2")" "3/3"
check_eq task_cancel_run_reason "$(sql "SELECT state || ': ' || reason FROM runs WHERE id = $RC2")" 'succeeded: task "long" cancelled by ops'

# --- retry: re-runs what failed or was skipped, keeps what succeeded -------------------------------------
check_eq retry_running_409 "$(op POST "/v1/runs/$(trigger diamond)/retry" -d '{}')" 409
check_contains retry_running_message "$(j .error.message)" "still running"
op POST "/v1/runs/$(sql "SELECT max(id) FROM runs")/cancel" >/dev/null
check_eq retry_succeeded_409 "$(op POST "/v1/runs/$RS/retry" -d '{}')" 409
check_contains retry_succeeded_message "$(j .error.message)" "no failed, skipped or cancelled task"
# the rules run: r1 failed, succ skipped; r2, done, onfail succeeded
R2_ATT=$(sql "SELECT attempt FROM tasks WHERE run_id = $RR AND name = 'r2'")
check_eq retry_200 "$(op POST "/v1/runs/$RR/retry" -d '{}')" 200
check_eq retry_answer "$(j '"\(.state) \(.reset)"')" "running 2"
check_eq retry_reset_states "$(states "$RR")" "done=succeeded onfail=succeeded r1=queued r2=succeeded succ=pending"
check_eq retry_counters_reset "$(sql "SELECT tasks_done || '/' || tasks_failed || ':' || reason FROM runs WHERE id = $RR")" "3/0:"
check_eq retry_again_while_running_409 "$(op POST "/v1/runs/$RR/retry" -d '{}')" 409
check_eq retry_claim_r1 "$(claimed "$WR" 4)" r1
check_eq retry_attempt_counts_on "$(j '.tasks[0].attempt')" 2
check_eq retry_r1_ok "$(finish_task "$WR" "$RR" r1 succeeded)" 200
check_eq retry_succ_ready "$(claimed "$WR" 4)" succ
check_eq retry_succ_ok "$(finish_task "$WR" "$RR" succ succeeded)" 200
check_eq retry_run_succeeded "$(rstate "$RR")" succeeded
check_eq retry_kept_attempts "$(sql "SELECT string_agg(name || ':' || attempt, ' ' ORDER BY name) FROM tasks WHERE run_id = $RR")" \
  "done:1 onfail:1 r1:2 r2:$R2_ATT succ:1"
check_eq retry_final_counters "$(sql "SELECT tasks_done || '/' || tasks_failed FROM runs WHERE id = $RR")" "5/0"
check_eq retry_run_events "$(sql "SELECT string_agg(from_state || '>' || to_state, ' ' ORDER BY id) FROM events WHERE run_id = $RR AND kind = 'run.state'")" \
  "queued>running running>failed failed>queued queued>running running>succeeded"
# one task and what depends on it
check_eq retry_task_200 "$(op POST "/v1/runs/$RR/retry" -d '{"task": "r2"}')" 200
check_eq retry_task_reset "$(states "$RR")" "done=pending onfail=pending r1=succeeded r2=queued succ=pending"
check_eq retry_task_unknown_404 "$(op POST "/v1/runs/$R/retry" -d '{"task": "zz"}')" 404
check_eq retry_task_r2 "$(claimed "$WR" 4)" r2
check_eq retry_task_r2_ok "$(finish_task "$WR" "$RR" r2 succeeded)" 200
check_eq retry_task_downstream "$(claimed "$WR" 4)" "done succ"
check_eq retry_task_onfail_skipped "$(tstate "$RR" onfail)" skipped
finish_task "$WR" "$RR" done succeeded >/dev/null
finish_task "$WR" "$RR" succ succeeded >/dev/null
check_eq retry_task_run_succeeded "$(rstate "$RR")" succeeded

# --- max_active_runs = 1: the second run waits, queued, and starts when the first ends ----------------
apply serial '
pipeline "serial" { max_active_runs = 1, defaults = { resources = { queue = "mq" } } }
task "only" { exec = "true" }' || not_ok apply_serial "apply failed"
WM=$(register wm mq)
RM1=$(trigger serial)
check_eq serial_second_queued "$(op POST /v1/pipelines/serial/runs -d '{}'; j .state)" "201queued"
RM2=$(j .run)
check_eq serial_second_tasks_wait "$(states "$RM2")" "only=pending"
check_eq serial_claim_first_only "$(claimed "$WM" 4 >/dev/null; j '[.tasks[].run_id] | join(" ")')" "$RM1"
check_eq serial_first_done "$(finish_task "$WM" "$RM1" only succeeded)" 200
check_eq serial_second_started "$(rstate "$RM2")" running
check_eq serial_second_event "$(sql "SELECT string_agg(from_state || '>' || to_state, ' ' ORDER BY id) FROM events WHERE run_id = $RM2 AND kind = 'run.state'")" \
  "queued>running"
check_eq serial_claim_second "$(claimed "$WM" 4 >/dev/null; j '[.tasks[].run_id] | join(" ")')" "$RM2"
RM3=$(trigger serial)
check_eq serial_cancel_queued "$(op POST "/v1/runs/$RM3/cancel")" 200
check_eq serial_cancelled_queued "$(rstate "$RM3"):$(states "$RM3")" "cancelled:only=cancelled"
finish_task "$WM" "$RM2" only succeeded >/dev/null
check_eq serial_second_ends "$(rstate "$RM2")" succeeded

# --- approvals ----------------------------------------------------------------------------------------
apply approve '
pipeline "approve" { max_active_runs = 10, defaults = { resources = { queue = "aq" } } }
local build = task "build" { exec = "true" }
local ok = approval "ok" { after = build, message = "ship run ${run.id}?" }
task "ship" { exec = "true", after = ok }' || not_ok apply_approve "apply failed"
WA=$(register wa aq)
RA=$(trigger approve)
check_eq approve_claim "$(claimed "$WA" 4)" build
BEFORE=$(snapshot)
check_eq approve_not_yet_409 "$(op POST "/v1/runs/$RA/tasks/ok/approve" -d '{}')" 409
check_contains approve_not_yet_message "$(j .error.message)" "not waiting for approval (it is pending)"
check_eq approve_not_approval_409 "$(op POST "/v1/runs/$RA/tasks/build/approve" -d '{}')" 409
check_contains approve_not_approval_message "$(j .error.message)" "not an approval"
check_eq approve_viewer_403 "$(vw POST "/v1/runs/$RA/tasks/ok/approve" -d '{}')" 403
check_eq approve_bad_body_400 "$(op POST "/v1/runs/$RA/tasks/ok/approve" -d '{"comment": 5}')" 400
check_eq approve_refusals_changed_nothing "$(snapshot)" "$BEFORE"
check_eq approve_build_done "$(finish_task "$WA" "$RA" build succeeded)" 200
check_eq approve_waiting "$(states "$RA")" "build=succeeded ok=waiting ship=pending"
check_eq approve_never_claimed "$(claimed "$WA" 4)" ""
check_eq approve_200 "$(op POST "/v1/runs/$RA/tasks/ok/approve" -d '{"comment": "lgtm"}')" 200
check_eq approve_answer "$(j '"\(.task) \(.state)"')" "ok succeeded"
check_eq approve_decision "$(sql "SELECT (decision->>'approved') || ':' || (decision->>'by') || ':' || (decision->>'comment') FROM tasks WHERE run_id = $RA AND name = 'ok'")" \
  "true:ops:lgtm"
check_eq approve_downstream_queued "$(tstate "$RA" ship)" queued
check_eq approve_again_409 "$(op POST "/v1/runs/$RA/tasks/ok/approve" -d '{}')" 409
check_contains approve_again_message "$(j .error.message)" "it is succeeded"
check_eq approve_event "$(sql "SELECT from_state || '>' || to_state || ':' || actor FROM events e JOIN tasks t ON t.id = e.task_id WHERE t.run_id = $RA AND t.name = 'ok' AND e.from_state = 'waiting'")" \
  "waiting>succeeded:ops"
check_eq approve_ship "$(claimed "$WA" 4)" ship
finish_task "$WA" "$RA" ship succeeded >/dev/null
check_eq approve_run_succeeded "$(rstate "$RA")" succeeded

RA2=$(trigger approve)
claimed "$WA" 4 >/dev/null
finish_task "$WA" "$RA2" build succeeded >/dev/null
check_eq reject_200 "$(op POST "/v1/runs/$RA2/tasks/ok/reject")" 200
check_eq reject_answer "$(j .state)" rejected
check_eq reject_downstream_skipped "$(states "$RA2")" "build=succeeded ok=rejected ship=skipped"
check_eq reject_run_ended "$(rstate "$RA2")" succeeded
check_eq reject_run_reason "$(sql "SELECT reason FROM runs WHERE id = $RA2")" 'approval "ok" rejected by ops'
check_eq reject_again_409 "$(op POST "/v1/runs/$RA2/tasks/ok/reject")" 409
check_eq reject_retry_reruns_it "$(op POST "/v1/runs/$RA2/retry" -d '{}' >/dev/null; states "$RA2")" "build=succeeded ok=waiting ship=pending"
op POST "/v1/runs/$RA2/tasks/ok/approve" >/dev/null
check_eq reject_retry_approved "$(claimed "$WA" 4)" ship
finish_task "$WA" "$RA2" ship succeeded >/dev/null
check_eq reject_retry_run "$(rstate "$RA2"):$(sql "SELECT reason FROM runs WHERE id = $RA2")" "succeeded:"

# --- gates --------------------------------------------------------------------------------------------
apply gated '
pipeline "gated" { max_active_runs = 10, defaults = { resources = { queue = "gq" } } }
local ev = task "eval" { exec = "true" }
local bless = gate "bless" { metrics = ev, thresholds = { accuracy = { min = 0.8 }, loss = { max = 0.5 } } }
local pred = gate "pred" { metrics = ev, predicate = "m.eval.recall >= 0.6" }
task "push" { exec = "true", after = bless }
task "push2" { exec = "true", after = pred }' || not_ok apply_gated "apply failed"
WG=$(register wg gq)
# gate_run METRICS-JSON : a run whose eval task reports these metrics; prints the run id once its gates are decided.
gate_run() {
  gr=$(trigger gated)
  claimed "$WG" 4 >/dev/null
  finish_task "$WG" "$gr" eval succeeded "\"metrics\": $1" >/dev/null
  wait_for 3 "SELECT count(*) FROM tasks WHERE run_id = $gr AND kind = 'gate' AND state IN ('blessed', 'rejected')" 2 >/dev/null
  echo "$gr"
}
RG=$(gate_run '{"accuracy": 0.91, "loss": 0.2, "recall": 0.7}')
check_eq gate_pass_blessed "$(states "$RG")" "bless=blessed eval=succeeded pred=blessed push=queued push2=queued"
check_eq gate_pass_decision "$(sql "SELECT decision->>'summary' FROM tasks WHERE run_id = $RG AND name = 'bless'")" "all checks passed"
check_eq gate_pass_event "$(sql "SELECT string_agg(e.from_state || '>' || e.to_state, ' ' ORDER BY e.id) FROM events e JOIN tasks t ON t.id = e.task_id WHERE t.run_id = $RG AND t.name = 'bless'")" \
  "pending>queued queued>blessed"
check_eq gate_pass_never_to_worker "$(claimed "$WG" 4)" "push push2"
finish_task "$WG" "$RG" push succeeded >/dev/null
finish_task "$WG" "$RG" push2 succeeded >/dev/null
check_eq gate_pass_run "$(rstate "$RG")" succeeded

RG2=$(gate_run '{"accuracy": 0.5, "loss": 0.2, "recall": 0.3}')
check_eq gate_fail_rejected "$(states "$RG2")" "bless=rejected eval=succeeded pred=rejected push=skipped push2=skipped"
check_contains gate_fail_names_metric "$(sql "SELECT decision->>'summary' FROM tasks WHERE run_id = $RG2 AND name = 'bless'")" "accuracy 0.5 < min 0.8"
check_eq gate_fail_only_failing_metric "$(sql "SELECT decision->>'summary' FROM tasks WHERE run_id = $RG2 AND name = 'bless'")" "accuracy 0.5 < min 0.8"
check_contains gate_predicate_false "$(sql "SELECT decision->>'summary' FROM tasks WHERE run_id = $RG2 AND name = 'pred'")" "predicate is false"
check_eq gate_fail_run_ended "$(rstate "$RG2")" succeeded
check_contains gate_fail_run_reason "$(sql "SELECT reason FROM runs WHERE id = $RG2")" 'gate "'
check_eq gate_fail_api_decision "$(vw GET "/v1/runs/$RG2" >/dev/null; j '.tasks[] | select(.name == "bless") | .decision.blessed')" false
RG3=$(gate_run '{"accuracy": 0.95}')
check_eq gate_missing_metric_rejected "$(tstate "$RG3" bless)" rejected
check_contains gate_missing_metric_named "$(sql "SELECT decision->>'summary' FROM tasks WHERE run_id = $RG3 AND name = 'bless'")" "loss was not reported"
check_eq gate_missing_metric_predicate "$(tstate "$RG3" pred)" rejected
check_eq gate_decided_once "$(sql "SELECT count(*) FROM events e JOIN tasks t ON t.id = e.task_id WHERE t.kind = 'gate' AND e.from_state = 'queued'")" 6

# --- logs: zlib chunks in, plain text out, retries of a chunk stored once, the cap -----------------------
apply logs '
pipeline "logs" { max_active_runs = 10, defaults = { resources = { queue = "gl" } } }
task "talk" { exec = "true" }
task "loud" { exec = "true" }' || not_ok apply_logs "apply failed"
WLG=$(register wlg gl)
RLG=$(trigger logs)
TT=$(tid "$RLG" talk)
TLD=$(tid "$RLG" loud)
check_eq logs_claim "$(claimed "$WLG" 4)" "loud talk"
# chunk WORKER TASK ATTEMPT SEQ TEXT : posts TEXT as a zlib chunk; prints the status.
chunk() {
  printf '%s' "$5" | z >"$TMP/chunk"
  wk POST "/v1/workers/$1/attempts/$2/$3/logs?seq=$4" -H 'Content-Type: application/zlib' \
    -H "X-Weir-Raw-Length: ${#5}" --data-binary @"$TMP/chunk"
}
check_eq logs_chunk_0 "$(chunk "$WLG" "$TT" 1 0 "hello
")" 200
check_eq logs_chunk_0_answer "$(j '"\(.log_bytes) \(.truncated)"')" "6 false"
check_eq logs_chunk_1 "$(chunk "$WLG" "$TT" 1 1 "world
")" 200
check_eq logs_chunk_1_again "$(chunk "$WLG" "$TT" 1 1 "WORLD, resent
")" 200
check_eq logs_chunk_1_again_ignored "$(j .log_bytes)" 12
check_eq logs_chunks_stored_once "$(sql "SELECT count(*) || '/' || sum(raw_len) FROM attempt_logs WHERE task_id = $TT")" "2/12"
# getlog RUN TASK [QUERY] : the log text into $TMP/log, headers into $TMP/hdr; prints the status.
getlog() {
  curl -s -D "$TMP/hdr" -o "$TMP/log" -w '%{http_code}' -H "Authorization: Bearer $VIEW" "$URL/v1/runs/$1/tasks/$2/logs${3:+?$3}"
}
# keepalive : wlg heartbeats both its attempts, as a worker does while its steps run (this section
# may take longer than the 2 s lease on a slow, sanitized build).
keepalive() { wk POST "/v1/workers/$WLG/heartbeat" -d "{\"attempts\": [{\"task_id\": $TT, \"attempt\": 1}, {\"task_id\": $TLD, \"attempt\": 1}]}" >/dev/null; }
hdr() { grep -i "^$1:" "$TMP/hdr" | cut -d' ' -f2 | tr -d '\r'; }
check_eq logs_get_200 "$(getlog "$RLG" talk)" 200
check_eq logs_get_text "$(cat "$TMP/log")" "hello
world"
check_eq logs_get_headers "$(hdr X-Weir-Attempt) $(hdr X-Weir-Next-Seq) $(hdr X-Weir-Log-Complete) $(hdr X-Weir-Log-Truncated)" "1 2 false false"
check_eq logs_follow_after "$(getlog "$RLG" talk after=1; cat "$TMP/log")" "200world"
check_eq logs_follow_nothing_new "$(getlog "$RLG" talk after=2; wc -c <"$TMP/log" | tr -d ' ') $(hdr X-Weir-Next-Seq)" "2000 2"
keepalive
BEFORE=$(snapshot)
printf 'x' | z >"$TMP/chunk"
check_eq logs_missing_raw_length_400 "$(wk POST "/v1/workers/$WLG/attempts/$TT/1/logs?seq=2" --data-binary @"$TMP/chunk")" 400
check_contains logs_missing_raw_length_names "$(j .error.message)" "X-Weir-Raw-Length"
check_eq logs_missing_seq_400 "$(wk POST "/v1/workers/$WLG/attempts/$TT/1/logs" -H 'X-Weir-Raw-Length: 1' --data-binary @"$TMP/chunk")" 400
check_contains logs_missing_seq_names "$(j .error.message)" '"seq"'
check_eq logs_operator_403 "$(op POST "/v1/workers/$WLG/attempts/$TT/1/logs?seq=2" -H 'X-Weir-Raw-Length: 1' --data-binary @"$TMP/chunk")" 403
check_eq logs_refusals_changed_nothing "$(snapshot)" "$BEFORE"
keepalive
# the cap (--max-log 2KiB): a chunk that would pass it is dropped, the attempt marked truncated
check_eq logs_cap_first "$(chunk "$WLG" "$TLD" 1 0 "$(head -c 1500 /dev/zero | tr '\0' 'a')")" 200
check_eq logs_cap_first_kept "$(j .truncated)" false
check_eq logs_cap_second "$(chunk "$WLG" "$TLD" 1 1 "$(head -c 1000 /dev/zero | tr '\0' 'b')")" 200
check_eq logs_cap_truncated "$(j '"\(.truncated) \(.log_bytes)"')" "true 1500"
check_eq logs_cap_later_dropped "$(chunk "$WLG" "$TLD" 1 2 "c" >/dev/null; j .truncated)" true
check_eq logs_cap_marked "$(sql "SELECT log_truncated || ':' || log_bytes FROM attempts WHERE task_id = $TLD")" "true:1500"
check_eq logs_cap_read "$(getlog "$RLG" loud; wc -c <"$TMP/log" | tr -d ' '):$(tr -d 'a' <"$TMP/log" | wc -c | tr -d ' ')" "2001500:0"
check_eq logs_cap_header "$(hdr X-Weir-Log-Truncated)" true
keepalive
# the workers list while wlg holds two attempts
check_eq workers_list_200 "$(vw GET /v1/workers)" 200
check_eq workers_list_wlg "$(j '.workers[] | select(.name == "wlg") | "\(.slots) \(.slots_used) \(.queues | join(",")) \(.state)"')" "4 2 gl active"
check_eq workers_list_all "$(j '[.workers[].name] | sort | join(" ")')" \
  "$(sql "SELECT string_agg(name, ' ' ORDER BY name COLLATE \"C\") FROM workers")"
check_eq workers_list_idle "$(j '.workers[] | select(.name == "wd") | .slots_used')" 0
check_eq workers_list_worker_403 "$(wk GET /v1/workers)" 403
keepalive
check_eq logs_talk_done "$(finish_task "$WLG" "$RLG" talk succeeded)" 200
check_eq logs_loud_done "$(finish_task "$WLG" "$RLG" loud succeeded)" 200
check_eq logs_complete_after_finish "$(getlog "$RLG" talk; hdr X-Weir-Log-Complete)" "200true"
check_eq logs_chunk_after_finish_409 "$(chunk "$WLG" "$TT" 1 5 "late")" 409
check_eq logs_unknown_attempt_404 "$(getlog "$RLG" talk attempt=7)" 404
check_eq workers_list_released "$(vw GET /v1/workers >/dev/null; j '.workers[] | select(.name == "wlg") | .slots_used')" 0
# a worker that leaves is gone at once; an unknown one is 404; claiming again makes it active
check_eq worker_leave_200 "$(wk POST "/v1/workers/$WLG/leave" -d '{}')" 200
check_eq worker_leave_gone "$(vw GET /v1/workers >/dev/null; j '.workers[] | select(.name == "wlg") | .state')" gone
check_eq worker_leave_unknown_404 "$(wk POST /v1/workers/999999/leave -d '{}')" 404
check_eq worker_leave_viewer_403 "$(vw POST "/v1/workers/$WLG/leave" -d '{}')" 403
claim "$WLG" 0 0 >/dev/null
check_eq worker_back_after_claim "$(vw GET /v1/workers >/dev/null; j '.workers[] | select(.name == "wlg") | .state')" active

# --- artifacts ------------------------------------------------------------------------------------------
printf 'weights: 0.25 0.5\n' >"$TMP/model.txt"
SHA=$(sha256sum "$TMP/model.txt" | cut -d' ' -f1)
SIZE=$(wc -c <"$TMP/model.txt" | tr -d ' ')
z <"$TMP/model.txt" >"$TMP/model.z"
put() { wk PUT "/v1/artifacts/$1" -H "X-Weir-Size: $2" -H 'Content-Type: application/zlib' --data-binary @"$3"; }
BEFORE=$(sql "SELECT count(*) FROM artifacts")
OTHER=$(printf 'other' | sha256sum | cut -d' ' -f1)
check_eq artifact_wrong_sha_400 "$(put "$OTHER" "$SIZE" "$TMP/model.z")" 400
check_contains artifact_wrong_sha_message "$(j .error.message)" "SHA-256 $SHA"
check_eq artifact_size_short_400 "$(put "$SHA" $((SIZE - 4)) "$TMP/model.z")" 400
check_eq artifact_size_long_400 "$(put "$SHA" $((SIZE + 4)) "$TMP/model.z")" 400
check_eq artifact_no_size_400 "$(wk PUT "/v1/artifacts/$SHA" --data-binary @"$TMP/model.z")" 400
check_contains artifact_no_size_names "$(j .error.message)" "X-Weir-Size"
printf 'not zlib' >"$TMP/junk"
check_eq artifact_not_zlib_400 "$(put "$SHA" "$SIZE" "$TMP/junk")" 400
check_eq artifact_bad_path_400 "$(put "ABC" "$SIZE" "$TMP/model.z")" 400
check_eq artifact_viewer_put_403 "$(vw PUT "/v1/artifacts/$SHA" -H "X-Weir-Size: $SIZE" --data-binary @"$TMP/model.z")" 403
check_eq artifact_refusals_stored_nothing "$(sql "SELECT count(*) FROM artifacts")" "$BEFORE"
check_eq artifact_get_unknown_404 "$(vw GET "/v1/artifacts/$SHA")" 404
check_eq artifact_put_201 "$(put "$SHA" "$SIZE" "$TMP/model.z")" 201
check_eq artifact_put_again_200 "$(put "$SHA" "$SIZE" "$TMP/model.z")" 200
check_eq artifact_row "$(sql "SELECT size FROM artifacts WHERE sha256 = '$SHA'")" "$SIZE"
check_eq artifact_get_200 "$(curl -s -D "$TMP/hdr" -o "$TMP/got.z" -w '%{http_code}' -H "Authorization: Bearer $VIEW" "$URL/v1/artifacts/$SHA")" 200
check_eq artifact_get_size_header "$(hdr X-Weir-Size)" "$SIZE"
check_eq artifact_get_roundtrip "$(python3 -c 'import sys, zlib; sys.stdout.buffer.write(zlib.decompress(open(sys.argv[1], "rb").read()))' "$TMP/got.z" | sha256sum | cut -d' ' -f1)" "$SHA"

apply art '
pipeline "art" { max_active_runs = 10, defaults = { resources = { queue = "arq" } } }
local make = task "make" { exec = "true", outputs = { "data" } }
task "use" { exec = { "cat", make.outputs.data } }' || not_ok apply_art "apply failed"
WAR=$(register war arq)
RAR=$(trigger art)
check_eq artifact_claim_make "$(claimed "$WAR" 4)" make
check_eq artifact_no_inputs_for_root "$(j '.tasks[0].inputs | length')" 0
BEFORE=$(snapshot)
MISSING=$(printf 'never uploaded' | sha256sum | cut -d' ' -f1)
check_eq artifact_missing_output_400 "$(finish_task "$WAR" "$RAR" make succeeded "\"outputs\": {\"data\": \"$MISSING\"}")" 400
check_contains artifact_missing_output_names "$(j .error.message)" "output \"data\""
check_eq artifact_missing_output_changed_nothing "$(snapshot)" "$BEFORE"
check_eq artifact_complete_with_output "$(finish_task "$WAR" "$RAR" make succeeded "\"outputs\": {\"data\": \"$SHA\"}")" 200
check_eq artifact_producer "$(sql "SELECT producer_run_id || ':' || producer_task_id FROM artifacts WHERE sha256 = '$SHA'")" "$RAR:$(tid "$RAR" make)"
check_eq artifact_claim_use "$(claimed "$WAR" 4)" use
check_eq artifact_downstream_inputs "$(jq -S -c '.tasks[0].inputs' "$BODY")" "{\"make.data\":{\"sha256\":\"$SHA\",\"size\":$SIZE}}"
finish_task "$WAR" "$RAR" use succeeded >/dev/null
check_eq artifact_run_succeeded "$(rstate "$RAR")" succeeded

# --- many completions in one request, and the hand-off to the successors ---------------------------
apply handoff 'pipeline "handoff" { max_active_runs = 10, defaults = { resources = { queue = "hq" } } }
local a = task "a" { step = "noop" }
local b = task "b" { step = "noop" }
task "c" { step = "noop", after = { a, b } }
task "d" { step = "noop", after = { a, b } }' || not_ok handoff_apply "apply failed"
HR=$(trigger handoff)
HW=$(register hw hq 4)
check_eq handoff_claim_roots "$(claimed "$HW" 4)" "a b"
ta=$(tid "$HR" a); tb=$(tid "$HR" b)
# a bad report names its place in the list, and nothing of the request is applied
check_eq handoff_bad_item_400 "$(wk POST "/v1/workers/$HW/completions" -d "{\"completions\": [{\"task_id\": $ta, \"attempt\": 1,
  \"status\": \"succeeded\"}, {\"task_id\": $tb, \"attempt\": 1, \"status\": \"done\"}]}")" 400
check_contains handoff_bad_item_names_field "$(j .error.message)" 'completions[1].status'
check_eq handoff_bad_item_changes_nothing "$(states "$HR")" "a=running b=running c=pending d=pending"
check_eq handoff_empty_list_400 "$(wk POST "/v1/workers/$HW/completions" -d '{"completions": []}')" 400
check_eq handoff_bad_claim_400 "$(wk POST "/v1/workers/$HW/completions" -d "{\"completions\": [{\"task_id\": $ta, \"attempt\": 1,
  \"status\": \"succeeded\"}], \"claim\": {\"free_slots\": -1}}")" 400
check_contains handoff_bad_claim_names_field "$(j .error.message)" 'claim.free_slots'
# both reports in one request, with a claim for the two slots they free: the successors they
# make ready come back in the same answer, leased in the same transaction
check_eq handoff_complete_200 "$(wk POST "/v1/workers/$HW/completions" -d "{\"completions\": [{\"task_id\": $ta, \"attempt\": 1,
  \"status\": \"succeeded\", \"metrics\": {\"m\": 1}}, {\"task_id\": $tb, \"attempt\": 1, \"status\": \"succeeded\"}],
  \"claim\": {\"free_slots\": 2}}")" 200
check_eq handoff_results "$(jq -r '[.results[].state] | join(" ")' "$BODY")" "succeeded succeeded"
check_eq handoff_successors_handed "$(jq -r '[.tasks[].task] | sort | join(" ")' "$BODY")" "c d"
check_eq handoff_states "$(states "$HR")" "a=succeeded b=succeeded c=running d=running"
check_eq handoff_same_transaction "$(sql "SELECT count(DISTINCT at) FROM events WHERE run_id = $HR AND kind = 'task.state'
  AND ((task_id IN ($ta, $tb) AND to_state = 'succeeded') OR (task_id NOT IN ($ta, $tb) AND to_state = 'running'))")" 1
# the same reports again (a lost answer): duplicates, nothing handed twice; a stale one is refused in its place
tc=$(tid "$HR" c); td=$(tid "$HR" d)
check_eq handoff_repeat_200 "$(wk POST "/v1/workers/$HW/completions" -d "{\"completions\": [{\"task_id\": $ta, \"attempt\": 1,
  \"status\": \"succeeded\"}, {\"task_id\": $tc, \"attempt\": 7, \"status\": \"succeeded\"}, {\"task_id\": $td, \"attempt\": 1,
  \"status\": \"failed\", \"exit_code\": 3}], \"claim\": {\"free_slots\": 3}}")" 200
check_eq handoff_repeat_results "$(jq -r '[.results[] | (.code | tostring) + ":" + (.state // "-") + ":" + ((.duplicate // false) | tostring)] | join(" ")' "$BODY")" \
  "200:succeeded:true 409:-:false 200:failed:false"
check_eq handoff_repeat_nothing_handed "$(jq -r '.tasks | length' "$BODY")" 0
check_eq handoff_repeat_states "$(states "$HR")" "a=succeeded b=succeeded c=running d=failed"
check_eq handoff_complete_last "$(wk POST "/v1/workers/$HW/completions" -d "{\"completions\": [{\"task_id\": $tc, \"attempt\": 1,
  \"status\": \"succeeded\"}]}")" 200
check_eq handoff_run_failed "$(rstate "$HR")" failed
check_eq handoff_too_many_400 "$(wk POST "/v1/workers/$HW/completions" -d "{\"completions\": [$(python3 -c "print(','.join(['{\"task_id\": 1, \"attempt\": 1, \"status\": \"failed\"}'] * 1001))")]}")" 400

# --- a worker on two queues: what one queue's tasks take is not free for the other's --------------------
apply twoq 'pipeline "twoq" { max_active_runs = 10 }
task "g1" { step = "noop", resources = { queue = "qg1", gpu = 1 } }
task "g2" { step = "noop", resources = { queue = "qg2", gpu = 1 } }' || not_ok twoq_apply "apply failed"
TQ=$(trigger twoq)
wk POST /v1/workers -d '{"name": "two", "slots": 4, "queues": ["qg1", "qg2"], "gpu": 1}' >/dev/null
TW=$(j .worker_id)
check_eq twoq_one_gpu_one_task "$(wk POST "/v1/workers/$TW/claim" -d '{"free_slots": 2, "free_gpu": 1, "wait_ms": 0}' >/dev/null; jq -r '.tasks | length' "$BODY")" 1
check_eq twoq_other_waits "$(sql "SELECT count(*) FROM tasks WHERE run_id = $TQ AND state = 'queued'")" 1
for t in g1 g2; do [ "$(tstate "$TQ" $t)" = running ] && finish_task "$TW" "$TQ" $t succeeded >/dev/null; done
check_eq twoq_second_after "$(wk POST "/v1/workers/$TW/claim" -d '{"free_slots": 2, "free_gpu": 1, "wait_ms": 0}' >/dev/null; jq -r '.tasks | length' "$BODY")" 1
for t in g1 g2; do [ "$(tstate "$TQ" $t)" = running ] && finish_task "$TW" "$TQ" $t succeeded >/dev/null; done
check_eq twoq_run_succeeded "$(rstate "$TQ")" succeeded
# and without GPUs, one claim takes from both queues: one answer holds the tasks of each
apply twoq2 'pipeline "twoq2" { max_active_runs = 10 }
task "h1" { step = "noop", resources = { queue = "qh1" } }
task "h2" { step = "noop", resources = { queue = "qh2" } }' || not_ok twoq2_apply "apply failed"
TQ2=$(trigger twoq2)
wk POST /v1/workers -d '{"name": "two2", "slots": 4, "queues": ["qh1", "qh2"]}' >/dev/null
TW2=$(j .worker_id)
check_eq twoq_both_queues_one_answer "$(claimed "$TW2" 3)" "h1 h2"
check_eq twoq_both_queues_runs "$(jq -r '[.tasks[].run.id] | unique | map(tostring) | join(",")' "$BODY")" "$TQ2"
for t in h1 h2; do finish_task "$TW2" "$TQ2" $t succeeded >/dev/null; done
check_eq twoq2_run_succeeded "$(rstate "$TQ2")" succeeded

# --- plans that do not depend on how many tasks ran when the statistics were taken ----------------------
# Statistics gathered while nothing runs (an idle install's autovacuum) estimate one running task;
# the completion's and the heartbeat's generic plans must still find the tasks they name by
# primary key, not scan every running task for each report (migrations/0014_lease_index.sql).
sql "ANALYZE tasks" >/dev/null
apply plans 'pipeline "plans" { max_active_runs = 10, defaults = { resources = { queue = "plq" } } }
task "x1" { step = "noop" }
task "x2" { step = "noop" }
task "x3" { step = "noop" }' || not_ok plans_apply "apply failed"
PLR=$(trigger plans)
PLW=$(register plw plq 3)
check_eq plans_three_running "$(claimed "$PLW" 3)" "x1 x2 x3"
px=$(tid "$PLR" x1)
# auto_explain shows the plan of every statement the functions run, as this session plans them
explained "$PGCONN" >"$TMP/plans.out" <<SQL
SELECT weir_heartbeat($PLW, '[{"task_id": $px, "attempt": 1}]', 30000)->>'code';
SELECT weir_complete_many('[{"worker": $PLW, "task": $px, "attempt": 1, "status": "succeeded"}]')->'results'->0->>'state';
SQL
check_eq plans_explained "$(grep -c 'Update on tasks' "$TMP/plans.out")" 3
check_eq plans_no_scan_of_running "$(grep -c 'tasks_leases' "$TMP/plans.out")" 0
check_eq plans_completion_by_id "$(grep -c 'Index Cond: (id = inp.tid)' "$TMP/plans.out")" 1
for t in x2 x3; do finish_task "$PLW" "$PLR" $t succeeded >/dev/null; done
check_eq plans_run_succeeded "$(rstate "$PLR")" succeeded

# --- admission reads the queued runs' index, whatever the statistics say ------------------------------------
# Statistics taken during a backlog (nearly every run queued) made the admission of the next run
# walk the runs' primary key from the first run (migrations/0016_admission_order.sql).
apply backlog 'pipeline "backlog" { max_active_runs = 1 }
task "only" { step = "noop" }' || not_ok backlog_apply "apply failed"
sql "SELECT count(weir_run_create('backlog', '{}', 'manual', 'test')) FROM generate_series(1, 400)" >/dev/null
sql "ANALYZE runs" >/dev/null
BL="SELECT r.id FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'backlog'"
BR=$(sql "$BL AND r.state = 'running'")
# a cancel admits the next queued run
explained "$PGCONN" >"$TMP/admit.out" <<SQL
SELECT weir_run_cancel($BR, 'test')->>'code';
SQL
check_eq backlog_admitted_next "$(sql "$BL AND r.state = 'running'")" "$(sql "SELECT min(id) FROM ($BL AND r.id > $BR) x")"
# the two lookups of the pipeline's oldest queued runs
check_eq backlog_admit_explained "$(plans_of "$TMP/admit.out" p_pipeline | grep -c 'FROM runs')" 2
check_eq backlog_admit_no_whole_scans "$(plans_of "$TMP/admit.out" p_pipeline | whole_scans runs)" 0
sql "SELECT count(weir_run_cancel(id, 'test')) FROM ($BL AND r.state IN ('queued', 'running') ORDER BY r.id) x" >/dev/null
check_eq backlog_all_cancelled "$(sql "SELECT count(*) FROM ($BL AND r.state <> 'cancelled') x")" 0

# --- invariants over everything above --------------------------------------------------------------------
check_eq inv_no_task_completed_twice "$(sql "SELECT count(*) FROM (SELECT task_id, attempt FROM events WHERE kind = 'task.state'
  AND from_state = 'running' GROUP BY task_id, attempt HAVING count(*) > 1) x")" 0
# a task succeeds once, unless an operator's retry reset it
check_eq inv_one_success_per_task "$(sql "SELECT count(*) FROM (SELECT task_id FROM events WHERE kind = 'task.state'
  AND to_state = 'succeeded' GROUP BY task_id HAVING count(*) > 1 + (SELECT count(*) FROM events r
  WHERE r.task_id = events.task_id AND r.kind = 'task.state' AND r.to_state = 'pending')) x")" 0
# every task's state is the to_state of its last event (pending when it has none), every run's too
check_eq inv_task_state_has_event "$(sql "SELECT coalesce(string_agg(t.id || ':' || t.state, ' '), '') FROM tasks t WHERE t.state <> coalesce(
  (SELECT e.to_state FROM events e WHERE e.task_id = t.id AND e.kind = 'task.state' ORDER BY e.id DESC LIMIT 1), 'pending')")" ""
check_eq inv_run_state_has_event "$(sql "SELECT coalesce(string_agg(r.id || ':' || r.state, ' '), '') FROM runs r WHERE r.state <>
  (SELECT e.to_state FROM events e WHERE e.run_id = r.id AND e.kind IN ('run.created', 'run.state') ORDER BY e.id DESC LIMIT 1)")" ""
# each event's from_state is the to_state of the one before it, per task
check_eq inv_event_chain "$(sql "SELECT count(*) FROM (SELECT from_state, lag(to_state) OVER (PARTITION BY task_id ORDER BY id) AS prev
  FROM events WHERE kind = 'task.state') x WHERE prev IS NOT NULL AND from_state <> prev")" 0
check_eq inv_first_event_from_pending "$(sql "SELECT count(*) FROM (SELECT DISTINCT ON (task_id) from_state FROM events
  WHERE kind = 'task.state' ORDER BY task_id, id) x WHERE from_state <> 'pending'")" 0
# every attempt got its claim event, and a running task has exactly its current attempt running
check_eq inv_attempt_claim_events "$(sql "SELECT count(*) FROM attempts a WHERE NOT EXISTS (SELECT 1 FROM events e
  WHERE e.task_id = a.task_id AND e.attempt = a.number AND e.to_state = 'running')")" 0
check_eq inv_running_attempts "$(sql "SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE a.state = 'running'
  AND (t.state <> 'running' OR t.attempt <> a.number)")" 0
check_eq inv_finished_runs_counters "$(sql "SELECT count(*) FROM runs WHERE state IN ('succeeded', 'failed') AND (tasks_done <> tasks_total
  OR tasks_failed <> (SELECT count(*) FROM tasks t WHERE t.run_id = runs.id AND t.state = 'failed')
  OR EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = runs.id AND t.state IN ('pending', 'queued', 'running', 'retrying', 'waiting')))")" 0
check_eq inv_nothing_left_running "$(sql "SELECT coalesce(string_agg(r.id || ':' || p.name || ':' || r.state, ' '), '') FROM runs r
  JOIN pipelines p ON p.id = r.pipeline_id WHERE r.state IN ('queued', 'running')")" ""

check scheduler_clean_exit stop_scheduler
finish
