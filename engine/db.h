/* db.h — the scheduler's asynchronous PostgreSQL connection on a libuv loop.
 *
 * Work is submitted as transactions: a batch of parameterised statements
 * sent in libpq pipeline mode and closed by one Sync, which PostgreSQL runs
 * as one implicit transaction — all statements commit together or none do.
 * Several transactions may be in flight at once; their callbacks run in
 * submission order, each only after its commit (or failure) is known.
 * The connection's socket is watched by the loop; nothing here blocks.
 * Each statement text is prepared on the connection the first time it is sent
 * and run by name after that (see db.c), so it is parsed and planned once per
 * connection, not on every execution.
 *
 * When the connection is lost, every transaction in flight fails with
 * WEIR_EUNAVAIL (its outcome unknown to the caller), new submissions fail the
 * same way until a reconnect succeeds, and reconnects are retried with
 * backoff. Not a pool, not an ORM. */
#ifndef WEIR_ENGINE_DB_H
#define WEIR_ENGINE_DB_H

#include <libpq-fe.h>
#include <uv.h>

typedef struct weir_db_s weir_db_t;
typedef struct weir_db_tx_s weir_db_tx_t;

/* status: 0 committed; WEIR_EDB a statement failed and the transaction rolled
 * back (weir_db_tx_error says why); WEIR_EUNAVAIL no connection, or it was
 * lost before the outcome was known; the code a weir_db_tx_add returned, if
 * one failed (nothing was sent). The transaction is freed when the callback
 * returns. */
typedef void (*weir_db_tx_cb)(weir_db_tx_t *tx, int status, void *data);

/* Starts connecting at once; *out is ready for submissions immediately
 * (they wait for the connection or fail with WEIR_EUNAVAIL if it is down).
 * An attempt that gets no answer ends after conninfo's connect_timeout
 * (10 s when unset) and is retried like any other. */
int weir_db_new(uv_loop_t *loop, const char *conninfo, weir_db_t **out);
/* Fails what is in flight with WEIR_EUNAVAIL, closes the connection and frees
 * the object once its handles are closed, then calls done(data). NULL: no-op. */
void weir_db_free(weir_db_t *db, void (*done)(void *), void *data);
/* 1 while connected. */
int weir_db_connected(const weir_db_t *db);
/* Transactions submitted and not yet completed. */
unsigned weir_db_inflight(const weir_db_t *db);
/* The current connection's number: 1 for the first, one more for each reconnect, 0 while
 * none is up. What lives with a session (LISTEN, session locks) lasts as long as its number. */
unsigned weir_db_session(const weir_db_t *db);
/* cb(channel, payload, data) for each notification (NOTIFY) that reaches the connection, after
 * the results read with it. One hook; NULL removes it. Notifications sent while the connection
 * was down are lost: a listener must treat a new session number as "anything may have changed". */
typedef void (*weir_db_notify_cb)(const char *channel, const char *payload, void *data);
void weir_db_on_notify(weir_db_t *db, weir_db_notify_cb cb, void *data);

weir_db_tx_t *weir_db_tx_new(weir_db_t *db);
/* Appends a statement; params (text format, NULL for SQL NULL) are copied.
 * Returns the statement's index, or a negative WEIR_E* code (WEIR_EINVAL:
 * no sql, or nparams outside 0..65535); after a failure the transaction
 * completes with that code when submitted, without being sent. */
int weir_db_tx_add(weir_db_tx_t *tx, const char *sql, int nparams, const char *const *params);
/* Sends the transaction. cb is never called before this returns. A
 * transaction with no statements completes with status 0. */
void weir_db_tx_submit(weir_db_tx_t *tx, weir_db_tx_cb cb, void *data);
/* Result of statement i, borrowed until the callback returns; NULL if the
 * statement did not run. */
PGresult *weir_db_tx_result(const weir_db_tx_t *tx, int i);
/* For a failed transaction: the server's message and SQLSTATE ("" when none). */
const char *weir_db_tx_error(const weir_db_tx_t *tx);
const char *weir_db_tx_sqlstate(const weir_db_tx_t *tx);

/* Helper: text of row r, column c of statement i's result ("" if absent). */
const char *weir_db_value(const weir_db_tx_t *tx, int i, int r, int c);
int weir_db_rows(const weir_db_tx_t *tx, int i);

#endif
