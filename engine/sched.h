/* sched.h — the scheduler process: one libuv loop that owns the database
 * connection and the HTTP API. This header is shared by the engine/ sources only;
 * the CLI sees weir_sched_run() alone. */
#ifndef WEIR_ENGINE_SCHED_H
#define WEIR_ENGINE_SCHED_H

#include "dsl/dsl.h"
#include "engine/db.h"
#include "engine/http.h"

typedef struct {
    const char *database;        /* libpq conninfo or URL */
    const char *host;            /* listen address; default 127.0.0.1 */
    int port;                    /* default 8470; 0 picks a free port */
    const char *port_file;       /* if set, the bound port is written there once listening */
    weir_http_limits_t http;
    weir_dsl_limits_t dsl;
} weir_sched_opts_t;

typedef struct weir_sched_s {
    uv_loop_t *loop;
    weir_db_t *db;
    weir_http_server_t *http;
    weir_dsl_limits_t dsl;
    uv_signal_t sigint, sigterm;
    unsigned compiling;          /* applies queued or running on the thread pool */
    int stopping;
} weir_sched_t;

/* Verifies the schema, connects, listens, and runs until SIGINT or SIGTERM.
 * Returns a process exit code. */
int weir_sched_run(const weir_sched_opts_t *opts);

/* The HTTP handler (engine/api.c); data is the weir_sched_t. */
void weir_api_handle(weir_http_req_t *req, void *data);

#endif
