# api.sh — the scheduler's HTTP API and the CLI against a real scheduler and a
# real PostgreSQL: every error status, limits, auth, apply idempotence, the
# sandbox seen through the API, reconnect after a cut, and the database left
# unchanged by every refused request.
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-api.XXXXXX)
start_scheduler --max-body 64KiB --max-header 4KiB --request-timeout 1s --lua-instructions 20000000 \
  || { not_ok start "scheduler did not start"; finish; exit 1; }

OP=$("$WEIR" token create --role operator --name ops --database "$PGCONN")
VIEW=$("$WEIR" token create --role viewer --name viewer --database "$PGCONN")
WORK=$("$WEIR" token create --role worker --name w1 --database "$PGCONN")
check token_format sh -c "echo '$OP' | grep -Eq '^weir_[0-9a-f]{40}$'"
check_eq token_hash_only "$(sql "SELECT count(*) FROM api_tokens WHERE hash = encode(sha256('$OP'::bytea), 'hex') AND position('$OP' in hash) = 0")" 1

state() { sql "SELECT (SELECT count(*) FROM pipelines) || '/' || (SELECT count(*) FROM pipeline_versions) || '/' || (SELECT count(*) FROM events) || '/' || (SELECT count(*) FROM schedules)"; }
EMPTY=$(state)
check_eq empty_db "$EMPTY" "0/0/0/0"

# --- status codes -------------------------------------------------------------------------
check_eq healthz_no_token "$(status GET /healthz)" 200
check_eq missing_token_401 "$(status GET /v1/pipelines)" 401
check_contains missing_token_message "$(cat "$BODY")" "missing bearer token"
check_eq bad_token_401 "$(status GET /v1/pipelines -H 'Authorization: Bearer weir_nope')" 401
check_eq worker_cannot_list_403 "$(status GET /v1/pipelines -H "Authorization: Bearer $WORK")" 403
check_contains forbidden_message "$(cat "$BODY")" "needs the viewer or operator role"
check_eq viewer_cannot_apply_403 "$(status POST /v1/pipelines -H "Authorization: Bearer $VIEW" -d '{"source":"x"}')" 403
check_eq viewer_can_list_200 "$(status GET /v1/pipelines -H "Authorization: Bearer $VIEW")" 200
check_eq unknown_route_404 "$(status GET /v1/nothing -H "Authorization: Bearer $OP")" 404
check_eq wrong_method_405 "$(status DELETE /v1/pipelines -H "Authorization: Bearer $OP")" 405
AUTH="Authorization: Bearer $OP"
check_eq malformed_json_400 "$(status POST /v1/pipelines -H "$AUTH" -d '{"source": ')" 400
check_contains malformed_json_message "$(cat "$BODY")" "not valid JSON"
check_eq missing_field_400 "$(status POST /v1/pipelines -H "$AUTH" -d '{}')" 400
check_contains missing_field_names_it "$(cat "$BODY")" 'field \"source\" is required'
check_eq wrong_type_400 "$(status POST /v1/pipelines -H "$AUTH" -d '{"source": 42}')" 400
check_contains wrong_type_names_it "$(cat "$BODY")" 'field \"source\" must be a string'
check_eq unknown_field_400 "$(status POST /v1/pipelines -H "$AUTH" -d '{"source": "x", "sauce": 1}')" 400
check_contains unknown_field_names_it "$(cat "$BODY")" 'unknown field \"sauce\"'
check_eq not_object_400 "$(status POST /v1/pipelines -H "$AUTH" -d '[1,2]')" 400
head -c 70000 /dev/zero | tr '\0' 'a' >"$TMP/big"
check_eq body_cap_413 "$(status POST /v1/pipelines -H "$AUTH" --data-binary @"$TMP/big")" 413
check_eq header_cap_431 "$(status GET /v1/pipelines -H "$AUTH" -H "X-Big: $(head -c 5000 /dev/zero | tr '\0' 'b')")" 431
check_eq compile_error_422 "$(status POST /v1/pipelines -H "$AUTH" -d '{"source": "pipeline \"x\" { params = 3 }", "filename": "bad.lua"}')" 422
check_contains compile_error_names_file "$(cat "$BODY")" "bad.lua:1:"
check_eq infinite_loop_422 "$(status POST /v1/pipelines -H "$AUTH" -d '{"source": "pipeline \"p\" {} task \"a\" { step = \"noop\" } while true do end", "filename": "loop.lua"}')" 422
check_contains infinite_loop_message "$(cat "$BODY")" "instruction"
check_eq coroutine_loop_422 "$(status POST /v1/pipelines -H "$AUTH" -d '{"source": "pipeline \"p\" {} task \"a\" { step = \"noop\" } coroutine.wrap(function() while true do end end)()", "filename": "co.lua"}')" 422
check_contains coroutine_loop_message "$(cat "$BODY")" "instruction budget"
check_eq memory_bomb_422 "$(status POST /v1/pipelines -H "$AUTH" -d '{"source": "pipeline \"p\" {} task \"a\" { step = \"noop\" } local t = {} for i = 1, 1e9 do t[i] = string.rep(\"x\", 1000) .. i end", "filename": "bomb.lua"}')" 422
check_contains memory_bomb_message "$(cat "$BODY")" "memory"
check_eq escape_io_422 "$(status POST /v1/pipelines -H "$AUTH" -d '{"source": "pipeline \"p\" {} task \"a\" { step = \"noop\" } io.open(\"/etc/passwd\")", "filename": "esc.lua"}')" 422
check_contains escape_io_message "$(cat "$BODY")" 'esc.lua:1: '
check_contains escape_io_names_io "$(cat "$BODY")" 'io is not available'
check_eq filename_control_chars_400 "$(status POST /v1/pipelines -H "$AUTH" -d '{"source": "x", "filename": "a\nb: forged"}')" 400
check_contains filename_control_chars_named "$(cat "$BODY")" 'field \"filename\"'
check_eq bad_name_in_path_400 "$(status GET "/v1/pipelines/$(printf '\377\376')" -H "$AUTH")" 400
check_eq bad_name_in_version_path_400 "$(status GET "/v1/pipelines/A%20B/versions/1" -H "$AUTH")" 400
# a burst of slow compiles: the queue is bounded (503 beyond it), every request is answered
PIDS=""
for i in $(seq 1 30); do
  curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "$AUTH" "$URL/v1/pipelines" \
    -d '{"source": "pipeline \"p\" {} task \"a\" { step = \"noop\" } while true do end"}' >>"$TMP/burst" &
  PIDS="$PIDS $!"
done
wait $PIDS
check_eq burst_all_answered "$(wc -l <"$TMP/burst" | tr -d ' ')" 30
check_eq burst_only_422_or_503 "$(grep -cv -e '^422$' -e '^503$' "$TMP/burst")" 0
check burst_queue_bounded grep -q '^503$' "$TMP/burst"
check_eq alive_after_sandbox "$(status GET /healthz)" 200

# a slow client that never finishes its request gets 408 within the timeout
exec 3<>/dev/tcp/127.0.0.1/"${URL##*:}"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n' >&3
SLOW=$(timeout 5 cat <&3 | head -n 1 | tr -d '\r')
exec 3<&-
check_contains slow_client_408 "$SLOW" "408"

check_eq refused_requests_changed_nothing "$(state)" "$EMPTY"

# --- apply and read back ---------------------------------------------------------------------
cat >"$TMP/p.lua" <<'LUA'
pipeline 'demo' {
  params = { n = param.int(3) },
  schedule = '0 3 * * *',
}
local a = task 'prepare' { exec = { 'sh', '-c', 'echo ${params.n}' } }
task 'finish' { step = 'noop', after = a }
LUA
# the Lua above has no double quotes or backslashes, so it embeds in JSON as it is
J='{"source": "'"$(tr '\n' ' ' <"$TMP/p.lua")"'", "filename": "p.lua"}'
check_eq apply_201 "$(status POST /v1/pipelines -H "$AUTH" -H 'Content-Type: application/json' -d "$J")" 201
V1=$(sed -n 's/.*"version": *"\([0-9a-f]*\)".*/\1/p' "$BODY")
check version_id_returned sh -c "echo '$V1' | grep -Eq '^[0-9a-f]{64}$'"
check_eq apply_again_200 "$(status POST /v1/pipelines -H "$AUTH" -d "$J")" 200
check_contains apply_again_same_version "$(cat "$BODY")" "$V1"
check_contains apply_again_not_created "$(cat "$BODY")" '"created":false'
check_eq one_version_one_event "$(state)" "1/1/1/1"
check_eq event_actor "$(sql "SELECT actor || ':' || kind FROM events")" "ops:pipeline.applied"
check_eq version_hash_is_plan_hash "$(sql "SELECT id = '$V1' FROM pipeline_versions")" t
check_eq show_current "$(status GET /v1/pipelines/demo/versions/current -H "$AUTH")" 200
check_contains show_current_plan "$(cat "$BODY")" '"prepare"'
check_eq show_by_seq "$(status GET /v1/pipelines/demo/versions/1 -H "$AUTH")" 200
check_eq show_by_prefix "$(status GET "/v1/pipelines/demo/versions/$(echo "$V1" | cut -c1-10)" -H "$AUTH")" 200
check_eq show_missing_version_404 "$(status GET /v1/pipelines/demo/versions/7 -H "$AUTH")" 404
check_eq show_bad_version_400 "$(status GET '/v1/pipelines/demo/versions/zz%27' -H "$AUTH")" 400
check_eq show_missing_pipeline_404 "$(status GET /v1/pipelines/nope -H "$AUTH")" 404

# --- the CLI, configured by environment -------------------------------------------------------
export WEIR_URL="$URL" WEIR_TOKEN="$OP" WEIR_HOME="$TMP/home"
sed 's/param.int(3)/param.int(4)/' "$TMP/p.lua" >"$TMP/demo.lua"
OUT=$("$WEIR" apply "$TMP/demo.lua")
check_contains cli_apply_new_version "$OUT" "demo: version 2"
OUT=$("$WEIR" apply "$TMP/demo.lua")
check_contains cli_apply_unchanged "$OUT" "unchanged"
OUT=$("$WEIR" pipelines)
check_contains cli_pipelines_table "$OUT" "NAME"
check_contains cli_pipelines_row "$OUT" "demo"
check_eq cli_pipelines_json "$("$WEIR" pipelines -o json | grep -c '"name": "demo"')" 1
OUT=$("$WEIR" pipeline show demo)
check_contains cli_show_tasks "$OUT" "prepare"
check_contains cli_show_versions "$OUT" "2 (current)"
check_contains cli_show_json "$("$WEIR" pipeline show demo --version 1 -o json)" '"seq": 1'
"$WEIR" pipeline show nope >/dev/null 2>&1
check_eq cli_notfound_exit_4 "$?" 4
printf 'task "x" { step = "nosuch" }\n' >"$TMP/bad.lua"
ERR=$("$WEIR" apply "$TMP/bad.lua" 2>&1)
check_eq cli_compile_error_exit_1 "$?" 1
check_contains cli_compile_error_text "$ERR" "bad.lua"
WEIR_TOKEN= WEIR_HOME="$TMP/none" "$WEIR" pipelines >/dev/null 2>&1
check_eq cli_no_token_exit_1 "$?" 1
WEIR_URL=http://127.0.0.1:1 "$WEIR" pipelines >/dev/null 2>&1
check_eq cli_unreachable_exit_3 "$?" 3
"$WEIR" pipelines --bogus >/dev/null 2>&1
check_eq cli_usage_exit_2 "$?" 2
for c in up scheduler migrate token lint apply pipelines pipeline; do
  OUT=$("$WEIR" "$c" --help 2>&1)
  check_eq "help_$c" "$?:$(echo "$OUT" | grep -c usage:)" "0:1"
done

# --- revocation, and the database connection cut under the scheduler ---------------------------
# The scheduler keeps the tokens it has checked (migration 0010): each case below uses its token
# first, so that the scheduler holds it, and then changes it behind the scheduler's back.
metric() { curl -s "$WEIR_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
C0=$(metric weir_auth_cached_total)
for i in 1 2 3 4 5; do status GET /v1/pipelines -H "Authorization: Bearer $VIEW" >/dev/null; done
check_eq token_checked_once "$(( $(metric weir_auth_cached_total) - C0 ))" 5
check_eq viewer_before_revoke_200 "$(status GET /v1/pipelines -H "Authorization: Bearer $VIEW")" 200
TID=$(sql "SELECT id FROM api_tokens WHERE name = 'viewer'")
"$WEIR" token revoke "$TID" --database "$PGCONN" >/dev/null
check_eq revoked_token_401 "$(status GET /v1/pipelines -H "Authorization: Bearer $VIEW")" 401

# deleted, or its expiry moved into the past, by hand: refused on the next request too
T2=$("$WEIR" token create --role viewer --name gone --database "$PGCONN")
T3=$("$WEIR" token create --role viewer --name lapsed --database "$PGCONN")
status GET /v1/pipelines -H "Authorization: Bearer $T2" >/dev/null
check_eq used_token_200 "$(status GET /v1/pipelines -H "Authorization: Bearer $T3")" 200
sql "DELETE FROM api_tokens WHERE name = 'gone'"
check_eq deleted_token_401 "$(status GET /v1/pipelines -H "Authorization: Bearer $T2")" 401
sql "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'lapsed'"
check_eq expired_by_hand_401 "$(status GET /v1/pipelines -H "Authorization: Bearer $T3")" 401

# a token that expires on its own, while the scheduler holds it
T4=$("$WEIR" token create --role viewer --name short --database "$PGCONN")
sql "UPDATE api_tokens SET expires_at = now() + interval '1500 ms' WHERE name = 'short'"
check_eq short_token_200 "$(status GET /v1/pipelines -H "Authorization: Bearer $T4")" 200
check_eq short_token_held "$(status GET /v1/pipelines -H "Authorization: Bearer $T4")" 200
sleep 1.7
check_eq short_token_expires_401 "$(status GET /v1/pipelines -H "Authorization: Bearer $T4")" 401

# revoked while the scheduler's connection is down: the notice is lost with the connection, so
# a new connection must forget every token checked on the old one
T5=$("$WEIR" token create --role viewer --name cut --database "$PGCONN")
check_eq cut_token_200 "$(status GET /v1/pipelines -H "Authorization: Bearer $T5")" 200
$PSQL -X -q "$PGCONN" >/dev/null <<SQL
BEGIN;
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'weir-scheduler' AND datname = current_database();
UPDATE api_tokens SET revoked_at = now() WHERE name = 'cut';
COMMIT;
SQL
CODES=""
i=0
while [ $i -lt 60 ]; do
  c=$(status GET /v1/pipelines -H "Authorization: Bearer $T5")
  CODES="$CODES $c"
  [ "$c" != 503 ] && break
  sleep 0.1; i=$((i + 1))
done
check_eq revoked_while_cut_401 "${CODES##* }" 401

sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()" >/dev/null
CODES=""
i=0
while [ $i -lt 60 ]; do
  c=$(status GET /v1/pipelines -H "$AUTH")
  CODES="$CODES $c"
  [ "$c" = 200 ] && break
  sleep 0.1; i=$((i + 1))
done
check_contains reconnects_after_cut "$CODES" "200"
case "$CODES" in *500*) not_ok cut_never_500 "$CODES" ;; *) ok cut_never_500 ;; esac

check clean_shutdown stop_scheduler
rm -rf "$TMP" "$SCHED_DIR"
finish
