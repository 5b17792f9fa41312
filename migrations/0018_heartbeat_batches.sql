-- 0018_heartbeat_batches.sql — a heartbeat's cost grows with its batch, not with the batch squared.
--
-- 0015's weir_heartbeat joined the reported attempts to tasks and to attempts, each table also
-- restricted by the reported ids as an array. Its plans put the array into a nested loop: the
-- tasks update read the whole list of reports again for every task, and the attempts update
-- probed attempts_pkey once per task with the array as a second condition, which a B-tree sorts
-- again at every probe. One heartbeat of 64, 256 and 1,000 attempts took 5, 16.5 and 197-230 ms
-- (docs/decisions.md, "A heartbeat's batch"); a worker sends one every third of its lease.
--
-- Now each table is read once, by its key (= ANY of the ids, sorted once), with no join: whether
-- a task's current attempt is the one reported is a key lookup in a jsonb object of the reported
-- "task:attempt" pairs. The stale attempts are the reported pairs not renewed, each looked up
-- by key. The answers are 0015's, except that a batch naming one task twice, with two attempt
-- numbers, now lists the attempt that is not current as stale (0015 listed neither).
CREATE OR REPLACE FUNCTION weir_heartbeat(p_worker bigint, p_attempts jsonb, p_lease_ms int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE stale jsonb; ids bigint[]; want jsonb; renewed bigint[]; renewed_keys jsonb; until timestamptz;
BEGIN
    UPDATE workers SET last_heartbeat_at = now(), state = 'active' WHERE id = p_worker;
    IF NOT FOUND THEN RETURN weir_refuse(404, format('no worker %s: register again', p_worker)); END IF;
    SELECT array_agg((x->>'task_id')::bigint),
           jsonb_object_agg((x->>'task_id')::bigint || ':' || (x->>'attempt')::int, true)
      INTO ids, want FROM jsonb_array_elements(p_attempts) x;
    IF ids IS NULL THEN
        RETURN jsonb_build_object('code', 200, 'lease_ms', p_lease_ms, 'stale', '[]'::jsonb);
    END IF;
    WITH u AS (UPDATE tasks t SET lease_expires_at = now() + p_lease_ms * interval '1 ms'
                WHERE t.id = ANY (ids) AND want ? (t.id || ':' || t.attempt)
                  AND t.state = 'running' AND t.worker_id = p_worker
               RETURNING t.id, t.attempt, t.lease_expires_at)
    SELECT array_agg(id), jsonb_object_agg(id || ':' || attempt, true), max(lease_expires_at)
      INTO renewed, renewed_keys, until FROM u;
    IF renewed IS NOT NULL THEN
        UPDATE attempts a SET heartbeat_at = now(), lease_expires_at = until
         WHERE a.task_id = ANY (renewed) AND renewed_keys ? (a.task_id || ':' || a.number);
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object('task_id', h.tid, 'attempt', h.n, 'reason',
               CASE WHEN a.state IS NULL THEN 'unknown attempt' WHEN a.state = 'running' THEN 'superseded'
                    ELSE a.state END)), '[]')
      INTO stale
      FROM (SELECT (x->>'task_id')::bigint AS tid, (x->>'attempt')::int AS n FROM jsonb_array_elements(p_attempts) x) h
           LEFT JOIN LATERAL (SELECT state FROM attempts WHERE task_id = h.tid AND number = h.n OFFSET 0) a ON true
     WHERE renewed_keys IS NULL OR NOT renewed_keys ? (h.tid || ':' || h.n);
    RETURN jsonb_build_object('code', 200, 'lease_ms', p_lease_ms, 'stale', stale);
END $$;

-- 0015's setting, which CREATE OR REPLACE resets
ALTER FUNCTION weir_heartbeat(bigint, jsonb, int) SET enable_seqscan = off;
