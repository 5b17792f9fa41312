/* task.h — internal to dsl/: the body of one `task "name" { ... }`, checked in C.
 *
 * The prelude hands task bodies to C because they are read for every task, and a 10,000-task
 * pipeline must compile in well under 200 ms. Gates, approvals, parameters and the pipeline
 * itself stay in dsl/prelude.lua; the messages here match its style word for word. */
#ifndef WEIR_DSL_TASK_H
#define WEIR_DSL_TASK_H

#include <lua.h>

/* bind(E, ARRAY, SORTED, EMPTY, NO_OUTPUTS, HANDLE, PARAM) -> { task_body, retries, resources,
 * trigger_rule }, closures over the prelude's error list, markers and private keys:
 *   task_body(t, spec, ctx, line) fills the plan table t from spec and returns the fields that
 *     pipeline defaults complete ({ retries =, resources =, trigger_rule = }) or nil;
 *   retries(v, ctx, line), resources(v, ctx, line), trigger_rule(v, ctx, line) return the
 *     partial plan form of those fields (nil when wrong), for tasks and pipeline defaults.
 * Errors are appended to E as { line, message }. */
int dsl_task_bind(lua_State *L);

#endif
