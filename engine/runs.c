/* runs.c — the operator routes for runs (docs/api.md, "Runs"): trigger, list, show, events,
 * cancel, retry, task cancel/approve/reject, logs, and the worker list.
 *
 * Changes go through the group-commit batch as calls of the state-machine functions
 * (migrations/0002_execution.sql); reads go straight to the database, which builds the
 * JSON documents. Not here: the worker protocol (work.c), HTTP (http.c). */
#include "engine/api.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define RUN_SUMMARY                                                                                          \
    "jsonb_build_object('id', r.id, 'pipeline', p.name, 'version', r.version_id, 'seq', v.seq, "             \
    "'state', r.state, 'trigger', r.trigger_kind, 'created_by', r.created_by, 'reason', r.reason, "          \
    "'created_at', r.created_at, 'started_at', r.started_at, 'finished_at', r.finished_at, "                 \
    "'duration_ms', CASE WHEN r.started_at IS NOT NULL THEN "                                                 \
    "  round(extract(epoch FROM coalesce(r.finished_at, now()) - r.started_at) * 1000)::bigint END, "        \
    "'tasks_total', r.tasks_total, 'tasks_done', r.tasks_done, 'tasks_failed', r.tasks_failed)"
#define RUN_FROM \
    "FROM runs r JOIN pipelines p ON p.id = r.pipeline_id JOIN pipeline_versions v ON v.id = r.version_id "

/* ---- reads ------------------------------------------------------------------------------ */

static void no_run(api_req_t *a) {
    if (a->args[1][0]) api_reply_error(a, 404, "run %s has no task \"%s\"", a->args[0], a->args[1]);
    else api_reply_error(a, 404, "no run %s", a->args[0]);
}

static void read_json(api_req_t *a, const char *sql, int nparams, const char *const *params) {
    api_read_json(a, sql, nparams, params, no_run);
}

/* The run id from the path as text; -1 after answering 400. */
static int run_arg(api_req_t *a, char *out, size_t size) {
    int64_t id = api_parse_id(a->args[0]);
    if (!id) {
        api_reply_error(a, 400, "run ids are positive numbers; \"%s\" is not one", a->args[0]);
        return -1;
    }
    snprintf(out, size, "%lld", (long long)id);
    return 0;
}

static int task_arg(api_req_t *a) {
    const char *t = a->args[1];
    size_t n = strlen(t);
    if (n == 0 || n > 63 || strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n) {
        api_reply_error(a, 400, "invalid task name in the path");
        return -1;
    }
    return 0;
}

void api_list_runs(api_req_t *a) {
    char pipeline[80] = "", state[32] = "", limit[16] = "50";
    weir_http_req_query_param(a->http, "pipeline", pipeline, sizeof pipeline);
    weir_http_req_query_param(a->http, "state", state, sizeof state);
    /* an absent parameter comes back empty: keep the default then */
    if (!weir_http_req_query_param(a->http, "limit", limit, sizeof limit) || !*limit) strcpy(limit, "50");
    int64_t lim = api_parse_id(limit);
    if (lim < 1 || lim > 1000) { api_reply_error(a, 400, "query parameter \"limit\" must be 1 to 1000"); return; }
    static const char *const states[] = {"", "queued", "running", "succeeded", "failed", "cancelled", NULL};
    int ok = 0;
    for (const char *const *s = states; *s && !ok; s++) ok = !strcmp(*s, state);
    if (!ok) {
        api_reply_error(a, 400, "query parameter \"state\" must be queued, running, succeeded, failed or cancelled");
        return;
    }
    snprintf(limit, sizeof limit, "%lld", (long long)lim);
    read_json(a,
              "SELECT jsonb_build_object('runs', coalesce(jsonb_agg(x.j ORDER BY x.id DESC), '[]')) FROM ("
              "SELECT r.id, " RUN_SUMMARY " AS j " RUN_FROM
              "WHERE ($1 = '' OR p.name = $1) AND ($2 = '' OR r.state = $2) ORDER BY r.id DESC LIMIT $3::int) x",
              3, (const char *[]){pipeline, state, limit});
}

void api_show_run(api_req_t *a) {
    char id[24];
    if (run_arg(a, id, sizeof id)) return;
    read_json(a,
              "SELECT " RUN_SUMMARY " || jsonb_build_object('params', r.params, 'scheduled_for', r.scheduled_for, "
              "'signal', (SELECT jsonb_build_object('id', s.id, 'kind', s.kind, 'subject', s.subject, 'value', s.value) "
              "  FROM signals s WHERE s.id = r.signal_id), 'tasks', (SELECT coalesce(jsonb_agg("
              "  jsonb_build_object('name', t.name, 'kind', t.kind, 'step', t.step, 'state', t.state, "
              "  'attempt', t.attempt, 'max_attempts', t.max_attempts, 'worker', w.name, 'queued_at', t.queued_at, "
              "  'started_at', t.started_at, 'finished_at', t.finished_at, 'duration_ms', CASE WHEN t.started_at "
              "  IS NOT NULL THEN round(extract(epoch FROM coalesce(t.finished_at, now()) - t.started_at) * 1000)::bigint "
              "  END, 'error', t.error, 'decision', t.decision, 'upstream', t.spec->'upstream', "
              "  'trigger_rule', t.trigger_rule, 'group', t.grp, 'metrics', t.metrics, 'outputs', t.outputs, "
              "  'progress', CASE WHEN t.state = 'running' THEN (SELECT pa.progress FROM attempts pa "
              "    WHERE pa.task_id = t.id AND pa.number = t.attempt) END) "
              "  ORDER BY t.pos), '[]') FROM tasks t LEFT JOIN workers w ON w.id = t.worker_id WHERE t.run_id = r.id)) "
              RUN_FROM "WHERE r.id = $1::bigint",
              1, (const char *[]){id});
}

void api_run_events(api_req_t *a) {
    char id[24];
    if (run_arg(a, id, sizeof id)) return;
    read_json(a,
              "SELECT CASE WHEN EXISTS (SELECT 1 FROM runs WHERE id = $1::bigint) THEN "
              "jsonb_build_object('events', coalesce((SELECT jsonb_agg(jsonb_build_object('id', e.id, 'at', e.at, "
              "'kind', e.kind, 'task', t.name, 'attempt', e.attempt, 'from_state', e.from_state, 'to_state', "
              "e.to_state, 'actor', e.actor, 'detail', e.detail) ORDER BY e.id) FROM events e "
              "LEFT JOIN tasks t ON t.id = e.task_id WHERE e.run_id = $1::bigint), '[]')) END",
              1, (const char *[]){id});
}

void api_list_workers(api_req_t *a) {
    read_json(a,
              "SELECT jsonb_build_object('workers', coalesce(jsonb_agg(jsonb_build_object('id', w.id, 'name', w.name, "
              "'queues', to_jsonb(w.queues), 'gpu', w.gpu, 'memory_bytes', w.memory_bytes, 'labels', w.labels, "
              "'slots', w.slots, 'slots_used', (SELECT count(*) FROM tasks t WHERE t.state = 'running' AND "
              "t.worker_id = w.id), 'state', w.state, 'version', w.version, 'registered_at', w.registered_at, "
              "'last_heartbeat_at', w.last_heartbeat_at) ORDER BY w.id), '[]')) FROM workers w "
              "WHERE w.state <> 'gone' OR w.last_heartbeat_at > now() - interval '1 hour'",
              0, NULL);
}

/* ---- changes ------------------------------------------------------------------------------ */

void api_trigger(api_req_t *a) {
    if (!api_valid_name(a->args[0])) {
        api_reply_error(a, 400, "invalid pipeline name in the path: use lowercase letters, digits, \"-\" and \"_\"");
        return;
    }
    static const char *const fields[] = {"params", "trigger", NULL};
    if (api_parse_body(a, fields)) return;
    json_t *params = json_object_get(a->body, "params");
    if (params && !json_is_object(params)) { api_reply_error(a, 400, "field \"params\" must be an object"); return; }
    /* how the run records its start: "api" (a program) unless the caller says "manual" (weir trigger) */
    json_t *tr = json_object_get(a->body, "trigger");
    const char *trigger = tr ? json_string_value(tr) : "api";
    if (!trigger || (strcmp(trigger, "api") && strcmp(trigger, "manual"))) {
        api_reply_error(a, 400, "field \"trigger\" must be \"api\" or \"manual\"");
        return;
    }
    char *ps = params ? json_dumps(params, JSON_COMPACT) : strdup("{}");
    if (!ps) { api_reply_error(a, 500, "out of memory"); return; }
    api_call(a, "SELECT weir_run_create($1, $2::jsonb, $4, $3)", 4,
             (const char *[]){a->args[0], ps, a->actor, trigger}, WEIR_BATCH_WAKES);
    free(ps);
}

void api_cancel_run(api_req_t *a) {
    char id[24];
    if (run_arg(a, id, sizeof id)) return;
    static const char *const fields[] = {NULL};
    size_t len;
    weir_http_req_body(a->http, &len);
    if (len && api_parse_body(a, fields)) return;
    api_call(a, "SELECT weir_run_cancel($1::bigint, $2)", 2, (const char *[]){id, a->actor}, WEIR_BATCH_WAKES);
}

void api_retry_run(api_req_t *a) {
    char id[24];
    if (run_arg(a, id, sizeof id)) return;
    static const char *const fields[] = {"task", NULL};
    const char *task = NULL;
    size_t len;
    weir_http_req_body(a->http, &len);
    if (len) {
        if (api_parse_body(a, fields)) return;
        int bad = 0;
        task = api_body_string(a, "task", 0, 63, &bad);
        if (bad) return;
    }
    api_call(a, "SELECT weir_run_retry($1::bigint, $2, $3)", 3, (const char *[]){id, task, a->actor},
             WEIR_BATCH_WAKES);
}

void api_cancel_task(api_req_t *a) {
    char id[24];
    if (run_arg(a, id, sizeof id) || task_arg(a)) return;
    api_call(a, "SELECT weir_task_cancel($1::bigint, $2, $3)", 3, (const char *[]){id, a->args[1], a->actor},
             WEIR_BATCH_WAKES);
}

static void decide(api_req_t *a, const char *approve) {
    char id[24];
    if (run_arg(a, id, sizeof id) || task_arg(a)) return;
    static const char *const fields[] = {"comment", NULL};
    const char *comment = NULL;
    size_t len;
    weir_http_req_body(a->http, &len);
    if (len) {
        if (api_parse_body(a, fields)) return;
        int bad = 0;
        comment = api_body_string(a, "comment", 0, 4096, &bad);
        if (bad) return;
    }
    api_call(a, "SELECT weir_task_decide($1::bigint, $2, $3::boolean, $4, $5)", 5,
             (const char *[]){id, a->args[1], approve, a->actor, comment ? comment : ""}, WEIR_BATCH_WAKES);
}

void api_approve_task(api_req_t *a) { decide(a, "true"); }
void api_reject_task(api_req_t *a) { decide(a, "false"); }

/* ---- logs ------------------------------------------------------------------------------------- */

/* Chunks returned by one request, at most this many raw bytes (at least one chunk). */
#define LOG_PAGE_BYTES (4 * 1024 * 1024)

static void logs_done(weir_db_tx_t *tx, int status, void *data) {
    api_req_t *a = data;
    if (status) { api_reply_db_error(a, tx, status); return; }
    /* statement 0: the attempt (number, finished, truncated) or no row */
    if (weir_db_rows(tx, 0) == 0) {
        api_reply_error(a, 404, "run %s has no task \"%s\"", a->args[0], a->args[1]);
        return;
    }
    const char *attempt = weir_db_value(tx, 0, 0, 0);
    char want[16] = "0";
    if (!weir_http_req_query_param(a->http, "attempt", want, sizeof want) || !*want) strcpy(want, "0");
    if (!*attempt && strcmp(want, "0")) {
        api_reply_error(a, 404, "task \"%s\" of run %s has no attempt %s", a->args[1], a->args[0], want);
        return;
    }
    int finished = !strcmp(weir_db_value(tx, 0, 0, 1), "t");
    int truncated = !strcmp(weir_db_value(tx, 0, 0, 2), "t");
    PGresult *res = weir_db_tx_result(tx, 1);
    int rows = weir_db_rows(tx, 1);
    int more = strtoll(weir_db_value(tx, 0, 0, 3), NULL, 10) > rows;
    weir_buf_t out;
    weir_buf_init(&out, LOG_PAGE_BYTES + 1024 * 1024 + 256);
    long long next = -1;
    for (int r = 0; r < rows; r++) {
        next = strtoll(PQgetvalue(res, r, 0), NULL, 10);
        uLongf raw = (uLongf)strtoull(PQgetvalue(res, r, 1), NULL, 10);
        size_t zlen;
        unsigned char *z = PQunescapeBytea((const unsigned char *)PQgetvalue(res, r, 2), &zlen);
        unsigned char *plain = raw ? malloc(raw) : NULL;
        uLongf got = raw;
        /* inflated with the stored size as the cap: a chunk that says less than it holds is refused */
        if (z && (raw == 0 || (plain && uncompress(plain, &got, z, (uLong)zlen) == Z_OK && got == raw)))
            weir_buf_append(&out, plain, got);
        else
            weir_buf_printf(&out, "[weir: log chunk %lld is damaged]\n", next);
        free(plain);
        PQfreemem(z);
    }
    char h[32];
    char after[16] = "0";
    if (!weir_http_req_query_param(a->http, "after", after, sizeof after) || !*after) strcpy(after, "0");
    snprintf(h, sizeof h, "%lld", next >= 0 ? next + 1 : strtoll(after, NULL, 10));
    weir_http_req_add_header(a->http, "X-Weir-Attempt", *attempt ? attempt : "0");
    weir_http_req_add_header(a->http, "X-Weir-Next-Seq", h);
    weir_http_req_add_header(a->http, "X-Weir-Log-Complete", finished && !more ? "true" : "false");
    weir_http_req_add_header(a->http, "X-Weir-Log-Truncated", truncated ? "true" : "false");
    weir_http_respond(a->http, 200, "text/plain; charset=utf-8", out.data ? out.data : "", out.len);
    weir_buf_free(&out);
    a->http = NULL;
    api_free(a);
}

void api_task_logs(api_req_t *a) {
    char id[24];
    if (run_arg(a, id, sizeof id) || task_arg(a)) return;
    char attempt[16] = "0", after[16] = "0";
    if (!weir_http_req_query_param(a->http, "attempt", attempt, sizeof attempt) || !*attempt) strcpy(attempt, "0");
    if (!weir_http_req_query_param(a->http, "after", after, sizeof after) || !*after) strcpy(after, "0");
    if ((strcmp(attempt, "0") && !api_parse_id(attempt)) || (strcmp(after, "0") && !api_parse_id(after)) ||
        strlen(attempt) > 9 || strlen(after) > 9) {
        api_reply_error(a, 400, "query parameters \"attempt\" and \"after\" must be numbers");
        return;
    }
    if (!a->s->db) { api_reply_error(a, 503, "scheduler is stopping"); return; }
    weir_db_tx_t *tx = weir_db_tx_new(a->s->db);
    if (!tx) { api_reply_error(a, 500, "out of memory"); return; }
    char page[16];
    snprintf(page, sizeof page, "%d", LOG_PAGE_BYTES);
    /* 0: the task and the attempt: number (NULL if none), finished, truncated, chunks from `after` on */
    weir_db_tx_add(tx,
                   "SELECT a.number, coalesce(a.state <> 'running', t.state IN ('succeeded', 'failed', 'skipped', "
                   "'cancelled', 'blessed', 'rejected')), coalesce(a.log_truncated, false), "
                   "(SELECT count(*) FROM attempt_logs l WHERE l.task_id = t.id AND l.number = a.number "
                   " AND l.seq >= $3::int) "
                   "FROM tasks t LEFT JOIN attempts a ON a.task_id = t.id AND a.number = CASE WHEN $4::int > 0 "
                   "THEN $4::int ELSE t.attempt END WHERE t.run_id = $1::bigint AND t.name = $2",
                   4, (const char *[]){id, a->args[1], after, attempt});
    /* 1: the chunks of this page, in order */
    weir_db_tx_add(tx,
                   "SELECT seq, raw_len, data FROM (SELECT l.seq, l.raw_len, l.data, "
                   "sum(l.raw_len) OVER (ORDER BY l.seq) AS total, row_number() OVER (ORDER BY l.seq) AS k "
                   "FROM tasks t JOIN attempt_logs l ON l.task_id = t.id "
                   "WHERE t.run_id = $1::bigint AND t.name = $2 AND l.number = CASE WHEN $5::int > 0 THEN $5::int "
                   "ELSE t.attempt END AND l.seq >= $3::int ORDER BY l.seq LIMIT 1024) c "
                   "WHERE c.total <= $4::int OR c.k = 1 ORDER BY seq",
                   5, (const char *[]){id, a->args[1], after, page, attempt});
    api_submit(a, tx, logs_done);
}
