# signals.sh — signals and trigger rules on a real scheduler, worker and PostgreSQL: a signal below
# the threshold, one for another subject, one that starts a run with the signal's fields as its
# parameters, a burst of 100 identical ones (concurrent HTTP) that starts nothing more, the
# cooldown after the run, the list of what each signal caused, parameters fed by attributes the
# signal may lack, and bad requests.
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-signals.XXXXXX)
cleanup() {
  [ -n "${WPID:-}" ] && kill -KILL "$WPID" 2>/dev/null
  [ -n "${SCHED_PID:-}" ] && kill -KILL "$SCHED_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

start_stack 5s
"$WEIR" worker --scheduler "$URL" --token "$WORK" --slots 4 --name sw --dir "$TMP/w" >"$TMP/worker.log" 2>&1 &
WPID=$!

apply retrain <<'LUA'
pipeline "retrain" {
  params = { share = param.number(0), why = param.string("") },
  triggers = {
    on_signal "drift" { subject = "model:toy", threshold = 0.3, cooldown = "1h",
                        params = { share = "${signal.value}", why = "${signal.kind} on ${signal.subject} (${signal.attributes.source})" } },
  },
}
task "train" { exec = "sleep 2; echo share=$WEIR_PARAM_SHARE why=$WEIR_PARAM_WHY" }
LUA
check_eq apply "$?" 0
runs() { sql "SELECT count(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'retrain'"; }

out=$("$WEIR" signal drift --subject model:toy --value 0.1 2>&1)
check_contains below.outcome "$out" "below_threshold"
check_contains below.detail "$out" "value 0.1 < threshold 0.3"
out=$("$WEIR" signal drift --subject model:other --value 0.9 2>&1)
check_contains other.no_rule "$out" "no_rule"
check_eq nothing_started "$(runs)" 0

out=$("$WEIR" signal drift --subject model:toy --value 0.5 --attr source=monitor -o json)
check_eq started.outcome "$(echo "$out" | jq -r .outcome)" started
RUN=$(echo "$out" | jq -r '.runs[0]')
SIG=$(echo "$out" | jq -r .signal)
check_eq started.trigger "$(sql "SELECT trigger_kind || ' ' || signal_id FROM runs WHERE id = $RUN")" "signal $SIG"
check_eq started.params "$(sql "SELECT params->>'share' || '|' || (params->>'why') FROM runs WHERE id = $RUN")" "0.5|drift on model:toy (monitor)"

# a burst of 100 identical signals while the run is active: none starts another
for i in $(seq 100); do
  curl -s -o /dev/null -X POST -H "Authorization: Bearer $OP" -H "Content-Type: application/json" \
    -d '{"kind": "drift", "subject": "model:toy", "value": 0.9}' "$URL/v1/signals" &
done
wait_burst() { for p in $(jobs -p); do [ "$p" = "$WPID" ] || [ "$p" = "$SCHED_PID" ] || wait "$p"; done; }
wait_burst
check_eq burst.one_run "$(runs)" 1
check_eq burst.all_stored "$(sql "SELECT count(*) FROM signals WHERE subject = 'model:toy' AND value = 0.9")" 100
check_eq burst.duplicates "$(sql "SELECT string_agg(DISTINCT outcome, ',') FROM signals WHERE subject = 'model:toy' AND value = 0.9")" duplicate
check_eq run.succeeded "$(wait_run 30 "$RUN")" succeeded
check_contains run.params_in_step "$("$WEIR" logs "$RUN" train 2>&1)" "share=0.5 why=drift on model:toy (monitor)"
# after the run, the cooldown (1h) holds
out=$("$WEIR" signal drift --subject model:toy --value 0.8 2>&1)
check_contains cooldown.outcome "$out" "cooldown"
check_eq cooldown.no_run "$(runs)" 1

out=$("$WEIR" signals --limit 5 2>&1)
check_contains list.header "$out" "OUTCOME"
check_contains list.cooldown "$out" "cooldown"
check_eq list.json "$("$WEIR" signals --limit 200 -o json | jq -r "[.[] | select(.id == $SIG)][0].runs[0]")" "$RUN"

# Alertmanager's webhook: firing alerts become signals (resolved ones are ignored)
cat >"$TMP/am.json" <<'JSON'
{"version": "4", "status": "firing", "receiver": "weir", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
 "externalURL": "http://am", "groupKey": "g", "truncatedAlerts": 0,
 "alerts": [{"status": "firing", "labels": {"alertname": "HighErrorRate", "weir_kind": "errors", "value": "0.7"},
             "annotations": {}, "fingerprint": "abc123"},
            {"status": "resolved", "labels": {"alertname": "Old"}, "annotations": {}, "fingerprint": "def"}]}
JSON
check_eq alertmanager.status "$(status POST /v1/signals/alertmanager -H "Authorization: Bearer $OP" -H "Content-Type: application/json" -d @"$TMP/am.json")" 201
check_eq alertmanager.signal "$(sql "SELECT kind || ' ' || subject || ' ' || value || ' ' || source || ' ' || dedup_key FROM signals WHERE source = 'webhook'")" "errors HighErrorRate 0.7 webhook abc123"
check_eq alertmanager.bad "$(status POST /v1/signals/alertmanager -H "Authorization: Bearer $OP" -d '{"alerts": 3}')" 400

# a parameter fed by one attribute: the attribute's text when the signal has it, else the
# pipeline's default (the parameter is left out, not set to "")
apply rescore <<'LUA'
pipeline "rescore" {
  params = { data = param.string("default.csv"), rows = param.int(10) },
  triggers = { on_signal "labels" { max_active_runs = 5,
                                    params = { data = "${signal.attributes.data}", rows = "${signal.attributes.rows}" } } },
}
task "score" { exec = "true" }
LUA
check_eq attrs.apply "$?" 0
R1=$("$WEIR" signal labels --dedup-key a -o json | jq -r '.runs[0]')
R2=$("$WEIR" signal labels --dedup-key b --attr data=new.csv --attr rows=250 -o json | jq -r '.runs[0]')
check_eq attrs.absent "$(sql "SELECT params->>'data' || ' ' || (params->>'rows') FROM runs WHERE id = $R1")" "default.csv 10"
check_eq attrs.given "$(sql "SELECT params->>'data' || ' ' || (params->>'rows') FROM runs WHERE id = $R2")" "new.csv 250"
out=$("$WEIR" signal labels --dedup-key c --attr rows=many 2>&1)
check_contains attrs.bad_type "$out" 'parameter "rows" must be an integer'

check_eq bad.kind "$(status POST /v1/signals -H "Authorization: Bearer $OP" -d '{"kind": "Bad Kind"}')" 400
check_contains bad.kind_msg "$(jq -r .error.message "$BODY")" 'signal kind "Bad Kind"'
check_eq bad.value "$(status POST /v1/signals -H "Authorization: Bearer $OP" -d '{"kind": "drift", "value": "high"}')" 400
check_eq bad.field "$(status POST /v1/signals -H "Authorization: Bearer $OP" -d '{"kind": "drift", "colour": 1}')" 400
check_eq bad.viewer "$(status POST /v1/signals -d '{"kind": "drift"}')" 401

kill -TERM "$WPID"; wait "$WPID"; WPID=
check stop stop_scheduler
SCHED_PID=
finish
