-- 0016_admission_order.sql — admitting queued runs reads the queued runs' index, whatever the
-- statistics said when the plan was made.
--
-- weir_pipeline_admit finds a pipeline's oldest queued runs (WHERE pipeline_id = p AND state =
-- 'queued' ORDER BY id LIMIT n). Two indexes give that order: runs_queued, which holds only the
-- queued runs, and the primary key, read from the first run the install ever had, skipping the
-- others. With statistics taken while most runs were queued (a backfill of thousands of runs,
-- which autovacuum analyzes soon after they are created), the planner expects the primary key's
-- first rows to match and takes it; as the backlog is admitted, every call then walks past the
-- runs already admitted. Measured: 20,000 one-task runs under max_active_runs = 1,000, with
-- ANALYZE run just after creating them, each of these lookups took 10-11 ms and the runs went at
-- 3,197-3,375 tasks/s, against 5,457-5,637 without that ANALYZE.
--
-- Bounding pipeline_id by a range instead of an equality keeps the planner from reducing
-- ORDER BY pipeline_id, id to ORDER BY id, so only an index on (pipeline_id, id) gives the order:
-- runs_queued (or runs_active), whose first entries are the oldest queued runs. The same rows in
-- the same order; same signature.
CREATE OR REPLACE FUNCTION weir_pipeline_admit(p_pipeline bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE cap int; active int; ids bigint[];
BEGIN
    -- The cap is that of the oldest queued run's version (0: no cap).
    SELECT coalesce((v.plan->>'max_active_runs')::int, 1) INTO cap
      FROM runs ru JOIN pipeline_versions v ON v.id = ru.version_id
     WHERE ru.pipeline_id >= p_pipeline AND ru.pipeline_id <= p_pipeline AND ru.state = 'queued'
     ORDER BY ru.pipeline_id, ru.id LIMIT 1;
    IF NOT FOUND THEN RETURN; END IF;
    SELECT runs_running INTO active FROM pipelines WHERE id = p_pipeline;
    IF cap > 0 AND active >= cap THEN RETURN; END IF;
    SELECT array_agg(id) INTO ids FROM (
        SELECT id FROM runs WHERE pipeline_id >= p_pipeline AND pipeline_id <= p_pipeline AND state = 'queued'
         ORDER BY pipeline_id, id LIMIT CASE WHEN cap > 0 THEN cap - active END) x;
    PERFORM weir_runs_start(ids);
END $$;
