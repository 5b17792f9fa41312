#!/bin/sh
# demo.sh — the main job (`make demo`): starts a private weir stack with `weir up` (its own
# PostgreSQL, migrations, scheduler and two local workers), lints and applies the example
# pipelines, runs examples/hello.lua end to end on the workers, shows the run and one task's
# log, and stops everything with SIGINT, as Ctrl-C would. Exits 0 only if the run succeeded
# and the stack stopped cleanly. Not a test suite: tests/ checks the details.
#
# WEIR (default build/weir), WEIR_HOME (default ./.weir, kept between demos) and WEIR_PORT
# (default 8470) change where it runs.
set -eu
cd "$(dirname "$0")/.."
WEIR=${WEIR:-build/weir}
export WEIR_HOME="${WEIR_HOME:-$PWD/.weir}"
PORT=${WEIR_PORT:-8470}
# The CLI must find this stack through $WEIR_HOME/client.json, not a scheduler named elsewhere.
unset WEIR_URL WEIR_TOKEN
ms() { date +%s%3N; }
T0=$(ms)

if curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
  echo "demo: something already answers on 127.0.0.1:$PORT (another weir up?); stop it or set WEIR_PORT" >&2
  exit 1
fi
mkdir -p "$WEIR_HOME"
LOG=$WEIR_HOME/up.log
"$WEIR" up --port "$PORT" >"$LOG" 2>&1 &
UP=$!

# stop: SIGINT to weir up, which stops the workers, the scheduler and PostgreSQL; its status.
stop() {
  [ -n "$UP" ] || return 0
  kill -INT "$UP" 2>/dev/null || true
  st=0
  wait "$UP" || st=$?
  UP=
  return $st
}
trap 'stop || true' EXIT
trap 'exit 130' INT TERM
fail() {
  echo "demo: $*" >&2
  echo "demo: the last lines of $LOG:" >&2
  tail -n 20 "$LOG" | sed 's/^/    /' >&2
  exit 1
}

i=0
until curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
  kill -0 "$UP" 2>/dev/null || fail "weir up stopped before the scheduler answered"
  [ $i -lt 600 ] || fail "the scheduler did not answer within 60 s"
  sleep 0.1; i=$((i + 1))
done
# A worker registers within a moment of the scheduler; without one the run could only wait.
i=0
until "$WEIR" workers -o json 2>/dev/null | grep -q '"state": "active"'; do
  [ $i -lt 300 ] || fail "no local worker registered within 30 s"
  sleep 0.1; i=$((i + 1))
done

echo "\$ weir up &    # $WEIR_HOME: PostgreSQL, scheduler on :$PORT, 2 workers; up in $(( $(ms) - T0 )) ms"
echo
echo "\$ weir lint examples/*.lua"
"$WEIR" lint examples/*.lua
echo
echo "\$ weir apply examples/*.lua"
"$WEIR" apply examples/*.lua
echo
echo "\$ weir trigger hello --wait --timeout 5m"
T1=$(ms)
# The exit status of trigger (0 only if the run succeeded) travels through a file: sh has no pipefail.
{ rc=0; "$WEIR" trigger hello --wait --timeout 5m || rc=$?; echo $rc >"$WEIR_HOME/trigger.rc"; } \
  | tee "$WEIR_HOME/trigger.out"
RC=$(cat "$WEIR_HOME/trigger.rc")
T2=$(ms)
RUN=$(sed -n 's/^run \([0-9][0-9]*\) of hello .*/\1/p' "$WEIR_HOME/trigger.out" | head -n 1)
[ -n "$RUN" ] || fail "the run was not started"
echo
echo "\$ weir run show $RUN"
"$WEIR" run show "$RUN"
echo
# The log of the task that picked the model, or of the first task that failed.
TASK=$(sed -n 's/^  \([a-z0-9_-]*\) failed: .*/\1/p' "$WEIR_HOME/trigger.out" | head -n 1)
echo "\$ weir logs $RUN ${TASK:=pick-best}      # what the task's latest attempt printed"
"$WEIR" logs "$RUN" "$TASK" || true
echo
echo "\$ kill -INT %1    # Ctrl-C: weir up stops the workers, the scheduler and PostgreSQL"
n=$(wc -l <"$LOG")
st=0
stop || st=$?
tail -n +"$((n + 1))" "$LOG" | sed 's/^[0-9T:.-]*Z //'
echo
[ "$st" -eq 0 ] || { echo "demo: weir up exited with status $st" >&2; exit 1; }
if [ "$RC" -ne 0 ]; then
  echo "demo: run $RUN of hello did not succeed (weir trigger exited $RC)" >&2
  exit 1
fi
echo "demo: run $RUN of hello succeeded in $((T2 - T1)) ms; the whole demo took $(( $(ms) - T0 )) ms"
