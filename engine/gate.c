/* gate.c — the scheduler decides gates (docs/dsl.md, "Gates"), TFX Evaluator style: value
 * thresholds on the candidate's metrics, change thresholds against the model that the registry
 * alias (default "production") points at, and an optional Lua predicate over the upstream
 * tasks' metrics, run in the DSL sandbox on the thread pool with small limits.
 *
 * A gate that becomes ready waits as a queued task on the queue '' that no worker serves;
 * weir_gate_probe finds such gates (after batches that may ready tasks, and on the tick, so
 * that gates left by a restart are decided too), and each decision is written with
 * weir_gate_decide, which refuses a second decision. Every reason is kept in the decision. */
#include "engine/api.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GATE_BATCH = 32 };

typedef struct {
    weir_sched_t *s;
    uv_work_t work;
    long long task;
    json_t *spec;      /* the gate's plan entry ("gate": {...}) */
    json_t *m;         /* upstream task name -> metrics */
    json_t *baseline;  /* the baseline model version's metrics, or null */
    int blessed;
    json_t *decision;
} gate_eval_t;

static void gate_free(gate_eval_t *g) {
    json_decref(g->spec);
    json_decref(g->m);
    json_decref(g->baseline);
    json_decref(g->decision);
    free(g);
}

static int number_of(const json_t *v, double *out) {
    if (!json_is_number(v)) return 0;
    *out = json_number_value(v);
    return isfinite(*out);
}

/* Checks {metric: {min, max}} on values; appends a check per bound to checks. 1 if all pass. */
static int check_bounds(const json_t *bounds, const json_t *cand, const json_t *base, json_t *checks, int change,
                        json_t *failures) {
    int ok = 1;
    const char *metric;
    json_t *b;
    json_object_foreach((json_t *)bounds, metric, b) {
        double c, base_v = 0, value;
        int have = number_of(json_object_get(cand, metric), &c);
        if (change && have && base && !number_of(json_object_get(base, metric), &base_v)) {
            json_array_append_new(checks, json_pack("{s:s, s:s, s:b, s:s}", "metric", metric, "kind", "change",
                                                    "passed", 1, "note", "baseline has no such metric"));
            continue;
        }
        if (change && !base) {
            json_array_append_new(checks, json_pack("{s:s, s:s, s:b, s:s}", "metric", metric, "kind", "change",
                                                    "passed", 1, "note", "no baseline model yet"));
            continue;
        }
        if (!have) {
            ok = 0;
            char msg[160];
            snprintf(msg, sizeof msg, "%s was not reported", metric);
            json_array_append_new(failures, json_string(msg));
            json_array_append_new(checks, json_pack("{s:s, s:s, s:b, s:s}", "metric", metric, "kind",
                                                    change ? "change" : "value", "passed", 0, "note", "not reported"));
            continue;
        }
        value = change ? c - base_v : c;
        static const char *const sides[] = {"min", "max"};
        for (int k = 0; k < 2; k++) {
            double limit;
            if (!number_of(json_object_get(b, sides[k]), &limit)) continue;
            int pass = k == 0 ? value >= limit : value <= limit;
            json_array_append_new(checks, json_pack("{s:s, s:s, s:f, s:s, s:f, s:b}", "metric", metric, "kind",
                                                    change ? "change" : "value", "value", value, "bound", sides[k],
                                                    "limit", limit, "passed", pass));
            if (!pass) {
                ok = 0;
                char msg[200];
                snprintf(msg, sizeof msg, "%s%s %.6g %s %s %.6g", metric, change ? " change" : "", value,
                         k == 0 ? "<" : ">", sides[k], limit);
                json_array_append_new(failures, json_string(msg));
            }
        }
    }
    return ok;
}

static void gate_work(uv_work_t *w) {
    gate_eval_t *g = w->data;
    const json_t *gate = json_object_get(g->spec, "gate");
    const char *from = json_string_value(json_object_get(gate, "metrics_from"));
    const json_t *cand = from ? json_object_get(g->m, from) : NULL;
    json_t *checks = json_array(), *failures = json_array();
    const json_t *base = json_is_object(g->baseline) ? g->baseline : NULL;
    int ok = 1;
    if (json_object_get(gate, "thresholds")) ok &= check_bounds(json_object_get(gate, "thresholds"), cand, NULL, checks, 0, failures);
    if (json_object_get(gate, "change")) ok &= check_bounds(json_object_get(gate, "change"), cand, base, checks, 1, failures);
    const char *pred = json_string_value(json_object_get(gate, "predicate"));
    if (pred) {
        weir_dsl_limits_t lim = {16u << 20, 1000000};
        int verdict = 0;
        char err[300];
        int rc = weir_dsl_predicate(pred, g->m, &lim, &verdict, err, sizeof err);
        json_array_append_new(checks, json_pack("{s:s, s:s, s:b, s:s}", "kind", "predicate", "predicate", pred,
                                                "passed", !rc && verdict, "note", rc ? err : ""));
        if (rc || !verdict) {
            ok = 0;
            char msg[400];
            snprintf(msg, sizeof msg, "predicate %s%s", rc ? "failed: " : "is false", rc ? err : "");
            json_array_append_new(failures, json_string(msg));
        }
    }
    weir_buf_t sum;
    weir_buf_init(&sum, 2048);
    size_t i;
    json_t *f;
    json_array_foreach(failures, i, f) weir_buf_printf(&sum, "%s%s", i ? "; " : "", json_string_value(f));
    g->blessed = ok;
    g->decision = json_pack("{s:b, s:s, s:o, s:O, s:O}", "blessed", ok, "summary",
                            ok ? "all checks passed" : (sum.data ? sum.data : "rejected"), "checks", checks,
                            "candidate", cand ? cand : json_null(), "baseline", base ? base : json_null());
    weir_buf_free(&sum);
    json_decref(failures);
}

static void decided(weir_db_tx_t *tx, int i, int status, void *data) {
    gate_eval_t *g = data;
    g->s->gates_inflight--;
    if (status) weir_log_warn("gate: decision for task %lld not written (%s); retried on a later tick", g->task,
                              status == WEIR_EDB ? weir_db_tx_error(tx) : weir_strerror(status));
    else weir_log_info("gate: task %lld %s", g->task, g->blessed ? "blessed" : "rejected");
    gate_free(g);
}

static void gate_done(uv_work_t *w, int status) {
    gate_eval_t *g = w->data;
    if (status || !g->decision) { g->s->gates_inflight--; gate_free(g); return; }
    char id[24];
    snprintf(id, sizeof id, "%lld", g->task);
    char *d = json_dumps(g->decision, JSON_COMPACT);
    if (!d || weir_batch_add(g->s->batch, "SELECT weir_gate_decide($1, $2::boolean, $3::jsonb)", 3,
                             (const char *[]){id, g->blessed ? "true" : "false", d}, WEIR_BATCH_WAKES, decided, g)) {
        g->s->gates_inflight--;
        gate_free(g);
    }
    free(d);
}

static void probe_done(weir_db_tx_t *tx, int i, int status, void *data) {
    weir_sched_t *s = data;
    s->gate_probing = 0;
    if (status || s->stopping) return;
    int rows = weir_db_rows(tx, i);
    for (int r = 0; r < rows; r++) {
        gate_eval_t *g = calloc(1, sizeof *g);
        if (!g) return;
        g->s = s;
        g->task = strtoll(weir_db_value(tx, i, r, 0), NULL, 10);
        g->spec = json_loads(weir_db_value(tx, i, r, 1), 0, NULL);
        g->m = json_loads(weir_db_value(tx, i, r, 2), 0, NULL);
        g->baseline = json_loads(weir_db_value(tx, i, r, 3), JSON_DECODE_ANY, NULL);
        if (!g->m) g->m = json_object();
        g->work.data = g;
        s->gates_inflight++;
        if (uv_queue_work(s->loop, &g->work, gate_work, gate_done)) {
            s->gates_inflight--;
            gate_free(g);
        }
    }
}

void weir_gate_probe(weir_sched_t *s) {
    /* one probe at a time, and none while decisions are being made (they would be found again) */
    if (s->gate_probing || s->gates_inflight || s->stopping) return;
    if (weir_batch_add(s->batch,
                       "SELECT t.id, t.spec, (SELECT coalesce(jsonb_object_agg(u.name, u.metrics), '{}') "
                       "  FROM task_edges e JOIN tasks u ON u.id = e.upstream_id WHERE e.downstream_id = t.id), "
                       "(SELECT mv.metrics FROM models mo JOIN model_aliases al ON al.model_id = mo.id "
                       "  JOIN model_versions mv ON mv.model_id = mo.id AND mv.version = al.version "
                       "  WHERE mo.name = t.spec->'gate'->>'model' "
                       "  AND al.alias = coalesce(t.spec->'gate'->>'baseline', 'production')) "
                       "FROM tasks t WHERE t.state = 'queued' AND t.queue = '' AND t.kind = 'gate' "
                       "ORDER BY t.priority DESC, t.id LIMIT 32",
                       0, NULL, 0, probe_done, s) == 0)
        s->gate_probing = 1;
}
