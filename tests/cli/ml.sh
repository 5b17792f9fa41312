# ml.sh — the ML plugin's steps (weir-ml.so) through real runs: a real scheduler, a real worker
# loading the plugin from the build, real HTTP for sources and notifications, and real data
# (scikit-learn's breast_cancer.csv from Debian's python3-sklearn). Each step's happy path and
# its bad inputs, each failing with a message that names the file, field or URL.
. tests/lib.sh
TMP=$(mktemp -d /tmp/weir-ml.XXXXXX)
cleanup() {
  for p in ${WPID:-} ${HTTP_PID:-} ${HOOK_PID:-}; do kill -KILL "$p" 2>/dev/null; done
  [ -n "${SCHED_PID:-}" ] && kill -KILL "$SCHED_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
ml_stack mlw
CANCER=$DATA/breast_cancer.csv

# Files served over real HTTP: the CSV gzipped, and nothing else (a 404 for the rest).
mkdir -p "$TMP/www"
gzip -c "$CANCER" >"$TMP/www/cancer.csv.gz"
HTTP_PORT=$((20000 + $$ % 12000))  # and HTTP_PORT + 1: below the ephemeral range (32768 and up)
(cd "$TMP/www" && exec $PY -m http.server "$HTTP_PORT" --bind 127.0.0.1) >"$TMP/http.log" 2>&1 &
HTTP_PID=$!
disown "$HTTP_PID" # killed at the end: no "Killed" line in the suite's output
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$HTTP_PORT/cancer.csv.gz" -o /dev/null && break; sleep 0.1; done

# task_field RUN TASK FIELD : a column of the task's row
task_field() { sql "SELECT $3 FROM tasks WHERE run_id = $1 AND name = '$2'"; }
# artifact SHA FILE : downloads an artifact (zlib on the wire) and inflates it into FILE
artifact() {
  curl -fs -H "Authorization: Bearer $OP" "$URL/v1/artifacts/$1" -o "$2.z" &&
    $PY -c 'import sys, zlib; open(sys.argv[2], "wb").write(zlib.decompress(open(sys.argv[1], "rb").read()))' "$2.z" "$2"
}
# st_header FILE : a safetensors file's JSON header
st_header() { $PY -c 'import json, struct, sys; b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; print(json.dumps(json.loads(b[8:8 + n]), sort_keys=True))' "$1"; }
# run_one NAME LUA-BODY : applies a one-off pipeline and runs it; prints the run id
run_one() {
  printf 'pipeline "%s" {}\n%s\n' "$1" "$2" | apply "$1" || return 1
  r=$(trigger "$1")
  wait_run 60 "$r" >/dev/null
  echo "$r"
}
# ingest_fails NAME SETTINGS EXPECTED : an ingest.csv task with those settings fails saying EXPECTED
ingest_fails() {
  r=$(run_one "$1" "task \"ingest\" { step = \"ingest.csv\", with = { $2 } }")
  check_eq "$1.failed" "$(task_field "$r" ingest state)" failed
  check_contains "$1.message" "$(task_field "$r" ingest error)" "$3"
}

COLS='names = { "mean_radius", "mean_texture", "mean_perimeter", "mean_area", "c4", "c5", "c6", "c7", "c8", "c9",
  "c10", "c11", "c12", "c13", "c14", "c15", "c16", "c17", "c18", "c19", "c20", "c21", "c22", "c23", "c24", "c25",
  "c26", "c27", "c28", "c29", "target" }'

# --- ingest.csv: a local file, a gzip over HTTP --------------------------------------------------
RUN=$(run_one local "local i = task \"ingest\" { step = \"ingest.csv\",
  with = { source = \"$CANCER\", label = \"target\", skip_rows = 1, header = \"no\", seed = 3, $COLS } }
task \"check\" { step = \"validate\", with = { data = i.outputs.dataset, reference = i.outputs.dataset } }")
check_eq ingest.local "$(rstate "$RUN")" succeeded
check_eq ingest.rows "$(task_field "$RUN" ingest "metrics->>'rows'")" 569
check_eq ingest.split "$(task_field "$RUN" ingest "(metrics->>'train_rows') || '/' || (metrics->>'test_rows')")" 427/142
SHA=$(task_field "$RUN" ingest "outputs->>'dataset'")
artifact "$SHA" "$TMP/dataset"
H=$(st_header "$TMP/dataset")
check_contains ingest.format "$H" '"weir.format": "dataset/1"'
check_contains ingest.label "$H" '"weir.label": "target"'
check_contains ingest.column "$H" '"mean_radius": {"data_offsets": [0, 4552], "dtype": "F64", "shape": [569]}'
check_contains ingest.split_tensor "$H" '"weir.split": {"data_offsets":'
# the split is stratified: 212 malignant (0) and 357 benign (1) rows, a quarter of each held out
SPLIT=$($PY - "$TMP/dataset" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
def col(name, fmt, size):
    s, e = h[name]["data_offsets"]; return struct.unpack("<%d%s" % ((e - s) // size, fmt), d[s:e])
y, sp = col("target", "d", 8), col("weir.split", "B", 1)
print(" ".join("%d:%d/%d" % (c, sum(1 for a, b in zip(y, sp) if a == c and b == 0), sum(1 for a, b in zip(y, sp) if a == c and b == 1)) for c in (0, 1)))
EOF
)
check_eq ingest.stratified "$SPLIT" "0:159/53 1:268/89"
check_eq validate.reference "$(task_field "$RUN" check state)" succeeded
check_eq validate.anomalies "$(task_field "$RUN" check "metrics->>'anomalies'")" 0
# the same seed gives the same dataset, byte for byte
RUN2=$(trigger local); wait_run 60 "$RUN2" >/dev/null
check_eq ingest.deterministic "$(task_field "$RUN2" ingest "outputs->>'dataset'")" "$SHA"

RUN=$(run_one http "task \"ingest\" { step = \"ingest.csv\",
  with = { source = \"http://127.0.0.1:$HTTP_PORT/cancer.csv.gz\", label = \"target\", skip_rows = 1, header = \"no\", seed = 3, $COLS } }")
check_eq ingest.http_gz "$(rstate "$RUN")" succeeded
check_eq ingest.http_same "$(task_field "$RUN" ingest "outputs->>'dataset'")" "$SHA"

# --- ingest.csv: bad inputs ----------------------------------------------------------------------
printf 'a,b,label\n1,2,x\n3,4\n' >"$TMP/ragged.csv"
: >"$TMP/empty.csv"
printf 'a,b,label\n1,2,"x\n' >"$TMP/quote.csv"
ingest_fails ragged "source = \"$TMP/ragged.csv\"" "ragged.csv:3: row has 2 fields, the header has 3"
ingest_fails empty "source = \"$TMP/empty.csv\"" "empty.csv: no rows"
ingest_fails quote "source = \"$TMP/quote.csv\"" "quote.csv:2: unterminated quoted field"
ingest_fails nofile "source = \"$TMP/nothere.csv\"" "$TMP/nothere.csv: no such file"
ingest_fails unreachable "source = \"http://127.0.0.1:9/data.csv\"" "http://127.0.0.1:9/data.csv: Failed to connect"
ingest_fails notfound "source = \"http://127.0.0.1:$HTTP_PORT/nothere.csv\"" "http://127.0.0.1:$HTTP_PORT/nothere.csv: HTTP 404"
ingest_fails scheme "source = \"ftp://example.com/x.csv\"" "ftp://example.com/x.csv: only local paths and http(s) URLs"
ingest_fails too_big "source = \"$CANCER\", max_bytes = \"1KiB\"" "larger than max_bytes (1024 bytes)"
ingest_fails too_big_gz "source = \"http://127.0.0.1:$HTTP_PORT/cancer.csv.gz\", max_bytes = \"64KiB\"" "more than max_bytes (65536 bytes) once uncompressed"
ingest_fails label "source = \"$CANCER\", skip_rows = 1, header = \"no\", label = \"targt\", $COLS" 'label column "targt" not found (did you mean "target"?)'
ingest_fails setting "source = \"$CANCER\", sead = 3" 'step ingest.csv: unknown setting "sead"'
ingest_fails names "source = \"$CANCER\", skip_rows = 1, header = \"no\", names = { \"a\" }" 'setting "names" has 1 names, breast_cancer.csv has 31 columns'
head -c 3000 "$TMP/www/cancer.csv.gz" >"$TMP/www/cut.csv.gz"
ingest_fails truncated_gz "source = \"http://127.0.0.1:$HTTP_PORT/cut.csv.gz\"" "cut.csv.gz: truncated gzip data"

# --- ingest.sql: rows of a query on a real PostgreSQL ----------------------------------------------
sql "CREATE TABLE ml_rows AS SELECT i AS id, (i % 7) * 1.5 AS x, CASE WHEN i % 3 = 0 THEN 'red' ELSE 'blue' END AS colour,
     CASE WHEN i % 10 = 0 THEN NULL ELSE i::float8 END AS gappy, i % 2 = 0 AS even, i % 2 AS label
     FROM generate_series(1, 200) i"
RUN=$(run_one sqlrows "task \"ingest\" { step = \"ingest.sql\", with = { conninfo = \"$PGCONN\",
  query = \"SELECT x, colour, gappy, even, label FROM ml_rows ORDER BY id;\", label = \"label\" } }")
check_eq ingest_sql.ok "$(task_field "$RUN" ingest state)" succeeded
check_eq ingest_sql.rows "$(task_field "$RUN" ingest "(metrics->>'rows') || '/' || (metrics->>'train_rows') || '/' || (metrics->>'test_rows')")" 200/150/50
artifact "$(task_field "$RUN" ingest "outputs->>'dataset'")" "$TMP/sqlds"
H=$(st_header "$TMP/sqlds")
check_contains ingest_sql.numeric "$H" '"x": {"data_offsets": [0, 1600], "dtype": "F64", "shape": [200]}'
check_contains ingest_sql.categorical "$H" '{\"name\":\"colour\",\"type\":\"categorical\",\"categories\":[\"blue\",\"red\"]}'
check_contains ingest_sql.boolean "$H" '"even": {"data_offsets": [4000, 5600], "dtype": "F64"'
RUN=$(run_one sqlbad "task \"syntax\" { step = \"ingest.sql\", with = { conninfo = \"$PGCONN\", query = \"SELEC 1\" } }
task \"write\" { step = \"ingest.sql\", with = { conninfo = \"$PGCONN\", query = \"DELETE FROM ml_rows RETURNING *\" } }
task \"many\" { step = \"ingest.sql\", with = { conninfo = \"$PGCONN\", query = \"SELECT * FROM ml_rows\", max_rows = 100 } }
task \"empty\" { step = \"ingest.sql\", with = { conninfo = \"$PGCONN\", query = \"SELECT * FROM ml_rows WHERE false\" } }
task \"down\" { step = \"ingest.sql\", with = { conninfo = \"host=127.0.0.1 port=9 connect_timeout=2\", query = \"SELECT 1\" } }")
check_contains ingest_sql.syntax "$(task_field "$RUN" syntax error)" 'ingest.sql: the query: ERROR:  syntax error at or near "SELEC"'
check_contains ingest_sql.read_only "$(task_field "$RUN" write error)" "ingest.sql: the query: ERROR:"
check_eq ingest_sql.nothing_deleted "$(sql "SELECT count(*) FROM ml_rows")" 200
check_contains ingest_sql.max_rows "$(task_field "$RUN" many error)" "more than max_rows (100) rows"
check_contains ingest_sql.empty "$(task_field "$RUN" empty error)" "the query returned no rows"
check_contains ingest_sql.unreachable "$(task_field "$RUN" down error)" "ingest.sql: cannot connect: connection to server at \"127.0.0.1\", port 9 failed"
RUN=$(run_one sqlinject "task \"two\" { step = \"ingest.sql\", with = { conninfo = \"$PGCONN\",
  query = \"SELECT 1 AS a; COMMIT; CREATE TABLE ml_pwned (x int)\" } }")
check_eq ingest_sql.one_statement "$(task_field "$RUN" two state)" failed
check_eq ingest_sql.nothing_created "$(sql "SELECT count(*) FROM pg_class WHERE relname = 'ml_pwned'")" 0

# --- what a dataset file must not be: Latin-1 text, a hostile split tensor ---------------------------
printf 'a,colour\n1,caf\351\n2,tea\n3,caf\351\n4,tea\n' >"$TMP/latin1.csv"
ingest_fails latin1 "source = \"$TMP/latin1.csv\"" 'column "colour", category 1: not valid UTF-8'
$PY - "$TMP/dataset" "$TMP/split7.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = bytearray(b[8 + n:])
s, e = h["weir.split"]["data_offsets"]; d[s] = 7
open(sys.argv[2], "wb").write(b[:8 + n] + bytes(d))
EOF
RUN=$(run_one split7 "task \"check\" { step = \"validate\", with = { data = \"$TMP/split7.safetensors\" } }")
check_contains dataset.split_value "$(task_field "$RUN" check error)" 'tensor "weir.split", row 1: 7 is neither 0 (train) nor 1 (test)'

# --- validate: a schema written in the pipeline, and a file that is not a dataset -----------------
RUN=$(run_one schema "local i = task \"ingest\" { step = \"ingest.csv\",
  with = { source = \"$CANCER\", label = \"target\", skip_rows = 1, header = \"no\", $COLS } }
task \"check\" { step = \"validate\", with = { data = i.outputs.dataset, schema = { allow_new_columns = true, columns = {
  mean_radius = { type = \"numeric\", min = 7, max = 25 }, target = { type = \"categorical\" }, gone = { type = \"numeric\" } } } } }")
check_eq validate.schema_failed "$(task_field "$RUN" check state)" failed
ERR=$(task_field "$RUN" check error)
check_contains validate.range "$ERR" 'column "mean_radius": 6 values outside [7, 25] (e.g. 25.22 at row 59)'
check_contains validate.type "$ERR" 'column "target": is numeric, the schema says categorical'
check_contains validate.missing_column "$ERR" 'column "gone": is in the schema but not in the data'
check_contains validate.log "$("$WEIR" logs "$RUN" check 2>&1)" "anomaly 3:"
printf 'not a dataset' >"$TMP/bogus.safetensors"
RUN=$(run_one bogus "task \"check\" { step = \"validate\", with = { data = \"$TMP/bogus.safetensors\" } }")
check_contains validate.hostile "$(task_field "$RUN" check error)" "$TMP/bogus.safetensors"

# --- train.logreg, train.mlp, evaluate, infer.batch on the real data -------------------------------
RUN=$(run_one models "local i = task \"ingest\" { step = \"ingest.csv\",
  with = { source = \"$CANCER\", label = \"target\", skip_rows = 1, header = \"no\", $COLS } }
local lr = task \"logreg\" { step = \"train.logreg\", with = { data = i.outputs.dataset } }
local mlp = task \"mlp\" { step = \"train.mlp\", with = { data = i.outputs.dataset, hidden = { 32 }, max_epochs = 100, seed = 1 } }
task \"eval_lr\" { step = \"evaluate\", with = { model = lr.outputs.model, data = i.outputs.dataset } }
task \"eval_mlp\" { step = \"evaluate\", with = { model = mlp.outputs.model, data = i.outputs.dataset } }
task \"score\" { step = \"infer.batch\", with = { model = lr.outputs.model, data = i.outputs.dataset, batch_size = 100 } }")
check_eq train.run "$(rstate "$RUN")" succeeded
ACC=$(task_field "$RUN" eval_lr "metrics->>'accuracy'")
check train.logreg_accuracy [ "$(echo "$ACC >= 0.95" | bc)" = 1 ]
check train.mlp_accuracy [ "$(echo "$(task_field "$RUN" eval_mlp "metrics->>'accuracy'") >= 0.93" | bc)" = 1 ]
check_eq evaluate.metrics "$(task_field "$RUN" eval_lr "(SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(metrics) k)")" \
  "accuracy,f1_macro,log_loss,precision_macro,recall_macro,roc_auc,rows"
check_eq evaluate.rows "$(task_field "$RUN" eval_lr "metrics->>'rows'")" 142
check_eq train.reports_test "$(task_field "$RUN" logreg "metrics->>'test_accuracy'")" "$ACC"
artifact "$(task_field "$RUN" logreg "outputs->>'model'")" "$TMP/model"
H=$(st_header "$TMP/model")
check_contains model.coef "$H" '"coef": {"data_offsets": [0, 240], "dtype": "F64", "shape": [1, 30]}'
check_contains model.format "$H" '"weir.format": "model/1"'
artifact "$(task_field "$RUN" mlp "outputs->>'model'")" "$TMP/mlp"
check_contains model.mlp_layers "$(st_header "$TMP/mlp")" '"layers.1.weight": {"data_offsets":'
artifact "$(task_field "$RUN" eval_lr "outputs->>'report'")" "$TMP/report"
check_eq evaluate.confusion "$(jq -c '.confusion_matrix.matrix | [.[][]] | add' "$TMP/report")" 142
artifact "$(task_field "$RUN" score "outputs->>'predictions'")" "$TMP/pred.csv"
check_eq infer.header "$(head -n 1 "$TMP/pred.csv")" "row,class,p_0,p_1"
check_eq infer.rows "$(($(wc -l <"$TMP/pred.csv") - 1))" 569
artifact "$(task_field "$RUN" score "outputs->>'scores'")" "$TMP/scores"
check_contains infer.scores "$(st_header "$TMP/scores")" '"probabilities": {"data_offsets": [0, 4552], "dtype": "F32", "shape": [569, 2]}'
check_contains infer.batches "$("$WEIR" logs "$RUN" score 2>&1)" "569 rows predicted"

# a class name that needs quoting is quoted whole in the predictions' header
printf 'x,kind\n1,"a,b"\n2,c\n3,"a,b"\n4,c\n5,"a,b"\n6,c\n7,"a,b"\n8,c\n' >"$TMP/quoted.csv"
RUN=$(run_one quoted "local i = task \"ingest\" { step = \"ingest.csv\", with = { source = \"$TMP/quoted.csv\", label = \"kind\" } }
local m = task \"train\" { step = \"train.logreg\", with = { data = i.outputs.dataset } }
task \"score\" { step = \"infer.batch\", with = { model = m.outputs.model, data = i.outputs.dataset } }")
artifact "$(task_field "$RUN" score "outputs->>'predictions'")" "$TMP/quoted.pred"
check_eq infer.quoted_header "$(head -n 1 "$TMP/quoted.pred")" 'row,class,"p_a,b",p_c'

# bad inputs: a dataset without the model's columns, a file that is not a model, a missing label
printf 'a,b,target\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n' >"$TMP/other.csv"
printf '\010\000\000\000\000\000\000\000{"a":1}' >"$TMP/hostile.safetensors"
MODEL_SHA=$(task_field "$RUN" logreg "outputs->>'model'")
RUN=$(run_one badmodels "local i = task \"ingest\" { step = \"ingest.csv\", with = { source = \"$TMP/other.csv\", label = \"target\" } }
local m = task \"model\" { exec = \"cp $TMP/model \$WEIR_OUTPUT_DIR/model\", outputs = { \"model\" } }
task \"columns\" { step = \"evaluate\", with = { model = m.outputs.model, data = i.outputs.dataset } }
task \"hostile\" { step = \"evaluate\", with = { model = \"$TMP/hostile.safetensors\", data = i.outputs.dataset } }
task \"nolabel\" { step = \"train.logreg\", with = { data = i.outputs.dataset, label = \"nope\" } }
task \"notdata\" { step = \"train.mlp\", with = { data = \"$TMP/other.csv\" } }
task \"hidden\" { step = \"train.mlp\", with = { data = i.outputs.dataset, hidden = { 0 } } }")
check_contains bad.columns "$(task_field "$RUN" columns error)" 'evaluate: column "mean_radius" is not in the dataset'
check_contains bad.hostile_model "$(task_field "$RUN" hostile error)" "$TMP/hostile.safetensors: "
check_contains bad.label "$(task_field "$RUN" nolabel error)" 'train.logreg: the label column "nope" is not in the dataset'
check_contains bad.not_a_dataset "$(task_field "$RUN" notdata error)" "train.mlp: $TMP/other.csv"
check_contains bad.hidden "$(task_field "$RUN" hidden error)" 'setting "hidden": layer 1 must be a width from 1 to 65536'

# --- deploy (the worker's half): an atomic copy into the serving directory, a notification -------
cat >"$TMP/hook.py" <<'EOF'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        open(sys.argv[2], "ab").write(body + b"\n")
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
HOOK_PORT=$((HTTP_PORT + 1))
$PY "$TMP/hook.py" "$HOOK_PORT" "$TMP/hook.log" >/dev/null 2>&1 &
HOOK_PID=$!
disown "$HOOK_PID"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$HOOK_PORT/" && break; sleep 0.1; done
RUN=$(run_one deploy "local m = task \"model\" { exec = \"cp $TMP/model \$WEIR_OUTPUT_DIR/model\", outputs = { \"model\" } }
task \"deploy\" { step = \"deploy\", with = { model = m.outputs.model, name = \"served\", serving_dir = \"$TMP/serving\",
  notify_url = \"http://127.0.0.1:$HOOK_PORT/reload\" } }")
check_eq deploy.succeeded "$(task_field "$RUN" deploy state)" succeeded
check deploy.copied cmp -s "$TMP/serving/served/model.safetensors" "$TMP/model"
check_contains deploy.meta "$(cat "$TMP/serving/served/model.json" 2>&1)" '"alias": "production"'
check_contains deploy.notified "$(cat "$TMP/hook.log" 2>&1)" "\"model\":\"served\",\"alias\":\"production\",\"sha256\":\"$(sha256sum <"$TMP/model" | cut -c1-64)\""
check_eq deploy.no_temp "$(ls -A "$TMP/serving/served" | tr '\n' ' ')" "model.json model.safetensors "
RUN=$(run_one deploybad "local m = task \"model\" { exec = \"cp $TMP/model \$WEIR_OUTPUT_DIR/model\", outputs = { \"model\" } }
local junk = task \"junk\" { exec = \"echo w > \$WEIR_OUTPUT_DIR/model\", outputs = { \"model\" } }
task \"deploy\" { step = \"deploy\", with = { model = m.outputs.model, name = \"Bad Name\" } }
task \"deploy_junk\" { step = \"deploy\", with = { model = junk.outputs.model, name = \"x\" } }
task \"deploy2\" { step = \"deploy\", with = { model = m.outputs.model, name = \"x\", notify_url = \"http://127.0.0.1:9/\" } }")
check_contains deploy.bad_name "$(task_field "$RUN" deploy error)" 'setting "name": "Bad Name" is not a model name'
check_contains deploy.not_a_model "$(task_field "$RUN" deploy_junk error)" "deploy: "
check_contains deploy.notify_fails "$(task_field "$RUN" deploy2 error)" "notify http://127.0.0.1:9/: Failed to connect"

# --- the example pipeline, end to end: a model in production, a worse one rejected, a rollback ------
"$WEIR" apply examples/cancer.lua >"$TMP/cancer.apply" 2>&1
check_eq example.apply "$?" 0
prod() { "$WEIR" models show cancer -o json 2>/dev/null | jq -r '.aliases.production'; }
R1=$(trigger cancer); wait_run 60 "$R1" >/dev/null
check_eq example.first "$(task_field "$R1" deploy state)/$(task_field "$R1" score state)" succeeded/succeeded
check_eq example.production "$(prod)" 1
R2=$("$WEIR" trigger cancer -p c=0.00001 -o json | jq -r .run); wait_run 60 "$R2" >/dev/null
check_eq example.worse_rejected "$(task_field "$R2" bless state)/$(task_field "$R2" deploy state)" rejected/skipped
check_contains example.reason "$(task_field "$R2" bless "decision::text")" "accuracy"
check_eq example.production_unchanged "$(prod)" 1
R3=$("$WEIR" trigger cancer -p c=0.5 -o json | jq -r .run); wait_run 60 "$R3" >/dev/null
check_eq example.better "$(task_field "$R3" bless state)" blessed
check_eq example.production_moved "$(prod)" 2
"$WEIR" models rollback cancer >"$TMP/rollback.out" 2>&1
check_eq example.rollback "$(prod)" 1
check_eq example.rollback_exact "$("$WEIR" models show cancer -o json | jq -r '[.versions[] | select(.version == 1) | .run] | .[0]')" "$R1"

kill -TERM "$WPID"; wait "$WPID"; WPID=
check stop stop_scheduler
SCHED_PID=
finish
