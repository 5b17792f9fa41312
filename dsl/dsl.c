/* dsl.c — compiles a pipeline script into its plan (see dsl.h).
 *
 * Each call builds a fresh Lua state with a counting allocator (the memory cap), a count hook
 * (the instruction budget, shared by all coroutines and kept failing once spent, plus a
 * wall-clock backstop), and only the base, string, table, math, utf8 and coroutine libraries,
 * some functions wrapped so that C code cannot loop unboundedly on the script's behalf. It runs
 * dsl/prelude.lua (the DSL and its checks), then the script in the prelude's environment, then
 * the prelude's finish(), and turns the plan table into JSON, canonical text and a SHA-256.
 *
 * Not here: the DSL itself (prelude.lua), cron parsing (cron.c), the canonical text (canon.c),
 * running gate predicates. Nothing is global, so calls may run in parallel threads. Lua compares
 * strings with strcoll: a process embedding this must leave LC_COLLATE at "C" (weir never calls
 * setlocale), and everything that orders a plan is sorted bytewise here instead. */
#include "dsl/dsl.h"
#include "dsl/canon.h"
#include "dsl/cron.h"
#include "dsl/link.h"
#include "dsl/task.h"
#include "common/error.h"
#include "common/sha256.h"
#include "common/util.h"

#include <ctype.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const char weir_lua_prelude[];
extern const size_t weir_lua_prelude_len;

#define DSL_MEM_DEFAULT ((size_t)64 << 20)
#define DSL_INSTR_DEFAULT 200000000ULL
#define DSL_HOOK_PERIOD 1000       /* instructions between two looks at the budget and the clock */
#define DSL_DEADLINE_MS 10000      /* backstop for scripts that do much work per instruction */
#define DSL_ELEM_COST 4            /* one element read or written by the table library */
#define DSL_META_COST 16           /* a call of a C function from C: a metamethod, a comparator */
#define DSL_COMPARE_COST 4         /* one comparison of table.sort's default order */
#define DSL_SWITCH_COST 32         /* a coroutine resume and yield cost about this many instructions */
#define DSL_PATTERN_MAX 3e8        /* worst-case steps of one string.find/match/gmatch/gsub */
#define DSL_PLAN_MAX ((size_t)256 << 20)
#define DSL_MAX_ERRORS 1000        /* errors printed; a count of the rest follows */
#define DSL_SCRIPT "=<script>"    /* chunk name of the script; messages say the real file name */
#define POOL_MAX 512               /* Lua blocks up to this size come from the compile's pool */
#define POOL_CHUNK ((size_t)256 << 10)  /* the first chunk; each next one is twice as large, to 8 MiB */

enum { FATAL_NONE, FATAL_INSTR, FATAL_MEM, FATAL_TIME };

typedef struct {
    int line;
    char *msg;
} dsl_err_t;

/* Lua allocates and frees small blocks by the million; glibc's malloc spent a third of a compile
 * on them. Small blocks come from a pool with one free list per 16-byte size class, carved from
 * growing chunks; larger ones from malloc, linked in a list. The pool thus owns every byte of
 * the state, which is dropped at the end instead of closed: that is faster, and no script code
 * (a __close handler) can run after the script. Lua always passes a block's size. */
typedef struct big_s {
    struct big_s *prev, *next;  /* 16 bytes: keeps the block after it 16-byte aligned */
} big_t;

typedef struct {
    void *free[POOL_MAX / 16 + 1];
    char *cur, *end;   /* what is left of the newest chunk */
    size_t next;       /* size of the next chunk */
    void *chunks;      /* each chunk starts with a pointer to the previous one */
    big_t bigs;        /* the list of large blocks */
} dsl_pool_t;

typedef struct {
    dsl_pool_t pool;
    size_t mem_used, mem_max;
    int limited;            /* the script or finish() runs: caps apply */
    uint64_t instr, instr_max, deadline_ms;
    int fatal, fatal_line;  /* a limit was hit (sticky), and where in the script */
    int err_line;           /* the script line where the last uncaught error was raised */
    lua_State *L;
    dsl_err_t *errs;
    size_t nerrs, caperrs;
    int oom;                /* a C allocation failed */
    dsl_link_t link;
    json_t *plan;           /* being built; freed by the caller on failure */
} dsl_state_t;

static dsl_state_t *state_of(lua_State *L) {
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* The script line of the innermost (or outermost) frame running the script itself. Reads only
 * the call chain, without allocating, so that the allocator and the hook may use it. */
static int script_line(lua_State *L, int outermost) {
    lua_Debug ar;
    int line = 0;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar)) break;
        if (ar.currentline > 0 && !strcmp(ar.source, DSL_SCRIPT)) {
            line = ar.currentline;
            if (!outermost) break;
        }
    }
    return line;
}

static void add_err(dsl_state_t *st, int line, const char *msg, size_t len) {
    if (st->nerrs == st->caperrs) {
        size_t cap = st->caperrs ? st->caperrs * 2 : 16;
        dsl_err_t *p = realloc(st->errs, cap * sizeof *p);
        if (!p) { st->oom = 1; return; }
        st->errs = p;
        st->caperrs = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) { st->oom = 1; return; }
    memcpy(copy, msg, len);
    copy[len] = '\0';
    st->errs[st->nerrs].line = line;
    st->errs[st->nerrs++].msg = copy;
}

/* ---- memory --------------------------------------------------------------------------------- */

static void *pool_get(dsl_pool_t *p, size_t n) {
    size_t c = (n + 15) >> 4;
    void *b = p->free[c];
    if (b) {
        p->free[c] = *(void **)b;
        return b;
    }
    if ((size_t)(p->end - p->cur) < c << 4) {
        size_t size = p->next ? p->next : POOL_CHUNK;
        char *chunk = malloc(16 + size);  /* 16: keeps blocks 16-byte aligned */
        if (!chunk) return NULL;
        *(void **)chunk = p->chunks;
        p->chunks = chunk;
        p->cur = chunk + 16;
        p->end = p->cur + size;
        p->next = size < ((size_t)8 << 20) ? size * 2 : size;
    }
    b = p->cur;
    p->cur += c << 4;
    return b;
}

static void big_link(dsl_pool_t *p, big_t *b) {
    if (!p->bigs.next) p->bigs.next = p->bigs.prev = &p->bigs;
    b->next = p->bigs.next;
    b->prev = &p->bigs;
    b->next->prev = b;
    p->bigs.next = b;
}

static void big_unlink(big_t *b) {
    b->prev->next = b->next;
    b->next->prev = b->prev;
}

static void *big_alloc(dsl_pool_t *p, size_t n) {
    big_t *b = malloc(sizeof *b + n);
    if (!b) return NULL;
    big_link(p, b);
    return b + 1;
}

static void block_free(dsl_pool_t *p, void *b, size_t n) {
    if (n > POOL_MAX) {
        big_t *h = (big_t *)b - 1;
        big_unlink(h);
        free(h);
        return;
    }
    size_t c = (n + 15) >> 4;
    *(void **)b = p->free[c];
    p->free[c] = b;
}

static void pool_close(dsl_pool_t *p) {
    while (p->chunks) {
        void *next = *(void **)p->chunks;
        free(p->chunks);
        p->chunks = next;
    }
    for (big_t *b = p->bigs.next; b && b != &p->bigs;) {
        big_t *next = b->next;
        free(b);
        b = next;
    }
    p->bigs.next = p->bigs.prev = NULL;
}

static void *block_realloc(dsl_pool_t *p, void *ptr, size_t old, size_t n) {
    if (!ptr) return n > POOL_MAX ? big_alloc(p, n) : pool_get(p, n);
    if (old > POOL_MAX && n > POOL_MAX) {
        big_t *h = (big_t *)ptr - 1;
        big_unlink(h);
        big_t *nh = realloc(h, sizeof *nh + n);
        big_link(p, nh ? nh : h);
        return nh ? nh + 1 : NULL;
    }
    if (old <= POOL_MAX && n <= POOL_MAX && (old + 15) >> 4 == (n + 15) >> 4) return ptr;
    void *b = n > POOL_MAX ? big_alloc(p, n) : pool_get(p, n);
    if (!b) return NULL;
    memcpy(b, ptr, old < n ? old : n);
    block_free(p, ptr, old);
    return b;
}

/* ---- limits --------------------------------------------------------------------------------- */

static void *dsl_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    dsl_state_t *st = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        if (ptr) block_free(&st->pool, ptr, old);
        st->mem_used -= old;
        return NULL;
    }
    if (nsize > old && st->limited && st->mem_used - old + nsize > st->mem_max) {
        /* Final even if Lua's emergency collection then makes room: a script must not go on by
         * catching the memory error. The hook raises it again at the next check. */
        if (!st->fatal) {
            st->fatal = FATAL_MEM;
            if (st->L) st->fatal_line = script_line(st->L, 0);
        }
        return NULL;
    }
    void *p = block_realloc(&st->pool, ptr, old, nsize);
    if (!p) {
        st->oom = 1;
        return NULL;
    }
    st->mem_used = st->mem_used - old + nsize;
    return p;
}

static const char *fatal_text(dsl_state_t *st, char *buf, size_t len) {
    switch (st->fatal) {
    case FATAL_INSTR:
        snprintf(buf, len, "instruction budget exceeded (%llu instructions): is there an endless loop?",
                 (unsigned long long)st->instr_max);
        break;
    case FATAL_MEM:
        snprintf(buf, len, "memory limit exceeded (%zu MiB)", st->mem_max >> 20);
        break;
    default:
        snprintf(buf, len, "time limit exceeded (%d s)", DSL_DEADLINE_MS / 1000);
    }
    return buf;
}

/* Raises the fatal error, and makes every later instruction of this thread raise it again, so
 * that a script catching it with pcall cannot go on. */
static int raise_fatal(lua_State *L, dsl_state_t *st) {
    if (!st->fatal_line) st->fatal_line = script_line(L, 0);
    lua_sethook(L, lua_gethook(L), LUA_MASKCOUNT, 1);
    lua_pushliteral(L, "weir: compile limit reached");
    return lua_error(L);
}

static void dsl_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    dsl_state_t *st = state_of(L);
    if (!st->limited) return;
    if (!st->fatal) {
        st->instr += DSL_HOOK_PERIOD;
        if (st->instr > st->instr_max) st->fatal = FATAL_INSTR;
        else if (weir_now_ms() > st->deadline_ms) st->fatal = FATAL_TIME;
    }
    if (st->fatal) raise_fatal(L, st);
}

/* Counts work done by C on the script's behalf against the instruction budget. C may spend long
 * per unit of work, so the clock is read here too, once per hook period of charged work. */
static void charge(lua_State *L, double work) {
    dsl_state_t *st = state_of(L);
    if (!st->limited) return;
    if (!st->fatal) {
        uint64_t before = st->instr;
        if (work > (double)(st->instr_max - (st->instr < st->instr_max ? st->instr : st->instr_max)))
            st->fatal = FATAL_INSTR;
        else if ((st->instr += (uint64_t)work) / DSL_HOOK_PERIOD != before / DSL_HOOK_PERIOD &&
                 weir_now_ms() > st->deadline_ms)
            st->fatal = FATAL_TIME;
    }
    if (st->fatal) raise_fatal(L, st);
}

/* ---- the library, made safe ----------------------------------------------------------------- */

static int all_results(lua_State *L, int status, lua_KContext ctx) {
    (void)status, (void)ctx;
    return lua_gettop(L);
}

/* Calls upvalue 1 (the original function) with the arguments and returns what it returns; a
 * coroutine may yield through it. */
static int call_original(lua_State *L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, all_results);
    return lua_gettop(L);
}

/* string.rep("", 1e15) loops 1e15 times without allocating: charge the repetitions. */
static int safe_rep(lua_State *L) {
    lua_Integer n = lua_tointeger(L, 2);
    if (n > 0) charge(L, (double)n / 8);
    return call_original(L);
}

/* What one element access of the value at idx costs, in instructions: a value with a metatable
 * may call a C metamethod (__index = rawlen) for each, which no hook sees. */
static double elem_cost(lua_State *L, int idx) {
    if (!lua_getmetatable(L, idx)) return DSL_ELEM_COST;
    lua_pop(L, 1);
    return DSL_META_COST;
}

static int fixed_len_of(lua_State *L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* #t (arg 1) as the original will see it. A script's __len would be called again by the original
 * and could then answer differently from what was charged: arg 1 is then replaced by a proxy
 * with that length fixed, whose reads and writes go to t (with t's own metamethods). */
static lua_Integer fixed_len(lua_State *L) {
    if (lua_type(L, 1) != LUA_TTABLE || luaL_getmetafield(L, 1, "__len") == LUA_TNIL) return luaL_len(L, 1);
    lua_pop(L, 1);
    lua_Integer n = luaL_len(L, 1);
    lua_createtable(L, 0, 0);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushinteger(L, n);
    lua_pushcclosure(L, fixed_len_of, 1);
    lua_setfield(L, -2, "__len");
    lua_setmetatable(L, -2);
    lua_replace(L, 1);
    return n;
}

/* table.move(t, 1, 1e15, 2) loops over the whole range: charge it. */
static int safe_move(lua_State *L) {
    lua_Integer f = lua_tointeger(L, 2), e = lua_tointeger(L, 3);
    double cost = elem_cost(L, 1);
    if (!lua_isnoneornil(L, 5) && elem_cost(L, 5) > cost) cost = elem_cost(L, 5);
    if (e >= f) charge(L, ((double)e - (double)f + 1) * cost);
    return call_original(L);
}

/* table.insert(t, pos, v) shifts t[pos..#t] up: charge the shift. */
static int safe_insert(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_gettop(L) != 3) return call_original(L);  /* appends, or the original's usage error */
    double cost = elem_cost(L, 1);
    lua_Integer e = fixed_len(L), pos = lua_tointeger(L, 2);
    if (lua_isinteger(L, 2) && (lua_Unsigned)pos - 1u < (lua_Unsigned)e + 1u)
        charge(L, ((double)e + 1 - (double)pos) * cost);
    return call_original(L);
}

/* table.remove(t, pos) shifts t[pos+1..#t] down: charge the shift. */
static int safe_remove(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    double cost = elem_cost(L, 1);
    lua_Integer size = fixed_len(L), pos = luaL_optinteger(L, 2, size);
    if ((lua_Unsigned)pos - 1u <= (lua_Unsigned)size && pos < size) charge(L, ((double)size - (double)pos) * cost);
    return call_original(L);
}

/* table.concat(t, sep, i, j) reads t[i..j]: charge them. */
static int safe_concat(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    double cost = elem_cost(L, 1);
    lua_Integer i = luaL_optinteger(L, 3, 1), j = lua_isnoneornil(L, 4) ? fixed_len(L) : luaL_checkinteger(L, 4);
    if (i <= j) charge(L, ((double)j - (double)i + 1) * cost);
    return call_original(L);
}

/* table.unpack(t, i, j) reads t[i..j], at most a stack's worth (more is refused): charge them. */
static int safe_unpack(lua_State *L) {
    double cost = elem_cost(L, 1);
    lua_Integer i = luaL_optinteger(L, 2, 1), j = lua_isnoneornil(L, 3) ? fixed_len(L) : luaL_checkinteger(L, 3);
    if (i <= j) charge(L, fmin((double)j - (double)i + 1, 1e6) * cost);
    return call_original(L);
}

/* A coroutine that dies before its first hook would run up to DSL_HOOK_PERIOD instructions
 * uncounted: charge them when it is created. */
static int safe_cocreate(lua_State *L) {
    charge(L, DSL_HOOK_PERIOD);
    return call_original(L);
}

/* Lua calls an error handler raised from a hook while still inside the hook, with hooks off: a
 * script's xpcall handler would then run unbounded. Once a limit is hit it is not called. */
static int xpcall_handler(lua_State *L) {
    if (state_of(L)->fatal) return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int safe_xpcall(lua_State *L) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    return call_original(L);
}

/* For the same reason, a coroutine stopped by a limit keeps hooks off: its __close handlers must
 * not run. coroutine.wrap is Lua's auxwrap, less the cleanup in that case. */
static int wrap_resume(lua_State *L) {
    charge(L, DSL_SWITCH_COST);
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    int narg = lua_gettop(L), nres;
    if (!lua_checkstack(co, narg)) return luaL_error(L, "too many arguments to resume");
    lua_xmove(L, co, narg);
    int status = lua_resume(co, L, narg, &nres);
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            return luaL_error(L, "too many results to resume");
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    dsl_state_t *st = state_of(L);
    lua_xmove(co, L, 1);
    if (st->fatal) return raise_fatal(L, st);
    status = lua_status(co);
    if (status != LUA_OK && status != LUA_YIELD) {  /* the error happened inside: close its variables */
        status = lua_resetthread(co);
        if (status != LUA_OK) {
            lua_pop(L, 1);
            lua_xmove(co, L, 1);
        }
    }
    if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

static int safe_cowrap(lua_State *L) {
    charge(L, DSL_HOOK_PERIOD);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, wrap_resume, 1);
    return 1;
}

static int safe_resume(lua_State *L) {
    charge(L, DSL_SWITCH_COST);
    return call_original(L);
}

static int safe_coclose(lua_State *L) {
    dsl_state_t *st = state_of(L);
    if (st->fatal && st->limited) return raise_fatal(L, st);
    return call_original(L);
}

static size_t skip_set(const char *p, size_t n, size_t i) {  /* p[i] == '[' */
    i++;
    if (i < n && p[i] == '^') i++;
    do {
        if (i >= n) return n;
        if (p[i] == '%') i++;
        i++;
    } while (i < n && p[i] != ']');
    return i + 1;
}

/* Lua patterns backtrack, and no instruction runs meanwhile. The worst case: at each start
 * position (one unless anchored), each element of the pattern, times the subject's length for
 * each quantifier followed by more pattern (it can fail and make this one backtrack), for each
 * %b (it scans to the balancing character) and for each back-reference (it compares a whole
 * capture), times two for each "?" followed by more pattern. Refuse what could run for long,
 * and charge the rest, so that calling it in a loop counts too. %f looks at two characters: it
 * is one element. */
static int safe_pattern(lua_State *L) {
    size_t n, plen;
    const char *s = lua_tolstring(L, 1, &n);
    const char *p = lua_tolstring(L, 2, &plen);
    int kind = (int)lua_tointeger(L, lua_upvalueindex(2));  /* 0 find, 1 match, 2 gmatch, 3 gsub */
    if (!s || !p) return call_original(L);
    if (kind == 0 && lua_toboolean(L, 4)) {  /* plain find */
        charge(L, (double)n / 16);
        return call_original(L);
    }
    int anchored = kind != 2 && plen && p[0] == '^', q = 0, opt = 0;
    for (size_t i = anchored; i < plen;) {
        char c = p[i];
        if (c == '(' || c == ')') { i++; continue; }
        if (c == '%' && i + 1 < plen && p[i + 1] == 'b') { i += 4; q++; continue; }
        if (c == '%' && i + 1 < plen && p[i + 1] >= '1' && p[i + 1] <= '9') { i += 2; q++; continue; }
        if (c == '%' && i + 1 < plen && p[i + 1] == 'f') { i = i + 2 < plen ? skip_set(p, plen, i + 2) : plen; continue; }
        if (c == '%') i += 2;
        else if (c == '[') i = skip_set(p, plen, i);
        else i++;
        if (i < plen && (p[i] == '*' || p[i] == '+' || p[i] == '-' || p[i] == '?')) {
            int maybe = p[i] == '?';
            size_t j = ++i;
            while (j < plen && p[j] == ')') j++;
            if (j < plen && maybe) opt++;
            else if (j < plen) q++;
        }
    }
    double cost = ((double)plen + 1) * pow((double)n + 1, q + !anchored) * pow(2, opt);
    if (cost > DSL_PATTERN_MAX)
        return luaL_error(L, "pattern is too expensive for a string of %d bytes in a pipeline (it could backtrack "
                             "for a very long time); split the string or simplify the pattern", (int)n);
    charge(L, fmax((double)n / 16, cost / 4));
    return call_original(L);
}

static int refuse_dump(lua_State *L) {
    return luaL_error(L, "string.dump is not available in a pipeline (binary chunks are refused)");
}

/* math.randomseed() without a seed would make the plan differ from one compile to the next. */
static int safe_randomseed(lua_State *L) {
    if (lua_isnoneornil(L, 1))
        return luaL_error(L, "math.randomseed needs a seed in a pipeline (plans must be reproducible)");
    return call_original(L);
}

/* table.sort's default order compares strings with strcoll: compare them bytewise instead.
 * Upvalue 1 is what one comparison costs (see safe_sort). */
static int bytewise_less(lua_State *L) {
    size_t la, lb;
    charge(L, lua_tonumber(L, lua_upvalueindex(1)));
    if (lua_type(L, 1) == LUA_TSTRING && lua_type(L, 2) == LUA_TSTRING) {
        const char *a = lua_tolstring(L, 1, &la), *b = lua_tolstring(L, 2, &lb);
        int c = memcmp(a, b, la < lb ? la : lb);
        lua_pushboolean(L, c < 0 || (c == 0 && la < lb));
        return 1;
    }
    lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT));
    return 1;
}

/* A C function as comparator (rawequal): upvalue 1, charged upvalue 2 per call. */
static int charged_compare(lua_State *L) {
    charge(L, lua_tonumber(L, lua_upvalueindex(2)));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* Sorting runs in C: a Lua comparator is seen by the hook, but the default one, a C function
 * given as comparator, and element accesses through C metamethods are not. Charge the elements
 * up front and each comparison as it is made. */
static int safe_sort(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    double cost = elem_cost(L, 1);
    lua_Integer n = fixed_len(L);
    if (n > 1 && n < INT_MAX) charge(L, (double)n * cost);
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_pushnumber(L, cost + DSL_COMPARE_COST);
        lua_pushcclosure(L, bytewise_less, 1);
    } else if (lua_iscfunction(L, 2)) {
        lua_pushvalue(L, 2);
        lua_pushnumber(L, cost + DSL_META_COST);
        lua_pushcclosure(L, charged_compare, 2);
        lua_replace(L, 2);
    }
    return call_original(L);
}

/* Replaces lib[name] with fn, which gets the original as upvalue 1 (and tag as upvalue 2). */
static void wrap(lua_State *L, const char *lib, const char *name, lua_CFunction fn, int tag) {
    lua_getglobal(L, lib);
    lua_getfield(L, -1, name);
    lua_pushinteger(L, tag);
    lua_pushcclosure(L, fn, 2);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static void open_safe_libs(lua_State *L) {
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},          {LUA_STRLIBNAME, luaopen_string}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_MATHLIBNAME, luaopen_math},    {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
    };
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }
    /* Not even the prelude needs these; the script's environment never had them. */
    static const char *const drop[] = {"dofile", "loadfile", "collectgarbage", "print", "warn"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, drop[i]);
    }
    /* The string metatable's __index is this same table, so `("").dump` is covered too. */
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushcfunction(L, refuse_dump);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    wrap(L, LUA_STRLIBNAME, "rep", safe_rep, 0);
    wrap(L, LUA_STRLIBNAME, "find", safe_pattern, 0);
    wrap(L, LUA_STRLIBNAME, "match", safe_pattern, 1);
    wrap(L, LUA_STRLIBNAME, "gmatch", safe_pattern, 2);
    wrap(L, LUA_STRLIBNAME, "gsub", safe_pattern, 3);
    wrap(L, LUA_TABLIBNAME, "move", safe_move, 0);
    wrap(L, LUA_TABLIBNAME, "sort", safe_sort, 0);
    wrap(L, LUA_TABLIBNAME, "insert", safe_insert, 0);
    wrap(L, LUA_TABLIBNAME, "remove", safe_remove, 0);
    wrap(L, LUA_TABLIBNAME, "concat", safe_concat, 0);
    wrap(L, LUA_TABLIBNAME, "unpack", safe_unpack, 0);
    wrap(L, LUA_COLIBNAME, "create", safe_cocreate, 0);
    wrap(L, LUA_COLIBNAME, "wrap", safe_cowrap, 0);
    wrap(L, LUA_COLIBNAME, "close", safe_coclose, 0);
    wrap(L, LUA_COLIBNAME, "resume", safe_resume, 0);
    wrap(L, LUA_GNAME, "xpcall", safe_xpcall, 0);
    wrap(L, LUA_MATHLIBNAME, "randomseed", safe_randomseed, 0);
    lua_getglobal(L, LUA_MATHLIBNAME);
    lua_getfield(L, -1, "randomseed");
    lua_pushinteger(L, 0);
    lua_call(L, 1, 0);  /* a fixed seed: math.random gives the same sweep at every compile */
    lua_pop(L, 1);
}

/* ---- helpers the prelude calls ---------------------------------------------------------------- */

static int host_line(lua_State *L) {
    lua_pushinteger(L, script_line(L, 1));
    return 1;
}

static int host_duration(lua_State *L) {
    int64_t ms;
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (strlen(s) != len || weir_parse_duration(s, &ms)) return 0;  /* "30m\0..." is no duration */
    lua_pushinteger(L, (lua_Integer)ms);
    return 1;
}

/* cron(expr) -> the expression with its whitespace normalized, or nil and the reason. */
static int host_cron(lua_State *L) {
    size_t len;
    const char *expr = luaL_checklstring(L, 1, &len);
    weir_cron_t c;
    char err[160];
    if (strlen(expr) != len) {
        lua_pushnil(L);
        lua_pushliteral(L, "it contains a NUL byte");
        return 2;
    }
    if (weir_cron_parse(expr, &c, err, sizeof err)) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (const char *p = expr; *p;) {
        while (isspace((unsigned char)*p)) p++;
        const char *w = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        if (p == w) break;
        if (luaL_bufflen(&b)) luaL_addchar(&b, ' ');
        luaL_addlstring(&b, w, (size_t)(p - w));
    }
    luaL_pushresult(&b);
    return 1;
}

/* host.suggest(word, candidates): the same "did you mean" as the C checks give. */
static int host_suggest(lua_State *L) {
    size_t len;
    const char *word = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checkstack(L, 260, "suggest");
    const char *cands[256];
    size_t n = 0;
    for (lua_Integer i = 1; n < sizeof cands / sizeof cands[0]; i++, n++) {
        /* the strings stay alive on the stack until we return */
        if (lua_rawgeti(L, 2, i) != LUA_TSTRING) { lua_pop(L, 1); break; }
        cands[n] = lua_tostring(L, -1);
    }
    char buf[300];
    lua_pushstring(L, weir_did_you_mean(word, len, cands, n, buf, sizeof buf));
    return 1;
}

typedef struct {
    int rank;              /* numbers, strings, booleans, the rest */
    lua_Number num;
    const char *str;
    size_t len;
    lua_Integer at;        /* index in the unsorted key list */
} sort_key_t;

static int cmp_key(const void *pa, const void *pb) {
    const sort_key_t *a = pa, *b = pb;
    if (a->rank != b->rank) return a->rank - b->rank;
    if (a->rank == 0 && a->num != b->num) return a->num < b->num ? -1 : 1;
    if (a->rank == 1) {
        int c = memcmp(a->str, b->str, a->len < b->len ? a->len : b->len);
        if (c || a->len != b->len) return c ? c : (a->len < b->len ? -1 : 1);
    }
    if (a->rank == 2 && a->num != b->num) return a->num < b->num ? -1 : 1;
    return a->at < b->at ? -1 : a->at > b->at;
}

/* sorted_keys(t) -> the keys of t in a fixed order: numbers, then strings bytewise, then
 * booleans, then the rest (in table order). */
static int host_sorted_keys(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L);  /* 2: keys in table order; anchors the strings the sort points to */
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, 2, ++n);
    }
    sort_key_t *keys = lua_newuserdatauv(L, (size_t)n * sizeof *keys + 1, 0);  /* 3: collected with the state */
    for (lua_Integer i = 0; i < n; i++) {
        sort_key_t *k = &keys[i];
        int t = lua_rawgeti(L, 2, i + 1);
        k->at = i + 1;
        k->str = NULL;
        k->num = 0;
        if (t == LUA_TNUMBER) k->rank = 0, k->num = lua_tonumber(L, -1);
        else if (t == LUA_TSTRING) k->rank = 1, k->str = lua_tolstring(L, -1, &k->len);
        else if (t == LUA_TBOOLEAN) k->rank = 2, k->num = lua_toboolean(L, -1);
        else k->rank = 3;
        lua_pop(L, 1);
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_key);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, 2, keys[i].at);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static void push_host(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"line", host_line},         {"duration", host_duration},       {"cron", host_cron},
        {"suggest", host_suggest}, {"sorted_keys", host_sorted_keys}, {"bind", dsl_task_bind}, {NULL, NULL},
    };
    luaL_newlib(L, fns);
    /* string.find as it was before wrap() guarded it: for the prelude's own linear patterns */
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_getfield(L, -1, "find");
    lua_getupvalue(L, -1, 1);
    lua_setfield(L, -4, "find");
    lua_pop(L, 2);
}

/* ---- the compile ----------------------------------------------------------------------------- */

static void link_error(void *ud, int line, const char *msg) {
    add_err(ud, line, msg, strlen(msg));
}

static int dsl_msgh(lua_State *L) {
    dsl_state_t *st = state_of(L);
    st->err_line = script_line(L, 0);
    return 1;  /* the message as it is; run_script reads it */
}

/* Records the error that stopped the script (a syntax error, a runtime error or a limit). */
static void script_failed(dsl_state_t *st, lua_State *L, int status) {
    char buf[200];
    if (!st->fatal && status == LUA_ERRMEM && !st->oom) st->fatal = FATAL_MEM;
    if (st->fatal) {
        fatal_text(st, buf, sizeof buf);
        add_err(st, st->fatal_line, buf, strlen(buf));
        return;
    }
    const char *msg;
    size_t len;
    if (lua_type(L, -1) == LUA_TSTRING) {
        msg = lua_tolstring(L, -1, &len);
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
        snprintf(buf, sizeof buf, "%.14g", lua_tonumber(L, -1));
        msg = buf;
        len = strlen(buf);
    } else {
        snprintf(buf, sizeof buf, "(error object is a %s value)", luaL_typename(L, -1));
        msg = buf;
        len = strlen(buf);
    }
    /* "<script>:12: " prefixes, one per coroutine the error crossed: the last is where it began.
     * A "prelude:N: " prefix is our own code's position, of no use to the script's author. */
    int line = 0;
    for (int more = 1; more;) {
        more = 0;
        static const char *const chunks[] = {DSL_SCRIPT + 1, "prelude"};
        for (int c = 0; c < 2; c++) {
            size_t clen = strlen(chunks[c]);
            if (len <= clen + 1 || memcmp(msg, chunks[c], clen) || msg[clen] != ':' ||
                !isdigit((unsigned char)msg[clen + 1]))
                continue;
            const char *p = msg + clen + 1;
            int n = 0;
            while (isdigit((unsigned char)*p)) n = n * 10 + (*p++ - '0');
            if (*p != ':') continue;
            p += 1 + (p[1] == ' ');
            if (c == 0) line = n;
            len -= (size_t)(p - msg);
            msg = p;
            more = 1;
        }
    }
    if (!line) line = status == LUA_ERRSYNTAX ? 1 : st->err_line;
    add_err(st, line, msg, len);
}

/* Runs under lua_pcall: every Lua error here, including memory errors in our own calls, lands
 * in weir_dsl_compile instead of aborting. */
static int dsl_main(lua_State *L) {
    dsl_state_t *st = lua_touserdata(L, 1);
    const char **src = lua_touserdata(L, 2);
    size_t len = (size_t)lua_tointeger(L, 3);
    lua_settop(L, 0);
    open_safe_libs(L);
    if (luaL_loadbufferx(L, weir_lua_prelude, weir_lua_prelude_len, "=prelude", "t")) return lua_error(L);
    push_host(L);
    lua_call(L, 1, 1);
    int dsl = lua_gettop(L);
    lua_getfield(L, dsl, "env");      /* dsl + 1 */
    lua_getfield(L, dsl, "finish");   /* dsl + 2 */
    lua_getfield(L, dsl, "errors");   /* dsl + 3 */
    lua_getfield(L, dsl, "array");    /* dsl + 4 */
    lua_getfield(L, dsl, "sorted");   /* dsl + 5 */
    lua_pushcfunction(L, dsl_msgh);   /* dsl + 6 */
    int env = dsl + 1, finish = dsl + 2, errors = dsl + 3, msgh = dsl + 6;

    st->limited = 1;
    st->deadline_ms = weir_now_ms() + DSL_DEADLINE_MS;
    int status = luaL_loadbufferx(L, *src, len, DSL_SCRIPT, "t");
    if (status == LUA_OK) {
        lua_pushvalue(L, env);
        lua_setupvalue(L, -2, 1);  /* the script's _ENV */
        status = lua_pcall(L, 0, 0, msgh);
        if (status == LUA_OK) {
            lua_pushvalue(L, finish);
            status = lua_pcall(L, 0, 1, msgh);
        }
    }
    st->limited = 0;
    if (status != LUA_OK || st->fatal) {
        script_failed(st, L, status);
        lua_pushnil(L);
    }
    int plan = lua_gettop(L);

    lua_Integer n = (lua_Integer)lua_rawlen(L, errors);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, errors, i);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        size_t mlen;
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &mlen) : NULL;
        if (msg) add_err(st, (int)lua_tointeger(L, -2), msg, mlen);
        lua_pop(L, 3);
    }
    if (!lua_istable(L, plan)) return 0;
    st->link.error = link_error;
    st->link.ud = st;
    st->link.array_mt = dsl + 4;
    st->link.sorted_mt = dsl + 5;
    dsl_link(&st->link, L, plan, &st->plan);
    if (st->link.oom) st->oom = 1;
    return 0;
}

static int cmp_err(const void *pa, const void *pb) {
    const dsl_err_t *a = pa, *b = pb;
    if (a->line != b->line) return a->line < b->line ? -1 : 1;
    return strcmp(a->msg, b->msg);
}

/* Sorts, removes repeats and formats the errors into out->errors. */
static int format_errors(dsl_state_t *st, const char *filename, weir_dsl_result_t *out) {
    qsort(st->errs, st->nerrs, sizeof *st->errs, cmp_err);
    weir_buf_t b;
    weir_buf_init(&b, (size_t)16 << 20);
    int n = 0, more = 0, rc = 0;
    for (size_t i = 0; i < st->nerrs; i++) {
        if (i && !cmp_err(&st->errs[i], &st->errs[i - 1])) continue;
        if (n == DSL_MAX_ERRORS || rc) {  /* enough to act on */
            more++;
            continue;
        }
        rc = st->errs[i].line > 0 ? weir_buf_printf(&b, "%s:%d: %s\n", filename, st->errs[i].line, st->errs[i].msg)
                                  : weir_buf_printf(&b, "%s: %s\n", filename, st->errs[i].msg);
        if (rc == WEIR_ENOMEM) { weir_buf_free(&b); return WEIR_ENOMEM; }
        if (!rc) n++;
        else more++;
    }
    if (more && weir_buf_printf(&b, "%s: %d more errors not shown\n", filename, more) == 0) n++;
    out->errors = b.data;
    out->nerrors = n;
    return 0;
}

int weir_dsl_compile(const char *filename, const char *src, size_t len, const weir_dsl_limits_t *lim,
                     weir_dsl_result_t *out) {
    memset(out, 0, sizeof *out);
    if (!filename) filename = "pipeline.lua";
    dsl_state_t st = {0};
    st.mem_max = lim && lim->mem_max ? lim->mem_max : DSL_MEM_DEFAULT;
    st.instr_max = lim && lim->instr_max ? lim->instr_max : DSL_INSTR_DEFAULT;
    lua_State *L = lua_newstate(dsl_alloc, &st);
    if (!L) {
        pool_close(&st.pool);
        return WEIR_ENOMEM;
    }
    st.L = L;
    lua_sethook(L, dsl_hook, LUA_MASKCOUNT, DSL_HOOK_PERIOD);
    lua_pushcfunction(L, dsl_main);
    lua_pushlightuserdata(L, &st);
    lua_pushlightuserdata(L, &src);
    lua_pushinteger(L, (lua_Integer)len);
    int status = lua_pcall(L, 3, 0, 0);
    if (status != LUA_OK && !st.oom) {
        /* Only our own code runs outside the script's pcall: a failure there is a bug or real OOM. */
        const char *msg = lua_tostring(L, -1);
        char buf[300];
        snprintf(buf, sizeof buf, "internal error: %s", msg ? msg : "unknown");
        if (status == LUA_ERRMEM) st.oom = 1;
        else add_err(&st, 0, buf, strlen(buf));
    }
    pool_close(&st.pool);  /* the state, dropped rather than closed: see dsl_pool_t */
    dsl_link_release(&st.link);

    int rc = 0;
    if (st.oom) {
        rc = WEIR_ENOMEM;
    } else if (st.nerrs) {
        rc = format_errors(&st, filename, out);
        if (!rc) rc = WEIR_ECOMPILE;
    } else if (st.plan) {
        weir_buf_t b;
        weir_buf_init(&b, DSL_PLAN_MAX);
        rc = weir_dsl_canonical(st.plan, 0, &b);
        if (rc == WEIR_ELIMIT) {
            char msg[100];
            snprintf(msg, sizeof msg, "%s: the plan is larger than %zu MiB\n", filename, DSL_PLAN_MAX >> 20);
            out->errors = strdup(msg);
            out->nerrors = 1;
            rc = out->errors ? WEIR_ECOMPILE : WEIR_ENOMEM;
        } else if (rc == 0) {
            out->plan = st.plan;
            st.plan = NULL;
            out->plan_json = b.data ? b.data : strdup("");
            out->plan_len = b.len;
            weir_sha256_hex(out->plan_json, out->plan_len, out->version);
            b.data = NULL;
        } else {
            rc = WEIR_ENOMEM;
        }
        weir_buf_free(&b);
    } else {
        rc = WEIR_ENOMEM;
    }
    json_decref(st.plan);
    for (size_t i = 0; i < st.nerrs; i++) free(st.errs[i].msg);
    free(st.errs);
    if (rc == WEIR_ENOMEM) {
        weir_dsl_result_free(out);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

void weir_dsl_result_free(weir_dsl_result_t *r) {
    if (!r) return;
    json_decref(r->plan);
    free(r->plan_json);
    free(r->errors);
    r->plan = NULL;
    r->plan_json = NULL;
    r->errors = NULL;
    r->plan_len = 0;
    r->nerrors = 0;
    r->version[0] = '\0';
}

/* ---- gate predicates ---------------------------------------------------------------------------- */

/* Pushes a JSON value as Lua (objects and arrays as tables, nesting bounded). */
static void push_json(lua_State *L, const json_t *v, int depth) {
    luaL_checkstack(L, 4, "metrics too deep");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_newtable(L);
        if (depth > 16) break;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            push_json(L, x, depth + 1);
            lua_setfield(L, -2, k);
        }
        break;
    }
    case JSON_ARRAY: {
        lua_newtable(L);
        if (depth > 16) break;
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            push_json(L, x, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default: lua_pushnil(L); break;
    }
}

typedef struct {
    const char *src;
    const json_t *m;
    int verdict;
    char *err;
    size_t errsize;
} pred_call_t;

static int pred_main(lua_State *L) {
    dsl_state_t *st = lua_touserdata(L, 1);
    pred_call_t *pc = lua_touserdata(L, 2);
    lua_settop(L, 0);
    open_safe_libs(L);
    lua_pushglobaltable(L);
    push_json(L, pc->m, 0);
    lua_setfield(L, -2, "m");
    lua_pop(L, 1);
    st->limited = 1;
    st->deadline_ms = weir_now_ms() + DSL_DEADLINE_MS;
    int status = luaL_loadbufferx(L, pc->src, strlen(pc->src), "=predicate", "t");
    if (status == LUA_OK) status = lua_pcall(L, 0, 1, 0);
    st->limited = 0;
    if (st->fatal) {
        char buf[200];
        snprintf(pc->err, pc->errsize, "%s", fatal_text(st, buf, sizeof buf));
        return 0;
    }
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        snprintf(pc->err, pc->errsize, "%s", msg ? msg : "error");
        return 0;
    }
    pc->verdict = lua_toboolean(L, -1);
    return 0;
}

int weir_dsl_predicate(const char *src, const json_t *m, const weir_dsl_limits_t *lim, int *verdict, char *err,
                       size_t errsize) {
    *verdict = 0;
    err[0] = '\0';
    dsl_state_t st = {0};
    st.mem_max = lim && lim->mem_max ? lim->mem_max : DSL_MEM_DEFAULT;
    st.instr_max = lim && lim->instr_max ? lim->instr_max : DSL_INSTR_DEFAULT;
    lua_State *L = lua_newstate(dsl_alloc, &st);
    if (!L) {
        pool_close(&st.pool);
        snprintf(err, errsize, "out of memory");
        return WEIR_ENOMEM;
    }
    st.L = L;
    lua_sethook(L, dsl_hook, LUA_MASKCOUNT, DSL_HOOK_PERIOD);
    pred_call_t pc = {src, m, 0, err, errsize};
    lua_pushcfunction(L, pred_main);
    lua_pushlightuserdata(L, &st);
    lua_pushlightuserdata(L, &pc);
    int status = lua_pcall(L, 2, 0, 0);
    if (status != LUA_OK && !err[0]) {
        const char *msg = lua_tostring(L, -1);
        snprintf(err, errsize, "%s", status == LUA_ERRMEM ? "memory limit exceeded" : msg ? msg : "error");
    }
    pool_close(&st.pool);
    for (size_t i = 0; i < st.nerrs; i++) free(st.errs[i].msg);
    free(st.errs);
    *verdict = pc.verdict;
    return err[0] ? WEIR_ELUA : 0;
}
