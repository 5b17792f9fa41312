/* weir/plugin.h — the ABI between weir and a native step plugin (version 1, draft).
 *
 * A plugin is a shared object that exports one function, weir_plugin_entry,
 * returning a const weir_plugin_t that begins with its own size and the ABI
 * version it was built against. The host checks both before it calls
 * anything else and refuses a mismatch with a message naming the file and
 * both versions. Fields may only be appended; spare fields are reserved.
 *
 * This header is installed with weir (`make install`) and found through
 * `pkg-config --cflags weir`. The step context is opaque to plugins. */
#ifndef WEIR_PLUGIN_H
#define WEIR_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define WEIR_PLUGIN_ABI_VERSION 1u

/* Opaque: what the host passes to a step (parameters, inputs, outputs, logging, ...). */
typedef struct weir_step_ctx_s weir_step_ctx_t;

typedef struct {
    const char *name;          /* "train.logreg" */
    const char *summary;       /* one line for `weir steps` */
    const char *params_schema; /* JSON describing the parameters, or NULL */
    /* Runs the step; 0 on success, a negative weir error code on failure. */
    int (*run)(weir_step_ctx_t *ctx);
    void *reserved[4];
} weir_plugin_step_t;

typedef struct {
    size_t size;               /* sizeof(weir_plugin_t) as the plugin saw it */
    uint32_t abi_version;      /* WEIR_PLUGIN_ABI_VERSION as the plugin saw it */
    const char *name;          /* plugin name, e.g. "ml" */
    const char *version;       /* the plugin's own version string */
    const weir_plugin_step_t *steps;
    size_t nsteps;
    void *reserved[8];
} weir_plugin_t;

/* The one symbol a plugin exports. */
typedef const weir_plugin_t *(*weir_plugin_entry_fn)(void);
#define WEIR_PLUGIN_ENTRY "weir_plugin_entry"

#endif
