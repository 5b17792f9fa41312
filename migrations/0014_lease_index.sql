-- 0014_lease_index.sql — the lease index no longer lets the planner drive a completion or a
-- heartbeat from every running task.
--
-- tasks_leases was a partial index on (lease_expires_at) WHERE state = 'running'. A completion
-- (weir_complete_many) and a heartbeat (weir_heartbeat) update the tasks they name WHERE
-- state = 'running' AND id = ..., and that condition matches the index's predicate. When the
-- statistics were gathered while nothing ran (an idle install's autovacuum, or any ANALYZE
-- between busy spells), PostgreSQL estimates one running task and builds the functions' generic
-- plans around a scan of that index: every running task, each checked against every report of
-- the batch. With 256 tasks running and 64 reports a batch that is 16,384 comparisons where 64
-- index lookups would do, and it grows with the fleet.
--
-- Keyed on the lease itself, the index still serves the tick's lost-lease scan (lease_expires_at
-- < now() implies lease_expires_at IS NOT NULL), and only running tasks hold a lease (every way
-- out of 'running' clears it), so it holds the same entries; the completion's and heartbeat's
-- state = 'running' no longer matches any partial index, and their plans find the tasks they
-- name by primary key whatever the statistics say.
DROP INDEX tasks_leases;
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
