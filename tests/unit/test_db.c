/* test_db.c — the asynchronous PostgreSQL connection against a real server.
 *
 * PGCONN names a fresh, empty database (tests/run.sh sets it); without it
 * every case that needs a server says "skipped" and passes, so that the unit
 * binaries run anywhere. Each case runs its own libuv loop, creates tables
 * named after its pid, and checks what it did with a separate blocking libpq
 * connection. Every case ends with weir_db_free and uv_loop_close, which
 * fails if a handle was left open; under ASan it ends with a leak check.
 * Connection loss is made real with pg_terminate_backend. */
#include "engine/db.h"
#include "common/error.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() __lsan_do_leak_check()
#else
#define LEAK_CHECK() ((void)0)
#endif

/* ---- plumbing ----------------------------------------------------------- */

static const char *pgconn(void) {
    const char *c = getenv("PGCONN");
    return c && *c ? c : NULL;
}

#define NEED_PG() do { if (!pgconn()) { printf("    skipped: PGCONN not set\n"); return; } } while (0)

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

typedef struct {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps uv_run(UV_RUN_ONCE) from sleeping past a deadline */
    weir_db_t *db;
    int freed;       /* done callbacks of weir_db_free */
    int freed_seq;   /* g_seq when it ran */
} env_t;

static void tick_cb(uv_timer_t *t) { (void)t; }

/* Runs the loop until cond holds or ms pass; cond is re-read after every turn. */
#define RUN_UNTIL(e, cond, ms) do { \
        uint64_t _end = now_ms() + (ms); \
        uv_timer_start(&(e)->tick, tick_cb, 5, 5); \
        while (!(cond) && now_ms() < _end) uv_run(&(e)->loop, UV_RUN_ONCE); \
        uv_timer_stop(&(e)->tick); \
    } while (0)

static void env_start(env_t *e, const char *conninfo) {
    memset(e, 0, sizeof *e);
    CHECK_EQ(uv_loop_init(&e->loop), 0);
    CHECK_EQ(uv_timer_init(&e->loop, &e->tick), 0);
    CHECK_EQ(weir_db_new(&e->loop, conninfo, &e->db), 0);
    CHECK(e->db != NULL);
}

static void env_connect(env_t *e) {
    env_start(e, pgconn());
    RUN_UNTIL(e, weir_db_connected(e->db), 5000);
    CHECK(weir_db_connected(e->db));
}

static int g_seq;        /* completion counter: callbacks and done record it */
static int g_submitting; /* set around weir_db_tx_submit */

static void freed_cb(void *data) {
    env_t *e = data;
    e->freed++;
    e->freed_seq = ++g_seq;
}

static void count_handle(uv_handle_t *h, void *arg) {
    (void)h;
    (*(int *)arg)++;
}

/* Frees the db, runs the loop dry and requires that nothing was left open. */
static void env_finish(env_t *e) {
    weir_db_free(e->db, freed_cb, e);
    uv_close((uv_handle_t *)&e->tick, NULL);
    uint64_t t0 = now_ms();
    uv_run(&e->loop, UV_RUN_DEFAULT);
    CHECK(now_ms() - t0 < 2000);
    CHECK_EQ(e->freed, 1);
    int open = 0;
    uv_walk(&e->loop, count_handle, &open);
    CHECK_EQ(open, 0);
    CHECK_EQ(uv_loop_close(&e->loop), 0);
    LEAK_CHECK();
}

/* What a callback saw, copied out before the transaction is freed. */
#define NSTMT 4
typedef struct {
    int called, status, seq, early;
    unsigned inflight;                    /* weir_db_inflight during the callback */
    char error[512], sqlstate[6];
    int has[NSTMT], rows[NSTMT];
    ExecStatusType st[NSTMT];
    char *val[NSTMT];                     /* row 0, column 0 */
} rec_t;

static void rec_cb(weir_db_tx_t *tx, int status, void *data) {
    rec_t *r = data;
    r->called++;
    r->early |= g_submitting;
    r->status = status;
    r->seq = ++g_seq;
    snprintf(r->error, sizeof r->error, "%s", weir_db_tx_error(tx));
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", weir_db_tx_sqlstate(tx));
    for (int i = 0; i < NSTMT; i++) {
        PGresult *res = weir_db_tx_result(tx, i);
        r->has[i] = res != NULL;
        r->st[i] = res ? PQresultStatus(res) : PGRES_EMPTY_QUERY;
        r->rows[i] = weir_db_rows(tx, i);
        free(r->val[i]);
        r->val[i] = strdup(weir_db_value(tx, i, 0, 0));
    }
}

static void rec_free(rec_t *r) {
    for (int i = 0; i < NSTMT; i++) { free(r->val[i]); r->val[i] = NULL; }
}

static void submit(weir_db_tx_t *tx, rec_t *r) {
    g_submitting = 1;
    weir_db_tx_submit(tx, rec_cb, r);
    g_submitting = 0;
    CHECK(!r->called); /* never before submit returns */
}

/* Submits tx and runs the loop until its callback has run (five seconds at most). */
static void run_tx(env_t *e, weir_db_tx_t *tx, rec_t *r) {
    submit(tx, r);
    RUN_UNTIL(e, r->called, 5000);
}

/* One-statement transaction. */
static weir_db_tx_t *tx1(env_t *e, const char *sql, int nparams, const char *const *params) {
    weir_db_tx_t *tx = weir_db_tx_new(e->db);
    CHECK(tx != NULL);
    CHECK_EQ(weir_db_tx_add(tx, sql, nparams, params), 0);
    return tx;
}

/* ---- blocking libpq on the side: setup and independent checks ----------- */

static PGconn *bconn(void) {
    PGconn *c = PQconnectdb(pgconn());
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "    blocking connect: %s", PQerrorMessage(c));
        exit(1);
    }
    return c;
}

static void bexec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bexec(const char *fmt, ...) {
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    PGconn *c = bconn();
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "    %s: %s", sql, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
    PQfinish(c);
}

/* First value of a one-row query, as a number. */
static long bnum(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long bnum(const char *fmt, ...) {
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    PGconn *c = bconn();
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        fprintf(stderr, "    %s: %s", sql, PQerrorMessage(c));
        exit(1);
    }
    long v = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return v;
}

/* The backend pid of the db's connection, asked through the db itself; -1 if that failed. */
static long try_backend_pid(env_t *e) {
    rec_t r = {0};
    submit(tx1(e, "SELECT pg_backend_pid()", 0, NULL), &r);
    RUN_UNTIL(e, r.called, 5000);
    CHECK_EQ(r.called, 1);
    long pid = r.status ? -1 : atol(r.val[0]);
    rec_free(&r);
    return pid;
}

static long backend_pid(env_t *e) {
    long pid = try_backend_pid(e);
    CHECK(pid > 0);
    return pid;
}

/* Waits (running the loop) until backend pid runs a statement that contains what. */
static void wait_active(env_t *e, long pid, const char *what) {
    uint64_t end = now_ms() + 5000;
    while (now_ms() < end) {
        if (bnum("SELECT count(*) FROM pg_stat_activity WHERE pid = %ld AND state = 'active' "
                 "AND query LIKE '%%%s%%'", pid, what) == 1)
            return;
        RUN_UNTIL(e, 0, 20);
    }
    fprintf(stderr, "    backend %ld never ran %s\n", pid, what);
    exit(1);
}

/* ---- statements, results and atomicity ----------------------------------- */

typedef struct {
    int called;
    char text[256];
} cells_t;

static void cells_cb(weir_db_tx_t *tx, int status, void *data) {
    cells_t *c = data;
    c->called++;
    size_t n = 0;
    for (int r = 0; r < 2; r++)
        for (int col = 0; col < 3; col++)
            n += (size_t)snprintf(c->text + n, sizeof c->text - n, "%s|", weir_db_value(tx, 0, r, col));
    n += (size_t)snprintf(c->text + n, sizeof c->text - n, "/%d rows/|", status ? -1 : weir_db_rows(tx, 0));
    /* out of range: a row, a column, a statement that does not exist, negatives */
    snprintf(c->text + n, sizeof c->text - n, "%s|%s|%s|%s|%s", weir_db_value(tx, 0, 2, 0),
             weir_db_value(tx, 0, 0, 3), weir_db_value(tx, 1, 0, 0), weir_db_value(tx, 0, -1, 0),
             weir_db_value(tx, 0, 0, -1));
}

TEST(single_statement_with_params) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    bexec("CREATE TABLE t_single_%d (k int PRIMARY KEY, v text)", getpid());
    char sql[256];
    snprintf(sql, sizeof sql, "INSERT INTO t_single_%d VALUES ($1, $2) RETURNING k * 2, v, v IS NULL", getpid());
    weir_db_tx_t *tx = weir_db_tx_new(e.db);
    CHECK_EQ(weir_db_tx_add(tx, sql, 2, (const char *[]){"21", "it's \"quoted\" ;"}), 0);
    /* a NULL parameter is SQL NULL */
    CHECK_EQ(weir_db_tx_add(tx, "SELECT ($1::int + $2::int) || ':' || ($3::text IS NULL)", 3,
                            (const char *[]){"2", "40", NULL}),
             1);
    rec_t r = {0};
    submit(tx, &r);
    CHECK_EQ(weir_db_inflight(e.db), 1);
    RUN_UNTIL(&e, r.called, 5000);
    CHECK_EQ(r.called, 1);
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.error, "");
    CHECK_STR(r.sqlstate, "");
    CHECK_EQ(r.st[0], PGRES_TUPLES_OK);
    CHECK_EQ(r.rows[0], 1);
    CHECK_STR(r.val[0], "42");
    CHECK_STR(r.val[1], "42:true");
    CHECK_EQ(r.has[2], 0); /* no third statement */
    CHECK_EQ(weir_db_inflight(e.db), 0);
    CHECK_EQ(bnum("SELECT count(*) FROM t_single_%d WHERE k = 21 AND v = 'it''s \"quoted\" ;'", getpid()), 1);
    rec_free(&r);

    /* Every cell through the helpers: NULL and out-of-range cells read as "". */
    cells_t cl = {0};
    tx = tx1(&e, "SELECT 'a', NULL::text, 'c' UNION ALL SELECT 'd', 'e', 'f'", 0, NULL);
    g_submitting = 1;
    weir_db_tx_submit(tx, cells_cb, &cl);
    g_submitting = 0;
    CHECK_EQ(cl.called, 0);
    RUN_UNTIL(&e, cl.called, 5000);
    CHECK_EQ(cl.called, 1);
    CHECK_STR(cl.text, "a||c|d|e|f|/2 rows/|||||");
    CHECK_EQ(weir_db_inflight(e.db), 0);
    env_finish(&e);
}

TEST(multi_statement_commits_together) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    int pid = getpid();
    bexec("CREATE TABLE t_multi_%d (k int PRIMARY KEY)", pid);
    char ins[128], cnt[128];
    snprintf(ins, sizeof ins, "INSERT INTO t_multi_%d VALUES ($1)", pid);
    snprintf(cnt, sizeof cnt, "SELECT count(*) FROM t_multi_%d", pid);
    weir_db_tx_t *tx = weir_db_tx_new(e.db);
    CHECK_EQ(weir_db_tx_add(tx, ins, 1, (const char *[]){"1"}), 0);
    CHECK_EQ(weir_db_tx_add(tx, ins, 1, (const char *[]){"2"}), 1);
    CHECK_EQ(weir_db_tx_add(tx, ins, 1, (const char *[]){"3"}), 2);
    CHECK_EQ(weir_db_tx_add(tx, cnt, 0, NULL), 3);
    rec_t r = {0};
    run_tx(&e, tx, &r);
    CHECK_EQ(r.status, 0);
    for (int i = 0; i < 3; i++) CHECK_EQ(r.st[i], PGRES_COMMAND_OK);
    CHECK_STR(r.val[3], "3"); /* the transaction sees its own rows */
    /* ...and once the callback ran, everyone else does: it committed. */
    CHECK_EQ(bnum("SELECT count(*) FROM t_multi_%d", pid), 3);
    rec_free(&r);
    env_finish(&e);
}

TEST(failed_statement_rolls_back_the_transaction) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    int pid = getpid();
    bexec("CREATE TABLE t_fail_%d (k int PRIMARY KEY)", pid);
    bexec("INSERT INTO t_fail_%d VALUES (1)", pid);
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO t_fail_%d VALUES ($1)", pid);
    weir_db_tx_t *tx = weir_db_tx_new(e.db);
    weir_db_tx_add(tx, ins, 1, (const char *[]){"2"});
    weir_db_tx_add(tx, ins, 1, (const char *[]){"1"}); /* duplicate key */
    weir_db_tx_add(tx, ins, 1, (const char *[]){"3"});
    rec_t r = {0};
    run_tx(&e, tx, &r);
    CHECK_EQ(r.called, 1);
    CHECK_EQ(r.status, WEIR_EDB);
    CHECK_STR(r.sqlstate, "23505");
    CHECK_CONTAINS(r.error, "duplicate key");
    CHECK_EQ(r.st[0], PGRES_COMMAND_OK);    /* ran, then rolled back */
    CHECK_EQ(r.st[1], PGRES_FATAL_ERROR);   /* the failure itself */
    CHECK_EQ(r.has[2], 0);                  /* never ran */
    CHECK_EQ(bnum("SELECT count(*) FROM t_fail_%d WHERE k IN (2, 3)", pid), 0);
    rec_free(&r);

    /* The connection is still good: a transaction after the failed one commits. */
    rec_t r2 = {0};
    run_tx(&e, tx1(&e, ins, 1, (const char *[]){"4"}), &r2);
    CHECK_EQ(r2.status, 0);
    CHECK_STR(r2.error, "");
    CHECK_EQ(bnum("SELECT count(*) FROM t_fail_%d WHERE k = 4", pid), 1);
    env_finish(&e);
}

TEST(transactions_pipelined_after_a_failure_are_unaffected) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    int pid = getpid();
    bexec("CREATE TABLE t_after_%d (k int PRIMARY KEY)", pid);
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO t_after_%d VALUES ($1)", pid);
    /* All three are on the wire together; only the middle one fails. */
    rec_t a = {0}, b = {0}, c = {0};
    submit(tx1(&e, ins, 1, (const char *[]){"1"}), &a);
    weir_db_tx_t *tx = weir_db_tx_new(e.db);
    weir_db_tx_add(tx, ins, 1, (const char *[]){"2"});
    weir_db_tx_add(tx, "SELECT 1/0", 0, NULL);
    weir_db_tx_add(tx, ins, 1, (const char *[]){"3"});
    submit(tx, &b);
    submit(tx1(&e, ins, 1, (const char *[]){"3"}), &c);
    CHECK_EQ(weir_db_inflight(e.db), 3);
    RUN_UNTIL(&e, c.called, 5000);
    CHECK_EQ(a.status, 0);
    CHECK_EQ(b.status, WEIR_EDB);
    CHECK_STR(b.sqlstate, "22012");
    CHECK_CONTAINS(b.error, "division by zero");
    CHECK_EQ(c.status, 0);
    CHECK_STR(c.error, "");
    CHECK(a.seq < b.seq && b.seq < c.seq);
    CHECK_EQ(bnum("SELECT count(*) FROM t_after_%d", pid), 2);
    CHECK_EQ(bnum("SELECT count(*) FROM t_after_%d WHERE k = 2", pid), 0);
    env_finish(&e);
}

TEST(error_at_commit_is_reported_and_the_connection_goes_on) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    int pid = getpid();
    /* A deferred constraint fails at the Sync's commit, after every statement succeeded. */
    bexec("CREATE TABLE t_commit_%d (k int UNIQUE DEFERRABLE INITIALLY DEFERRED)", pid);
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO t_commit_%d VALUES ($1)", pid);
    weir_db_tx_t *tx = weir_db_tx_new(e.db);
    weir_db_tx_add(tx, ins, 1, (const char *[]){"1"});
    weir_db_tx_add(tx, ins, 1, (const char *[]){"1"});
    rec_t a = {0}, b = {0}, c = {0};
    submit(tx, &a);
    run_tx(&e, tx1(&e, ins, 1, (const char *[]){"7"}), &b);
    CHECK_EQ(a.called, 1);
    CHECK_EQ(a.status, WEIR_EDB);
    CHECK_STR(a.sqlstate, "23505");
    CHECK_EQ(b.called, 1);
    CHECK_EQ(b.status, 0);
    CHECK(a.seq < b.seq);
    run_tx(&e, tx1(&e, "SELECT count(*) FROM pg_class WHERE relname = $1", 1, (const char *[]){"pg_class"}), &c);
    CHECK_EQ(c.status, 0);
    CHECK_STR(c.val[0], "1");
    CHECK_EQ(bnum("SELECT count(*) FROM t_commit_%d", pid), 1);
    rec_free(&a);
    rec_free(&b);
    rec_free(&c);
    env_finish(&e);
}

TEST(bad_statement_fails_only_its_transaction) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    long pid = backend_pid(&e);
    /* More parameters than the protocol can count: refused when added, and
     * the transaction fails alone, without being sent and without taking the
     * connection (and the transactions around it) down. */
    enum { MANY = 70000 };
    const char **many = malloc(MANY * sizeof *many);
    CHECK(many != NULL);
    for (int i = 0; i < MANY; i++) many[i] = "1";
    rec_t a = {0}, b = {0}, c = {0};
    submit(tx1(&e, "SELECT pg_sleep(0.1), 'before'", 0, NULL), &a);
    weir_db_tx_t *tx = weir_db_tx_new(e.db);
    CHECK_EQ(weir_db_tx_add(tx, "SELECT 1", 0, NULL), 0);
    CHECK_EQ(weir_db_tx_add(tx, "SELECT $1", MANY, many), WEIR_EINVAL);
    CHECK_EQ(weir_db_tx_add(tx, NULL, 0, NULL), WEIR_EINVAL);
    CHECK_EQ(weir_db_tx_add(tx, "SELECT 1", -1, NULL), WEIR_EINVAL);
    free(many);
    submit(tx, &b);
    submit(tx1(&e, "SELECT 'after'", 0, NULL), &c);
    RUN_UNTIL(&e, a.called && b.called && c.called, 5000);
    CHECK_EQ(a.status, 0);
    CHECK_STR(a.val[0], "");
    CHECK_EQ(b.status, WEIR_EINVAL);
    CHECK_EQ(b.has[0], 0); /* nothing of it ran */
    CHECK_CONTAINS(b.error, "could not be added");
    CHECK_EQ(c.status, 0);
    CHECK_STR(c.val[0], "after");
    CHECK(a.seq < b.seq && b.seq < c.seq); /* it still waits its turn */
    CHECK_EQ(backend_pid(&e), pid);       /* the same connection throughout */
    rec_free(&a);
    rec_free(&b);
    rec_free(&c);
    env_finish(&e);
}

/* ---- many in flight, order, and the empty transaction -------------------- */

TEST(hundred_transactions_complete_in_submission_order) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    enum { N = 100 };
    static rec_t r[N];
    int base = g_seq;
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        weir_db_tx_t *tx = weir_db_tx_new(e.db);
        if (i % 10 == 3) {
            /* a failure in the middle of the pipeline must not shift later results */
            weir_db_tx_add(tx, "SELECT $1::int", 1, (const char *[]){v});
            weir_db_tx_add(tx, "SELECT 1/0", 0, NULL);
            weir_db_tx_add(tx, "SELECT $1::int", 1, (const char *[]){v});
        } else if (i % 10 == 7) {
            /* nothing to send: still completes in its turn */
        } else {
            weir_db_tx_add(tx, "SELECT $1::int, pg_sleep(0.001)", 1, (const char *[]){v});
            weir_db_tx_add(tx, "SELECT $1::int * 2", 1, (const char *[]){v});
        }
        submit(tx, &r[i]);
    }
    CHECK_EQ(weir_db_inflight(e.db), N);
    RUN_UNTIL(&e, weir_db_inflight(e.db) == 0, 10000);
    CHECK_EQ(weir_db_inflight(e.db), 0);
    for (int i = 0; i < N; i++) {
        char v[16], v2[16];
        snprintf(v, sizeof v, "%d", i);
        snprintf(v2, sizeof v2, "%d", i * 2);
        if (r[i].called != 1 || r[i].seq != base + i + 1) {
            fprintf(stderr, "    tx %d: called %d, completed %d-th (expected %d-th)\n", i, r[i].called,
                    r[i].seq - base, i + 1);
            exit(1);
        }
        if (i % 10 == 3) {
            CHECK_EQ(r[i].status, WEIR_EDB);
            CHECK_STR(r[i].sqlstate, "22012");
            CHECK_STR(r[i].val[0], v);
            CHECK_EQ(r[i].has[2], 0);
        } else if (i % 10 == 7) {
            CHECK_EQ(r[i].status, 0);
            CHECK_EQ(r[i].has[0], 0);
        } else {
            CHECK_EQ(r[i].status, 0);
            CHECK_STR(r[i].val[0], v);
            CHECK_STR(r[i].val[1], v2);
        }
        rec_free(&r[i]);
    }
    env_finish(&e);
}

TEST(empty_transaction_completes_with_zero_in_order) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    rec_t alone = {0};
    submit(weir_db_tx_new(e.db), &alone);
    CHECK_EQ(weir_db_inflight(e.db), 1);
    RUN_UNTIL(&e, alone.called, 5000);
    CHECK_EQ(alone.called, 1);
    CHECK_EQ(alone.status, 0);
    CHECK_EQ(alone.has[0], 0);
    CHECK_STR(alone.val[0], "");
    rec_free(&alone);

    /* Behind a slow transaction, an empty one still waits its turn. */
    rec_t a = {0}, b = {0}, c = {0};
    submit(tx1(&e, "SELECT pg_sleep(0.2)", 0, NULL), &a);
    submit(weir_db_tx_new(e.db), &b);
    submit(tx1(&e, "SELECT 1", 0, NULL), &c);
    RUN_UNTIL(&e, a.called && b.called && c.called, 5000);
    CHECK_EQ(a.status, 0);
    CHECK_EQ(b.status, 0);
    CHECK_EQ(c.status, 0);
    CHECK(a.seq < b.seq);
    CHECK(b.seq < c.seq);
    rec_free(&a);
    rec_free(&b);
    rec_free(&c);
    env_finish(&e);
}

/* ---- large parameters and partial writes --------------------------------- */

typedef struct {
    int called, status, seq;
    const char *want;
    size_t len;
    int same;
} big_t;

static void big_cb(weir_db_tx_t *tx, int status, void *data) {
    big_t *b = data;
    b->called++;
    b->status = status;
    b->seq = ++g_seq;
    PGresult *r = weir_db_tx_result(tx, 0);
    b->same = r && PQntuples(r) == 1 && (size_t)PQgetlength(r, 0, 0) == b->len &&
              !memcmp(PQgetvalue(r, 0, 0), b->want, b->len) && !strcmp(weir_db_value(tx, 1, 0, 0), "t");
}

TEST(four_megabyte_parameter_round_trips) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    int pid = getpid();
    bexec("CREATE TABLE t_big_%d (k int PRIMARY KEY, v text)", pid);
    enum { N = 3 };
    size_t len = 4u << 20;
    char *val[N];
    big_t b[N];
    memset(b, 0, sizeof b);
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO t_big_%d VALUES ($1, $2)", pid);
    /* Three at once, so that later ones queue behind a socket that will not take them yet. */
    for (int i = 0; i < N; i++) {
        val[i] = malloc(len + 1);
        CHECK(val[i] != NULL);
        for (size_t j = 0; j < len; j++) val[i][j] = (char)('a' + (j * 7 + j / 4096 + (size_t)i) % 26);
        val[i][len] = '\0';
        b[i].want = val[i];
        b[i].len = len;
        char k[16];
        snprintf(k, sizeof k, "%d", i);
        weir_db_tx_t *tx = weir_db_tx_new(e.db);
        CHECK_EQ(weir_db_tx_add(tx, "SELECT $1::text", 1, (const char *[]){val[i]}), 0);
        CHECK_EQ(weir_db_tx_add(tx, "SELECT length($1) = $2::int", 2, (const char *[]){val[i], "4194304"}), 1);
        CHECK_EQ(weir_db_tx_add(tx, ins, 2, (const char *[]){k, val[i]}), 2);
        g_submitting = 1;
        weir_db_tx_submit(tx, big_cb, &b[i]);
        g_submitting = 0;
        CHECK_EQ(b[i].called, 0);
    }
    rec_t small = {0};
    submit(tx1(&e, "SELECT 'after'", 0, NULL), &small);
    RUN_UNTIL(&e, small.called, 20000);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(b[i].called, 1);
        CHECK_EQ(b[i].status, 0);
        CHECK(b[i].same);
        if (i) CHECK(b[i - 1].seq < b[i].seq);
    }
    CHECK_EQ(small.status, 0);
    CHECK_STR(small.val[0], "after");
    CHECK(b[N - 1].seq < small.seq);
    CHECK_EQ(bnum("SELECT count(*) FROM t_big_%d WHERE length(v) = 4194304", pid), N);
    for (int i = 0; i < N; i++) free(val[i]);
    rec_free(&small);
    env_finish(&e);
}

/* ---- callbacks never run inside submit ----------------------------------- */

enum { CHAIN = 5 };
typedef struct {
    env_t *e;
    int n;
    rec_t rec[CHAIN];
} chain_t;

/* Each completion submits the next transaction, alternating empty and not. */
static void chain_cb(weir_db_tx_t *tx, int status, void *data) {
    chain_t *ch = data;
    rec_cb(tx, status, &ch->rec[ch->n]);
    if (++ch->n == CHAIN) return;
    weir_db_tx_t *next = ch->n % 2 ? weir_db_tx_new(ch->e->db) : tx1(ch->e, "SELECT 1", 0, NULL);
    g_submitting = 1;
    weir_db_tx_submit(next, chain_cb, ch);
    g_submitting = 0;
}

TEST(callback_never_runs_inside_submit) {
    NEED_PG();
    /* While connecting: the transaction waits for the connection. */
    env_t e;
    env_start(&e, pgconn());
    rec_t w = {0};
    run_tx(&e, tx1(&e, "SELECT 'waited'", 0, NULL), &w);
    CHECK_EQ(w.called, 1);
    CHECK_EQ(w.early, 0);
    CHECK_EQ(w.status, 0);
    CHECK_STR(w.val[0], "waited");
    rec_free(&w);

    /* Connected: a statement, an empty transaction, one that fails at once. */
    rec_t a = {0}, b = {0}, c = {0};
    submit(tx1(&e, "SELECT 1", 0, NULL), &a);
    submit(weir_db_tx_new(e.db), &b);
    submit(tx1(&e, "SELEC nonsense", 0, NULL), &c);
    RUN_UNTIL(&e, a.called && b.called && c.called, 5000);
    CHECK(!a.early && !b.early && !c.early);
    CHECK_EQ(c.status, WEIR_EDB);
    CHECK_STR(c.sqlstate, "42601");
    rec_free(&a);
    rec_free(&b);
    rec_free(&c);

    /* Callbacks that submit more: the new ones never run inside their own submit. */
    chain_t ch;
    memset(&ch, 0, sizeof ch);
    ch.e = &e;
    g_submitting = 1;
    weir_db_tx_submit(tx1(&e, "SELECT 0", 0, NULL), chain_cb, &ch);
    g_submitting = 0;
    RUN_UNTIL(&e, ch.n == CHAIN, 5000);
    CHECK_EQ(ch.n, CHAIN);
    for (int i = 0; i < CHAIN; i++) {
        CHECK_EQ(ch.rec[i].early, 0);
        CHECK_EQ(ch.rec[i].status, 0);
        rec_free(&ch.rec[i]);
    }
    env_finish(&e);
}

TEST(callback_never_runs_inside_submit_while_down) {
    /* No server needed: the address does not exist. */
    env_t e;
    env_start(&e, "host=/nonexistent/weir-test port=5432 dbname=none connect_timeout=1");
    rec_t r[3];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++) {
        weir_db_tx_t *tx = i == 1 ? weir_db_tx_new(e.db) : tx1(&e, "SELECT 1", 0, NULL);
        submit(tx, &r[i]);
    }
    CHECK_EQ(weir_db_inflight(e.db), 3);
    RUN_UNTIL(&e, r[2].called, 2000);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(r[i].called, 1);
        CHECK_EQ(r[i].early, 0);
        CHECK_EQ(r[i].status, WEIR_EUNAVAIL);
        if (i) CHECK(r[i - 1].seq < r[i].seq);
        rec_free(&r[i]);
    }
    CHECK_EQ(weir_db_inflight(e.db), 0);
    env_finish(&e);
}

typedef struct {
    env_t *e;
    uv_prepare_t turn;
    unsigned turns;      /* loop iterations so far */
    int n;
    unsigned at[5];      /* the iteration of each completion */
    int status[5];
} retry_t;

static void count_turn(uv_prepare_t *p) { ((retry_t *)p->data)->turns++; }

/* Submits again at once on each failure, like a naive retry. */
static void retry_now_cb(weir_db_tx_t *tx, int status, void *data) {
    retry_t *rt = data;
    rt->at[rt->n] = rt->turns;
    rt->status[rt->n] = status;
    if (++rt->n == 5) return;
    g_submitting = 1;
    weir_db_tx_submit(tx1(rt->e, "SELECT 1", 0, NULL), retry_now_cb, rt);
    g_submitting = 0;
}

TEST(immediate_resubmission_while_down_lets_the_loop_turn) {
    env_t e;
    env_start(&e, "host=/nonexistent/weir-test port=5432 dbname=none");
    retry_t rt;
    memset(&rt, 0, sizeof rt);
    rt.e = &e;
    uv_prepare_init(&e.loop, &rt.turn);
    rt.turn.data = &rt;
    uv_prepare_start(&rt.turn, count_turn);
    weir_db_tx_submit(tx1(&e, "SELECT 1", 0, NULL), retry_now_cb, &rt);
    RUN_UNTIL(&e, rt.n == 5, 2000);
    CHECK_EQ(rt.n, 5);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(rt.status[i], WEIR_EUNAVAIL);
        if (i) CHECK(rt.at[i] > rt.at[i - 1]); /* one per loop turn, not a spin inside one */
    }
    uv_close((uv_handle_t *)&rt.turn, NULL);
    env_finish(&e);
}

/* ---- bad addresses and retries ------------------------------------------- */

TEST(bad_address_keeps_retrying_until_it_works) {
    env_t e;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/weir-db-test-%d", getpid());
    rmdir(dir);
    unlink(dir);
    /* The socket directory does not exist yet; later it becomes a link to the real one. */
    char conninfo[512] = "";
    PQconninfoOption *opts = pgconn() ? PQconninfoParse(pgconn(), NULL) : NULL;
    const char *host = NULL, *port = "5432", *user = NULL, *dbname = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val) continue;
        if (!strcmp(o->keyword, "host")) host = o->val;
        if (!strcmp(o->keyword, "port")) port = o->val;
        if (!strcmp(o->keyword, "user")) user = o->val;
        if (!strcmp(o->keyword, "dbname")) dbname = o->val;
    }
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s%s%s%s%s", dir, port, user ? " user=" : "", user ? user : "",
             dbname ? " dbname=" : "", dbname ? dbname : "");
    env_start(&e, conninfo);
    rec_t r = {0};
    submit(tx1(&e, "SELECT 1", 0, NULL), &r);
    RUN_UNTIL(&e, 0, 700); /* several failed attempts: 100, 200, 400 ms apart */
    CHECK_EQ(r.called, 1);
    CHECK_EQ(r.status, WEIR_EUNAVAIL);
    CHECK_EQ(weir_db_connected(e.db), 0);
    rec_t r2 = {0};
    submit(tx1(&e, "SELECT 1", 0, NULL), &r2);
    RUN_UNTIL(&e, r2.called, 1000);
    CHECK_EQ(r2.status, WEIR_EUNAVAIL);
    CHECK_CONTAINS(r2.error, "unavailable");
    if (host && host[0] == '/') {
        CHECK_EQ(symlink(host, dir), 0);
        /* Backoff is capped at 2 s, so a working address is found within that. */
        RUN_UNTIL(&e, weir_db_connected(e.db), 4000);
        unlink(dir);
        CHECK(weir_db_connected(e.db));
        rec_t r3 = {0};
        run_tx(&e, tx1(&e, "SELECT 'back'", 0, NULL), &r3);
        CHECK_EQ(r3.status, 0);
        CHECK_STR(r3.val[0], "back");
        rec_free(&r3);
    }
    rec_free(&r);
    rec_free(&r2);
    PQconninfoFree(opts);
    env_finish(&e);
}

TEST(server_that_never_answers_times_out) {
    /* No server needed: a socket that takes connections and never answers. */
    char dir[48], path[96];
    snprintf(dir, sizeof dir, "/tmp/weir-db-mute-%d", getpid());
    snprintf(path, sizeof path, "%s/.s.PGSQL.5432", dir);
    mkdir(dir, 0700);
    unlink(path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    CHECK_EQ(listen(s, 8), 0);
    char conninfo[256];
    snprintf(conninfo, sizeof conninfo, "host=%s port=5432 dbname=none connect_timeout=2", dir);
    env_t e;
    env_start(&e, conninfo);
    rec_t r = {0};
    uint64_t t0 = now_ms();
    submit(tx1(&e, "SELECT 1", 0, NULL), &r); /* waits for the first attempt */
    RUN_UNTIL(&e, r.called, 5000);
    uint64_t took = now_ms() - t0;
    close(s);
    unlink(path);
    rmdir(dir);
    CHECK_EQ(r.called, 1);
    CHECK_EQ(r.status, WEIR_EUNAVAIL);
    CHECK(took >= 1500 && took < 4000);
    CHECK_EQ(weir_db_connected(e.db), 0);
    env_finish(&e);
}

TEST(socket_replaced_while_connecting) {
    NEED_PG();
    /* The first host refuses (a bound, non-listening TCP port); libpq moves on to
     * the real server with a new socket, often under the same descriptor number. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    CHECK_EQ(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    CHECK_EQ(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    PQconninfoOption *opts = PQconninfoParse(pgconn(), NULL);
    CHECK(opts != NULL);
    const char *host = "localhost", *port = "5432", *user = NULL, *dbname = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val) continue;
        if (!strcmp(o->keyword, "host")) host = o->val;
        if (!strcmp(o->keyword, "port")) port = o->val;
        if (!strcmp(o->keyword, "user")) user = o->val;
        if (!strcmp(o->keyword, "dbname")) dbname = o->val;
    }
    char conninfo[512];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1,%s port=%d,%s%s%s%s%s", host, ntohs(sa.sin_port), port,
             user ? " user=" : "", user ? user : "", dbname ? " dbname=" : "", dbname ? dbname : "");
    env_t e;
    env_start(&e, conninfo);
    RUN_UNTIL(&e, weir_db_connected(e.db), 5000);
    CHECK(weir_db_connected(e.db));
    rec_t r = {0};
    run_tx(&e, tx1(&e, "SELECT 'second host'", 0, NULL), &r);
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.val[0], "second host");
    rec_free(&r);
    PQconninfoFree(opts);
    close(s);
    env_finish(&e);
}

/* ---- prepared statements --------------------------------------------------- */

/* Runs one statement in its own transaction and waits for it; the result is in r. */
static void run1(env_t *e, rec_t *r, const char *sql, int nparams, const char *const *params) {
    memset(r, 0, sizeof *r);
    submit(tx1(e, sql, nparams, params), r);
    RUN_UNTIL(e, r->called, 5000);
    CHECK_EQ(r->called, 1);
}

/* "statements/executions" for those of the db's own session with this text (prepared statements
 * belong to a session, so this is asked through the db itself). */
static void prepared(env_t *e, const char *text, char *out, size_t len) {
    rec_t r;
    run1(e, &r, "SELECT count(*) || '/' || coalesce(sum(generic_plans + custom_plans), 0) "
                "FROM pg_prepared_statements WHERE statement = $1",
         1, (const char *[]){text});
    CHECK_EQ(r.status, 0);
    snprintf(out, len, "%s", r.val[0]);
    rec_free(&r);
}

/* A statement is prepared the first time it is sent and run by name after that: PostgreSQL
 * parses and plans it once per connection. Transactions pipelined behind the one that prepares
 * it send it unnamed until that Parse is known to have worked. */
TEST(statements_are_prepared_once_per_connection) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    const char *sql = "SELECT $1::int + 1";
    rec_t r;
    for (int i = 0; i < 3; i++) {
        run1(&e, &r, sql, 1, (const char *[]){"41"});
        CHECK_EQ(r.status, 0);
        CHECK_STR(r.val[0], "42");
        rec_free(&r);
    }
    char got[64];
    prepared(&e, sql, got, sizeof got);
    CHECK_STR(got, "1/3");

    /* ten at once, the first of them new: one Parse, every answer right */
    const char *sql2 = "SELECT $1::int * 2";
    rec_t many[10];
    char arg[10][16];
    for (int i = 0; i < 10; i++) {
        memset(&many[i], 0, sizeof many[i]);
        snprintf(arg[i], sizeof arg[i], "%d", i);
        submit(tx1(&e, sql2, 1, (const char *[]){arg[i]}), &many[i]);
    }
    RUN_UNTIL(&e, many[9].called, 5000);
    for (int i = 0; i < 10; i++) {
        char want[16];
        snprintf(want, sizeof want, "%d", 2 * i);
        CHECK_EQ(many[i].status, 0);
        CHECK_STR(many[i].val[0], want);
        rec_free(&many[i]);
    }
    prepared(&e, sql2, got, sizeof got);
    CHECK(got[0] == '1' && got[1] == '/' && atoi(got + 2) >= 1); /* one statement, run at least once by name */

    /* a transaction that creates a table and then uses it: the Parse comes after the CREATE */
    char mk[128], ins[128];
    snprintf(mk, sizeof mk, "CREATE TABLE t_prep_%d (k int)", getpid());
    snprintf(ins, sizeof ins, "INSERT INTO t_prep_%d VALUES ($1) RETURNING k", getpid());
    weir_db_tx_t *tx = weir_db_tx_new(e.db);
    CHECK_EQ(weir_db_tx_add(tx, mk, 0, NULL), 0);
    CHECK_EQ(weir_db_tx_add(tx, ins, 1, (const char *[]){"7"}), 1);
    memset(&r, 0, sizeof r);
    run_tx(&e, tx, &r);
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.val[1], "7");
    rec_free(&r);
    env_finish(&e);
}

/* A statement whose Parse fails (or is skipped because an earlier statement failed) is not
 * taken for prepared: the next transaction prepares it again, and the error is the server's
 * own, never "prepared statement does not exist". */
TEST(a_statement_that_failed_to_prepare_is_prepared_again) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    int pid = getpid();
    char sel[128];
    snprintf(sel, sizeof sel, "SELECT count(*) FROM t_later_%d WHERE k > $1", pid);
    /* two at once: the second is behind the failed Parse, and says what the first says */
    rec_t r, r2;
    memset(&r, 0, sizeof r);
    memset(&r2, 0, sizeof r2);
    submit(tx1(&e, sel, 1, (const char *[]){"0"}), &r);
    run_tx(&e, tx1(&e, sel, 1, (const char *[]){"0"}), &r2);
    CHECK_EQ(r.status, WEIR_EDB);
    CHECK_STR(r.sqlstate, "42P01");
    CHECK_CONTAINS(r.error, "does not exist");
    CHECK_EQ(r2.status, WEIR_EDB);
    CHECK_STR(r2.sqlstate, "42P01");
    rec_free(&r);
    rec_free(&r2);
    /* skipped: the statement before it fails, so its Parse never runs */
    char sel2[128];
    snprintf(sel2, sizeof sel2, "SELECT count(*) + $1::int FROM t_later_%d", pid);
    weir_db_tx_t *tx = weir_db_tx_new(e.db);
    CHECK_EQ(weir_db_tx_add(tx, "SELECT 1 / 0", 0, NULL), 0);
    CHECK_EQ(weir_db_tx_add(tx, sel2, 1, (const char *[]){"5"}), 1);
    memset(&r, 0, sizeof r);
    run_tx(&e, tx, &r);
    CHECK_EQ(r.status, WEIR_EDB);
    CHECK_STR(r.sqlstate, "22012");
    rec_free(&r);
    bexec("CREATE TABLE t_later_%d (k int)", pid);
    bexec("INSERT INTO t_later_%d VALUES (1), (2)", pid);
    for (int i = 0; i < 2; i++) {
        run1(&e, &r, sel, 1, (const char *[]){"0"});
        CHECK_EQ(r.status, 0);
        CHECK_STR(r.val[0], "2");
        rec_free(&r);
        run1(&e, &r, sel2, 1, (const char *[]){"5"});
        CHECK_EQ(r.status, 0);
        CHECK_STR(r.val[0], "7");
        rec_free(&r);
    }
    char got[64];
    prepared(&e, sel, got, sizeof got);
    CHECK_STR(got, "1/2");
    prepared(&e, sel2, got, sizeof got);
    CHECK_STR(got, "1/2");
    env_finish(&e);
}

/* A function replaced by one that returns another type: PostgreSQL refuses the old prepared
 * statement once ("cached plan must not change result type"), and the next run prepares it
 * again. After a reconnect every statement is prepared again on the new session. */
TEST(prepared_statements_after_a_type_change_and_a_reconnect) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    int pid = getpid();
    bexec("CREATE FUNCTION f_prep_%d() RETURNS int LANGUAGE sql AS 'SELECT 1'", pid);
    char call[64];
    snprintf(call, sizeof call, "SELECT f_prep_%d()", pid);
    rec_t r;
    run1(&e, &r, call, 0, NULL);
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.val[0], "1");
    rec_free(&r);
    bexec("DROP FUNCTION f_prep_%d(); CREATE FUNCTION f_prep_%d() RETURNS text LANGUAGE sql AS 'SELECT ''two'''", pid,
          pid);
    int failed = 0, last_ok = 0;
    for (int i = 0; i < 3; i++) {
        run1(&e, &r, call, 0, NULL);
        last_ok = r.status == 0;
        if (r.status) {
            CHECK_STR(r.sqlstate, "0A000");
            failed++;
        } else {
            CHECK_STR(r.val[0], "two");
        }
        rec_free(&r);
    }
    CHECK(failed <= 1);
    CHECK(last_ok);

    /* a new connection has none of them: they are prepared again there */
    long pid1 = backend_pid(&e);
    CHECK_EQ(bnum("SELECT pg_terminate_backend(%ld)::int", pid1), 1);
    RUN_UNTIL(&e, weir_db_session(e.db) == 0, 5000);
    RUN_UNTIL(&e, weir_db_connected(e.db), 5000);
    CHECK(weir_db_connected(e.db));
    run1(&e, &r, call, 0, NULL);
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.val[0], "two");
    rec_free(&r);
    char got[64];
    prepared(&e, call, got, sizeof got);
    CHECK_STR(got, "1/1");
    env_finish(&e);
}

/* More different statements than a connection keeps prepared: the rest run unnamed, and all of
 * them answer. */
TEST(more_statements_than_are_kept_prepared) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    enum { N = 200 };
    static rec_t r[N];
    static char sql[N][64];
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof r[i]);
        snprintf(sql[i], sizeof sql[i], "SELECT %d + $1::int", i);
        submit(tx1(&e, sql[i], 1, (const char *[]){"1"}), &r[i]);
    }
    RUN_UNTIL(&e, r[N - 1].called, 10000);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            char want[16];
            snprintf(want, sizeof want, "%d", i + 1);
            CHECK_EQ(r[i].called, 1);
            CHECK_EQ(r[i].status, 0);
            CHECK_STR(r[i].val[0], want);
            rec_free(&r[i]);
            if (round == 0) {
                memset(&r[i], 0, sizeof r[i]);
                submit(tx1(&e, sql[i], 1, (const char *[]){"1"}), &r[i]);
            }
        }
        if (round == 0) RUN_UNTIL(&e, r[N - 1].called, 10000);
    }
    rec_t c;
    run1(&e, &c, "SELECT count(*) FROM pg_prepared_statements", 0, NULL);
    CHECK_EQ(c.status, 0);
    CHECK(atol(c.val[0]) >= 100 && atol(c.val[0]) <= 128);
    rec_free(&c);
    env_finish(&e);
}

/* ---- connection loss ----------------------------------------------------- */

TEST(killed_while_idle_reconnects) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    long pid = backend_pid(&e);
    CHECK_EQ(bnum("SELECT pg_terminate_backend(%ld)::int", pid), 1);
    /* Submitted before the loop noticed: either it ran before the backend went, or
     * its outcome is unknown — never a server error for a healthy statement. */
    rec_t r = {0};
    run_tx(&e, tx1(&e, "SELECT 1", 0, NULL), &r);
    CHECK_EQ(r.called, 1);
    if (r.status != 0 && r.status != WEIR_EUNAVAIL) {
        fprintf(stderr, "    status %d (%s %s), expected 0 or WEIR_EUNAVAIL\n", r.status, r.sqlstate, r.error);
        exit(1);
    }
    rec_free(&r);
    /* Within a few seconds it is back, on a new backend. */
    long pid2 = -1;
    uint64_t end = now_ms() + 5000;
    while (now_ms() < end && (pid2 < 0 || pid2 == pid)) {
        RUN_UNTIL(&e, weir_db_connected(e.db), 100);
        if (weir_db_connected(e.db)) pid2 = try_backend_pid(&e);
    }
    CHECK(weir_db_connected(e.db));
    CHECK(pid2 > 0);
    CHECK(pid2 != pid);
    env_finish(&e);
}

typedef struct {
    int n;
    char last[64];
} notes_t;

static void note_cb(const char *channel, const char *payload, void *data) {
    notes_t *n = data;
    n->n++;
    snprintf(n->last, sizeof n->last, "%s:%s", channel, payload);
}

/* LISTEN on the db's connection: NOTIFYs from other sessions reach the hook, after the results
 * read with them; a reconnect gives a new session number, and the LISTEN went with the old one. */
TEST(notifications_and_session_numbers) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    notes_t nt = {0};
    weir_db_on_notify(e.db, note_cb, &nt);
    unsigned s1 = weir_db_session(e.db);
    CHECK(s1 > 0);
    char ch[64];
    snprintf(ch, sizeof ch, "t_notes_%d", getpid());
    char sql[128];
    snprintf(sql, sizeof sql, "LISTEN %s", ch);
    rec_t r = {0};
    run_tx(&e, tx1(&e, sql, 0, NULL), &r);
    CHECK_EQ(r.status, 0);
    rec_free(&r);
    bexec("SELECT pg_notify('%s', 'hello')", ch);
    RUN_UNTIL(&e, nt.n > 0, 5000);
    CHECK_EQ(nt.n, 1);
    char want[96];
    snprintf(want, sizeof want, "%s:hello", ch);
    CHECK_STR(nt.last, want);
    /* a notice that arrives while a statement runs is still delivered, after its result */
    rec_t r2 = {0};
    submit(tx1(&e, "SELECT pg_sleep(0.2)", 0, NULL), &r2);
    bexec("SELECT pg_notify('%s', 'again')", ch);
    RUN_UNTIL(&e, nt.n > 1 && r2.called, 5000);
    CHECK_EQ(r2.status, 0);
    CHECK_EQ(nt.n, 2);
    rec_free(&r2);
    long pid = backend_pid(&e);
    CHECK_EQ(bnum("SELECT pg_terminate_backend(%ld)::int", pid), 1);
    RUN_UNTIL(&e, weir_db_session(e.db) == 0, 5000);
    CHECK_EQ(weir_db_session(e.db), 0);
    RUN_UNTIL(&e, weir_db_connected(e.db), 5000);
    CHECK(weir_db_session(e.db) > s1);
    /* the new session does not listen: nothing more arrives */
    bexec("SELECT pg_notify('%s', 'lost')", ch);
    rec_t r3 = {0};
    run_tx(&e, tx1(&e, "SELECT 1", 0, NULL), &r3);
    RUN_UNTIL(&e, 0, 100);
    CHECK_EQ(nt.n, 2);
    rec_free(&r3);
    env_finish(&e);
}

TEST(killed_with_transactions_in_flight) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    int me = getpid();
    bexec("CREATE TABLE t_kill_%d (k int PRIMARY KEY)", me);
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO t_kill_%d VALUES ($1)", me);
    long pid = backend_pid(&e);
    rec_t a = {0}, b = {0}, c = {0};
    submit(tx1(&e, "SELECT pg_sleep(5)", 0, NULL), &a);
    submit(tx1(&e, "SELECT 1", 0, NULL), &b);
    submit(tx1(&e, ins, 1, (const char *[]){"1"}), &c);
    wait_active(&e, pid, "pg_sleep");
    uint64_t t0 = now_ms();
    CHECK_EQ(bnum("SELECT pg_terminate_backend(%ld)::int", pid), 1);
    RUN_UNTIL(&e, c.called, 5000);
    CHECK(now_ms() - t0 < 3000); /* not a wait for pg_sleep to end */
    CHECK_EQ(a.called, 1);
    CHECK_EQ(b.called, 1);
    CHECK_EQ(c.called, 1);
    CHECK_EQ(a.status, WEIR_EUNAVAIL);
    CHECK_EQ(b.status, WEIR_EUNAVAIL);
    CHECK_EQ(c.status, WEIR_EUNAVAIL);
    CHECK(a.seq < b.seq && b.seq < c.seq);
    CHECK_EQ(weir_db_inflight(e.db), 0);
    /* The insert queued behind the sleep never ran. */
    CHECK_EQ(bnum("SELECT count(*) FROM t_kill_%d", me), 0);
    RUN_UNTIL(&e, weir_db_connected(e.db), 5000);
    CHECK(weir_db_connected(e.db));
    rec_t d = {0};
    run_tx(&e, tx1(&e, ins, 1, (const char *[]){"2"}), &d);
    CHECK_EQ(d.status, 0);
    CHECK_EQ(bnum("SELECT count(*) FROM t_kill_%d", me), 1);
    rec_free(&a);
    rec_free(&b);
    rec_free(&c);
    rec_free(&d);
    env_finish(&e);
}

TEST(killed_while_sending_large_transactions) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    long pid = backend_pid(&e);
    enum { N = 3 };
    size_t len = 16u << 20;
    char *v = malloc(len + 1);
    CHECK(v != NULL);
    memset(v, 'z', len);
    v[len] = '\0';
    rec_t r[N];
    memset(r, 0, sizeof r);
    /* Far more than a socket buffer: most of it is still in libpq when the backend dies. */
    for (int i = 0; i < N; i++) submit(tx1(&e, "SELECT length($1)", 1, (const char *[]){v}), &r[i]);
    free(v);
    CHECK_EQ(bnum("SELECT pg_terminate_backend(%ld)::int", pid), 1);
    RUN_UNTIL(&e, r[N - 1].called, 5000);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(r[i].called, 1);
        CHECK_EQ(r[i].status, WEIR_EUNAVAIL);
        if (i) CHECK(r[i - 1].seq < r[i].seq);
        rec_free(&r[i]);
    }
    RUN_UNTIL(&e, weir_db_connected(e.db), 5000);
    rec_t ok = {0};
    run_tx(&e, tx1(&e, "SELECT 'alive'", 0, NULL), &ok);
    CHECK_EQ(ok.status, 0);
    CHECK_STR(ok.val[0], "alive");
    rec_free(&ok);
    env_finish(&e);
}

/* ---- weir_db_free -------------------------------------------------------- */

TEST(free_with_transactions_in_flight) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    long pid = backend_pid(&e);
    rec_t a = {0}, b = {0}, c = {0};
    submit(tx1(&e, "SELECT pg_sleep(5)", 0, NULL), &a);
    submit(tx1(&e, "SELECT 1", 0, NULL), &b);
    submit(weir_db_tx_new(e.db), &c);
    wait_active(&e, pid, "pg_sleep");
    uint64_t t0 = now_ms();
    env_finish(&e); /* frees, runs the loop dry, checks no handle is left */
    CHECK(now_ms() - t0 < 2000);
    CHECK_EQ(a.called, 1);
    CHECK_EQ(b.called, 1);
    CHECK_EQ(c.called, 1);
    CHECK_EQ(a.status, WEIR_EUNAVAIL);
    CHECK_EQ(b.status, WEIR_EUNAVAIL);
    CHECK(a.seq < b.seq && b.seq < c.seq);
    CHECK(c.seq < e.freed_seq); /* done comes after every callback */
    rec_free(&a);
    rec_free(&b);
    rec_free(&c);
}

TEST(free_while_connecting) {
    NEED_PG();
    env_t e;
    env_start(&e, pgconn());
    CHECK_EQ(weir_db_connected(e.db), 0);
    rec_t a = {0};
    submit(tx1(&e, "SELECT 1", 0, NULL), &a);
    env_finish(&e);
    CHECK_EQ(a.called, 1);
    CHECK_EQ(a.status, WEIR_EUNAVAIL);
    CHECK(a.seq < e.freed_seq);
    rec_free(&a);

    /* Part way through the handshake too. */
    env_start(&e, pgconn());
    RUN_UNTIL(&e, 0, 1);
    env_finish(&e);
}

TEST(free_while_down_and_retrying) {
    env_t e;
    env_start(&e, "host=/nonexistent/weir-test port=5432 dbname=none");
    RUN_UNTIL(&e, 0, 150);
    rec_t a = {0};
    submit(tx1(&e, "SELECT 1", 0, NULL), &a);
    env_finish(&e);
    CHECK_EQ(a.called, 1);
    CHECK_EQ(a.status, WEIR_EUNAVAIL);
    rec_free(&a);
}

typedef struct {
    env_t *e;
    rec_t rec;
} freer_t;

static void free_in_cb(weir_db_tx_t *tx, int status, void *data) {
    freer_t *f = data;
    rec_cb(tx, status, &f->rec);
    weir_db_free(f->e->db, freed_cb, f->e);
}

TEST(free_from_a_callback) {
    NEED_PG();
    env_t e;
    env_connect(&e);
    freer_t f = {&e, {0}};
    rec_t b = {0}, c = {0};
    weir_db_tx_submit(tx1(&e, "SELECT 1", 0, NULL), free_in_cb, &f);
    submit(tx1(&e, "SELECT pg_sleep(5)", 0, NULL), &b);
    submit(tx1(&e, "SELECT 2", 0, NULL), &c);
    uv_close((uv_handle_t *)&e.tick, NULL);
    uint64_t t0 = now_ms();
    uv_run(&e.loop, UV_RUN_DEFAULT);
    CHECK(now_ms() - t0 < 2000);
    CHECK_EQ(f.rec.status, 0);
    CHECK_EQ(b.status, WEIR_EUNAVAIL);
    CHECK_EQ(c.status, WEIR_EUNAVAIL);
    CHECK(f.rec.seq < b.seq && b.seq < c.seq && c.seq < e.freed_seq);
    CHECK_EQ(e.freed, 1);
    CHECK_EQ(uv_loop_close(&e.loop), 0);
    rec_free(&f.rec);
    rec_free(&b);
    rec_free(&c);
    LEAK_CHECK();
}

UNIT_MAIN(db,
          CASE(single_statement_with_params),
          CASE(multi_statement_commits_together),
          CASE(failed_statement_rolls_back_the_transaction),
          CASE(transactions_pipelined_after_a_failure_are_unaffected),
          CASE(error_at_commit_is_reported_and_the_connection_goes_on),
          CASE(bad_statement_fails_only_its_transaction),
          CASE(hundred_transactions_complete_in_submission_order),
          CASE(empty_transaction_completes_with_zero_in_order),
          CASE(four_megabyte_parameter_round_trips),
          CASE(callback_never_runs_inside_submit),
          CASE(callback_never_runs_inside_submit_while_down),
          CASE(immediate_resubmission_while_down_lets_the_loop_turn),
          CASE(bad_address_keeps_retrying_until_it_works),
          CASE(server_that_never_answers_times_out),
          CASE(socket_replaced_while_connecting),
          CASE(statements_are_prepared_once_per_connection),
          CASE(a_statement_that_failed_to_prepare_is_prepared_again),
          CASE(prepared_statements_after_a_type_change_and_a_reconnect),
          CASE(more_statements_than_are_kept_prepared),
          CASE(killed_while_idle_reconnects),
          CASE(notifications_and_session_numbers),
          CASE(killed_with_transactions_in_flight),
          CASE(killed_while_sending_large_transactions),
          CASE(free_with_transactions_in_flight),
          CASE(free_while_connecting),
          CASE(free_while_down_and_retrying),
          CASE(free_from_a_callback))
