-- 0011_claim_row_checks.sql — fewer checks per row a claim writes.
--
-- weir never deletes a worker (one that leaves is marked 'gone') or a task (a run keeps its
-- tasks), and the only writer of tasks.worker_id, attempts.worker_id and attempts.task_id is
-- weir_claim, which reads that worker and updates that task in the same call. The three
-- foreign keys below checked it again with a query per row: 11-17 % of PostgreSQL's CPU per
-- task in a wide run (docs/decisions.md, "Row checks a claim does not need"). They go, and
-- deleting workers or tasks is refused instead, so that what those columns name stays.
ALTER TABLE tasks DROP CONSTRAINT tasks_worker_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_worker_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_task_id_fkey;

CREATE FUNCTION weir_forbid_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never deleted: workers leave as state ''gone'', tasks stay with their run', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER workers_never_deleted BEFORE DELETE OR TRUNCATE ON workers
    FOR EACH STATEMENT EXECUTE FUNCTION weir_forbid_delete();
CREATE TRIGGER tasks_never_deleted BEFORE DELETE OR TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION weir_forbid_delete();
