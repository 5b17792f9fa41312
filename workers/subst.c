/* subst.c — what an exec step sees: placeholders filled in, its environment, the names of
 * its outputs and its metrics. Pure functions over JSON and strings (plus reading one
 * directory and one file); no HTTP, no processes. Not the DSL's checker: the plan was
 * checked at compile time, this only fills in and refuses what it cannot fill in. */
#include "workers/worker.h"
#include "common/error.h"
#include "dsl/canon.h"

#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void seterr(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t size, const char *fmt, ...) {
    if (!err || !size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
}

char *wk_value_text(const json_t *v) {
    if (!v || json_is_null(v)) return strdup("");
    if (json_is_string(v)) return strndup(json_string_value(v), json_string_length(v));
    if (json_is_true(v)) return strdup("true");
    if (json_is_false(v)) return strdup("false");
    weir_buf_t b;
    weir_buf_init(&b, (size_t)64 << 20);
    if (weir_dsl_canonical(v, 0, &b)) {
        weir_buf_free(&b);
        return NULL;
    }
    if (!b.data) return strdup("");
    return b.data;
}

/* The value of one "${ref}" (ref is len bytes, without the braces) into *vp, borrowed from c;
 * NULL for an upstream output that was not produced. 0, or an error with err set. */
static int lookup(const wk_subst_ctx_t *c, const char *ref, size_t len, const json_t **vp, char *err,
                  size_t errsize) {
    *vp = NULL;
    char name[512];
    if (len >= sizeof name) {
        seterr(err, errsize, "placeholder \"${%.40s...}\" is too long", ref);
        return WEIR_EINVAL;
    }
    memcpy(name, ref, len);
    name[len] = '\0';
    const json_t *v = NULL;
    if (!strncmp(name, "params.", 7)) {
        v = json_object_get(c->params, name + 7);
        if (!v) {
            seterr(err, errsize, "placeholder \"${%s}\": the claim has no parameter \"%s\"", name, name + 7);
            return WEIR_EINVAL;
        }
    } else if (!strncmp(name, "run.", 4)) {
        const char *f = name + 4;
        if (strcmp(f, "id") && strcmp(f, "pipeline") && strcmp(f, "version") && strcmp(f, "date") &&
            strcmp(f, "trigger")) {
            seterr(err, errsize, "unknown placeholder \"${%s}\" (run has id, pipeline, version, date, trigger)", name);
            return WEIR_EINVAL;
        }
        v = json_object_get(c->run, f);
        if (!v) {
            seterr(err, errsize, "placeholder \"${%s}\": the claim's run has no \"%s\"", name, f);
            return WEIR_EINVAL;
        }
    } else if (!strncmp(name, "tasks.", 6)) {
        char *mid = strstr(name + 6, ".outputs.");
        if (!mid || mid == name + 6 || !mid[9] || memchr(name + 6, '.', (size_t)(mid - name - 6)) ||
            strchr(mid + 9, '.')) {
            seterr(err, errsize, "malformed placeholder \"${%s}\" (write ${tasks.NAME.outputs.OUTPUT})", name);
            return WEIR_EINVAL;
        }
        char key[512];
        snprintf(key, sizeof key, "%.*s.%s", (int)(mid - name - 6), name + 6, mid + 9);
        v = json_object_get(c->inputs, key);
        if (!v) return 0; /* the upstream task produced no such output: "" as the protocol says */
        *vp = v;
        return 0;
    } else if (!strncmp(name, "models.", 7) || !strncmp(name, "training_data.", 14)) {
        /* a registry model's file, or the dataset its version was trained on (its lineage) */
        int data = name[0] == 't', skip = data ? 14 : 7;
        v = json_object_get(c->inputs, name);
        const char *last = strrchr(name, '.');
        if (last <= name + skip) {
            seterr(err, errsize, "malformed placeholder \"${%s}\" (write ${%s.NAME.ALIAS})", name,
                   data ? "training_data" : "models");
            return WEIR_EINVAL;
        }
        if (!v) {
            int n = (int)(last - name - skip);
            const char *model = name + skip, *what = last[1] >= '0' && last[1] <= '9' ? "version" : "alias";
            if (data)
                seterr(err, errsize,
                       "model %.*s has no %s %s with a training dataset in the registry (its lineage names none, or "
                       "there is no such %s; see weir models show %.*s)", n, model, what, last + 1, what, n, model);
            else
                seterr(err, errsize, "model %.*s has no %s %s in the registry (see weir models show %.*s)", n, model,
                       what, last + 1, n, model);
            return WEIR_EINVAL;
        }
    } else {
        seterr(err, errsize,
               "unknown placeholder \"${%s}\" (use ${params.NAME}, ${tasks.NAME.outputs.OUTPUT}, ${models.NAME.ALIAS}, ${training_data.NAME.ALIAS} "
               "or ${run.FIELD}; write $$ for a literal $)",
               name);
        return WEIR_EINVAL;
    }
    *vp = v;
    return 0;
}

/* Appends the text of one "${ref}" to out; an absent upstream output appends nothing. */
static int resolve(const wk_subst_ctx_t *c, const char *ref, size_t len, weir_buf_t *out, char *err,
                   size_t errsize) {
    const json_t *v;
    int rc = lookup(c, ref, len, &v, err, errsize);
    if (rc || !v) return rc;
    char *text = wk_value_text(v);
    if (!text) return WEIR_ENOMEM;
    rc = weir_buf_append(out, text, strlen(text));
    free(text);
    return rc;
}

int wk_subst(const wk_subst_ctx_t *ctx, const char *s, weir_buf_t *out, char *err, size_t errsize) {
    const char *p = s;
    int rc;
    while (*p) {
        const char *d = strchr(p, '$');
        if (!d) return weir_buf_append(out, p, strlen(p));
        if ((rc = weir_buf_append(out, p, (size_t)(d - p)))) return rc;
        if (d[1] == '$') {
            if ((rc = weir_buf_append(out, "$", 1))) return rc;
            p = d + 2;
        } else if (d[1] == '{') {
            const char *close = strchr(d + 2, '}');
            if (!close) {
                seterr(err, errsize, "unterminated \"${\" in \"%.200s\"", s);
                return WEIR_EINVAL;
            }
            if ((rc = resolve(ctx, d + 2, (size_t)(close - d - 2), out, err, errsize))) return rc;
            p = close + 1;
        } else {
            if ((rc = weir_buf_append(out, "$", 1))) return rc;
            p = d + 1;
        }
    }
    if (!out->data) return weir_buf_append(out, "", 0);
    return 0;
}

json_t *wk_subst_json(const wk_subst_ctx_t *ctx, const json_t *v, char *err, size_t errsize) {
    const char *str = json_string_value(v);
    size_t slen = str ? strlen(str) : 0;
    if (str && slen > 3 && !strncmp(str, "${", 2) && str[slen - 1] == '}' && !memchr(str + 2, '}', slen - 3) &&
        !memchr(str + 2, '$', slen - 3)) {
        /* exactly one placeholder: the value keeps its type (C = params.c is a number) */
        const json_t *val;
        if (lookup(ctx, str + 2, slen - 3, &val, err, errsize)) return NULL;
        return val ? json_deep_copy(val) : json_string("");
    }
    if (json_is_string(v)) {
        weir_buf_t b;
        weir_buf_init(&b, (size_t)16 << 20);
        int rc = wk_subst(ctx, json_string_value(v), &b, err, errsize);
        if (rc == WEIR_ELIMIT) seterr(err, errsize, "a string is over 16 MiB after its placeholders were filled in");
        json_t *r = rc ? NULL : json_stringn(b.data ? b.data : "", b.len);
        weir_buf_free(&b);
        return r;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            json_t *y = wk_subst_json(ctx, x, err, errsize);
            if (!y) { json_decref(a); return NULL; }
            json_array_append_new(a, y);
        }
        return a;
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            json_t *y = wk_subst_json(ctx, x, err, errsize);
            if (!y) { json_decref(o); return NULL; }
            json_object_set_new(o, k, y);
        }
        return o;
    }
    return json_deep_copy(v);
}

void wk_env_name(const char *prefix, const char *name, char *out, size_t size) {
    size_t n = (size_t)snprintf(out, size, "%s", prefix);
    for (const char *p = name; *p && n + 1 < size; p++)
        out[n++] = *p == '-' || *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    if (n < size) out[n] = '\0';
}

/* A small growable "NAME=value" list where a later name replaces an earlier one. */
typedef struct {
    char **v;
    size_t n, cap;
    int oom;
} envlist_t;

static void env_put(envlist_t *e, const char *name, const char *value) {
    size_t nl = strlen(name);
    char *entry = malloc(nl + strlen(value) + 2);
    if (!entry) { e->oom = 1; return; }
    sprintf(entry, "%s=%s", name, value);
    for (size_t i = 0; i < e->n; i++)
        if (!strncmp(e->v[i], entry, nl + 1)) {
            free(e->v[i]);
            e->v[i] = entry;
            return;
        }
    if (e->n + 2 > e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        char **v = realloc(e->v, cap * sizeof *v);
        if (!v) { free(entry); e->oom = 1; return; }
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = entry;
    e->v[e->n] = NULL;
}

static void env_put_json(envlist_t *e, const char *name, const json_t *v) {
    char *t = wk_value_text(v);
    if (!t) { e->oom = 1; return; }
    env_put(e, name, t);
    free(t);
}

char **wk_env_build(const wk_env_spec_t *s) {
    envlist_t e = {0};
    for (char **p = s->base; p && *p; p++) {
        const char *eq = strchr(*p, '=');
        if (!eq) continue;
        char name[256];
        if ((size_t)(eq - *p) >= sizeof name) continue;
        memcpy(name, *p, (size_t)(eq - *p));
        name[eq - *p] = '\0';
        env_put(&e, name, eq + 1);
    }
    env_put_json(&e, "WEIR_RUN_ID", json_object_get(s->run, "id"));
    env_put_json(&e, "WEIR_PIPELINE", json_object_get(s->run, "pipeline"));
    env_put(&e, "WEIR_TASK", s->task ? s->task : "");
    char num[32];
    snprintf(num, sizeof num, "%d", s->attempt);
    env_put(&e, "WEIR_ATTEMPT", num);
    env_put(&e, "WEIR_OUTPUT_DIR", s->output_dir ? s->output_dir : "");
    env_put(&e, "WEIR_METRICS_FILE", s->metrics_file ? s->metrics_file : "");
    env_put(&e, "WEIR_PROGRESS_FILE", s->progress_file ? s->progress_file : "");
    if (s->gpus) env_put(&e, "CUDA_VISIBLE_DEVICES", s->gpus);
    const char *k;
    json_t *x;
    char name[320];
    json_object_foreach((json_t *)s->params, k, x) {
        wk_env_name("WEIR_PARAM_", k, name, sizeof name);
        env_put_json(&e, name, x);
    }
    if (s->settings) {
        json_t *with = (json_t *)s->settings;
        weir_buf_t b;
        weir_buf_init(&b, (size_t)16 << 20);
        if (weir_dsl_canonical(with, 0, &b)) e.oom = 1;
        else env_put(&e, "WEIR_SETTINGS", b.data ? b.data : "{}");
        weir_buf_free(&b);
    } else {
        env_put(&e, "WEIR_SETTINGS", "{}");
    }
    json_object_foreach((json_t *)s->inputs, k, x) {
        wk_env_name("WEIR_INPUT_", k, name, sizeof name);
        env_put_json(&e, name, x);
    }
    json_object_foreach((json_t *)s->env, k, x) env_put_json(&e, k, x);
    if (e.oom || !e.v) {
        wk_env_free(e.v);
        return NULL;
    }
    return e.v;
}

void wk_env_free(char **env) {
    if (!env) return;
    for (char **p = env; *p; p++) free(*p);
    free(env);
}

const char *wk_env_get(char *const *env, const char *name) {
    size_t n = strlen(name);
    for (char *const *p = env; p && *p; p++)
        if (!strncmp(*p, name, n) && (*p)[n] == '=') return *p + n + 1;
    return NULL;
}

int wk_output_name(const char *file, char *out, size_t size) {
    size_t n = strcspn(file, ".");
    if (!n || n > 63 || n >= size) return WEIR_EINVAL;
    if (!islower((unsigned char)file[0])) return WEIR_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)file[i]) && !isdigit((unsigned char)file[i]) && file[i] != '_')
            return WEIR_EINVAL;
    memcpy(out, file, n);
    out[n] = '\0';
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int wk_collect_outputs(const char *dir, const json_t *declared, json_t **outputs, char *err, size_t errsize) {
    *outputs = NULL;
    DIR *d = opendir(dir);
    if (!d) {
        seterr(err, errsize, "cannot read the outputs directory %s", dir);
        return WEIR_EIO;
    }
    /* sorted, so that the error for two files of one name is the same on every machine */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) { rc = WEIR_ENOMEM; break; }
            names = p;
        }
        if (!(names[n] = strdup(de->d_name))) { rc = WEIR_ENOMEM; break; }
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    json_t *o = json_object();
    json_t *files = json_object();
    for (size_t i = 0; i < n && !rc; i++) {
        char path[4096], oname[64];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (lstat(path, &st) || !S_ISREG(st.st_mode)) {
            seterr(err, errsize, "output \"%s\" in WEIR_OUTPUT_DIR is not a regular file (directories and links are "
                   "not outputs; archive a directory into one file)", names[i]);
            rc = WEIR_EINVAL;
        } else if (wk_output_name(names[i], oname, sizeof oname)) {
            seterr(err, errsize, "file \"%s\" in WEIR_OUTPUT_DIR does not name an output (its name up to the first "
                   "'.' must be a lowercase identifier, like model.bin)", names[i]);
            rc = WEIR_EINVAL;
        } else if (json_object_get(files, oname)) {
            seterr(err, errsize, "files \"%s\" and \"%s\" in WEIR_OUTPUT_DIR both name output \"%s\"",
                   json_string_value(json_object_get(files, oname)), names[i], oname);
            rc = WEIR_EINVAL;
        } else {
            json_object_set_new(files, oname, json_string(names[i]));
            json_object_set_new(o, oname, json_string(path));
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    json_decref(files);
    if (!rc && declared) {
        weir_buf_t miss;
        weir_buf_init(&miss, 2048);
        size_t i;
        json_t *x;
        int count = 0;
        json_array_foreach(declared, i, x) {
            const char *want = json_string_value(x);
            if (want && !json_object_get(o, want)) {
                weir_buf_printf(&miss, "%s\"%s\"", count ? ", " : "", want);
                count++;
            }
        }
        if (count) {
            seterr(err, errsize, "declared output%s %s %s not produced: the step must leave a file named "
                   "OUTPUT or OUTPUT.EXT in WEIR_OUTPUT_DIR", count > 1 ? "s" : "", miss.data, count > 1 ? "were" : "was");
            rc = WEIR_ENOENT;
        }
        weir_buf_free(&miss);
    }
    if (rc) json_decref(o);
    else *outputs = o;
    return rc;
}

int wk_read_metrics(const char *path, json_t **metrics, char *err, size_t errsize) {
    *metrics = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = weir_read_file(path, (size_t)1 << 20, &text, &len);
    if (rc == WEIR_ENOENT) { *metrics = json_object(); return 0; }
    if (rc == WEIR_ELIMIT) {
        seterr(err, errsize, "metrics file WEIR_METRICS_FILE is over 1 MiB");
        return WEIR_EINVAL;
    }
    if (rc) {
        seterr(err, errsize, "cannot read the metrics file %s", path);
        return rc;
    }
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i])) i++;
    if (i == len) { free(text); *metrics = json_object(); return 0; }
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    free(text);
    if (!j) {
        seterr(err, errsize, "metrics file is not valid JSON: line %d, column %d: %s", je.line, je.column, je.text);
        return WEIR_EINVAL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        seterr(err, errsize, "metrics file must hold a JSON object of numbers, like {\"accuracy\": 0.91}");
        return WEIR_EINVAL;
    }
    const char *k;
    json_t *x;
    json_object_foreach(j, k, x) {
        if (!json_is_number(x)) {
            seterr(err, errsize, "metrics file: metric \"%s\" is not a number", k);
            json_decref(j);
            return WEIR_EINVAL;
        }
    }
    *metrics = j;
    return 0;
}

json_t *wk_progress_read(const char *dir, int64_t task_id, int attempt) {
    char adir[1200], path[1300], *text = NULL;
    size_t len = 0;
    wk_attempt_dir(dir, task_id, attempt, adir, sizeof adir);
    snprintf(path, sizeof path, "%s/" WK_PROGRESS_FILE, adir);
    if (weir_read_file(path, 4096, &text, &len)) return NULL;
    json_t *j = json_loadb(text, len, 0, NULL);
    free(text);
    json_t *f = json_object_get(j, "fraction"), *n = json_object_get(j, "note");
    json_t *out = NULL;
    if (json_is_number(f) && (!n || json_is_string(n))) {
        double v = json_number_value(f);
        v = v >= 0 ? (v <= 1 ? v : 1) : 0; /* NaN too */
        out = json_pack("{s:f, s:s%}", "fraction", v, "note", n ? json_string_value(n) : "",
                        n ? (json_string_length(n) > 200 ? (size_t)200 : json_string_length(n)) : (size_t)0);
    }
    json_decref(j);
    return out;
}
