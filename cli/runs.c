/* runs.c — the operator commands for runs: trigger, runs, run cancel|retry (show and watch are
 * in runshow.c), logs, approve, reject, workers. Thin clients of the scheduler's /v1/runs and
 * /v1/workers routes (docs/api.md, "Runs"): they never decide anything the scheduler decides,
 * they only poll it (--wait, watch, logs -f) and draw what it answers. */
#include "cli/runs.h"
#include "common/error.h"
#include "common/util.h"

#include <ctype.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- shared helpers (runs.h) ---------------------------------------------------------------- */

int cli_run_ended(const char *state) {
    return state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") || !strcmp(state, "cancelled"));
}

int cli_task_finished(const char *state) {
    static const char *const done[] = {"succeeded", "failed", "skipped", "cancelled", "blessed", "rejected"};
    for (size_t i = 0; state && i < sizeof done / sizeof done[0]; i++)
        if (!strcmp(state, done[i])) return 1;
    return 0;
}

int64_t cli_run_id(const char *cmd, const char *arg) {
    const char *p = arg[0] == '#' ? arg + 1 : arg;
    if (*p && strlen(p) <= 18 && strspn(p, "0123456789") == strlen(p)) {
        int64_t id = strtoll(p, NULL, 10);
        if (id > 0) return id;
    }
    fprintf(stderr, "weir %s: \"%s\" is not a run id: runs are named by their number (see `weir runs`)\n", cmd, arg);
    return -1;
}

int cli_name_ok(const char *cmd, const char *what, const char *s) {
    size_t n = strlen(s);
    if (n && n <= 63 && islower((unsigned char)s[0]) &&
        strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-_") == n)
        return 1;
    fprintf(stderr, "weir %s: \"%s\" is not a %s name (lowercase letters, digits, - and _, starting with a letter)\n",
            cmd, s, what);
    return 0;
}

int64_t cli_iso_ms(const char *iso) {
    int y, mo, d, h, mi, n = 0;
    double sec;
    if (!iso || sscanf(iso, "%4d-%2d-%2d%*1[T ]%2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6) return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    int64_t ms = (int64_t)timegm(&tm) * 1000 + (int64_t)(sec * 1000.0 + 0.5);
    const char *z = iso + n;
    int oh = 0, om = 0;
    if ((*z == '+' || *z == '-') && sscanf(z + 1, "%2d:%2d", &oh, &om) >= 1)
        ms -= (*z == '+' ? 1 : -1) * ((int64_t)oh * 3600 + om * 60) * 1000;
    return ms;
}

int64_t cli_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *cli_duration(int64_t ms, char *buf, size_t size) {
    if (ms < 0) snprintf(buf, size, "-");
    else if (ms < 1000) snprintf(buf, size, "%lldms", (long long)ms);
    else if (ms < 10000) snprintf(buf, size, "%.1fs", (double)ms / 1000.0);
    else if (ms < 60000) snprintf(buf, size, "%llds", (long long)(ms / 1000));
    else if (ms < 3600000) snprintf(buf, size, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else if (ms < 86400000)
        snprintf(buf, size, "%lldh%02lldm", (long long)(ms / 3600000), (long long)(ms / 60000 % 60));
    else snprintf(buf, size, "%lldd%02lldh", (long long)(ms / 86400000), (long long)(ms / 3600000 % 24));
    return buf;
}

int64_t cli_elapsed_ms(const json_t *obj) {
    json_t *d = json_object_get(obj, "duration_ms");
    if (json_is_integer(d)) return json_integer_value(d);
    if (json_is_real(d)) return (int64_t)json_real_value(d);
    int64_t start = cli_iso_ms(json_string_value(json_object_get(obj, "started_at")));
    if (start < 0) return -1;
    int64_t end = cli_iso_ms(json_string_value(json_object_get(obj, "finished_at")));
    int64_t ms = (end < 0 ? cli_wall_ms() : end) - start;
    return ms < 0 ? 0 : ms; /* the clocks of client and database differ a little */
}

const char *cli_field(const json_t *obj, const char *key, char *buf, size_t size) {
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_integer(v)) { snprintf(buf, size, "%lld", (long long)json_integer_value(v)); return buf; }
    if (json_is_real(v)) { snprintf(buf, size, "%g", json_real_value(v)); return buf; }
    if (json_is_boolean(v)) return json_is_true(v) ? "true" : "false";
    return NULL;
}

int cli_get_run(const weir_config_t *c, int64_t id, weir_response_t *res) {
    char path[64];
    snprintf(path, sizeof path, "/v1/runs/%lld", (long long)id);
    return cli_call(c, "GET", path, NULL, res);
}

int cli_common_flag(int opt, weir_config_t *cfg, int *json, int *rc) {
    switch (opt) {
    case CLI_OPT_URL: snprintf(cfg->url, sizeof cfg->url, "%s", optarg); return 1;
    case CLI_OPT_TOKEN: snprintf(cfg->token, sizeof cfg->token, "%s", optarg); return 1;
    case 'o':
        if (cli_output_format(optarg, json)) *rc = WEIR_EXIT_USAGE;
        return 1;
    default: return 0;
    }
}

void cli_print_json(const json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2));
    printf("%s\n", s ? s : "null");
    free(s);
}

void cli_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int cli_poll_run(const weir_config_t *c, int64_t id, weir_response_t *res, int64_t *since) {
    char path[64];
    snprintf(path, sizeof path, "/v1/runs/%lld", (long long)id);
    int crc = weir_client_call(c, "GET", path, NULL, res);
    if (!crc && res->status >= 200 && res->status < 300) { *since = -1; return 0; }
    weir_response_free(res);
    if (crc || res->status == 503) {
        /* a scheduler restart or a database failover should not end a wait of hours */
        int64_t now = cli_wall_ms();
        if (*since < 0) *since = now;
        if (now - *since <= CLI_UNREACHABLE_GRACE_MS) return CLI_RETRY;
    }
    return cli_get_run(c, id, res); /* once more, saying why it fails */
}

/* The getopt loop every command runs: common flags, --help, and a usage error for the rest.
 * Returns the option for the command to handle, -1 at the end, or -2 with *rc to return. */
int cli_next_flag(int argc, char **argv, const char *shortopts, const struct option *opts, const char *usage,
                  weir_config_t *cfg, int *json, int *rc) {
    for (;;) {
        int opt = getopt_long(argc, argv, shortopts, opts, NULL);
        if (opt == -1) return -1;
        if (opt == 'h') { fputs(usage, stdout); *rc = WEIR_EXIT_OK; return -2; }
        if (opt == '?' || opt == ':') { fputs(usage, stderr); *rc = WEIR_EXIT_USAGE; return -2; }
        if (cli_common_flag(opt, cfg, json, rc)) {
            if (*rc) return -2;
            continue;
        }
        return opt;
    }
}

/* Finds task name in a run's tasks; on a miss prints the run's closest task name. */
static json_t *find_task(const json_t *run, const char *name, int complain) {
    json_t *tasks = json_object_get(run, "tasks"), *t;
    size_t i;
    json_array_foreach(tasks, i, t)
        if (!strcmp(json_string_value(json_object_get(t, "name")) ?: "", name)) return t;
    if (complain) {
        size_t n = json_array_size(tasks);
        const char **names = calloc(n ? n : 1, sizeof *names);
        json_array_foreach(tasks, i, t) names[i] = json_string_value(json_object_get(t, "name")) ?: "";
        char hint[160];
        const char *dym = weir_did_you_mean(name, strlen(name), names, n, hint, sizeof hint);
        fprintf(stderr, "weir: run %lld has no task \"%s\"%s", (long long)json_integer_value(json_object_get(run, "id")),
                name, dym);
        if (!*dym && n) {
            fprintf(stderr, " (its tasks: ");
            for (size_t k = 0; k < n && k < 12; k++) fprintf(stderr, "%s%s", k ? ", " : "", names[k]);
            fprintf(stderr, "%s)", n > 12 ? ", …" : "");
        }
        fputc('\n', stderr);
        free(names);
    }
    return NULL;
}

/* After a 404 from a task route: says whether the run or the task is missing (the server's message
 * already went out); returns the exit code. */
static int explain_missing_task(const weir_config_t *cfg, int64_t id, const char *task) {
    weir_response_t res;
    int rc = cli_get_run(cfg, id, &res);
    if (!rc) find_task(res.json, task, 1);
    weir_response_free(&res);
    return WEIR_EXIT_NOTFOUND;
}

/* Polls the run until it ends; prints state changes unless quiet. The final GET's answer is left
 * in *last (caller frees). Returns the exit code: 0 succeeded, 1 failed or cancelled, 3, 4. */
static int wait_for_run(const weir_config_t *cfg, int64_t id, const char *initial, int quiet, int64_t timeout_ms,
                        weir_response_t *last) {
    int64_t deadline = timeout_ms > 0 ? cli_wall_ms() + timeout_ms : -1;
    char prev[32];
    int64_t since = -1;
    snprintf(prev, sizeof prev, "%s", initial ? initial : "");
    memset(last, 0, sizeof *last);
    for (;;) {
        weir_response_free(last);
        int rc = cli_poll_run(cfg, id, last, &since);
        if (rc == CLI_RETRY) { cli_sleep_ms(1000); continue; }
        if (rc) return rc;
        const char *state = json_string_value(json_object_get(last->json, "state")) ?: "?";
        if (!quiet && strcmp(prev, state)) {
            char d[32];
            if (cli_run_ended(state))
                printf("run %lld %s after %s\n", (long long)id, state,
                       cli_duration(cli_elapsed_ms(last->json), d, sizeof d));
            else printf("run %lld %s\n", (long long)id, state);
            fflush(stdout);
        }
        snprintf(prev, sizeof prev, "%s", state);
        if (cli_run_ended(state)) return strcmp(state, "succeeded") ? WEIR_EXIT_FAIL : WEIR_EXIT_OK;
        if (deadline >= 0 && cli_wall_ms() >= deadline) {
            char d[32];
            fprintf(stderr, "weir: run %lld is still %s after %s; stopped waiting (the run goes on)\n", (long long)id,
                    state, cli_duration(timeout_ms, d, sizeof d));
            return WEIR_EXIT_FAIL;
        }
        cli_sleep_ms(CLI_WAIT_POLL_MS);
    }
}

/* After a run that did not succeed: its reason and the tasks that failed, for people. */
static void print_failures(const json_t *run) {
    const char *reason = json_string_value(json_object_get(run, "reason"));
    if (reason && *reason) printf("  reason: %s\n", reason);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(run, "tasks"), i, t) {
        const char *st = json_string_value(json_object_get(t, "state")) ?: "";
        if (strcmp(st, "failed") && strcmp(st, "rejected")) continue;
        const char *err = json_string_value(json_object_get(t, "error"));
        printf("  %s %s%s%.*s\n", json_string_value(json_object_get(t, "name")) ?: "?", st, err && *err ? ": " : "",
               err ? (int)strcspn(err, "\n") : 0, err ? err : "");
    }
    printf("  see `weir run show %lld` and `weir logs %lld TASK`\n", (long long)json_integer_value(json_object_get(run, "id")),
           (long long)json_integer_value(json_object_get(run, "id")));
}

/* ---- weir trigger ------------------------------------------------------------------------- */

int weir_cmd_trigger(int argc, char **argv) {
    const char *usage =
        "usage: weir trigger PIPELINE [-p NAME=VALUE]... [--wait [--timeout DURATION]] [-o json]\n\n"
        "Starts a run of the pipeline's current version. Parameters are sent as text; the\n"
        "scheduler converts each to its declared type and names any that is unknown, mistyped\n"
        "or missing. Prints the run's number and state.\n\n"
        "  -p, --param NAME=VALUE a parameter (repeat for more)\n"
        "  --wait                 wait for the run to end; exit 0 if it succeeded, 1 if not\n"
        "  --timeout DURATION     with --wait: give up after this long (e.g. 30m), exit 1\n" COMMON_HELP;
    enum { OPT_WAIT = CLI_OPT_FIRST_FREE, OPT_TIMEOUT };
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"param", required_argument, NULL, 'p'},
                                         {"wait", no_argument, NULL, OPT_WAIT},
                                         {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                         {0, 0, 0, 0}};
    weir_config_t cfg = {0};
    int json = 0, rc = 0, wait = 0, opt;
    int64_t timeout_ms = 0;
    json_t *params = json_object();
    optind = 1;
    while ((opt = cli_next_flag(argc, argv, "o:p:h", opts, usage, &cfg, &json, &rc)) != -1) {
        if (opt == -2) goto out;
        if (opt == OPT_WAIT) wait = 1;
        else if (opt == OPT_TIMEOUT) {
            if (weir_parse_duration(optarg, &timeout_ms) || timeout_ms <= 0) {
                fprintf(stderr, "weir trigger: --timeout \"%s\" is not a duration (e.g. 90s, 30m, 2h)\n", optarg);
                rc = WEIR_EXIT_USAGE;
                goto out;
            }
        } else if (opt == 'p') {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "weir trigger: -p \"%s\": write NAME=VALUE\n", optarg);
                rc = WEIR_EXIT_USAGE;
                goto out;
            }
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(eq - optarg), optarg);
            if (json_object_get(params, name)) {
                fprintf(stderr, "weir trigger: parameter \"%s\" given twice\n", name);
                rc = WEIR_EXIT_USAGE;
                goto out;
            }
            json_t *v = json_string(eq + 1);
            if (!v) {
                fprintf(stderr, "weir trigger: parameter \"%s\": the value is not valid UTF-8\n", name);
                rc = WEIR_EXIT_USAGE;
                goto out;
            }
            json_object_set_new(params, name, v);
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, optind >= argc ? "weir trigger: name the pipeline to run\n%s"
                                       : "weir trigger: give one pipeline name\n%s", usage);
        rc = WEIR_EXIT_USAGE;
        goto out;
    }
    if (timeout_ms && !wait) {
        fprintf(stderr, "weir trigger: --timeout applies only with --wait\n");
        rc = WEIR_EXIT_USAGE;
        goto out;
    }
    const char *pipeline = argv[optind];
    if (!cli_name_ok("trigger", "pipeline", pipeline)) { rc = WEIR_EXIT_USAGE; goto out; }
    weir_config_load(&cfg);

    char path[128];
    snprintf(path, sizeof path, "/v1/pipelines/%s/runs", pipeline);
    json_t *body = json_pack("{s:O, s:s}", "params", params, "trigger", "manual"); /* a person, not a program */
    weir_response_t res;
    rc = cli_call(&cfg, "POST", path, body, &res);
    json_decref(body);
    if (rc) { weir_response_free(&res); goto out; }
    int64_t id = json_integer_value(json_object_get(res.json, "run"));
    char state0[32];
    snprintf(state0, sizeof state0, "%s", json_string_value(json_object_get(res.json, "state")) ?: "");
    if (!wait || !json) {
        if (json) cli_print_json(res.json);
        else {
            char seq[32];
            printf("run %lld of %s (version %s, %lld tasks): %s\n", (long long)id, pipeline,
                   cli_field(res.json, "seq", seq, sizeof seq) ?: "?",
                   (long long)json_integer_value(json_object_get(res.json, "tasks")),
                   json_string_value(json_object_get(res.json, "state")) ?: "?");
            if (!wait) printf("follow it with `weir run watch %lld`\n", (long long)id);
        }
    }
    weir_response_free(&res);
    if (!wait) goto out;
    if (id <= 0) {
        fprintf(stderr, "weir trigger: the scheduler's answer has no run number; cannot wait\n");
        rc = WEIR_EXIT_FAIL;
        goto out;
    }
    weir_response_t last;
    rc = wait_for_run(&cfg, id, state0, json, timeout_ms, &last);
    if (json && last.json) cli_print_json(last.json);
    else if (rc == WEIR_EXIT_FAIL && last.json && cli_run_ended(json_string_value(json_object_get(last.json, "state"))))
        print_failures(last.json);
    weir_response_free(&last);
out:
    json_decref(params);
    return rc;
}

/* ---- weir runs ---------------------------------------------------------------------------- */

int weir_cmd_runs(int argc, char **argv) {
    const char *usage = "usage: weir runs [--pipeline P] [--state S] [--limit N] [-o json]\n\n"
                        "Lists runs, newest first.\n\n"
                        "  --pipeline P           only runs of pipeline P\n"
                        "  --state S              only runs in state S (queued, running, succeeded, failed, cancelled)\n"
                        "  --limit N              at most N runs (default 50, at most 1000)\n" COMMON_HELP;
    enum { OPT_PIPELINE = CLI_OPT_FIRST_FREE, OPT_STATE, OPT_LIMIT };
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"pipeline", required_argument, NULL, OPT_PIPELINE},
                                         {"state", required_argument, NULL, OPT_STATE},
                                         {"limit", required_argument, NULL, OPT_LIMIT},
                                         {0, 0, 0, 0}};
    weir_config_t cfg = {0};
    int json = 0, rc = 0, opt;
    const char *pipeline = NULL, *state = NULL;
    long limit = 0;
    optind = 1;
    while ((opt = cli_next_flag(argc, argv, "o:h", opts, usage, &cfg, &json, &rc)) != -1) {
        if (opt == -2) return rc;
        if (opt == OPT_PIPELINE) pipeline = optarg;
        else if (opt == OPT_STATE) state = optarg;
        else if (opt == OPT_LIMIT) {
            char *end;
            limit = strtol(optarg, &end, 10);
            if (*end || end == optarg || limit < 1 || limit > 1000) {
                fprintf(stderr, "weir runs: --limit \"%s\" must be a number from 1 to 1000\n", optarg);
                return WEIR_EXIT_USAGE;
            }
        }
    }
    if (optind < argc) { fprintf(stderr, "weir runs: unexpected argument \"%s\"\n%s", argv[optind], usage); return 2; }
    if (pipeline && !cli_name_ok("runs", "pipeline", pipeline)) return WEIR_EXIT_USAGE;
    if (state && (!*state || strspn(state, "abcdefghijklmnopqrstuvwxyz_") != strlen(state) || strlen(state) > 32)) {
        fprintf(stderr, "weir runs: \"%s\" is not a run state (queued, running, succeeded, failed, cancelled)\n", state);
        return WEIR_EXIT_USAGE;
    }
    weir_config_load(&cfg);
    char path[256];
    int n = snprintf(path, sizeof path, "/v1/runs");
    const char *sep = "?";
    if (pipeline) { n += snprintf(path + n, sizeof path - (size_t)n, "%spipeline=%s", sep, pipeline); sep = "&"; }
    if (state) { n += snprintf(path + n, sizeof path - (size_t)n, "%sstate=%s", sep, state); sep = "&"; }
    /* always sent: the documented default is 50, but naming it costs nothing */
    snprintf(path + n, sizeof path - (size_t)n, "%slimit=%ld", sep, limit ? limit : 50);

    weir_response_t res;
    if ((rc = cli_call(&cfg, "GET", path, NULL, &res))) { weir_response_free(&res); return rc; }
    json_t *list = json_object_get(res.json, "runs");
    if (json) cli_print_json(list);
    else if (json_array_size(list) == 0) {
        printf(pipeline || state ? "no runs match\n" : "no runs yet: start one with `weir trigger PIPELINE`\n");
    } else {
        cli_table_t t;
        cli_table_init(&t, 8);
        cli_table_row(&t, "RUN", "PIPELINE", "VERSION", "STATE", "TRIGGER", "TASKS", "STARTED", "DURATION");
        size_t i;
        json_t *r;
        json_array_foreach(list, i, r) {
            char id[32], seq[32], tasks[64], when[32], dur[32], tb[32];
            cli_field(r, "id", id, sizeof id);
            long long failed = json_integer_value(json_object_get(r, "tasks_failed"));
            snprintf(tasks, sizeof tasks, "%lld/%lld%s", (long long)json_integer_value(json_object_get(r, "tasks_done")),
                     (long long)json_integer_value(json_object_get(r, "tasks_total")), failed ? ", " : "");
            if (failed) snprintf(tasks + strlen(tasks), sizeof tasks - strlen(tasks), "%lld failed", failed);
            const char *started = json_string_value(json_object_get(r, "started_at"));
            cli_table_row(&t, id, json_string_value(json_object_get(r, "pipeline")), cli_field(r, "seq", seq, sizeof seq),
                          json_string_value(json_object_get(r, "state")), cli_field(r, "trigger", tb, sizeof tb), tasks,
                          started ? cli_time(started, when, sizeof when) : NULL,
                          started ? cli_duration(cli_elapsed_ms(r), dur, sizeof dur) : NULL);
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
    }
    weir_response_free(&res);
    return 0;
}

/* ---- weir run cancel|retry ---------------------------------------------------------------- */

/* How many tasks an answer's field counts: a number, or a list of names. */
static long long count_of(const json_t *v) {
    return json_is_array(v) ? (long long)json_array_size(v) : (long long)json_integer_value(v);
}

/* ", a, b, c" for a list of names (at most 8, then "…"), "" otherwise. */
static void names_of(const json_t *v, char *buf, size_t size) {
    buf[0] = '\0';
    if (!json_is_array(v) || !json_array_size(v)) return;
    size_t i, n = 0;
    json_t *e;
    n += (size_t)snprintf(buf, size, ":");
    json_array_foreach(v, i, e) {
        if (n >= size) break;
        if (i == 8) { snprintf(buf + n, size - n, " …"); break; }
        const char *s = json_string_value(e);
        if (!s && json_is_object(e)) s = json_string_value(json_object_get(e, "name"));
        n += (size_t)snprintf(buf + n, size - n, "%s %s", i ? "," : "", s ? s : "?");
    }
}

/* "RUN [--task TASK]" and the common flags, for run cancel and run retry: -1 to go on (the
 * configuration loaded), else the exit code. */
static int run_task_args(int argc, char **argv, const char *cmd, const char *usage, weir_config_t *cfg, int *json,
                         const char **task, int64_t *id) {
    enum { OPT_TASK = CLI_OPT_FIRST_FREE };
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {"task", required_argument, NULL, OPT_TASK}, {0, 0, 0, 0}};
    int rc = 0, opt;
    *task = NULL;
    optind = 1;
    while ((opt = cli_next_flag(argc, argv, "o:h", opts, usage, cfg, json, &rc)) != -1) {
        if (opt == -2) return rc;
        if (opt == OPT_TASK) *task = optarg;
    }
    if (optind != argc - 1) { fprintf(stderr, "weir %s: give one run\n%s", cmd, usage); return WEIR_EXIT_USAGE; }
    *id = cli_run_id(cmd, argv[optind]);
    if (*id < 0 || (*task && !cli_name_ok(cmd, "task", *task))) return WEIR_EXIT_USAGE;
    weir_config_load(cfg);
    return -1;
}

static int run_cancel(int argc, char **argv) {
    const char *usage = "usage: weir run cancel RUN [--task TASK] [-o json]\n\n"
                        "Cancels a run: its unfinished tasks are cancelled and running steps are killed.\n"
                        "With --task, cancels only that task (what depends on it follows its trigger rules).\n\n"
                        "  --task TASK            cancel one task, not the run\n" COMMON_HELP;
    weir_config_t cfg = {0};
    int json = 0;
    const char *task;
    int64_t id;
    int rc = run_task_args(argc, argv, "run cancel", usage, &cfg, &json, &task, &id);
    if (rc >= 0) return rc;
    char path[160];
    if (task) snprintf(path, sizeof path, "/v1/runs/%lld/tasks/%s/cancel", (long long)id, task);
    else snprintf(path, sizeof path, "/v1/runs/%lld/cancel", (long long)id);
    weir_response_t res;
    json_t *body = json_object();
    rc = cli_call(&cfg, "POST", path, body, &res);
    json_decref(body);
    if (rc == WEIR_EXIT_NOTFOUND && task) explain_missing_task(&cfg, id, task);
    if (!rc) {
        if (json) cli_print_json(res.json);
        else if (task)
            printf("task %s of run %lld: %s\n", task, (long long)id,
                   json_string_value(json_object_get(res.json, "state")) ?: "?");
        else {
            char names[512];
            json_t *c = json_object_get(res.json, "cancelled");
            names_of(c, names, sizeof names);
            printf("run %lld: %s (%lld task%s cancelled%s)\n", (long long)id,
                   json_string_value(json_object_get(res.json, "state")) ?: "?", count_of(c), count_of(c) == 1 ? "" : "s",
                   names);
        }
    }
    weir_response_free(&res);
    return rc;
}

static int run_retry(int argc, char **argv) {
    const char *usage = "usage: weir run retry RUN [--task TASK] [-o json]\n\n"
                        "Runs an ended run's failed, skipped, rejected and cancelled tasks again, keeping\n"
                        "what succeeded. With --task, re-runs that task and everything that depends on it.\n"
                        "Refused while the run is still active.\n\n"
                        "  --task TASK            re-run this task and its dependents\n" COMMON_HELP;
    weir_config_t cfg = {0};
    int json = 0;
    const char *task;
    int64_t id;
    int rc = run_task_args(argc, argv, "run retry", usage, &cfg, &json, &task, &id);
    if (rc >= 0) return rc;
    char path[64];
    snprintf(path, sizeof path, "/v1/runs/%lld/retry", (long long)id);
    json_t *body = task ? json_pack("{s:s}", "task", task) : json_object();
    weir_response_t res;
    rc = cli_call(&cfg, "POST", path, body, &res);
    json_decref(body);
    /* a 404 naming the task (not the run) deserves the run's task names */
    if (rc == WEIR_EXIT_NOTFOUND && task) explain_missing_task(&cfg, id, task);
    if (!rc) {
        if (json) cli_print_json(res.json);
        else {
            char names[512];
            json_t *r = json_object_get(res.json, "reset");
            names_of(r, names, sizeof names);
            printf("run %lld: %s again (%lld task%s reset%s)\nfollow it with `weir run watch %lld`\n", (long long)id,
                   json_string_value(json_object_get(res.json, "state")) ?: "?", count_of(r), count_of(r) == 1 ? "" : "s",
                   names, (long long)id);
        }
    }
    weir_response_free(&res);
    return rc;
}

int weir_cmd_run(int argc, char **argv) {
    const char *usage = "usage: weir run VERB RUN [FLAGS]    (weir run VERB --help for details)\n\n"
                        "  show RUN               the run and its tasks as a tree\n"
                        "  watch RUN              show, redrawn until the run ends (exit 0 if it succeeded)\n"
                        "  cancel RUN [--task T]  cancel the run, or one task\n"
                        "  retry RUN [--task T]   re-run what failed, or one task and its dependents\n";
    if (argc < 2 || ((!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? WEIR_EXIT_USAGE : WEIR_EXIT_OK;
    }
    if (!strcmp(argv[1], "show") || !strcmp(argv[1], "get")) return cli_run_show(argc - 1, argv + 1);
    if (!strcmp(argv[1], "watch")) return cli_run_watch(argc - 1, argv + 1);
    if (!strcmp(argv[1], "cancel")) return run_cancel(argc - 1, argv + 1);
    if (!strcmp(argv[1], "retry")) return run_retry(argc - 1, argv + 1);
    static const char *const verbs[] = {"show", "watch", "cancel", "retry"};
    char hint[128];
    fprintf(stderr, "weir run: unknown verb \"%s\"%s\n%s", argv[1],
            weir_did_you_mean(argv[1], strlen(argv[1]), verbs, 4, hint, sizeof hint), usage);
    return WEIR_EXIT_USAGE;
}

/* ---- weir logs ---------------------------------------------------------------------------- */

static int header_true(const weir_response_t *res, const char *name) {
    char v[16];
    const char *s = weir_response_header(res, name, v, sizeof v);
    return s && !strcasecmp(s, "true");
}

static int64_t header_int(const weir_response_t *res, const char *name) {
    char v[32], *end;
    const char *s = weir_response_header(res, name, v, sizeof v);
    if (!s || !*s) return -1;
    long long n = strtoll(s, &end, 10);
    return *end || n < 0 ? -1 : n;
}

/* The task's entry in its run, fetched again; NULL with *rc set when it cannot be had. */
static json_t *fetch_task(const weir_config_t *cfg, int64_t id, const char *task, int *rc) {
    weir_response_t res;
    *rc = cli_get_run(cfg, id, &res);
    json_t *t = NULL;
    if (!*rc) {
        t = find_task(res.json, task, 1);
        if (t) json_incref(t);
        else *rc = WEIR_EXIT_NOTFOUND;
    }
    weir_response_free(&res);
    return t;
}

int weir_cmd_logs(int argc, char **argv) {
    const char *usage =
        "usage: weir logs RUN TASK [--attempt N] [-f]\n\n"
        "Prints a task's log (the latest attempt's unless --attempt) as the step wrote it.\n"
        "With -f, keeps following it until the attempt ends; without --attempt it then goes\n"
        "on to the task's next attempt when the task is retried (a line on stderr marks it).\n\n"
        "  --attempt N            the log of attempt N (1 is the first)\n"
        "  -f, --follow           follow the log as it grows\n"
        "  --url URL, --token T   the scheduler (default: WEIR_URL/WEIR_TOKEN or ~/.weir/client.json)\n";
    enum { OPT_ATTEMPT = CLI_OPT_FIRST_FREE };
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"attempt", required_argument, NULL, OPT_ATTEMPT},
                                         {"follow", no_argument, NULL, 'f'},
                                         {0, 0, 0, 0}};
    weir_config_t cfg = {0};
    int json = 0, rc = 0, follow = 0, opt;
    long attempt = 0;
    optind = 1;
    while ((opt = cli_next_flag(argc, argv, "o:fh", opts, usage, &cfg, &json, &rc)) != -1) {
        if (opt == -2) return rc;
        if (opt == 'f') follow = 1;
        else if (opt == OPT_ATTEMPT) {
            char *end;
            attempt = strtol(optarg, &end, 10);
            if (*end || end == optarg || attempt < 1 || attempt > 1000000) {
                fprintf(stderr, "weir logs: --attempt \"%s\" must be a positive number\n", optarg);
                return WEIR_EXIT_USAGE;
            }
        }
    }
    if (json) { fprintf(stderr, "weir logs: a log is text; -o json does not apply\n"); return WEIR_EXIT_USAGE; }
    if (optind != argc - 2) { fprintf(stderr, "weir logs: give a run and a task\n%s", usage); return WEIR_EXIT_USAGE; }
    int64_t id = cli_run_id("logs", argv[optind]);
    const char *task = argv[optind + 1];
    if (id < 0 || !cli_name_ok("logs", "task", task)) return WEIR_EXIT_USAGE;
    weir_config_load(&cfg);

    int pinned = attempt > 0;     /* the user named the attempt: never move to another */
    int64_t after = 0, unreachable_since = -1;
    int truncated = 0, waiting_said = 0, races = 0;
    for (;;) {
        char path[256];
        int n = snprintf(path, sizeof path, "/v1/runs/%lld/tasks/%s/logs?after=%lld", (long long)id, task,
                         (long long)after);
        if (attempt > 0) snprintf(path + n, sizeof path - (size_t)n, "&attempt=%ld", attempt);
        weir_response_t res;
        if (weir_client_call(&cfg, "GET", path, NULL, &res)) {
            int64_t now = cli_wall_ms();
            if (unreachable_since < 0) unreachable_since = now;
            if (!follow || now - unreachable_since > CLI_UNREACHABLE_GRACE_MS) {
                fprintf(stderr, "weir: %s\n  is the scheduler running? start one with `weir up`, or pass --url\n",
                        res.error);
                return WEIR_EXIT_UNREACHABLE;
            }
            cli_sleep_ms(1000);
            continue;
        }
        unreachable_since = -1;
        if (res.status == 404 || (res.status == 200 && header_int(&res, "X-Weir-Attempt") == 0)) {
            /* the run or the task may not exist, or the task has no attempt yet: ask the run */
            int trc;
            char said[sizeof res.error];
            snprintf(said, sizeof said, "%s", res.status == 404 ? res.error : "");
            weir_response_free(&res);
            json_t *t = fetch_task(&cfg, id, task, &trc);
            if (!t) return trc;
            char st[32];
            snprintf(st, sizeof st, "%s", json_string_value(json_object_get(t, "state")) ?: "?");
            int64_t cur = json_integer_value(json_object_get(t, "attempt"));
            int started = cur > 0 && (!pinned || attempt <= cur);
            int finished = cli_task_finished(st);
            json_decref(t);
            if (started && !said[0] && races++ < 10) continue; /* claimed between our two calls: ask again */
            if (started) {
                fprintf(stderr, "weir logs: no log for attempt %ld of task %s: %s\n", attempt ? attempt : (long)cur, task,
                        said[0] ? said : "the scheduler names no attempt");
                return WEIR_EXIT_NOTFOUND;
            }
            if (!follow || finished) {
                if (pinned && cur > 0)
                    fprintf(stderr, "weir logs: task %s has had %lld attempt%s; there is no attempt %ld\n", task,
                            (long long)cur, cur == 1 ? "" : "s", attempt);
                else if (finished) /* a gate, an approval, a skipped or cancelled task: no step ran */
                    fprintf(stderr, "weir logs: task %s of run %lld ran no step (it is %s): it has no log\n", task,
                            (long long)id, st);
                else
                    fprintf(stderr, "weir logs: task %s of run %lld has not started (it is %s): no log yet; "
                            "-f waits for it\n", task, (long long)id, st);
                return pinned && cur > 0 ? WEIR_EXIT_NOTFOUND : WEIR_EXIT_FAIL;
            }
            if (!waiting_said++) fprintf(stderr, "weir logs: task %s is %s; waiting for it to start\n", task, st);
            cli_sleep_ms(CLI_LOG_POLL_MS);
            continue;
        }
        if (res.status >= 300) {
            fprintf(stderr, "weir: GET %s: %s\n", path, res.error);
            if (res.status == 401) fprintf(stderr, "  pass --token, set WEIR_TOKEN, or run `weir up`\n");
            rc = res.status == 503 ? WEIR_EXIT_UNREACHABLE : WEIR_EXIT_FAIL;
            weir_response_free(&res);
            return rc;
        }
        if (res.len) {
            fwrite(res.body, 1, res.len, stdout);
            fflush(stdout);
        }
        if (header_true(&res, "X-Weir-Log-Truncated")) truncated = 1;
        int complete = header_true(&res, "X-Weir-Log-Complete");
        int64_t got = header_int(&res, "X-Weir-Attempt"), next = header_int(&res, "X-Weir-Next-Seq");
        size_t len = res.len;
        weir_response_free(&res);
        if (attempt == 0 && got > 0) attempt = got; /* stay on this attempt while paging through it */
        int advanced = next > after;
        if (next >= 0) after = next; /* before anything below re-asks, or the same chunks come twice */
        if (complete) {
            if (!follow || pinned) break;
            /* the attempt ended; if the task will run again, go on with its next attempt */
            int trc;
            json_t *t = fetch_task(&cfg, id, task, &trc);
            if (!t) return trc;
            int64_t cur = json_integer_value(json_object_get(t, "attempt"));
            int finished = cli_task_finished(json_string_value(json_object_get(t, "state")));
            json_decref(t);
            if (cur > attempt) {
                fprintf(stderr, "--- weir: attempt %lld of %s ---\n", (long long)cur, task);
                attempt = cur;
                after = 0;
                continue;
            }
            if (finished) break;
            cli_sleep_ms(CLI_LOG_POLL_MS); /* retrying or queued: the next attempt has not been claimed yet */
            continue;
        }
        if (next < 0) {
            if (follow || len) fprintf(stderr, "weir logs: the scheduler sent no X-Weir-Next-Seq; cannot %s\n",
                                       follow ? "follow the log" : "read further");
            if (follow) return WEIR_EXIT_FAIL;
            break;
        }
        if (!follow) {
            if (!len || !advanced) break; /* all there is for now */
            continue;                     /* the answer may have been one page of a longer log */
        }
        if (!len) cli_sleep_ms(CLI_LOG_POLL_MS);
    }
    if (truncated) fprintf(stderr, "weir logs: this log was cut at the scheduler's cap (--max-log)\n");
    return WEIR_EXIT_OK;
}

/* ---- weir approve | reject ---------------------------------------------------------------- */

static int decide(int argc, char **argv, const char *verb, const char *done) {
    char usage[768];
    snprintf(usage, sizeof usage,
             "usage: weir %s RUN TASK [-m COMMENT] [-o json]\n\n"
             "%s an approval task that is waiting for an operator; the comment is kept\n"
             "in the run's audit trail.%s\n\n"
             "  -m, --message COMMENT  why\n" COMMON_HELP,
             verb, !strcmp(verb, "approve") ? "Approves" : "Rejects",
             !strcmp(verb, "approve") ? " The task succeeds and what depends on it goes on."
                                      : " The task ends rejected; what depends on it follows its trigger rules.");
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {"message", required_argument, NULL, 'm'},
                                         {"comment", required_argument, NULL, 'm'}, {0, 0, 0, 0}};
    weir_config_t cfg = {0};
    int json = 0, rc = 0, opt;
    const char *comment = NULL;
    optind = 1;
    while ((opt = cli_next_flag(argc, argv, "o:m:h", opts, usage, &cfg, &json, &rc)) != -1) {
        if (opt == -2) return rc;
        if (opt == 'm') comment = optarg;
    }
    if (optind != argc - 2) { fprintf(stderr, "weir %s: give a run and a task\n%s", verb, usage); return 2; }
    int64_t id = cli_run_id(verb, argv[optind]);
    const char *task = argv[optind + 1];
    if (id < 0 || !cli_name_ok(verb, "task", task)) return WEIR_EXIT_USAGE;
    json_t *body = comment ? json_pack("{s:s}", "comment", comment) : json_object();
    if (!body) { fprintf(stderr, "weir %s: the comment is not valid UTF-8\n", verb); return WEIR_EXIT_USAGE; }
    weir_config_load(&cfg);
    char path[160];
    snprintf(path, sizeof path, "/v1/runs/%lld/tasks/%s/%s", (long long)id, task, verb);
    weir_response_t res;
    rc = cli_call(&cfg, "POST", path, body, &res);
    json_decref(body);
    if (rc == WEIR_EXIT_NOTFOUND) explain_missing_task(&cfg, id, task);
    if (!rc) {
        if (json) cli_print_json(res.json);
        else printf("%s task %s of run %lld: it is now %s\n", done, task, (long long)id,
                    json_string_value(json_object_get(res.json, "state")) ?: "?");
    }
    weir_response_free(&res);
    return rc;
}

int weir_cmd_approve(int argc, char **argv) { return decide(argc, argv, "approve", "approved"); }
int weir_cmd_reject(int argc, char **argv) { return decide(argc, argv, "reject", "rejected"); }

/* ---- weir workers ------------------------------------------------------------------------- */

static const char *bytes_text(int64_t n, char *buf, size_t size) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    if (n <= 0) return NULL;
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 5) { v /= 1024.0; u++; }
    if (v == (double)(int64_t)v) snprintf(buf, size, "%lld%s", (long long)v, units[u]);
    else snprintf(buf, size, "%.1f%s", v, units[u]);
    return buf;
}

int weir_cmd_workers(int argc, char **argv) {
    const char *usage = "usage: weir workers [-o json]\n\n"
                        "Lists the workers that registered with the scheduler: their queues and resources,\n"
                        "slots in use, and how long ago each last sent a heartbeat.\n\n" COMMON_HELP;
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {0, 0, 0, 0}};
    weir_config_t cfg = {0};
    int json = 0, rc = 0, opt;
    optind = 1;
    while ((opt = cli_next_flag(argc, argv, "o:h", opts, usage, &cfg, &json, &rc)) != -1)
        if (opt == -2) return rc;
    if (optind < argc) { fprintf(stderr, "weir workers: unexpected argument \"%s\"\n%s", argv[optind], usage); return 2; }
    weir_config_load(&cfg);
    weir_response_t res;
    if ((rc = cli_call(&cfg, "GET", "/v1/workers", NULL, &res))) { weir_response_free(&res); return rc; }
    json_t *list = json_object_get(res.json, "workers");
    if (json) cli_print_json(list);
    else if (json_array_size(list) == 0) printf("no workers: start one with `weir worker`\n");
    else {
        cli_table_t t;
        cli_table_init(&t, 8);
        cli_table_row(&t, "ID", "NAME", "STATE", "QUEUES", "GPU", "MEMORY", "SLOTS", "LAST-HEARTBEAT");
        size_t i;
        json_t *w;
        int64_t now = cli_wall_ms();
        json_array_foreach(list, i, w) {
            char id[32], gpu[32], mem[32], slots[64], beat[48], queues[256] = "";
            size_t k, qn = 0;
            json_t *q;
            json_array_foreach(json_object_get(w, "queues"), k, q)
                if (qn < sizeof queues)
                    qn += (size_t)snprintf(queues + qn, sizeof queues - qn, "%s%s", k ? "," : "", json_string_value(q) ?: "?");
            snprintf(slots, sizeof slots, "%lld/%lld", (long long)json_integer_value(json_object_get(w, "slots_used")),
                     (long long)json_integer_value(json_object_get(w, "slots")));
            int64_t at = cli_iso_ms(json_string_value(json_object_get(w, "last_heartbeat_at")));
            if (at >= 0) {
                char d[32];
                snprintf(beat, sizeof beat, "%s ago", cli_duration(now > at ? now - at : 0, d, sizeof d));
            }
            cli_table_row(&t, cli_field(w, "id", id, sizeof id), json_string_value(json_object_get(w, "name")),
                          json_string_value(json_object_get(w, "state")), queues, cli_field(w, "gpu", gpu, sizeof gpu),
                          bytes_text(json_integer_value(json_object_get(w, "memory_bytes")), mem, sizeof mem), slots,
                          at >= 0 ? beat : NULL);
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
    }
    weir_response_free(&res);
    return 0;
}
