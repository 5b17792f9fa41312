/* work.c — the scheduler's side of the worker protocol (docs/protocol.md): registration,
 * long-poll claims, batched heartbeats, log chunks, completions, and the timer tick.
 *
 * Hand-off: a worker keeps one claim open. Any batch that may make tasks ready (a completion,
 * a new run, an approval) carries, after its own statements, a claim for every waiting worker,
 * so a task that becomes ready is leased in the very transaction that readied it and handed
 * over as soon as that transaction commits — no polling interval. The state machine itself
 * is in SQL (migrations/0002_execution.sql); this file moves requests to it and answers. */
#include "engine/api.h"
#include "common/error.h"
#include "common/log.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MAX_NOTICES = 4096,   /* cancels kept for workers with no claim open; heartbeats cover the rest */
    MAX_OFFERS = 64,      /* waiting claims tried in one batch */
    MAX_COMPLETIONS = 1000, /* reports in one POST .../completions */
    MAX_WAIT_MS = 60000,
    MAX_LOG_CHUNK = 1024 * 1024
};

struct weir_waiter_s {
    weir_waiter_t *prev, *next;
    api_req_t *a;
    int64_t worker;
    int free_slots, free_gpu;
    int64_t free_memory;
    uint64_t deadline;    /* uv_now() ms */
    int in_batch;         /* its claim statement is in a transaction: answer only when it returns */
    int superseded;       /* a newer claim of the worker came: answer as soon as its statement returns */
    json_t *cancels;      /* [{task_id, attempt, reason}] to deliver with the answer */
};

struct weir_notice_s {
    weir_notice_t *next;
    int64_t worker, task;
    int attempt;
};

static void waiter_unlink(weir_sched_t *s, weir_waiter_t *w) {
    if (w->prev) w->prev->next = w->next;
    else s->waiters = w->next;
    if (w->next) w->next->prev = w->prev;
}

/* {"a": A, "b": B} from two JSON texts, in a buffer of the caller's; NULL when out of memory.
 * The claimed tasks are the database's JSON, passed through as text: parsing and printing them
 * again was two thirds of the scheduler's CPU in a wide run. */
static char *json_pair(const char *a, const char *av, const char *b, const char *bv) {
    size_t n = strlen(a) + strlen(av) + strlen(b) + strlen(bv) + 16;
    char *out = malloc(n);
    if (out) snprintf(out, n, "{\"%s\":%s,\"%s\":%s}", a, av, b, bv);
    return out;
}

/* Answers the claim with these tasks (the text of a JSON array, borrowed; NULL for none) and
 * frees it. */
static void waiter_answer(weir_sched_t *s, weir_waiter_t *w, const char *tasks) {
    waiter_unlink(s, w);
    char *cancel = w->cancels ? json_dumps(w->cancels, JSON_COMPACT) : NULL;
    int lost = w->cancels && !cancel;
    json_decref(w->cancels);
    char *out = json_pair("tasks", tasks ? tasks : "[]", "cancel", cancel ? cancel : "[]");
    if (out && !lost) api_reply_raw(w->a, 200, out);
    else api_reply_error(w->a, 500, "out of memory");
    free(out);
    free(cancel);
    free(w);
}

static weir_waiter_t *waiter_find(weir_sched_t *s, int64_t worker) {
    for (weir_waiter_t *w = s->waiters; w; w = w->next)
        if (w->worker == worker && !w->superseded) return w;
    return NULL;
}

static void add_cancel(weir_waiter_t *w, int64_t task, int attempt, const char *reason) {
    if (!w->cancels) w->cancels = json_array();
    json_array_append_new(w->cancels, json_pack("{s:I, s:i, s:s}", "task_id", (json_int_t)task, "attempt", attempt,
                                                "reason", reason));
}

/* ---- claims ------------------------------------------------------------------------------ */

static void claim_done(weir_db_tx_t *tx, int i, int status, void *data) {
    weir_waiter_t *w = data;
    weir_sched_t *s = w->a->s;
    w->in_batch = 0;
    if (status) {
        waiter_unlink(s, w);
        json_decref(w->cancels);
        api_reply_db_error(w->a, tx, status);
        free(w);
        return;
    }
    int code = atoi(weir_db_value(tx, i, 0, 0));
    if (code != 200) {
        waiter_unlink(s, w);
        json_decref(w->cancels);
        const char *msg = weir_db_value(tx, i, 0, 1);
        api_reply_error(w->a, code >= 400 ? code : 500, "%s", *msg ? msg : "claim failed");
        free(w);
        return;
    }
    long n = atol(weir_db_value(tx, i, 0, 3));
    if (n > 0 || w->cancels || w->superseded || s->stopping || uv_now(s->loop) >= w->deadline ||
        weir_http_req_gone(w->a->http))
        waiter_answer(s, w, n > 0 ? weir_db_value(tx, i, 0, 2) : NULL);
}

/* Adds a claim for these free resources of the worker to the batch being gathered; 0 when added. */
static int add_claim(weir_sched_t *s, int64_t worker, int64_t slots, int64_t gpu, int64_t memory, weir_batch_cb cb,
                     void *data) {
    char w[24], sl[24], g[24], m[24], lease[16];
    snprintf(w, sizeof w, "%lld", (long long)worker);
    snprintf(sl, sizeof sl, "%lld", (long long)slots);
    snprintf(g, sizeof g, "%lld", (long long)gpu);
    snprintf(m, sizeof m, "%lld", (long long)memory);
    snprintf(lease, sizeof lease, "%d", s->lease_ms);
    /* the code, the message of a refusal, the tasks (JSON text) and how many */
    return weir_batch_add(s->batch,
                          "SELECT code, message, tasks, n FROM weir_claim($1, $2, $3, $4, $5)",
                          5, (const char *[]){w, sl, g, m, lease}, 0, cb, data);
}

/* Adds the waiter's claim statement to the batch being gathered. */
static void offer_one(weir_sched_t *s, weir_waiter_t *w) {
    if (add_claim(s, w->worker, w->free_slots, w->free_gpu, w->free_memory, claim_done, w) == 0) w->in_batch = 1;
}

void weir_work_offer(weir_sched_t *s) {
    int n = 0;
    for (weir_waiter_t *w = s->waiters, *next; w && n < MAX_OFFERS; w = next) {
        next = w->next;
        if (w->in_batch || w->free_slots <= 0) continue;
        if (weir_http_req_gone(w->a->http)) { waiter_answer(s, w, NULL); continue; } /* never lease to a closed claim */
        offer_one(s, w);
        n++;
    }
}

/* Called before each transaction is sent, and on every loop turn while none is in flight:
 * wakes says the waiting statements may make tasks ready (triggers, cancels, decisions), and
 * then the idle claims ride in the same transaction; tasks that completions made ready and
 * did not hand off go to them now. */
void weir_work_batch_hook(weir_batch_t *b, int wakes, void *data) {
    (void)b;
    weir_sched_t *s = data;
    int offer = wakes || s->ready_unhanded > 0, probe = wakes || s->gates_ready;
    s->ready_unhanded = 0;
    s->gates_ready = 0;
    if (offer) weir_work_offer(s);
    if (probe) weir_gate_probe(s);
}

void api_claim(api_req_t *a) {
    weir_sched_t *s = a->s;
    int64_t worker = api_parse_id(a->args[0]);
    if (!worker) { api_reply_error(a, 400, "invalid worker id in the path"); return; }
    static const char *const fields[] = {"free_slots", "free_gpu", "free_memory_bytes", "wait_ms", NULL};
    if (api_parse_body(a, fields)) return;
    int64_t slots = 0, gpu = 0, mem = 0, wait = 20000;
    if (api_body_int(a, "free_slots", 0, 1024, &slots) || api_body_int(a, "free_gpu", 0, 1024, &gpu) ||
        api_body_int(a, "free_memory_bytes", 0, INT64_MAX, &mem) || api_body_int(a, "wait_ms", 0, MAX_WAIT_MS, &wait))
        return;
    if (s->stopping) { api_reply_error(a, 503, "scheduler is stopping"); return; }
    weir_waiter_t *old = waiter_find(s, worker);
    /* a worker holds one claim: the newer wins; one whose statement is in flight is answered
     * when it returns, with what it was leased (the worker runs that) */
    if (old && !old->in_batch) waiter_answer(s, old, NULL);
    else if (old) old->superseded = 1;
    weir_waiter_t *w = calloc(1, sizeof *w);
    if (!w) { api_reply_error(a, 500, "out of memory"); return; }
    w->a = a;
    w->worker = worker;
    w->free_slots = (int)slots;
    w->free_gpu = (int)gpu;
    w->free_memory = mem;
    w->deadline = uv_now(s->loop) + (uint64_t)wait;
    w->next = s->waiters;
    if (s->waiters) s->waiters->prev = w;
    s->waiters = w;
    /* cancels that arrived while this worker had no claim open */
    for (weir_notice_t **p = &s->notices; *p;) {
        weir_notice_t *n = *p;
        if (n->worker != worker) { p = &n->next; continue; }
        add_cancel(w, n->task, n->attempt, "cancelled");
        *p = n->next;
        free(n);
        s->nnotices--;
    }
    if (w->cancels || slots == 0) {
        if (w->cancels) { waiter_answer(s, w, NULL); return; }
        /* Only waiting for cancels; still check the worker exists, so a stale id learns to register. */
    }
    offer_one(s, w);
    if (!w->in_batch) {
        waiter_unlink(s, w);
        free(w);
        api_reply_error(a, 503, "scheduler is overloaded; retry shortly");
    }
}

void weir_work_notify(weir_sched_t *s, json_t *notify) {
    size_t i;
    json_t *n;
    json_array_foreach(notify, i, n) {
        int64_t worker = json_integer_value(json_object_get(n, "worker_id"));
        int64_t task = json_integer_value(json_object_get(n, "task_id"));
        int attempt = (int)json_integer_value(json_object_get(n, "attempt"));
        if (!worker) continue;
        weir_waiter_t *w = waiter_find(s, worker);
        if (w) {
            add_cancel(w, task, attempt, "cancelled");
            if (!w->in_batch) waiter_answer(s, w, NULL);
            continue;
        }
        if (s->nnotices >= MAX_NOTICES) continue; /* the worker's next heartbeat says it too */
        weir_notice_t *x = malloc(sizeof *x);
        if (!x) continue;
        x->worker = worker;
        x->task = task;
        x->attempt = attempt;
        x->next = s->notices;
        s->notices = x;
        s->nnotices++;
    }
}

void weir_work_stop(weir_sched_t *s) {
    for (weir_waiter_t *w = s->waiters, *next; w; w = next) {
        next = w->next;
        if (!w->in_batch) waiter_answer(s, w, NULL);
    }
    while (s->notices) {
        weir_notice_t *n = s->notices;
        s->notices = n->next;
        free(n);
    }
    s->nnotices = 0;
}

/* ---- answers from state-machine functions ------------------------------------------------ */

/* Replies with a function's jsonb result after commit, and tells workers about cancels in it. */
static void result_done(weir_db_tx_t *tx, int i, int status, void *data) {
    api_req_t *a = data;
    if (status) { api_reply_db_error(a, tx, status); return; }
    const char *v = weir_db_value(tx, i, 0, 0);
    if (strstr(v, "\"notify\"")) {
        json_t *r = json_loads(v, 0, NULL);
        weir_work_notify(a->s, json_object_get(r, "notify"));
        json_decref(r);
    }
    api_reply_result(a, v);
}

/* Queues one call for this request; answers 503 when the queue is full. */
int api_call(api_req_t *a, const char *sql, int nparams, const char *const *params, unsigned flags) {
    int rc = weir_batch_add(a->s->batch, sql, nparams, params, flags, result_done, a);
    if (rc) api_reply_error(a, 503, "scheduler is overloaded (%s); retry shortly", weir_strerror(rc));
    return rc;
}

/* ---- registration and heartbeats ------------------------------------------------------------ */

static void register_done(weir_db_tx_t *tx, int i, int status, void *data) {
    api_req_t *a = data;
    if (status) { api_reply_db_error(a, tx, status); return; }
    json_t *out = json_pack("{s:I, s:i, s:i}", "worker_id", (json_int_t)strtoll(weir_db_value(tx, i, 0, 0), NULL, 10),
                            "lease_ms", a->s->lease_ms, "heartbeat_ms", a->s->lease_ms / 3);
    api_reply_json(a, 201, out);
}

void api_register_worker(api_req_t *a) {
    static const char *const fields[] = {"name", "slots", "queues", "gpu", "memory_bytes", "labels", "version", NULL};
    if (api_parse_body(a, fields)) return;
    int bad = 0;
    const char *name = api_body_string(a, "name", 1, 200, &bad);
    if (bad) return;
    const char *version = api_body_string(a, "version", 0, 64, &bad);
    if (bad) return;
    int64_t slots = -1, gpu = 0, mem = 0;
    if (!json_object_get(a->body, "slots")) { api_reply_error(a, 400, "field \"slots\" is required"); return; }
    if (api_body_int(a, "slots", 1, 1024, &slots) || api_body_int(a, "gpu", 0, 1024, &gpu) ||
        api_body_int(a, "memory_bytes", 0, INT64_MAX, &mem))
        return;
    json_t *queues = json_object_get(a->body, "queues");
    json_t *labels = json_object_get(a->body, "labels");
    if (queues && (!json_is_array(queues) || json_array_size(queues) == 0 || json_array_size(queues) > 32)) {
        api_reply_error(a, 400, "field \"queues\" must be a list of 1 to 32 queue names");
        return;
    }
    size_t qi;
    json_t *q;
    json_array_foreach(queues, qi, q) {
        if (!json_is_string(q) || !api_valid_name(json_string_value(q))) {
            api_reply_error(a, 400, "field \"queues\": item %zu is not a queue name (lowercase letters, digits, - and _)",
                            qi + 1);
            return;
        }
    }
    if (labels && !json_is_object(labels)) { api_reply_error(a, 400, "field \"labels\" must be an object"); return; }
    char *qs = queues ? json_dumps(queues, JSON_COMPACT) : strdup("[\"default\"]");
    char *ls = labels ? json_dumps(labels, JSON_COMPACT) : strdup("{}");
    if (!qs || !ls) {
        free(qs);
        free(ls);
        api_reply_error(a, 500, "out of memory");
        return;
    }
    char sslots[16], sgpu[16], smem[24];
    snprintf(sslots, sizeof sslots, "%lld", (long long)slots);
    snprintf(sgpu, sizeof sgpu, "%lld", (long long)gpu);
    snprintf(smem, sizeof smem, "%lld", (long long)mem);
    int rc = weir_batch_add(a->s->batch,
                            "INSERT INTO workers (name, slots, queues, gpu, memory_bytes, labels, version) "
                            "SELECT $1, $2::int, ARRAY(SELECT jsonb_array_elements_text($3::jsonb)), $4::int, "
                            "$5::bigint, $6::jsonb, $7 RETURNING id",
                            7, (const char *[]){name, sslots, qs, sgpu, smem, ls, version ? version : ""}, 0,
                            register_done, a);
    free(qs);
    free(ls);
    if (rc) api_reply_error(a, 503, "scheduler is overloaded; retry shortly");
}

/* POST /v1/workers/{w}/leave: a worker that drained and exits says so; `weir workers` shows
 * it gone at once instead of after three silent leases. */
void api_worker_leave(api_req_t *a) {
    int64_t worker = api_parse_id(a->args[0]);
    if (!worker) { api_reply_error(a, 400, "invalid worker id in the path"); return; }
    weir_waiter_t *w = waiter_find(a->s, worker);
    if (w && !w->in_batch) waiter_answer(a->s, w, NULL);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)worker);
    api_call(a,
             "WITH u AS (UPDATE workers SET state = 'gone' WHERE id = $1::bigint RETURNING id) "
             "SELECT coalesce((SELECT jsonb_build_object('code', 200, 'worker_id', id, 'state', 'gone') FROM u), "
             "weir_refuse(404, format('no worker %s', $1::text)))",
             1, (const char *[]){id}, 0);
}

/* A statement whose outcome nobody waits for (a failed one is retried by its next turn). */
static void ignore_result(weir_db_tx_t *tx, int i, int status, void *data) { (void)tx, (void)i, (void)status, (void)data; }

void api_heartbeat(api_req_t *a) {
    int64_t worker = api_parse_id(a->args[0]);
    if (!worker) { api_reply_error(a, 400, "invalid worker id in the path"); return; }
    static const char *const fields[] = {"attempts", NULL};
    if (api_parse_body(a, fields)) return;
    json_t *list = json_object_get(a->body, "attempts");
    if (!json_is_array(list) || json_array_size(list) > 4096) {
        api_reply_error(a, 400, "field \"attempts\" must be a list of at most 4096 {task_id, attempt}");
        return;
    }
    size_t i;
    json_t *x;
    int progress = 0;
    json_array_foreach(list, i, x) {
        if (!json_is_integer(json_object_get(x, "task_id")) || !json_is_integer(json_object_get(x, "attempt"))) {
            api_reply_error(a, 400, "field \"attempts\": item %zu needs integer \"task_id\" and \"attempt\"", i + 1);
            return;
        }
        json_t *p = json_object_get(x, "progress");
        if (!p) continue;
        json_t *f = json_object_get(p, "fraction"), *n = json_object_get(p, "note");
        if (!json_is_number(f) || json_number_value(f) < 0 || json_number_value(f) > 1 || (n && !json_is_string(n)) ||
            (n && json_string_length(n) > 200) || json_object_size(p) > 2) {
            api_reply_error(a, 400, "field \"attempts\": item %zu: \"progress\" must be {\"fraction\": 0 to 1, "
                            "\"note\": at most 200 bytes}", i + 1);
            return;
        }
        progress = 1;
    }
    char *s = json_dumps(list, JSON_COMPACT);
    char sw[24], lease[16];
    snprintf(sw, sizeof sw, "%lld", (long long)worker);
    snprintf(lease, sizeof lease, "%d", a->s->lease_ms);
    /* progress of the attempts this worker still runs (a stale one's is dropped), in the same
     * transaction as the renewal; migrations/0008_progress.sql */
    if (progress)
        weir_batch_add(a->s->batch,
                       "UPDATE attempts SET progress = x.p FROM (SELECT (e->>'task_id')::bigint AS t, "
                       "(e->>'attempt')::int AS n, e->'progress' AS p FROM jsonb_array_elements($2::jsonb) e "
                       "WHERE e ? 'progress') x WHERE attempts.task_id = x.t AND attempts.number = x.n "
                       "AND attempts.worker_id = $1::bigint AND attempts.state = 'running' "
                       "AND attempts.progress IS DISTINCT FROM x.p",
                       2, (const char *[]){sw, s ? s : "[]"}, 0, ignore_result, NULL);
    api_call(a, "SELECT weir_heartbeat($1, $2::jsonb, $3)", 3, (const char *[]){sw, s ? s : "[]", lease}, 0);
    free(s);
}

/* ---- completions and logs ----------------------------------------------------------------- */

/* The worker, task and attempt named by the path; -1 after answering 400. */
static int attempt_args(api_req_t *a, char *w, char *t, char *n) {
    int64_t worker = api_parse_id(a->args[0]), task = api_parse_id(a->args[1]), num = api_parse_id(a->args[2]);
    if (!worker || !task || !num || num > 1000000) {
        api_reply_error(a, 400, "invalid worker, task or attempt number in the path");
        return -1;
    }
    snprintf(w, 24, "%lld", (long long)worker);
    snprintf(t, 24, "%lld", (long long)task);
    snprintf(n, 24, "%lld", (long long)num);
    return 0;
}

static int is_sha256(const char *s) { return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64; }

/* Completions that arrive in one loop turn are gathered into one call of weir_complete_many,
 * made when the batch is sent: dependents of all of them are then updated together. A request
 * carries one completion (the per-attempt route) or a list (POST .../completions); each request
 * owns a slice of the items and is answered from that slice of the results. */
/* A completions request that also claims: its answer waits for both statements of its
 * transaction, the completions' and the claim's, which comes right after them. */
typedef struct {
    api_req_t *a;
    json_t *results;
    char *tasks; /* the claim's tasks, JSON text */
    int waiting; /* statements not answered yet */
    int status;  /* the first failure */
    weir_db_tx_t *failed_tx;
} handoff_t;

typedef struct {
    api_req_t *a;
    size_t first, count;
    int list;     /* answer {"results": [...]} rather than the single result */
    handoff_t *h; /* or answer through this */
} completion_req_t;

static void handoff_step(handoff_t *h, weir_db_tx_t *tx, int status) {
    if (status && !h->status) { h->status = status; h->failed_tx = tx; }
    if (--h->waiting > 0) return;
    char *results = h->status || !h->results ? NULL : json_dumps(h->results, JSON_COMPACT);
    char *out = results ? json_pair("results", results, "tasks", h->tasks ? h->tasks : "[]") : NULL;
    if (h->status) api_reply_db_error(h->a, h->failed_tx, h->status);
    else if (!h->results) api_reply_error(h->a, 500, "unexpected answer from the database");
    else if (!out) api_reply_error(h->a, 500, "out of memory");
    else api_reply_raw(h->a, 200, out);
    free(out);
    free(results);
    json_decref(h->results);
    free(h->tasks);
    free(h);
}

static void handoff_claim_done(weir_db_tx_t *tx, int i, int status, void *data) {
    handoff_t *h = data;
    /* a refused claim hands nothing; the completions stand */
    if (!status && atoi(weir_db_value(tx, i, 0, 0)) == 200) {
        /* out of memory, what it leased goes back when the leases expire, as with a lost answer */
        h->tasks = strdup(weir_db_value(tx, i, 0, 2));
        if (h->tasks) h->a->s->ready_unhanded -= atol(weir_db_value(tx, i, 0, 3));
    }
    handoff_step(h, tx, status);
}

typedef struct {
    weir_sched_t *s;
    completion_req_t *reqs;
    json_t *items;
    size_t n, cap;
} completion_set_t;

static int completions_fill(void *data, char **params) {
    completion_set_t *c = data;
    if (c->s->completions == c) c->s->completions = NULL; /* later completions start a new set */
    params[0] = json_dumps(c->items, JSON_COMPACT);
    return params[0] ? 0 : -1;
}

static void completions_done(weir_db_tx_t *tx, int i, int status, void *data) {
    completion_set_t *c = data;
    if (c->s->completions == c) c->s->completions = NULL;
    json_t *answer = status ? NULL : json_loads(weir_db_value(tx, i, 0, 0), 0, NULL);
    json_t *res = json_object_get(answer, "results");
    for (size_t k = 0; k < c->n; k++) {
        completion_req_t *q = &c->reqs[k];
        /* this request's slice of the results; NULL if the database answered fewer */
        json_t *slice = status ? NULL : json_array();
        for (size_t m = 0; slice && m < q->count; m++) {
            json_t *r = json_array_get(res, q->first + m);
            if (r) json_array_append(slice, r);
            else { json_decref(slice); slice = NULL; }
        }
        if (q->h) {
            q->h->results = slice; /* handoff_step answers 500 when it is missing */
            handoff_step(q->h, tx, status);
        } else if (status) {
            api_reply_db_error(q->a, tx, status);
        } else if (!slice) {
            api_reply_error(q->a, 500, "unexpected answer from the database");
        } else if (q->list) {
            api_reply_json(q->a, 200, json_pack("{s:o}", "results", slice)); /* each result keeps its code */
        } else {
            char *text = json_dumps(json_array_get(slice, 0), JSON_COMPACT);
            api_reply_result(q->a, text ? text : "{}");
            free(text);
            json_decref(slice);
        }
    }
    /* Tasks made ready and not handed off with their predecessors' answers (the hand-off claims
     * come right after, in the same transaction) go to the idle claims in the next one, from
     * the batch hook; gates to the scheduler's own evaluation. */
    c->s->ready_unhanded += json_integer_value(json_object_get(answer, "queued"));
    if (json_integer_value(json_object_get(answer, "gates")) > 0) c->s->gates_ready = 1;
    json_decref(answer);
    json_decref(c->items);
    free(c->reqs);
    free(c);
}

/* Adds a request's completions (an array, stolen) to the set being gathered; -1 after answering. */
static int completion_add(api_req_t *a, json_t *items, int list, handoff_t *h) {
    weir_sched_t *s = a->s;
    completion_set_t *c = s->completions;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c || !(c->items = json_array())) {
            free(c);
            json_decref(items);
            api_reply_error(a, 500, "out of memory");
            return -1;
        }
        c->s = s;
        if (weir_batch_add_lazy(s->batch, "SELECT weir_complete_many($1::jsonb)", 1, completions_fill, 0,
                                completions_done, c)) {
            json_decref(c->items);
            free(c);
            json_decref(items);
            api_reply_error(a, 503, "scheduler is overloaded; retry shortly");
            return -1;
        }
        s->completions = c;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        completion_req_t *r = realloc(c->reqs, cap * sizeof *r);
        if (!r) { json_decref(items); api_reply_error(a, 500, "out of memory"); return -1; }
        c->reqs = r;
        c->cap = cap;
    }
    c->reqs[c->n++] = (completion_req_t){.a = a, .first = json_array_size(c->items), .count = json_array_size(items),
                                         .list = list, .h = h};
    json_array_extend(c->items, items);
    json_decref(items);
    return 0;
}

/* Checks one report (o: the request body or an element of its list) and makes the item for
 * weir_complete_many; NULL after writing to err why, naming the field (prefixed with where). */
static json_t *completion_item(json_t *o, const char *where, int64_t worker, int64_t task, int64_t num, char *err,
                               size_t errlen) {
    static const char *const fields[] = {"task_id", "attempt", "status", "exit_code", "error", "metrics", "outputs",
                                         "signals", NULL};
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int known = 0;
        for (const char *const *f = fields + (task ? 2 : 0); *f && !known; f++) known = !strcmp(*f, key);
        if (!known) { snprintf(err, errlen, "unknown field \"%s%s\"", where, key); return NULL; }
    }
    if (!task) {
        json_t *t = json_object_get(o, "task_id"), *n = json_object_get(o, "attempt");
        if (!json_is_integer(t) || json_integer_value(t) <= 0) {
            snprintf(err, errlen, "field \"%stask_id\" must be a positive integer", where);
            return NULL;
        }
        if (!json_is_integer(n) || json_integer_value(n) <= 0 || json_integer_value(n) > 1000000) {
            snprintf(err, errlen, "field \"%sattempt\" must be an attempt number (1 to 1000000)", where);
            return NULL;
        }
        task = json_integer_value(t);
        num = json_integer_value(n);
    }
    const char *status = json_string_value(json_object_get(o, "status"));
    if (!status || (strcmp(status, "succeeded") && strcmp(status, "failed") && strcmp(status, "timed_out"))) {
        snprintf(err, errlen, "field \"%sstatus\" must be \"succeeded\", \"failed\" or \"timed_out\"", where);
        return NULL;
    }
    json_t *e = json_object_get(o, "error");
    if (e && (!json_is_string(e) || json_string_length(e) > 16384)) {
        snprintf(err, errlen, "field \"%serror\" must be a string of at most 16384 bytes", where);
        return NULL;
    }
    json_t *x = json_object_get(o, "exit_code");
    if (x && (!json_is_integer(x) || json_integer_value(x) < -1000 || json_integer_value(x) > 1000)) {
        snprintf(err, errlen, "field \"%sexit_code\" must be an integer from -1000 to 1000", where);
        return NULL;
    }
    json_t *metrics = json_object_get(o, "metrics"), *outputs = json_object_get(o, "outputs");
    if (metrics && !json_is_object(metrics)) {
        snprintf(err, errlen, "field \"%smetrics\" must be an object", where);
        return NULL;
    }
    if (outputs && !json_is_object(outputs)) {
        snprintf(err, errlen, "field \"%soutputs\" must be an object", where);
        return NULL;
    }
    json_object_foreach(outputs, key, v) {
        if (!json_is_string(v) || !is_sha256(json_string_value(v)) || !*key || strlen(key) > 63) {
            snprintf(err, errlen, "field \"%soutputs\": \"%.63s\" must map an output name to a SHA-256 (64 hex digits)",
                     where, key);
            return NULL;
        }
    }
    if (metrics && json_object_size(metrics) > 0) {
        char *ms = json_dumps(metrics, JSON_COMPACT);
        size_t len = ms ? strlen(ms) : 0;
        free(ms);
        if (len > 65536) { snprintf(err, errlen, "field \"%smetrics\" is larger than 64 KiB", where); return NULL; }
    }
    json_t *sigs = json_object_get(o, "signals");
    if (sigs && (!json_is_array(sigs) || json_array_size(sigs) > 100)) {
        snprintf(err, errlen, "field \"%ssignals\" must be a list of at most 100 signals", where);
        return NULL;
    }
    size_t i;
    json_array_foreach(sigs, i, v) {
        json_t *k = json_object_get(v, "kind"), *sj = json_object_get(v, "subject"), *val = json_object_get(v, "value");
        json_t *at = json_object_get(v, "attributes");
        if (!json_is_object(v) || !json_is_string(k) || (sj && !json_is_string(sj)) || (val && !json_is_number(val)) ||
            (at && !json_is_object(at))) {
            snprintf(err, errlen, "field \"%ssignals\"[%zu] must be {\"kind\": string, \"subject\": string, "
                     "\"value\": number, \"attributes\": object}", where, i);
            return NULL;
        }
    }
    /* "o" steals: the body's objects get a reference of their own, fresh empty ones none */
    json_t *item = json_pack("{s:I, s:I, s:I, s:s, s:I, s:s, s:o, s:o}", "worker", (json_int_t)worker, "task",
                             (json_int_t)task, "attempt", (json_int_t)num, "status", status, "exit_code",
                             (json_int_t)(x ? json_integer_value(x) : 0), "error", e ? json_string_value(e) : "",
                             "metrics", metrics ? json_incref(metrics) : json_object(), "outputs",
                             outputs ? json_incref(outputs) : json_object());
    /* a step's signals ride with its completion; weir_complete_many evaluates them if it succeeded */
    if (item && json_array_size(sigs)) json_object_set(item, "signals", sigs);
    return item;
}

void api_complete(api_req_t *a) {
    int64_t worker = api_parse_id(a->args[0]), task = api_parse_id(a->args[1]), num = api_parse_id(a->args[2]);
    if (!worker || !task || !num || num > 1000000) {
        api_reply_error(a, 400, "invalid worker, task or attempt number in the path");
        return;
    }
    static const char *const fields[] = {"status", "exit_code", "error", "metrics", "outputs", "signals", NULL};
    if (api_parse_body(a, fields)) return;
    char err[256];
    json_t *item = completion_item(a->body, "", worker, task, num, err, sizeof err);
    if (!item) { api_reply_error(a, 400, "%s", err); return; }
    json_t *items = json_array();
    if (!items || json_array_append_new(items, item)) {
        json_decref(items);
        api_reply_error(a, 500, "out of memory");
        return;
    }
    completion_add(a, items, 0, NULL);
}

/* POST /v1/workers/{w}/completions {"completions": [...]}: many reports in one request, answered
 * {"results": [...]} in the same order, each as the per-attempt route would answer it. */
void api_complete_many(api_req_t *a) {
    int64_t worker = api_parse_id(a->args[0]);
    if (!worker) { api_reply_error(a, 400, "invalid worker id in the path"); return; }
    static const char *const fields[] = {"completions", "claim", NULL};
    if (api_parse_body(a, fields)) return;
    /* "claim": {"free_slots", "free_gpu", "free_memory_bytes"}: what these completions free,
     * leased again in the same transaction, the successors included (the immediate hand-off) */
    json_t *claim = json_object_get(a->body, "claim");
    int64_t cl[3] = {0, 0, 0};
    static const char *const claim_fields[] = {"free_slots", "free_gpu", "free_memory_bytes"};
    if (claim && !json_is_object(claim)) { api_reply_error(a, 400, "field \"claim\" must be an object"); return; }
    for (int k = 0; claim && k < 3; k++) {
        json_t *v = json_object_get(claim, claim_fields[k]);
        if (v && (!json_is_integer(v) || json_integer_value(v) < 0 || (k < 2 && json_integer_value(v) > 1024))) {
            api_reply_error(a, 400, "field \"claim.%s\" must be a non-negative integer%s", claim_fields[k],
                            k < 2 ? " of at most 1024" : "");
            return;
        }
        cl[k] = json_integer_value(v);
    }
    json_t *list = json_object_get(a->body, "completions");
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > MAX_COMPLETIONS) {
        api_reply_error(a, 400, "field \"completions\" must be an array of 1 to %d reports", MAX_COMPLETIONS);
        return;
    }
    json_t *items = json_array();
    if (!items) { api_reply_error(a, 500, "out of memory"); return; }
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o) {
        char where[48], err[300];
        snprintf(where, sizeof where, "completions[%zu].", i);
        json_t *item = json_is_object(o) ? completion_item(o, where, worker, 0, 0, err, sizeof err) : NULL;
        if (!json_is_object(o)) snprintf(err, sizeof err, "field \"completions[%zu]\" must be an object", i);
        if (!item) {
            json_decref(items);
            api_reply_error(a, 400, "%s", err);
            return;
        }
        json_array_append_new(items, item);
    }
    handoff_t *h = NULL;
    if (cl[0] > 0 && !a->s->stopping) {
        h = calloc(1, sizeof *h);
        if (!h) { json_decref(items); api_reply_error(a, 500, "out of memory"); return; }
        h->a = a;
        h->waiting = 1;
    }
    if (completion_add(a, items, 1, h)) { free(h); return; }
    /* after the completions' statement in the same transaction: it sees what they readied */
    if (h && add_claim(a->s, worker, cl[0], cl[1], cl[2], handoff_claim_done, h) == 0) h->waiting++;
}

void api_log_chunk(api_req_t *a) {
    char w[24], t[24], n[24];
    if (attempt_args(a, w, t, n)) return;
    char seq[16] = "";
    if (!weir_http_req_query_param(a->http, "seq", seq, sizeof seq) || api_parse_id(seq) < 0 ||
        strspn(seq, "0123456789") != strlen(seq) || !*seq || strlen(seq) > 9) {
        api_reply_error(a, 400, "query parameter \"seq\" (the chunk's number, from 0) is required");
        return;
    }
    const char *raw = weir_http_req_header(a->http, "x-weir-raw-length");
    long long raw_len = raw ? strtoll(raw, NULL, 10) : -1;
    if (!raw || raw_len < 0 || raw_len > MAX_LOG_CHUNK) {
        api_reply_error(a, 400, "header X-Weir-Raw-Length (the chunk's size before compression, at most 1 MiB) is required");
        return;
    }
    size_t len;
    const unsigned char *body = (const unsigned char *)weir_http_req_body(a->http, &len);
    if (len == 0 || len > MAX_LOG_CHUNK + 1024) {
        api_reply_error(a, 400, "a log chunk is a zlib stream of at most 1 MiB");
        return;
    }
    /* bytea in text form: \x and two hex digits a byte */
    char *hex = malloc(2 * len + 3);
    if (!hex) { api_reply_error(a, 500, "out of memory"); return; }
    static const char digits[] = "0123456789abcdef";
    hex[0] = '\\';
    hex[1] = 'x';
    for (size_t i = 0; i < len; i++) {
        hex[2 + 2 * i] = digits[body[i] >> 4];
        hex[3 + 2 * i] = digits[body[i] & 15];
    }
    hex[2 + 2 * len] = '\0';
    char rl[24], cap[24];
    snprintf(rl, sizeof rl, "%lld", raw_len);
    snprintf(cap, sizeof cap, "%lld", a->s->max_log_bytes);
    api_call(a, "SELECT weir_log_append($1, $2, $3, $4, $5, $6::bytea, $7)", 7,
             (const char *[]){w, t, n, seq, rl, hex, cap}, 0);
    free(hex);
}

/* ---- the tick --------------------------------------------------------------------------------- */

static void tick_done(weir_db_tx_t *tx, int i, int status, void *data) {
    weir_sched_t *s = data;
    s->tick_inflight = 0;
    if (status) return; /* the database is away; the next tick tries again */
    json_t *r = json_loads(weir_db_value(tx, i, 0, 0), 0, NULL);
    weir_work_notify(s, json_object_get(r, "notify"));
    long moved = (long)(json_integer_value(json_object_get(r, "lost")) + json_integer_value(json_object_get(r, "retried")) +
                        json_integer_value(json_object_get(r, "timed_out")) +
                        json_integer_value(json_object_get(r, "approvals_expired")));
    if (moved) weir_work_offer(s);
    if (moved) weir_gate_probe(s);
    json_decref(r);
}

void weir_work_tick(weir_sched_t *s) {
    s->ticks++;
    /* A compile's Lua state and plan are freed once its apply is answered, but glibc keeps the
     * pages (most in the thread pool's arena, which it seldom trims): a 100,000-task pipeline
     * left the scheduler at 400-560 MiB for good. Applies are rare and a trim takes a few ms. */
    if (s->trim_pending) {
        s->trim_pending = 0;
        malloc_trim(0);
    }
    uint64_t now = uv_now(s->loop);
    for (weir_waiter_t *w = s->waiters, *next; w; w = next) {
        next = w->next;
        if (!w->in_batch && (now >= w->deadline || weir_http_req_gone(w->a->http))) waiter_answer(s, w, NULL);
    }
    if (!s->tick_inflight && weir_batch_add(s->batch, "SELECT weir_tick()", 0, NULL, 0, tick_done, s) == 0)
        s->tick_inflight = 1;
    /* every few seconds, by the leader: workers silent for three leases are gone */
    if (s->ticks % 25 == 0 && s->leader) {
        char lease[16];
        snprintf(lease, sizeof lease, "%d", 3 * s->lease_ms);
        weir_batch_add(s->batch,
                       "UPDATE workers SET state = 'gone' WHERE state <> 'gone' "
                       "AND last_heartbeat_at < now() - $1::int * interval '1 ms'",
                       1, (const char *[]){lease}, 0, ignore_result, NULL);
    }
    if (s->ticks % 5 == 1) weir_gate_probe(s);
    /* Tasks can also become ready without a batch of ours (a restart, another scheduler's
     * transaction): once a second, waiting claims look again. */
    if (s->ticks % 5 == 3) weir_work_offer(s);
    if (s->ticks % 5 == 2) weir_leader_check(s);
    if (s->ticks % 5 == 4 && s->leader) weir_schedule_tick(s);
}

unsigned weir_work_waiting(const weir_sched_t *s) {
    unsigned n = 0;
    for (const weir_waiter_t *w = s->waiters; w; w = w->next) n++;
    return n;
}
