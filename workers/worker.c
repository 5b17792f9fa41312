/* worker.c — `weir worker`: the agent that claims tasks from the scheduler and runs them.
 *
 * Threads (blocking libcurl, one handle each):
 *   main        flags, registration, then the claim loop: exactly one long-poll claim open
 *               at all times (curl multi, so a fresh claim can be sent when slots free up
 *               while the old one is still open — the scheduler answers the old one empty).
 *               noop tasks complete right here; exec tasks get a runner thread; plugin
 *               steps fail at once. Cancels from the claim answer kill steps.
 *   heartbeat   every heartbeat_ms one request for all held attempts; kills what comes back
 *               stale; kills everything held once the lease could not be renewed for a
 *               whole lease_ms.
 *   completers  two threads, each sending every completion queued when its request leaves, in
 *               one request, retrying transport failures; a slot is free only when its
 *               completion was answered.
 *   signals     sigwait: the first SIGTERM/SIGINT drains (claims nothing new, lets steps
 *               finish and complete, exits 0), the second kills steps and exits 1.
 *   runners     one per running exec step (task.c).
 * Not a plugin host yet, and not a supervisor of its own restarts. */
#include "cli/cli.h"
#include "common/error.h"
#include "common/log.h"
#include "workers/plugin.h"
#include "workers/worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CLAIM_WAIT_MS 20000
#define RUNNER_STACK ((size_t)256 << 10)

/* ---------------------------------------------------------------- the task list */

static void wake_claims(wk_agent_t *a) {
    /* under the lock, so that the multi handle cannot be cleaned up meanwhile */
    pthread_mutex_lock(&a->mu);
    if (a->claim_multi) curl_multi_wakeup(a->claim_multi);
    pthread_mutex_unlock(&a->mu);
}

/* Gives the task t->gpu of the worker's GPU ordinals, the least busy first: free ones, unless
 * a replaced claim's brief overcommit (workers/README.md) means sharing. Under a->mu. */
static void take_gpus(wk_agent_t *a, wk_task_t *t) {
    int n = a->gpu < (int)sizeof a->gpu_busy ? a->gpu : (int)sizeof a->gpu_busy;
    size_t len = 0;
    t->ngpu_ids = 0;
    t->gpus[0] = '\0';
    while (t->ngpu_ids < t->gpu && t->ngpu_ids < n && t->ngpu_ids < (int)(sizeof t->gpu_ids / sizeof t->gpu_ids[0])) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int k = 0; k < t->ngpu_ids && !taken; k++) taken = t->gpu_ids[k] == i;
            if (!taken && (best < 0 || a->gpu_busy[i] < a->gpu_busy[best])) best = i;
        }
        a->gpu_busy[best]++;
        t->gpu_ids[t->ngpu_ids++] = best;
        len += (size_t)snprintf(t->gpus + len, sizeof t->gpus - len, "%s%d", len ? "," : "", best);
    }
}

/* wk_agent_release without waking the claim loop: for a completer releasing a whole batch,
 * which wakes it once. */
static void release_quiet(wk_agent_t *a, wk_task_t *t) {
    pthread_mutex_lock(&a->mu);
    if (t->prev) t->prev->next = t->next;
    else a->tasks = t->next;
    if (t->next) t->next->prev = t->prev;
    a->ntasks--;
    a->used_gpu -= t->gpu;
    for (int i = 0; i < t->ngpu_ids; i++) a->gpu_busy[t->gpu_ids[i]]--;
    a->used_memory -= t->memory;
    pthread_mutex_unlock(&a->mu);
    json_decref(t->claim);
    json_decref(t->completion);
    if (t->has_proc) wk_proc_close(&t->proc);
    free(t);
}

void wk_agent_release(wk_agent_t *a, wk_task_t *t) {
    release_quiet(a, t);
    wake_claims(a);
}

/* WEIR_WORKER_TRACE=FILE: one line per step start and end, "start|done TASK ATTEMPT USEC" with
 * the wall clock in microseconds, for bench/runs.sh to measure hand-offs as a worker sees them. */
static FILE *trace_file;

static void trace(const char *what, const wk_task_t *t) {
    if (!trace_file) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(trace_file, "%s %lld %d %lld\n", what, (long long)t->task_id, t->attempt,
            (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

/* Set on the completer threads: a noop step that one of them starts from its request's answer
 * is completed on that thread, which takes it from the queue in its next turn. */
static __thread int on_completer;

void wk_agent_complete(wk_agent_t *a, wk_task_t *t) {
    trace("done", t);
    pthread_mutex_lock(&a->mu);
    if (atomic_load(&t->abandoned)) {
        pthread_mutex_unlock(&a->mu);
        wk_agent_release(a, t);
        return;
    }
    t->queued = 1;
    t->reported = 1;
    t->qnext = NULL;
    if (a->qtail) a->qtail->qnext = t;
    else a->qhead = t;
    a->qtail = t;
    /* one completer; a busy one takes it when its request is answered. None from a completer's
     * own thread: waking the other one cost a chain's hop two context switches and a contended
     * lock before its report left (docs/decisions.md, "A hop's wake-ups"). */
    if (!on_completer) pthread_cond_signal(&a->qcond);
    pthread_mutex_unlock(&a->mu);
}

/* Under a->mu. Returns 1 when the caller must release t (after unlocking). */
static int abandon_locked(wk_agent_t *a, wk_task_t *t, const char *reason) {
    if (atomic_exchange(&t->abandoned, 1)) return 0;
    weir_log_warn("worker: task %lld attempt %d: %s; stopping it", (long long)t->task_id, t->attempt, reason);
    if (t->has_proc) wk_proc_cancel(&t->proc, reason);
    if (!t->queued) return 0; /* its runner or completer releases it */
    /* still waiting for a completer: take it out, nothing will be sent */
    wk_task_t **pp = &a->qhead, *prev = NULL;
    while (*pp && *pp != t) { prev = *pp; pp = &(*pp)->qnext; }
    if (!*pp) return 0;
    *pp = t->qnext;
    if (a->qtail == t) a->qtail = prev;
    t->queued = 0;
    return 1;
}

void wk_agent_abandon(wk_agent_t *a, wk_task_t *t, const char *reason) {
    pthread_mutex_lock(&a->mu);
    int release = abandon_locked(a, t, reason);
    pthread_mutex_unlock(&a->mu);
    if (release) wk_agent_release(a, t);
}

/* Under a->mu. */
static wk_task_t *find_task(wk_agent_t *a, int64_t task_id, int attempt) {
    for (wk_task_t *t = a->tasks; t; t = t->next)
        if (t->task_id == task_id && t->attempt == attempt) return t;
    return NULL;
}

static void abandon_listed(wk_agent_t *a, const json_t *list, const char *what) {
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x) {
        int64_t tid = json_integer_value(json_object_get(x, "task_id"));
        int att = (int)json_integer_value(json_object_get(x, "attempt"));
        const char *why = json_string_value(json_object_get(x, "reason"));
        char reason[256];
        snprintf(reason, sizeof reason, "%s: %s", what, why ? why : "no reason given");
        /* found and marked under one lock: the task cannot be released in between */
        pthread_mutex_lock(&a->mu);
        wk_task_t *t = find_task(a, tid, att);
        /* its step has ended and its report is queued or on its way: the completer gets the
         * scheduler's answer for it (a duplicate, or 409), and nothing is left to stop */
        if (t && t->reported) {
            weir_log_debug("worker: task %lld attempt %d: %s; its report is on its way", (long long)tid, att, reason);
            t = NULL;
        }
        int release = t ? abandon_locked(a, t, reason) : 0;
        pthread_mutex_unlock(&a->mu);
        if (release) wk_agent_release(a, t);
    }
}

/* ---------------------------------------------------------------- completers */

static void start_task(wk_agent_t *a, json_t *claim, uint64_t claimed_at);

enum {
    COMPLETION_BATCH = 256, /* reports in one POST .../completions (the scheduler takes 1000) */
    COMPLETERS = 2          /* one request gathers while the other waits for the scheduler's commit */
};

/* Sends the reports of batch[0..n) in one request, retrying transport failures and 5xx until
 * it gets an answer; a report abandoned meanwhile is left out of the next try. The scheduler
 * answers each report as the per-attempt route would: 200 (or a duplicate), else refused.
 * Returns how many tasks the answer handed over (started here), 0 when none came. */
static int send_completions(wk_agent_t *a, wk_http_t *h, wk_task_t **batch, int n) {
    int delay = 100;
    for (;;) {
        json_t *list = json_array();
        wk_task_t *sent[COMPLETION_BATCH];
        int m = 0;
        for (int i = 0; i < n && list; i++) {
            wk_task_t *t = batch[i];
            if (atomic_load(&t->abandoned)) continue;
            json_t *c = json_copy(t->completion);
            if (!c) continue;
            json_object_set_new(c, "task_id", json_integer(t->task_id));
            json_object_set_new(c, "attempt", json_integer(t->attempt));
            json_array_append_new(list, c);
            sent[m++] = t;
        }
        if (!m) { json_decref(list); return 0; }
        json_t *body = json_pack("{s:o}", "completions", list);
        /* what these tasks free is leased again in the same transaction: their successors
         * come back in the answer (the immediate hand-off) */
        int gpu = 0;
        int64_t mem = 0;
        for (int k = 0; k < m; k++) { gpu += sent[k]->gpu; mem += sent[k]->memory; }
        if (!atomic_load(&a->draining))
            json_object_set_new(body, "claim", json_pack("{s:i, s:i, s:I}", "free_slots", m, "free_gpu", gpu,
                                                         "free_memory_bytes", (json_int_t)mem));
        uint64_t sent_at = weir_now_ms();
        char route[80];
        snprintf(route, sizeof route, "/v1/workers/%lld/completions", (long long)a->worker_id);
        wk_req_t req = {.method = "POST", .path = route, .json = body, .timeout_ms = 30000};
        wk_resp_t res;
        int rc = wk_http_call(h, &req, &res);
        json_decref(body);
        if (!rc && res.status == 200) {
            json_t *results = json_object_get(res.json, "results");
            for (int k = 0; k < m; k++) {
                json_t *r = json_array_get(results, (size_t)k);
                if (json_integer_value(json_object_get(r, "code")) == 200)
                    weir_log_debug("worker: task %lld attempt %d: completed %s -> %s%s", (long long)sent[k]->task_id,
                                   sent[k]->attempt,
                                   json_string_value(json_object_get(sent[k]->completion, "status")),
                                   json_string_value(json_object_get(r, "state")),
                                   json_is_true(json_object_get(r, "duplicate")) ? " (duplicate)" : "");
                else /* 409: no longer current; 400: refused (a missing artifact...). Final either way. */
                    weir_log_warn("worker: task %lld attempt %d: completion refused: %s", (long long)sent[k]->task_id,
                                  sent[k]->attempt, r ? json_string_value(json_object_get(r, "message")) : "no answer");
            }
            size_t i;
            json_t *x, *tasks = json_object_get(res.json, "tasks");
            json_array_foreach(tasks, i, x) start_task(a, x, sent_at);
            int started = (int)json_array_size(tasks);
            wk_resp_free(&res);
            return started;
        }
        if (!rc && res.status < 500 && res.status != 408 && res.status != 429) {
            weir_log_warn("worker: %d completions refused: %s", m, res.error);
            wk_resp_free(&res);
            return 0;
        }
        weir_log_warn("worker: %d completions: %s; retrying", m, rc ? "no scheduler answered" : res.error);
        if (!rc) wk_resp_free(&res);
        for (int w = 0; w < delay; w += 20) {
            int live = 0;
            for (int k = 0; k < m && !live; k++) live = !atomic_load(&sent[k]->abandoned);
            if (!live) return 0;
            usleep(20000);
        }
        if (delay < 5000) delay *= 2;
    }
}

/* Takes every queued completion (up to a batch) and sends them together: while one request
 * waits for the scheduler's commit, the next reports gather for the next request. */
static void *completer_main(void *arg) {
    wk_agent_t *a = arg;
    on_completer = 1;
    wk_http_t h;
    if (wk_http_init(&h, &a->sched)) return NULL;
    wk_task_t *batch[COMPLETION_BATCH];
    for (;;) {
        pthread_mutex_lock(&a->mu);
        while (!a->qhead && !atomic_load(&a->exiting)) pthread_cond_wait(&a->qcond, &a->mu);
        int n = 0;
        while (a->qhead && n < COMPLETION_BATCH) {
            wk_task_t *t = a->qhead;
            a->qhead = t->qnext;
            t->queued = 0;
            batch[n++] = t;
        }
        if (!a->qhead) a->qtail = NULL;
        pthread_mutex_unlock(&a->mu);
        if (!n) break; /* exiting, nothing left */
        int started = send_completions(a, &h, batch, n);
        for (int i = 0; i < n; i++) release_quiet(a, batch[i]);
        /* once for the batch, when its slots are not all taken again by what the answer brought
         * (the claim loop asks for more then), or to let a draining worker's claim loop end */
        if (started < n || atomic_load(&a->draining)) wake_claims(a);
    }
    wk_http_close(&h);
    return NULL;
}

/* ---------------------------------------------------------------- heartbeats */

static int register_worker(wk_agent_t *a, wk_http_t *h, int forever);

static void *heartbeat_main(void *arg) {
    wk_agent_t *a = arg;
    wk_http_t h;
    if (wk_http_init(&h, &a->sched)) return NULL;
    uint64_t next_beat = weir_now_ms() + (uint64_t)atomic_load(&a->heartbeat_ms);
    while (!atomic_load(&a->exiting)) {
        uint64_t now = weir_now_ms();
        if (now >= next_beat) {
            next_beat = now + (uint64_t)atomic_load(&a->heartbeat_ms);
            json_t *list = json_array();
            pthread_mutex_lock(&a->mu);
            for (wk_task_t *t = a->tasks; t; t = t->next)
                if (!atomic_load(&t->abandoned))
                    json_array_append_new(list, json_pack("{s:I, s:i}", "task_id", (json_int_t)t->task_id, "attempt",
                                                          t->attempt));
            pthread_mutex_unlock(&a->mu);
            /* with what each step last said of its progress (read outside the lock) */
            size_t i;
            json_t *x;
            json_array_foreach(list, i, x) {
                json_t *p = wk_progress_read(a->dir, json_integer_value(json_object_get(x, "task_id")),
                                             (int)json_integer_value(json_object_get(x, "attempt")));
                if (p) json_object_set_new(x, "progress", p);
            }
            json_t *body = json_pack("{s:o}", "attempts", list);
            char route[128];
            snprintf(route, sizeof route, "/v1/workers/%lld/heartbeat", (long long)a->worker_id);
            wk_req_t req = {.method = "POST", .path = route, .json = body,
                            .timeout_ms = atomic_load(&a->heartbeat_ms) > 2000 ? atomic_load(&a->heartbeat_ms) : 2000};
            wk_resp_t res;
            int rc = wk_http_call(&h, &req, &res);
            json_decref(body);
            if (!rc && res.status == 200) {
                pthread_mutex_lock(&a->mu);
                if (now > a->last_renewed) a->last_renewed = now;
                pthread_mutex_unlock(&a->mu);
                json_int_t lease = json_integer_value(json_object_get(res.json, "lease_ms"));
                if (lease > 0) atomic_store(&a->lease_ms, (int)lease);
                abandon_listed(a, json_object_get(res.json, "stale"), "the scheduler says stale");
            } else if (!rc && res.status == 404) {
                weir_log_warn("worker: heartbeat: %s; registering again", res.error);
                register_worker(a, &h, 0);
            } else {
                weir_log_warn("worker: heartbeat failed: %s", res.error);
            }
            if (!rc) wk_resp_free(&res);
        }
        /* a lease we could not renew for a whole lease_ms is gone: the results would be refused */
        now = weir_now_ms();
        uint64_t lease = (uint64_t)atomic_load(&a->lease_ms);
        for (;;) {
            wk_task_t *expired = NULL;
            int release = 0;
            pthread_mutex_lock(&a->mu);
            for (wk_task_t *t = a->tasks; t && !expired; t = t->next) {
                uint64_t from = t->claimed_at > a->last_renewed ? t->claimed_at : a->last_renewed;
                if (!atomic_load(&t->abandoned) && now > from + lease) expired = t;
            }
            if (expired) release = abandon_locked(a, expired, "lease lost: the scheduler could not be reached for a whole lease");
            pthread_mutex_unlock(&a->mu);
            if (!expired) break;
            if (release) wk_agent_release(a, expired);
        }
        pthread_mutex_lock(&a->mu);
        if (!atomic_load(&a->exiting)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 250 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&a->cond, &a->mu, &ts);
        }
        pthread_mutex_unlock(&a->mu);
    }
    wk_http_close(&h);
    return NULL;
}

/* ---------------------------------------------------------------- signals */

static void *signal_main(void *arg) {
    wk_agent_t *a = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig;
    for (int count = 0;; count++) {
        if (sigwait(&set, &sig)) continue;
        if (!count) {
            weir_log_info("worker: %s: draining (no new tasks; running steps finish). Send it again to kill them.",
                          strsignal(sig));
            atomic_store(&a->draining, 1);
            pthread_mutex_lock(&a->mu);
            pthread_cond_broadcast(&a->cond);
            pthread_mutex_unlock(&a->mu);
            wake_claims(a);
            continue;
        }
        weir_log_warn("worker: %s again: killing %d step(s) and exiting", strsignal(sig), a->ntasks);
        pthread_mutex_lock(&a->mu);
        for (wk_task_t *t = a->tasks; t; t = t->next) {
            atomic_store(&t->abandoned, 1);
            if (t->has_proc) wk_proc_kill_now(&t->proc);
        }
        pthread_mutex_unlock(&a->mu);
        _exit(1);
    }
    return NULL;
}

/* ---------------------------------------------------------------- registration */

static int register_worker(wk_agent_t *a, wk_http_t *h, int forever) {
    json_t *body = json_pack("{s:s, s:i, s:O, s:i, s:I, s:O, s:s}", "name", a->name, "slots", a->slots, "queues",
                             a->queues, "gpu", a->gpu, "memory_bytes", (json_int_t)a->memory, "labels", a->labels,
                             "version", "0.1.0");
    wk_req_t req = {.method = "POST", .path = "/v1/workers", .json = body, .timeout_ms = 10000};
    int delay = 500, rc;
    for (;;) {
        wk_resp_t res;
        rc = wk_http_call(h, &req, &res);
        if (!rc && (res.status == 200 || res.status == 201)) {
            a->worker_id = json_integer_value(json_object_get(res.json, "worker_id"));
            json_int_t lease = json_integer_value(json_object_get(res.json, "lease_ms"));
            json_int_t beat = json_integer_value(json_object_get(res.json, "heartbeat_ms"));
            atomic_store(&a->lease_ms, lease > 0 ? (int)lease : 15000);
            atomic_store(&a->heartbeat_ms, beat > 0 ? (int)beat : 5000);
            weir_log_info("worker: registered as %lld (%s, %d slots) with %s; lease %d ms, heartbeat %d ms",
                          (long long)a->worker_id, a->name, a->slots, a->sched.urls[atomic_load(&a->sched.current)],
                          atomic_load(&a->lease_ms), atomic_load(&a->heartbeat_ms));
            wk_resp_free(&res);
            rc = 0;
            break;
        }
        if (!rc && res.status >= 400 && res.status < 500 && res.status != 408 && res.status != 429) {
            fprintf(stderr, "weir worker: registration refused: %s\n", res.error);
            if (res.status == 401) fprintf(stderr, "  pass --token, set WEIR_TOKEN, or run `weir up`\n");
            wk_resp_free(&res);
            rc = WEIR_EAUTH;
            break;
        }
        weir_log_warn("worker: cannot register: %s; retrying", res.error);
        if (!rc) wk_resp_free(&res);
        rc = WEIR_EUNAVAIL;
        if (!forever || atomic_load(&a->draining)) break;
        for (int w = 0; w < delay && !atomic_load(&a->draining); w += 50) usleep(50000);
        if (delay < 5000) delay *= 2;
    }
    json_decref(body);
    return rc;
}

/* ---------------------------------------------------------------- the claim loop */

typedef struct {
    CURL *h;
    struct curl_slist *hdr;
    char *payload;
    weir_buf_t body;
    int free_slots;
    uint64_t sent_at;
    int url;
} claim_t;

static size_t claim_write(char *p, size_t size, size_t n, void *ud) {
    claim_t *c = ud;
    return weir_buf_append(&c->body, p, size * n) ? 0 : size * n;
}

static void claim_free(claim_t *c) {
    if (!c) return;
    if (c->h) curl_easy_cleanup(c->h);
    curl_slist_free_all(c->hdr);
    free(c->payload);
    weir_buf_free(&c->body);
    free(c);
}

static void free_resources(wk_agent_t *a, int *slots, int *gpu, int64_t *mem) {
    pthread_mutex_lock(&a->mu);
    *slots = atomic_load(&a->draining) ? 0 : a->slots - a->ntasks;
    *gpu = a->gpu - a->used_gpu;
    *mem = a->memory ? a->memory - a->used_memory : 0;
    pthread_mutex_unlock(&a->mu);
    if (*slots < 0) *slots = 0;
    if (*gpu < 0) *gpu = 0;
    if (*mem < 0) *mem = 0;
}

static claim_t *claim_start(wk_agent_t *a, CURLM *m) {
    claim_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    int gpu;
    int64_t mem;
    free_resources(a, &c->free_slots, &gpu, &mem);
    json_t *body = json_pack("{s:i, s:i, s:I, s:i}", "free_slots", c->free_slots, "free_gpu", gpu,
                             "free_memory_bytes", (json_int_t)mem, "wait_ms", CLAIM_WAIT_MS);
    c->payload = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    c->h = curl_easy_init();
    weir_buf_init(&c->body, (size_t)64 << 20);
    if (!c->payload || !c->h) { claim_free(c); return NULL; }
    c->url = atomic_load(&a->sched.current);
    char url[2048];
    snprintf(url, sizeof url, "%s/v1/workers/%lld/claim", a->sched.urls[c->url], (long long)a->worker_id);
    if (a->sched.auth[0]) c->hdr = curl_slist_append(c->hdr, a->sched.auth);
    c->hdr = curl_slist_append(c->hdr, "Content-Type: application/json");
    c->hdr = curl_slist_append(c->hdr, "Expect:");
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdr);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->payload);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(c->payload));
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, claim_write);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
    curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, (long)CLAIM_WAIT_MS + 15000L);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->h, CURLOPT_USERAGENT, "weir-worker");
    c->sent_at = weir_now_ms();
    curl_multi_add_handle(m, c->h);
    return c;
}

static void start_task(wk_agent_t *a, json_t *claim, uint64_t claimed_at) {
    wk_task_t *t = calloc(1, sizeof *t);
    if (!t) return; /* the lease will expire and the scheduler requeues it */
    t->agent = a;
    t->claim = json_incref(claim);
    t->task_id = json_integer_value(json_object_get(claim, "task_id"));
    t->attempt = (int)json_integer_value(json_object_get(claim, "attempt"));
    t->claimed_at = claimed_at;
    json_t *res = json_object_get(json_object_get(claim, "spec"), "resources");
    t->gpu = (int)json_integer_value(json_object_get(res, "gpu"));
    t->memory = a->memory ? json_integer_value(json_object_get(res, "memory_bytes")) : 0;
    trace("start", t);
    const char *step = wk_claim_step(claim);
    int runs_proc = strcmp(step, "noop") != 0; /* exec, or a plugin step in a `weir step-run` child */
    if (runs_proc && wk_proc_init(&t->proc) == 0) t->has_proc = 1;
    pthread_mutex_lock(&a->mu);
    t->next = a->tasks;
    if (a->tasks) a->tasks->prev = t;
    a->tasks = t;
    a->ntasks++;
    a->used_gpu += t->gpu;
    take_gpus(a, t);
    a->used_memory += t->memory;
    pthread_mutex_unlock(&a->mu);

    if (!strcmp(step, "noop")) {
        /* no thread, no directory, no process: the throughput path */
        t->completion = wk_completion("succeeded", 0, "", NULL, NULL);
        wk_agent_complete(a, t);
        return;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, RUNNER_STACK);
    pthread_t th;
    int rc = t->has_proc ? pthread_create(&th, &attr, wk_task_thread, t) : ENOMEM;
    pthread_attr_destroy(&attr);
    if (rc) {
        char err[256];
        snprintf(err, sizeof err, "worker: cannot start a runner thread: %s", strerror(rc));
        t->completion = wk_completion("failed", -1, err, NULL, NULL);
        wk_agent_complete(a, t);
    }
}

/* One claim answer. 0, or WEIR_EUNAVAIL when it failed in a way worth a pause. */
static int claim_done(wk_agent_t *a, wk_http_t *h, claim_t *c, CURLcode cc) {
    long status = 0;
    if (cc == CURLE_OK) curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK || status == 503) {
        weir_log_warn("worker: claim from %s failed: %s", a->sched.urls[c->url],
                      cc != CURLE_OK ? curl_easy_strerror(cc) : "HTTP 503");
        if (a->sched.nurls > 1) {
            int next = (c->url + 1) % a->sched.nurls;
            atomic_compare_exchange_strong(&a->sched.current, &c->url, next);
        }
        return WEIR_EUNAVAIL;
    }
    json_t *j = json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, NULL);
    int rc = 0;
    if (status == 200) {
        size_t i;
        json_t *x;
        abandon_listed(a, json_object_get(j, "cancel"), "cancelled by the scheduler");
        json_array_foreach(json_object_get(j, "tasks"), i, x) start_task(a, x, c->sent_at);
    } else if (status == 404) {
        weir_log_warn("worker: claim answered 404: registering again");
        register_worker(a, h, 1);
        rc = WEIR_EUNAVAIL;
    } else {
        const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        weir_log_warn("worker: claim answered HTTP %ld: %s", status, msg ? msg : "");
        rc = WEIR_EUNAVAIL;
    }
    json_decref(j);
    return rc;
}

static int claim_loop(wk_agent_t *a, wk_http_t *h) {
    CURLM *m = curl_multi_init();
    if (!m) return WEIR_ENOMEM;
    a->claim_multi = m;
    claim_t *cur = NULL;       /* the claim whose answer we wait for */
    claim_t *open[2] = {0};    /* transfers in m: cur plus one superseded at most */
    int inflight = 0;
    uint64_t pause_until = 0;
    int pause_ms = 200;
    for (;;) {
        int drained;
        pthread_mutex_lock(&a->mu);
        drained = atomic_load(&a->draining) && a->ntasks == 0;
        pthread_mutex_unlock(&a->mu);
        if (drained) break;
        uint64_t now = weir_now_ms();
        if (now >= pause_until) {
            int slots, gpu;
            int64_t mem;
            free_resources(a, &slots, &gpu, &mem);
            /* a new claim when none is open, or when the open one asked for too little (sent
             * while we were full): the scheduler answers the old one with empty lists */
            int want = !cur || (inflight < 2 && slots > cur->free_slots &&
                                (cur->free_slots == 0 || slots >= 2 * cur->free_slots));
            /* draining: replace an open claim that could still bring tasks with one that cannot */
            if (cur && inflight < 2 && atomic_load(&a->draining) && cur->free_slots > 0) want = 1;
            if (want) {
                claim_t *c = claim_start(a, m);
                if (c) {
                    cur = c;
                    open[open[0] ? 1 : 0] = c;
                    inflight++;
                }
            }
        }
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            claim_t *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            CURLcode cc = msg->data.result;
            curl_multi_remove_handle(m, msg->easy_handle);
            inflight--;
            for (int k = 0; k < 2; k++)
                if (open[k] == c) open[k] = NULL;
            if (c == cur) cur = NULL;
            if (claim_done(a, h, c, cc)) {
                pause_until = weir_now_ms() + (uint64_t)pause_ms;
                if (pause_ms < 5000) pause_ms *= 2;
            } else {
                pause_ms = 200;
            }
            claim_free(c);
        }
        int timeout = 1000;
        now = weir_now_ms();
        if (!cur && pause_until > now && pause_until - now < (uint64_t)timeout) timeout = (int)(pause_until - now);
        if (!cur && pause_until <= now) timeout = 0;
        curl_multi_poll(m, NULL, 0, timeout, NULL);
    }
    pthread_mutex_lock(&a->mu);
    a->claim_multi = NULL;
    pthread_mutex_unlock(&a->mu);
    /* open claims are simply dropped: the scheduler sees the connection close */
    for (int k = 0; k < 2; k++)
        if (open[k]) {
            curl_multi_remove_handle(m, open[k]->h);
            claim_free(open[k]);
        }
    curl_multi_cleanup(m);
    return 0;
}

/* ---------------------------------------------------------------- flags */

static void usage(FILE *f) {
    fprintf(f,
            "usage: weir worker [--scheduler URL[,URL...]] [--token T] [--slots N] [--label K=V ...]\n"
            "                   [--name NAME] [--dir DIR] [--cwd DIR] [--max-log SIZE] [--cache-max SIZE]\n"
            "\n"
            "Registers with the scheduler, keeps one long-poll claim open and runs the tasks it is\n"
            "given: exec steps (any command, in its own process group) and noop. Logs stream to the\n"
            "scheduler as they are written; output files become artifacts.\n"
            "\n"
            "  --scheduler URLS  scheduler base URLs, comma-separated; the next is tried when one cannot\n"
            "                    be reached (default: WEIR_URL, then $WEIR_HOME/client.json, then\n"
            "                    http://127.0.0.1:8470)\n"
            "  --token T         worker token (default: WEIR_TOKEN, then $WEIR_HOME/client.json)\n"
            "  --slots N         tasks run at once, 1..1024 (default: the number of CPUs)\n"
            "  --label K=V       queue=a,b (queues served; default queue=default), gpu=N, memory=SIZE\n"
            "                    (e.g. 8GiB; default 0: memory is not used to select tasks); any other\n"
            "                    K=V is a free-form label. Repeatable.\n"
            "  --name NAME       worker name (default HOSTNAME-PID)\n"
            "  --dir DIR         work directory: attempt directories and the artifact cache\n"
            "                    (default $WEIR_HOME/worker)\n"
            "  --cwd DIR         run every step in DIR instead of a fresh directory per attempt\n"
            "  --max-log SIZE    log cap per attempt (default 64MiB); beyond it output is dropped and\n"
            "                    the log ends with \"[weir: log truncated after N bytes]\"\n"
            "  --cache-max SIZE  the artifact cache's cap (default 10GiB): after a download, the least\n"
            "                    recently used inputs go, never those of attempts this worker holds\n"
            "  --kill-grace DUR  SIGTERM to SIGKILL on cancel or timeout (default 5s)\n"
            "  --plugin-dir DIR  where plugin steps are loaded from (default: WEIR_PLUGIN_DIR, plugins/\n"
            "                    beside the weir binary, or the installed one; see weir steps)\n"
            "\n"
            "SIGTERM or SIGINT: stop claiming, let running steps finish and report, exit 0.\n"
            "A second one kills the steps and exits 1. WEIR_LOG=debug logs every completion.\n");
}

/* Where `weir step-run` children load plugins from, said once at start with what is there:
 * a plugin refused for its ABI version is an operator's problem to see now, not per task.
 * A --plugin-dir that does not exist is a usage error; no default directory is not. */
static int find_plugins(wk_agent_t *a, const char *flag) {
    char err[1200];
    ssize_t n = readlink("/proc/self/exe", a->exe, sizeof a->exe - 1);
    a->exe[n > 0 ? n : 0] = '\0';
    if (wk_plugin_dir(flag, a->plugin_dir, sizeof a->plugin_dir, err, sizeof err)) {
        a->plugin_dir[0] = '\0';
        if (flag) { fprintf(stderr, "weir worker: --plugin-dir: %s\n", err); return -1; }
        weir_log_info("worker: no plugin steps (%s)", err);
        return 0;
    }
    wk_plugins_t *ps = calloc(1, sizeof *ps);
    if (!ps) return 0;
    wk_plugins_load(ps, a->plugin_dir);
    for (int i = 0; i < ps->n; i++)
        weir_log_info("worker: plugin %s %s: %zu steps (%s)", ps->p[i].plugin->name, ps->p[i].plugin->version,
                      ps->p[i].plugin->nsteps, ps->p[i].path);
    size_t el = strlen(ps->errors);
    if (el) weir_log_warn("worker: %.*s", (int)el - 1, ps->errors); /* without the last newline */
    wk_plugins_close(ps);
    free(ps);
    return 0;
}

static int add_label(wk_agent_t *a, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        fprintf(stderr, "weir worker: --label %s: write KEY=VALUE (e.g. queue=gpu, gpu=1, memory=8GiB)\n", kv);
        return -1;
    }
    size_t kl = (size_t)(eq - kv);
    const char *v = eq + 1;
    if (kl == 5 && !strncmp(kv, "queue", 5)) {
        json_array_clear(a->queues);
        char *copy = strdup(v), *save = NULL;
        for (char *q = strtok_r(copy, ",", &save); q; q = strtok_r(NULL, ",", &save))
            if (*q) json_array_append_new(a->queues, json_string(q));
        free(copy);
        if (!json_array_size(a->queues)) {
            fprintf(stderr, "weir worker: --label queue=: name at least one queue\n");
            return -1;
        }
    } else if (kl == 3 && !strncmp(kv, "gpu", 3)) {
        char *end;
        long n = strtol(v, &end, 10);
        if (!*v || *end || n < 0 || n > 1024) {
            fprintf(stderr, "weir worker: --label gpu=%s: write a GPU count, like gpu=1\n", v);
            return -1;
        }
        a->gpu = (int)n;
    } else if (kl == 6 && !strncmp(kv, "memory", 6)) {
        if (weir_parse_size(v, &a->memory) || a->memory < 0) {
            fprintf(stderr, "weir worker: --label memory=%s: write a size, like memory=8GiB\n", v);
            return -1;
        }
    } else {
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)kl, kv);
        json_object_set_new(a->labels, key, json_string(v));
    }
    return 0;
}

static int parse_urls(wk_agent_t *a, const char *list) {
    char *copy = strdup(list), *save = NULL;
    for (char *u = strtok_r(copy, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        size_t n = strlen(u);
        while (n && u[n - 1] == '/') u[--n] = '\0';
        if (!n) continue;
        char **urls = realloc(a->sched.urls, (size_t)(a->sched.nurls + 1) * sizeof *urls);
        if (!urls) break;
        a->sched.urls = urls;
        a->sched.urls[a->sched.nurls++] = strdup(u);
    }
    free(copy);
    return a->sched.nurls ? 0 : -1;
}

int weir_cmd_worker(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) { usage(stdout); return WEIR_EXIT_OK; }
    weir_log_init();
    static wk_agent_t agent; /* lives as long as the process: threads may outlive the loop */
    wk_agent_t *a = &agent;
    memset(a, 0, sizeof *a);
    a->queues = json_array();
    a->labels = json_object();
    a->max_log = (int64_t)64 << 20;
    a->cache_max = (int64_t)10 << 30;
    a->kill_grace_ms = 5000;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    a->slots = cpus > 0 ? (int)(cpus > 1024 ? 1024 : cpus) : 1;
    weir_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    const char *sched_flag = NULL, *plugin_flag = NULL;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(f, "--scheduler") || !strcmp(f, "--url")) { if (v) sched_flag = v; }
        else if (!strcmp(f, "--token")) { if (v) snprintf(cfg.token, sizeof cfg.token, "%s", v); }
        else if (!strcmp(f, "--slots")) {
            char *end;
            long n = v ? strtol(v, &end, 10) : 0;
            if (!v || *end || n < 1 || n > 1024) {
                fprintf(stderr, "weir worker: --slots takes a number from 1 to 1024\n");
                return WEIR_EXIT_USAGE;
            }
            a->slots = (int)n;
        } else if (!strcmp(f, "--label")) { if (v && add_label(a, v)) return WEIR_EXIT_USAGE; }
        else if (!strcmp(f, "--name")) { if (v) snprintf(a->name, sizeof a->name, "%s", v); }
        else if (!strcmp(f, "--dir")) { if (v) snprintf(a->dir, sizeof a->dir, "%s", v); }
        else if (!strcmp(f, "--cwd")) { if (v) snprintf(a->cwd, sizeof a->cwd, "%s", v); }
        else if (!strcmp(f, "--plugin-dir")) { if (v) plugin_flag = v; }
        else if (!strcmp(f, "--max-log")) {
            if (v && (weir_parse_size(v, &a->max_log) || a->max_log < 1024)) {
                fprintf(stderr, "weir worker: --max-log %s: write a size of at least 1KiB, like 64MiB\n", v);
                return WEIR_EXIT_USAGE;
            }
        } else if (!strcmp(f, "--cache-max")) {
            if (v && weir_parse_size(v, &a->cache_max)) {
                fprintf(stderr, "weir worker: --cache-max %s: write a size, like 10GiB\n", v);
                return WEIR_EXIT_USAGE;
            }
        } else if (!strcmp(f, "--kill-grace")) {
            if (v && (weir_parse_duration(v, &a->kill_grace_ms) || a->kill_grace_ms <= 0)) {
                fprintf(stderr, "weir worker: --kill-grace %s: write a duration, like 5s\n", v);
                return WEIR_EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "weir worker: unknown flag %s (see weir worker --help)\n", f);
            return WEIR_EXIT_USAGE;
        }
        if (takes && !v) {
            fprintf(stderr, "weir worker: %s needs a value\n", f);
            return WEIR_EXIT_USAGE;
        }
        i += takes;
    }
    if (sched_flag) snprintf(cfg.url, sizeof cfg.url, "%s", sched_flag);
    weir_config_load(&cfg);
    if (parse_urls(a, cfg.url)) {
        fprintf(stderr, "weir worker: --scheduler: no URL given\n");
        return WEIR_EXIT_USAGE;
    }
    if (cfg.token[0]) snprintf(a->sched.auth, sizeof a->sched.auth, "Authorization: Bearer %s", cfg.token);
    if (!json_array_size(a->queues)) json_array_append_new(a->queues, json_string("default"));
    if (!a->name[0]) {
        char host[200] = "worker";
        gethostname(host, sizeof host);
        host[sizeof host - 1] = '\0';
        snprintf(a->name, sizeof a->name, "%s-%d", host, (int)getpid());
    }
    if (!a->dir[0] && snprintf(a->dir, sizeof a->dir, "%s/worker", cfg.home) >= (int)sizeof a->dir) {
        fprintf(stderr, "weir worker: WEIR_HOME is too long; pass --dir\n");
        return WEIR_EXIT_USAGE;
    }
    char sub[1100];
    if (snprintf(sub, sizeof sub, "%s/attempts", a->dir) >= (int)sizeof sub) return WEIR_EXIT_USAGE;
    mkdir(cfg.home, 0700);
    if (wk_mkdirs(sub)) {
        fprintf(stderr, "weir worker: cannot create the work directory %s: %s (pass --dir)\n", sub, strerror(errno));
        return WEIR_EXIT_FAIL;
    }
    if (a->cwd[0]) {
        struct stat st;
        if (stat(a->cwd, &st) || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "weir worker: --cwd %s is not a directory\n", a->cwd);
            return WEIR_EXIT_USAGE;
        }
    }
    if (find_plugins(a, plugin_flag)) return WEIR_EXIT_USAGE;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cond, NULL);
    pthread_cond_init(&a->qcond, NULL);
    atomic_store(&a->lease_ms, 15000);
    atomic_store(&a->heartbeat_ms, 5000);

    /* every thread inherits this mask; only the signal thread takes SIGTERM/SIGINT */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *tf = getenv("WEIR_WORKER_TRACE");
    if (tf && *tf && !(trace_file = fopen(tf, "a")))
        weir_log_warn("worker: cannot open the trace file %s: %s", tf, strerror(errno));
    if (trace_file) setvbuf(trace_file, NULL, _IOLBF, 0); /* whole lines, readable while we run */
    pthread_t sig_th;
    pthread_create(&sig_th, NULL, signal_main, a);
    pthread_detach(sig_th);

    wk_http_t h;
    if (wk_http_init(&h, &a->sched)) return WEIR_EXIT_FAIL;
    int rc = register_worker(a, &h, 1);
    if (rc == WEIR_EAUTH) return WEIR_EXIT_FAIL;
    if (rc) return atomic_load(&a->draining) ? WEIR_EXIT_OK : WEIR_EXIT_UNREACHABLE;
    a->last_renewed = weir_now_ms();

    pthread_t hb, comp[COMPLETERS];
    pthread_create(&hb, NULL, heartbeat_main, a);
    for (int i = 0; i < COMPLETERS; i++) pthread_create(&comp[i], NULL, completer_main, a);
    claim_loop(a, &h);
    atomic_store(&a->exiting, 1);
    pthread_mutex_lock(&a->mu);
    pthread_cond_broadcast(&a->cond);
    pthread_cond_broadcast(&a->qcond);
    pthread_mutex_unlock(&a->mu);
    pthread_join(hb, NULL);
    for (int i = 0; i < COMPLETERS; i++) pthread_join(comp[i], NULL);
    /* say so, so that `weir workers` shows us gone now rather than after three leases */
    char route[80];
    snprintf(route, sizeof route, "/v1/workers/%lld/leave", (long long)a->worker_id);
    json_t *none = json_object();
    wk_req_t req = {.method = "POST", .path = route, .json = none, .timeout_ms = 2000};
    wk_resp_t res;
    if (!wk_http_call(&h, &req, &res)) wk_resp_free(&res);
    json_decref(none);
    wk_http_close(&h);
    if (trace_file) fclose(trace_file);
    weir_log_info("worker: drained; exiting");
    return WEIR_EXIT_OK;
}
