/* task.c — one exec attempt on its runner thread, from claim to completion body.
 *
 * Order: download inputs into the cache (verified by SHA-256), make the attempt's fresh
 * directories, fill in placeholders, build the environment, run the step (exec.c) while
 * its output streams to the scheduler as log chunks, then read metrics, collect and upload
 * outputs, remove the attempt directory and hand the completion to the agent. Anything the
 * scheduler refuses with 409 means the attempt is no longer ours: the step is killed and
 * nothing more is sent. Not the claim loop, heartbeats or completion sending (worker.c). */
#include "workers/worker.h"
#include "common/error.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

json_t *wk_completion(const char *status, int exit_code, const char *error, json_t *metrics, json_t *outputs) {
    json_t *c = json_object();
    json_object_set_new(c, "status", json_string(status));
    json_object_set_new(c, "exit_code", json_integer(exit_code));
    /* the protocol wants a short error: cap at ~1 KiB, cut on a UTF-8 boundary */
    char e[1100];
    snprintf(e, sizeof e, "%s", error ? error : "");
    size_t n = strlen(e);
    if (n > 1024) {
        n = 1024;
        while (n && ((unsigned char)e[n] & 0xC0) == 0x80) n--;
        e[n] = '\0';
    }
    json_t *es = json_string(e);
    if (!es) es = json_string("(error text was not valid UTF-8)");
    json_object_set_new(c, "error", es);
    json_object_set_new(c, "metrics", metrics ? metrics : json_object());
    json_object_set_new(c, "outputs", outputs ? outputs : json_object());
    return c;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path) && errno != ENOENT ? -1 : 0;
}

int wk_rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : WEIR_EIO;
    /* a step may have left a directory without write permission; ignore that case */
    return nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) ? WEIR_EIO : 0;
}

int wk_mkdirs(const char *path) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) && errno != EEXIST) return WEIR_EIO;
        *p = '/';
    }
    return mkdir(tmp, 0755) && errno != EEXIST ? WEIR_EIO : 0;
}

static int is_sha(const char *s) {
    if (!s || strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* Sleeps for a retry, or returns 1 when the attempt was abandoned meanwhile. */
static int backoff(wk_task_t *t, int *delay_ms) {
    for (int waited = 0; waited < *delay_ms; waited += 50) {
        if (t && atomic_load(&t->abandoned)) return 1;
        usleep(50000);
    }
    if (*delay_ms < 5000) *delay_ms *= 2;
    return t ? atomic_load(&t->abandoned) : 0;
}

static int transient(int rc, long status) {
    return rc || status == 0 || status >= 500 || status == 408 || status == 429;
}

static int feed_inflater(void *ud, const void *data, size_t n) {
    return wk_inflate_feed(ud, data, n) ? 1 : 0;
}

typedef struct {
    char name[65];                /* a SHA-256 in hex (is_sha) */
    int64_t size;
    struct timespec mtime;
} cached_t;

static int older(const void *x, const void *y) {
    const cached_t *a = x, *b = y;
    if (a->mtime.tv_sec != b->mtime.tv_sec) return a->mtime.tv_sec < b->mtime.tv_sec ? -1 : 1;
    if (a->mtime.tv_nsec != b->mtime.tv_nsec) return a->mtime.tv_nsec < b->mtime.tv_nsec ? -1 : 1;
    return strcmp(a->name, b->name);
}

int64_t wk_cache_trim(const char *dir, int64_t max, const char *const *pinned, size_t npinned) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    cached_t *list = NULL;
    size_t n = 0, cap = 0;
    int64_t total = 0;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[1400];
        struct stat st;
        int tmp = !strncmp(e->d_name, ".tmp-", 5);
        if (!tmp && !is_sha(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) || !S_ISREG(st.st_mode)) continue;
        if (tmp) { /* a download a crash left behind; a live one is seconds old */
            if (now - st.st_mtime > 3600) unlink(path);
            continue;
        }
        total += st.st_size;
        int pin = 0;
        for (size_t i = 0; i < npinned && !pin; i++) pin = !strcmp(pinned[i], e->d_name);
        if (pin) continue;
        if (n == cap) {
            cached_t *grown = realloc(list, (cap = cap ? 2 * cap : 64) * sizeof *list);
            if (!grown) break;
            list = grown;
        }
        memcpy(list[n].name, e->d_name, sizeof list[n].name);
        list[n].size = st.st_size;
        list[n].mtime = st.st_mtim;
        n++;
    }
    closedir(d);
    if (n) qsort(list, n, sizeof *list, older);
    for (size_t i = 0; i < n && total > max; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, list[i].name);
        if (!unlink(path)) total -= list[i].size;
    }
    free(list);
    return total;
}

/* After a download: keeps the cache under --cache-max, sparing what the worker's attempts use
 * (their claims' inputs, fetched or about to be; copied under the lock, since a claim goes
 * with its task). One trim at a time: another thread's download is trimmed by the next. */
static void cache_trim(wk_agent_t *a, const char *dir) {
    static pthread_mutex_t trimming = PTHREAD_MUTEX_INITIALIZER;
    if (pthread_mutex_trylock(&trimming)) return;
    char (*names)[65] = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&a->mu);
    for (wk_task_t *t = a->tasks; t; t = t->next) {
        const char *key;
        json_t *in;
        json_object_foreach(json_object_get(t->claim, "inputs"), key, in) {
            const char *sha = json_string_value(json_object_get(in, "sha256"));
            if (!sha || !is_sha(sha)) continue;
            if (n == cap) {
                char (*grown)[65] = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *names);
                if (!grown) break;
                names = grown;
            }
            memcpy(names[n++], sha, 65);
        }
    }
    pthread_mutex_unlock(&a->mu);
    const char **pins = n ? malloc(n * sizeof *pins) : NULL;
    for (size_t i = 0; pins && i < n; i++) pins[i] = names[i];
    int64_t left = wk_cache_trim(dir, a->cache_max, pins, pins ? n : 0);
    if (left > a->cache_max)
        weir_log_warn("worker: the artifact cache holds %lld bytes, over --cache-max %lld: all of it is in use",
                      (long long)left, (long long)a->cache_max);
    free(pins);
    free(names);
    pthread_mutex_unlock(&trimming);
}

int wk_fetch_artifact(wk_agent_t *a, wk_http_t *h, const char *sha, int64_t size, char *path, size_t pathsize,
                      char *err, size_t errsize) {
    if (!is_sha(sha)) {
        snprintf(err, errsize, "artifact id \"%.80s\" is not a SHA-256", sha ? sha : "");
        return WEIR_EINVAL;
    }
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/cache", a->dir);
    snprintf(path, pathsize, "%s/%s", dir, sha);
    struct stat st;
    if (!stat(path, &st) && st.st_size == size) { /* written only after verification */
        utimensat(AT_FDCWD, path, NULL, 0);         /* used now: the last to be trimmed */
        return 0;
    }
    if (wk_mkdirs(dir)) {
        snprintf(err, errsize, "cannot create the cache directory %s: %s", dir, strerror(errno));
        return WEIR_EIO;
    }
    char tmp[1200], route[128];
    static atomic_int counter;
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s-%d-%d", dir, sha, (int)getpid(), atomic_fetch_add(&counter, 1));
    snprintf(route, sizeof route, "/v1/artifacts/%s", sha);
    int delay = 200, rc = WEIR_EUNAVAIL;
    for (int tries = 0; tries < 6; tries++) {
        FILE *f = fopen(tmp, "wb");
        if (!f) {
            snprintf(err, errsize, "cannot write %s: %s", tmp, strerror(errno));
            return WEIR_EIO;
        }
        wk_inflate_t *inf = wk_inflate_new(f, size);
        wk_req_t req = {.method = "GET", .path = route, .timeout_ms = 600000, .on_body = feed_inflater, .ud = inf};
        wk_resp_t res;
        int hrc = inf ? wk_http_call(h, &req, &res) : WEIR_ENOMEM;
        char got[65] = "";
        int64_t got_size = -1;
        int irc = inf ? wk_inflate_finish(inf, got, &got_size) : WEIR_ENOMEM;
        wk_inflate_free(inf);
        int closed = fclose(f);
        if (!hrc && res.status == 200) {
            if (irc == WEIR_ELIMIT) {
                snprintf(err, errsize, "artifact %.12s inflates to more than the %lld bytes announced: refused", sha,
                         (long long)size);
                rc = WEIR_ELIMIT;
            } else if (irc == WEIR_EIO || closed) {
                snprintf(err, errsize, "cannot write artifact %.12s to %s", sha, tmp);
                rc = WEIR_EIO;
            } else if (irc) {
                snprintf(err, errsize, "artifact %.12s: the download is not a complete zlib stream", sha);
                rc = WEIR_EINVAL;
            } else if (strcmp(got, sha) || got_size != size) {
                snprintf(err, errsize, "artifact %.12s: checksum mismatch (got %.12s, %lld bytes; expected %lld)", sha,
                         got, (long long)got_size, (long long)size);
                rc = WEIR_ECHECKSUM;
            } else if (rename(tmp, path)) {
                snprintf(err, errsize, "cannot store artifact %.12s in %s: %s", sha, dir, strerror(errno));
                rc = WEIR_EIO;
            } else {
                rc = 0;
                cache_trim(a, dir);
            }
            wk_resp_free(&res);
            if (rc) unlink(tmp);
            /* a broken stream may have been a broken connection: try again, a mismatch too */
            if (rc == WEIR_EINVAL || rc == WEIR_ECHECKSUM) {
                if (backoff(NULL, &delay)) break;
                continue;
            }
            return rc;
        }
        unlink(tmp);
        if (!hrc && !transient(0, res.status)) {
            snprintf(err, errsize, "cannot download artifact %.12s: %s", sha, res.error);
            wk_resp_free(&res);
            return res.status == 404 ? WEIR_ENOENT : WEIR_EHTTP;
        }
        snprintf(err, errsize, "cannot download artifact %.12s: %s", sha, res.error);
        if (!hrc) wk_resp_free(&res);
        rc = WEIR_EUNAVAIL;
        if (backoff(NULL, &delay)) break;
    }
    return rc;
}

int wk_put_artifact(wk_agent_t *a, wk_http_t *h, wk_task_t *t, const char *path, const char *tmpdir, char sha[65],
                    char *err, size_t errsize) {
    (void)a;
    char zpath[1200];
    snprintf(zpath, sizeof zpath, "%s/.upload.z", tmpdir);
    int64_t size = 0, zsize = 0;
    int rc = wk_deflate_file(path, zpath, sha, &size, &zsize, err, errsize);
    if (rc) { unlink(zpath); return rc; }
    FILE *f = fopen(zpath, "rb");
    if (!f) {
        snprintf(err, errsize, "cannot read %s: %s", zpath, strerror(errno));
        unlink(zpath);
        return WEIR_EIO;
    }
    char route[128], xsize[64];
    snprintf(route, sizeof route, "/v1/artifacts/%s", sha);
    snprintf(xsize, sizeof xsize, "X-Weir-Size: %lld", (long long)size);
    wk_req_t req = {.method = "PUT", .path = route, .body_file = f, .body_file_len = zsize,
                    .content_type = "application/zlib", .headers = {xsize, NULL}, .timeout_ms = 600000};
    int delay = 200;
    for (;;) {
        wk_resp_t res;
        int hrc = wk_http_call(h, &req, &res);
        if (!hrc && (res.status == 200 || res.status == 201)) { rc = 0; wk_resp_free(&res); break; }
        if (!transient(hrc, hrc ? 0 : res.status)) {
            snprintf(err, errsize, "upload of %s refused: %s", path, res.error);
            rc = WEIR_EHTTP;
            wk_resp_free(&res);
            break;
        }
        weir_log_warn("worker: upload of %s: %s; retrying", path, res.error);
        if (!hrc) wk_resp_free(&res);
        if (backoff(t, &delay)) { rc = WEIR_ECONFLICT; snprintf(err, errsize, "abandoned"); break; }
    }
    fclose(f);
    unlink(zpath);
    return rc;
}

/* ---- the log sink: one chunk, POSTed with retries */

typedef struct {
    wk_task_t *t;
    wk_http_t *h;
} sink_t;

static int send_chunk(void *ud, int64_t seq, const void *zdata, size_t zlen, size_t raw_len) {
    sink_t *s = ud;
    wk_task_t *t = s->t;
    wk_agent_t *a = t->agent;
    char route[256], raw[64];
    snprintf(route, sizeof route, "/v1/workers/%lld/attempts/%lld/%d/logs?seq=%lld", (long long)a->worker_id,
             (long long)t->task_id, t->attempt, (long long)seq);
    snprintf(raw, sizeof raw, "X-Weir-Raw-Length: %zu", raw_len);
    wk_req_t req = {.method = "POST", .path = route, .body = zdata, .body_len = zlen,
                    .content_type = "application/zlib", .headers = {raw, NULL}, .timeout_ms = 30000};
    int delay = 200;
    for (;;) {
        if (atomic_load(&t->abandoned)) return WEIR_ECONFLICT;
        wk_resp_t res;
        int rc = wk_http_call(s->h, &req, &res);
        if (!rc && res.status == 200) {
            int truncated = json_is_true(json_object_get(res.json, "truncated"));
            wk_resp_free(&res);
            return truncated ? 1 : 0;
        }
        if (!rc && res.status == 409) {
            wk_resp_free(&res);
            wk_agent_abandon(a, t, "log chunk refused with 409: the attempt is no longer current");
            return WEIR_ECONFLICT;
        }
        if (!transient(rc, rc ? 0 : res.status)) {
            weir_log_warn("worker: task %lld attempt %d: log chunk %lld refused: %s; no more logs for this attempt",
                          (long long)t->task_id, t->attempt, (long long)seq, res.error);
            wk_resp_free(&res);
            return WEIR_EHTTP;
        }
        if (!rc) wk_resp_free(&res);
        if (backoff(t, &delay)) return WEIR_ECONFLICT;
    }
}

/* ---- the runner */

typedef struct {
    char **argv;
    char **env;
    json_t *inputs;     /* "T.O" -> path */
    json_t *settings;
    json_t *task_env;
} prep_t;

static void prep_free(prep_t *p) {
    if (p->argv) {
        for (char **x = p->argv; *x; x++) free(*x);
        free(p->argv);
    }
    wk_env_free(p->env);
    json_decref(p->inputs);
    json_decref(p->settings);
    json_decref(p->task_env);
}

const char *wk_claim_step(const json_t *claim) {
    const char *step = json_string_value(json_object_get(claim, "step"));
    if (!step) step = json_string_value(json_object_get(json_object_get(claim, "spec"), "step"));
    return step ? step : "";
}

/* A plugin step runs as `weir step-run --plugin-dir DIR ADIR/step.json`: the context file
 * carries what the host table hands the step (plugin.h). Returns the argv as a JSON list
 * (no placeholders to resolve), or NULL with err set when there is no plugin directory or
 * the file cannot be written. */
static json_t *plugin_argv(wk_task_t *t, const char *step, const char *adir, const char *workdir,
                           const char *outdir, const char *metrics, const char *progress, const prep_t *p, char *err,
                           size_t errsize) {
    wk_agent_t *a = t->agent;
    if (!a->plugin_dir[0]) {
        snprintf(err, errsize, "step %s: this worker has no plugin directory (start it with --plugin-dir; "
                 "`weir steps` shows what a directory provides)", step);
        return NULL;
    }
    char path[1300], sig[1300], efile[1300], scratch[1300];
    snprintf(path, sizeof path, "%s/step.json", adir);
    snprintf(scratch, sizeof scratch, "%s/scratch", adir); /* private even under --cwd; removed with adir */
    if (wk_mkdirs(scratch)) {
        snprintf(err, errsize, "step %s: cannot create %s: %s", step, scratch, strerror(errno));
        return NULL;
    }
    snprintf(sig, sizeof sig, "%s/signals.jsonl", adir);
    snprintf(efile, sizeof efile, "%s/error.txt", adir);
    json_t *params = json_object_get(t->claim, "params"), *run = json_object_get(t->claim, "run");
    json_t *c = json_object();
    json_object_set_new(c, "step", json_string(step));
    json_object_set_new(c, "settings", p->settings ? json_incref(p->settings) : json_object());
    json_object_set_new(c, "params", params ? json_incref(params) : json_object());
    json_object_set_new(c, "run", run ? json_incref(run) : json_object());
    json_object_set(c, "inputs", p->inputs);
    json_object_set_new(c, "output_dir", json_string(outdir));
    json_object_set_new(c, "metrics_file", json_string(metrics));
    json_object_set_new(c, "progress_file", json_string(progress));
    json_object_set_new(c, "scratch_dir", json_string(scratch));
    json_object_set_new(c, "signals_file", json_string(sig));
    json_object_set_new(c, "error_file", json_string(efile));
    /* the child sees only its GPUs (CUDA_VISIBLE_DEVICES), so its first one is ordinal 0 */
    json_object_set_new(c, "device", json_integer(t->ngpu_ids ? 0 : -1));
    int rc = json_dump_file(c, path, JSON_COMPACT);
    json_decref(c);
    if (rc) {
        snprintf(err, errsize, "step %s: cannot write %s: %s", step, path, strerror(errno));
        return NULL;
    }
    return json_pack("[s, s, s, s, s]", a->exe, "step-run", "--plugin-dir", a->plugin_dir, path);
}

void wk_attempt_dir(const char *dir, int64_t task_id, int attempt, char *out, size_t size) {
    snprintf(out, size, "%s/attempts/%lld-%d", dir, (long long)task_id, attempt);
}

/* Everything before the step starts. 0, or an error with err set (the attempt fails). */
static int prepare(wk_task_t *t, wk_http_t *h, const char *adir, const char *workdir, const char *outdir,
                   const char *metrics, const char *progress, prep_t *p, char *err, size_t errsize) {
    wk_agent_t *a = t->agent;
    json_t *claim = t->claim, *spec = json_object_get(claim, "spec");
    p->inputs = json_object();
    const char *key;
    json_t *in;
    json_object_foreach(json_object_get(claim, "inputs"), key, in) {
        char path[1200], e[512];
        const char *sha = json_string_value(json_object_get(in, "sha256"));
        json_int_t size = json_integer_value(json_object_get(in, "size"));
        if (wk_fetch_artifact(a, h, sha, size, path, sizeof path, e, sizeof e)) {
            snprintf(err, errsize, "input %s: %s", key, e);
            return WEIR_EIO;
        }
        json_object_set_new(p->inputs, key, json_string(path));
    }
    if (atomic_load(&t->abandoned)) { snprintf(err, errsize, "abandoned"); return WEIR_ECONFLICT; }
    wk_rmtree(adir);
    if (wk_mkdirs(workdir) || wk_mkdirs(outdir)) {
        snprintf(err, errsize, "cannot create the attempt directory %s: %s", adir, strerror(errno));
        return WEIR_EIO;
    }
    wk_subst_ctx_t ctx = {.params = json_object_get(claim, "params"), .run = json_object_get(claim, "run"),
                          .inputs = p->inputs};
    char e[512] = "";
    json_t *with = json_object_get(spec, "with");
    if (with && !(p->settings = wk_subst_json(&ctx, with, e, sizeof e))) {
        snprintf(err, errsize, "with: %s", e);
        return WEIR_EINVAL;
    }
    const char *step = wk_claim_step(claim);
    json_t *argv;
    if (strcmp(step, "exec")) {
        if (!(argv = plugin_argv(t, step, adir, workdir, outdir, metrics, progress, p, err, errsize))) return WEIR_EINVAL;
    } else {
        json_t *cmd = json_object_get(spec, "command");
        if (!json_is_array(cmd) || !json_array_size(cmd)) {
            snprintf(err, errsize, "exec step without a command (spec.command must be a non-empty list)");
            return WEIR_EINVAL;
        }
        if (!(argv = wk_subst_json(&ctx, cmd, e, sizeof e))) { snprintf(err, errsize, "command: %s", e); return WEIR_EINVAL; }
    }
    size_t n = json_array_size(argv);
    p->argv = calloc(n + 1, sizeof *p->argv);
    for (size_t i = 0; p->argv && i < n; i++) {
        p->argv[i] = wk_value_text(json_array_get(argv, i));
        if (!p->argv[i]) { json_decref(argv); snprintf(err, errsize, "out of memory"); return WEIR_ENOMEM; }
    }
    json_decref(argv);
    if (!p->argv) { snprintf(err, errsize, "out of memory"); return WEIR_ENOMEM; }
    json_t *env = json_object_get(spec, "env");
    if (env && !(p->task_env = wk_subst_json(&ctx, env, e, sizeof e))) {
        snprintf(err, errsize, "env: %s", e);
        return WEIR_EINVAL;
    }
    wk_env_spec_t es = {.base = environ, .run = json_object_get(claim, "run"),
                        .task = json_string_value(json_object_get(claim, "task")), .attempt = t->attempt,
                        .output_dir = outdir, .metrics_file = metrics, .progress_file = progress,
                        .params = json_object_get(claim, "params"),
                        .settings = p->settings, .inputs = p->inputs, .env = p->task_env,
                        .gpus = a->gpu > 0 ? t->gpus : NULL};
    if (!(p->env = wk_env_build(&es))) { snprintf(err, errsize, "out of memory"); return WEIR_ENOMEM; }
    return 0;
}

/* "exited with status 2: <last stderr line>" and, when there are more, the last lines of
 * stderr below it: the first line is what a table shows, the rest is for `run show`. */
static void failure_text(const wk_exec_result_t *r, char *out, size_t size) {
    const char *tail = r->tail;
    /* start the tail at a line boundary when the cut fell mid-line */
    if (strlen(tail) == sizeof r->tail - 1) {
        const char *nl = strchr(tail, '\n');
        if (nl && nl[1]) tail = nl + 1;
    }
    size_t tl = strlen(tail);
    while (tl && (tail[tl - 1] == '\n' || tail[tl - 1] == '\r' || tail[tl - 1] == ' ')) tl--;
    if (!tl) {
        snprintf(out, size, "%s", r->error);
        return;
    }
    size_t ls = tl;
    while (ls && tail[ls - 1] != '\n') ls--;
    if (!ls) snprintf(out, size, "%s: %.*s", r->error, (int)tl, tail);
    else snprintf(out, size, "%s: %.*s\nstderr ends with:\n%.*s", r->error, (int)(tl - ls), tail + ls, (int)tl, tail);
}

/* The signals a plugin step emitted (`weir step-run` appends them to ADIR/signals.jsonl), as the
 * completion's "signals" list; NULL when there are none. At most 100, each line at most 64 KiB:
 * the rest are dropped with a warning, never the completion. */
static json_t *step_signals(wk_task_t *t, const char *adir) {
    char path[1300], line[65536];
    snprintf(path, sizeof path, "%s/signals.jsonl", adir);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    json_t *list = json_array();
    size_t dropped = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *sg = json_loads(line, 0, NULL);
        json_t *kind = json_object_get(sg, "kind");
        if (!json_is_string(kind) || json_array_size(list) >= 100) { dropped++; json_decref(sg); continue; }
        json_t *v = json_object_get(sg, "value"), *detail = json_object_get(sg, "detail");
        const char *subject = json_string_value(json_object_get(sg, "subject"));
        json_array_append_new(list, json_pack("{s:O, s:s, s:o, s:o}", "kind", kind, "subject", subject ? subject : "",
                                              "value", json_is_number(v) ? json_incref(v) : json_integer(0),
                                              "attributes", json_is_object(detail) ? json_incref(detail) : json_object()));
        json_decref(sg);
    }
    fclose(f);
    if (dropped)
        weir_log_warn("worker: task %lld attempt %d: %zu signals dropped (malformed, or over 100)", (long long)t->task_id,
                      t->attempt, dropped);
    if (!json_array_size(list)) { json_decref(list); return NULL; }
    return list;
}

/* The message a plugin step failed with (`weir step-run` writes it): 1 when there is one. */
static int step_error(const char *adir, char *out, size_t size) {
    char path[1300], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/error.txt", adir);
    if (weir_read_file(path, 64 << 10, &text, &len) || !len) { free(text); return 0; }
    snprintf(out, size, "%s", text);
    free(text);
    return 1;
}

void *wk_task_thread(void *arg) {
    wk_task_t *t = arg;
    wk_agent_t *a = t->agent;
    wk_http_t h;
    char adir[1200], workdir[1300], outdir[1300], metrics[1300], progress[1300], err[2048] = "";
    wk_attempt_dir(a->dir, t->task_id, t->attempt, adir, sizeof adir);
    if (a->cwd[0]) snprintf(workdir, sizeof workdir, "%s", a->cwd);
    else snprintf(workdir, sizeof workdir, "%s/work", adir);
    snprintf(outdir, sizeof outdir, "%s/outputs", adir);
    snprintf(metrics, sizeof metrics, "%s/metrics.json", adir);
    snprintf(progress, sizeof progress, "%s/" WK_PROGRESS_FILE, adir);
    prep_t p = {0};
    json_t *done = NULL;
    if (wk_http_init(&h, &a->sched)) {
        done = wk_completion("failed", -1, "worker: cannot start libcurl", NULL, NULL);
        goto out;
    }
    if (prepare(t, &h, adir, workdir, outdir, metrics, progress, &p, err, sizeof err)) {
        if (!atomic_load(&t->abandoned)) done = wk_completion("failed", -1, err, NULL, NULL);
        goto out;
    }
    wk_log_t log;
    sink_t sink = {.t = t, .h = &h};
    if (wk_log_init(&log, a->max_log, send_chunk, &sink)) {
        done = wk_completion("failed", -1, "worker: out of memory for the log buffer", NULL, NULL);
        goto out;
    }
    json_t *spec = json_object_get(t->claim, "spec");
    int64_t timeout = json_integer_value(json_object_get(t->claim, "timeout_ms"));
    if (timeout <= 0) timeout = json_integer_value(json_object_get(spec, "timeout_ms"));
    wk_exec_spec_t es = {.argv = p.argv, .envp = p.env, .cwd = workdir, .timeout_ms = timeout,
                         .kill_grace_ms = a->kill_grace_ms, .log = &log};
    wk_exec_result_t r;
    weir_log_info("worker: task %lld attempt %d (%s): starting %s", (long long)t->task_id, t->attempt,
                  json_string_value(json_object_get(t->claim, "task")), p.argv[0]);
    wk_exec_run(&es, &t->proc, &r);
    wk_log_free(&log);
    if (atomic_load(&t->abandoned)) goto out;
    weir_log_info("worker: task %lld attempt %d: %s in %lld ms%s%s", (long long)t->task_id, t->attempt,
                  r.end == WK_EXEC_TIMED_OUT ? "timed out" : r.exit_code == 0 ? "exited 0" : "failed",
                  (long long)r.duration_ms, r.error[0] ? ": " : "", r.error);
    json_t *m = NULL;
    char merr[512] = "";
    int mrc = r.end == WK_EXEC_START_FAILED ? 0 : wk_read_metrics(metrics, &m, merr, sizeof merr);
    if (r.end == WK_EXEC_TIMED_OUT) {
        done = wk_completion("timed_out", r.exit_code, r.error, m, NULL);
    } else if (r.end != WK_EXEC_EXITED || r.exit_code != 0) {
        if (r.end != WK_EXEC_EXITED || !step_error(adir, err, sizeof err)) failure_text(&r, err, sizeof err);
        done = wk_completion("failed", r.exit_code, err, m, NULL);
    } else if (mrc) {
        done = wk_completion("failed", 0, merr, NULL, NULL);
    } else {
        json_t *files = NULL;
        int orc = wk_collect_outputs(outdir, json_object_get(spec, "outputs"), &files, err, sizeof err);
        if (orc) {
            done = wk_completion("failed", 0, err, m, NULL);
        } else {
            json_t *outs = json_object();
            const char *name;
            json_t *file;
            int urc = 0;
            json_object_foreach(files, name, file) {
                char sha[65];
                if ((urc = wk_put_artifact(a, &h, t, json_string_value(file), adir, sha, err, sizeof err))) break;
                json_object_set_new(outs, name, json_string(sha));
            }
            json_decref(files);
            if (urc) {
                json_decref(outs);
                if (!atomic_load(&t->abandoned)) done = wk_completion("failed", 0, err, m, NULL);
            } else {
                done = wk_completion("succeeded", 0, "", m, outs);
                json_t *sigs = step_signals(t, adir);
                if (sigs) json_object_set_new(done, "signals", sigs);
            }
        }
    }
out:
    prep_free(&p);
    if (h.curl) wk_http_close(&h);
    if (adir[0]) wk_rmtree(adir);
    if (done && !atomic_load(&t->abandoned)) {
        t->completion = done;
        wk_agent_complete(a, t);
    } else {
        json_decref(done);
        wk_agent_release(a, t);
    }
    return NULL;
}
