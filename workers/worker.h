/* worker.h — internal interfaces of the worker agent (`weir worker`).
 *
 * The pieces, each in its own file, bottom-up:
 *   subst.c     placeholders (${params.X}, ${run.F}, ${tasks.T.outputs.O}, $$), the
 *               environment of an exec step, output names; pure functions, no I/O.
 *   logship.c   the log chunker: a fixed buffer, a per-attempt cap with a marker, zlib;
 *               hands each compressed chunk to a sink callback (HTTP in the agent, a
 *               test's function in the unit tests).
 *   exec.c      runs one command in its own process group, streams its output into a
 *               chunker, enforces a timeout and cancellation (SIGTERM, SIGKILL after a
 *               grace), never leaves a process of the group behind.
 *   artifact.c  streaming deflate of a file (hash + compress in one pass, to a temp file)
 *               and capped streaming inflate (refuses more than the expected size).
 *   wire.c      blocking HTTP to the scheduler with several URLs (failover), raw bodies,
 *               extra headers and per-call timeouts. One wk_http_t per thread.
 *   task.c      one claimed task from claim to completion body: inputs, directories,
 *               the exec step, metrics, outputs, uploads.
 *   worker.c    the agent: flags, registration, the claim loop, heartbeats, completions,
 *               signals.
 *
 * Not a public API: nothing outside workers/ and tests/unit/test_worker*.c includes it.
 * Memory: every function says who owns what it returns; "caller frees" unless stated. */
#ifndef WEIR_WORKERS_WORKER_H
#define WEIR_WORKERS_WORKER_H

#include "common/util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* ---------------------------------------------------------------- subst.c */

/* What placeholders resolve against. All borrowed; inputs maps "TASK.OUTPUT" to a local
 * path string (an upstream output that was not produced is simply absent). */
typedef struct {
    const json_t *params;   /* {"NAME": value} */
    const json_t *run;      /* {"id", "pipeline", "version", "date", "trigger"} */
    const json_t *inputs;   /* {"TASK.OUTPUT": "/path"} */
} wk_subst_ctx_t;

/* Appends s with every placeholder replaced to out. "$$" is a literal "$"; a "$" not
 * followed by "{" or "$" is kept as is (so "sh -c 'echo $HOME'" works, as the DSL's checker
 * agrees). ${tasks.T.outputs.O} with no such input becomes "". Anything else unknown
 * (${params.nope}, ${foo}, an unterminated "${") is refused: WEIR_EINVAL with a message in
 * err naming it — the DSL checks every placeholder at compile time, so one the worker does
 * not know means the plan and the claim disagree, and running with a guess would be worse.
 * 0, WEIR_EINVAL, WEIR_ELIMIT (out is full). */
int wk_subst(const wk_subst_ctx_t *ctx, const char *s, weir_buf_t *out, char *err, size_t errsize);

/* A deep copy of v with placeholders replaced in every string (keys untouched).
 * NULL on error (err says why); caller json_decref's. */
json_t *wk_subst_json(const wk_subst_ctx_t *ctx, const json_t *v, char *err, size_t errsize);

/* A parameter or settings value as the text a command sees: strings as is, integers in
 * decimal, reals in the plan's canonical shortest form (0.1, not 0.10000000000000001),
 * true/false, null as "", arrays and objects as compact canonical JSON. Caller frees. */
char *wk_value_text(const json_t *v);

/* "WEIR_INPUT_" + "ingest.data-set" -> "WEIR_INPUT_INGEST_DATA_SET": upper-cased, '-' and
 * '.' as '_'. Writes at most size bytes (NUL included); truncates silently. */
void wk_env_name(const char *prefix, const char *name, char *out, size_t size);

/* A step's latest progress, {"fraction": 0..1, "note": TEXT}, in its attempt directory: the
 * plugin host writes it, an exec step may (WEIR_PROGRESS_FILE); heartbeats carry it. */
#define WK_PROGRESS_FILE "progress.json"
/* An attempt's directory under the work directory dir: dir/attempts/TASK-ATTEMPT (task.c). */
void wk_attempt_dir(const char *dir, int64_t task_id, int attempt, char *out, size_t size);
/* Reads the attempt directory's progress.json: {"fraction", "note"} checked and clamped
 * (a note cut to 200 bytes), or NULL when there is none or it is not such an object. */
json_t *wk_progress_read(const char *dir, int64_t task_id, int attempt);

/* What the environment of an exec step is built from (all borrowed). */
typedef struct {
    char **base;              /* the worker's own environment (environ), NULL-terminated */
    const json_t *run;        /* claim.run */
    const char *task;         /* claim.task */
    int attempt;
    const char *output_dir;
    const char *metrics_file;
    const char *progress_file; /* WEIR_PROGRESS_FILE: {"fraction", "note"} the step may rewrite */
    const json_t *params;     /* claim.params */
    const json_t *settings;   /* spec.with after substitution, or NULL */
    const json_t *inputs;     /* "TASK.OUTPUT" -> path */
    const json_t *env;        /* spec.env after substitution (string values), or NULL */
    const char *gpus;         /* CUDA_VISIBLE_DEVICES ("0,2"; "" hides every GPU), or NULL: untouched */
} wk_env_spec_t;

/* A NULL-terminated "NAME=value" array: base first, then WEIR_RUN_ID, WEIR_PIPELINE,
 * WEIR_TASK, WEIR_ATTEMPT, WEIR_OUTPUT_DIR, WEIR_METRICS_FILE, WEIR_PARAM_*, WEIR_SETTINGS,
 * WEIR_INPUT_*, then the task's env; a later entry replaces an earlier one of the same name
 * (so the task's env wins). Free with wk_env_free. NULL on out of memory. */
char **wk_env_build(const wk_env_spec_t *s);
void wk_env_free(char **env);
/* The value of name in env, or NULL. Borrowed from env. */
const char *wk_env_get(char *const *env, const char *name);

/* The output name of a file in the outputs directory: its name up to the first '.'
 * ("model.tar.gz" -> "model"). Writes it into out; WEIR_EINVAL when the name would be
 * empty (".hidden") or is not a lowercase identifier ([a-z][a-z0-9_]*, ≤ 63 bytes, as
 * the DSL requires of output names). */
int wk_output_name(const char *file, char *out, size_t size);

/* Scans dir for regular files and fills *outputs with {"name": "/dir/file"}. Fails
 * (WEIR_EINVAL, err says which) when two files give the same name or a name is invalid;
 * subdirectories and other non-regular files are refused too, so nothing is silently
 * dropped. Then every name in declared (a JSON array of strings, may be NULL) must be
 * present, else WEIR_ENOENT naming the missing output(s). Caller decrefs *outputs. */
int wk_collect_outputs(const char *dir, const json_t *declared, json_t **outputs, char *err, size_t errsize);

/* Reads the metrics file (absent or empty: an empty object). It must be a JSON object whose
 * values are numbers; else WEIR_EINVAL with err naming the line/column or the key.
 * At most 1 MiB. Caller decrefs *metrics. */
int wk_read_metrics(const char *path, json_t **metrics, char *err, size_t errsize);

/* The claim's step name ("exec", "noop", "train.logreg", ...); "" when it has none. Borrowed. */
const char *wk_claim_step(const json_t *claim);

/* ---------------------------------------------------------------- logship.c */

#define WK_LOG_CHUNK (256u << 10)     /* flush at this many raw bytes ... */
#define WK_LOG_FLUSH_MS 200           /* ... or this long after the first unflushed byte */

/* Receives one compressed chunk. Returns 0 (stored), 1 (stored or dropped, and the server
 * says the log is truncated: send nothing more) or a negative error (give up on this log:
 * e.g. the attempt is no longer current). The sink owns retries; zdata is borrowed for the
 * call only. */
typedef int (*wk_log_sink_fn)(void *ud, int64_t seq, const void *zdata, size_t zlen, size_t raw_len);

typedef struct {
    char *buf;                /* WK_LOG_CHUNK raw bytes, owned */
    size_t len;
    unsigned char *zbuf;      /* compressBound(WK_LOG_CHUNK), owned */
    size_t zsize;
    int64_t seq;              /* next chunk's seq */
    int64_t kept;             /* raw output bytes accepted so far */
    int64_t max;              /* cap on kept output bytes (marker excluded) */
    int64_t dropped;          /* raw bytes seen after the cap */
    int truncated;            /* the cap was reached; the marker is in the buffer or sent */
    int stopped;              /* the sink said stop (truncated or error): nothing more is sent */
    int sink_error;           /* the sink's negative error, if any */
    char last;                /* the last byte kept, so the marker starts on its own line */
    uint64_t first_unflushed_ms;
    wk_log_sink_fn sink;
    void *ud;
} wk_log_t;

/* max_bytes: the per-attempt cap on the whole log including the marker (≥ 128).
 * 0 or WEIR_ENOMEM. */
int wk_log_init(wk_log_t *l, int64_t max_bytes, wk_log_sink_fn sink, void *ud);
void wk_log_free(wk_log_t *l);
/* Takes output bytes; flushes full chunks through the sink. Past the cap the bytes are
 * counted and dropped and the marker "[weir: log truncated after N bytes]\n" is added once.
 * Always consumes all n bytes (the pipe must be drained either way). */
void wk_log_write(wk_log_t *l, const void *data, size_t n);
/* Flushes what is buffered when the flush interval has passed (or force). */
void wk_log_tick(wk_log_t *l, uint64_t now_ms, int force);
/* Milliseconds until the next timed flush is due; -1 when nothing is buffered. */
int wk_log_due_in(const wk_log_t *l, uint64_t now_ms);

/* ---------------------------------------------------------------- exec.c */

typedef enum { WK_EXEC_EXITED, WK_EXEC_SIGNALED, WK_EXEC_TIMED_OUT, WK_EXEC_CANCELLED, WK_EXEC_START_FAILED } wk_exec_end_t;

/* A running or finished process group, shared between the runner thread and the threads
 * that may cancel it. Caller-owned; wk_exec_init / wk_exec_close. */
typedef struct {
    pthread_mutex_t mu;
    pid_t pgid;               /* > 0 while the group may have members; under mu */
    int wake_fd;              /* eventfd: wk_exec_cancel writes it to wake the runner */
    atomic_int cancelled;
    char reason[128];         /* why it was cancelled; under mu */
} wk_proc_t;

int wk_proc_init(wk_proc_t *p);
void wk_proc_close(wk_proc_t *p);
/* From any thread: sends SIGTERM to the group now and wakes the runner, which sends SIGKILL
 * after the grace. Safe before start (the start is then skipped) and after the end (no-op). */
void wk_proc_cancel(wk_proc_t *p, const char *reason);

typedef struct {
    char *const *argv;        /* argv[0] is looked up in PATH */
    char *const *envp;
    const char *cwd;          /* NULL: the worker's */
    int64_t timeout_ms;       /* 0: none */
    int64_t kill_grace_ms;    /* SIGTERM to SIGKILL; 0 means 5000 */
    wk_log_t *log;            /* stdout and stderr go here */
} wk_exec_spec_t;

typedef struct {
    wk_exec_end_t end;
    int exit_code;            /* exit status; 128+signal when killed; -1 when it did not start */
    int signal;
    int64_t duration_ms;
    char tail[1024];          /* the last stderr bytes (up to 1 KiB), NUL-terminated */
    char error[512];          /* why it did not start, or a note on how it ended */
} wk_exec_result_t;

/* Runs the command to its end (blocking the calling thread) in its own process group.
 * When the leader exits, what is left of its group is killed (SIGKILL) once its output
 * pipes close or after 1 s, so no member survives the step. Returns 0 when it ran (see
 * r->end), or a negative error when it could not start (r->error says why). */
int wk_exec_run(const wk_exec_spec_t *s, wk_proc_t *p, wk_exec_result_t *r);

/* ---------------------------------------------------------------- artifact.c */

/* Reads path, computes its SHA-256 (hex) and its size, and writes its zlib-compressed form
 * to zpath (created, mode 0600). Memory bounded (64 KiB buffers). 0 or WEIR_EIO (err). */
int wk_deflate_file(const char *path, const char *zpath, char sha[65], int64_t *size, int64_t *zsize,
                    char *err, size_t errsize);

/* A streaming, capped inflater into a file that also hashes what it writes. */
typedef struct wk_inflate_s wk_inflate_t;
/* out is borrowed; cap is the most inflated bytes accepted. NULL on out of memory. */
wk_inflate_t *wk_inflate_new(FILE *out, int64_t cap);
/* Feeds compressed bytes. 0, WEIR_ELIMIT (more than cap: refused), WEIR_EINVAL (not zlib),
 * WEIR_EIO (write failed). After an error every later call repeats it. */
int wk_inflate_feed(wk_inflate_t *f, const void *data, size_t n);
/* Checks the stream ended; writes the hex SHA-256 and size of the inflated bytes.
 * 0, WEIR_EINVAL (truncated stream) or the earlier error. */
int wk_inflate_finish(wk_inflate_t *f, char sha[65], int64_t *size);
void wk_inflate_free(wk_inflate_t *f);

/* ---------------------------------------------------------------- wire.c */

/* The schedulers a worker talks to: URLs tried in order, the current one shared by every
 * thread (a failover moves all of them). Owned by the agent, read-only after setup except
 * current. */
typedef struct {
    char **urls;              /* no trailing slash */
    int nurls;
    atomic_int current;
    char auth[400];           /* "Authorization: Bearer T" or "" */
} wk_sched_t;

/* One thread's HTTP connection (keep-alive). Not shared between threads. */
typedef struct {
    wk_sched_t *sched;        /* borrowed */
    void *curl;               /* CURL *, owned */
} wk_http_t;

typedef struct {
    const char *method;
    const char *path;                 /* "/v1/..." */
    const json_t *json;               /* a JSON body, or */
    const void *body; size_t body_len; const char *content_type;   /* a raw body, or */
    FILE *body_file; int64_t body_file_len;                         /* a file, streamed */
    const char *headers[4];           /* extra "Name: value" lines, NULL-terminated */
    long timeout_ms;                  /* whole call; 0 means 30 s */
    /* Streams a 2xx response body here instead of buffering it; returns 0 to go on. */
    int (*on_body)(void *ud, const void *data, size_t n);
    void *ud;
} wk_req_t;

typedef struct {
    long status;                      /* 0 when no answer came */
    json_t *json;                     /* the parsed body when it is JSON; owned */
    char error[512];                  /* transport error, or the server's message */
} wk_resp_t;

int wk_http_init(wk_http_t *h, wk_sched_t *s);
void wk_http_close(wk_http_t *h);
/* One call. On a connection failure or a 503 it tries the next URL (each at most once per
 * call; the request is repeated only when nothing was received, so it is safe). 0 when an
 * answer arrived (any status, see res->status), WEIR_EUNAVAIL when no scheduler answered.
 * The caller calls wk_resp_free. */
int wk_http_call(wk_http_t *h, const wk_req_t *req, wk_resp_t *res);
void wk_resp_free(wk_resp_t *res);

/* ---------------------------------------------------------------- the agent (worker.c, task.c) */

/* wk_proc_cancel's harder sibling: SIGKILL to the group at once (second SIGTERM/SIGINT). */
void wk_proc_kill_now(wk_proc_t *p);

typedef struct wk_agent_s wk_agent_t;
typedef struct wk_task_s wk_task_t;

/* One claimed attempt, from claim to its final completion answer (or abandonment). Created
 * by the claim loop, owned by the agent's list; freed by wk_agent_release, after which
 * nobody touches it. */
struct wk_task_s {
    wk_task_t *prev, *next;      /* agent's list, under agent->mu */
    wk_task_t *qnext;            /* the completion queue, under agent->mu */
    wk_agent_t *agent;
    int64_t task_id;
    int attempt;
    json_t *claim;               /* the CLAIM object, owned */
    int gpu;
    int64_t memory;
    int gpu_ids[32];             /* the GPU ordinals it was given (at most 32) ... */
    int ngpu_ids;
    char gpus[256];              /* ... as CUDA_VISIBLE_DEVICES reads them, "0,2"; "" for none */
    uint64_t claimed_at;         /* monotonic ms when the claim that brought it was sent */
    atomic_int abandoned;        /* cancelled, stale or lease lost: send nothing more */
    int queued;                  /* in the completion queue; under agent->mu */
    int reported;                /* its completion was handed to the completers; under agent->mu */
    int has_proc;                /* exec steps: proc is initialised */
    wk_proc_t proc;
    json_t *completion;          /* the complete body, owned; set before queueing */
};

struct wk_agent_s {
    /* options, fixed after start */
    char name[256];
    char dir[1024];              /* work directory: attempts/, cache/ */
    char cwd[1024];              /* "" = a fresh directory per attempt */
    char plugin_dir[1024];       /* absolute; "" when there is none (plugin steps then fail) */
    char exe[1024];              /* this binary, for `weir step-run` children */
    int slots;
    json_t *queues;              /* array of strings */
    int gpu;
    int64_t memory;
    json_t *labels;              /* object */
    int64_t max_log;
    int64_t cache_max;           /* the artifact cache's cap in bytes (--cache-max) */
    int64_t kill_grace_ms;
    wk_sched_t sched;

    int64_t worker_id;
    atomic_int lease_ms, heartbeat_ms;

    pthread_mutex_t mu;
    pthread_cond_t cond;         /* the heartbeat's sleep: draining, exit */
    pthread_cond_t qcond;        /* the completers' sleep: a completion queued, exit */
    wk_task_t *tasks;            /* every held attempt */
    int ntasks, used_gpu;
    unsigned char gpu_busy[1024];  /* tasks using each GPU ordinal (0 = free) */
    int64_t used_memory;
    wk_task_t *qhead, *qtail;    /* completions to send */
    uint64_t last_renewed;       /* monotonic ms when the last successful heartbeat was sent */
    atomic_int draining;         /* first SIGTERM: claim nothing new */
    atomic_int exiting;          /* threads stop */
    void *claim_multi;           /* CURLM * of the claim loop, for curl_multi_wakeup */
};

/* Removes t from the agent, frees it and wakes the claim loop (a slot is free). */
void wk_agent_release(wk_agent_t *a, wk_task_t *t);
/* Hands t's completion (t->completion set) to the completer threads, or releases t when it
 * was abandoned meanwhile. */
void wk_agent_complete(wk_agent_t *a, wk_task_t *t);
/* Marks t abandoned (nothing more is sent for it) and kills its step; a queued completion
 * is dropped. reason goes to the log. */
void wk_agent_abandon(wk_agent_t *a, wk_task_t *t, const char *reason);

/* The runner thread's body for an exec step (task.c): inputs, directories, the step,
 * outputs, then wk_agent_complete. arg is the wk_task_t. */
void *wk_task_thread(void *arg);
/* A completion body. metrics and outputs are stolen (may be NULL). */
json_t *wk_completion(const char *status, int exit_code, const char *error, json_t *metrics, json_t *outputs);

/* The artifact cache: makes sure dir/cache/<sha> holds the artifact (downloading, capped
 * at size, verified), and writes its path. 0 or an error with err set. */
int wk_fetch_artifact(wk_agent_t *a, wk_http_t *h, const char *sha, int64_t size, char *path, size_t pathsize,
                      char *err, size_t errsize);
/* Trims the cache directory dir to at most max bytes: removes its least recently used
 * artifacts (oldest mtime first; wk_fetch_artifact touches an artifact on every use) except the
 * pinned ones (SHA-256s the worker's attempts hold). Left-over temporary files older than an
 * hour go too. Returns the bytes in the cache afterwards (more than max when pinned artifacts
 * alone exceed it), or -1 when the directory cannot be read. */
int64_t wk_cache_trim(const char *dir, int64_t max, const char *const *pinned, size_t npinned);
/* Uploads one file as an artifact (deflated via a temp file beside it); writes its sha.
 * 0 or an error with err set (the server's message on 400/413). Retries transient
 * failures while t is not abandoned. */
int wk_put_artifact(wk_agent_t *a, wk_http_t *h, wk_task_t *t, const char *path, const char *tmpdir, char sha[65],
                    char *err, size_t errsize);

/* mkdir -p, mode 0755. 0 or WEIR_EIO (errno says why). */
int wk_mkdirs(const char *path);
/* Removes a directory tree (no links followed). 0 or WEIR_EIO. */
int wk_rmtree(const char *path);

#endif
