# schedules.sh — cron schedules fire runs, on a real scheduler and PostgreSQL: the next fire time
# is computed (in the schedule's time zone), a scheduler that was "down" past a tick starts one
# run with catch-up off and backfills every missed tick in order with catch-up on, and with two
# schedulers on one database one leads, each tick fires exactly once, a burst of signals sent to
# both starts one run, and when the leader is killed the other takes over.
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-schedules.XXXXXX)
cleanup() {
  [ -n "${SCHED_PID:-}" ] && kill -KILL "$SCHED_PID" 2>/dev/null
  [ -n "${SECOND_PID:-}" ] && kill -KILL "$SECOND_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

start_stack 5s

apply nightly <<'LUA'
pipeline "nightly" { schedule = { cron = "0 3 * * *", timezone = "Europe/Paris" } }
task "t" { step = "noop" }
LUA
apply daily <<'LUA'
pipeline "daily" { schedule = "0 12 * * *" }
task "t" { step = "noop" }
LUA
apply backfill <<'LUA'
pipeline "backfill" { schedule = { cron = "30 6 * * *", catchup = true }, max_active_runs = 10 }
task "t" { step = "noop" }
LUA
sched() { sql "SELECT $2 FROM schedules s JOIN pipelines p ON p.id = s.pipeline_id WHERE p.name = '$1'"; }
runs_of() { sql "SELECT count(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = '$1'"; }

check_eq next.computed "$(wait_for 10 "SELECT count(*) FROM schedules WHERE next_fire_at IS NOT NULL" 3)" 3
check_eq next.timezone "$(sched nightly "to_char(next_fire_at AT TIME ZONE 'Europe/Paris', 'HH24:MI')")" "03:00"
check_eq next.future "$(sched daily "next_fire_at > now() AND next_fire_at <= now() + interval '1 day' AND to_char(next_fire_at AT TIME ZONE 'UTC', 'HH24:MI') = '12:00'")" t
check_eq next.catchup "$(sched backfill "next_fire_at > now() AND to_char(next_fire_at AT TIME ZONE 'UTC', 'HH24:MI') = '06:30'")" t
check_eq next.nothing_yet "$(runs_of nightly)" 0
out=$("$WEIR" schedules 2>&1)
check_contains cli.row "$out" "nightly   0 3 * * *   Europe/Paris  no       20"
check_eq cli.json "$("$WEIR" schedules -o json | jq -r '.[] | select(.pipeline == "backfill") | .catchup')" true

# "down" for three days: catch-up off starts one run, for the tick it was due
sql "UPDATE schedules SET next_fire_at = next_fire_at - interval '3 days'
      WHERE pipeline_id = (SELECT id FROM pipelines WHERE name = 'daily')" >/dev/null
check_eq missed.one_run "$(wait_for 10 "SELECT count(*) >= 1 FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'daily'" t)" t
sleep 2
check_eq missed.exactly_one "$(runs_of daily)" 1
check_eq missed.trigger "$(sql "SELECT trigger_kind || ' at ' || to_char(scheduled_for AT TIME ZONE 'UTC', 'HH24:MI') FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'daily'")" "schedule at 12:00"
check_eq missed.next_future "$(sched daily "next_fire_at > now()")" t
DAILY=$(sql "SELECT r.id FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'daily'")
check_contains missed.shown "$("$WEIR" run show "$DAILY" 2>&1)" "trigger   schedule for 20"
check_eq missed.manual_by "$("$WEIR" trigger daily -o json | jq -r .run | xargs -I{} sh -c "\"$WEIR\" run show {} 2>&1" | grep '^trigger')" \
  "trigger   manual by ops"

# catch-up on: every missed day, in order (a daily schedule: nothing fires by itself meanwhile)
sql "UPDATE schedules SET next_fire_at = next_fire_at - interval '3 days'
      WHERE pipeline_id = (SELECT id FROM pipelines WHERE name = 'backfill')" >/dev/null
check_eq backfill.runs "$(wait_for 15 "SELECT count(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'backfill'" 3)" 3
check_eq backfill.in_order "$(sql "SELECT bool_and(d = interval '1 day') FROM (SELECT scheduled_for - lag(scheduled_for) OVER (ORDER BY r.id) d FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'backfill') x WHERE d IS NOT NULL")" t
check_eq backfill.distinct "$(sql "SELECT count(DISTINCT scheduled_for) = count(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'backfill'")" t
check_eq backfill.caught_up "$(sched backfill "next_fire_at > now()")" t

# two schedulers: the first leads (it took the leader lock first), each tick fires once
"$WEIR" scheduler --database "$PGCONN" --listen 127.0.0.1:0 --port-file "$TMP/port2" --tick 100ms >"$TMP/second.log" 2>&1 &
SECOND_PID=$!
wait_file 10 "$TMP/port2"
URL2=http://127.0.0.1:$(cat "$TMP/port2")
leads() { curl -s "$1/healthz" | jq -r .leader; }
# leads_within SECONDS URL : polls until that scheduler leads; prints the last answer
leads_within() {
  end=$(($(now_ms) + $1 * 1000))
  while [ "$(leads "$2")" != true ] && [ "$(now_ms)" -lt "$end" ]; do sleep 0.1; done
  leads "$2"
}
sleep 1
check_eq two_schedulers.first_leads "$(leads "$URL")" true
check_eq two_schedulers.second_follows "$(leads "$URL2")" false
check_contains two_schedulers.metric "$(curl -s "$URL2/metrics")" "weir_leader 0"
sql "UPDATE schedules SET next_fire_at = next_fire_at - interval '2 days'
      WHERE pipeline_id = (SELECT id FROM pipelines WHERE name = 'nightly')" >/dev/null
wait_for 10 "SELECT next_fire_at > now() FROM schedules s JOIN pipelines p ON p.id = s.pipeline_id WHERE p.name = 'nightly'" t >/dev/null
sleep 2
check_eq two_schedulers.one_run "$(runs_of nightly)" 1
check_eq two_schedulers.paris "$(sql "SELECT to_char(scheduled_for AT TIME ZONE 'Europe/Paris', 'HH24:MI') FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'nightly'")" "03:00"

# signals sent to both schedulers at once: each is stored and decided once, one run in all
apply retrain <<'LUA'
pipeline "retrain" { triggers = { on_signal "drift" { subject = "model:m", cooldown = "1h" } } }
task "t" { step = "noop" }
LUA
for i in $(seq 20); do
  u=$URL; [ $((i % 2)) = 0 ] && u=$URL2
  curl -s -o /dev/null -X POST -H "Authorization: Bearer $OP" -d '{"kind": "drift", "subject": "model:m", "value": 1}' \
    "$u/v1/signals" &
done
for p in $(jobs -p); do [ "$p" = "$SCHED_PID" ] || [ "$p" = "$SECOND_PID" ] || wait "$p"; done
check_eq two_schedulers.signals "$(sql "SELECT count(*) || ' ' || count(*) FILTER (WHERE outcome = 'started') FROM signals")" "20 1"
check_eq two_schedulers.signal_run "$(runs_of retrain)" 1

# the leader dies: the other takes the lock and fires the next due tick, once
kill -KILL "$SCHED_PID"; wait "$SCHED_PID" 2>/dev/null; SCHED_PID=
check_eq failover.leads "$(leads_within 10 "$URL2")" true
sql "UPDATE schedules SET next_fire_at = next_fire_at - interval '2 days'
      WHERE pipeline_id = (SELECT id FROM pipelines WHERE name = 'daily')" >/dev/null
by_clock="SELECT count(*) FROM runs r JOIN pipelines p ON p.id = r.pipeline_id WHERE p.name = 'daily' AND trigger_kind = 'schedule'"
check_eq failover.fired "$(wait_for 10 "$by_clock" 2)" 2
sleep 1
check_eq failover.once "$(sql "$by_clock")" 2
check_contains failover.logged "$(cat "$TMP/second.log")" "leading: this scheduler fires the cron schedules"

kill -TERM "$SECOND_PID"; wait "$SECOND_PID"
check_eq stop "$?" 0
SECOND_PID=
finish
