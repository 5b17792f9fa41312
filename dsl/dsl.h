/* dsl.h — compiles a Lua pipeline script into a canonical, versioned plan.
 *
 * The script runs in a sandbox (no io, os, require, debug, string.dump, no
 * binary chunks) with a memory cap and an instruction budget that also holds
 * inside coroutines. Compilation never touches the host: no files, no
 * network, no clock. It is not an interpreter for running tasks: gate
 * predicates are checked for syntax here and evaluated elsewhere.
 *
 * The plan's format is documented in docs/dsl.md ("The plan").
 *
 * Determinism: Lua compares strings with strcoll, so a process that compiles
 * must leave LC_COLLATE at "C" (weir never calls setlocale). */
#ifndef WEIR_DSL_H
#define WEIR_DSL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t mem_max;       /* bytes the Lua state may hold; 0 = default (64 MiB) */
    uint64_t instr_max;   /* VM instructions, all coroutines together; 0 = default (200 million) */
} weir_dsl_limits_t;

typedef struct {
    json_t *plan;         /* the plan; NULL when there are errors. Owned by the result. */
    char *plan_json;      /* canonical serialization (sorted keys, compact); NULL on errors */
    size_t plan_len;
    char version[65];     /* SHA-256 hex of plan_json: the version id; "" on errors */
    char *errors;         /* "file:line: message\n" per error, all of them; NULL when none */
    int nerrors;
} weir_dsl_result_t;

/* Compiles src (len bytes, need not be NUL-terminated); filename is used only
 * in messages. Fills *out, which the caller releases with weir_dsl_result_free
 * whatever the return value. Returns 0, WEIR_ECOMPILE (see out->errors) or
 * WEIR_ENOMEM. */
int weir_dsl_compile(const char *filename, const char *src, size_t len, const weir_dsl_limits_t *lim,
                     weir_dsl_result_t *out);
void weir_dsl_result_free(weir_dsl_result_t *r);

/* Evaluates a gate predicate (Lua source, as the plan holds it: "return ...") in the same
 * sandbox and limits as a compile, with `m` bound to the metrics object (upstream task name ->
 * its metrics). 0 with *verdict 1/0 (the result's truthiness); WEIR_ELUA or WEIR_ENOMEM with the
 * reason in err (a runtime error, a limit hit). */
int weir_dsl_predicate(const char *src, const json_t *m, const weir_dsl_limits_t *lim, int *verdict, char *err,
                       size_t errsize);

#endif
