/* db.c — see db.h. One connection in libpq pipeline mode, driven by a
 * uv_poll_t on its socket. Each transaction is its statements plus a Sync;
 * results arrive strictly in order, so the in-flight list is a FIFO. */
#include "engine/db.h"
#include "common/error.h"
#include "common/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *sql;
    int nparams;
    char **params;
    PGresult *res;
    int prep;         /* sent by name: its slot in db->prep; -1 when sent unnamed */
    unsigned prep_id; /* and its id (a forgotten statement's slot is reused) */
    int prep_parse;   /* 1: this transaction prepared it, and that Parse's result comes first */
} db_stmt_t;

/* A statement prepared on the current connection, named "weir_<id>": parsed, analysed and
 * planned once per connection instead of on every execution (about a tenth of the backend's CPU
 * in a chain's hand-off). Keyed by the text and the parameter count. The transaction that first
 * sends a statement prepares it just before running it, so the Parse sees what the statements
 * before it did; others use the name only once that Parse is known to have succeeded, and send
 * the statement unnamed until then. */
typedef struct {
    char *sql; /* NULL: a free slot */
    unsigned hash;
    int nparams;
    unsigned id;
    int ready; /* its Parse succeeded */
} db_prep_t;

enum { DB_MAX_PREPARED = 128 }; /* beyond this, statements go unnamed, as before */

struct weir_db_tx_s {
    weir_db_t *db;
    db_stmt_t *stmts;
    int n, cap;
    int next_result;        /* index of the statement whose result comes next */
    int add_error;          /* a failed weir_db_tx_add: the transaction must not be sent */
    int status;
    char *error;
    char sqlstate[6];
    weir_db_tx_cb cb;
    void *data;
    weir_db_tx_t *next;
};

typedef struct { weir_db_tx_t *head, *tail; } tx_list_t;

enum { DB_DOWN, DB_CONNECTING, DB_UP };

struct weir_db_s {
    uv_loop_t *loop;
    char *conninfo;
    PGconn *conn;
    uv_poll_t *poll;        /* one per socket; freed in its close callback */
    int poll_events;
    uv_timer_t retry;       /* reconnect backoff; while connecting, the attempt's deadline */
    uv_idle_t kick;         /* completes deferred transactions on the next loop turn */
    int state;
    int settled;            /* the first connection attempt has succeeded or failed */
    unsigned backoff_ms;
    unsigned inflight;
    tx_list_t sent;         /* sent, awaiting results, in order */
    tx_list_t waiting;      /* submitted during the first connection attempt */
    tx_list_t deferred;     /* to be completed without touching the server */
    unsigned session, sessions; /* weir_db_session; connections made so far */
    db_prep_t prep[DB_MAX_PREPARED]; /* statements prepared on this connection */
    int nprep;
    unsigned prep_ids;
    weir_db_notify_cb notify;
    void *notify_data;
    int closing, open_handles;
    void (*done)(void *);
    void *done_data;
};

static void list_push(tx_list_t *l, weir_db_tx_t *tx) {
    tx->next = NULL;
    if (l->tail) l->tail->next = tx; else l->head = tx;
    l->tail = tx;
}

static weir_db_tx_t *list_pop(tx_list_t *l) {
    weir_db_tx_t *tx = l->head;
    if (tx) {
        l->head = tx->next;
        if (!l->head) l->tail = NULL;
    }
    return tx;
}

static void tx_free(weir_db_tx_t *tx) {
    for (int i = 0; i < tx->n; i++) {
        free(tx->stmts[i].sql);
        for (int j = 0; tx->stmts[i].params && j < tx->stmts[i].nparams; j++) free(tx->stmts[i].params[j]);
        free(tx->stmts[i].params);
        PQclear(tx->stmts[i].res);
    }
    free(tx->stmts);
    free(tx->error);
    free(tx);
}

static void tx_complete(weir_db_tx_t *tx) {
    tx->db->inflight--;
    if (tx->cb) tx->cb(tx, tx->status, tx->data);
    tx_free(tx);
}

static void tx_set_error(weir_db_tx_t *tx, int status, const char *msg, const char *sqlstate) {
    if (tx->status) return; /* keep the first cause */
    tx->status = status;
    free(tx->error);
    tx->error = strdup(msg ? msg : "");
    snprintf(tx->sqlstate, sizeof tx->sqlstate, "%s", sqlstate ? sqlstate : "");
}

/* Completes only what was deferred before it ran: a callback that submits
 * again while the database is down (a retry) defers to the next loop turn,
 * instead of spinning here and never letting the loop reconnect. An idle
 * handle, not a 0 ms timer: libuv runs a timer restarted from a timer
 * callback again in the same pass, which would be the same spin. */
static void db_kick_cb(uv_idle_t *h) {
    weir_db_t *db = h->data;
    tx_list_t now = db->deferred;
    db->deferred.head = db->deferred.tail = NULL;
    uv_idle_stop(&db->kick);
    weir_db_tx_t *tx;
    while ((tx = list_pop(&now))) tx_complete(tx);
}

static void defer(weir_db_t *db, weir_db_tx_t *tx) {
    list_push(&db->deferred, tx);
    if (!db->closing) uv_idle_start(&db->kick, db_kick_cb);
}

static void handle_closed(uv_handle_t *h) {
    weir_db_t *db = h->data;
    if (h != (uv_handle_t *)&db->retry && h != (uv_handle_t *)&db->kick) free(h);
    if (--db->open_handles == 0 && db->closing) {
        void (*done)(void *) = db->done;
        void *data = db->done_data;
        free(db->conninfo);
        free(db);
        if (done) done(data);
    }
}

static void poll_stop(weir_db_t *db) {
    if (!db->poll) return;
    uv_close((uv_handle_t *)db->poll, handle_closed);
    db->poll = NULL;
    db->poll_events = 0;
}

static void on_poll(uv_poll_t *p, int status, int events);

/* Watches the connection's current socket. Returns -1 if it cannot: the
 * caller treats that as a lost connection, since nothing would ever wake us. */
static int poll_want(weir_db_t *db, int events) {
    if (!db->poll) {
        db->poll = malloc(sizeof *db->poll);
        if (!db->poll || uv_poll_init_socket(db->loop, db->poll, PQsocket(db->conn))) {
            free(db->poll);
            db->poll = NULL;
            weir_log_error("db: cannot watch the connection's socket");
            return -1;
        }
        db->poll->data = db;
        db->open_handles++;
        db->poll_events = -1;
    }
    if (events != db->poll_events) {
        uv_poll_start(db->poll, events, on_poll);
        db->poll_events = events;
    }
    return 0;
}

/* ---- prepared statements ---------------------------------------------------------------- */

static unsigned prep_hash(const char *sql, int nparams) {
    unsigned h = 2166136261u ^ (unsigned)nparams; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) h = (h ^ *p) * 16777619u;
    return h;
}

static void prep_name(unsigned id, char out[24]) { snprintf(out, 24, "weir_%u", id); }

/* Slot k, if it still holds statement id (a forgotten statement's slot is reused); else NULL. */
static db_prep_t *prep_live(weir_db_t *db, int k, unsigned id) {
    return k >= 0 && k < db->nprep && db->prep[k].sql && db->prep[k].id == id ? &db->prep[k] : NULL;
}

/* Forgets slot k if it still holds statement id: the next use prepares it again. */
static void prep_forget(weir_db_t *db, int k, unsigned id) {
    db_prep_t *p = prep_live(db, k, id);
    if (!p) return;
    free(p->sql);
    p->sql = NULL;
}

/* A new connection has no prepared statements. */
static void prep_clear(weir_db_t *db) {
    for (int k = 0; k < db->nprep; k++) free(db->prep[k].sql);
    db->nprep = 0;
}

static void start_connect(weir_db_t *db);

static void connection_lost(weir_db_t *db, const char *why);

static void retry_cb(uv_timer_t *t) {
    weir_db_t *db = t->data;
    if (db->state == DB_CONNECTING) {
        weir_log_warn("db: cannot connect: no answer within the connect timeout");
        connection_lost(db, "connect timed out");
        return;
    }
    start_connect(db);
}

/* libpq keeps connect_timeout only in its blocking calls; with PQconnectPoll
 * the deadline is ours, or a server that never answers holds us (and the
 * transactions waiting for the first connection) connecting forever. Unset,
 * it is 10 s; like libpq, less than 2 s counts as 2. */
static unsigned connect_timeout_ms(PGconn *conn) {
    unsigned ms = 10000;
    PQconninfoOption *opts = PQconninfo(conn);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (!strcmp(o->keyword, "connect_timeout") && o->val && atoi(o->val) > 0)
            ms = (unsigned)(atoi(o->val) < 2 ? 2 : atoi(o->val)) * 1000;
    PQconninfoFree(opts);
    return ms;
}

/* The connection is gone: everything in flight has an unknown outcome. */
static void connection_lost(weir_db_t *db, const char *why) {
    if (db->state == DB_UP && !db->closing) weir_log_warn("db: connection lost: %s", why);
    db->state = DB_DOWN;
    db->settled = 1;
    db->session = 0;
    prep_clear(db);
    poll_stop(db);
    if (db->conn) { PQfinish(db->conn); db->conn = NULL; }
    weir_db_tx_t *tx;
    while ((tx = list_pop(&db->sent))) {
        /* EUNAVAIL even if a statement already failed: a terminated backend
         * reports itself as a statement error (57P01, FATAL) before it hangs
         * up, and the caller must see a lost connection, not a SQL error.
         * The server's message, when there was one, stays as the reason. */
        tx_set_error(tx, WEIR_EUNAVAIL, "database connection lost", "08006");
        if (!tx->add_error) tx->status = WEIR_EUNAVAIL;
        defer(db, tx);
    }
    while ((tx = list_pop(&db->waiting))) {
        tx_set_error(tx, WEIR_EUNAVAIL, "database unavailable", "08006");
        defer(db, tx);
    }
    if (!db->closing) {
        uv_timer_start(&db->retry, retry_cb, db->backoff_ms, 0);
        db->backoff_ms = db->backoff_ms * 2 > 2000 ? 2000 : db->backoff_ms * 2;
    }
}

static int flush_out(weir_db_t *db) {
    int f = PQflush(db->conn);
    if (f < 0) { connection_lost(db, PQerrorMessage(db->conn)); return -1; }
    if (poll_want(db, UV_READABLE | (f ? UV_WRITABLE : 0))) {
        connection_lost(db, "cannot watch the socket");
        return -1;
    }
    return 0;
}

static int send_unnamed(weir_db_t *db, const db_stmt_t *s) {
    int ok = PQsendQueryParams(db->conn, s->sql, s->nparams, NULL, (const char *const *)s->params, NULL, NULL, 0);
    return ok ? 0 : -1;
}

static int send_named(weir_db_t *db, db_stmt_t *s, int slot) {
    char name[24];
    s->prep = slot;
    s->prep_id = db->prep[slot].id;
    prep_name(s->prep_id, name);
    if (s->prep_parse && !PQsendPrepare(db->conn, name, s->sql, s->nparams, NULL)) return -1;
    int ok = PQsendQueryPrepared(db->conn, name, s->nparams, (const char *const *)s->params, NULL, NULL, 0);
    return ok ? 0 : -1;
}

/* Sends statement s: by name when it is prepared; prepared first when it is new and a slot is
 * free; unnamed otherwise (its Parse still in flight, no slot, no memory). 0 when sent. */
static int send_stmt(weir_db_t *db, db_stmt_t *s) {
    unsigned h = prep_hash(s->sql, s->nparams);
    int slot = -1; /* a free one, for a new statement */
    s->prep = -1;
    s->prep_parse = 0;
    for (int k = 0; k < db->nprep; k++) {
        db_prep_t *p = &db->prep[k];
        if (!p->sql) {
            if (slot < 0) slot = k;
        } else if (p->hash == h && p->nparams == s->nparams && !strcmp(p->sql, s->sql)) {
            return p->ready ? send_named(db, s, k) : send_unnamed(db, s);
        }
    }
    if (slot < 0 && db->nprep < DB_MAX_PREPARED) slot = db->nprep;
    char *copy = slot < 0 ? NULL : strdup(s->sql);
    if (!copy) return send_unnamed(db, s);
    if (slot == db->nprep) db->nprep++;
    db->prep[slot] = (db_prep_t){.sql = copy, .hash = h, .nparams = s->nparams, .id = ++db->prep_ids};
    s->prep_parse = 1;
    return send_named(db, s, slot);
}

/* An empty transaction, or one whose weir_db_tx_add failed, is sent as a
 * bare Sync: it then completes in its turn behind the transactions already in
 * flight, as callbacks must, and nothing of it runs. */
static int send_tx(weir_db_t *db, weir_db_tx_t *tx) {
    for (int i = 0; i < tx->n && !tx->add_error; i++)
        if (send_stmt(db, &tx->stmts[i])) return -1;
    return PQpipelineSync(db->conn) ? 0 : -1;
}

/* Puts tx on the wire behind those in flight. A failure leaves the pipeline
 * with a partial transaction in it, which the next Sync would commit: the
 * connection is dropped instead, failing tx with the rest. */
static void send_one(weir_db_t *db, weir_db_tx_t *tx) {
    list_push(&db->sent, tx);
    if (send_tx(db, tx) || flush_out(db)) {
        if (db->state == DB_UP) connection_lost(db, PQerrorMessage(db->conn));
    }
}

/* Reads every complete result and completes the transactions they finish. */
static void read_results(weir_db_t *db) {
    int nulls = 0;
    while (db->sent.head && db->conn && !PQisBusy(db->conn)) {
        PGresult *r = PQgetResult(db->conn);
        if (!r) {
            /* A NULL ends each statement's results; two in a row means libpq has nothing queued. */
            if (++nulls > 1) break;
            continue;
        }
        nulls = 0;
        weir_db_tx_t *tx = db->sent.head;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            list_pop(&db->sent);
            tx_complete(tx);
            continue;
        }
        if (st == PGRES_FATAL_ERROR) {
            /* libpq's own errors have no primary field, only a message */
            const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
            tx_set_error(tx, WEIR_EDB, msg ? msg : PQresultErrorMessage(r), PQresultErrorField(r, PG_DIAG_SQLSTATE));
        }
        db_stmt_t *s = tx->next_result < tx->n ? &tx->stmts[tx->next_result] : NULL;
        if (s && s->prep_parse) {
            /* the result of the Parse that prepared it: from now on it is used by name, or, when
             * the Parse failed or was skipped, prepared again the next time */
            s->prep_parse = 0;
            db_prep_t *p = prep_live(db, s->prep, s->prep_id);
            if (p && st == PGRES_COMMAND_OK) p->ready = 1;
            else prep_forget(db, s->prep, s->prep_id);
            PQclear(r);
            continue;
        }
        /* A table or function it uses changed the columns it returns: PostgreSQL refuses to run
         * the statement as prepared ("cached plan must not change result type", 0A000, matched
         * by its code since messages may be translated); prepared again the next time. None of
         * weir's statements raise 0A000 otherwise. */
        const char *state = st == PGRES_FATAL_ERROR ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        if (s && s->prep >= 0 && state && !strcmp(state, "0A000")) prep_forget(db, s->prep, s->prep_id);
        if (tx->next_result < tx->n && st != PGRES_PIPELINE_ABORTED)
            tx->stmts[tx->next_result].res = r;
        else
            PQclear(r);
        tx->next_result++;
    }
    /* libpq drops a connection it cannot make sense of (and closes the socket
     * we watch) without any call failing: notice it here, not never. */
    if (db->conn && db->state == DB_UP && PQstatus(db->conn) == CONNECTION_BAD)
        connection_lost(db, PQerrorMessage(db->conn));
}

static void on_poll(uv_poll_t *p, int status, int events) {
    weir_db_t *db = p->data;
    if (db->state == DB_CONNECTING) {
        start_connect(db);
        return;
    }
    if (status < 0) { connection_lost(db, uv_strerror(status)); return; }
    if (events & UV_WRITABLE && flush_out(db)) return;
    if (events & UV_READABLE && !PQconsumeInput(db->conn)) {
        connection_lost(db, PQerrorMessage(db->conn));
        return;
    }
    /* Also after a write alone: while the socket is full PQflush reads what
     * the server sent (so that neither side blocks on the other), and those
     * results would otherwise wait for some later readable event. */
    read_results(db);
    /* after the results: a notice must win over a result read with it (a token's revocation
     * over the lookup that found it valid) */
    PGnotify *n;
    while (db->conn && (n = PQnotifies(db->conn))) {
        if (db->notify) db->notify(n->relname, n->extra, db->notify_data);
        PQfreemem(n);
    }
}

/* Drives PQconnectPoll; called first from start and then on socket events. */
static void start_connect(weir_db_t *db) {
    if (db->state != DB_CONNECTING) {
        /* Our settings come first so that the operator's conninfo overrides them. JIT is off:
         * the state machine's statements are short, and compiling one costs tens of ms. */
        const char *const keys[] = { "application_name", "options", "dbname", NULL };
        const char *const vals[] = { "weir-scheduler", "-c jit=off", db->conninfo, NULL };
        db->conn = PQconnectStartParams(keys, vals, 1);
        if (!db->conn || PQstatus(db->conn) == CONNECTION_BAD) {
            weir_log_warn("db: cannot connect: %s", db->conn ? PQerrorMessage(db->conn) : "out of memory");
            connection_lost(db, "connect failed");
            return;
        }
        db->state = DB_CONNECTING;
        PQsetnonblocking(db->conn, 1);
        uv_timer_start(&db->retry, retry_cb, connect_timeout_ms(db->conn), 0);
        if (poll_want(db, UV_WRITABLE)) connection_lost(db, "cannot watch the socket");
        return;
    }
    /* PQconnectPoll may close its socket and open another (the next host or
     * address, a retry without SSL or GSS), often under the same descriptor
     * number. epoll forgets a closed file silently, so a watch kept across
     * the call would never fire again: drop it first, and watch whatever
     * socket libpq holds afterwards. */
    poll_stop(db);
    switch (PQconnectPoll(db->conn)) {
    case PGRES_POLLING_READING:
        if (poll_want(db, UV_READABLE)) connection_lost(db, "cannot watch the socket");
        return;
    case PGRES_POLLING_WRITING:
        if (poll_want(db, UV_WRITABLE)) connection_lost(db, "cannot watch the socket");
        return;
    case PGRES_POLLING_OK:
        if (!PQenterPipelineMode(db->conn)) {
            connection_lost(db, "cannot enter pipeline mode");
            return;
        }
        uv_timer_stop(&db->retry); /* the attempt's deadline */
        db->state = DB_UP;
        db->settled = 1;
        db->session = ++db->sessions ? db->sessions : ++db->sessions; /* never 0 */
        db->backoff_ms = 100;
        weir_log_info("db: connected");
        if (poll_want(db, UV_READABLE)) { connection_lost(db, "cannot watch the socket"); return; }
        /* Those that waited for this first connection go out in their order;
         * a failure fails the rest through connection_lost. */
        weir_db_tx_t *tx;
        while (db->state == DB_UP && (tx = list_pop(&db->waiting))) send_one(db, tx);
        return;
    default: {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(db->conn));
        msg[strcspn(msg, "\n")] = '\0';
        weir_log_warn("db: cannot connect: %s", msg);
        db->state = DB_DOWN;
        connection_lost(db, msg);
    }
    }
}

int weir_db_new(uv_loop_t *loop, const char *conninfo, weir_db_t **out) {
    weir_db_t *db = calloc(1, sizeof *db);
    if (!db || !(db->conninfo = strdup(conninfo))) { free(db); return WEIR_ENOMEM; }
    db->loop = loop;
    db->backoff_ms = 100;
    uv_timer_init(loop, &db->retry);
    uv_idle_init(loop, &db->kick);
    db->retry.data = db->kick.data = db;
    db->open_handles = 2;
    db->state = DB_DOWN;
    start_connect(db);
    *out = db;
    return 0;
}

void weir_db_free(weir_db_t *db, void (*done)(void *), void *data) {
    if (!db) return;
    db->closing = 1;
    db->done = done;
    db->done_data = data;
    connection_lost(db, "closing");
    /* the kick handle no longer runs: also complete what callbacks submit now */
    while (db->deferred.head) db_kick_cb(&db->kick);
    uv_close((uv_handle_t *)&db->retry, handle_closed);
    uv_close((uv_handle_t *)&db->kick, handle_closed);
}

int weir_db_connected(const weir_db_t *db) { return db->state == DB_UP; }
unsigned weir_db_inflight(const weir_db_t *db) { return db->inflight; }
unsigned weir_db_session(const weir_db_t *db) { return db->state == DB_UP ? db->session : 0; }

void weir_db_on_notify(weir_db_t *db, weir_db_notify_cb cb, void *data) {
    db->notify = cb;
    db->notify_data = data;
}

weir_db_tx_t *weir_db_tx_new(weir_db_t *db) {
    weir_db_tx_t *tx = calloc(1, sizeof *tx);
    if (tx) tx->db = db;
    return tx;
}

int weir_db_tx_add(weir_db_tx_t *tx, const char *sql, int nparams, const char *const *params) {
    /* libpq refuses more parameters than the protocol's 16-bit count; caught
     * here, the mistake fails this transaction instead of the connection. */
    if (!sql || nparams < 0 || nparams > 65535 || (nparams && !params)) return tx->add_error = WEIR_EINVAL;
    if (tx->n == tx->cap) {
        int cap = tx->cap ? tx->cap * 2 : 4;
        db_stmt_t *s = realloc(tx->stmts, (size_t)cap * sizeof *s);
        if (!s) return tx->add_error = WEIR_ENOMEM;
        tx->stmts = s;
        tx->cap = cap;
    }
    db_stmt_t *s = &tx->stmts[tx->n];
    memset(s, 0, sizeof *s);
    s->sql = strdup(sql);
    s->params = nparams ? calloc((size_t)nparams, sizeof *s->params) : NULL;
    s->nparams = nparams;
    int oom = !s->sql || (nparams && !s->params);
    for (int i = 0; i < nparams && !oom; i++)
        if (params[i] && !(s->params[i] = strdup(params[i]))) oom = 1;
    tx->n++; /* counted even on failure so that tx_free releases it */
    /* A copy that failed would otherwise go out as a NULL parameter, or the
     * transaction without one of its statements, and commit. */
    return oom ? (tx->add_error = WEIR_ENOMEM) : tx->n - 1;
}

void weir_db_tx_submit(weir_db_tx_t *tx, weir_db_tx_cb cb, void *data) {
    weir_db_t *db = tx->db;
    tx->cb = cb;
    tx->data = data;
    db->inflight++;
    if (tx->add_error) {
        /* completes with this status (the first cause is kept), in its turn */
        char msg[128];
        snprintf(msg, sizeof msg, "a statement could not be added: %s", weir_strerror(tx->add_error));
        tx_set_error(tx, tx->add_error, msg, "");
    }
    /* The first connection attempt is waited for (weir_db_new promises it);
     * after that, "not up" means down, and fails at once. */
    if (db->state == DB_CONNECTING && !db->settled && !db->closing) {
        list_push(&db->waiting, tx);
        return;
    }
    if (db->state != DB_UP || db->closing) {
        tx_set_error(tx, WEIR_EUNAVAIL, "database unavailable", "08006");
        defer(db, tx);
        return;
    }
    send_one(db, tx);
}

PGresult *weir_db_tx_result(const weir_db_tx_t *tx, int i) {
    return i >= 0 && i < tx->n ? tx->stmts[i].res : NULL;
}
const char *weir_db_tx_error(const weir_db_tx_t *tx) { return tx->error ? tx->error : ""; }
const char *weir_db_tx_sqlstate(const weir_db_tx_t *tx) { return tx->sqlstate; }

int weir_db_rows(const weir_db_tx_t *tx, int i) {
    PGresult *r = weir_db_tx_result(tx, i);
    return r && PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : 0;
}

const char *weir_db_value(const weir_db_tx_t *tx, int i, int r, int c) {
    PGresult *res = weir_db_tx_result(tx, i);
    /* PQgetvalue answers NULL, not "", out of range */
    if (!res || r < 0 || c < 0 || r >= PQntuples(res) || c >= PQnfields(res)) return "";
    return PQgetvalue(res, r, c);
}
