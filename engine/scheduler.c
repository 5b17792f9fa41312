/* scheduler.c — `weir scheduler`: start-up checks, the loop, clean shutdown.
 * The API lives in api.c; this file only wires the parts together. */
#include "engine/sched.h"
#include "engine/migrate.h"
#include "common/error.h"
#include "common/log.h"

#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static void on_closed(void *data) { (void)data; }

static void on_tick(uv_timer_t *t) {
    weir_sched_t *s = t->data;
    if (!s->stopping) weir_work_tick(s);
}

static void stop(weir_sched_t *s) {
    s->stopping = 1;
    uv_timer_stop(&s->tick);
    uv_close((uv_handle_t *)&s->tick, NULL);
    weir_work_stop(s);
    weir_http_server_free(s->http, on_closed, NULL);
    s->http = NULL;
    /* operations not yet sent fail (503); those in flight complete or fail with the connection */
    weir_batch_free(s->batch);
    weir_db_free(s->db, on_closed, NULL);
    s->db = NULL;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

/* Reaps the draining workers; the scheduler stops when none is left (SIGKILL after 10 s). */
static void on_drain(uv_timer_t *t) {
    weir_sched_t *s = t->data;
    int left = 0, late = uv_now(s->loop) >= s->drain_deadline;
    for (int i = 0; i < s->nchildren; i++) {
        if (s->children[i] <= 0) continue;
        if (late) kill(s->children[i], SIGKILL);
        if (waitpid(s->children[i], NULL, late ? 0 : WNOHANG) == s->children[i]) s->children[i] = 0;
        else left++;
    }
    if (left) return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    stop(s);
}

static void on_signal(uv_signal_t *h, int signum) {
    weir_sched_t *s = h->data;
    if (s->stopping) return;
    if (s->nchildren && !s->drain_deadline) {
        /* weir up's workers first: they finish their steps and report while we still serve */
        weir_log_info("scheduler: %s received; stopping the local workers first",
                      signum == SIGINT ? "SIGINT" : "SIGTERM");
        for (int i = 0; i < s->nchildren; i++)
            if (s->children[i] > 0) kill(s->children[i], SIGTERM);
        s->drain_deadline = uv_now(s->loop) + 10000;
        uv_timer_init(s->loop, &s->drain);
        s->drain.data = s;
        uv_timer_start(&s->drain, on_drain, 50, 50);
        return;
    }
    if (s->drain_deadline) return; /* a second signal while draining: the deadline still holds */
    weir_log_info("scheduler: %s received, stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    stop(s);
}

/* Refuses to serve a database whose schema is missing, behind, or edited. */
static int check_schema(const char *conninfo) {
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "weir scheduler: cannot connect to the database: %s", PQerrorMessage(c));
        PQfinish(c);
        return WEIR_EUNAVAIL;
    }
    char err[1024];
    int rc = weir_migrate_verify(c, weir_migrations, weir_migrations_count, err, sizeof err);
    if (rc) fprintf(stderr, "weir scheduler: %s\n", err);
    PQfinish(c);
    return rc;
}

int weir_sched_run(const weir_sched_opts_t *o) {
    weir_log_init();
    /* Every timestamp the API returns is UTC, whatever the server's setting. */
    setenv("PGTZ", "UTC", 1);
    signal(SIGPIPE, SIG_IGN);
    int rc = check_schema(o->database);
    if (rc) return rc == WEIR_EUNAVAIL ? 3 : 1;

    weir_sched_t s;
    memset(&s, 0, sizeof s);
    s.loop = uv_default_loop();
    s.dsl = o->dsl;
    s.lease_ms = o->lease_ms > 0 ? o->lease_ms : 15000;
    s.tick_ms = o->tick_ms > 0 ? o->tick_ms : 200;
    s.max_log_bytes = o->max_log_bytes > 0 ? o->max_log_bytes : 64LL << 20;
    snprintf(s.artifacts_dir, sizeof s.artifacts_dir, "%s", o->artifacts_dir ? o->artifacts_dir : "weir-artifacts");
    s.children = o->children;
    s.nchildren = o->children ? o->nchildren : 0;
    if ((rc = weir_db_new(s.loop, o->database, &s.db))) {
        fprintf(stderr, "weir scheduler: %s\n", weir_strerror(rc));
        return 1;
    }
    weir_db_on_notify(s.db, weir_api_notify, &s);
    if (!(s.batch = weir_batch_new(s.loop, s.db, weir_work_batch_hook, &s))) {
        fprintf(stderr, "weir scheduler: out of memory\n");
        return 1;
    }
    char msg[256];
    rc = weir_http_server_new(s.loop, o->host ? o->host : "127.0.0.1", o->port, &o->http, weir_api_handle, &s,
                              &s.http, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "weir scheduler: %s\n", msg);
        weir_batch_free(s.batch);
        weir_db_free(s.db, on_closed, NULL);
        uv_run(s.loop, UV_RUN_DEFAULT);
        return 1;
    }
    int port = weir_http_server_port(s.http);
    if (o->port_file) {
        FILE *f = fopen(o->port_file, "w");
        if (f) { fprintf(f, "%d\n", port); fclose(f); }
    }
    weir_log_info("scheduler: listening on http://%s:%d", o->host ? o->host : "127.0.0.1", port);
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_timer_init(s.loop, &s.tick);
    s.tick.data = &s;
    uv_timer_start(&s.tick, on_tick, 0, (uint64_t)s.tick_ms);
    uv_run(s.loop, UV_RUN_DEFAULT);
    uv_loop_close(s.loop);
    weir_log_info("scheduler: stopped");
    return 0;
}
