# plugins.sh — the plugin host with a plugin built outside weir (tests/plugins/acme.c, compiled
# here against include/weir/plugin.h only): `weir steps`, the ABI check, settings checked against
# the step's schema, everything a step gives back through the host table (an output, a metric,
# log lines, progress), a step's own failure message, a crash that ends only its attempt, and
# a cancel the step sees. Real scheduler, real worker, real PostgreSQL.
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-plugins.XXXXXX)
PLUGINS=$TMP/plugins
mkdir -p "$PLUGINS" "$TMP/other"
cleanup() {
  [ -n "${WPID:-}" ] && kill -KILL "$WPID" 2>/dev/null
  [ -n "${SCHED_PID:-}" ] && kill -KILL "$SCHED_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
CC=${CC:-cc}

# --- building outside weir: only the public header -----------------------------------------------
if $CC -std=c11 -Wall -Wextra -Werror -shared -fPIC -Iinclude -o "$PLUGINS/acme.so" tests/plugins/acme.c 2>"$TMP/cc.log"; then
  ok build
else
  not_ok build "$(cat "$TMP/cc.log")"
fi
$CC -std=c11 -shared -fPIC -Iinclude -DACME_ABI=99 -o "$TMP/other/old.so" tests/plugins/acme.c
cp "$PLUGINS/acme.so" "$TMP/other/acme.so"
printf 'not a shared object\n' >"$TMP/other/junk.so"

out=$("$WEIR" steps --plugin-dir "$PLUGINS" 2>&1)
check_contains steps.lists "$out" "acme.echo   acme        echo     echo the settings"
check_contains steps.builtin "$out" "noop"
out=$("$WEIR" steps --plugin-dir "$PLUGINS" -v 2>&1)
check_contains steps.settings "$out" "greeting"
check_eq steps.json "$("$WEIR" steps --plugin-dir "$PLUGINS" -o json | jq -r '.[] | select(.step == "acme.echo") | .settings.times.default')" 1
out=$("$WEIR" steps --plugin-dir "$TMP/other" 2>&1)
check_eq abi.refused_rc "$?" 1
check_contains abi.refused "$out" "$TMP/other/old.so: refused: built for plugin ABI version 99, this weir speaks version 1"
check_contains abi.junk "$out" "$TMP/other/junk.so: cannot load"
check_contains abi.others_load "$out" "acme.wait"
out=$("$WEIR" steps --plugin-dir "$TMP/nowhere" 2>&1)
check_eq steps.bad_dir_rc "$?" 2
check_contains steps.bad_dir "$out" "plugin directory $TMP/nowhere"
# a relative --plugin-dir is made absolute; nothing is loaded from the working directory
out=$(cd "$TMP" && "$WEIR" steps --plugin-dir plugins 2>&1)
check_contains steps.relative "$out" "plugins from $PLUGINS"

# --- running steps ---------------------------------------------------------------------------------
start_stack 3s
"$WEIR" worker --scheduler "$URL" --token "$WORK" --slots 4 --name pw --dir "$TMP/w" --kill-grace 1s \
  --plugin-dir "$PLUGINS" >"$TMP/worker.log" 2>&1 &
WPID=$!

apply acme <<'EOF'
pipeline "acme" {}
local e = task "echo" { step = "acme.echo", with = { greeting = "hello" }, outputs = { "echo" } }
task "after" { exec = { "sh", "-c", "cat \"$1\"", "sh", e.outputs.echo } }
EOF
check_eq apply.external "$?" 0
RUN=$(trigger acme)
check_eq run.succeeded "$(wait_run 30 "$RUN")" succeeded
check_eq run.metric "$(sql "SELECT metrics->>'answer' FROM tasks WHERE run_id = $RUN AND name = 'echo'")" 42
check_eq run.output "$(sql "SELECT outputs ? 'echo' FROM tasks WHERE run_id = $RUN AND name = 'echo'")" t
log=$("$WEIR" logs "$RUN" echo 2>&1)
check_contains log.line "$log" "acme says hello to run {\"id\":$RUN,"
check_contains log.device "$log" "on device -1"
check_contains log.progress "$log" "progress  50% half way"
check_contains log.signal "$log" "signal drift acme/model 0.25"
# the output went through the artifact store to the next task, with the defaults filled in
check_contains output.downstream "$("$WEIR" logs "$RUN" after 2>&1)" '{"greeting":"hello","times":1}'
check_contains worker.listed "$(cat "$TMP/worker.log")" "plugin acme 1.0: 4 steps ($PLUGINS/acme.so)"

# settings are checked against the schema before the step runs: every problem at once
apply badset <<'EOF'
pipeline "badset" {}
task "echo" { step = "acme.echo", with = { times = "twice", colour = "red" }, outputs = { "echo" } }
EOF
RUN=$(trigger badset)
check_eq settings.failed "$(wait_run 30 "$RUN")" failed
err=$(sql "SELECT error FROM tasks WHERE run_id = $RUN AND name = 'echo'")
check_contains settings.type "$err" 'step acme.echo: setting "times" must be an integer (got a string)'
check_contains settings.unknown "$err" 'step acme.echo: unknown setting "colour"'
check_contains settings.required "$err" 'step acme.echo: setting "greeting" is required'

# a step's own message is the attempt's error; a crash fails only its attempt
apply failing <<'EOF'
pipeline "failing" {}
task "fail" { step = "acme.fail" }
task "crash" { step = "acme.crash" }
task "missing" { step = "acme.nothere" }
EOF
RUN=$(trigger failing)
check_eq fail.run "$(wait_run 30 "$RUN")" failed
check_eq fail.message "$(sql "SELECT error FROM tasks WHERE run_id = $RUN AND name = 'fail'")" 'acme.fail: the answer is not {}'
# SIGSEGV, or SIGABRT where a sanitizer catches the crash first
check_contains crash.signal "$(sql "SELECT error FROM tasks WHERE run_id = $RUN AND name = 'crash'")" "killed by signal"
check_contains missing.step "$(sql "SELECT error FROM tasks WHERE run_id = $RUN AND name = 'missing'")" \
  "step acme.nothere: no plugin in $PLUGINS provides it"
check crash.worker_alive kill -0 "$WPID"
RUN=$(trigger acme)
check_eq crash.worker_goes_on "$(wait_run 30 "$RUN")" succeeded

# a cancel reaches the step (host->cancelled), which ends by itself within the grace
apply waiting <<EOF
pipeline "waiting" {}
task "wait" { step = "acme.wait", with = { marker = "$TMP/cancel-seen" } }
EOF
RUN=$(trigger waiting)
wait_for 20 "SELECT state FROM tasks WHERE run_id = $RUN AND name = 'wait'" running >/dev/null
wait_for 20 "SELECT count(*) > 0 FROM attempt_logs l JOIN tasks t ON t.id = l.task_id WHERE t.run_id = $RUN" t >/dev/null
# its progress (host->progress) reaches run show with the next heartbeat
check_eq progress.stored "$(wait_for 20 "SELECT a.progress->>'note' FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.run_id = $RUN" "waiting for a cancel")" "waiting for a cancel"
check_contains progress.shown "$("$WEIR" run show "$RUN" 2>&1)" "25% waiting for a cancel"
check_eq progress.json "$("$WEIR" run show "$RUN" -o json | jq -r '.tasks[0].progress.fraction')" 0.25
"$WEIR" run cancel "$RUN" >/dev/null 2>&1
check_eq cancel.run "$(wait_run 20 "$RUN")" cancelled
check cancel.seen_by_step wait_file 5 "$TMP/cancel-seen"

# an exec step reports progress through $WEIR_PROGRESS_FILE; a file that is not such an
# object is ignored, and the run goes on
apply progress <<'EOF'
pipeline "progress" {}
task "p" { exec = "echo '{\"fraction\": 0.6, \"note\": \"step 3 of 5\"}' > $WEIR_PROGRESS_FILE; sleep 4; echo junk > $WEIR_PROGRESS_FILE; sleep 1" }
EOF
RUN=$(trigger progress)
check_eq progress.exec "$(wait_for 20 "SELECT a.progress->>'note' FROM attempts a JOIN tasks t ON t.id = a.task_id WHERE t.run_id = $RUN" "step 3 of 5")" "step 3 of 5"
check_contains progress.exec_shown "$("$WEIR" run show "$RUN" 2>&1)" "60% step 3 of 5"
check_eq progress.exec_done "$(wait_run 20 "$RUN")" succeeded
check_eq progress.gone_when_done "$("$WEIR" run show "$RUN" -o json | jq -r '.tasks[0].progress')" null

# GPUs: a worker with two gives each GPU task its own ordinal (CUDA_VISIBLE_DEVICES, and device 0
# of what the step sees); a task without a GPU sees none
"$WEIR" worker --scheduler "$URL" --token "$WORK" --slots 4 --name gw --dir "$TMP/gw" --label queue=gpu --label gpu=2 \
  --plugin-dir "$PLUGINS" >"$TMP/gw.log" 2>&1 &
GPID=$!
apply gpus <<'EOF'
pipeline "gpus" {}
task "a" { exec = "sleep 1; echo visible=[$CUDA_VISIBLE_DEVICES]", resources = { queue = "gpu", gpu = 1 } }
task "b" { exec = "sleep 1; echo visible=[$CUDA_VISIBLE_DEVICES]", resources = { queue = "gpu", gpu = 1 } }
task "cpu" { exec = "echo visible=[$CUDA_VISIBLE_DEVICES]", resources = { queue = "gpu" } }
task "echo" { step = "acme.echo", with = { greeting = "gpu" }, outputs = { "echo" }, resources = { queue = "gpu", gpu = 1 } }
EOF
RUN=$(trigger gpus)
check_eq gpus.run "$(wait_run 30 "$RUN")" succeeded
check_eq gpus.distinct "$( ("$WEIR" logs "$RUN" a; "$WEIR" logs "$RUN" b) 2>&1 | sort | tr '\n' ' ')" "visible=[0] visible=[1] "
check_eq gpus.none "$("$WEIR" logs "$RUN" cpu 2>&1)" "visible=[]"
check_contains gpus.device "$("$WEIR" logs "$RUN" echo 2>&1)" "on device 0"
kill -TERM "$GPID"; wait "$GPID"

# a step's signal reaches the trigger rules with its completion: acme.echo emits drift acme/model 0.25
apply watcher <<'EOF'
pipeline "watcher" {
  params = { share = param.number(0) },
  triggers = { on_signal "drift" { subject = "acme/model", threshold = 0.2, params = { share = "${signal.value}" } } },
}
task "noted" { exec = "echo share=$WEIR_PARAM_SHARE" }
EOF
RUN=$(trigger acme)
check_eq signal.step_run "$(wait_run 30 "$RUN")" succeeded
check_eq signal.from_step "$(sql "SELECT kind || ' ' || subject || ' ' || value || ' ' || outcome || ' ' || (attributes->>'task') FROM signals WHERE source = 'step' AND (attributes->>'run')::bigint = $RUN")" "drift acme/model 0.25 started echo"
WRUN=$(sql "SELECT r.id FROM runs r JOIN signals s ON s.id = r.signal_id WHERE (s.attributes->>'run')::bigint = $RUN")
check_eq signal.started_run "$(wait_run 30 "$WRUN")" succeeded
check_eq signal.param "$("$WEIR" logs "$WRUN" noted 2>&1)" "share=0.25"

# a worker pointed at a directory that does not exist refuses to start
"$WEIR" worker --scheduler "$URL" --token "$WORK" --plugin-dir "$TMP/nowhere" >"$TMP/bad.log" 2>&1
check_eq worker.bad_dir "$?" 2
check_contains worker.bad_dir_msg "$(cat "$TMP/bad.log")" "--plugin-dir: plugin directory $TMP/nowhere"

kill -TERM "$WPID"; wait "$WPID"; WPID=
check stop stop_scheduler
SCHED_PID=
finish
