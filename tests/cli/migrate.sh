# migrate.sh — `weir migrate` on a real PostgreSQL: applies in order, is
# idempotent, serialises concurrent runs, refuses an edited file by name, and
# the scheduler refuses an unmigrated database.
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-migrate.XXXXXX)

OUT=$("$WEIR" scheduler --database "$PGCONN" --listen 127.0.0.1:0 2>&1)
check_eq scheduler_refuses_unmigrated "$?" 1
check_contains scheduler_says_migrate "$OUT" "weir migrate"

OUT=$("$WEIR" migrate --database "$PGCONN")
check_eq first_migrate_exit "$?" 0
check_contains first_migrate_applied "$OUT" "applied 0001_schema.sql"
N=$(ls migrations/*.sql | wc -l)
check_eq all_recorded "$(sql 'SELECT count(*) FROM weir_migrations')" "$N"
OUT=$("$WEIR" migrate --database "$PGCONN")
check_contains second_migrate_noop "$OUT" "0 migrations applied"
# The hand-off's functions keep 0007's settings: CREATE OR REPLACE in a later migration resets
# a function's SET options, so each replacement must set them again (0009 does).
for f in weir_complete_many weir_claim; do
  check_eq "${f}_keeps_generic_plans" \
    "$(sql "SELECT array_to_string(ARRAY(SELECT x FROM unnest(proconfig) x ORDER BY x), ' ') FROM pg_proc WHERE proname = '$f'")" \
    "enable_seqscan=off plan_cache_mode=force_generic_plan"
done

# concurrent first runs on a fresh database: both succeed, each file applied once
CDB="$(echo "$PGCONN" | sed 's/.*dbname=\([^ ]*\).*/\1/')_concurrent"
$PSQL -X -q -c "CREATE DATABASE $CDB" "$PGMAINT"
C=$(echo "$PGCONN" | sed "s/dbname=[^ ]*/dbname=$CDB/")
"$WEIR" migrate --database "$C" >"$TMP/a" 2>&1 & A=$!
"$WEIR" migrate --database "$C" >"$TMP/b" 2>&1 & B=$!
wait $A; RA=$?
wait $B; RB=$?
check_eq concurrent_both_ok "$RA$RB" "00"
check_eq concurrent_applied_once "$(cat "$TMP/a" "$TMP/b" | grep -c 'applied 0001')" 1

# Plans made on that fresh install, whose tables are empty: the scheduler keeps a function's plans
# for its session while the tables grow, and tasks and attempts keep every run's history, so the
# timer, a heartbeat and a log chunk must find their rows through indexes even when a scan of the
# whole table looked cheaper (0015_timer_plans.sql). auto_explain shows each statement's plan.
CW=$($PSQL -X -A -t -q -c "INSERT INTO workers (name, queues, slots) VALUES ('plans', '{default}', 1) RETURNING id" "$C")
explained "$C" >"$TMP/plans.out" <<SQL
SELECT weir_tick()->>'code';
SELECT weir_heartbeat($CW, '[{"task_id": 1, "attempt": 1}]', 30000)->>'code';
SELECT weir_log_append($CW, 1, 1, 0, 3, '\\x616263', 1048576)->>'code';
SQL
check_eq fresh_plans_explained "$(grep -c -e 'lease_expires_at < now()$' -e 'Update on tasks t' -e 'FROM tasks WHERE id = p_task' \
  "$TMP/plans.out")" 3
check_eq fresh_plans_no_whole_scans "$(whole_scans tasks attempts <"$TMP/plans.out")" 0
for f in weir_tick weir_heartbeat weir_log_append; do
  check_eq "${f}_never_seq_scans" "$(sql "SELECT array_to_string(proconfig, ' ') FROM pg_proc WHERE proname = '$f'")" \
    "enable_seqscan=off"
done

# an edited file is refused, by name, and nothing changes
cp -r migrations "$TMP/m"
"$WEIR" migrate --database "$PGCONN" --dir "$TMP/m" >/dev/null
check_eq dir_same_ok "$?" 0
echo "-- an edit" >>"$TMP/m/0001_schema.sql"
OUT=$("$WEIR" migrate --database "$PGCONN" --dir "$TMP/m" 2>&1)
check_eq edited_refused "$?" 1
check_contains edited_names_file "$OUT" "0001_schema.sql was edited"
# a broken new migration rolls back and names the file and line
cp -r migrations "$TMP/n"
printf 'CREATE TABLE ok_table (x int);\nSELECT nope FROM nowhere;\n' >"$TMP/n/9999_broken.sql"
OUT=$("$WEIR" migrate --database "$PGCONN" --dir "$TMP/n" 2>&1)
check_eq broken_refused "$?" 1
check_contains broken_names_file_line "$OUT" "9999_broken.sql:2"
check_eq broken_rolled_back "$(sql "SELECT to_regclass('ok_table') IS NULL")" t
check_eq broken_not_recorded "$(sql "SELECT count(*) FROM weir_migrations WHERE name = '9999_broken.sql'")" 0

# the events table is append-only
sql "INSERT INTO events (kind) VALUES ('test')" >/dev/null
sql "DELETE FROM events" >/dev/null 2>&1
check_eq events_append_only "$(sql 'SELECT count(*) FROM events')" 1

# workers and tasks are never deleted (0011: attempts and tasks name them without foreign keys)
sql "INSERT INTO workers (name, queues, slots) VALUES ('w-del', '{default}', 1)" >/dev/null
OUT=$(sql "DELETE FROM workers WHERE name = 'w-del'" 2>&1)
check_contains workers_never_deleted "$OUT" "workers rows are never deleted"
check_eq worker_still_there "$(sql "SELECT count(*) FROM workers WHERE name = 'w-del'")" 1
OUT=$(sql "TRUNCATE workers CASCADE" 2>&1)
check_contains workers_never_truncated "$OUT" "never deleted"
OUT=$(sql "DELETE FROM tasks" 2>&1)
check_contains tasks_never_deleted "$OUT" "tasks rows are never deleted"
check_eq fk_checks_gone "$(sql "SELECT count(*) FROM pg_constraint WHERE conname IN ('tasks_worker_id_fkey', 'attempts_worker_id_fkey', 'attempts_task_id_fkey')")" 0

# 0013: the hot tables' values are checked by domains, on INSERT and on UPDATE alike
V=$(printf '%064d' 0)
sql "INSERT INTO pipelines (name) VALUES ('dom');
     INSERT INTO pipeline_versions (id, pipeline_id, seq, source, plan, task_count)
       SELECT '$V', id, 1, '', '{}', 1 FROM pipelines WHERE name = 'dom';
     INSERT INTO runs (pipeline_id, version_id, trigger_kind) SELECT id, '$V', 'manual' FROM pipelines WHERE name = 'dom';
     INSERT INTO tasks (run_id, name, step) SELECT max(id), 'a', 'noop' FROM runs;
     INSERT INTO attempts (task_id, number) SELECT max(id), 1 FROM tasks" >/dev/null
check_eq check_constraints_moved "$(sql "SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND conrelid IN ('tasks'::regclass, 'attempts'::regclass, 'runs'::regclass)")" 0
# refused: each names its domain and changes nothing
refused() { # NAME SQL DOMAIN
  OUT=$(sql "$2" 2>&1)
  check_contains "$1" "$OUT" "value for domain $3 violates check constraint"
}
refused task_state_checked "UPDATE tasks SET state = 'done' WHERE name = 'a'" weir_task_state
refused task_counter_checked "UPDATE tasks SET upstream_pending = upstream_pending - 1 WHERE name = 'a'" weir_count
refused task_attempts_checked "UPDATE tasks SET max_attempts = 0 WHERE name = 'a'" weir_positive
refused task_memory_checked "UPDATE tasks SET memory_bytes = -1 WHERE name = 'a'" weir_bytes
refused task_rule_checked "UPDATE tasks SET trigger_rule = 'any' WHERE name = 'a'" weir_trigger_rule
refused task_kind_checked "INSERT INTO tasks (run_id, name, step, kind) SELECT max(id), 'b', 'noop', 'job' FROM runs" weir_task_kind
refused attempt_state_checked "UPDATE attempts SET state = 'done'" weir_attempt_state
refused attempt_number_checked "INSERT INTO attempts (task_id, number) SELECT max(id), 0 FROM tasks" weir_positive
refused run_state_checked "UPDATE runs SET state = 'done'" weir_run_state
refused run_trigger_checked "UPDATE runs SET trigger_kind = 'cron'" weir_run_trigger
check_eq refusals_changed_nothing "$(sql "SELECT t.state || ' ' || t.upstream_pending || ' ' || t.max_attempts || ' ' || a.state || ' ' || r.state || ' ' || (SELECT count(*) FROM tasks) FROM tasks t JOIN attempts a ON a.task_id = t.id JOIN runs r ON r.id = t.run_id")" "pending 0 1 running queued 1"
# and what is allowed still is
sql "UPDATE tasks SET state = 'queued', upstream_pending = 0, memory_bytes = 0 WHERE name = 'a'" >/dev/null
check_eq allowed_values_written "$(sql "SELECT state FROM tasks WHERE name = 'a'")" queued

rm -rf "$TMP"
finish
