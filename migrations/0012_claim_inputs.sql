-- 0012_claim_inputs.sql — a claim looks up a task's inputs only when one of its upstream tasks
-- wrote outputs.
--
-- weir_claim built each claimed task's "inputs" from its upstream tasks' outputs: an edge and an
-- upstream task read per task, even when no upstream wrote any (most steps in a DAG of noop,
-- gate or exec steps without files): about a fifth of a claim's cost per task in a wide run
-- (docs/decisions.md, "Inputs looked up only when there are some"). Now tasks.upstream_outputs
-- says whether any upstream task has written outputs, and the claim skips the lookup when not.
--
-- * The column is true for the tasks that exist when this runs (they are looked up, as before)
--   and false for new ones; a task's outputs becoming non-empty sets it on every dependent, by
--   a row trigger in the statement that wrote them. It never goes back to false: a retried
--   upstream that writes nothing the second time leaves its dependents looked up, which is
--   correct, only slower.
-- * weir_claim is 0009's with the lookup under CASE WHEN upstream_outputs.
ALTER TABLE tasks ADD COLUMN upstream_outputs boolean NOT NULL DEFAULT true;
ALTER TABLE tasks ALTER COLUMN upstream_outputs SET DEFAULT false;

CREATE FUNCTION weir_outputs_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks SET upstream_outputs = true
     WHERE id IN (SELECT downstream_id FROM task_edges WHERE upstream_id = NEW.id) AND NOT upstream_outputs;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_outputs_written AFTER UPDATE OF outputs ON tasks FOR EACH ROW
    WHEN (NEW.outputs <> '{}' AND NEW.outputs IS DISTINCT FROM OLD.outputs)
    EXECUTE FUNCTION weir_outputs_written();

-- As 0009's, with the inputs looked up only for a task whose upstream_outputs is set.
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
            RETURNING t.id, t.run_id, t.name, t.step, t.spec, t.attempt, t.timeout_ms, t.lease_expires_at,
                      t.upstream_outputs),
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
                   'inputs', CASE WHEN u.upstream_outputs THEN
                             (SELECT coalesce(jsonb_object_agg(up.name || '.' || o.key, jsonb_build_object(
                                         'sha256', o.value, 'size', (SELECT size FROM artifacts WHERE sha256 = o.value))), '{}')
                                FROM task_edges e
                                CROSS JOIN LATERAL (SELECT name, outputs FROM tasks WHERE id = e.upstream_id OFFSET 0) up
                                CROSS JOIN LATERAL jsonb_each_text(up.outputs) o
                               WHERE e.downstream_id = u.id) ELSE '{}' END
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

-- 0007's settings, which CREATE OR REPLACE resets
ALTER FUNCTION weir_claim(bigint, int, int, bigint, int) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION weir_claim(bigint, int, int, bigint, int) SET enable_seqscan = off;
