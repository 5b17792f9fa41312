/* batch.h — group commit: state changes from many requests go to PostgreSQL as one transaction.
 *
 * Each operation is one statement (a call of a state-machine function from
 * migrations/0002_execution.sql). Operations added while a transaction is committing wait;
 * before the loop next blocks, everything waiting is sent as one transaction, so one fsync
 * serves every request that arrived meanwhile. An operation's callback runs after that
 * transaction's commit is known, so replies go out only after commit.
 *
 * If a batched transaction fails on a statement (which the functions avoid by answering
 * refusals as values), every operation of it is run again alone, so that one bad request
 * cannot fail the others. Not a general queue: statements only, bounded, in order. */
#ifndef WEIR_ENGINE_BATCH_H
#define WEIR_ENGINE_BATCH_H

#include "engine/db.h"

typedef struct weir_batch_s weir_batch_t;

/* status: 0 committed, result in statement i of tx; WEIR_EDB that statement failed (the
 * transaction was rolled back; weir_db_tx_error(tx) says why); WEIR_EUNAVAIL no database. */
typedef void (*weir_batch_cb)(weir_db_tx_t *tx, int i, int status, void *data);
/* Called on each loop turn while no transaction is in flight, just before the waiting
 * operations (maybe none) are sent, with whether they hold one flagged WEIR_BATCH_WAKES; it may
 * add operations, which join this batch. */
typedef void (*weir_batch_hook)(weir_batch_t *b, int wakes, void *data);

enum {
    WEIR_BATCH_WAKES = 1 /* may make tasks ready: waiting claims should be tried after it */
};

weir_batch_t *weir_batch_new(uv_loop_t *loop, weir_db_t *db, weir_batch_hook hook, void *hook_data);
/* Operations not yet sent complete with WEIR_EUNAVAIL; the object is freed once its handle closes. */
void weir_batch_free(weir_batch_t *b);
/* Queues a statement (sql must outlive the operation: a string literal; params are copied).
 * 0, or WEIR_ELIMIT when 20,000 operations are already waiting (answer 503), WEIR_ENOMEM. */
int weir_batch_add(weir_batch_t *b, const char *sql, int nparams, const char *const *params, unsigned flags,
                   weir_batch_cb cb, void *data);
/* Like weir_batch_add, but the parameters are made just before the batch is sent: fill(data,
 * params) stores nparams malloc'd strings (NULL for SQL NULL) and returns 0, or non-zero to send
 * NULLs. Lets callers gather many requests into one statement until the last moment. fill may be
 * called again if the statement has to be re-run alone. */
typedef int (*weir_batch_fill)(void *data, char **params);
int weir_batch_add_lazy(weir_batch_t *b, const char *sql, int nparams, weir_batch_fill fill, unsigned flags,
                        weir_batch_cb cb, void *data);
/* Operations waiting and in flight. */
unsigned weir_batch_pending(const weir_batch_t *b);
/* Transactions committed and operations they carried, since start (for /metrics and benchmarks). */
void weir_batch_stats(const weir_batch_t *b, unsigned long long *txs, unsigned long long *ops);

#endif
