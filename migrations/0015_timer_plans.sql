-- 0015_timer_plans.sql — the timer, the heartbeat and the log chunk find their rows through
-- indexes, whatever the tables' size when their plans were made.
--
-- A PL/pgSQL function's plans live as long as the session that made them, and the scheduler's
-- session lives as long as the scheduler. Made on a fresh install, while tasks and attempts were
-- empty, a scan of the whole table looks cheaper than an index; the plan then stays while the
-- tables grow, until an ANALYZE happens to replace it. tasks and attempts keep every run's
-- history, so such a plan reads all of it:
--
-- * weir_tick, every 200 ms: its scan for expired leases read every task. In a 20,000-task
--   run on a fresh database (the first phase of bench/runs.sh) each tick took 9.5-11.5 ms, a
--   twentieth of the database's time, and held up the group commit's transactions behind it.
-- * weir_heartbeat, for each batch of a worker's heartbeats: tasks and attempts. Its
--   statement joins the reported attempts to both tables, and with the setting alone the
--   planner hashed the whole of each (a full index scan) instead; it is restated with the
--   reported task ids also as an array, which each table's scan takes as its index condition.
--   Same signature, same answers.
-- * weir_log_append, for each chunk of a step's log: tasks.
--
-- 0007 gave the hand-off's functions (weir_claim, weir_complete_many) the same setting. Every
-- statement of these three has an index to use (the primary keys, tasks_leases, tasks_deadline,
-- tasks_backoff); the setting only takes the whole-table scan out of the planner's choice.

-- A worker's heartbeat for the attempts it runs (p_attempts: [{"task_id", "attempt"}]): renews
-- their leases, and answers the ones it must stop (no longer current) as stale, with the reason.
CREATE OR REPLACE FUNCTION weir_heartbeat(p_worker bigint, p_attempts jsonb, p_lease_ms int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE stale jsonb; ids bigint[];
BEGIN
    UPDATE workers SET last_heartbeat_at = now(), state = 'active' WHERE id = p_worker;
    IF NOT FOUND THEN RETURN weir_refuse(404, format('no worker %s: register again', p_worker)); END IF;
    ids := ARRAY(SELECT (x->>'task_id')::bigint FROM jsonb_array_elements(p_attempts) x);
    WITH h AS (SELECT (x->>'task_id')::bigint AS tid, (x->>'attempt')::int AS n FROM jsonb_array_elements(p_attempts) x),
         u AS (UPDATE tasks t SET lease_expires_at = now() + p_lease_ms * interval '1 ms'
                 FROM h WHERE t.id = ANY (ids) AND t.id = h.tid AND t.attempt = h.n AND t.state = 'running'
                  AND t.worker_id = p_worker
               RETURNING t.id, t.attempt, t.lease_expires_at),
         ua AS (UPDATE attempts a SET heartbeat_at = now(), lease_expires_at = u.lease_expires_at
                  FROM u WHERE a.task_id = ANY (ids) AND a.task_id = u.id AND a.number = u.attempt)
    SELECT coalesce(jsonb_agg(jsonb_build_object('task_id', h.tid, 'attempt', h.n, 'reason',
               CASE WHEN a.state IS NULL THEN 'unknown attempt' WHEN a.state = 'running' THEN 'superseded'
                    ELSE a.state END)), '[]')
      INTO stale
      FROM h LEFT JOIN u ON u.id = h.tid
             LEFT JOIN attempts a ON a.task_id = ANY (ids) AND a.task_id = h.tid AND a.number = h.n
     WHERE u.id IS NULL;
    RETURN jsonb_build_object('code', 200, 'lease_ms', p_lease_ms, 'stale', stale);
END $$;

ALTER FUNCTION weir_tick() SET enable_seqscan = off;
ALTER FUNCTION weir_heartbeat(bigint, jsonb, int) SET enable_seqscan = off;
ALTER FUNCTION weir_log_append(bigint, bigint, int, int, int, bytea, bigint) SET enable_seqscan = off;
