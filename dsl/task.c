/* task.c — see task.h. Builds new tables for the plan, so that a spec table the script changes
 * afterwards cannot change the task. Values are copied with raw access; the top-level fields
 * of a body are read as the script would read them (a spec may inherit through __index).
 * A failed check records its message and leaves the field out, as the prelude does. */
#include "dsl/task.h"
#include "dsl/steps.h"
#include "common/util.h"

#include <ctype.h>
#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { UV_E = 1, UV_ARRAY, UV_SORTED, UV_EMPTY, UV_NO_OUTPUTS, UV_HANDLE, UV_PARAM };
#define UV(i) lua_upvalueindex(i)

typedef struct {
    lua_State *L;
    int line;
    const char *ctx;  /* 'task "train"' */
} body_t;

static void err(body_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err(body_t *b, const char *fmt, ...) {
    lua_State *L = b->L;
    char small[512], *msg = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof small) {
        msg = lua_newuserdatauv(L, (size_t)n + 1, 0);  /* collected by Lua, even if a push below fails */
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, b->line);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, msg, (size_t)n);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, UV(UV_E), (lua_Integer)lua_rawlen(L, UV(UV_E)) + 1);
    if (msg != small) lua_pop(L, 1);
}

/* The kind of task handle ("task", "group") the table at idx is, or NULL. */
static const char *handle_kind(lua_State *L, int idx) {
    lua_pushvalue(L, UV(UV_HANDLE));
    lua_rawget(L, idx);
    const char *kind = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);  /* the string stays alive in the handle */
    return kind;
}

static const char *raw_string(lua_State *L, int idx, const char *key) {
    lua_pushstring(L, key);
    lua_rawget(L, idx);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    lua_pop(L, 1);
    return s;
}

/* The value at idx for a message: 'the string "x"', 2.5, true, nil, 'task "t"', a table. */
static const char *describe(lua_State *L, int idx, char *buf, size_t len) {
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        snprintf(buf, len, n > 40 ? "the string \"%.37s...\"" : "the string \"%s\"", s);
        break;
    }
    case LUA_TNUMBER:
    case LUA_TBOOLEAN:  /* as tostring would write them; neither has a metatable */
        snprintf(buf, len, "%s", luaL_tolstring(L, idx, NULL));
        lua_pop(L, 1);
        break;
    case LUA_TNIL: snprintf(buf, len, "nil"); break;
    case LUA_TTABLE: {
        const char *kind = handle_kind(L, idx);
        if (kind) snprintf(buf, len, "%s \"%s\"", kind, raw_string(L, idx, "name"));
        else snprintf(buf, len, "a table");
        break;
    }
    default: snprintf(buf, len, "a %s", luaL_typename(L, idx));
    }
    return buf;
}

/* Strict UTF-8, as utf8.len checks it: no overlong forms, surrogates or values past U+10FFFF. */
static int utf8_ok(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], cp, min;
        size_t len;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += len;
    }
    return 1;
}

/* What is wrong with a string for the plan ("is not valid UTF-8"), or NULL. A NUL byte would end
 * the string for the C that compares names (strcmp) and is refused by PostgreSQL's jsonb. */
static const char *text_problem(const char *s, size_t n) {
    if (!utf8_ok(s, n)) return "is not valid UTF-8";
    if (memchr(s, '\0', n)) return "contains a NUL byte";
    return NULL;
}

static int is_name(const char *s, size_t n, int (*first)(int), int (*rest)(int), const char *extra) {
    if (!n || !(first((unsigned char)s[0]) || s[0] == '_')) return 0;
    for (size_t i = 1; i < n; i++)
        if (!rest((unsigned char)s[i]) && s[i] != '_' && !(extra && strchr(extra, s[i]))) return 0;
    return 1;
}

static int is_lower(int c) { return c >= 'a' && c <= 'z'; }
static int is_lower_digit(int c) { return is_lower(c) || (c >= '0' && c <= '9'); }

/* ---- typed fields: 1 when the value is right, 0 after recording why not ---------------------- */

static int want_string(body_t *b, const char *field, int idx) {
    char d[96];
    if (lua_type(b->L, idx) != LUA_TSTRING) {
        err(b, "%s: %s must be a string, not %s", b->ctx, field, describe(b->L, idx, d, sizeof d));
        return 0;
    }
    size_t n;
    const char *s = lua_tolstring(b->L, idx, &n), *why = text_problem(s, n);
    if (why) {
        err(b, "%s: %s %s", b->ctx, field, why);
        return 0;
    }
    return 1;
}

static int want_int(body_t *b, const char *field, int idx, lua_Integer min, lua_Integer max, lua_Integer *out) {
    lua_State *L = b->L;
    char d[96];
    int ok = 0;
    if (lua_isinteger(L, idx)) {
        *out = lua_tointeger(L, idx), ok = 1;
    } else if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number v = lua_tonumber(L, idx);
        if (v == v && fmod(v, 1) == 0 && v >= -9007199254740992.0 && v <= 9007199254740992.0)
            *out = (lua_Integer)v, ok = 1;
    }
    if (!ok) {
        err(b, "%s: %s must be an integer, not %s", b->ctx, field, describe(L, idx, d, sizeof d));
        return 0;
    }
    if (*out < min) {
        err(b, "%s: %s must be at least %lld, not %lld", b->ctx, field, (long long)min, (long long)*out);
        return 0;
    }
    if (*out > max) {
        err(b, "%s: %s must be at most %lld, not %lld", b->ctx, field, (long long)max, (long long)*out);
        return 0;
    }
    return 1;
}

static int want_duration(body_t *b, const char *field, int idx, int64_t *ms) {
    char d[96];
    if (lua_type(b->L, idx) != LUA_TSTRING) {
        err(b, "%s: %s must be a duration string like \"30m\", not %s", b->ctx, field, describe(b->L, idx, d, sizeof d));
        return 0;
    }
    size_t n;
    const char *s = lua_tolstring(b->L, idx, &n);
    if (strlen(s) != n || weir_parse_duration(s, ms)) {  /* "30m\0..." is no duration */
        err(b, "%s: %s \"%s\" is not a duration (write e.g. \"90s\", \"30m\" or \"1h30m\")", b->ctx, field, s);
        return 0;
    }
    return 1;
}

static int want_table(body_t *b, const char *field, int idx) {
    char d[96];
    if (lua_type(b->L, idx) != LUA_TTABLE || handle_kind(b->L, idx)) {
        err(b, "%s: %s must be a table, not %s", b->ctx, field, describe(b->L, idx, d, sizeof d));
        return 0;
    }
    return 1;
}

/* Reports the keys of the table at idx that are not in allowed (sorted), as prefix.key. */
static void check_fields(body_t *b, int idx, const char *const *allowed, size_t n, const char *prefix) {
    lua_State *L = b->L;
    int positional = 0;
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            positional = 1;
            continue;
        }
        const char *k = lua_tostring(L, -2);
        size_t i = 0;
        while (i < n && strcmp(allowed[i], k)) i++;
        if (i < n) continue;
        char sug[160];
        err(b, "%s has unknown field \"%s%s\"%s", b->ctx, prefix, k, weir_did_you_mean(k, strlen(k), allowed, n, sug, sizeof sug));
    }
    if (positional) err(b, "%s has a value without a field name (write name = value)", b->ctx);
}

/* Pushes field `name` of the table at idx, read as the script reads it; returns its type. */
static int get(lua_State *L, int idx, const char *name) {
    return lua_getfield(L, idx, name);
}

/* ---- values: with, env ------------------------------------------------------------------------ */

/* Pushes a copy of the value at idx fit for the plan (strings, numbers, booleans, and lists or
 * maps of them; an empty table is an empty list) and returns 1; or returns 0 after reporting. */
static int want_value(body_t *b, const char *path, int idx, int depth) {
    lua_State *L = b->L;
    char d[96];
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n), *why = text_problem(s, n);
        if (why) {
            err(b, "%s: %s %s", b->ctx, path, why);
            return 0;
        }
        lua_pushvalue(L, idx);
        return 1;
    }
    case LUA_TBOOLEAN: lua_pushvalue(L, idx); return 1;
    case LUA_TNUMBER:
        if (!lua_isinteger(L, idx) && !isfinite(lua_tonumber(L, idx))) {
            err(b, "%s: %s must be a finite number", b->ctx, path);
            return 0;
        }
        lua_pushvalue(L, idx);
        return 1;
    case LUA_TTABLE: break;
    default:
        err(b, "%s: %s must be a string, number, boolean or table, not %s", b->ctx, path, describe(L, idx, d, sizeof d));
        return 0;
    }
    const char *kind = handle_kind(L, idx);
    if (kind && !strcmp(kind, "group")) {
        err(b, "%s: %s is a foreach group; pass its outputs instead (%s.outputs.NAME, a list)", b->ctx, path,
            raw_string(L, idx, "name"));
        return 0;
    }
    if (kind) {
        err(b, "%s: %s is a task; pass one of its outputs instead (%s.outputs.NAME)", b->ctx, path,
            raw_string(L, idx, "name"));
        return 0;
    }
    lua_pushvalue(L, UV(UV_PARAM));
    int is_param = lua_rawget(L, idx) != LUA_TNIL;
    lua_pop(L, 1);
    if (is_param) {
        err(b, "%s: %s is a parameter declaration; declare it in pipeline params and use params.NAME here", b->ctx,
            path);
        return 0;
    }
    if (depth > 16) {
        err(b, "%s: %s is nested too deeply", b->ctx, path);
        return 0;
    }
    luaL_checkstack(L, 8, "plan value");
    lua_Integer count = 0, n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) count++;
    int is_list = count == n;
    for (lua_Integer i = 1; is_list && i <= n; i++) {
        is_list = lua_rawgeti(L, idx, i) != LUA_TNIL;
        lua_pop(L, 1);
    }
    char child[256];
    int ok = 1;
    if (is_list) {
        lua_createtable(L, (int)n, 0);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            snprintf(child, sizeof child, "%s[%lld]", path, (long long)i);
            if (want_value(b, child, -1, depth + 1)) lua_rawseti(L, -3, i);
            else ok = 0;
            lua_pop(L, 1);
        }
        if (!ok) {
            lua_pop(L, 1);
            return 0;
        }
        lua_pushvalue(L, UV(UV_ARRAY));
        lua_setmetatable(L, -2);
        return 1;
    }
    lua_createtable(L, 0, (int)count);
    int out = lua_gettop(L);
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        size_t klen;
        if (lua_type(L, -2) != LUA_TSTRING) {
            err(b, "%s: %s mixes list items and named fields", b->ctx, path);
            lua_settop(L, out - 1);
            return 0;
        }
        const char *k = lua_tolstring(L, -2, &klen), *why = text_problem(k, klen);
        if (why) {
            err(b, "%s: %s has a key that %s", b->ctx, path, why);
            lua_settop(L, out - 1);
            return 0;
        }
        snprintf(child, sizeof child, "%s.%s", path, k);
        if (want_value(b, child, -1, depth + 1)) {
            lua_pushvalue(L, -3);
            lua_insert(L, -2);
            lua_rawset(L, out);
        } else {
            ok = 0;
        }
    }
    if (!ok) {
        lua_settop(L, out - 1);
        return 0;
    }
    return 1;
}

/* Pushes a copy of the map at idx whose keys are identifiers (with, env), or returns 0. */
static int want_map(body_t *b, const char *field, int idx, const char *key_what) {
    lua_State *L = b->L;
    char d[96], path[128];
    if (!want_table(b, field, idx)) return 0;
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    int out = lua_gettop(L);
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        size_t klen;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
        if (!k || !is_name(k, klen, isalpha, isalnum, NULL)) {
            err(b, "%s: %s keys must be %s, not %s", b->ctx, field, key_what, describe(L, -2, d, sizeof d));
            continue;
        }
        snprintf(path, sizeof path, "%s.%s", field, k);
        if (want_value(b, path, -1, 1)) {
            lua_pushvalue(L, -3);
            lua_insert(L, -2);
            lua_rawset(L, out);
        }
    }
    return 1;
}

/* ---- retries, resources, trigger rules --------------------------------------------------------- */

static const char *const retry_fields[] = {"backoff", "factor", "jitter", "max", "max_backoff"};
static const char *const resource_fields[] = {"cpu", "gpu", "memory", "queue"};
static const char *const trigger_rules[] = {"all_done", "all_success", "one_failed"};

/* Pushes the partial plan form of retries (3, or { max =, backoff =, ... }), or nil. */
static void push_retries(body_t *b, int idx) {
    lua_State *L = b->L;
    lua_Integer i;
    int64_t ms;
    char d[96];
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_newtable(L);
        if (want_int(b, "retries.max", idx, 0, 100, &i)) {
            lua_pushinteger(L, i);
            lua_setfield(L, -2, "max");
        }
        return;
    }
    if (!want_table(b, "retries", idx)) {
        lua_pushnil(L);
        return;
    }
    check_fields(b, idx, retry_fields, 5, "retries.");
    lua_newtable(L);
    int r = lua_gettop(L);
    if (get(L, idx, "max") != LUA_TNIL && want_int(b, "retries.max", -1, 0, 100, &i)) {
        lua_pushinteger(L, i);
        lua_setfield(L, r, "max");
    }
    lua_settop(L, r);
    if (get(L, idx, "backoff") != LUA_TNIL && want_duration(b, "retries.backoff", -1, &ms)) {
        lua_pushinteger(L, ms);
        lua_setfield(L, r, "backoff_ms");
    }
    lua_settop(L, r);
    if (get(L, idx, "factor") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER || !isfinite(lua_tonumber(L, -1))) {
            err(b, "%s: retries.factor must be a number, not %s", b->ctx, describe(L, -1, d, sizeof d));
        } else if (lua_tonumber(L, -1) < 1) {
            err(b, "%s: retries.factor must be at least 1, not %s", b->ctx, describe(L, -1, d, sizeof d));
        } else {
            lua_pushnumber(L, lua_tonumber(L, -1));  /* a real: 2 and 2.0 give the same plan */
            lua_setfield(L, r, "factor");
        }
    }
    lua_settop(L, r);
    if (get(L, idx, "max_backoff") != LUA_TNIL && want_duration(b, "retries.max_backoff", -1, &ms)) {
        lua_pushinteger(L, ms);
        lua_setfield(L, r, "max_backoff_ms");
    }
    lua_settop(L, r);
    if (get(L, idx, "jitter") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TBOOLEAN) {
            err(b, "%s: retries.jitter must be true or false, not %s", b->ctx, describe(L, -1, d, sizeof d));
        } else {
            lua_pushboolean(L, lua_toboolean(L, -1));
            lua_setfield(L, r, "jitter");
        }
    }
    lua_settop(L, r);
}

/* Pushes the partial plan form of resources ({ queue =, gpu =, memory =, cpu = }), or nil. */
static void push_resources(body_t *b, int idx) {
    lua_State *L = b->L;
    lua_Integer i;
    char d[96];
    idx = lua_absindex(L, idx);
    if (!want_table(b, "resources", idx)) {
        lua_pushnil(L);
        return;
    }
    check_fields(b, idx, resource_fields, 4, "resources.");
    lua_newtable(L);
    int r = lua_gettop(L);
    if (get(L, idx, "queue") != LUA_TNIL && want_string(b, "resources.queue", -1)) {
        size_t n;
        const char *q = lua_tolstring(L, -1, &n);
        if (!n || !isalnum((unsigned char)q[0]) || !is_name(q, n, isalnum, isalnum, ".-"))
            err(b, "%s: resources.queue \"%s\" is not a queue name (letters, digits, \".\", \"-\", \"_\")", b->ctx, q);
        lua_setfield(L, r, "queue");
    }
    lua_settop(L, r);
    if (get(L, idx, "gpu") != LUA_TNIL && want_int(b, "resources.gpu", -1, 0, 64, &i)) {
        lua_pushinteger(L, i);
        lua_setfield(L, r, "gpu");
    }
    lua_settop(L, r);
    if (get(L, idx, "cpu") != LUA_TNIL && want_int(b, "resources.cpu", -1, 1, 1024, &i)) {
        lua_pushinteger(L, i);
        lua_setfield(L, r, "cpu");
    }
    lua_settop(L, r);
    if (get(L, idx, "memory") != LUA_TNIL) {
        int64_t bytes;
        if (lua_type(L, -1) != LUA_TSTRING)
            err(b, "%s: resources.memory must be a size string like \"4GiB\", not %s", b->ctx,
                describe(L, -1, d, sizeof d));
        else if (weir_parse_size(lua_tostring(L, -1), &bytes))
            err(b, "%s: resources.memory \"%s\" is not a size (write e.g. \"512MiB\" or \"4GiB\")", b->ctx,
                lua_tostring(L, -1));
        else {
            lua_pushinteger(L, bytes);
            lua_setfield(L, r, "memory_bytes");
        }
    }
    lua_settop(L, r);
}

/* Pushes the trigger rule at idx, or nil. */
static void push_trigger_rule(body_t *b, int idx) {
    lua_State *L = b->L;
    char d[96], sug[160];
    if (lua_type(L, idx) != LUA_TSTRING) {
        err(b, "%s: trigger_rule must be a string, not %s", b->ctx, describe(L, idx, d, sizeof d));
        lua_pushnil(L);
        return;
    }
    const char *v = lua_tostring(L, idx);
    for (size_t i = 0; i < 3; i++) {
        if (!strcmp(v, trigger_rules[i])) {
            lua_pushvalue(L, idx);
            return;
        }
    }
    err(b, "%s: trigger_rule \"%s\" is not one of all_success, all_done, one_failed%s", b->ctx, v,
        weir_did_you_mean(v, strlen(v), trigger_rules, 3, sug, sizeof sug));
    lua_pushnil(L);
}

static body_t body_args(lua_State *L) {  /* (value, ctx, line) */
    body_t b = {L, (int)luaL_checkinteger(L, 3), luaL_checkstring(L, 2)};
    return b;
}

static int l_retries(lua_State *L) {
    body_t b = body_args(L);
    push_retries(&b, 1);
    return 1;
}

static int l_resources(lua_State *L) {
    body_t b = body_args(L);
    push_resources(&b, 1);
    return 1;
}

static int l_trigger_rule(lua_State *L) {
    body_t b = body_args(L);
    push_trigger_rule(&b, 1);
    return 1;
}

/* ---- the body ----------------------------------------------------------------------------------- */

static const char *const task_fields[] = {"after", "description", "env", "exec", "outputs", "priority",
                                          "resources", "retries", "step", "timeout", "trigger_rule", "with"};

/* Pushes the command of exec (a list, or a string for /bin/sh -c), or nothing and returns 0. */
static int want_command(body_t *b, int idx) {
    lua_State *L = b->L;
    char d[96], field[32];
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (!want_string(b, "exec", idx)) return 0;
        lua_createtable(L, 3, 0);
        lua_pushliteral(L, "/bin/sh");
        lua_rawseti(L, -2, 1);
        lua_pushliteral(L, "-c");
        lua_rawseti(L, -2, 2);
        lua_pushvalue(L, idx);
        lua_rawseti(L, -2, 3);
    } else if (lua_type(L, idx) != LUA_TTABLE || handle_kind(L, idx)) {
        err(b, "%s: exec must be a list like { \"python3\", \"train.py\" } or a shell command string, not %s", b->ctx,
            describe(L, idx, d, sizeof d));
        return 0;
    } else {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (n == 0) {
            err(b, "%s: exec must not be empty", b->ctx);
            return 0;
        }
        lua_createtable(L, (int)n, 0);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, idx, i) == LUA_TNUMBER) {
                luaL_tolstring(L, -1, NULL);
                lua_remove(L, -2);
            }
            snprintf(field, sizeof field, "exec[%lld]", (long long)i);
            if (!want_string(b, field, -1)) {
                lua_pop(L, 1);
                lua_pushliteral(L, "");
            }
            lua_rawseti(L, -2, i);
        }
    }
    lua_pushvalue(L, UV(UV_ARRAY));
    lua_setmetatable(L, -2);
    return 1;
}

/* Adds the output names of the list or string at idx to the set and list at set and list. */
static void add_outputs(body_t *b, int idx, int set, int list) {
    lua_State *L = b->L;
    char d[96], field[40];
    idx = lua_absindex(L, idx);
    lua_Integer n = 1;
    int single = lua_type(L, idx) == LUA_TSTRING;
    if (!single) {
        if (!want_table(b, "outputs", idx)) return;
        n = (lua_Integer)lua_rawlen(L, idx);
    }
    for (lua_Integer i = 1; i <= n; i++) {
        if (single) lua_pushvalue(L, idx);
        else lua_rawgeti(L, idx, i);
        size_t len;
        const char *o = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!o || !is_name(o, len, is_lower, is_lower_digit, NULL)) {
            snprintf(field, sizeof field, "outputs[%lld]", (long long)i);
            err(b, "%s: %s must be a name (lowercase letters, digits, _), not %s", b->ctx, field,
                describe(L, -1, d, sizeof d));
        } else {
            lua_pushvalue(L, -1);
            if (lua_rawget(L, set) == LUA_TNIL) {
                lua_pushvalue(L, -2);
                lua_pushboolean(L, 1);
                lua_rawset(L, set);
                lua_pushvalue(L, -2);
                lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

/* drift.detect watches a model: with model = "NAME" and no reference it compares the new data
 * with the dataset the production version was trained on (docs/signals.md). The user's table
 * may be shared, so the plan gets a copy. */
static void default_reference(lua_State *L, int t) {
    int top = lua_gettop(L);
    lua_getfield(L, t, "with");
    int w = lua_gettop(L);
    if (lua_getfield(L, w, "reference") == LUA_TNIL && lua_getfield(L, w, "model") == LUA_TSTRING) {
        size_t n;
        const char *m = lua_tolstring(L, -1, &n);
        if (n && n <= 63 && *m >= 'a' && *m <= 'z' && strspn(m, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == n) {
            lua_newtable(L);
            int c = lua_gettop(L);
            for (lua_pushnil(L); lua_next(L, w);) { /* c[k] = v, leaving k for lua_next */
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, c);
            }
            lua_pushfstring(L, "${training_data.%s.production}", m);
            lua_setfield(L, c, "reference");
            lua_setfield(L, t, "with");
        }
    }
    lua_settop(L, top);
}

/* task_body(t, spec, ctx, line) -> partial or nil; see task.h. */
static int l_task_body(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    body_t b = {L, (int)luaL_checkinteger(L, 4), luaL_checkstring(L, 3)};
    char d[96], sug[160];
    const int t = 1, spec = 2;
    lua_settop(L, 4);
    check_fields(&b, spec, task_fields, sizeof task_fields / sizeof task_fields[0], "");

    /* the step: a plugin step, or exec with its command */
    const weir_dsl_step_t *known = NULL;
    int exec = get(L, spec, "exec"), step = get(L, spec, "step");  /* 5, 6 */
    if (exec != LUA_TNIL) {
        if (step != LUA_TNIL && !(step == LUA_TSTRING && lua_rawlen(L, 6) == 4 && !strcmp(lua_tostring(L, 6), "exec")))
            err(&b, "%s has both step = \"%s\" and exec; a task runs one step", b.ctx,
                step == LUA_TSTRING ? lua_tostring(L, 6) : describe(L, 6, d, sizeof d));
        lua_pushliteral(L, "exec");
        lua_setfield(L, t, "step");
        known = weir_dsl_step_find("exec");
        if (want_command(&b, 5)) lua_setfield(L, t, "command");
    } else if (step == LUA_TNIL) {
        err(&b, "%s needs a step (step = \"train.logreg\") or a command (exec = { \"python3\", \"train.py\" })", b.ctx);
    } else if (want_string(&b, "step", 6)) {
        const char *name = lua_tostring(L, 6);
        known = weir_dsl_step_find(name);
        if (!strcmp(name, "exec")) {
            err(&b, "%s: step \"exec\" needs the command in exec = { ... }", b.ctx);
        } else if (!known && !weir_dsl_step_external(name)) {
            size_t n;
            const weir_dsl_step_t *steps = weir_dsl_steps(&n);
            const char *names[64];
            luaL_Buffer all;
            luaL_buffinit(L, &all);  /* holds stack slot 7 until pushed */
            for (size_t i = 0; i < n && i < 64; i++) {
                names[i] = steps[i].name;
                if (i) luaL_addstring(&all, ", ");
                luaL_addstring(&all, steps[i].name);
            }
            luaL_pushresult(&all);
            const char *hint = weir_did_you_mean(name, strlen(name), names, n < 64 ? n : 64, sug, sizeof sug);
            err(&b, "%s has unknown step \"%s\"%s%s%s", b.ctx, name, *hint ? hint : " (known steps: ",
                *hint ? "" : lua_tostring(L, -1), *hint ? "" : ")");
            lua_pop(L, 1);
        }
        lua_pushvalue(L, 6);
        lua_setfield(L, t, "step");
    }
    lua_settop(L, 4);

    /* settings and environment; EMPTY is shared, nothing writes to plan tables later */
    if (get(L, spec, "with") == LUA_TNIL || !want_map(&b, "with", -1, "names")) lua_pushvalue(L, UV(UV_EMPTY));
    lua_setfield(L, t, "with");
    lua_settop(L, 4);
    if (known && !strcmp(known->name, "drift.detect")) default_reference(L, t);
    if (get(L, spec, "env") != LUA_TNIL && want_map(&b, "env", -1, "variable names")) {
        int env = lua_gettop(L);
        for (lua_pushnil(L); lua_next(L, env); lua_pop(L, 1)) {
            int vt = lua_type(L, -1);
            if (vt == LUA_TNUMBER || vt == LUA_TBOOLEAN) {
                lua_pushvalue(L, -2);
                luaL_tolstring(L, -2, NULL);
                lua_rawset(L, env);  /* an existing key: safe during the traversal */
            } else if (vt != LUA_TSTRING) {
                err(&b, "%s: env.%s must be a string", b.ctx, lua_tostring(L, -2));
            }
        }
    } else {
        lua_pushvalue(L, UV(UV_EMPTY));
    }
    lua_setfield(L, t, "env");
    lua_settop(L, 4);

    /* outputs: declared ones, and those the step always makes; sorted later, by dsl/link.c */
    int have = get(L, spec, "outputs") != LUA_TNIL;  /* 5 */
    if (!have && known && !*known->outputs) {
        lua_pushvalue(L, UV(UV_NO_OUTPUTS));
    } else {
        lua_newtable(L);  /* 6: the set */
        lua_newtable(L);  /* 7: the list */
        if (have) add_outputs(&b, 5, 6, 7);
        for (const char *p = known ? known->outputs : ""; *p;) {
            size_t len = strcspn(p, " ");
            lua_pushlstring(L, p, len);
            add_outputs(&b, -1, 6, 7);
            lua_pop(L, 1);
            p += len + (p[len] == ' ');
        }
        lua_pushvalue(L, UV(UV_SORTED));
        lua_setmetatable(L, 7);
    }
    lua_setfield(L, t, "outputs");
    lua_settop(L, 4);

    int64_t ms;
    lua_Integer prio;
    if (get(L, spec, "timeout") != LUA_TNIL && want_duration(&b, "timeout", -1, &ms)) {
        lua_pushinteger(L, ms);
        lua_setfield(L, t, "timeout_ms");
    }
    lua_settop(L, 4);
    if (get(L, spec, "priority") != LUA_TNIL && want_int(&b, "priority", -1, -1000000, 1000000, &prio)) {
        lua_pushinteger(L, prio);
        lua_setfield(L, t, "priority");
    }
    lua_settop(L, 4);

    /* what pipeline defaults complete */
    int retries = get(L, spec, "retries"), resources = get(L, spec, "resources"), rule = get(L, spec, "trigger_rule");
    if (retries == LUA_TNIL && resources == LUA_TNIL && rule == LUA_TNIL) {
        lua_pushnil(L);
        return 1;
    }
    lua_newtable(L);  /* 8 */
    if (retries != LUA_TNIL) {
        push_retries(&b, 5);
        lua_setfield(L, 8, "retries");
    }
    if (resources != LUA_TNIL) {
        push_resources(&b, 6);
        lua_setfield(L, 8, "resources");
    }
    if (rule != LUA_TNIL) {
        push_trigger_rule(&b, 7);
        lua_setfield(L, 8, "trigger_rule");
    }
    return 1;
}

int dsl_task_bind(lua_State *L) {
    static const luaL_Reg fns[] = {{"task_body", l_task_body},
                                   {"retries", l_retries},
                                   {"resources", l_resources},
                                   {"trigger_rule", l_trigger_rule},
                                   {NULL, NULL}};
    lua_settop(L, UV_PARAM);
    for (int i = 1; i <= UV_PARAM; i++) luaL_checktype(L, i, LUA_TTABLE);
    lua_createtable(L, 0, 4);
    for (const luaL_Reg *f = fns; f->name; f++) {
        for (int i = 1; i <= UV_PARAM; i++) lua_pushvalue(L, i);
        lua_pushcclosure(L, f->func, UV_PARAM);
        lua_setfield(L, -2, f->name);
    }
    return 1;
}
