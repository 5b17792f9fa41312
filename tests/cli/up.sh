# up.sh — `weir up` as a new user runs it: a private PostgreSQL cluster under
# WEIR_HOME, migrations, an operator token in client.json (mode 0600), the
# scheduler answering the CLI with no flags, a restart that reuses all of it,
# and Ctrl-C stopping both the scheduler and PostgreSQL.
. tests/lib.sh
HOME_DIR=$(mktemp -d /tmp/weir-up.XXXXXX)
chmod 755 "$HOME_DIR"
# below Linux's ephemeral range (32768 and up), where a client connection of another suite could
# hold the port
PORT=$((20000 + $$ % 12000))
export WEIR_HOME=$HOME_DIR
unset WEIR_URL WEIR_TOKEN WEIR_DATABASE_URL

up() {
  "$WEIR" up --port "$PORT" >"$HOME_DIR/up.log" 2>&1 &
  UP=$!
  i=0
  until curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 || [ $i -ge 300 ]; do sleep 0.1; i=$((i + 1)); done
}

up
check_eq up_serves "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")" 200
check up_cluster_under_home [ -f "$HOME_DIR/pg/data/PG_VERSION" ]
check_eq up_client_file_private "$(stat -c %a "$HOME_DIR/client.json")" 600
TOKEN1=$(sed -n 's/.*"token": "\(.*\)".*/\1/p' "$HOME_DIR/client.json")
check up_wrote_token sh -c "echo '$TOKEN1' | grep -Eq '^weir_[0-9a-f]{40}$'"
# a second `weir up` on the same home is refused and leaves the first one serving
timeout 30 "$WEIR" up --port $((PORT + 1)) >"$HOME_DIR/up2.log" 2>&1  # a bug here must not hang the suite
check_eq up_second_refused "$?" 1
check_contains up_second_says_why "$(cat "$HOME_DIR/up2.log")" "another \`weir up\` is running"
check_eq up_first_still_serves "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")" 200
printf 'pipeline "hello" {}\ntask "a" { step = "noop" }\n' >"$HOME_DIR/hello.lua"
OUT=$("$WEIR" apply "$HOME_DIR/hello.lua" 2>&1)
check_contains up_cli_needs_no_flags "$OUT" "hello: version 1"
kill -INT $UP
wait $UP
check_eq up_ctrl_c_exit_0 "$?" 0
check up_postgres_stopped [ ! -f "$HOME_DIR/pg/data/postmaster.pid" ]
check_contains up_says_stopping "$(cat "$HOME_DIR/up.log")" "stopping PostgreSQL"

# a second start reuses the cluster, the data and the token
up
TOKEN2=$(sed -n 's/.*"token": "\(.*\)".*/\1/p' "$HOME_DIR/client.json")
check_eq up_again_same_token "$TOKEN2" "$TOKEN1"
check_contains up_again_keeps_data "$("$WEIR" pipelines 2>&1)" "hello"
kill -TERM $UP
wait $UP
check_eq up_sigterm_exit_0 "$?" 0
check up_postgres_stopped_again [ ! -f "$HOME_DIR/pg/data/postmaster.pid" ]

rm -rf "$HOME_DIR"

# as root, a home postgres cannot enter keeps its cluster in /var/lib/weir, linked from HOME/pg;
# removing the home starts afresh there too: the old cluster is moved aside, not reused
if [ "$(id -u)" = 0 ]; then
  HOME_DIR=$(mktemp -d /tmp/weir-up.XXXXXX)
  chmod 700 "$HOME_DIR"
  export WEIR_HOME=$HOME_DIR/.weir
  up
  CLUSTER=$(readlink "$WEIR_HOME/pg")
  check_contains root_cluster_apart "$CLUSTER" "/var/lib/weir/pg-"
  printf 'pipeline "hello" {}\ntask "a" { step = "noop" }\n' >"$HOME_DIR/hello.lua"
  "$WEIR" apply "$HOME_DIR/hello.lua" >/dev/null 2>&1
  kill -INT $UP; wait $UP
  rm -rf "$WEIR_HOME"
  up
  check_contains root_old_moved_aside "$(cat "$HOME_DIR/up.log")" "was the cluster of an earlier $WEIR_HOME"
  check_contains root_fresh_start "$("$WEIR" pipelines 2>&1)" "no pipelines yet"
  check_eq root_same_place "$(readlink "$WEIR_HOME/pg")" "$CLUSTER"
  kill -INT $UP; wait $UP
  check_eq root_stopped "$?" 0
  rm -rf "$CLUSTER" "$CLUSTER".old-* "$HOME_DIR"
fi
finish
