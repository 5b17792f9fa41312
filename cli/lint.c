/* lint.c — `weir lint [-o json] FILE...`: compiles pipelines offline and reports.
 *
 * Every error of every file goes to stderr as FILE:LINE: message; a file that compiles gets a
 * summary of its DAG on stdout (name, version, parameters, schedule, triggers, and the tasks in
 * run order with what they wait for), or with -o json its plan. No database, no scheduler, no
 * network: the same compile `weir apply` runs on the scheduler. */
#include "cli/cli.h"
#include "dsl/canon.h"
#include "dsl/dsl.h"
#include "common/error.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINT_MAX_FILE ((size_t)1 << 20)

static void usage(FILE *f) {
    fputs("usage: weir lint [-o text|json] FILE...\n"
          "\n"
          "Compiles each pipeline offline (no database, no scheduler) and checks it: cycles, unknown\n"
          "tasks and steps, types, durations, sizes, cron expressions, undeclared parameters.\n"
          "Every error is printed to stderr as FILE:LINE: message.\n"
          "\n"
          "  -o text   (default) a summary of each pipeline: version, parameters, schedule,\n"
          "            triggers, and its tasks in run order with the tasks they wait for\n"
          "  -o json   the compiled plan of each file, indented (the version is the SHA-256 of\n"
          "            its compact canonical form)\n"
          "  -h, --help\n"
          "\n"
          "Exit status: 0 when every file compiles, 1 when one does not, 2 on a usage error.\n"
          "The language is described in docs/dsl.md.\n",
          f);
}

/* "1h30m" from milliseconds, the way a person would write it in a pipeline. */
static void fmt_duration(long long ms, char *buf, size_t len) {
    static const struct { const char *unit; long long ms; } units[] = {
        {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    size_t n = 0;
    buf[0] = '\0';
    if (ms == 0) { snprintf(buf, len, "0s"); return; }
    for (size_t i = 0; i < sizeof units / sizeof units[0] && n < len; i++) {
        if (ms >= units[i].ms) {
            n += (size_t)snprintf(buf + n, len - n, "%lld%s", ms / units[i].ms, units[i].unit);
            ms %= units[i].ms;
        }
    }
}

/* The compact canonical text of a value, for showing defaults and parameters. */
static void put_json(FILE *f, const json_t *v) {
    weir_buf_t b;
    weir_buf_init(&b, 4096);
    if (weir_dsl_canonical(v, 0, &b) == 0 && b.data) fputs(b.data, f);
    else fputs("...", f);
    weir_buf_free(&b);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct {
    size_t task;  /* index in the plan's tasks, which are sorted by name */
    int stage;    /* 1 + the longest chain of upstream tasks */
} lint_row_t;

static int cmp_row(const void *pa, const void *pb) {
    const lint_row_t *a = pa, *b = pb;
    if (a->stage != b->stage) return a->stage - b->stage;
    return a->task < b->task ? -1 : a->task > b->task;
}

static const char *task_name(const json_t *tasks, size_t i) {
    return json_string_value(json_object_get(json_array_get(tasks, i), "name"));
}

/* Index of the task called name (tasks are sorted by name), or n. */
static size_t find_task(const json_t *tasks, size_t n, const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(task_name(tasks, mid), name);
        if (!c) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return n;
}

/* The tasks in run order: stage by stage (Kahn's algorithm), by name within a stage. */
static int print_tasks(FILE *f, const json_t *tasks) {
    size_t n = json_array_size(tasks), nedges = 0;
    for (size_t i = 0; i < n; i++) nedges += json_array_size(json_object_get(json_array_get(tasks, i), "upstream"));
    lint_row_t *rows = calloc(n + 1, sizeof *rows);
    size_t *pending = calloc(n + 1, sizeof *pending), *queue = calloc(n + 1, sizeof *queue);
    size_t *first = calloc(n + 2, sizeof *first), *down = calloc(nedges + 1, sizeof *down);
    int rc = rows && pending && queue && first && down ? 0 : WEIR_ENOMEM;
    if (!rc) {
        /* down[first[i] .. first[i+1]) are the tasks that wait for task i. */
        for (size_t j = 0; j < n; j++) {
            size_t k;
            json_t *u;
            json_array_foreach(json_object_get(json_array_get(tasks, j), "upstream"), k, u) {
                size_t i = find_task(tasks, n, json_string_value(u));
                if (i < n) first[i + 1]++;
            }
        }
        for (size_t i = 0; i < n; i++) first[i + 1] += first[i];
        size_t *fill = queue;  /* borrowed as a cursor per task before it serves as the queue */
        for (size_t i = 0; i < n; i++) fill[i] = first[i];
        for (size_t j = 0; j < n; j++) {
            size_t k;
            json_t *u;
            json_array_foreach(json_object_get(json_array_get(tasks, j), "upstream"), k, u) {
                size_t i = find_task(tasks, n, json_string_value(u));
                if (i < n) {
                    down[fill[i]++] = j;
                    pending[j]++;
                }
            }
        }
        size_t head = 0, tail = 0;
        for (size_t i = 0; i < n; i++) {
            rows[i].task = i;
            rows[i].stage = 1;
            if (!pending[i]) queue[tail++] = i;
        }
        while (head < tail) {
            size_t i = queue[head++];
            for (size_t e = first[i]; e < first[i + 1]; e++) {
                size_t j = down[e];
                if (rows[j].stage < rows[i].stage + 1) rows[j].stage = rows[i].stage + 1;
                if (--pending[j] == 0) queue[tail++] = j;
            }
        }
        qsort(rows, n, sizeof *rows, cmp_row);
        int width = 4, stages = 0;
        for (size_t i = 0; i < n; i++) {
            int len = (int)strlen(task_name(tasks, i));
            if (len > width) width = len > 32 ? 32 : len;
            if (rows[i].stage > stages) stages = rows[i].stage;
        }
        fprintf(f, "  tasks     %zu in %d stage%s (stage, task, step, what it waits for)\n", n, stages,
                stages == 1 ? "" : "s");
        for (size_t r = 0; r < n; r++) {
            const json_t *t = json_array_get(tasks, rows[r].task);
            const char *kind = json_string_value(json_object_get(t, "kind"));
            const char *step = !strcmp(kind, "task") ? json_string_value(json_object_get(t, "step")) : kind;
            const json_t *up = json_object_get(t, "upstream");
            const char *rule = json_string_value(json_object_get(t, "trigger_rule"));
            int more = json_array_size(up) || (rule && strcmp(rule, "all_success"));
            fprintf(f, "    %3d  %-*s  %-*s", rows[r].stage, width, json_string_value(json_object_get(t, "name")),
                    more ? 14 : 0, step);
            if (json_array_size(up)) {
                fputs("  after ", f);
                size_t k;
                json_t *u;
                json_array_foreach(up, k, u) fprintf(f, "%s%s", k ? ", " : "", json_string_value(u));
            }
            if (rule && strcmp(rule, "all_success")) fprintf(f, " (%s)", rule);
            fputc('\n', f);
        }
    }
    free(rows), free(pending), free(queue), free(first), free(down);
    return rc;
}

static void print_summary(FILE *f, const char *file, const weir_dsl_result_t *r) {
    const json_t *plan = r->plan;
    fprintf(f, "pipeline %s (%s)\n", json_string_value(json_object_get(plan, "name")), file);
    fprintf(f, "  version   %s\n", r->version);
    const char *about = json_string_value(json_object_get(plan, "description"));
    if (about && *about) fprintf(f, "  about     %s\n", about);

    const json_t *params = json_object_get(plan, "params");
    size_t n = json_object_size(params), i = 0;
    const char **names = n ? malloc(n * sizeof *names) : NULL;
    if (names) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)params, k, v) names[i++] = k;
        qsort(names, n, sizeof *names, cmp_str);
        fputs("  params   ", f);
        for (i = 0; i < n; i++) {
            const json_t *p = json_object_get(params, names[i]);
            fprintf(f, "%s %s %s", i ? "," : "", names[i], json_string_value(json_object_get(p, "type")));
            if (json_is_true(json_object_get(p, "required"))) {
                fputs(" (required)", f);
            } else {
                fputs(" = ", f);
                put_json(f, json_object_get(p, "default"));
            }
        }
        fputc('\n', f);
        free(names);
    }

    const json_t *sched = json_object_get(plan, "schedule");
    if (sched)
        fprintf(f, "  schedule  %s (%s%s)\n", json_string_value(json_object_get(sched, "cron")),
                json_string_value(json_object_get(sched, "timezone")),
                json_is_true(json_object_get(sched, "catchup")) ? ", catching up missed runs" : "");
    json_t *tr;
    json_array_foreach(json_object_get(plan, "triggers"), i, tr) {
        char cooldown[40];
        fmt_duration(json_integer_value(json_object_get(tr, "cooldown_ms")), cooldown, sizeof cooldown);
        const char *subject = json_string_value(json_object_get(tr, "subject"));
        fprintf(f, "  trigger   signal \"%s\" for %s%s%s at >= ", json_string_value(json_object_get(tr, "signal")),
                subject && *subject ? "\"" : "", subject && *subject ? subject : "any subject",
                subject && *subject ? "\"" : "");
        put_json(f, json_object_get(tr, "threshold"));
        fprintf(f, ", cooldown %s, dedup \"%s\", at most %lld active\n", cooldown,
                json_string_value(json_object_get(tr, "dedup_key")),
                (long long)json_integer_value(json_object_get(tr, "max_active_runs")));
    }
    fprintf(f, "  runs      at most %lld at a time\n",
            (long long)json_integer_value(json_object_get(plan, "max_active_runs")));
    if (print_tasks(f, json_object_get(plan, "tasks"))) fputs("  (out of memory listing the tasks)\n", f);
}

static int lint_file(const char *path, int json) {
    char *src = NULL;
    size_t len = 0;
    int rc = weir_read_file(path, LINT_MAX_FILE, &src, &len);
    if (rc) {
        if (rc == WEIR_ELIMIT)
            fprintf(stderr, "%s: the file is larger than %zu KiB; a pipeline should be much smaller\n", path,
                    LINT_MAX_FILE >> 10);
        else
            fprintf(stderr, "%s: cannot read: %s\n", path, rc == WEIR_ENOENT ? "no such file" : weir_strerror(rc));
        return 1;
    }
    weir_dsl_result_t r;
    rc = weir_dsl_compile(path, src, len, NULL, &r);
    free(src);
    if (rc == WEIR_ECOMPILE) {
        fputs(r.errors, stderr);
    } else if (rc) {
        fprintf(stderr, "%s: %s\n", path, weir_strerror(rc));
    } else if (json) {
        weir_buf_t b;
        weir_buf_init(&b, (size_t)1 << 30);
        if (weir_dsl_canonical(r.plan, 2, &b) == 0) printf("%s\n", b.data);
        weir_buf_free(&b);
    } else {
        print_summary(stdout, path, &r);
    }
    weir_dsl_result_free(&r);
    return rc ? 1 : 0;
}

int weir_cmd_lint(int argc, char **argv) {
    int json = 0, first = 1;
    for (; first < argc && argv[first][0] == '-' && argv[first][1]; first++) {
        const char *a = argv[first];
        if (!strcmp(a, "--")) { first++; break; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return WEIR_EXIT_OK; }
        const char *fmt = NULL;
        if (!strcmp(a, "-o") && first + 1 < argc) fmt = argv[++first];
        else if (!strncmp(a, "-o", 2) && a[2]) fmt = a + 2;
        else if (!strncmp(a, "--output=", 9)) fmt = a + 9;
        if (fmt && !strcmp(fmt, "json")) json = 1;
        else if (fmt && !strcmp(fmt, "text")) json = 0;
        else {
            fprintf(stderr, fmt ? "weir lint: unknown output format \"%s\" (use text or json)\n"
                                : "weir lint: unknown option %s\n", fmt ? fmt : a);
            usage(stderr);
            return WEIR_EXIT_USAGE;
        }
    }
    if (first >= argc) {
        fputs("weir lint: no file given\n", stderr);
        usage(stderr);
        return WEIR_EXIT_USAGE;
    }
    int failed = 0;
    for (int i = first; i < argc; i++) {
        if (i > first && !json) putchar('\n');
        failed |= lint_file(argv[i], json);
        fflush(stdout);
    }
    return failed ? WEIR_EXIT_FAIL : WEIR_EXIT_OK;
}
