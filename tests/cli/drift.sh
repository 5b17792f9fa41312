# drift.sh — retraining on drift, end to end, with the example pipelines on real data: a monitor
# with no model in production fails saying so; with one, a monitor run on undrifted data starts
# nothing, one on drifted data (every feature shifted by half a standard deviation) compared with
# the production model's training data (its lineage) emits a signal that starts exactly one
# retraining run on that batch, whose gate blesses the new model into production; the same batch
# is then no drift against the new training data, and a burst of drift signals inside the
# cooldown starts nothing more. Real scheduler, worker, PostgreSQL.
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-drift.XXXXXX)
cleanup() {
  [ -n "${WPID:-}" ] && kill -KILL "$WPID" 2>/dev/null
  [ -n "${SCHED_PID:-}" ] && kill -KILL "$SCHED_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
ml_stack dw

# the drifted batch: every feature shifted by half its standard deviation (the tour's script)
sh examples/drift_batch.sh 0.5 "$DATA/breast_cancer.csv" >"$TMP/drifted.csv"

"$WEIR" apply examples/cancer.lua examples/cancer_monitor.lua >"$TMP/apply.out" 2>&1
check_eq apply "$?" 0
runs_of() { sql "SELECT count(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = '$1'"; }
prod() { "$WEIR" models show cancer -o json 2>/dev/null | jq -r '.aliases.production'; }

# no model in production yet: the monitor has nothing to compare with, and says so
R=$(trigger cancer-monitor); wait_run 60 "$R" >/dev/null
check_eq no_model.monitor "$(rstate "$R")" failed
check_contains no_model.error "$(sql "SELECT error FROM tasks WHERE run_id = $R AND name = 'detect-drift'")" \
  "model cancer has no alias production with a training dataset"

# a weaker model in production first (C = 0.01: 96.5 % on the held-out quarter)
R=$("$WEIR" trigger cancer -p c=0.01 -o json | jq -r .run); wait_run 60 "$R" >/dev/null
check_eq bootstrap.production "$(prod)" 1

R=$(trigger cancer-monitor); wait_run 60 "$R" >/dev/null
check_eq undrifted.monitor "$(rstate "$R")" succeeded
check_eq undrifted.share "$(sql "SELECT metrics->>'drift_share' FROM tasks WHERE run_id = $R AND name = 'detect-drift'")" 0
check_eq undrifted.no_signal "$(sql "SELECT count(*) FROM signals")" 0
check_eq undrifted.no_run "$(runs_of cancer)" 1

R=$("$WEIR" trigger cancer-monitor -p current="$TMP/drifted.csv" -o json | jq -r .run); wait_run 60 "$R" >/dev/null
check_eq drifted.monitor "$(rstate "$R")" succeeded
check_eq drifted.share "$(sql "SELECT (metrics->>'drift_share')::float8 >= 0.5 FROM tasks WHERE run_id = $R AND name = 'detect-drift'")" t
check_eq drifted.signal "$(sql "SELECT kind || ' ' || subject || ' ' || source || ' ' || outcome FROM signals")" "drift model:cancer step started"
check_eq drifted.one_run "$(wait_for 10 "SELECT count(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'cancer'" 2)" 2
RETRAIN=$(sql "SELECT r.id FROM runs r JOIN signals s ON s.id = r.signal_id")
check_eq retrain.trigger "$(sql "SELECT trigger_kind FROM runs WHERE id = $RETRAIN")" signal
check_eq retrain.done "$(wait_run 60 "$RETRAIN")" succeeded
check_eq retrain.blessed "$(sql "SELECT state FROM tasks WHERE run_id = $RETRAIN AND name = 'bless'")" blessed
check_eq retrain.production "$(prod)" 2
check_contains retrain.shown "$("$WEIR" run show "$RETRAIN" 2>&1)" \
  "trigger   signal $(sql "SELECT signal_id FROM runs WHERE id = $RETRAIN"): drift for model:cancer, value"
# the signal's value and the batch it named became the run's parameters: it trained on the new data
check_eq retrain.params "$(sql "SELECT (params->>'drift')::float8 >= 0.5, params->>'data' FROM runs WHERE id = $RETRAIN")" \
  "t|$TMP/drifted.csv"

# the new production model was trained on the drifted batch, so that batch is no drift any more
R=$("$WEIR" trigger cancer-monitor -p current="$TMP/drifted.csv" -o json | jq -r .run); wait_run 60 "$R" >/dev/null
check_eq moved.monitor "$(rstate "$R")" succeeded
check_eq moved.share "$(sql "SELECT metrics->>'drift_share' FROM tasks WHERE run_id = $R AND name = 'detect-drift'")" 0
check_eq moved.no_signal "$(sql "SELECT count(*) FROM signals")" 1

# more drift inside the cooldown: stored, decided, nothing started
for i in 1 2 3 4 5; do "$WEIR" signal drift --subject model:cancer --value 0.9 >/dev/null 2>&1 & done
wait_for 10 "SELECT count(*) FROM signals" 6 >/dev/null
sleep 1
check_eq burst.no_run "$(runs_of cancer)" 2
check_eq burst.outcomes "$(sql "SELECT string_agg(DISTINCT outcome, ',') FROM signals WHERE source = 'api'")" cooldown
check_contains signals.list "$("$WEIR" signals 2>&1)" "started"

kill -TERM "$WPID"; wait "$WPID"; WPID=
check stop stop_scheduler
SCHED_PID=
finish
