-- 0009_hot_path_trim.sql — the hand-off path does less fixed work per call, so that a chain's
-- hop (a task completed and its successor claimed, in one transaction) costs less.
--
-- A one-task call of weir_complete_many cost about 0.7 ms and weir_claim 0.4 ms, while in batches
-- of 64 a task costs about 0.1 ms of each: most of a one-task call was the fixed cost of the
-- statements it ran whatever their input. Starting a data-modifying statement opens every index
-- of the tables it writes and parses their CHECK constraints again, and a row written twice in a
-- transaction is written (and its foreign keys checked) twice. Same signatures, same answers,
-- same rows and events (events of one step are written in task order); what changes:
--
-- * weir_tasks_finished updates the dependents' counters and decides them in one UPDATE, where
--   weir_tasks_decide and weir_tasks_ready took three more statements and wrote a task made
--   ready a second time; the runs' counts ride in the same statement, which reads the finished
--   tasks once. weir_runs_settle runs only for the runs whose last task just finished (as the
--   runs' UPDATE answers), no longer on every call.
-- * weir_complete_many, when every report says succeeded, takes that first step of
--   weir_tasks_finished in its fast-path statement, for the tasks that statement completed (they
--   are in hand: not read again), with one events INSERT for both. A batch with a failure keeps
--   the former order: the loop finishes a failed task at once, the fast path's tasks after it.
--   It skips the per-report loop when the fast path took every report, the signals loop when no
--   report carries signals, and resetting the ready counters when they are not set.
-- * weir_claim reads the worker and whether anything is queued for it in one statement, and
--   skips the free-resource sum when no queue is left to take from.
-- * weir_rule_verdict holds the trigger rules, for weir_tasks_decide and the two UPDATEs above.
--
-- CREATE OR REPLACE FUNCTION resets a function's SET options: 0007's are set again at the end.

-- A pending task's trigger rule on its upstream counters: 'ready' (it can run), 'skip' (it never
-- will) or NULL (not yet). weir_tasks_decide's rules, in one place for it and weir_tasks_finished;
-- a SQL function that the planner inlines.
CREATE FUNCTION weir_rule_verdict(p_rule text, p_pending bigint, p_failed bigint, p_skipped bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN (p_rule = 'all_success' AND p_pending = 0 AND p_failed = 0 AND p_skipped = 0)
                  OR (p_rule = 'all_done' AND p_pending = 0) OR (p_rule = 'one_failed' AND p_failed > 0) THEN 'ready'
                WHEN (p_rule = 'all_success' AND (p_failed > 0 OR p_skipped > 0))
                  OR (p_rule = 'one_failed' AND p_pending = 0 AND p_failed = 0) THEN 'skip' END
$$;

-- Tasks that just finished (any final state): count them on their runs, update their
-- dependents' counters and decide those in the same statement (ready: queued or waiting;
-- skipped; else still pending), and follow skips down the DAG. Touches only the finished tasks'
-- dependents, never the whole run. The decisions are weir_tasks_decide's; tasks made ready are
-- counted for weir_complete_many's answer as weir_tasks_ready counts them.
CREATE OR REPLACE FUNCTION weir_tasks_finished(p_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE ids bigint[] := p_ids; ended bigint[] := '{}'; ends bigint[]; w int; g int; nul text;
BEGIN
    WHILE cardinality(ids) > 0 LOOP
        WITH fin AS (SELECT id, run_id, state FROM tasks WHERE id = ANY(ids)),
             ru AS (UPDATE runs SET tasks_done = tasks_done + c.n, tasks_failed = tasks_failed + c.f
                      FROM (SELECT run_id, count(*) AS n, count(*) FILTER (WHERE state = 'failed') AS f
                              FROM fin GROUP BY run_id) c
                     WHERE runs.id = c.run_id
                    RETURNING runs.id, runs.state = 'running' AND runs.tasks_done >= runs.tasks_total AS ended),
             -- OFFSET 0 keeps the edge lookup per finished task (an index probe): a hash join
             -- would read every edge of a wide run on each call.
             agg AS (SELECT e.downstream_id AS id, count(*) AS n,
                            count(*) FILTER (WHERE fin.state IN ('failed', 'rejected', 'cancelled')) AS f,
                            count(*) FILTER (WHERE fin.state = 'skipped') AS s
                       FROM fin CROSS JOIN LATERAL
                            (SELECT downstream_id FROM task_edges WHERE upstream_id = fin.id OFFSET 0) e
                      GROUP BY e.downstream_id),
             -- the counters as they become, decided by weir_rule_verdict in the same UPDATE
             u AS (UPDATE tasks t SET upstream_pending = t.upstream_pending - agg.n,
                          upstream_failed = t.upstream_failed + agg.f, upstream_skipped = t.upstream_skipped + agg.s,
                          state = CASE weir_rule_verdict(t.trigger_rule, t.upstream_pending - agg.n,
                                                         t.upstream_failed + agg.f, t.upstream_skipped + agg.s)
                                  WHEN 'ready' THEN CASE t.kind WHEN 'approval' THEN 'waiting' ELSE 'queued' END
                                  WHEN 'skip' THEN 'skipped' ELSE t.state END,
                          queued_at = CASE weir_rule_verdict(t.trigger_rule, t.upstream_pending - agg.n,
                                                             t.upstream_failed + agg.f, t.upstream_skipped + agg.s)
                                      WHEN 'ready' THEN now() ELSE t.queued_at END,
                          deadline_at = CASE weir_rule_verdict(t.trigger_rule, t.upstream_pending - agg.n,
                                                               t.upstream_failed + agg.f, t.upstream_skipped + agg.s)
                                        WHEN 'ready' THEN CASE WHEN t.kind = 'approval' AND (t.spec->'approval'->>'timeout_ms')::bigint > 0
                                                          THEN now() + (t.spec->'approval'->>'timeout_ms')::bigint * interval '1 ms' END
                                        ELSE t.deadline_at END,
                          finished_at = CASE weir_rule_verdict(t.trigger_rule, t.upstream_pending - agg.n,
                                                               t.upstream_failed + agg.f, t.upstream_skipped + agg.s)
                                        WHEN 'skip' THEN now() ELSE t.finished_at END,
                          error = CASE weir_rule_verdict(t.trigger_rule, t.upstream_pending - agg.n,
                                                         t.upstream_failed + agg.f, t.upstream_skipped + agg.s)
                                  WHEN 'skip' THEN CASE t.trigger_rule WHEN 'one_failed' THEN 'no upstream task failed'
                                                   ELSE 'an upstream task did not succeed' END
                                  ELSE t.error END
                     FROM agg WHERE t.id = agg.id AND t.state = 'pending'
                   RETURNING t.id, t.run_id, t.state, t.queue),
             ev AS (INSERT INTO events (kind, run_id, task_id, from_state, to_state, actor)
                    SELECT 'task.state', run_id, id, 'pending', state, 'scheduler' FROM u
                     WHERE state <> 'pending' ORDER BY state = 'skipped', id)
        SELECT array_agg(id) FILTER (WHERE state = 'skipped'),
               count(*) FILTER (WHERE state = 'queued' AND queue > ''), count(*) FILTER (WHERE state = 'queued' AND queue = ''),
               (SELECT array_agg(id) FROM ru WHERE ru.ended)
          INTO ids, w, g, ends FROM u;
        -- counted for this transaction, for weir_complete_many's answer (weir_ready_count)
        IF w > 0 THEN nul := set_config('weir.ready_for_workers', (weir_ready_count('weir.ready_for_workers') + w)::text, true); END IF;
        IF g > 0 THEN nul := set_config('weir.ready_gates', (weir_ready_count('weir.ready_gates') + g)::text, true); END IF;
        IF ends IS NOT NULL THEN ended := ended || ends; END IF;
    END LOOP;
    IF cardinality(ended) > 0 THEN
        PERFORM weir_runs_settle(ARRAY(SELECT DISTINCT unnest(ended)));
    END IF;
END $$;

-- weir_tasks_decide (called when runs start), on the same rules.
CREATE OR REPLACE FUNCTION weir_tasks_decide(p_ids bigint[]) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE ready bigint[]; skip bigint[];
BEGIN
    SELECT array_agg(id) FILTER (WHERE v = 'ready'), array_agg(id) FILTER (WHERE v = 'skip')
      INTO ready, skip
      FROM (SELECT id, weir_rule_verdict(trigger_rule, upstream_pending, upstream_failed, upstream_skipped) AS v
              FROM tasks WHERE id = ANY(p_ids) AND state = 'pending') d;
    IF ready IS NOT NULL THEN PERFORM weir_tasks_ready(ready); END IF;
    IF skip IS NOT NULL THEN
        WITH u AS (
            UPDATE tasks SET state = 'skipped', finished_at = now(),
                   error = CASE trigger_rule WHEN 'one_failed' THEN 'no upstream task failed'
                           ELSE 'an upstream task did not succeed' END
            WHERE id = ANY(skip) AND state = 'pending' RETURNING id, run_id)
        INSERT INTO events (kind, run_id, task_id, from_state, to_state, actor)
        SELECT 'task.state', run_id, id, 'pending', 'skipped', 'scheduler' FROM u;
    END IF;
    RETURN coalesce(skip, '{}');
END $$;

-- A worker's reports that attempts ended, many in one call (the group-commit batch). Each is
-- refused (409) unless its attempt is the task's current one, still running, and held by this
-- worker; the same report sent twice is answered as a duplicate. The dependents of all the
-- succeeded tasks are then updated together. A succeeded deploy task first goes through the model
-- registry (weir_model_deploy, in 0003_registry.sql); other tasks never pay for it. Answers
-- {"results": [...in input order], "queued": N, "gates": N}: the tasks it made ready for workers,
-- and the gates it made ready.
-- Input: [{"worker", "task", "attempt", "status", "exit_code", "error", "metrics", "outputs"}].
-- As 0002's, less the statements whose input is empty (see the header).
CREATE OR REPLACE FUNCTION weir_complete_many(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    x jsonb; i int; t tasks; a attempts; res jsonb[]; done bigint[] := '{}'; fast int[]; ended bigint[];
    w bigint; n int; tid bigint; status text; v_outputs jsonb; v_metrics jsonb; missing text;
    wname text; last_w bigint := -1; st text; err text; dep jsonb; nul text; nw int; ng int; deps boolean;
BEGIN
    res := array_fill(NULL::jsonb, ARRAY[jsonb_array_length(p)]);
    -- the ready counters start from 0 (unset counts as 0: a transaction's first call sets nothing)
    IF weir_ready_count('weir.ready_for_workers') <> 0 OR weir_ready_count('weir.ready_gates') <> 0 THEN
        nul := set_config('weir.ready_for_workers', '0', true) || set_config('weir.ready_gates', '0', true);
    END IF;
    -- The common report, set-based: the current attempt succeeded and made no outputs. Each task
    -- is taken once (a report repeated in the same call is answered by the loop below). When every
    -- report says succeeded, the same statement also takes weir_tasks_finished's first step for
    -- them: their runs count them, their dependents' counters are updated and decided; what it
    -- skipped goes on through weir_tasks_finished below, the runs it ended through weir_runs_settle.
    -- A report of a failure is finished by the loop at once (weir_task_failed), before the fast
    -- path's tasks are: with one in the batch they are left to weir_tasks_finished, as before.
    deps := NOT p @? '$[*] ? (!exists(@.status) || @.status.type() != "string" || @.status != "succeeded")';
    WITH inp AS (SELECT DISTINCT ON ((e->>'task')::bigint) (e->>'task')::bigint AS tid, (e->>'worker')::bigint AS w,
                        (e->>'attempt')::int AS n, x.i::int AS i, coalesce(e->'metrics', '{}') AS metrics,
                        (e->>'exit_code')::int AS ex, coalesce(e->>'error', '') AS err
                   FROM jsonb_array_elements(p) WITH ORDINALITY AS x(e, i)
                  WHERE e->>'status' = 'succeeded' AND coalesce(e->'outputs', '{}') = '{}'
                  ORDER BY (e->>'task')::bigint, x.i),
         ut AS (UPDATE tasks SET state = 'succeeded', finished_at = now(), error = '', metrics = inp.metrics,
                       outputs = '{}', lease_expires_at = NULL, deadline_at = NULL
                  FROM inp
                 WHERE tasks.id = inp.tid AND tasks.state = 'running' AND tasks.attempt = inp.n AND tasks.worker_id = inp.w
                   AND tasks.step <> 'deploy'  -- a deploy registers its model first: the loop below
                RETURNING tasks.id, tasks.run_id, inp.*),
         ua AS (UPDATE attempts SET state = 'succeeded', finished_at = now(), exit_code = ut.ex, error = ut.err,
                       metrics = ut.metrics
                  FROM ut WHERE attempts.task_id = ut.id AND attempts.number = ut.n),
         ru AS (UPDATE runs SET tasks_done = tasks_done + c.n
                  FROM (SELECT ut.run_id, count(*) AS n FROM ut WHERE deps GROUP BY ut.run_id) c
                 WHERE runs.id = c.run_id
                RETURNING runs.id, runs.state = 'running' AND runs.tasks_done >= runs.tasks_total AS ended),
         agg AS (SELECT e.downstream_id AS id, count(*) AS n
                   FROM ut CROSS JOIN LATERAL (SELECT downstream_id FROM task_edges WHERE upstream_id = ut.id OFFSET 0) e
                  WHERE deps GROUP BY e.downstream_id),
         u AS (UPDATE tasks dt SET upstream_pending = dt.upstream_pending - agg.n,
                      state = CASE weir_rule_verdict(dt.trigger_rule, dt.upstream_pending - agg.n, dt.upstream_failed, dt.upstream_skipped)
                              WHEN 'ready' THEN CASE dt.kind WHEN 'approval' THEN 'waiting' ELSE 'queued' END
                              WHEN 'skip' THEN 'skipped' ELSE dt.state END,
                      queued_at = CASE weir_rule_verdict(dt.trigger_rule, dt.upstream_pending - agg.n, dt.upstream_failed, dt.upstream_skipped)
                                  WHEN 'ready' THEN now() ELSE dt.queued_at END,
                      deadline_at = CASE weir_rule_verdict(dt.trigger_rule, dt.upstream_pending - agg.n, dt.upstream_failed, dt.upstream_skipped)
                                    WHEN 'ready' THEN CASE WHEN dt.kind = 'approval' AND (dt.spec->'approval'->>'timeout_ms')::bigint > 0
                                                      THEN now() + (dt.spec->'approval'->>'timeout_ms')::bigint * interval '1 ms' END
                                    ELSE dt.deadline_at END,
                      finished_at = CASE weir_rule_verdict(dt.trigger_rule, dt.upstream_pending - agg.n, dt.upstream_failed, dt.upstream_skipped)
                                    WHEN 'skip' THEN now() ELSE dt.finished_at END,
                      error = CASE weir_rule_verdict(dt.trigger_rule, dt.upstream_pending - agg.n, dt.upstream_failed, dt.upstream_skipped)
                              WHEN 'skip' THEN CASE dt.trigger_rule WHEN 'one_failed' THEN 'no upstream task failed'
                                               ELSE 'an upstream task did not succeed' END
                              ELSE dt.error END
                 FROM agg WHERE dt.id = agg.id AND dt.state = 'pending'
               RETURNING dt.id, dt.run_id, dt.state, dt.queue),
         -- the completions' events, then those of the tasks made ready, then of those skipped
         ev AS (INSERT INTO events (kind, run_id, task_id, attempt, from_state, to_state, actor)
                SELECT 'task.state', e.run_id, e.id, e.att, e.from_state, e.to_state, e.actor
                  FROM (SELECT ut.run_id, ut.id, ut.n AS att, 'running' AS from_state, 'succeeded' AS to_state,
                               coalesce(wk.name, '') AS actor, 0 AS o
                          FROM ut LEFT JOIN workers wk ON wk.id = ut.w
                        UNION ALL
                        SELECT u.run_id, u.id, NULL, 'pending', u.state, 'scheduler', CASE u.state WHEN 'skipped' THEN 2 ELSE 1 END
                          FROM u WHERE u.state <> 'pending') e
                 ORDER BY e.o, e.id)
    SELECT coalesce(f.fast, '{}'), coalesce(CASE WHEN deps THEN d.skipped ELSE f.done END, '{}'), d.nw, d.ng,
           (SELECT array_agg(ru.id) FROM ru WHERE ru.ended)
      INTO fast, done, nw, ng, ended
      FROM (SELECT array_agg(ut.i) AS fast, array_agg(ut.id) AS done FROM ut) f,
           (SELECT array_agg(u.id) FILTER (WHERE u.state = 'skipped') AS skipped,
                   count(*) FILTER (WHERE u.state = 'queued' AND u.queue > '') AS nw,
                   count(*) FILTER (WHERE u.state = 'queued' AND u.queue = '') AS ng FROM u) d;
    -- counted for this transaction, for the answer (weir_ready_count), as weir_tasks_finished does
    IF nw > 0 THEN nul := set_config('weir.ready_for_workers', (weir_ready_count('weir.ready_for_workers') + nw)::text, true); END IF;
    IF ng > 0 THEN nul := set_config('weir.ready_gates', (weir_ready_count('weir.ready_gates') + ng)::text, true); END IF;
    FOREACH i IN ARRAY fast LOOP
        res[i] := '{"code": 200, "state": "succeeded"}';
    END LOOP;
    -- Everything else one by one: refusals, repeats, failures, outputs (when the fast path left any).
    IF cardinality(fast) < cardinality(res) THEN
        FOR x, i IN SELECT * FROM jsonb_array_elements(p) WITH ORDINALITY LOOP
            CONTINUE WHEN res[i] IS NOT NULL;
            w := (x->>'worker')::bigint; tid := (x->>'task')::bigint; n := (x->>'attempt')::int;
            status := x->>'status'; v_outputs := coalesce(x->'outputs', '{}'); v_metrics := coalesce(x->'metrics', '{}');
            SELECT * INTO t FROM tasks WHERE id = tid FOR UPDATE;
            IF NOT FOUND THEN
                res[i] := weir_refuse(404, format('no task %s', tid));
                CONTINUE;
            END IF;
            IF t.attempt <> n OR t.state <> 'running' OR t.worker_id IS DISTINCT FROM w THEN
                SELECT * INTO a FROM attempts WHERE task_id = tid AND number = n;
                IF FOUND AND a.worker_id = w AND a.state = status THEN
                    res[i] := jsonb_build_object('code', 200, 'state', t.state, 'duplicate', true);
                ELSE
                    res[i] := weir_refuse(409, format('attempt %s of task %s is not current (task %s, attempt %s%s)', n,
                        tid, t.state, t.attempt, CASE WHEN a.state IS NOT NULL THEN ', that attempt ' || a.state ELSE '' END));
                END IF;
                CONTINUE;
            END IF;
            missing := NULL;
            IF v_outputs <> '{}' THEN
                SELECT min(key) INTO missing FROM jsonb_each_text(v_outputs) o
                 WHERE NOT EXISTS (SELECT 1 FROM artifacts WHERE sha256 = o.value);
            END IF;
            IF missing IS NOT NULL THEN
                res[i] := weir_refuse(400, format('output "%s": artifact %s was not uploaded', missing, v_outputs->>missing));
                CONTINUE;
            END IF;
            IF w <> last_w THEN SELECT name INTO wname FROM workers WHERE id = w; last_w := w; END IF;
            err := coalesce(x->>'error', '');
            UPDATE attempts SET state = status, finished_at = now(), exit_code = (x->>'exit_code')::int, error = err,
                   metrics = v_metrics
             WHERE task_id = tid AND number = n;
            IF status = 'succeeded' AND t.step = 'deploy' THEN
                -- the model registry (migrations/0003_registry.sql) takes the deploy in this transaction;
                -- settings it cannot use fail the task at once: running the step again changes nothing
                dep := weir_model_deploy(tid);
                IF dep ? 'error' THEN
                    UPDATE tasks SET state = 'failed', failures = failures + 1, error = dep->>'error', finished_at = now(),
                           metrics = v_metrics, lease_expires_at = NULL, deadline_at = NULL
                     WHERE id = tid;
                    INSERT INTO events (kind, run_id, task_id, attempt, from_state, to_state, actor, detail)
                    VALUES ('task.state', t.run_id, tid, n, 'running', 'failed', coalesce(wname, ''),
                            jsonb_build_object('error', dep->>'error'));
                    done := done || tid;
                    res[i] := jsonb_build_object('code', 200, 'state', 'failed');
                    CONTINUE;
                END IF;
            END IF;
            IF status = 'succeeded' THEN
                IF v_outputs <> '{}' THEN
                    INSERT INTO task_outputs (task_id, name, attempt, sha256)
                    SELECT tid, key, n, value FROM jsonb_each_text(v_outputs)
                    ON CONFLICT (task_id, name) DO UPDATE SET attempt = EXCLUDED.attempt, sha256 = EXCLUDED.sha256;
                    UPDATE artifacts SET producer_run_id = t.run_id, producer_task_id = tid
                     WHERE sha256 IN (SELECT value FROM jsonb_each_text(v_outputs)) AND producer_task_id IS NULL;
                END IF;
                UPDATE tasks SET state = 'succeeded', finished_at = now(), error = '', metrics = v_metrics,
                       outputs = v_outputs, lease_expires_at = NULL, deadline_at = NULL
                 WHERE id = tid;
                INSERT INTO events (kind, run_id, task_id, attempt, from_state, to_state, actor)
                VALUES ('task.state', t.run_id, tid, n, 'running', 'succeeded', coalesce(wname, ''));
                done := done || tid;
                res[i] := jsonb_build_object('code', 200, 'state', 'succeeded');
            ELSE
                st := weir_task_failed(t, CASE WHEN err <> '' THEN err WHEN status = 'timed_out' THEN 'timed out'
                                               ELSE format('exit status %s', x->>'exit_code') END, coalesce(wname, ''));
                res[i] := jsonb_build_object('code', 200, 'state', st);
            END IF;
        END LOOP;
    END IF;
    -- the rest: the tasks the loop finished, and the dependents the fast path skipped
    IF cardinality(done) > 0 THEN PERFORM weir_tasks_finished(done); END IF;
    IF ended IS NOT NULL THEN PERFORM weir_runs_settle(ended); END IF;
    -- signals a step emitted, from attempts that succeeded just now (0004_signals.sql decides them);
    -- the jsonpath test finds whether any report carries them without a statement
    IF p @? '$[*].signals' THEN
        FOR x IN SELECT e FROM jsonb_array_elements(p) AS e WHERE e ? 'signals' LOOP
            CONTINUE WHEN NOT EXISTS (SELECT 1 FROM attempts WHERE task_id = (x->>'task')::bigint
                                         AND number = (x->>'attempt')::int AND state = 'succeeded');
            PERFORM weir_signal_receive(sg->>'kind', coalesce(sg->>'subject', ''), (sg->>'value')::float8,
                                        coalesce(sg->'attributes', '{}') || jsonb_build_object('run', t2.run_id, 'task', t2.name),
                                        NULL, 'step', coalesce(w2.name, ''))
               FROM jsonb_array_elements(x->'signals') AS sg, tasks t2 LEFT JOIN workers w2 ON w2.id = (x->>'worker')::bigint
              WHERE t2.id = (x->>'task')::bigint;
        END LOOP;
    END IF;
    -- what it made ready, for workers (queued) or for the scheduler's gates: what the hand-off
    -- claims after it leave goes to the idle claims next
    RETURN jsonb_build_object('results', to_jsonb(res), 'queued', weir_ready_count('weir.ready_for_workers'),
                              'gates', weir_ready_count('weir.ready_gates'));
END $$;

-- Hands up to p_free queued tasks to a worker, best priority first, each within the worker's
-- free GPUs and memory (taken greedily in priority order). Creates their attempts.
-- As 0002's, with the worker and whether anything waits in its queues read by one statement.
CREATE OR REPLACE FUNCTION weir_claim(p_worker bigint, p_free int, p_gpu int, p_memory bigint, p_lease_ms int)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    w_name text; w_queues text[]; w_memory bigint; w_beat timestamptz; w_state text; queued boolean;
    q text; k int := 0; out jsonb := '[]'; got jsonb; want int := p_free;
BEGIN
    SELECT name, queues, memory_bytes, last_heartbeat_at, state,
           p_free > 0 AND EXISTS (SELECT 1 FROM tasks WHERE state = 'queued' AND queue = ANY(wk.queues))
      INTO w_name, w_queues, w_memory, w_beat, w_state, queued
      FROM workers wk WHERE id = p_worker;
    IF NOT FOUND THEN RETURN weir_refuse(404, format('no worker %s: register again', p_worker)); END IF;
    IF w_beat < now() - interval '1 second' OR w_state <> 'active' THEN
        UPDATE workers SET last_heartbeat_at = now(), state = 'active' WHERE id = p_worker;
    END IF;
    IF NOT queued THEN
        RETURN jsonb_build_object('code', 200, 'tasks', out);  -- nothing to hand out: skip the claim's statement
    END IF;
    -- One ordered index scan per queue (tasks_ready); a worker usually serves one or two queues.
    FOREACH q IN ARRAY w_queues LOOP
        EXIT WHEN want <= 0;
        k := k + 1;
        WITH c AS (
            SELECT id, gpu, memory_bytes, priority FROM tasks
             WHERE state = 'queued' AND queue = q AND gpu <= p_gpu AND (w_memory = 0 OR memory_bytes <= p_memory)
             ORDER BY priority DESC, id LIMIT want FOR UPDATE SKIP LOCKED),
        fit AS (
            SELECT id FROM (SELECT id, sum(gpu) OVER o AS g, sum(memory_bytes) OVER o AS m FROM c
                             WINDOW o AS (ORDER BY priority DESC, id)) s
             WHERE g <= p_gpu AND (w_memory = 0 OR m <= p_memory)),
        u AS (
            UPDATE tasks t SET state = 'running', attempt = t.attempt + 1, worker_id = p_worker,
                   started_at = now(), lease_expires_at = now() + p_lease_ms * interval '1 ms',
                   deadline_at = CASE WHEN t.timeout_ms > 0 THEN now() + (t.timeout_ms + 30000) * interval '1 ms' END
              FROM fit WHERE t.id = fit.id
            RETURNING t.id, t.run_id, t.name, t.step, t.spec, t.attempt, t.timeout_ms, t.lease_expires_at),
        a AS (
            INSERT INTO attempts (task_id, number, worker_id, lease_expires_at)
            SELECT id, attempt, p_worker, lease_expires_at FROM u),
        ev AS (
            INSERT INTO events (kind, run_id, task_id, attempt, from_state, to_state, actor)
            SELECT 'task.state', run_id, id, attempt, 'queued', 'running', w_name FROM u)
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'task_id', u.id, 'attempt', u.attempt, 'run_id', u.run_id, 'pipeline', p.name, 'task', u.name,
                   'step', u.step, 'spec', u.spec, 'params', r.params,
                   'run', jsonb_build_object('id', r.id, 'pipeline', p.name, 'version', r.version_id,
                                             'date', to_char(coalesce(r.scheduled_for, r.created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                                             'trigger', r.trigger_kind),
                   'inputs', (SELECT coalesce(jsonb_object_agg(up.name || '.' || o.key, jsonb_build_object(
                                         'sha256', o.value, 'size', (SELECT size FROM artifacts WHERE sha256 = o.value))), '{}')
                                FROM task_edges e
                                CROSS JOIN LATERAL (SELECT name, outputs FROM tasks WHERE id = e.upstream_id OFFSET 0) up
                                CROSS JOIN LATERAL jsonb_each_text(up.outputs) o
                               WHERE e.downstream_id = u.id)
                             -- model("churn") in the pipeline: the registry's version now (0003_registry.sql)
                             || CASE WHEN u.spec ? 'models' THEN weir_model_inputs(u.spec->'models') ELSE '{}' END,
                   'timeout_ms', coalesce(u.timeout_ms, 0), 'lease_ms', p_lease_ms) ORDER BY u.id), '[]')
          INTO got
          FROM u JOIN runs r ON r.id = u.run_id JOIN pipelines p ON p.id = r.pipeline_id;
        out := out || got;
        want := p_free - jsonb_array_length(out);
        -- what this queue took is no longer free for the next one (when there is a next one)
        IF want > 0 AND k < cardinality(w_queues) AND got <> '[]' THEN
            SELECT p_gpu - coalesce(sum((x->'spec'->'resources'->>'gpu')::int), 0),
                   p_memory - coalesce(sum((x->'spec'->'resources'->>'memory_bytes')::bigint), 0)
              INTO p_gpu, p_memory FROM jsonb_array_elements(got) x;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('code', 200, 'tasks', out);
END $$;

-- 0007's settings, which CREATE OR REPLACE reset
ALTER FUNCTION weir_complete_many(jsonb) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION weir_complete_many(jsonb) SET enable_seqscan = off;
ALTER FUNCTION weir_claim(bigint, int, int, bigint, int) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION weir_claim(bigint, int, int, bigint, int) SET enable_seqscan = off;
