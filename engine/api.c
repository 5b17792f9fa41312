/* api.c — the scheduler's /v1 HTTP API: routing, bearer-token auth, request
 * validation, and the pipeline endpoints. Each handler answers only after the
 * transaction holding its change has committed. Not here: the HTTP protocol
 * (http.c), SQL connection handling (db.c), the DSL (dsl/). */
#include "engine/api.h"
#include "common/error.h"
#include "common/log.h"
#include "common/sha256.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api_free(api_req_t *a) {
    if (!a) return;
    json_decref(a->body);
    free(a->source);
    weir_dsl_result_free(&a->compiled);
    free(a);
}

/* Every answer goes through these, so that the request context is always released. */
void api_reply_json(api_req_t *a, int status, json_t *body) {
    weir_http_respond_json(a->http, status, body);
    api_free(a);
}

void api_reply_error(api_req_t *a, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    weir_http_respond_error(a->http, status, "%s", msg);
    api_free(a);
}

/* A database-produced JSON document, passed through as it is. */
void api_reply_raw(api_req_t *a, int status, const char *json) {
    weir_http_respond(a->http, status, "application/json", json, strlen(json));
    api_free(a);
}

/* Maps a failed transaction to a status: 503 while the database is away, 500 otherwise. */
void api_reply_db_error(api_req_t *a, weir_db_tx_t *tx, int status) {
    if (status == WEIR_EUNAVAIL) {
        api_reply_error(a, 503, "database unavailable; retry shortly");
        return;
    }
    weir_log_error("api: %s %s: database error %s: %s", weir_http_req_method(a->http), weir_http_req_path(a->http),
                   weir_db_tx_sqlstate(tx), weir_db_tx_error(tx));
    api_reply_error(a, 500, "database error (%s); see the scheduler's log", weir_db_tx_sqlstate(tx));
}

int api_submit(api_req_t *a, weir_db_tx_t *tx, weir_db_tx_cb cb) {
    if (!tx) { api_reply_error(a, 500, "out of memory"); return -1; }
    weir_db_tx_submit(tx, cb, a);
    return 0;
}

void api_reply_result(api_req_t *a, const char *json) {
    json_t *r = json_loads(json, 0, NULL);
    int code = r ? (int)json_integer_value(json_object_get(r, "code")) : 0;
    if (code >= 300) {
        const char *msg = json_string_value(json_object_get(r, "message"));
        api_reply_error(a, code, "%s", msg ? msg : "refused");
    } else if (code >= 200) {
        json_object_del(r, "code");
        json_object_del(r, "notify");
        api_reply_json(a, code, json_incref(r));
    } else {
        api_reply_error(a, 500, "unexpected answer from the database");
    }
    json_decref(r);
}

int64_t api_parse_id(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n) return 0;
    return strtoll(s, NULL, 10);
}

/* ---- JSON body validation ---------------------------------------------------------- */

/* Parses the body as a JSON object and refuses fields other than the allowed ones. */
int api_parse_body(api_req_t *a, const char *const *allowed) {
    size_t len;
    const char *body = weir_http_req_body(a->http, &len);
    json_error_t err;
    a->body = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!a->body) {
        api_reply_error(a, 400, "request body is not valid JSON: %s (line %d, column %d)", err.text, err.line,
                    err.column);
        return -1;
    }
    if (!json_is_object(a->body)) {
        api_reply_error(a, 400, "request body must be a JSON object");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(a->body, key, v) {
        int known = 0;
        for (const char *const *k = allowed; *k && !known; k++) known = !strcmp(*k, key);
        if (!known) {
            api_reply_error(a, 400, "unknown field \"%s\" in request body", key);
            return -1;
        }
    }
    return 0;
}

/* A string field; required ones missing or of the wrong type are a 400 naming the field. */
const char *api_body_string(api_req_t *a, const char *field, int required, size_t maxlen, int *bad) {
    json_t *v = json_object_get(a->body, field);
    if (!v && !required) return NULL;
    if (!json_is_string(v)) {
        api_reply_error(a, 400, "field \"%s\" %s a string", field, v ? "must be" : "is required and must be");
        *bad = 1;
        return NULL;
    }
    if (json_string_length(v) > maxlen) {
        api_reply_error(a, 400, "field \"%s\" is longer than %zu bytes", field, maxlen);
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

int api_body_int(api_req_t *a, const char *field, int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = json_object_get(a->body, field);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        api_reply_error(a, 400, "field \"%s\" must be an integer from %lld to %lld", field, (long long)lo, (long long)hi);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

/* Pipeline names as the schema allows them; anything else in a path is refused before SQL sees it. */
int api_valid_name(const char *s) {
    size_t n = strlen(s);
    return n >= 1 && n <= 63 && s[0] >= 'a' && s[0] <= 'z' && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* Answers 400 unless the path's pipeline name is valid; 0 when it is. */
static int check_name_arg(api_req_t *a) {
    if (api_valid_name(a->args[0])) return 0;
    api_reply_error(a, 400, "invalid pipeline name in the path: use lowercase letters, digits, \"-\" and \"_\"");
    return -1;
}

/* ---- pipelines ------------------------------------------------------------------------------ */

static void compile_work(uv_work_t *w) {
    api_req_t *a = w->data;
    weir_dsl_compile(a->filename, a->source, strlen(a->source), &a->s->dsl, &a->compiled);
}

static void apply_done(weir_db_tx_t *tx, int status, void *data) {
    api_req_t *a = data;
    a->s->trim_pending = 1;
    if (status) { api_reply_db_error(a, tx, status); return; }
    int created = weir_db_rows(tx, 1) > 0;
    int changed = weir_db_rows(tx, 2) > 0;
    json_t *out = json_pack("{s:s, s:s, s:i, s:b, s:b, s:i}", "pipeline",
                            json_string_value(json_object_get(a->compiled.plan, "name")), "version",
                            a->compiled.version, "seq", atoi(weir_db_value(tx, 4, 0, 0)), "created", created,
                            "current_changed", changed, "tasks",
                            (int)json_array_size(json_object_get(a->compiled.plan, "tasks")));
    api_reply_json(a, created ? 201 : 200, out);
}

/* Compiles waiting for the thread pool; beyond this an apply gets 503, so that the queue,
 * and the sources it holds, stay bounded. */
#define MAX_COMPILING 16

static void apply_compiled(uv_work_t *w, int status) {
    api_req_t *a = w->data;
    a->s->compiling--;
    if (status) { api_reply_error(a, 503, "scheduler is stopping"); return; }
    if (a->compiled.nerrors || !a->compiled.plan) {
        json_t *errors = json_array();
        char *lines = a->compiled.errors ? a->compiled.errors : "";
        for (char *p = lines; *p;) {
            char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            json_array_append_new(errors, json_stringn(p, n));
            p += n + (nl ? 1 : 0);
        }
        json_t *out = json_pack("{s:{s:i, s:s, s:o}}", "error", "status", 422, "message",
                                "pipeline does not compile", "errors", errors);
        a->s->trim_pending = 1;
        api_reply_json(a, 422, out);
        return;
    }
    if (!a->s->db) { api_reply_error(a, 503, "scheduler is stopping"); return; }
    json_t *plan = a->compiled.plan;
    const char *name = json_string_value(json_object_get(plan, "name"));
    char ntasks[32];
    snprintf(ntasks, sizeof ntasks, "%zu", json_array_size(json_object_get(plan, "tasks")));
    weir_db_tx_t *tx = weir_db_tx_new(a->s->db);
    if (!tx) { api_reply_error(a, 500, "out of memory"); return; }
    const char *version = a->compiled.version;
    /* 0: create the pipeline or lock its row, so that concurrent applies number versions in turn. */
    weir_db_tx_add(tx,
                   "INSERT INTO pipelines (name) VALUES ($1) "
                   "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                   1, (const char *[]){name});
    /* 1: the version, unless this exact plan exists already (then applying is a no-op). */
    weir_db_tx_add(tx,
                   "INSERT INTO pipeline_versions (id, pipeline_id, seq, plan, source, source_name, task_count, "
                   "created_by) SELECT $1, p.id, (SELECT coalesce(max(seq), 0) + 1 FROM pipeline_versions "
                   "WHERE pipeline_id = p.id), $2::jsonb, $3, $4, $5::int, $6 FROM pipelines p WHERE p.name = $7 "
                   /* checked first so that an unchanged plan is not even parsed as jsonb */
                   "AND NOT EXISTS (SELECT 1 FROM pipeline_versions WHERE id = $1) "
                   "ON CONFLICT (id) DO NOTHING RETURNING seq",
                   7, (const char *[]){version, a->compiled.plan_json, a->source, a->filename, ntasks, a->actor, name});
    /* 2: make it current and record the change in the audit trail, in the same transaction. */
    weir_db_tx_add(tx,
                   "WITH u AS (UPDATE pipelines SET current_version = $1, updated_at = now() "
                   "  WHERE name = $2 AND current_version IS DISTINCT FROM $1 "
                   "  RETURNING id, (SELECT current_version FROM pipelines WHERE name = $2) AS previous) "
                   "INSERT INTO events (kind, pipeline_id, actor, detail) "
                   "SELECT 'pipeline.applied', u.id, $3, jsonb_build_object('version', $1::text, 'previous', "
                   "u.previous, 'seq', (SELECT seq FROM pipeline_versions WHERE id = $1)) FROM u RETURNING id",
                   3, (const char *[]){version, name, a->actor});
    /* 3: the schedule follows the current version. */
    json_t *sched = json_object_get(plan, "schedule");
    if (json_is_object(sched)) {
        const char *cron = json_string_value(json_object_get(sched, "cron"));
        const char *tz = json_string_value(json_object_get(sched, "timezone"));
        const char *catchup = json_is_true(json_object_get(sched, "catchup")) ? "true" : "false";
        weir_db_tx_add(tx,
                       "INSERT INTO schedules (pipeline_id, cron, timezone, catchup) "
                       "SELECT id, $2, $3, $4::boolean FROM pipelines WHERE name = $1 "
                       "ON CONFLICT (pipeline_id) DO UPDATE SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, "
                       "catchup = EXCLUDED.catchup, enabled = true, updated_at = now(), next_fire_at = CASE WHEN "
                       "(schedules.cron, schedules.timezone) = (EXCLUDED.cron, EXCLUDED.timezone) AND schedules.enabled "
                       "THEN schedules.next_fire_at END",
                       4, (const char *[]){name, cron ? cron : "", tz ? tz : "UTC", catchup});
    } else {
        weir_db_tx_add(tx,
                       "UPDATE schedules SET enabled = false, next_fire_at = NULL, updated_at = now() "
                       "WHERE enabled AND pipeline_id = (SELECT id FROM pipelines WHERE name = $1)",
                       1, (const char *[]){name});
    }
    /* 4: the version's number, whether new or not. */
    weir_db_tx_add(tx, "SELECT seq FROM pipeline_versions WHERE id = $1", 1, (const char *[]){version});
    api_submit(a, tx, apply_done);
}

static void api_apply(api_req_t *a) {
    static const char *const fields[] = {"source", "filename", NULL};
    if (api_parse_body(a, fields)) return;
    int bad = 0;
    const char *source = api_body_string(a, "source", 1, SIZE_MAX, &bad);
    if (bad) return;
    const char *filename = api_body_string(a, "filename", 0, sizeof a->filename - 1, &bad);
    if (bad) return;
    if (strlen(source) != json_string_length(json_object_get(a->body, "source"))) {
        api_reply_error(a, 400, "field \"source\" contains a NUL byte");
        return;
    }
    for (const char *p = filename; p && *p; p++) {
        /* it is echoed in error lines and shown by the CLI: no forged lines, no terminal escapes */
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            api_reply_error(a, 400, "field \"filename\" contains control characters");
            return;
        }
    }
    snprintf(a->filename, sizeof a->filename, "%s", filename && *filename ? filename : "pipeline.lua");
    if (!(a->source = strdup(source))) { api_reply_error(a, 500, "out of memory"); return; }
    if (a->s->compiling >= MAX_COMPILING) {
        api_reply_error(a, 503, "%d pipelines are being compiled; retry shortly", MAX_COMPILING);
        return;
    }
    a->work.data = a;
    if (uv_queue_work(a->s->loop, &a->work, compile_work, apply_compiled)) {
        api_reply_error(a, 503, "scheduler is stopping");
        return;
    }
    a->s->compiling++;
}

/* Reads: the database builds the JSON documents; the handler passes them through. */
static void read_done(weir_db_tx_t *tx, int status, void *data) {
    api_req_t *a = data;
    if (status) { api_reply_db_error(a, tx, status); return; }
    if (weir_db_rows(tx, 0) == 0 || PQgetisnull(weir_db_tx_result(tx, 0), 0, 0)) {
        if (a->args[1][0])
            api_reply_error(a, 404, "pipeline \"%s\" has no version \"%s\"", a->args[0], a->args[1]);
        else
            api_reply_error(a, 404, "no pipeline named \"%s\"", a->args[0]);
        return;
    }
    api_reply_raw(a, 200, weir_db_value(tx, 0, 0, 0));
}

static void read_query(api_req_t *a, const char *sql, int nparams, const char *const *params) {
    weir_db_tx_t *tx = weir_db_tx_new(a->s->db);
    if (tx) weir_db_tx_add(tx, sql, nparams, params);
    api_submit(a, tx, read_done);
}

#define PIPELINE_SUMMARY                                                                                 \
    "jsonb_build_object('name', p.name, 'current_version', p.current_version, 'seq', v.seq, "             \
    "'tasks', v.task_count, 'versions', (SELECT count(*) FROM pipeline_versions WHERE pipeline_id = p.id), " \
    "'schedule', CASE WHEN s.enabled THEN s.cron END, 'paused', p.paused, "                              \
    "'created_at', p.created_at, 'updated_at', p.updated_at)"

static void api_list_pipelines(api_req_t *a) {
    read_query(a,
               "SELECT jsonb_build_object('pipelines', coalesce(jsonb_agg(" PIPELINE_SUMMARY " ORDER BY p.name), '[]')) "
               "FROM pipelines p LEFT JOIN pipeline_versions v ON v.id = p.current_version "
               "LEFT JOIN schedules s ON s.pipeline_id = p.id",
               0, NULL);
}

static void api_show_pipeline(api_req_t *a) {
    if (check_name_arg(a)) return;
    read_query(a,
               "SELECT " PIPELINE_SUMMARY " || jsonb_build_object('versions', (SELECT coalesce(jsonb_agg("
               "  jsonb_build_object('id', x.id, 'seq', x.seq, 'tasks', x.task_count, 'source_name', x.source_name, "
               "  'created_by', x.created_by, 'created_at', x.created_at, 'current', x.id = p.current_version) "
               "  ORDER BY x.seq DESC), '[]') FROM pipeline_versions x WHERE x.pipeline_id = p.id)) "
               "FROM pipelines p LEFT JOIN pipeline_versions v ON v.id = p.current_version "
               "LEFT JOIN schedules s ON s.pipeline_id = p.id WHERE p.name = $1",
               1, (const char *[]){a->args[0]});
}

/* A version by "current", its number, or a prefix of its id of at least 8 hex digits. */
static void api_show_version(api_req_t *a) {
    if (check_name_arg(a)) return;
    const char *ref = a->args[1];
    size_t n = strlen(ref);
    int digits = n > 0 && n <= 9 && strspn(ref, "0123456789") == n;
    int hex = n >= 8 && n <= 64 && strspn(ref, "0123456789abcdef") == n;
    if (strcmp(ref, "current") && !digits && !hex) {
        api_reply_error(a, 400, "version \"%s\" is not \"current\", a version number, or an id prefix of 8+ hex digits",
                    ref);
        return;
    }
    char with_source[8] = "";
    weir_http_req_query_param(a->http, "source", with_source, sizeof with_source);
    const char *src = !strcmp(with_source, "1") || !strcmp(with_source, "true") ? "true" : "false";
    read_query(a,
               "SELECT json_build_object('pipeline', p.name, 'id', v.id, 'seq', v.seq, 'current', "
               "v.id = p.current_version, 'tasks', v.task_count, 'source_name', v.source_name, 'created_by', "
               "v.created_by, 'created_at', v.created_at, 'plan', v.plan, 'source', CASE WHEN $3::boolean THEN "
               "v.source END) FROM pipelines p JOIN pipeline_versions v ON v.pipeline_id = p.id "
               "WHERE p.name = $1 AND CASE WHEN $2 = 'current' THEN v.id = p.current_version "
               "WHEN $2 ~ '^[0-9]{1,9}$' THEN v.seq = $2::int ELSE v.id LIKE $2 || '%' END "
               "ORDER BY v.seq DESC LIMIT 1",
               3, (const char *[]){a->args[0], ref, src});
}

static void api_healthz(api_req_t *a) {
    if (a->s->db && weir_db_connected(a->s->db))
        api_reply_json(a, 200, json_pack("{s:s, s:s, s:b}", "status", "ok", "database", "ok", "leader", a->s->leader));
    else
        api_reply_json(a, 503, json_pack("{s:s, s:s}", "status", "degraded", "database", "unavailable"));
}

/* Prometheus text format: what the group commit and the claims are doing. */
static void api_metrics(api_req_t *a) {
    unsigned long long txs = 0, ops = 0;
    if (a->s->batch) weir_batch_stats(a->s->batch, &txs, &ops);
    char body[2048];
    int n = snprintf(body, sizeof body,
                     "# HELP weir_batch_transactions_total Transactions committed by the group commit.\n"
                     "# TYPE weir_batch_transactions_total counter\nweir_batch_transactions_total %llu\n"
                     "# HELP weir_batch_operations_total Statements those transactions carried.\n"
                     "# TYPE weir_batch_operations_total counter\nweir_batch_operations_total %llu\n"
                     "# HELP weir_claims_waiting Worker claims held open.\n"
                     "# TYPE weir_claims_waiting gauge\nweir_claims_waiting %u\n"
                     "# HELP weir_database_up 1 while the database connection is up.\n"
                     "# TYPE weir_database_up gauge\nweir_database_up %d\n"
                     "# HELP weir_leader 1 while this scheduler leads (fires the cron schedules).\n"
                     "# TYPE weir_leader gauge\nweir_leader %d\n"
                     "# HELP weir_auth_checks_total Requests whose token was checked.\n"
                     "# TYPE weir_auth_checks_total counter\nweir_auth_checks_total %llu\n"
                     "# HELP weir_auth_cached_total Those answered from the tokens checked before, without a query.\n"
                     "# TYPE weir_auth_cached_total counter\nweir_auth_cached_total %llu\n",
                     txs, ops, weir_work_waiting(a->s), a->s->db && weir_db_connected(a->s->db), a->s->leader,
                     a->s->auth_lookups, a->s->auth_hits);
    weir_http_respond(a->http, 200, "text/plain; version=0.0.4", body, (size_t)n);
    api_free(a);
}

static const route_t routes[] = {
    {"GET", "/healthz", 0, api_healthz},
    {"GET", "/metrics", 0, api_metrics},
    {"GET", "/v1/pipelines", ROLES_READ, api_list_pipelines},
    {"POST", "/v1/pipelines", ROLE_OPERATOR, api_apply},
    {"GET", "/v1/pipelines/{}", ROLES_READ, api_show_pipeline},
    {"GET", "/v1/pipelines/{}/versions/{}", ROLES_READ, api_show_version},
    {"POST", "/v1/pipelines/{}/runs", ROLE_OPERATOR, api_trigger},
    {"GET", "/v1/runs", ROLES_READ, api_list_runs},
    {"GET", "/v1/runs/{}", ROLES_READ, api_show_run},
    {"GET", "/v1/runs/{}/events", ROLES_READ, api_run_events},
    {"POST", "/v1/runs/{}/cancel", ROLE_OPERATOR, api_cancel_run},
    {"POST", "/v1/runs/{}/retry", ROLE_OPERATOR, api_retry_run},
    {"POST", "/v1/runs/{}/tasks/{}/cancel", ROLE_OPERATOR, api_cancel_task},
    {"POST", "/v1/runs/{}/tasks/{}/approve", ROLE_OPERATOR, api_approve_task},
    {"POST", "/v1/runs/{}/tasks/{}/reject", ROLE_OPERATOR, api_reject_task},
    {"GET", "/v1/runs/{}/tasks/{}/logs", ROLES_READ, api_task_logs},
    {"GET", "/v1/workers", ROLES_READ, api_list_workers},
    /* the registry: a worker's step may read it too (which version is in production) */
    {"GET", "/v1/models", ROLES_ANY, api_list_models},
    {"GET", "/v1/models/{}", ROLES_ANY, api_show_model},
    {"POST", "/v1/models/{}/promote", ROLE_OPERATOR, api_promote_model},
    {"POST", "/v1/models/{}/rollback", ROLE_OPERATOR, api_rollback_model},
    /* signals: from monitors and operators (any token but a viewer's may send one) */
    {"POST", "/v1/signals", ROLE_OPERATOR | ROLE_WORKER, api_post_signal},
    {"GET", "/v1/signals", ROLES_READ, api_list_signals},
    {"POST", "/v1/signals/alertmanager", ROLE_OPERATOR | ROLE_WORKER, api_alertmanager},
    {"GET", "/v1/schedules", ROLES_READ, api_list_schedules},
    {"POST", "/v1/workers", ROLE_WORKER, api_register_worker},
    {"POST", "/v1/workers/{}/claim", ROLE_WORKER, api_claim},
    {"POST", "/v1/workers/{}/heartbeat", ROLE_WORKER, api_heartbeat},
    {"POST", "/v1/workers/{}/leave", ROLE_WORKER, api_worker_leave},
    {"POST", "/v1/workers/{}/attempts/{}/{}/logs", ROLE_WORKER, api_log_chunk},
    {"POST", "/v1/workers/{}/attempts/{}/{}/complete", ROLE_WORKER, api_complete},
    {"POST", "/v1/workers/{}/completions", ROLE_WORKER, api_complete_many},
    {"PUT", "/v1/artifacts/{}", ROLE_WORKER, api_put_artifact},
    {"GET", "/v1/artifacts/{}", ROLES_ANY, api_get_artifact},
};

/* ---- routing and auth --------------------------------------------------------------------- */

/* 1 when path matches pattern; captures "{}" segments into args. */
static int route_match(const char *pattern, const char *path, char args[MAX_ARGS][MAX_ARG_LEN]) {
    int nargs = 0;
    while (*pattern && *path) {
        if (pattern[0] == '{' && pattern[1] == '}') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= MAX_ARG_LEN || nargs == MAX_ARGS) return 0;
            memcpy(args[nargs], path, n);
            args[nargs++][n] = '\0';
            path += n;
            pattern += 2;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    return !*pattern && !*path;
}

static const char *role_name(int role) {
    return role == ROLE_OPERATOR ? "operator" : role == ROLE_WORKER ? "worker" : "viewer";
}

/* Tokens checked once. A request's token is looked up in the database only when this scheduler
 * has not checked it since the last notice on weir_tokens (migration 0010's trigger sends one when
 * a token is revoked, changed or deleted) and on the current connection: notices sent while it
 * was down are lost, so a new connection voids what was checked. An entry also ends at the token's
 * expiry, and a minute after it was read. Tokens that fail are not kept. */
enum { AUTH_KEEP_MS = 60000 };

void weir_api_notify(const char *channel, const char *payload, void *data) {
    (void)payload;
    weir_sched_t *s = data;
    if (!strcmp(channel, "weir_tokens")) s->auth_gen++;
}

static int auth_valid(const weir_sched_t *s) {
    return s->db && s->auth_session && s->auth_session == weir_db_session(s->db);
}

static const weir_auth_entry_t *auth_find(weir_sched_t *s, const char *hash) {
    if (!auth_valid(s)) return NULL;
    uint64_t now = uv_now(s->loop);
    for (int i = 0; i < WEIR_AUTH_CACHE; i++) {
        const weir_auth_entry_t *e = &s->auth[i];
        if (e->gen == s->auth_gen && e->until > now && !strcmp(e->hash, hash)) return e;
    }
    return NULL;
}

static void auth_keep(weir_sched_t *s, const char *hash, const char *role, const char *name, const char *left_ms) {
    uint64_t now = uv_now(s->loop), keep = AUTH_KEEP_MS;
    if (*left_ms) {
        double left = strtod(left_ms, NULL);
        if (left <= 0) return;
        if (left < (double)keep) keep = (uint64_t)left;
    }
    /* the token's own slot, else a free or void one, else the next in turn: one slot per token */
    weir_auth_entry_t *slot = NULL, *spare = NULL;
    for (int i = 0; i < WEIR_AUTH_CACHE && !slot; i++) {
        weir_auth_entry_t *e = &s->auth[i];
        if (!strcmp(e->hash, hash)) slot = e;
        else if (!spare && (!e->hash[0] || e->gen != s->auth_gen || e->until <= now)) spare = e;
    }
    if (!slot) slot = spare ? spare : &s->auth[s->auth_next++ % WEIR_AUTH_CACHE];
    snprintf(slot->hash, sizeof slot->hash, "%s", hash);
    snprintf(slot->role, sizeof slot->role, "%s", role);
    snprintf(slot->name, sizeof slot->name, "%s", name);
    slot->until = now + keep;
    slot->gen = s->auth_gen;
}

/* The token is good (role and name from its row): check the route's roles and run it. */
static void auth_ok(api_req_t *a, const char *role_s, const char *name) {
    int role = !strcmp(role_s, "operator") ? ROLE_OPERATOR : !strcmp(role_s, "worker") ? ROLE_WORKER : ROLE_VIEWER;
    if (!(a->route->roles & role)) {
        char need[64] = "";
        for (int r = ROLE_VIEWER; r <= ROLE_WORKER; r <<= 1)
            if (a->route->roles & r) snprintf(need + strlen(need), sizeof need - strlen(need), "%s%s",
                                              need[0] ? " or " : "", role_name(r));
        api_reply_error(a, 403, "%s %s needs the %s role; this token has %s", weir_http_req_method(a->http),
                    weir_http_req_path(a->http), need, role_s);
        return;
    }
    snprintf(a->actor, sizeof a->actor, "%s", name);
    a->route->fn(a);
}

/* What a lookup remembers from when it was sent (its api_req_t's ctx, freed here). */
typedef struct {
    char hash[65];
    unsigned session, gen;
    int listen;    /* statement 0 is the LISTEN: the lookup is statement 1 */
    int keep;      /* the session listened before the lookup was sent: its answer may be kept */
} auth_lookup_t;

static void auth_done(weir_db_tx_t *tx, int status, void *data) {
    api_req_t *a = data;
    weir_sched_t *s = a->s;
    auth_lookup_t *l = a->ctx;
    a->ctx = NULL;
    if (l->listen) {
        s->auth_listening = 0;
        /* Listening from now on; what was read before it may have missed a notice. The answer
         * of this very lookup is not kept either: it may predate the LISTEN's commit. */
        if (!status && s->db && l->session && l->session == weir_db_session(s->db)) {
            s->auth_session = l->session;
            s->auth_gen++;
        }
    }
    int i = l->listen;
    if (status) { free(l); api_reply_db_error(a, tx, status); return; }
    if (weir_db_rows(tx, i) == 0) {
        free(l);
        api_reply_error(a, 401, "invalid, expired or revoked token");
        return;
    }
    const char *role = weir_db_value(tx, i, 0, 0), *name = weir_db_value(tx, i, 0, 1);
    if (l->keep && l->session == s->auth_session && auth_valid(s) && l->gen == s->auth_gen)
        auth_keep(s, l->hash, role, name, weir_db_value(tx, i, 0, 2));
    free(l);
    auth_ok(a, role, name);
}

void weir_api_handle(weir_http_req_t *req, void *data) {
    weir_sched_t *s = data;
    api_req_t *a = calloc(1, sizeof *a);
    if (!a) { weir_http_respond_error(req, 500, "out of memory"); return; }
    a->s = s;
    a->http = req;
    const char *method = weir_http_req_method(req), *path = weir_http_req_path(req);
    int path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        char args[MAX_ARGS][MAX_ARG_LEN];
        memset(args, 0, sizeof args);
        if (!route_match(routes[i].pattern, path, args)) continue;
        path_known = 1;
        if (strcmp(routes[i].method, method)) continue;
        a->route = &routes[i];
        memcpy(a->args, args, sizeof args);
        break;
    }
    if (!a->route) {
        if (path_known) api_reply_error(a, 405, "method %s is not allowed on %s", method, path);
        else api_reply_error(a, 404, "no route for %s %s", method, path);
        return;
    }
    if (!a->route->roles) { a->route->fn(a); return; }
    const char *auth = weir_http_req_header(req, "authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) || !auth[7]) {
        api_reply_error(a, 401, "missing bearer token: pass --token, set WEIR_TOKEN, or run `weir up`");
        return;
    }
    const char *token = auth + 7;
    while (*token == ' ') token++;
    if (strlen(token) > 256) { api_reply_error(a, 401, "invalid, expired or revoked token"); return; }
    if (!s->db) { api_reply_error(a, 503, "scheduler is stopping"); return; }
    char hash[65];
    weir_sha256_hex(token, strlen(token), hash);
    s->auth_lookups++;
    const weir_auth_entry_t *e = auth_find(s, hash);
    if (e) {
        s->auth_hits++;
        auth_ok(a, e->role, e->name);
        return;
    }
    auth_lookup_t *l = calloc(1, sizeof *l);
    if (!l) { api_reply_error(a, 500, "out of memory"); return; }
    memcpy(l->hash, hash, sizeof hash);
    l->session = weir_db_session(s->db);
    l->gen = s->auth_gen;
    l->keep = auth_valid(s);
    /* LISTEN on a connection that does not yet: with this lookup, so it costs no round trip */
    l->listen = l->session && !l->keep && !s->auth_listening;
    s->auth_listening |= l->listen;
    a->ctx = l;
    weir_db_tx_t *tx = weir_db_tx_new(s->db);
    if (tx && l->listen) weir_db_tx_add(tx, "LISTEN weir_tokens", 0, NULL);
    if (tx)
        weir_db_tx_add(tx,
                       "SELECT role, name, round(extract(epoch FROM expires_at - now()) * 1000) FROM api_tokens "
                       "WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
                       1, (const char *[]){hash});
    if (!tx) { a->ctx = NULL; s->auth_listening &= !l->listen; free(l); }
    api_submit(a, tx, auth_done);
}

static void read_json_done(weir_db_tx_t *tx, int status, void *data) {
    api_req_t *a = data;
    if (status) { api_reply_db_error(a, tx, status); return; }
    if (weir_db_rows(tx, 0) == 0 || PQgetisnull(weir_db_tx_result(tx, 0), 0, 0)) {
        if (a->not_found) a->not_found(a);
        else api_reply_error(a, 404, "not found");
        return;
    }
    api_reply_raw(a, 200, weir_db_value(tx, 0, 0, 0));
}

void api_read_json(api_req_t *a, const char *sql, int nparams, const char *const *params,
                   void (*not_found)(api_req_t *)) {
    if (!a->s->db) { api_reply_error(a, 503, "scheduler is stopping"); return; }
    a->not_found = not_found;
    weir_db_tx_t *tx = weir_db_tx_new(a->s->db);
    if (tx) weir_db_tx_add(tx, sql, nparams, params);
    api_submit(a, tx, read_json_done);
}
