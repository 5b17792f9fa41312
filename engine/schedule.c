/* schedule.c — cron schedules fire runs (migrations/0005_schedules.sql). About once a second
 * the scheduler asks which schedules are due, computes each one's next fire time from its
 * cron expression (dsl/cron.c, on the wall clock of the schedule's time zone) and advances it
 * with a compare-and-set that also starts the run: with two schedulers on one database each
 * tick fires once. With catch-up off a due schedule fires once and moves past now (a scheduler
 * that was down starts one run, not every one it missed); with catch-up on it fires the tick it
 * was due for and moves to the next one, so missed ticks are backfilled in order, one a pass. */
#include "engine/api.h"
#include "common/log.h"
#include "dsl/cron.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void advanced(weir_db_tx_t *tx, int i, int status, void *data) {
    (void)data;
    if (status) return; /* the next pass tries again: nothing moved */
    json_t *r = json_loads(weir_db_value(tx, i, 0, 0), 0, NULL);
    json_t *run = json_object_get(r, "run");
    if (json_is_integer(run)) weir_log_info("schedule: started run %lld", (long long)json_integer_value(run));
    json_decref(r);
}

static void due_done(weir_db_tx_t *tx, int i, int status, void *data) {
    weir_sched_t *s = data;
    s->schedule_inflight = 0;
    if (status) return;
    json_t *list = json_loads(weir_db_value(tx, i, 0, 0), 0, NULL);
    size_t k;
    json_t *e;
    json_array_foreach(list, k, e) {
        weir_cron_t c;
        char err[256];
        const char *expr = json_string_value(json_object_get(e, "cron"));
        if (!expr || weir_cron_parse(expr, &c, err, sizeof err)) {
            weir_log_warn("schedule of pipeline %lld: %s", (long long)json_integer_value(json_object_get(e, "pipeline")), err);
            continue;
        }
        double now_wall = json_number_value(json_object_get(e, "now_wall"));
        json_t *nw = json_object_get(e, "next_wall");
        int fire = json_is_number(nw);
        /* catch-up: from the tick it was due for; otherwise past now */
        time_t from = fire && json_is_true(json_object_get(e, "catchup")) ? (time_t)floor(json_number_value(nw))
                                                                          : (time_t)floor(now_wall);
        time_t next = weir_cron_next(&c, from);
        if (next == (time_t)-1) continue;
        char pipeline[32], next_s[32];
        snprintf(pipeline, sizeof pipeline, "%lld", (long long)json_integer_value(json_object_get(e, "pipeline")));
        snprintf(next_s, sizeof next_s, "%lld", (long long)next);
        const char *params[] = {pipeline, json_string_value(json_object_get(e, "next")), fire ? "true" : "false", next_s};
        weir_batch_add(s->batch, "SELECT weir_schedule_advance($1::bigint, $2::timestamptz, $3::boolean, $4::float8)", 4,
                       params, fire ? WEIR_BATCH_WAKES : 0, advanced, s);
    }
    json_decref(list);
}

/* Leadership: PostgreSQL's session-level advisory lock (WEIR_LEADER_LOCK) on the scheduler's
 * connection. The one that holds it fires the schedules; the others try again every second, so
 * when the leader dies or loses its connection (the lock goes with the session) another takes
 * over within about a second. Correctness does not rest on it: the compare-and-set above fires
 * each tick once even if two schedulers both believe they lead for a moment. A session lock
 * taken again would stack, so the check asks pg_locks first (CASE keeps that order). */
#define WEIR_LEADER_LOCK "2003134834, 1" /* ("weir", 1) as pg_try_advisory_lock(int, int) */

static void leader_done(weir_db_tx_t *tx, int i, int status, void *data) {
    weir_sched_t *s = data;
    s->leader_inflight = 0;
    int now = !status && !strcmp(weir_db_value(tx, i, 0, 0), "t");
    if (now != s->leader)
        weir_log_info(now ? "leading: this scheduler fires the cron schedules"
                          : "not leading: another scheduler fires the cron schedules");
    s->leader = now;
}

void weir_leader_check(weir_sched_t *s) {
    if (s->leader_inflight) return;
    if (weir_batch_add(s->batch,
                       "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                       "AND pid = pg_backend_pid() AND classid = 2003134834 AND objid = 1 AND objsubid = 2 AND granted) "
                       "THEN true ELSE pg_try_advisory_lock(" WEIR_LEADER_LOCK ") END",
                       0, NULL, 0, leader_done, s) == 0)
        s->leader_inflight = 1;
}

void weir_schedule_tick(weir_sched_t *s) {
    if (s->schedule_inflight) return;
    if (weir_batch_add(s->batch, "SELECT weir_schedules_due()", 0, NULL, 0, due_done, s) == 0) s->schedule_inflight = 1;
}

void api_list_schedules(api_req_t *a) {
    api_read_json(a,
                  "SELECT jsonb_build_object('schedules', coalesce(jsonb_agg(jsonb_build_object("
                  "'pipeline', p.name, 'cron', s.cron, 'timezone', s.timezone, 'catchup', s.catchup, "
                  "'enabled', s.enabled AND NOT p.paused, 'next_fire_at', s.next_fire_at, "
                  "'last_fired_at', s.last_fired_at, 'last_run', s.last_run_id) ORDER BY p.name), '[]')) "
                  "FROM schedules s JOIN pipelines p ON p.id = s.pipeline_id WHERE s.enabled",
                  0, NULL, NULL);
}
