/* test_worker.c — the worker's pieces that need no scheduler: placeholders, the step's
 * environment, output names and metrics, the exec runner (exit codes, timeouts and
 * cancels that leave no process of the group alive), the log chunker's cap and memory
 * bound, zlib streaming with a cap, completion bodies, and URL failover over a real socket. */
#include "unit.h"
#include "common/error.h"
#include "common/sha256.h"
#include "common/util.h"
#include "workers/worker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <zlib.h>

/* ---- helpers */

static json_t *J(const char *text) {
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j) { fprintf(stderr, "bad test JSON: %s\n", e.text); exit(2); }
    return j;
}

static wk_subst_ctx_t ctx(void) {
    wk_subst_ctx_t c = {
        .params = J("{\"lr\": 0.1, \"epochs\": 3, \"name\": \"churn\", \"flag\": true, \"list\": [1, \"a\"], \"none\": null}"),
        .run = J("{\"id\": 42, \"pipeline\": \"churn\", \"version\": \"ab12\", \"date\": \"2026-11-23\", \"trigger\": \"manual\"}"),
        .inputs = J("{\"ingest.dataset\": \"/cache/9f86\", \"models.cancer.production\": \"/cache/77aa\"}"),
    };
    return c;
}

static char *subst(const char *s, int *rc, char *err) {
    wk_subst_ctx_t c = ctx();
    weir_buf_t b;
    weir_buf_init(&b, 1 << 20);
    err[0] = '\0';
    *rc = wk_subst(&c, s, &b, err, 512);
    return b.data ? b.data : strdup("");
}

static char tmpdir_path[256];
static const char *tmpdir(void) {
    snprintf(tmpdir_path, sizeof tmpdir_path, "/tmp/weir-test-worker.XXXXXX");
    CHECK(mkdtemp(tmpdir_path));
    return tmpdir_path;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs(text, f);
    fclose(f);
}

/* Alive means: the process exists and is not a zombie. */
static int alive(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *close = strrchr(buf, ')');
    return close && close[1] == ' ' && close[2] != 'Z' && close[2] != 'X';
}

static pid_t read_pid(const char *path) {
    char *text = NULL;
    if (weir_read_file(path, 64, &text, NULL)) return 0;
    pid_t pid = (pid_t)atoi(text);
    free(text);
    return pid;
}

/* A sink that inflates every chunk into a capped buffer and checks the numbering. */
typedef struct {
    weir_buf_t text;       /* the first and last part of the log, capped */
    int64_t raw_total;
    int64_t next_seq;
    int chunks;
    int bad;
    int stop_after;        /* answer "truncated" after this many chunks (0: never) */
    char last_chunk[512];  /* the tail of the last chunk (may hold NUL bytes) */
    size_t last_len;
} collect_t;

static int collect_sink(void *ud, int64_t seq, const void *z, size_t zlen, size_t raw_len) {
    collect_t *c = ud;
    if (seq != c->next_seq || raw_len > (1u << 20)) c->bad = 1;
    c->next_seq++;
    unsigned char *raw = malloc(raw_len + 1);
    uLongf n = (uLongf)raw_len;
    if (uncompress(raw, &n, z, (uLong)zlen) != Z_OK || n != raw_len) c->bad = 1;
    raw[n] = '\0';
    c->raw_total += (int64_t)n;
    weir_buf_append(&c->text, raw, n); /* fails silently past its cap: that is fine */
    size_t keep = n < sizeof c->last_chunk - 1 ? n : sizeof c->last_chunk - 1;
    memcpy(c->last_chunk, raw + n - keep, keep);
    c->last_chunk[keep] = '\0';
    c->last_len = keep;
    free(raw);
    c->chunks++;
    return c->stop_after && c->chunks >= c->stop_after ? 1 : 0;
}

typedef struct {
    wk_exec_result_t r;
    collect_t log;
    int rc;
} run_t;

static run_t *run(const char *const *argv, int64_t timeout_ms, int64_t grace_ms, int64_t max_log, wk_proc_t *proc) {
    run_t *x = calloc(1, sizeof *x);
    weir_buf_init(&x->log.text, 1 << 20);
    wk_log_t log;
    CHECK_EQ(wk_log_init(&log, max_log, collect_sink, &x->log), 0);
    extern char **environ;
    wk_exec_spec_t s = {.argv = (char *const *)argv, .envp = environ, .timeout_ms = timeout_ms,
                        .kill_grace_ms = grace_ms, .log = &log};
    wk_proc_t local;
    if (!proc) { CHECK_EQ(wk_proc_init(&local), 0); proc = &local; }
    x->rc = wk_exec_run(&s, proc, &x->r);
    wk_log_free(&log);
    if (proc == &local) wk_proc_close(&local);
    CHECK(!x->log.bad);
    return x;
}

/* ---- placeholders */

TEST(subst_placeholders) {
    int rc;
    char err[512];
    CHECK_STR(subst("--lr=${params.lr} -e ${params.epochs} ${params.name}", &rc, err), "--lr=0.1 -e 3 churn");
    CHECK_EQ(rc, 0);
    CHECK_STR(subst("${run.id}/${run.pipeline}/${run.version}/${run.date}/${run.trigger}", &rc, err),
              "42/churn/ab12/2026-11-23/manual");
    CHECK_STR(subst("${params.flag} [${params.none}] ${params.list}", &rc, err), "true [] [1,\"a\"]");
    CHECK_STR(subst("in=${tasks.ingest.outputs.dataset}", &rc, err), "in=/cache/9f86");
    /* an upstream output that was not produced is the empty string */
    CHECK_STR(subst("x=${tasks.ingest.outputs.other}.", &rc, err), "x=.");
    CHECK_EQ(rc, 0);
    /* a registry model the scheduler resolved into an input */
    CHECK_STR(subst("m=${models.cancer.production}", &rc, err), "m=/cache/77aa");
    /* $$ is a literal $; a $ not followed by { is kept for the shell */
    CHECK_STR(subst("cost $$5 and $${params.lr} and $HOME $", &rc, err), "cost $5 and ${params.lr} and $HOME $");
    CHECK_EQ(rc, 0);
}

TEST(subst_refuses_unknown) {
    int rc;
    char err[512];
    subst("${params.nope}", &rc, err);
    CHECK_EQ(rc, WEIR_EINVAL);
    CHECK_CONTAINS(err, "no parameter \"nope\"");
    subst("a ${foo} b", &rc, err);
    CHECK_EQ(rc, WEIR_EINVAL);
    CHECK_CONTAINS(err, "unknown placeholder \"${foo}\"");
    subst("${run.owner}", &rc, err);
    CHECK_EQ(rc, WEIR_EINVAL);
    CHECK_CONTAINS(err, "run.owner");
    subst("${tasks.ingest.dataset}", &rc, err);
    CHECK_EQ(rc, WEIR_EINVAL);
    CHECK_CONTAINS(err, "malformed");
    /* a model reference the scheduler could not resolve fails the attempt, saying which */
    subst("${models.cancer.staging}", &rc, err);
    CHECK_EQ(rc, WEIR_EINVAL);
    CHECK_CONTAINS(err, "model cancer has no alias staging in the registry");
    subst("${models.cancer.4}", &rc, err);
    CHECK_CONTAINS(err, "model cancer has no version 4 in the registry");
    subst("${models.cancer}", &rc, err);
    CHECK_CONTAINS(err, "malformed placeholder");
    subst("oops ${params.lr", &rc, err);
    CHECK_EQ(rc, WEIR_EINVAL);
    CHECK_CONTAINS(err, "unterminated");
}

TEST(subst_json_deep) {
    wk_subst_ctx_t c = ctx();
    char err[256] = "";
    json_t *in = J("{\"data\": \"${tasks.ingest.outputs.dataset}\", \"lr\": \"${params.lr}\", \"n\": 5,"
                   " \"hidden\": [\"${params.epochs}\", 64], \"${params.name}\": \"key kept\"}");
    json_t *out = wk_subst_json(&c, in, err, sizeof err);
    CHECK(out);
    CHECK_STR(json_string_value(json_object_get(out, "data")), "/cache/9f86");
    /* a value that is exactly one placeholder keeps the parameter's type (docs/dsl.md) */
    CHECK(json_is_real(json_object_get(out, "lr")) && json_real_value(json_object_get(out, "lr")) == 0.1);
    CHECK_EQ(json_integer_value(json_object_get(out, "n")), 5);
    CHECK(json_is_integer(json_array_get(json_object_get(out, "hidden"), 0)));
    CHECK_EQ(json_integer_value(json_array_get(json_object_get(out, "hidden"), 0)), 3);
    json_t *mixed = J("[\"lr=${params.lr}\", \"${run.id}\", \"${tasks.ingest.outputs.other}\"]");
    json_t *m2 = wk_subst_json(&c, mixed, err, sizeof err);
    CHECK_STR(json_string_value(json_array_get(m2, 0)), "lr=0.1");  /* inside a longer string: text */
    CHECK_EQ(json_integer_value(json_array_get(m2, 1)), 42);
    CHECK_STR(json_string_value(json_array_get(m2, 2)), "");         /* an output not produced */
    json_decref(mixed);
    json_decref(m2);
    CHECK(json_object_get(out, "${params.name}"));
    json_t *bad = J("{\"a\": [\"${params.missing}\"]}");
    CHECK(!wk_subst_json(&c, bad, err, sizeof err));
    CHECK_CONTAINS(err, "missing");
}

/* ---- environment */

TEST(env_build) {
    char *base[] = {"PATH=/usr/bin", "HOME=/root", "WEIR_TASK=stale", "KEEP=1", NULL};
    json_t *params = J("{\"lr\": 0.1, \"data-path\": \"/d\", \"n\": 7}");
    json_t *run = J("{\"id\": 3, \"pipeline\": \"churn\"}");
    json_t *settings = J("{\"b\": 2, \"a\": \"x\"}");
    json_t *inputs = J("{\"ingest.data-set\": \"/cache/1\"}");
    json_t *env = J("{\"HOME\": \"/work\", \"CUDA_VISIBLE_DEVICES\": \"0\"}");
    wk_env_spec_t s = {.base = base, .run = run, .task = "train", .attempt = 2, .output_dir = "/a/out",
                       .metrics_file = "/a/m.json", .params = params, .settings = settings, .inputs = inputs,
                       .env = env};
    char **e = wk_env_build(&s);
    CHECK(e);
    CHECK_STR(wk_env_get(e, "PATH"), "/usr/bin");
    CHECK_STR(wk_env_get(e, "KEEP"), "1");
    CHECK_STR(wk_env_get(e, "WEIR_RUN_ID"), "3");
    CHECK_STR(wk_env_get(e, "WEIR_PIPELINE"), "churn");
    CHECK_STR(wk_env_get(e, "WEIR_TASK"), "train"); /* the worker's own value is replaced */
    CHECK_STR(wk_env_get(e, "WEIR_ATTEMPT"), "2");
    CHECK_STR(wk_env_get(e, "WEIR_OUTPUT_DIR"), "/a/out");
    CHECK_STR(wk_env_get(e, "WEIR_METRICS_FILE"), "/a/m.json");
    CHECK_STR(wk_env_get(e, "WEIR_PARAM_LR"), "0.1");
    CHECK_STR(wk_env_get(e, "WEIR_PARAM_DATA_PATH"), "/d");
    CHECK_STR(wk_env_get(e, "WEIR_PARAM_N"), "7");
    CHECK_STR(wk_env_get(e, "WEIR_SETTINGS"), "{\"a\":\"x\",\"b\":2}");
    CHECK_STR(wk_env_get(e, "WEIR_INPUT_INGEST_DATA_SET"), "/cache/1");
    CHECK_STR(wk_env_get(e, "HOME"), "/work"); /* the task's env wins over the worker's */
    CHECK_STR(wk_env_get(e, "CUDA_VISIBLE_DEVICES"), "0");
    int count = 0;
    for (char **p = e; *p; p++)
        if (!strncmp(*p, "HOME=", 5)) count++;
    CHECK_EQ(count, 1);
    wk_env_free(e);
    /* no settings: an empty object */
    s.settings = NULL;
    e = wk_env_build(&s);
    CHECK_STR(wk_env_get(e, "WEIR_SETTINGS"), "{}");
    wk_env_free(e);
}

/* ---- outputs and metrics */

TEST(output_names) {
    char n[64];
    CHECK_EQ(wk_output_name("model.tar.gz", n, sizeof n), 0);
    CHECK_STR(n, "model");
    CHECK_EQ(wk_output_name("report", n, sizeof n), 0);
    CHECK_STR(n, "report");
    CHECK_EQ(wk_output_name("data_2.csv", n, sizeof n), 0);
    CHECK_STR(n, "data_2");
    CHECK_EQ(wk_output_name(".hidden", n, sizeof n), WEIR_EINVAL);
    CHECK_EQ(wk_output_name("Model.bin", n, sizeof n), WEIR_EINVAL);
    CHECK_EQ(wk_output_name("2model", n, sizeof n), WEIR_EINVAL);
    CHECK_EQ(wk_output_name("my-model.bin", n, sizeof n), WEIR_EINVAL);
}

TEST(collect_outputs) {
    const char *d = tmpdir();
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/model.bin", d); write_file(p, "m");
    snprintf(p, sizeof p, "%s/report.json", d); write_file(p, "{}");
    json_t *decl = J("[\"model\", \"report\"]"), *out = NULL;
    CHECK_EQ(wk_collect_outputs(d, decl, &out, err, sizeof err), 0);
    CHECK_EQ(json_object_size(out), 2);
    snprintf(p, sizeof p, "%s/model.bin", d);
    CHECK_STR(json_string_value(json_object_get(out, "model")), p);
    json_decref(out);
    /* a declared output that is missing fails, naming it */
    json_t *decl2 = J("[\"model\", \"scaler\", \"vocab\"]");
    CHECK_EQ(wk_collect_outputs(d, decl2, &out, err, sizeof err), WEIR_ENOENT);
    CHECK_CONTAINS(err, "\"scaler\", \"vocab\"");
    CHECK(!out);
    /* two files of one name */
    snprintf(p, sizeof p, "%s/model.json", d); write_file(p, "x");
    CHECK_EQ(wk_collect_outputs(d, decl, &out, err, sizeof err), WEIR_EINVAL);
    CHECK_CONTAINS(err, "both name output \"model\"");
    unlink(p);
    /* a subdirectory is refused, not dropped */
    snprintf(p, sizeof p, "%s/dir", d); mkdir(p, 0755);
    CHECK_EQ(wk_collect_outputs(d, decl, &out, err, sizeof err), WEIR_EINVAL);
    CHECK_CONTAINS(err, "not a regular file");
    wk_rmtree(d);
}

TEST(metrics_file) {
    const char *d = tmpdir();
    char p[512], err[512];
    json_t *m = NULL;
    snprintf(p, sizeof p, "%s/metrics.json", d);
    CHECK_EQ(wk_read_metrics(p, &m, err, sizeof err), 0); /* absent: empty */
    CHECK_EQ(json_object_size(m), 0);
    json_decref(m);
    write_file(p, "{\"accuracy\": 0.91, \"n\": 3}");
    CHECK_EQ(wk_read_metrics(p, &m, err, sizeof err), 0);
    CHECK(json_real_value(json_object_get(m, "accuracy")) > 0.9);
    json_decref(m);
    write_file(p, "{\"accuracy\": 0.91,");
    CHECK_EQ(wk_read_metrics(p, &m, err, sizeof err), WEIR_EINVAL);
    CHECK_CONTAINS(err, "metrics file is not valid JSON");
    write_file(p, "[1, 2]");
    CHECK_EQ(wk_read_metrics(p, &m, err, sizeof err), WEIR_EINVAL);
    CHECK_CONTAINS(err, "JSON object");
    write_file(p, "{\"accuracy\": \"high\"}");
    CHECK_EQ(wk_read_metrics(p, &m, err, sizeof err), WEIR_EINVAL);
    CHECK_CONTAINS(err, "\"accuracy\" is not a number");
    wk_rmtree(d);
}

TEST(completion_body) {
    char big[5000];
    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    json_t *c = wk_completion("failed", 2, big, NULL, NULL);
    CHECK_STR(json_string_value(json_object_get(c, "status")), "failed");
    CHECK_EQ(json_integer_value(json_object_get(c, "exit_code")), 2);
    CHECK(strlen(json_string_value(json_object_get(c, "error"))) <= 1024);
    CHECK(json_is_object(json_object_get(c, "metrics")));
    CHECK(json_is_object(json_object_get(c, "outputs")));
    json_decref(c);
}

/* ---- the exec runner */

TEST(exec_exit_status_and_output) {
    const char *argv[] = {"sh", "-c", "echo hello; echo oops >&2; exit 3", NULL};
    run_t *x = run(argv, 0, 0, 1 << 20, NULL);
    CHECK_EQ(x->rc, 0);
    CHECK_EQ(x->r.end, WK_EXEC_EXITED);
    CHECK_EQ(x->r.exit_code, 3);
    CHECK_CONTAINS(x->r.tail, "oops");
    CHECK_CONTAINS(x->r.error, "exited with status 3");
    CHECK_CONTAINS(x->log.text.data, "hello\n");
    CHECK_CONTAINS(x->log.text.data, "oops\n");
    const char *ok[] = {"true", NULL};
    x = run(ok, 0, 0, 1 << 20, NULL);
    CHECK_EQ(x->r.end, WK_EXEC_EXITED);
    CHECK_EQ(x->r.exit_code, 0);
    CHECK_STR(x->r.error, "");
}

TEST(exec_cannot_start) {
    const char *argv[] = {"/nonexistent/weir-no-such-binary", NULL};
    run_t *x = run(argv, 0, 0, 1 << 20, NULL);
    CHECK(x->rc < 0);
    CHECK_EQ(x->r.end, WK_EXEC_START_FAILED);
    CHECK_CONTAINS(x->r.error, "cannot run \"/nonexistent/weir-no-such-binary\"");
}

TEST(exec_timeout_kills_the_group) {
    const char *d = tmpdir();
    char cmd[600], pidfile[300];
    snprintf(pidfile, sizeof pidfile, "%s/bg.pid", d);
    snprintf(cmd, sizeof cmd, "sleep 100 & echo $! > %s; sleep 100", pidfile);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    uint64_t t0 = weir_now_ms();
    run_t *x = run(argv, 300, 0, 1 << 20, NULL);
    uint64_t took = weir_now_ms() - t0;
    CHECK_EQ(x->r.end, WK_EXEC_TIMED_OUT);
    CHECK_CONTAINS(x->r.error, "timed out after 300 ms");
    CHECK(took < 3000);
    pid_t bg = read_pid(pidfile);
    CHECK(bg > 0);
    for (int i = 0; i < 100 && alive(bg); i++) usleep(10000);
    CHECK(!alive(bg));
    wk_rmtree(d);
}

TEST(exec_sigkill_after_grace) {
    const char *d = tmpdir();
    char cmd[600], pidfile[300];
    snprintf(pidfile, sizeof pidfile, "%s/bg.pid", d);
    /* an ignored SIGTERM is inherited by the whole group */
    snprintf(cmd, sizeof cmd, "trap '' TERM; sleep 100 & echo $! > %s; sleep 100", pidfile);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    uint64_t t0 = weir_now_ms();
    run_t *x = run(argv, 200, 300, 1 << 20, NULL);
    uint64_t took = weir_now_ms() - t0;
    CHECK_EQ(x->r.end, WK_EXEC_TIMED_OUT);
    CHECK_CONTAINS(x->r.error, "SIGKILL");
    CHECK(took >= 500 && took < 3000);
    pid_t bg = read_pid(pidfile);
    for (int i = 0; i < 100 && alive(bg); i++) usleep(10000);
    CHECK(bg > 0 && !alive(bg));
    wk_rmtree(d);
}

TEST(exec_leftovers_killed_after_exit) {
    const char *d = tmpdir();
    char cmd[600], pidfile[300];
    snprintf(pidfile, sizeof pidfile, "%s/bg.pid", d);
    snprintf(cmd, sizeof cmd, "sleep 100 & echo $! > %s; echo done", pidfile);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    uint64_t t0 = weir_now_ms();
    run_t *x = run(argv, 0, 0, 1 << 20, NULL);
    CHECK(weir_now_ms() - t0 < 4000);
    CHECK_EQ(x->r.end, WK_EXEC_EXITED);
    CHECK_EQ(x->r.exit_code, 0);
    CHECK_CONTAINS(x->log.text.data, "done");
    pid_t bg = read_pid(pidfile);
    for (int i = 0; i < 100 && alive(bg); i++) usleep(10000);
    CHECK(bg > 0 && !alive(bg));
    wk_rmtree(d);
}

static void *cancel_later(void *arg) {
    usleep(150000);
    wk_proc_cancel(arg, "run cancelled");
    return NULL;
}

TEST(exec_cancel_within_milliseconds) {
    wk_proc_t p;
    CHECK_EQ(wk_proc_init(&p), 0);
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, &p);
    const char *argv[] = {"sh", "-c", "sleep 100 & sleep 100", NULL};
    uint64_t t0 = weir_now_ms();
    run_t *x = run(argv, 0, 0, 1 << 20, &p);
    uint64_t took = weir_now_ms() - t0;
    pthread_join(th, NULL);
    CHECK_EQ(x->r.end, WK_EXEC_CANCELLED);
    CHECK_STR(x->r.error, "run cancelled");
    CHECK(took < 1000);
    /* a cancel before the start: the command never runs */
    const char *argv2[] = {"sh", "-c", "exit 9", NULL};
    x = run(argv2, 0, 0, 1 << 20, &p);
    CHECK_EQ(x->r.end, WK_EXEC_CANCELLED);
    wk_proc_close(&p);
}

/* ---- logs */

TEST(log_cap_keeps_memory_bounded) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long before = ru.ru_maxrss;
    /* 200 MB of output, a 1 MiB cap */
    const char *argv[] = {"sh", "-c", "echo start; head -c 200000000 /dev/zero; echo; echo end", NULL};
    uint64_t t0 = weir_now_ms();
    run_t *x = run(argv, 0, 0, 1 << 20, NULL);
    CHECK(weir_now_ms() - t0 < 20000);
    CHECK_EQ(x->r.end, WK_EXEC_EXITED);
    CHECK_EQ(x->r.exit_code, 0);
    CHECK(x->log.raw_total <= (1 << 20));
    CHECK(x->log.raw_total > (1 << 20) - 200);
    char marker[80];
    snprintf(marker, sizeof marker, "\n[weir: log truncated after %d bytes]\n", (1 << 20) - 96);
    CHECK(x->log.last_len > strlen(marker));
    CHECK(!memcmp(x->log.last_chunk + x->log.last_len - strlen(marker), marker, strlen(marker)));
    CHECK(strstr(x->log.text.data, "start\n") == x->log.text.data);
    CHECK(!memmem(x->log.last_chunk, x->log.last_len, "end", 3));
    CHECK(x->log.chunks >= 4); /* 256 KiB chunks */
    getrusage(RUSAGE_SELF, &ru);
    /* the runner's own memory: a few buffers, not the output (maxrss is in KiB) */
    CHECK(ru.ru_maxrss - before < 32 * 1024);
}

TEST(log_marker_and_flush_timing) {
    collect_t c = {0};
    weir_buf_init(&c.text, 1 << 20);
    wk_log_t l;
    CHECK_EQ(wk_log_init(&l, 300, collect_sink, &c), 0);
    wk_log_write(&l, "abc", 3);
    CHECK_EQ(c.chunks, 0);
    uint64_t now = weir_now_ms();
    CHECK(wk_log_due_in(&l, now) > 0);
    wk_log_tick(&l, now, 0);
    CHECK_EQ(c.chunks, 0);
    wk_log_tick(&l, now + WK_LOG_FLUSH_MS, 0); /* 200 ms later it leaves */
    CHECK_EQ(c.chunks, 1);
    CHECK_STR(c.text.data, "abc");
    CHECK_EQ(wk_log_due_in(&l, now), -1);
    /* past the cap (300 - the marker's reserve): dropped, one marker line */
    char big[1000];
    memset(big, 'x', sizeof big);
    wk_log_write(&l, big, sizeof big);
    wk_log_write(&l, big, sizeof big);
    wk_log_tick(&l, weir_now_ms(), 1);
    CHECK(l.truncated);
    CHECK(c.raw_total <= 300);
    CHECK_CONTAINS(c.text.data, "\n[weir: log truncated after ");
    char *m = strstr(c.text.data, "[weir:");
    CHECK(m && !strstr(m + 1, "[weir:"));
    CHECK_EQ(c.next_seq, 2);
    wk_log_free(&l);
}

TEST(log_stops_when_server_truncates) {
    collect_t c = {0};
    weir_buf_init(&c.text, 1 << 20);
    c.stop_after = 1;
    wk_log_t l;
    CHECK_EQ(wk_log_init(&l, 64 << 20, collect_sink, &c), 0);
    char *big = calloc(1, WK_LOG_CHUNK * 3);
    wk_log_write(&l, big, WK_LOG_CHUNK * 3);
    wk_log_tick(&l, weir_now_ms(), 1);
    CHECK_EQ(c.chunks, 1);
    CHECK(l.stopped);
    free(big);
    wk_log_free(&l);
}

/* ---- zlib */

static size_t zip(const void *data, size_t n, unsigned char **out) {
    uLongf zl = compressBound((uLong)n);
    *out = malloc(zl);
    CHECK(compress2(*out, &zl, data, (uLong)n, 6) == Z_OK);
    return zl;
}

TEST(inflate_capped) {
    size_t n = 100000;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (char)(i * 7 % 251);
    char want[65], got[65];
    weir_sha256_hex(data, n, want);
    unsigned char *z;
    size_t zl = zip(data, n, &z);
    int64_t size;
    /* exact cap, fed in small pieces */
    wk_inflate_t *f = wk_inflate_new(NULL, (int64_t)n);
    for (size_t i = 0; i < zl; i += 333) CHECK_EQ(wk_inflate_feed(f, z + i, zl - i < 333 ? zl - i : 333), 0);
    CHECK_EQ(wk_inflate_finish(f, got, &size), 0);
    CHECK_STR(got, want);
    CHECK_EQ(size, (int64_t)n);
    wk_inflate_free(f);
    /* one byte less than it inflates to: refused */
    f = wk_inflate_new(NULL, (int64_t)n - 1);
    CHECK_EQ(wk_inflate_feed(f, z, zl), WEIR_ELIMIT);
    CHECK_EQ(wk_inflate_finish(f, got, &size), WEIR_ELIMIT);
    wk_inflate_free(f);
    /* a truncated stream */
    f = wk_inflate_new(NULL, (int64_t)n);
    CHECK_EQ(wk_inflate_feed(f, z, zl / 2), 0);
    CHECK_EQ(wk_inflate_finish(f, got, &size), WEIR_EINVAL);
    wk_inflate_free(f);
    /* not zlib */
    f = wk_inflate_new(NULL, (int64_t)n);
    CHECK_EQ(wk_inflate_feed(f, "this is not zlib at all", 23), WEIR_EINVAL);
    wk_inflate_free(f);
    /* a bomb: 64 MiB of zeros against a 1 MiB cap stops early */
    size_t bn = (size_t)64 << 20;
    char *zeros = calloc(1, bn);
    unsigned char *bz;
    size_t bzl = zip(zeros, bn, &bz);
    free(zeros);
    f = wk_inflate_new(NULL, 1 << 20);
    CHECK_EQ(wk_inflate_feed(f, bz, bzl), WEIR_ELIMIT);
    wk_inflate_free(f);
}

TEST(deflate_file_round_trip) {
    const char *d = tmpdir();
    char in[300], zp[300];
    snprintf(in, sizeof in, "%s/model.bin", d);
    snprintf(zp, sizeof zp, "%s/model.z", d);
    FILE *fp = fopen(in, "wb");
    for (int i = 0; i < 300000; i++) fputc(i % 13, fp);
    fclose(fp);
    char *text;
    size_t len;
    CHECK_EQ(weir_read_file(in, 1 << 20, &text, &len), 0);
    char want[65], sha[65], got[65], err[256];
    weir_sha256_hex(text, len, want);
    int64_t size, zsize, isize;
    CHECK_EQ(wk_deflate_file(in, zp, sha, &size, &zsize, err, sizeof err), 0);
    CHECK_STR(sha, want);
    CHECK_EQ(size, 300000);
    char *z;
    size_t zl;
    CHECK_EQ(weir_read_file(zp, 1 << 20, &z, &zl), 0);
    CHECK_EQ((int64_t)zl, zsize);
    wk_inflate_t *f = wk_inflate_new(NULL, size);
    CHECK_EQ(wk_inflate_feed(f, z, zl), 0);
    CHECK_EQ(wk_inflate_finish(f, got, &isize), 0);
    CHECK_STR(got, want);
    wk_inflate_free(f);
    wk_rmtree(d);
    struct stat st;
    CHECK(stat(d, &st) != 0);
}

/* ---- failover over real sockets */

static int listen_any(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(!bind(fd, (struct sockaddr *)&a, sizeof a));
    CHECK(!listen(fd, 4));
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

static void *serve_once(void *arg) {
    int lfd = *(int *)arg;
    int c = accept(lfd, NULL, NULL);
    char buf[4096];
    ssize_t n = read(c, buf, sizeof buf);
    (void)n;
    const char *ans = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                      "Connection: close\r\n\r\n{\"ok\":true}";
    ssize_t w = write(c, ans, strlen(ans));
    (void)w;
    close(c);
    return NULL;
}

TEST(http_failover_to_next_url) {
    int dead_port, live_port;
    int dead = listen_any(&dead_port);
    close(dead); /* nothing listens there now */
    int live = listen_any(&live_port);
    pthread_t th;
    pthread_create(&th, NULL, serve_once, &live);
    char u1[64], u2[64];
    snprintf(u1, sizeof u1, "http://127.0.0.1:%d", dead_port);
    snprintf(u2, sizeof u2, "http://127.0.0.1:%d", live_port);
    char *urls[] = {u1, u2};
    wk_sched_t s = {.urls = urls, .nurls = 2};
    wk_http_t h;
    CHECK_EQ(wk_http_init(&h, &s), 0);
    json_t *body = J("{\"x\": 1}");
    wk_req_t req = {.method = "POST", .path = "/v1/workers", .json = body, .timeout_ms = 5000};
    wk_resp_t res;
    CHECK_EQ(wk_http_call(&h, &req, &res), 0);
    CHECK_EQ(res.status, 200);
    CHECK(json_is_true(json_object_get(res.json, "ok")));
    CHECK_EQ(atomic_load(&s.current), 1); /* every thread now starts with the live one */
    wk_resp_free(&res);
    pthread_join(th, NULL);
    /* both gone: unavailable, with the reason */
    close(live);
    CHECK_EQ(wk_http_call(&h, &req, &res), WEIR_EUNAVAIL);
    CHECK_CONTAINS(res.error, "cannot reach the scheduler");
    wk_http_close(&h);
}

/* A file of n bytes whose mtime is `age` seconds ago. */
static void cache_file(const char *dir, const char *name, size_t n, time_t age) {
    char path[512], *data = calloc(1, n + 1);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    memset(data, 'x', n);
    write_file(path, data);
    free(data);
    struct timespec ts[2] = {{time(NULL) - age, 0}, {time(NULL) - age, 0}};
    CHECK_EQ(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static int cached(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

TEST(cache_trim_least_recently_used_first) {
    /* four artifacts of 100 bytes, used 40, 30, 20 and 10 minutes ago; the oldest is pinned (an
     * attempt holds it); a download a crash left two hours ago, one in progress, a stray file */
    const char *dir = tmpdir();
    char sha[4][65];
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 64; k++) sha[i][k] = "0123456789abcdef"[(i * 7 + k) % 16];
        sha[i][64] = '\0';
        cache_file(dir, sha[i], 100, (time_t)(40 - 10 * i) * 60);
    }
    cache_file(dir, ".tmp-old-1-1", 50, 7200);
    cache_file(dir, ".tmp-new-1-2", 50, 1);
    cache_file(dir, "notes.txt", 5000, 7200);
    const char *pins[] = {sha[0]};
    /* 400 bytes over a 250-byte cap: the two oldest unpinned go, the pinned one stays */
    CHECK_EQ(wk_cache_trim(dir, 250, pins, 1), 200);
    CHECK(cached(dir, sha[0]) && !cached(dir, sha[1]) && !cached(dir, sha[2]) && cached(dir, sha[3]));
    CHECK(!cached(dir, ".tmp-old-1-1") && cached(dir, ".tmp-new-1-2") && cached(dir, "notes.txt"));
    /* under the cap: nothing goes */
    CHECK_EQ(wk_cache_trim(dir, 1000, pins, 1), 200);
    CHECK(cached(dir, sha[3]));
    /* a cap of 0 keeps only what is pinned, and says it is still over */
    CHECK_EQ(wk_cache_trim(dir, 0, pins, 1), 100);
    CHECK(cached(dir, sha[0]) && !cached(dir, sha[3]));
    CHECK_EQ(wk_cache_trim("/nonexistent/weir-cache", 0, NULL, 0), -1);
    wk_rmtree(dir);
    /* an empty cache (the first download's trim finds only what is pinned) */
    dir = tmpdir();
    CHECK_EQ(wk_cache_trim(dir, 0, NULL, 0), 0);
    wk_rmtree(dir);
}

UNIT_MAIN(worker, CASE(cache_trim_least_recently_used_first), CASE(subst_placeholders), CASE(subst_refuses_unknown), CASE(subst_json_deep), CASE(env_build),
          CASE(output_names), CASE(collect_outputs), CASE(metrics_file), CASE(completion_body),
          CASE(exec_exit_status_and_output), CASE(exec_cannot_start), CASE(exec_timeout_kills_the_group),
          CASE(exec_sigkill_after_grace), CASE(exec_leftovers_killed_after_exit), CASE(exec_cancel_within_milliseconds),
          CASE(log_cap_keeps_memory_bounded), CASE(log_marker_and_flush_timing), CASE(log_stops_when_server_truncates),
          CASE(inflate_capped), CASE(deflate_file_round_trip), CASE(http_failover_to_next_url))
