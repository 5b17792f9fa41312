/* plugin.c — loading plugins (plugin.h), `weir steps` and `weir step-run`.
 *
 * `weir step-run --plugin-dir DIR CONTEXT.json` is the child process a worker starts for one
 * attempt of a plugin step: it loads the plugins, finds the step, checks its settings, gives
 * it the host table and maps its outcome onto what an exec step leaves behind (exit status,
 * the metrics file, output files) plus an error file with the step's own message. It is not
 * for people; `weir steps` is. */
#include "workers/plugin.h"
#include "workers/worker.h"
#include "cli/cli.h"
#include "common/error.h"
#include "common/util.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef WEIR_PLUGIN_DIR
#define WEIR_PLUGIN_DIR "/usr/local/lib/weir/plugins"
#endif

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int wk_plugin_dir(const char *dir, char *out, size_t size, char *err, size_t errsize) {
    char buf[PATH_MAX];
    if (!dir || !*dir) dir = getenv("WEIR_PLUGIN_DIR");
    if (!dir || !*dir) {
        ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 16);
        if (n > 0) {
            buf[n] = '\0';
            char *slash = strrchr(buf, '/');
            if (slash) {
                strcpy(slash + 1, "plugins");
                if (is_dir(buf)) dir = buf;
            }
        }
        if (dir != buf) dir = WEIR_PLUGIN_DIR;
    }
    char abs[PATH_MAX];
    if (!realpath(dir, abs)) {
        snprintf(err, errsize, "plugin directory %s: %s", dir, strerror(errno));
        return WEIR_EINVAL;
    }
    if (!is_dir(abs)) {
        snprintf(err, errsize, "plugin directory %s: not a directory", dir);
        return WEIR_EINVAL;
    }
    if (snprintf(out, size, "%s", abs) >= (int)size) {
        snprintf(err, errsize, "plugin directory %s: path too long", abs);
        return WEIR_ELIMIT;
    }
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static int so_file(const struct dirent *d) {
    size_t n = strlen(d->d_name);
    return n > 3 && !strcmp(d->d_name + n - 3, ".so") && d->d_name[0] != '.';
}

static void refuse(wk_plugins_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(wk_plugins_t *ps, const char *fmt, ...) {
    size_t len = strlen(ps->errors);
    if (len + 2 >= sizeof ps->errors) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->errors + len, sizeof ps->errors - len - 1, fmt, ap);
    va_end(ap);
    len = strlen(ps->errors);
    ps->errors[len] = '\n';
    ps->errors[len + 1] = '\0';
}

/* Why the plugin's table cannot be used, or NULL: checked before anything else is read. */
static const char *plugin_mismatch(const weir_plugin_t *p, char *buf, size_t size) {
    if (p->size < offsetof(weir_plugin_t, abi_version) + sizeof p->abi_version)
        snprintf(buf, size, "its plugin table is %zu bytes: too small to hold an ABI version", p->size);
    else if (p->abi_version != WEIR_PLUGIN_ABI_VERSION)
        snprintf(buf, size, "built for plugin ABI version %u, this weir speaks version %u",
                 (unsigned)p->abi_version, WEIR_PLUGIN_ABI_VERSION);
    else if (p->size < sizeof(weir_plugin_t))
        snprintf(buf, size, "its plugin table is %zu bytes, ABI version %u needs %zu", p->size,
                 WEIR_PLUGIN_ABI_VERSION, sizeof(weir_plugin_t));
    else if (p->nsteps && !p->steps)
        snprintf(buf, size, "its plugin table lists %zu steps but no step table", p->nsteps);
    else if (p->nsteps && p->step_size < sizeof(weir_plugin_step_t))
        snprintf(buf, size, "its step table entries are %zu bytes, ABI version %u needs %zu", p->step_size,
                 WEIR_PLUGIN_ABI_VERSION, sizeof(weir_plugin_step_t));
    else if (!p->name || !p->version)
        snprintf(buf, size, "its plugin table has no name or version");
    else return NULL;
    return buf;
}

static const weir_plugin_step_t *step_at(const weir_plugin_t *p, size_t i) {
    return (const weir_plugin_step_t *)((const char *)p->steps + i * p->step_size);
}

int wk_plugins_load(wk_plugins_t *ps, const char *dir) {
    memset(ps, 0, sizeof *ps);
    snprintf(ps->dir, sizeof ps->dir, "%s", dir);
    struct dirent **list;
    int n = scandir(dir, &list, so_file, by_name);
    if (n < 0) {
        refuse(ps, "%s: %s", dir, strerror(errno));
        return WEIR_EIO;
    }
    for (int i = 0; i < n; i++) {
        wk_plugin_t *p = &ps->p[ps->n];
        if (ps->n == WK_PLUGINS_MAX) {
            refuse(ps, "%s/%s: more than %d plugins in the directory", dir, list[i]->d_name, WK_PLUGINS_MAX);
        } else if (snprintf(p->path, sizeof p->path, "%s/%s", dir, list[i]->d_name) >= (int)sizeof p->path) {
            refuse(ps, "%s/%s: path too long", dir, list[i]->d_name);
        } else if (!(p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL))) {
            refuse(ps, "%s: cannot load: %s", p->path, dlerror());
        } else {
            weir_plugin_entry_fn entry;
            *(void **)&entry = dlsym(p->handle, WEIR_PLUGIN_ENTRY);
            const weir_plugin_t *pl = entry ? entry() : NULL;
            char why[256];
            const char *bad = !entry  ? "it does not export " WEIR_PLUGIN_ENTRY "()"
                              : !pl   ? WEIR_PLUGIN_ENTRY "() returned NULL"
                                      : plugin_mismatch(pl, why, sizeof why);
            for (size_t s = 0; !bad && s < pl->nsteps; s++) {
                const weir_plugin_step_t *st = step_at(pl, s);
                if (!st->name || !st->run) bad = "a step has no name or no run function";
                else if (wk_plugins_find(ps, st->name, NULL)) {
                    snprintf(why, sizeof why, "step %.200s is already provided by another plugin", st->name);
                    bad = why;
                }
                for (size_t o = 0; !bad && o < s; o++)
                    if (!strcmp(step_at(pl, o)->name, st->name)) {
                        snprintf(why, sizeof why, "it lists step %.200s twice", st->name);
                        bad = why;
                    }
            }
            if (bad) {
                refuse(ps, "%s: refused: %s", p->path, bad);
                dlclose(p->handle);
                p->handle = NULL;
            } else {
                p->plugin = pl;
                ps->n++;
            }
        }
        free(list[i]);
    }
    free(list);
    return 0;
}

void wk_plugins_close(wk_plugins_t *ps) {
    for (int i = 0; i < ps->n; i++)
        if (ps->p[i].handle) dlclose(ps->p[i].handle);
    ps->n = 0;
}

const weir_plugin_step_t *wk_plugins_find(const wk_plugins_t *ps, const char *name, const wk_plugin_t **owner) {
    for (int i = 0; i < ps->n; i++) {
        const weir_plugin_t *p = ps->p[i].plugin;
        for (size_t s = 0; s < p->nsteps; s++) {
            if (strcmp(step_at(p, s)->name, name)) continue;
            if (owner) *owner = &ps->p[i];
            return step_at(p, s);
        }
    }
    return NULL;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a map";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int type_ok(const char *type, const json_t *v) {
    if (!strcmp(type, "string")) return json_is_string(v);
    if (!strcmp(type, "number")) return json_is_number(v);
    if (!strcmp(type, "integer")) return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (!strcmp(type, "boolean")) return json_is_boolean(v);
    if (!strcmp(type, "list")) return json_is_array(v);
    if (!strcmp(type, "map")) return json_is_object(v);
    return 1; /* "any" */
}

int wk_step_settings_check(const weir_plugin_step_t *s, json_t *settings, char *err, size_t errsize) {
    json_error_t je;
    json_t *schema = s->settings_schema ? json_loads(s->settings_schema, 0, &je) : json_object();
    if (!json_is_object(schema)) {
        snprintf(err, errsize, "step %s: the plugin's settings schema is not a JSON object (a bug in the plugin)",
                 s->name);
        json_decref(schema);
        return WEIR_EINVAL;
    }
    weir_buf_t b;
    weir_buf_init(&b, errsize ? errsize - 1 : 0);
    int problems = 0; /* the text may be cut short; the count is not */
    const char *key;
    json_t *v, *decl;
    json_object_foreach(settings, key, v) {
        decl = json_object_get(schema, key);
        const char *type = json_string_value(json_object_get(decl, "type"));
        if (!decl) {
            problems++;
            weir_buf_printf(&b, "%sstep %s: unknown setting \"%.200s\"", b.len ? "\n" : "", s->name, key);
        } else if (type && !type_ok(type, v)) {
            problems++;
            weir_buf_printf(&b, "%sstep %s: setting \"%s\" must be %s %s (got %s)", b.len ? "\n" : "", s->name, key,
                            strchr("aeiou", type[0]) ? "an" : "a", type, json_kind(v));
        }
    }
    json_object_foreach(schema, key, decl) {
        if (json_object_get(settings, key)) continue;
        json_t *def = json_object_get(decl, "default");
        if (json_is_true(json_object_get(decl, "required"))) {
            problems++;
            weir_buf_printf(&b, "%sstep %s: setting \"%s\" is required", b.len ? "\n" : "", s->name, key);
        } else if (def) json_object_set(settings, key, def);
    }
    json_decref(schema);
    int rc = problems ? WEIR_EINVAL : 0;
    if (problems && !b.len) snprintf(err, errsize, "step %s: %d problems with its settings", s->name, problems);
    else snprintf(err, errsize, "%s", b.len ? b.data : "");
    weir_buf_free(&b);
    return rc;
}

/* ---------------------------------------------------------------- weir steps */

static const struct { const char *name, *outputs, *summary; } builtin[] = {
    {"exec", "", "run a command (exec = { ... }); outputs are declared by the task"},
    {"noop", "", "do nothing (a join point)"},
};

int weir_cmd_steps(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: weir steps [--plugin-dir DIR] [-v] [-o json]\n\n"
                   "Lists every step workers here can run: the built-in ones and those of the plugins in\n"
                   "the plugin directory (--plugin-dir, WEIR_PLUGIN_DIR, plugins/ beside the binary, or\n"
                   "%s). -v also lists each step's settings. Exits 1 when a plugin there was refused\n"
                   "(the reason is on stderr; the others are listed).\n", WEIR_PLUGIN_DIR);
            return WEIR_EXIT_OK;
        }
        if (!strcmp(argv[i], "--plugin-dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            if (cli_output_format(argv[++i], &json)) return WEIR_EXIT_USAGE;
        } else {
            fprintf(stderr, "weir steps: unknown argument \"%s\" (see weir steps --help)\n", argv[i]);
            return WEIR_EXIT_USAGE;
        }
    }
    char pdir[1024], err[1200];
    wk_plugins_t *ps = calloc(1, sizeof *ps);
    if (!ps) return WEIR_EXIT_FAIL;
    if (wk_plugin_dir(dir, pdir, sizeof pdir, err, sizeof err)) {
        fprintf(stderr, "weir steps: %s\n", err);
        if (dir) { free(ps); return WEIR_EXIT_USAGE; }
        pdir[0] = '\0';
    } else {
        wk_plugins_load(ps, pdir);
    }
    json_t *out = json_array();
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:{}}", "step", builtin[i].name, "plugin", "",
                                             "outputs", builtin[i].outputs, "summary", builtin[i].summary, "settings"));
    for (int i = 0; i < ps->n; i++) {
        const weir_plugin_t *p = ps->p[i].plugin;
        for (size_t s = 0; s < p->nsteps; s++) {
            const weir_plugin_step_t *st = step_at(p, s);
            json_t *schema = st->settings_schema ? json_loads(st->settings_schema, 0, NULL) : NULL;
            json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:o}", "step", st->name, "plugin", p->name,
                                                 "outputs", st->outputs ? st->outputs : "", "summary",
                                                 st->summary ? st->summary : "", "settings",
                                                 schema ? schema : json_object()));
        }
    }
    if (json) {
        char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
    } else {
        cli_table_t t;
        cli_table_init(&t, 4);
        cli_table_row(&t, "STEP", "PLUGIN", "OUTPUTS", "SUMMARY");
        size_t i;
        json_t *e;
        json_array_foreach(out, i, e) {
            const char *o = json_string_value(json_object_get(e, "outputs"));
            const char *pl = json_string_value(json_object_get(e, "plugin"));
            cli_table_row(&t, json_string_value(json_object_get(e, "step")), *pl ? pl : "(built in)", *o ? o : NULL,
                          json_string_value(json_object_get(e, "summary")));
            if (!verbose) continue;
            const char *k;
            json_t *d;
            json_object_foreach(json_object_get(e, "settings"), k, d) {
                char name[128], what[512];
                json_t *def = json_object_get(d, "default");
                char *defs = def ? json_dumps(def, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
                snprintf(name, sizeof name, "  %s", k);
                snprintf(what, sizeof what, "%s%s%s%s%s%s", json_string_value(json_object_get(d, "type")) ?
                         json_string_value(json_object_get(d, "type")) : "any",
                         json_is_true(json_object_get(d, "required")) ? ", required" : "",
                         defs ? ", default " : "", defs ? defs : "",
                         json_object_get(d, "doc") ? ": " : "", json_object_get(d, "doc") ?
                         json_string_value(json_object_get(d, "doc")) : "");
                free(defs);
                cli_table_row(&t, name, "", "", what);
            }
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
        if (pdir[0]) printf("\nplugins from %s\n", pdir);
    }
    if (ps->errors[0]) fprintf(stderr, "%s", ps->errors);
    int refused = ps->errors[0] != '\0';
    json_decref(out);
    wk_plugins_close(ps);
    free(ps);
    return refused ? WEIR_EXIT_FAIL : WEIR_EXIT_OK;
}

/* ---------------------------------------------------------------- weir step-run */

struct weir_step_ctx_s {
    pthread_mutex_t mu;
    json_t *context;          /* the worker's context file */
    char *settings, *params, *run;
    json_t *outputs;          /* name -> path, so output() can hand out stable strings */
    json_t *metrics;          /* name -> number */
    FILE *signals;            /* JSON lines, or NULL until the first signal */
    char failure[1024];
    int debug;
    uint64_t progress_at;     /* monotonic ms of the last progress file written */
};

/* set by the signal handler, read by any of the plugin's threads: lock-free atomic_int */
static atomic_int cancelled_flag;
static void on_term(int sig) { (void)sig; atomic_store(&cancelled_flag, 1); }

static const char *ctx_str(weir_step_ctx_t *c, const char *key) {
    return json_string_value(json_object_get(c->context, key));
}

static const char *h_settings(weir_step_ctx_t *c) { return c->settings; }
static const char *h_params(weir_step_ctx_t *c) { return c->params; }
static const char *h_run_info(weir_step_ctx_t *c) { return c->run; }
static const char *h_scratch(weir_step_ctx_t *c) { return ctx_str(c, "scratch_dir"); }
static int h_cancelled(weir_step_ctx_t *c) { (void)c; return atomic_load(&cancelled_flag) != 0; }
static int h_device(weir_step_ctx_t *c) { return (int)json_integer_value(json_object_get(c->context, "device")); }

static const char *h_input(weir_step_ctx_t *c, const char *name) {
    return name ? json_string_value(json_object_get(json_object_get(c->context, "inputs"), name)) : NULL;
}

/* An output name as the worker reads it back from the file's name (wk_output_name): a lowercase
 * identifier, and no dot, which would end the name early. */
static int output_name_ok(const char *n) {
    char buf[64];
    return n && !strchr(n, '.') && wk_output_name(n, buf, sizeof buf) == 0;
}

static const char *h_output(weir_step_ctx_t *c, const char *name) {
    if (!output_name_ok(name)) return NULL;
    pthread_mutex_lock(&c->mu);
    json_t *p = json_object_get(c->outputs, name);
    if (!p) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", ctx_str(c, "output_dir"), name);
        json_object_set_new(c->outputs, name, p = json_string(path));
    }
    pthread_mutex_unlock(&c->mu);
    return json_string_value(p);
}

static void h_log(weir_step_ctx_t *c, int level, const char *fmt, ...) {
    if (level <= WEIR_PLUGIN_LOG_DEBUG && !c->debug) return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    static const char *tag[] = {"debug: ", "", "warning: ", "error: "};
    pthread_mutex_lock(&c->mu);
    fprintf(stderr, "%s%s\n", tag[level < 0 ? 0 : level > 3 ? 3 : level], line);
    pthread_mutex_unlock(&c->mu);
}

static int h_metric(weir_step_ctx_t *c, const char *name, double v) {
    if (!name || !*name || strlen(name) > 128 || !isfinite(v)) return -1;
    pthread_mutex_lock(&c->mu);
    /* whole numbers stay integers (42, not 42.0) in the metrics people read */
    json_object_set_new(c->metrics, name, v == floor(v) && fabs(v) < 9007199254740992.0 ? json_integer((json_int_t)v)
                                                                                       : json_real(v));
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void h_progress(weir_step_ctx_t *c, double f, const char *note) {
    if (!(f >= 0)) f = 0;
    if (f > 1) f = 1;
    pthread_mutex_lock(&c->mu);
    fprintf(stderr, "progress %3.0f%%%s%s\n", f * 100, note && *note ? " " : "", note ? note : "");
    /* the latest, for the worker's next heartbeat (weir run show; every few seconds): replaced
     * whole by a rename, never torn; not fsynced, and at most four times a second, since a
     * training loop may report every batch */
    const char *pf = ctx_str(c, "progress_file");
    uint64_t now = weir_now_ms();
    if (pf && (now - c->progress_at >= 250 || f >= 1)) {
        c->progress_at = now;
        json_t *p = json_pack("{s:f, s:s}", "fraction", f, "note", note ? note : "");
        char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;
        if (text) (void)weir_write_replace(pf, (const void *const[]){text}, (size_t[]){strlen(text)}, 1, NULL, 0);
        free(text);
        json_decref(p);
    }
    pthread_mutex_unlock(&c->mu);
}

static int h_emit_signal(weir_step_ctx_t *c, const char *kind, const char *subject, double value,
                         const char *detail) {
    if (!kind || !(*kind >= 'a' && *kind <= 'z') || strlen(kind) > 63 ||
        strspn(kind, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(kind) || !subject || !isfinite(value))
        return -1;
    json_t *d = detail ? json_loads(detail, 0, NULL) : json_object();
    if (!json_is_object(d)) { json_decref(d); return -1; }
    json_t *sig = json_pack("{s:s, s:s, s:f, s:o}", "kind", kind, "subject", subject, "value", value, "detail", d);
    char *line = json_dumps(sig, JSON_COMPACT);
    json_decref(sig);
    pthread_mutex_lock(&c->mu);
    if (!c->signals && ctx_str(c, "signals_file")) c->signals = fopen(ctx_str(c, "signals_file"), "a");
    int rc = c->signals && line && fprintf(c->signals, "%s\n", line) > 0 ? 0 : -1;
    if (!rc) fprintf(stderr, "signal %s %s %g\n", kind, subject, value);
    pthread_mutex_unlock(&c->mu);
    free(line);
    return rc;
}

static void h_fail(weir_step_ctx_t *c, const char *fmt, ...) {
    pthread_mutex_lock(&c->mu);
    if (!c->failure[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->failure, sizeof c->failure, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&c->mu);
}

static const weir_host_t host = {
    .size = sizeof(weir_host_t), .abi_version = WEIR_PLUGIN_ABI_VERSION,
    .settings = h_settings, .params = h_params, .run_info = h_run_info, .input = h_input, .output = h_output,
    .scratch_dir = h_scratch, .log = h_log, .metric = h_metric, .progress = h_progress, .cancelled = h_cancelled,
    .emit_signal = h_emit_signal, .device = h_device, .fail = h_fail,
};

/* The step's outcome, where the worker reads it: metrics file, error file, exit status. */
static int finish(weir_step_ctx_t *c, int ok) {
    int rc = ok ? 0 : 1;
    const char *mf = ctx_str(c, "metrics_file");
    if (mf && json_object_size(c->metrics) && json_dump_file(c->metrics, mf, JSON_COMPACT | JSON_REAL_PRECISION(12))) {
        fprintf(stderr, "error: cannot write the metrics file %s: %s\n", mf, strerror(errno));
        rc = 1;
    }
    if (c->signals && fclose(c->signals)) rc = 1;
    c->signals = NULL;
    const char *ef = ctx_str(c, "error_file");
    if (rc && ef) {
        FILE *f = fopen(ef, "w");
        if (f) {
            fputs(c->failure, f);
            fclose(f);
        }
    }
    if (rc && c->failure[0]) fprintf(stderr, "error: %s\n", c->failure);
    return rc;
}

int weir_cmd_step_run(int argc, char **argv) {
    if (argc != 4 || strcmp(argv[1], "--plugin-dir")) {
        fprintf(stderr, "usage: weir step-run --plugin-dir DIR CONTEXT.json\n"
                        "(started by `weir worker` for each attempt of a plugin step; not for people)\n");
        return WEIR_EXIT_USAGE;
    }
    weir_step_ctx_t c = {.outputs = json_object(), .metrics = json_object()};
    pthread_mutex_init(&c.mu, NULL);
    json_error_t je;
    c.context = json_load_file(argv[3], JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(c.context)) {
        fprintf(stderr, "error: step context %s: %s\n", argv[3], c.context ? "not a JSON object" : je.text);
        return WEIR_EXIT_USAGE;
    }
    const char *debug = getenv("WEIR_LOG");
    c.debug = debug && !strcmp(debug, "debug");
    wk_plugins_t *ps = calloc(1, sizeof *ps);
    const char *name = ctx_str(&c, "step");
    const weir_plugin_step_t *st = NULL;
    const wk_plugin_t *owner = NULL;
    int ok = 0;
    if (!ps || !name) {
        h_fail(&c, "step context %s: no step name", argv[3]);
    } else if (wk_plugins_load(ps, argv[2]), !(st = wk_plugins_find(ps, name, &owner))) {
        h_fail(&c, "step %s: no plugin in %s provides it%s%s", name, argv[2], ps->errors[0] ? "; refused: " : "",
               ps->errors);
        size_t l = strlen(c.failure);
        while (l && c.failure[l - 1] == '\n') c.failure[--l] = '\0';
    } else {
        json_t *settings = json_deep_copy(json_object_get(c.context, "settings"));
        if (!settings) settings = json_object();
        char err[1024];
        if (!json_is_object(settings)) {
            h_fail(&c, "step %s: settings must be a map", name);
        } else if (wk_step_settings_check(st, settings, err, sizeof err)) {
            h_fail(&c, "%s", err);
        } else {
            c.settings = json_dumps(settings, JSON_COMPACT);
            json_t *params = json_object_get(c.context, "params"), *run = json_object_get(c.context, "run");
            c.params = params ? json_dumps(params, JSON_COMPACT) : strdup("{}");
            c.run = run ? json_dumps(run, JSON_COMPACT) : strdup("{}");
            struct sigaction sa = {.sa_handler = on_term};
            sigemptyset(&sa.sa_mask);
            sigaction(SIGTERM, &sa, NULL);
            sigaction(SIGINT, &sa, NULL);
            h_log(&c, WEIR_PLUGIN_LOG_DEBUG, "step %s from %s (%s %s)", name, owner->path, owner->plugin->name,
                  owner->plugin->version);
            ok = st->run(&c, &host) == 0;
            if (ok && atomic_load(&cancelled_flag)) { ok = 0; h_fail(&c, "step %s: cancelled", name); }
            if (!ok && !c.failure[0]) h_fail(&c, "step %s failed (the plugin gave no reason)", name);
        }
        json_decref(settings);
    }
    int rc = finish(&c, ok);
    free(c.settings);
    free(c.params);
    free(c.run);
    json_decref(c.context);
    json_decref(c.outputs);
    json_decref(c.metrics);
    if (ps) wk_plugins_close(ps);
    free(ps);
    return rc;
}
