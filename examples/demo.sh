#!/bin/sh
# demo.sh — the main job (`make demo`): starts a private weir stack with
# `weir up` (its own PostgreSQL, migrations, scheduler), checks the example
# pipelines offline, applies them, and shows what the scheduler stored.
# For now it stops after applying: running tasks needs workers, which come next.
set -eu
cd "$(dirname "$0")/.."
WEIR=${WEIR:-build/weir}
export WEIR_HOME=${WEIR_HOME:-$PWD/.weir}
PORT=${WEIR_PORT:-8470}

mkdir -p "$WEIR_HOME"
"$WEIR" up --port "$PORT" >"$WEIR_HOME/up.log" 2>&1 &
UP=$!
trap 'kill -INT $UP 2>/dev/null; wait $UP 2>/dev/null || true' EXIT INT TERM
i=0
until curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
  if ! kill -0 $UP 2>/dev/null || [ $i -ge 600 ]; then
    echo "demo: weir up did not start:" >&2; cat "$WEIR_HOME/up.log" >&2; exit 1
  fi
  sleep 0.1; i=$((i + 1))
done
echo "\$ weir up            # private PostgreSQL under $WEIR_HOME, scheduler on :$PORT"
echo
echo "\$ weir lint examples/*.lua"
"$WEIR" lint examples/*.lua | head -n 40
echo
echo "\$ weir apply examples/*.lua"
"$WEIR" apply examples/*.lua
echo
echo "\$ weir pipelines"
"$WEIR" pipelines
echo
first=$("$WEIR" pipelines -o json | sed -n 's/.*"name": "\([^"]*\)".*/\1/p' | head -n 1)
echo "\$ weir pipeline show $first"
"$WEIR" pipeline show "$first"
echo
echo "demo: the pipelines are stored as versioned plans. This release stops here:"
echo "demo: running their tasks needs workers, which the next release adds."
