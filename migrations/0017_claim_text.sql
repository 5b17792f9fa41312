-- 0017_claim_text.sql — a claim writes its answer as JSON text, not as jsonb.
--
-- weir_claim built each claimed task's answer with jsonb_build_object, gathered the tasks with
-- jsonb_agg and returned one jsonb document, which the scheduler then took apart (->>, ->) and
-- printed as text to pass on verbatim. Building jsonb copies every value into a sorted binary
-- container, the task's spec and the run's parameters included, and printing it walks it again:
-- about a sixth of the database's CPU in a wide run (perf; docs/decisions.md, "A claim's answer
-- as text"). The scheduler never reads inside the tasks, so they are now written as JSON text
-- (json_build_object, string_agg), and the function answers in columns instead of a document:
--
--   code     200, or 404 for an unknown worker
--   message  why it was refused ('' when not)
--   tasks    a JSON array of the leased tasks, the same fields as before (text; keys in the
--            order written, not jsonb's)
--   n        how many
--
-- What it leases, the attempts and events it writes, and the order (priority, then id) are
-- 0012's. Each queue's leased GPUs and memory are now summed from the leased rows rather than
-- read back out of the answer.
DROP FUNCTION weir_claim(bigint, int, int, bigint, int);
CREATE FUNCTION weir_claim(p_worker bigint, p_free int, p_gpu int, p_memory bigint, p_lease_ms int,
                           OUT code int, OUT message text, OUT tasks text, OUT n int)
LANGUAGE plpgsql AS $$
DECLARE
    w_name text; w_queues text[]; w_memory bigint; w_beat timestamptz; w_state text; queued boolean;
    q text; k int := 0; got text; got_n int; got_gpu int; got_memory bigint;
BEGIN
    code := 200; message := ''; tasks := '[]'; n := 0;
    SELECT name, queues, memory_bytes, last_heartbeat_at, state,
           p_free > 0 AND EXISTS (SELECT 1 FROM tasks WHERE state = 'queued' AND queue = ANY(wk.queues))
      INTO w_name, w_queues, w_memory, w_beat, w_state, queued
      FROM workers wk WHERE id = p_worker;
    IF NOT FOUND THEN
        code := 404; message := format('no worker %s: register again', p_worker);
        RETURN;
    END IF;
    IF w_beat < now() - interval '1 second' OR w_state <> 'active' THEN
        UPDATE workers SET last_heartbeat_at = now(), state = 'active' WHERE id = p_worker;
    END IF;
    IF NOT queued THEN
        RETURN;  -- nothing to hand out: skip the claim's statement
    END IF;
    -- One ordered index scan per queue (tasks_ready); a worker usually serves one or two queues.
    FOREACH q IN ARRAY w_queues LOOP
        EXIT WHEN n >= p_free;
        k := k + 1;
        WITH c AS (
            SELECT id, gpu, memory_bytes, priority FROM tasks
             WHERE state = 'queued' AND queue = q AND gpu <= p_gpu AND (w_memory = 0 OR memory_bytes <= p_memory)
             ORDER BY priority DESC, id LIMIT p_free - n FOR UPDATE SKIP LOCKED),
        fit AS (
            SELECT id FROM (SELECT id, sum(gpu) OVER o AS g, sum(memory_bytes) OVER o AS m FROM c
                             WINDOW o AS (ORDER BY priority DESC, id)) s
             WHERE g <= p_gpu AND (w_memory = 0 OR m <= p_memory)),
        u AS (
            UPDATE tasks t SET state = 'running', attempt = t.attempt + 1, worker_id = p_worker,
                   started_at = now(), lease_expires_at = now() + p_lease_ms * interval '1 ms',
                   deadline_at = CASE WHEN t.timeout_ms > 0 THEN now() + (t.timeout_ms + 30000) * interval '1 ms' END
              FROM fit WHERE t.id = fit.id
            RETURNING t.id, t.run_id, t.name, t.step, t.spec, t.attempt, t.timeout_ms, t.lease_expires_at,
                      t.upstream_outputs, t.gpu, t.memory_bytes),
        a AS (
            INSERT INTO attempts (task_id, number, worker_id, lease_expires_at)
            SELECT id, attempt, p_worker, lease_expires_at FROM u),
        ev AS (
            INSERT INTO events (kind, run_id, task_id, attempt, from_state, to_state, actor)
            SELECT 'task.state', run_id, id, attempt, 'queued', 'running', w_name FROM u)
        SELECT string_agg(json_build_object(
                   'task_id', u.id, 'attempt', u.attempt, 'run_id', u.run_id, 'pipeline', p.name, 'task', u.name,
                   'step', u.step, 'spec', u.spec, 'params', r.params,
                   'run', json_build_object('id', r.id, 'pipeline', p.name, 'version', r.version_id,
                                            'date', to_char(coalesce(r.scheduled_for, r.created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                                            'trigger', r.trigger_kind),
                   'inputs', CASE WHEN NOT u.upstream_outputs AND NOT u.spec ? 'models' THEN '{}'::jsonb ELSE
                             CASE WHEN u.upstream_outputs THEN
                             (SELECT coalesce(jsonb_object_agg(up.name || '.' || o.key, jsonb_build_object(
                                         'sha256', o.value, 'size', (SELECT size FROM artifacts WHERE sha256 = o.value))), '{}')
                                FROM task_edges e
                                CROSS JOIN LATERAL (SELECT name, outputs FROM tasks WHERE id = e.upstream_id OFFSET 0) up
                                CROSS JOIN LATERAL jsonb_each_text(up.outputs) o
                               WHERE e.downstream_id = u.id) ELSE '{}' END
                             -- model("churn") in the pipeline: the registry's version now (0003_registry.sql)
                             || CASE WHEN u.spec ? 'models' THEN weir_model_inputs(u.spec->'models') ELSE '{}' END END,
                   'timeout_ms', coalesce(u.timeout_ms, 0), 'lease_ms', p_lease_ms)::text, ',' ORDER BY u.id),
               count(*), coalesce(sum(u.gpu), 0), coalesce(sum(u.memory_bytes), 0)
          INTO got, got_n, got_gpu, got_memory
          FROM u JOIN runs r ON r.id = u.run_id JOIN pipelines p ON p.id = r.pipeline_id;
        IF got_n > 0 THEN
            tasks := CASE WHEN n = 0 THEN '[' || got || ']' ELSE left(tasks, -1) || ',' || got || ']' END;
            n := n + got_n;
            -- what this queue took is no longer free for the next one
            p_gpu := p_gpu - got_gpu;
            p_memory := p_memory - got_memory;
        END IF;
    END LOOP;
END $$;

-- 0007's settings
ALTER FUNCTION weir_claim(bigint, int, int, bigint, int) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION weir_claim(bigint, int, int, bigint, int) SET enable_seqscan = off;
