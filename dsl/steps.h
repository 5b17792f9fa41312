/* steps.h — the step names a pipeline may use, and the outputs each one always produces.
 *
 * This is the one list the DSL checks `step = "..."` against (an unknown name is an error with
 * a suggestion). It is a fixed table for now; when plugins declare their steps, the host will
 * extend it from the installed plugins. It says nothing about how a step runs (see workers/). */
#ifndef WEIR_DSL_STEPS_H
#define WEIR_DSL_STEPS_H

#include <stddef.h>

typedef struct {
    const char *name;     /* "train.logreg" */
    const char *outputs;  /* space-separated names every run of the step produces; "" for none */
    const char *summary;  /* one line for people */
} weir_dsl_step_t;

/* The known steps, sorted by name; static storage. */
const weir_dsl_step_t *weir_dsl_steps(size_t *n);
/* The step called name, or NULL. */
const weir_dsl_step_t *weir_dsl_step_find(const char *name);

#endif
