-- 0013_value_domains.sql — the hot tables' value checks move from CHECK constraints into domains.
--
-- PostgreSQL keeps a table's CHECK constraints as node text and, in every statement that
-- writes the table, reads that text back and plans each expression again: for tasks, thirteen
-- constraints and about 7.7 KB of text in each of the several statements of a hand-off, for
-- attempts and runs two each. A domain's checks are kept ready in the backend's type cache
-- and run only for the columns a statement assigns. Same values allowed and refused, on every
-- INSERT and UPDATE of the column; the chain's hop costs about a fifth less of the database's
-- time (docs/decisions.md, "Value checks in domains"). The price: a refusal names the domain,
-- not the table ("value for domain weir_task_state violates check constraint ...").
--
-- The other tables' checks stay: they are written once in a while, not on every hand-off.
CREATE DOMAIN weir_task_state AS text CONSTRAINT weir_task_state_check CHECK (VALUE IN
    ('pending', 'queued', 'running', 'succeeded', 'failed', 'retrying', 'skipped', 'cancelled', 'blessed',
     'rejected', 'waiting'));
CREATE DOMAIN weir_trigger_rule AS text CONSTRAINT weir_trigger_rule_check CHECK (VALUE IN
    ('all_success', 'all_done', 'one_failed'));
CREATE DOMAIN weir_task_kind AS text CONSTRAINT weir_task_kind_check CHECK (VALUE IN ('task', 'gate', 'approval'));
CREATE DOMAIN weir_attempt_state AS text CONSTRAINT weir_attempt_state_check CHECK (VALUE IN
    ('running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost'));
CREATE DOMAIN weir_run_state AS text CONSTRAINT weir_run_state_check CHECK (VALUE IN
    ('queued', 'running', 'succeeded', 'failed', 'cancelled'));
CREATE DOMAIN weir_run_trigger AS text CONSTRAINT weir_run_trigger_check CHECK (VALUE IN
    ('manual', 'api', 'schedule', 'signal'));
CREATE DOMAIN weir_count AS integer CONSTRAINT weir_count_check CHECK (VALUE >= 0);
CREATE DOMAIN weir_positive AS integer CONSTRAINT weir_positive_check CHECK (VALUE > 0);
CREATE DOMAIN weir_bytes AS bigint CONSTRAINT weir_bytes_check CHECK (VALUE >= 0);

ALTER TABLE tasks
    DROP CONSTRAINT tasks_state_check, DROP CONSTRAINT tasks_trigger_rule_check, DROP CONSTRAINT tasks_kind_check,
    DROP CONSTRAINT tasks_upstream_total_check, DROP CONSTRAINT tasks_upstream_pending_check,
    DROP CONSTRAINT tasks_upstream_failed_check, DROP CONSTRAINT tasks_upstream_skipped_check,
    DROP CONSTRAINT tasks_attempt_check, DROP CONSTRAINT tasks_max_attempts_check, DROP CONSTRAINT tasks_failures_check,
    DROP CONSTRAINT tasks_lost_check, DROP CONSTRAINT tasks_gpu_check, DROP CONSTRAINT tasks_memory_bytes_check,
    ALTER COLUMN state TYPE weir_task_state, ALTER COLUMN trigger_rule TYPE weir_trigger_rule,
    ALTER COLUMN kind TYPE weir_task_kind,
    ALTER COLUMN upstream_total TYPE weir_count, ALTER COLUMN upstream_pending TYPE weir_count,
    ALTER COLUMN upstream_failed TYPE weir_count, ALTER COLUMN upstream_skipped TYPE weir_count,
    ALTER COLUMN attempt TYPE weir_count, ALTER COLUMN max_attempts TYPE weir_positive,
    ALTER COLUMN failures TYPE weir_count, ALTER COLUMN lost TYPE weir_count, ALTER COLUMN gpu TYPE weir_count,
    ALTER COLUMN memory_bytes TYPE weir_bytes;
ALTER TABLE attempts
    DROP CONSTRAINT attempts_state_check, DROP CONSTRAINT attempts_number_check,
    ALTER COLUMN state TYPE weir_attempt_state, ALTER COLUMN number TYPE weir_positive;
ALTER TABLE runs
    DROP CONSTRAINT runs_state_check, DROP CONSTRAINT runs_trigger_kind_check,
    ALTER COLUMN state TYPE weir_run_state, ALTER COLUMN trigger_kind TYPE weir_run_trigger;
