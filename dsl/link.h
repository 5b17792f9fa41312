/* link.h — internal to dsl/: turns what a pipeline script declared into the plan's JSON.
 *
 * dsl/prelude.lua checks each declaration as it is made and leaves plan-shaped Lua tables;
 * linking resolves what needs the whole file: task names (explicit `after`, and implied by
 * "${tasks.NAME.outputs.OUT}"), every "${...}" reference, pipeline defaults, cycles, and the
 * order of the plan. It is C because it runs for every task of pipelines with 10,000 of them. */
#ifndef WEIR_DSL_LINK_H
#define WEIR_DSL_LINK_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

typedef struct {
    void (*error)(void *ud, int line, const char *msg);  /* one validation error */
    void *ud;
    int array_mt, sorted_mt;  /* stack indices of the prelude's ARRAY and SORTED markers */
    int oom;                  /* a C allocation failed */
    void **blocks;            /* C memory of the link, released by dsl_link_release */
    size_t nblocks, capblocks;
    json_t *scratch;          /* JSON built on the way; released with the link */
    size_t nodes, bytes;      /* JSON values and string bytes made so far: see LINK_MAX_NODES */
    int too_big;              /* they went past the caps (reported once) */
} dsl_link_t;

/* Links the declarations at stack index raw (what the prelude's finish() returns) into
 * *plan, which it creates. Reports every error through k->error; *plan is complete only if it
 * reported none. May raise a Lua error (out of memory): *plan and k stay the caller's to free. */
void dsl_link(dsl_link_t *k, lua_State *L, int raw, json_t **plan);

/* Frees what the link allocated; the plan is not touched. */
void dsl_link_release(dsl_link_t *k);

#endif
