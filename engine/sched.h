/* sched.h — the scheduler process: one libuv loop that owns the database
 * connection and the HTTP API. This header is shared by the engine/ sources only;
 * the CLI sees weir_sched_run() alone. */
#ifndef WEIR_ENGINE_SCHED_H
#define WEIR_ENGINE_SCHED_H

#include "dsl/dsl.h"
#include "engine/batch.h"
#include "engine/db.h"
#include "engine/http.h"

#include <sys/types.h>

typedef struct {
    const char *database;        /* libpq conninfo or URL */
    const char *host;            /* listen address; default 127.0.0.1 */
    int port;                    /* default 8470; 0 picks a free port */
    const char *port_file;       /* if set, the bound port is written there once listening */
    weir_http_limits_t http;
    weir_dsl_limits_t dsl;
    int lease_ms;                /* a claim's lease, renewed by heartbeats; default 15000 */
    long long max_log_bytes;     /* log kept per attempt; default 64 MiB */
    const char *artifacts_dir;   /* content-addressed store; default $WEIR_HOME/artifacts */
    int tick_ms;                 /* how often timers (leases, backoffs, deadlines) are checked; default 200 */
    pid_t *children;             /* weir up's workers: on SIGINT/SIGTERM they get SIGTERM and are */
    int nchildren;               /* waited for (SIGKILL after 10 s) while the scheduler still serves;
                                  * each reaped one is set to 0 */
} weir_sched_opts_t;

typedef struct weir_waiter_s weir_waiter_t;   /* a worker's open long-poll claim (engine/work.c) */
typedef struct weir_notice_s weir_notice_t;   /* a cancel for a worker with no claim open */

/* A token the API has checked (engine/api.c), kept while the connection that LISTENs for
 * changes to tokens stays up and no change has been announced since it was read. */
enum { WEIR_AUTH_CACHE = 64 };
typedef struct {
    char hash[65];               /* SHA-256 of the token, hex; "" for a free slot */
    char role[12];
    char name[160];
    uint64_t until;              /* uv_now() ms: its expiry, or a minute after it was read */
    unsigned gen;                /* the cache's generation when it was read */
} weir_auth_entry_t;

typedef struct weir_sched_s {
    uv_loop_t *loop;
    weir_db_t *db;
    weir_http_server_t *http;
    weir_dsl_limits_t dsl;
    uv_signal_t sigint, sigterm;
    unsigned compiling;          /* applies queued or running on the thread pool */
    int stopping;
    weir_batch_t *batch;         /* group commit of every state change */
    uv_timer_t tick;
    unsigned long long ticks;
    int tick_inflight;
    int schedule_inflight;           /* a weir_schedules_due() is in the batch */
    int trim_pending;                /* an apply ended: give the compile's memory back (engine/work.c) */
    int leader;                      /* this scheduler holds the leader lock: it fires the schedules */
    int leader_inflight;             /* a leader check is in the batch */
    int lease_ms, tick_ms;
    long long max_log_bytes;
    char artifacts_dir[1024];
    weir_waiter_t *waiters;      /* open claims, one per worker at most */
    weir_notice_t *notices;      /* undelivered cancels, bounded */
    unsigned nnotices;
    unsigned gates_inflight;     /* gate evaluations under way */
    int gate_probing;            /* a search for ready gates is in a batch */
    void *completions;           /* completions being gathered into one call (engine/work.c) */
    int64_t ready_unhanded;      /* tasks completions made ready, less those handed off with them */
    int gates_ready;             /* completions made gates ready: probe them */
    pid_t *children;             /* local workers still draining (opts' array; 0 once reaped) */
    int nchildren;
    uv_timer_t drain;
    uint64_t drain_deadline;
    weir_auth_entry_t auth[WEIR_AUTH_CACHE];
    unsigned auth_session;       /* the database session that LISTENs on weir_tokens; 0: none */
    unsigned auth_gen;           /* one more on each notice: older entries are void */
    int auth_listening;          /* a LISTEN is in flight */
    unsigned auth_next;          /* the slot a new entry takes when none is free */
    unsigned long long auth_hits, auth_lookups;
} weir_sched_t;

/* Verifies the schema, connects, listens, and runs until SIGINT or SIGTERM.
 * Returns a process exit code. */
int weir_sched_run(const weir_sched_opts_t *opts);

/* The HTTP handler (engine/api.c); data is the weir_sched_t. */
void weir_api_handle(weir_http_req_t *req, void *data);
/* The database connection's notification hook (engine/api.c): a notice on weir_tokens voids
 * the tokens the API has checked. */
void weir_api_notify(const char *channel, const char *payload, void *data);

/* engine/work.c: the batch hook (offers ready work to waiting claims), the timer tick, the
 * delivery of cancels to workers, and the release of open claims at shutdown. */
void weir_work_batch_hook(weir_batch_t *b, int wakes, void *data);
void weir_work_tick(weir_sched_t *s);
/* schedule.c: about once a second, the leader fires the cron schedules that are due; every
 * scheduler checks whether it leads (holds the leader lock on its connection) or may now. */
void weir_schedule_tick(weir_sched_t *s);
void weir_leader_check(weir_sched_t *s);
void weir_work_offer(weir_sched_t *s);
void weir_work_notify(weir_sched_t *s, json_t *notify);
void weir_work_stop(weir_sched_t *s);
/* Claims held open now. */
unsigned weir_work_waiting(const weir_sched_t *s);
/* engine/gate.c: decides gates that became ready (kind gate, state queued on queue ''). */
void weir_gate_probe(weir_sched_t *s);

#endif
