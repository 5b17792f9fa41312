/* link.c — see link.h. Reads the prelude's tables with raw Lua API calls (no script code can
 * run here), builds the JSON as it goes, and keeps everything it allocates reachable from the
 * plan, k->scratch or k->blocks, so that a Lua memory error cannot leak it. */
#include "dsl/link.h"
#include "common/util.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small tools ------------------------------------------------------------------------------ */

static void *link_alloc(dsl_link_t *k, size_t n) {
    if (k->nblocks == k->capblocks) {
        size_t cap = k->capblocks ? k->capblocks * 2 : 16;
        void **b = realloc(k->blocks, cap * sizeof *b);
        if (!b) return NULL;
        k->blocks = b;
        k->capblocks = cap;
    }
    void *p = calloc(1, n ? n : 1);
    if (p) k->blocks[k->nblocks++] = p;
    return p;
}

void dsl_link_release(dsl_link_t *k) {
    for (size_t i = 0; i < k->nblocks; i++) free(k->blocks[i]);
    free(k->blocks);
    k->blocks = NULL;
    k->nblocks = k->capblocks = 0;
    json_decref(k->scratch);
    k->scratch = NULL;
}

static void fail(dsl_link_t *k, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(dsl_link_t *k, int line, const char *fmt, ...) {
    char small[512], *msg = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof small && (msg = malloc((size_t)n + 1))) {
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    k->error(k->ud, line, msg ? msg : small);
    if (msg != small) free(msg);
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* " (did you mean "x"?)" for the closest of the sorted candidates, or "". */
/* A string -> int map with open addressing; keys are borrowed (Lua keeps them alive). */
typedef struct {
    const char *key;
    size_t len;
    int value;
} slot_t;

typedef struct {
    slot_t *slots;
    size_t mask;
} map_t;

static int map_init(dsl_link_t *k, map_t *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    m->slots = link_alloc(k, cap * sizeof *m->slots);
    m->mask = cap - 1;
    return m->slots ? 0 : -1;
}

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static slot_t *map_slot(const map_t *m, const char *key, size_t len) {
    for (size_t i = hash(key, len) & m->mask;; i = (i + 1) & m->mask) {
        slot_t *s = &m->slots[i];
        if (!s->key || (s->len == len && !memcmp(s->key, key, len))) return s;
    }
}

/* Adds key unless present (the first declaration keeps the name). */
static void map_put(map_t *m, const char *key, size_t len, int value) {
    slot_t *s = map_slot(m, key, len);
    if (!s->key) s->key = key, s->len = len, s->value = value;
}

static int map_get(const map_t *m, const char *key, size_t len, int *value) {
    const slot_t *s = map_slot(m, key, len);
    if (s->key) *value = s->value;
    return s->key != NULL;
}

/* ---- Lua to JSON -------------------------------------------------------------------------------- */

static int cmp_json(const void *pa, const void *pb) {
    const json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
    if (json_is_object(a)) a = json_object_get(a, "name");
    if (json_is_object(b)) b = json_object_get(b, "name");
    const char *x = json_string_value(a), *y = json_string_value(b);
    return strcmp(x ? x : "", y ? y : "");
}

/* Sorts a JSON array of strings (or of objects, by "name") bytewise, in place. */
static int sort_array(dsl_link_t *k, json_t *a) {
    size_t n = json_array_size(a);
    if (n < 2) return 0;
    json_t **items = malloc(n * sizeof *items);
    if (!items) return -1;
    for (size_t i = 0; i < n; i++) items[i] = json_incref(json_array_get(a, i));
    qsort(items, n, sizeof *items, cmp_json);
    json_array_clear(a);
    int rc = 0;
    for (size_t i = 0; i < n; i++) rc |= json_array_append_new(a, items[i]);
    free(items);
    (void)k;
    return rc;
}

/* Conversion runs after the script's limits are lifted, and a script can make a plan table
 * reach one table many times (x = { a = x, b = x }, 22 times over, is 4 million paths): it
 * would be copied once per path. The prelude copies what it checks, so a plan built by the
 * rules stays far below these; they bound the time and memory of conversion regardless. A
 * plan of 10,000 tasks has a few hundred thousand values. */
#define LINK_MAX_NODES ((size_t)4 << 20)
#define LINK_MAX_BYTES ((size_t)128 << 20)

static int conv_into(dsl_link_t *k, lua_State *L, int idx, json_t *parent, const char *key, int depth);

static void conv_fail(dsl_link_t *k, const char *what) {
    fail(k, 0, "internal error: the plan has %s", what);
}

/* Fills dst, already attached to its parent, from the table at idx. */
static int conv_table(dsl_link_t *k, lua_State *L, int idx, json_t *dst, int depth, int sorted) {
    luaL_checkstack(L, 4, "plan");
    if (json_is_array(dst)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            int rc = conv_into(k, L, lua_gettop(L), dst, NULL, depth);
            lua_pop(L, 1);
            if (rc) return rc;
        }
        if (sorted && sort_array(k, dst)) { k->oom = 1; return -1; }
        return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t klen;
        if (lua_type(L, -2) != LUA_TSTRING) { conv_fail(k, "a key that is not a string"); lua_pop(L, 2); return -1; }
        const char *key = lua_tolstring(L, -2, &klen);
        if (strlen(key) != klen) { conv_fail(k, "a key with a NUL byte"); lua_pop(L, 2); return -1; }
        k->bytes += klen;
        int rc = conv_into(k, L, lua_gettop(L), dst, key, depth);
        lua_pop(L, 1);
        if (rc) { lua_pop(L, 1); return rc; }
    }
    return 0;
}

/* Converts the value at idx and attaches it to parent (an object when key != NULL). */
static int conv_into(dsl_link_t *k, lua_State *L, int idx, json_t *parent, const char *key, int depth) {
    json_t *v = NULL;
    int sorted = 0;
    if (++k->nodes > LINK_MAX_NODES || k->bytes > LINK_MAX_BYTES) {
        if (!k->too_big)
            fail(k, 0, "the plan is too large (more than %zu values or %zu MiB of text): does a table reach itself "
                       "many times over?", LINK_MAX_NODES, LINK_MAX_BYTES >> 20);
        k->too_big = 1;
        return -1;
    }
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        k->bytes += len;
        /* the prelude refuses these with the field's name; this is the backstop for all others */
        if (memchr(s, '\0', len)) {
            fail(k, 0, "the plan has a string with a NUL byte%s%s%s", key ? " (field \"" : "", key ? key : "",
                 key ? "\")" : "");
            return -1;
        }
        if (!(v = json_stringn(s, len))) { conv_fail(k, "a string that is not UTF-8"); return -1; }
        break;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) v = json_integer(lua_tointeger(L, idx));
        else if (!(v = json_real(lua_tonumber(L, idx)))) { conv_fail(k, "a number that is not finite"); return -1; }
        break;
    case LUA_TBOOLEAN: v = json_boolean(lua_toboolean(L, idx)); break;
    case LUA_TTABLE: {
        if (depth > 32) { conv_fail(k, "tables nested too deeply"); return -1; }
        int is_array = 0;
        if (lua_getmetatable(L, idx)) {
            is_array = lua_rawequal(L, -1, k->array_mt);
            sorted = lua_rawequal(L, -1, k->sorted_mt);
            lua_pop(L, 1);
        }
        v = is_array || sorted ? json_array() : json_object();
        break;
    }
    default: conv_fail(k, "a value that is not JSON"); return -1;
    }
    if (!v) { k->oom = 1; return -1; }
    /* keys are names the prelude checked, UTF-8 included */
    if (key ? json_object_set_new_nocheck(parent, key, v) : json_array_append_new(parent, v)) {
        conv_fail(k, "a key that is not UTF-8");
        return -1;
    }
    return json_is_array(v) || json_is_object(v) ? conv_table(k, L, idx, v, depth + 1, sorted) : 0;
}

/* The value at idx as JSON, kept alive by k->scratch; NULL after reporting why. */
static json_t *convert(dsl_link_t *k, lua_State *L, int idx) {
    if (!k->scratch && !(k->scratch = json_array())) { k->oom = 1; return NULL; }
    if (conv_into(k, L, idx, k->scratch, NULL, 0)) return NULL;
    return json_array_get(k->scratch, json_array_size(k->scratch) - 1);
}

/* ---- linking ------------------------------------------------------------------------------------ */

/* Linking runs after the script's limits are lifted, so what it does must stay proportional to
 * what the script built: dependencies are capped, and so are "did you mean" searches, which
 * cost a pass over the names each. */
#define LINK_MAX_EDGES 1000000
#define LINK_MAX_SUGGESTIONS 200

enum { KIND_TASK, KIND_GATE, KIND_APPROVAL };
static const char *const kind_names[] = {"task", "gate", "approval"};
static const char *const run_fields[] = {"date", "id", "pipeline", "trigger", "version"};
static const char *const signal_fields[] = {"id", "kind", "subject", "value"};

typedef struct {
    const char *name;
    int line, kind;
    json_t *json;
    const char **outputs;  /* sorted */
    size_t noutputs;
    size_t up_first, up_count;  /* in edges[] */
} ltask_t;

typedef struct {
    const char *name;
    int *members;
    size_t nmembers;
} lgroup_t;

typedef struct {
    dsl_link_t *k;
    lua_State *L;
    ltask_t *tasks;
    size_t ntasks;
    lgroup_t *groups;
    size_t ngroups;
    map_t names;              /* task i -> i, group g -> -(g + 2) */
    map_t params;
    int have_pipeline;
    const char **all_names;   /* sorted task and group names, for suggestions; built when needed */
    size_t nall;
    const char **param_names; /* sorted */
    size_t nparams;
    int *edges;               /* upstream task indices, per task in [up_first, up_first + up_count) */
    size_t nedges, capedges;
    unsigned *stamp;          /* stamp[j] == current + 1: j is already upstream of the current task */
    size_t current;
    char ctxbuf[96];          /* 'task "train"', made when a message needs it */
    int ctx_task;             /* the task ctxbuf names; -1: none yet */
    int line;
    int in_trigger;
    int suggestions;          /* "did you mean" searches so far */
    int too_many_edges;
} link_t;

/* 'task "train"' or 'trigger on_signal "drift"': what the messages are about. */
static const char *ctx(link_t *l) {
    if (!l->in_trigger && l->ctx_task != (int)l->current) {
        const ltask_t *t = &l->tasks[l->current];
        snprintf(l->ctxbuf, sizeof l->ctxbuf, "%s \"%s\"", kind_names[t->kind], t->name);
        l->ctx_task = (int)l->current;
    }
    return l->ctxbuf;
}

/* The sorted task and group names to search for a suggestion, or NULL when it is not worth it. */
static const char **names_for_suggestion(link_t *l) {
    if (l->suggestions++ >= LINK_MAX_SUGGESTIONS) return NULL;
    if (l->all_names) return l->all_names;
    l->all_names = link_alloc(l->k, (l->ntasks + l->ngroups + 1) * sizeof *l->all_names);
    if (!l->all_names) return NULL;
    for (size_t i = 0; i < l->ntasks; i++) l->all_names[l->nall++] = l->tasks[i].name;
    for (size_t g = 0; g < l->ngroups; g++) l->all_names[l->nall++] = l->groups[g].name;
    qsort(l->all_names, l->nall, sizeof *l->all_names, cmp_cstr);
    return l->all_names;
}

static int cmp_json_str(const void *a, const void *b) {
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* Sorts a JSON array of strings in place (plans are canonical). 0, or -1 out of memory. */
static int sort_strings(json_t *a) {
    size_t n = json_array_size(a);
    json_t **v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return -1;
    for (size_t i = 0; i < n; i++) v[i] = json_incref(json_array_get(a, i));
    qsort(v, n, sizeof *v, cmp_json_str);
    json_array_clear(a);
    int rc = 0;
    for (size_t i = 0; i < n; i++) rc |= json_array_append_new(a, v[i]);
    free(v);
    return rc;
}

static void add_up(link_t *l, int j) {
    if (l->stamp[j] == l->current + 1) return;
    if (l->nedges >= LINK_MAX_EDGES) {
        if (!l->too_many_edges++)
            fail(l->k, l->tasks[l->current].line,
                 "the pipeline has more than %d dependencies; join large groups through a noop task", LINK_MAX_EDGES);
        return;
    }
    l->stamp[j] = (unsigned)l->current + 1;
    if (l->nedges == l->capedges) {
        size_t cap = l->capedges ? l->capedges * 2 : 1024;
        int *e = link_alloc(l->k, cap * sizeof *e);
        if (!e) { l->k->oom = 1; return; }
        if (l->nedges) memcpy(e, l->edges, l->nedges * sizeof *e);
        l->edges = e;  /* the old array stays with k->blocks until the release */
        l->capedges = cap;
    }
    l->edges[l->nedges++] = j;
    l->tasks[l->current].up_count++;
}

/* Adds the task or the group's members called name[0..len) upstream; 0, or -1 if unknown. */
static int add_named(link_t *l, const char *name, size_t len) {
    int v;
    if (!map_get(&l->names, name, len, &v)) return -1;
    if (v >= 0) {
        add_up(l, v);
    } else {
        const lgroup_t *g = &l->groups[-v - 2];
        for (size_t m = 0; m < g->nmembers; m++) add_up(l, g->members[m]);
    }
    return 0;
}

static int one_of(const char *s, size_t n, const char *const *list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && !memcmp(list[i], s, n)) return 1;
    return 0;
}

/* "${models.NAME.REF}": NAME a registry model name, REF an alias or a version number (split at
 * the last dot: names may hold dots, aliases may not). The task's plan lists the references in
 * "models" (sorted later), so the scheduler resolves them when it hands the task out.
 * "${training_data.NAME.REF}" is the dataset that version was trained on, listed as
 * "training_data:NAME.REF" (migrations/0006_training_data.sql). */
static void add_model(link_t *l, const char *ref, size_t len, const char *rest, size_t rlen, int data) {
    const char *last = NULL;
    for (const char *p = rest; p < rest + rlen; p++)
        if (*p == '.') last = p;
    size_t nlen = last ? (size_t)(last - rest) : 0, alen = last ? (size_t)(rest + rlen - last - 1) : 0;
    int ok = nlen && nlen <= 63 && alen && alen <= 63 && rest[0] >= 'a' && rest[0] <= 'z';
    for (size_t i = 0; ok && i < nlen; i++)
        ok = (rest[i] >= 'a' && rest[i] <= 'z') || (rest[i] >= '0' && rest[i] <= '9') || strchr("_.-", rest[i]);
    int digits = ok && last[1] >= '0' && last[1] <= '9';
    for (size_t i = 0; ok && i < alen; i++) {
        char c = last[1 + i];
        ok = digits ? (c >= '0' && c <= '9') : ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
    }
    if (ok && digits && last[1] == '0') ok = 0;
    if (!ok) {
        const char *fn = data ? "training_data" : "model";
        fail(l->k, l->line, "%s has a malformed model reference \"${%.*s}\" (write %s(\"NAME\"), %s(\"NAME\", "
             "\"ALIAS\") or %s(\"NAME\", VERSION))", ctx(l), (int)len, ref, fn, fn, fn);
        return;
    }
    char entry[160];
    snprintf(entry, sizeof entry, "%s%.*s", data ? "training_data:" : "", (int)rlen, rest);
    size_t elen = strlen(entry);
    json_t *t = l->tasks[l->current].json;
    if (!t) return;
    json_t *list = json_object_get(t, "models");
    if (!list && json_object_set_new(t, "models", list = json_array())) { l->k->oom = 1; return; }
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
        if (!strcmp(json_string_value(v), entry)) return;
    if (json_array_append_new(list, json_stringn(entry, elen))) l->k->oom = 1;
}

/* One "${ref}": checks it, and on a task adds what "${tasks.NAME.outputs.OUT}" implies. */
static void check_ref(link_t *l, const char *ref, size_t len) {
    char sug[160];
    const char *dot = memchr(ref, '.', len);
    size_t nslen = dot ? (size_t)(dot - ref) : len;
    const char *rest = dot ? dot + 1 : ref + len;
    size_t rlen = (size_t)(ref + len - rest);
    int n = (int)len, rn = (int)rlen;
    if (dot && nslen == 6 && !memcmp(ref, "params", 6)) {
        int v;
        if (l->have_pipeline && !map_get(&l->params, rest, rlen, &v))
            fail(l->k, l->line, "%s uses parameter \"%.*s\", which is not declared in pipeline params%s", ctx(l), rn,
                 rest, l->suggestions++ < LINK_MAX_SUGGESTIONS ? weir_did_you_mean(rest, rlen, l->param_names, l->nparams, sug, sizeof sug) : "");
    } else if (dot && nslen == 5 && !memcmp(ref, "tasks", 5) && !l->in_trigger) {
        const char *mid = memmem(rest, rlen, ".outputs.", 9);
        const char *out = mid ? mid + 9 : NULL;
        size_t tlen = mid ? (size_t)(mid - rest) : 0, olen = mid ? (size_t)(rest + rlen - out) : 0;
        int v;
        if (!mid || memchr(rest, '.', tlen) || !olen || memchr(out, '.', olen)) {
            fail(l->k, l->line, "%s has a malformed reference \"${%.*s}\" (write ${tasks.NAME.outputs.OUTPUT})", ctx(l),
                 n, ref);
        } else if (!map_get(&l->names, rest, tlen, &v)) {
            const char **all = names_for_suggestion(l);
            fail(l->k, l->line, "%s uses an output of unknown task \"%.*s\"%s", ctx(l), (int)tlen, rest,
                 all ? weir_did_you_mean(rest, tlen, all, l->nall, sug, sizeof sug) : "");
        } else if (v < 0) {
            fail(l->k, l->line, "%s uses \"${%.*s}\", but \"%.*s\" is a foreach group: use %.*s.outputs.%.*s (a list) instead",
                 ctx(l), n, ref, (int)tlen, rest, (int)tlen, rest, (int)olen, out);
        } else {
            const ltask_t *t = &l->tasks[v];
            if (!one_of(out, olen, t->outputs, t->noutputs)) {
                const char *hint = weir_did_you_mean(out, olen, t->outputs, t->noutputs, sug, sizeof sug);
                char list[512];
                if (!*hint && t->noutputs) {
                    size_t used = (size_t)snprintf(list, sizeof list, " (its outputs: ");
                    for (size_t i = 0; i < t->noutputs && used < sizeof list; i++)
                        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", t->outputs[i]);
                    if (used < sizeof list) snprintf(list + used, sizeof list - used, ")");
                    hint = list;
                } else if (!*hint) {
                    snprintf(list, sizeof list, " (it declares no outputs; add outputs = { \"%.*s\" } to task \"%s\")",
                             (int)olen, out, t->name);
                    hint = list;
                }
                fail(l->k, l->line, "%s uses unknown output \"%.*s\" of task \"%s\"%s", ctx(l), (int)olen, out, t->name,
                     hint);
            }
            add_up(l, v);
        }
    } else if (dot && nslen == 6 && !memcmp(ref, "models", 6) && !l->in_trigger) {
        add_model(l, ref, len, rest, rlen, 0);
    } else if (dot && nslen == 13 && !memcmp(ref, "training_data", 13) && !l->in_trigger) {
        add_model(l, ref, len, rest, rlen, 1);
    } else if (dot && nslen == 3 && !memcmp(ref, "run", 3) && !l->in_trigger) {
        if (!one_of(rest, rlen, run_fields, 5))
            fail(l->k, l->line, "%s uses unknown run field \"%.*s\"%s (run has date, id, pipeline, trigger, version)",
                 ctx(l), rn, rest, weir_did_you_mean(rest, rlen, run_fields, 5, sug, sizeof sug));
    } else if (dot && nslen == 6 && !memcmp(ref, "signal", 6) && l->in_trigger) {
        if (rlen > 11 && !memcmp(rest, "attributes.", 11)) {
            /* ${signal.attributes.NAME}: any attribute the signal carries ("" when absent) */
        } else if (!one_of(rest, rlen, signal_fields, 4))
            fail(l->k, l->line, "%s uses unknown signal field \"%.*s\"%s (signal has id, kind, subject, value, attributes.NAME)", ctx(l), rn,
                 rest, weir_did_you_mean(rest, rlen, signal_fields, 4, sug, sizeof sug));
    } else if (dot && nslen == 6 && !memcmp(ref, "signal", 6)) {
        fail(l->k, l->line, "%s uses \"${%.*s}\", but signal fields are only available in trigger rules", ctx(l), n, ref);
    } else {
        fail(l->k, l->line, "%s has an unknown reference \"${%.*s}\" (use %s)", ctx(l), n, ref,
             l->in_trigger ? "${params.NAME} or ${signal.FIELD}"
                           : "${params.NAME}, ${tasks.NAME.outputs.OUTPUT}, ${models.NAME.ALIAS}, "
                             "${training_data.NAME.ALIAS} or ${run.FIELD}");
    }
}

/* Every "${...}" in the strings of v. "$$" is a literal "$". */
static void scan(link_t *l, const json_t *v) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v), *p = s, *end = s + json_string_length(v);
        while ((p = memchr(p, '$', (size_t)(end - p)))) {
            if (p + 1 < end && p[1] == '$') { p += 2; continue; }
            if (p + 1 >= end || p[1] != '{') { p++; continue; }
            const char *close = memchr(p + 2, '}', (size_t)(end - p - 2));
            if (!close) {
                fail(l->k, l->line, "%s has an unterminated \"${\" in \"%s\"", ctx(l), s);
                return;
            }
            check_ref(l, p + 2, (size_t)(close - p - 2));
            p = close + 1;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) scan(l, x);
    } else if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach((json_t *)v, key, x) scan(l, x);
    }
}

/* field of the table at idx, pushed; its Lua type returned. */
static int field(lua_State *L, int idx, const char *name) {
    lua_pushstring(L, name);
    return lua_rawget(L, idx);
}

static const char *string_field(lua_State *L, int idx, const char *name) {
    field(L, idx, name);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    lua_pop(L, 1);  /* the string stays alive: the table holds it */
    return s;
}

/* Reads the tasks and groups the prelude declared. decls, lines and groups are stack indices. */
static int read_declarations(link_t *l, int decls, int lines, int groups, int pipeline) {
    lua_State *L = l->L;
    dsl_link_t *k = l->k;
    l->ntasks = (size_t)lua_rawlen(L, decls);
    size_t ngroups = 0;
    for (lua_pushnil(L); lua_next(L, groups); lua_pop(L, 1)) ngroups++;
    l->tasks = link_alloc(k, (l->ntasks + 1) * sizeof *l->tasks);
    l->groups = link_alloc(k, (ngroups + 1) * sizeof *l->groups);
    l->stamp = link_alloc(k, (l->ntasks + 1) * sizeof *l->stamp);
    if (!l->tasks || !l->groups || !l->stamp || map_init(k, &l->names, l->ntasks + ngroups)) return -1;
    for (size_t i = 0; i < l->ntasks; i++) {
        ltask_t *t = &l->tasks[i];
        lua_rawgeti(L, decls, (lua_Integer)i + 1);
        int d = lua_gettop(L);
        t->name = string_field(L, d, "name");
        const char *kind = string_field(L, d, "kind");
        t->kind = !strcmp(kind, "gate") ? KIND_GATE : !strcmp(kind, "approval") ? KIND_APPROVAL : KIND_TASK;
        lua_rawgeti(L, lines, (lua_Integer)i + 1);
        t->line = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (field(L, d, "outputs") == LUA_TTABLE) {
            t->noutputs = (size_t)lua_rawlen(L, -1);
            t->outputs = link_alloc(k, (t->noutputs + 1) * sizeof *t->outputs);
            if (!t->outputs) return -1;
            for (size_t o = 0; o < t->noutputs; o++) {
                lua_rawgeti(L, -1, (lua_Integer)o + 1);
                t->outputs[o] = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
                lua_pop(L, 1);
            }
            qsort(t->outputs, t->noutputs, sizeof *t->outputs, cmp_cstr);
        }
        lua_pop(L, 2);
        map_put(&l->names, t->name, strlen(t->name), (int)i);
    }
    for (lua_pushnil(L); lua_next(L, groups); lua_pop(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE) continue;
        lgroup_t *g = &l->groups[l->ngroups];
        g->name = lua_tostring(L, -2);
        size_t n = (size_t)lua_rawlen(L, -1);
        g->members = link_alloc(k, (n + 1) * sizeof *g->members);
        if (!g->members) return -1;
        for (size_t m = 0; m < n; m++) {
            lua_rawgeti(L, -1, (lua_Integer)m + 1);
            size_t len;
            const char *member = lua_tolstring(L, -1, &len);
            int v;
            if (member && map_get(&l->names, member, len, &v) && v >= 0) g->members[g->nmembers++] = v;
            lua_pop(L, 1);
        }
        map_put(&l->names, g->name, strlen(g->name), -(int)l->ngroups - 2);
        l->ngroups++;
    }
    /* parameter names, for "${params.NAME}" */
    l->have_pipeline = lua_type(L, pipeline) == LUA_TTABLE;
    size_t nparams = 0;
    if (l->have_pipeline && field(L, pipeline, "params") == LUA_TTABLE) {
        int p = lua_gettop(L);
        for (lua_pushnil(L); lua_next(L, p); lua_pop(L, 1)) nparams++;
        l->param_names = link_alloc(k, (nparams + 1) * sizeof *l->param_names);
        if (!l->param_names || map_init(k, &l->params, nparams)) return -1;
        for (lua_pushnil(L); lua_next(L, p); lua_pop(L, 1)) {
            if (lua_type(L, -2) != LUA_TSTRING) continue;
            size_t len;
            const char *name = lua_tolstring(L, -2, &len);
            l->param_names[l->nparams++] = name;
            map_put(&l->params, name, len, 0);
        }
        qsort(l->param_names, l->nparams, sizeof *l->param_names, cmp_cstr);
    } else if (map_init(k, &l->params, 0)) {
        return -1;
    }
    if (l->have_pipeline) lua_pop(L, 1);
    return 0;
}

/* A retries or resources object: the builtin values, then the pipeline's defaults, then the task's. */
static json_t *merged(dsl_link_t *k, const json_t *base, const json_t *own) {
    json_t *m = json_copy((json_t *)base);
    if (!m || json_object_update(m, (json_t *)own) || json_array_append_new(k->scratch, m)) {
        k->oom = 1;
        return NULL;
    }
    return m;
}

/* Sets key on obj to v (a new reference) unless obj has it. */
static void set_default(dsl_link_t *k, json_t *obj, const char *key, json_t *v) {
    if (json_object_get(obj, key)) {
        json_decref(v);
        return;
    }
    if (!v || json_object_set_new(obj, key, v)) k->oom = 1;
}

/* Links task i: its JSON, upstream tasks, references and defaults. */
static void link_task(link_t *l, size_t i, int decls, int afters, int partials, const json_t *defaults,
                      json_t *retries, json_t *resources, json_t *tasks) {
    lua_State *L = l->L;
    dsl_link_t *k = l->k;
    ltask_t *t = &l->tasks[i];
    char sug[160];
    l->current = i;
    l->line = t->line;
    l->in_trigger = 0;
    t->up_first = l->nedges;

    lua_rawgeti(L, decls, (lua_Integer)i + 1);
    if (conv_into(k, L, lua_gettop(L), tasks, NULL, 0)) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    json_t *tj = t->json = json_array_get(tasks, json_array_size(tasks) - 1);

    lua_rawgeti(L, afters, (lua_Integer)i + 1);
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer a = 1; a <= n; a++) {
            lua_rawgeti(L, -1, a);
            size_t len;
            const char *name = lua_tolstring(L, -1, &len);
            if (name && add_named(l, name, len)) {
                const char **all = names_for_suggestion(l);
                fail(k, t->line, "%s depends on unknown task \"%s\"%s", ctx(l), name,
                     all ? weir_did_you_mean(name, len, all, l->nall, sug, sizeof sug) : "");
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);

    lua_rawgeti(L, partials, (lua_Integer)i + 1);
    int partial = lua_type(L, -1) == LUA_TTABLE ? lua_gettop(L) : 0;
    const char *rule = NULL;
    if (partial && field(L, partial, "trigger_rule") == LUA_TSTRING) rule = lua_tostring(L, -1);
    if (partial) lua_pop(L, 1);

    if (t->kind == KIND_TASK) {
        scan(l, json_object_get(tj, "command"));
        scan(l, json_object_get(tj, "with"));
        scan(l, json_object_get(tj, "env"));
        json_t *r = retries, *res = resources;
        if (partial && field(L, partial, "retries") == LUA_TTABLE) {
            json_t *own = convert(k, L, lua_gettop(L));
            r = own ? merged(k, retries, own) : NULL;
        }
        if (partial) lua_pop(L, 1);
        if (partial && field(L, partial, "resources") == LUA_TTABLE) {
            json_t *own = convert(k, L, lua_gettop(L));
            res = own ? merged(k, resources, own) : NULL;
        }
        if (partial) lua_pop(L, 1);
        if (r && json_integer_value(json_object_get(r, "max_backoff_ms")) < json_integer_value(json_object_get(r, "backoff_ms")))
            fail(k, t->line, "%s: retries.max_backoff is shorter than retries.backoff", ctx(l));
        /* Tasks without their own retries or resources share one object: the plan is read-only. */
        if (r) set_default(k, tj, "retries", json_incref(r));
        if (res) set_default(k, tj, "resources", json_incref(res));
        json_t *d;
        set_default(k, tj, "timeout_ms", (d = json_object_get(defaults, "timeout_ms")) ? json_incref(d) : json_integer(0));
        set_default(k, tj, "priority", (d = json_object_get(defaults, "priority")) ? json_incref(d) : json_integer(0));
        if (!rule) rule = json_string_value(json_object_get(defaults, "trigger_rule"));
    } else if (t->kind == KIND_GATE) {
        const char *from = json_string_value(json_object_get(json_object_get(tj, "gate"), "metrics_from"));
        int v;
        if (from && *from) {
            if (!map_get(&l->names, from, strlen(from), &v)) {
                const char **all = names_for_suggestion(l);
                fail(k, t->line, "%s takes metrics from unknown task \"%s\"%s", ctx(l), from,
                     all ? weir_did_you_mean(from, strlen(from), all, l->nall, sug, sizeof sug) : "");
            } else if (v < 0) {
                fail(k, t->line, "%s: metrics must name one task, not the foreach group \"%s\"", ctx(l), from);
            } else {
                add_up(l, v);
            }
        }
    } else {
        scan(l, json_object_get(json_object_get(tj, "approval"), "message"));
    }
    lua_pop(L, 1);  /* the partial */
    set_default(k, tj, "trigger_rule", json_string(rule ? rule : "all_success"));
}

/* Kahn's algorithm takes away every task not on or behind a cycle; from each task left, following
 * its first remaining upstream task comes back to a task already on the walk: a cycle. */
static void find_cycles(link_t *l) {
    size_t n = l->ntasks;
    dsl_link_t *k = l->k;
    size_t *indeg = link_alloc(k, (n + 1) * sizeof *indeg), *queue = link_alloc(k, (n + 1) * sizeof *queue);
    size_t *first = link_alloc(k, (n + 2) * sizeof *first), *down = link_alloc(k, (l->nedges + 1) * sizeof *down);
    size_t *at = link_alloc(k, (n + 1) * sizeof *at), *path = link_alloc(k, (n + 1) * sizeof *path);
    char *done = link_alloc(k, n + 1);
    if (!indeg || !queue || !first || !down || !at || !path || !done) { k->oom = 1; return; }
    for (size_t i = 0; i < n; i++) {
        indeg[i] = l->tasks[i].up_count;
        for (size_t e = 0; e < l->tasks[i].up_count; e++) first[l->edges[l->tasks[i].up_first + e] + 1]++;
    }
    for (size_t i = 0; i < n; i++) first[i + 1] += first[i];
    for (size_t i = 0; i < n; i++) at[i] = first[i];  /* fill cursors */
    for (size_t i = 0; i < n; i++)
        for (size_t e = 0; e < l->tasks[i].up_count; e++) {
            size_t j = (size_t)l->edges[l->tasks[i].up_first + e];
            down[at[j]++] = i;
        }
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < n; i++) if (!indeg[i]) queue[tail++] = i;
    while (head < tail) {
        size_t i = queue[head++];
        for (size_t e = first[i]; e < first[i + 1]; e++)
            if (--indeg[down[e]] == 0) queue[tail++] = down[e];
    }
    if (tail == n) return;
    for (size_t i = 0; i < n; i++) at[i] = 0;  /* position on the current walk + 1 */
    for (size_t s = 0; s < n; s++) {
        if (!indeg[s] || done[s]) continue;
        size_t len = 0, cur = s;
        int found = 1;
        while (!done[cur] && !at[cur]) {
            at[cur] = ++len;
            path[len - 1] = cur;
            size_t next = n;  /* the earliest declared remaining upstream task */
            for (size_t e = 0; e < l->tasks[cur].up_count; e++) {
                size_t j = (size_t)l->edges[l->tasks[cur].up_first + e];
                if (indeg[j] && j < next) next = j;
            }
            if (next == n) { found = 0; break; }
            cur = next;
        }
        if (found && at[cur] && !done[cur]) {
            size_t from = at[cur] - 1, lo = from;
            for (size_t p = from; p < len; p++) if (path[p] < path[lo]) lo = p;
            weir_buf_t b;
            weir_buf_init(&b, 1 << 16);
            size_t count = len - from;
            for (size_t q = 0; q <= count; q++) {
                size_t p = from + (lo - from + q) % count;
                weir_buf_printf(&b, "%s%s", q ? " -> " : "", l->tasks[path[p]].name);
            }
            fail(k, l->tasks[path[lo]].line, "dependency cycle: %s (each task depends on the next)", b.data ? b.data : "");
            weir_buf_free(&b);
        }
        for (size_t p = 0; p < len; p++) done[path[p]] = 1, at[path[p]] = 0;
    }
}

static int cmp_task_name(const void *a, const void *b) {
    return strcmp((*(const ltask_t *const *)a)->name, (*(const ltask_t *const *)b)->name);
}

void dsl_link(dsl_link_t *k, lua_State *L, int raw, json_t **plan) {
    link_t l = {.k = k, .L = L, .ctx_task = -1};
    luaL_checkstack(L, 16, "link");
    if (!k->scratch && !(k->scratch = json_array())) { k->oom = 1; return; }
    field(L, raw, "pipeline");   /* base + 0 */
    int base = lua_gettop(L);
    field(L, raw, "decls");      /* base + 1 */
    field(L, raw, "lines");      /* base + 2 */
    field(L, raw, "after");      /* base + 3 */
    field(L, raw, "partial");    /* base + 4 */
    field(L, raw, "groups");     /* base + 5 */
    field(L, raw, "defaults");   /* base + 6 */
    field(L, raw, "trigger_lines"); /* base + 7 */
    for (int i = 1; i <= 6; i++)
        if (lua_type(L, base + i) != LUA_TTABLE) { conv_fail(k, "no declarations"); return; }
    if (read_declarations(&l, base + 1, base + 2, base + 5, base)) { k->oom = 1; return; }

    if (!(*plan = json_object())) { k->oom = 1; return; }
    if (l.have_pipeline && conv_table(k, L, base, *plan, 1, 0)) return;
    json_t *defaults = convert(k, L, base + 6);
    if (!defaults) return;
    json_t *retries = json_pack("{s:i, s:i, s:f, s:i, s:b}", "max", 0, "backoff_ms", 10000, "factor", 2.0,
                                "max_backoff_ms", 600000, "jitter", 1);
    json_t *resources = json_pack("{s:s, s:i, s:i, s:i}", "queue", "default", "gpu", 0, "cpu", 1, "memory_bytes", 0);
    if (!retries || json_array_append_new(k->scratch, retries) || !resources ||
        json_array_append_new(k->scratch, resources)) {
        k->oom = 1;
        return;
    }
    json_t *dr = json_object_get(defaults, "retries"), *dres = json_object_get(defaults, "resources");
    if ((dr && json_object_update(retries, dr)) || (dres && json_object_update(resources, dres))) {
        k->oom = 1;
        return;
    }
    json_t *tasks = json_array();
    if (!tasks || json_object_set_new(*plan, "tasks", tasks)) { k->oom = 1; return; }
    for (size_t i = 0; i < l.ntasks && !k->oom; i++)
        link_task(&l, i, base + 1, base + 3, base + 4, defaults, retries, resources, tasks);
    if (k->oom) return;

    /* "${...}" in trigger rules: params and signal fields only */
    size_t t;
    json_t *tr;
    l.in_trigger = 1;
    json_array_foreach(json_object_get(*plan, "triggers"), t, tr) {
        lua_rawgeti(L, base + 7, (lua_Integer)t + 1);
        l.line = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        snprintf(l.ctxbuf, sizeof l.ctxbuf, "trigger on_signal \"%s\"", json_string_value(json_object_get(tr, "signal")));
        scan(&l, json_object_get(tr, "dedup_key"));
        scan(&l, json_object_get(tr, "params"));
    }

    find_cycles(&l);
    if (k->oom) return;

    /* upstream names, sorted; then the tasks, sorted by name */
    for (size_t i = 0; i < l.ntasks; i++) {
        ltask_t *lt = &l.tasks[i];
        if (!lt->json) continue;  /* it did not convert: an error says why */
        json_t *up = json_array();
        if (!up || json_object_set_new(lt->json, "upstream", up)) { k->oom = 1; return; }
        const char *small[16];
        const char **names = lt->up_count <= 16 ? small : link_alloc(k, lt->up_count * sizeof *names);
        if (!names) { k->oom = 1; return; }
        for (size_t e = 0; e < lt->up_count; e++) names[e] = l.tasks[l.edges[lt->up_first + e]].name;
        qsort(names, lt->up_count, sizeof *names, cmp_cstr);
        for (size_t e = 0; e < lt->up_count; e++)
            if (json_array_append_new(up, json_string(names[e]))) { k->oom = 1; return; }
        json_t *models = json_object_get(lt->json, "models");
        if (models && sort_strings(models)) { k->oom = 1; return; }
    }
    ltask_t **order = link_alloc(k, (l.ntasks + 1) * sizeof *order);
    if (!order) { k->oom = 1; return; }
    size_t n = 0;
    for (size_t i = 0; i < l.ntasks; i++)
        if (l.tasks[i].json) order[n++] = &l.tasks[i];
    qsort(order, n, sizeof *order, cmp_task_name);
    for (size_t i = 0; i < n; i++) json_incref(order[i]->json);
    json_array_clear(tasks);
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(tasks, order[i]->json)) { k->oom = 1; return; }
    lua_settop(L, base - 1);
}
