-- 0001_schema.sql — weir's schema v1. PostgreSQL is the only source of truth;
-- the scheduler's memory is a cache rebuilt from these tables at start.
-- docs/schema.md explains each table and the invariants it carries.

-- Pipelines and their immutable versions ------------------------------------

CREATE TABLE pipelines (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    current_version text,                       -- FK below; the version new runs pin
    paused          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pipeline_versions (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),  -- SHA-256 of the canonical plan
    pipeline_id bigint NOT NULL REFERENCES pipelines(id),
    seq         int NOT NULL CHECK (seq > 0),                    -- 1, 2, 3 ... per pipeline
    plan        jsonb NOT NULL,
    source      text NOT NULL,                                   -- the Lua script as applied
    source_name text NOT NULL DEFAULT '',
    task_count  int NOT NULL CHECK (task_count >= 0),
    created_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pipeline_id, seq)
);

ALTER TABLE pipelines ADD CONSTRAINT pipelines_current_version_fkey
    FOREIGN KEY (current_version) REFERENCES pipeline_versions(id);

-- A version never changes once written.
CREATE FUNCTION weir_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER pipeline_versions_immutable BEFORE UPDATE OR DELETE ON pipeline_versions
    FOR EACH ROW EXECUTE FUNCTION weir_forbid_change();

-- Workers and API tokens -------------------------------------------------------

CREATE TABLE workers (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL,
    labels            jsonb NOT NULL DEFAULT '{}',
    queues            text[] NOT NULL DEFAULT '{default}',
    gpu               int NOT NULL DEFAULT 0 CHECK (gpu >= 0),
    memory_bytes      bigint NOT NULL DEFAULT 0 CHECK (memory_bytes >= 0),
    slots             int NOT NULL CHECK (slots > 0),
    state             text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'gone')),
    version           text NOT NULL DEFAULT '',
    registered_at     timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_live ON workers (last_heartbeat_at) WHERE state <> 'gone';

CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('worker', 'operator', 'viewer')),
    hash         text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),  -- SHA-256 of the token; never the token
    prefix       text NOT NULL,                                          -- first characters, to recognise it
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz
);

-- Runs, tasks, attempts ----------------------------------------------------------

CREATE TABLE schedules (
    id            bigserial PRIMARY KEY,
    pipeline_id   bigint NOT NULL UNIQUE REFERENCES pipelines(id),
    cron          text NOT NULL,
    timezone      text NOT NULL DEFAULT 'UTC',
    catchup       boolean NOT NULL DEFAULT false,
    enabled       boolean NOT NULL DEFAULT true,
    next_fire_at  timestamptz,               -- computed by the scheduler from cron and the database clock
    last_fired_at timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled;

CREATE TABLE signals (
    id             bigserial PRIMARY KEY,
    kind           text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    subject        text NOT NULL DEFAULT '',
    value          double precision,
    attributes     jsonb NOT NULL DEFAULT '{}',
    dedup_key      text,
    source         text NOT NULL CHECK (source IN ('step', 'api', 'webhook', 'cli')),
    received_at    timestamptz NOT NULL DEFAULT now(),
    outcome        text CHECK (outcome IN ('started', 'below_threshold', 'cooldown', 'duplicate',
                                           'run_active', 'no_rule')),
    outcome_detail text NOT NULL DEFAULT ''
);
CREATE INDEX signals_recent ON signals (kind, subject, received_at DESC);

CREATE TABLE runs (
    id            bigserial PRIMARY KEY,
    pipeline_id   bigint NOT NULL REFERENCES pipelines(id),
    version_id    text NOT NULL REFERENCES pipeline_versions(id),   -- pinned for the run's life
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    params        jsonb NOT NULL DEFAULT '{}',
    trigger_kind  text NOT NULL CHECK (trigger_kind IN ('manual', 'api', 'schedule', 'signal')),
    signal_id     bigint REFERENCES signals(id),
    schedule_id   bigint REFERENCES schedules(id),
    scheduled_for timestamptz,                 -- the cron tick a scheduled run stands for
    created_by    text NOT NULL DEFAULT '',
    reason        text NOT NULL DEFAULT '',    -- why it ended as it did
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    UNIQUE (schedule_id, scheduled_for)        -- a cron tick starts at most one run
);
CREATE INDEX runs_active ON runs (pipeline_id, id) WHERE state IN ('queued', 'running');
CREATE INDEX runs_by_pipeline ON runs (pipeline_id, id DESC);

ALTER TABLE signals ADD COLUMN run_id bigint REFERENCES runs(id);  -- the run it started, if any

CREATE TABLE tasks (
    id               bigserial PRIMARY KEY,
    run_id           bigint NOT NULL REFERENCES runs(id),
    name             text NOT NULL,
    kind             text NOT NULL DEFAULT 'task' CHECK (kind IN ('task', 'gate', 'approval')),
    step             text NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'retrying',
                                      'skipped', 'cancelled', 'blessed', 'rejected', 'waiting')),
    trigger_rule     text NOT NULL DEFAULT 'all_success'
                     CHECK (trigger_rule IN ('all_success', 'all_done', 'one_failed')),
    upstream_total   int NOT NULL DEFAULT 0 CHECK (upstream_total >= 0),
    upstream_pending int NOT NULL DEFAULT 0 CHECK (upstream_pending >= 0),  -- upstream tasks not yet finished
    upstream_failed  int NOT NULL DEFAULT 0 CHECK (upstream_failed >= 0),   -- finished without success
    attempt          int NOT NULL DEFAULT 0 CHECK (attempt >= 0),           -- current attempt: the fencing token
    max_attempts     int NOT NULL DEFAULT 1 CHECK (max_attempts > 0),
    priority         int NOT NULL DEFAULT 0,
    queue            text NOT NULL DEFAULT 'default',
    gpu              int NOT NULL DEFAULT 0 CHECK (gpu >= 0),
    memory_bytes     bigint NOT NULL DEFAULT 0 CHECK (memory_bytes >= 0),
    timeout_ms       bigint,
    worker_id        bigint REFERENCES workers(id),
    lease_expires_at timestamptz,              -- database clock only
    not_before       timestamptz,              -- retry backoff: not queued before this
    queued_at        timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    error            text NOT NULL DEFAULT '',
    outputs          jsonb NOT NULL DEFAULT '{}',
    metrics          jsonb NOT NULL DEFAULT '{}',
    decision         jsonb,                    -- a gate's or approval's decision and its reasons
    UNIQUE (run_id, name)
);
-- The ready set and the timers are found through partial indexes, never by scanning history.
CREATE INDEX tasks_ready    ON tasks (queue, priority DESC, id) WHERE state = 'queued';
CREATE INDEX tasks_leases   ON tasks (lease_expires_at) WHERE state = 'running';
CREATE INDEX tasks_backoff  ON tasks (not_before) WHERE state = 'retrying';
CREATE INDEX tasks_waiting  ON tasks (run_id) WHERE state = 'waiting';
CREATE INDEX tasks_by_run   ON tasks (run_id);

-- Edges of a run's DAG: completing a task touches only its dependents.
CREATE TABLE task_edges (
    upstream_id   bigint NOT NULL REFERENCES tasks(id),
    downstream_id bigint NOT NULL REFERENCES tasks(id),
    PRIMARY KEY (upstream_id, downstream_id)
);
CREATE INDEX task_edges_downstream ON task_edges (downstream_id);

CREATE TABLE attempts (
    task_id          bigint NOT NULL REFERENCES tasks(id),
    number           int NOT NULL CHECK (number > 0),
    worker_id        bigint REFERENCES workers(id),
    state            text NOT NULL DEFAULT 'running'
                     CHECK (state IN ('running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost')),
    started_at       timestamptz NOT NULL DEFAULT now(),
    heartbeat_at     timestamptz,
    lease_expires_at timestamptz,
    finished_at      timestamptz,
    exit_code        int,
    error            text NOT NULL DEFAULT '',
    metrics          jsonb NOT NULL DEFAULT '{}',
    log_bytes        bigint NOT NULL DEFAULT 0,
    log_truncated    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (task_id, number)
);

CREATE TABLE attempt_logs (
    task_id  bigint NOT NULL,
    number   int NOT NULL,
    seq      int NOT NULL,
    raw_len  int NOT NULL CHECK (raw_len >= 0),
    data     bytea NOT NULL,                   -- zlib-compressed chunk, as the worker sent it
    PRIMARY KEY (task_id, number, seq),
    FOREIGN KEY (task_id, number) REFERENCES attempts(task_id, number)
);

-- Artifacts and the model registry -------------------------------------------------

CREATE TABLE artifacts (
    sha256           text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),  -- content address
    size             bigint NOT NULL CHECK (size >= 0),
    media_type       text NOT NULL DEFAULT 'application/octet-stream',
    producer_run_id  bigint REFERENCES runs(id),    -- first producer; content may be produced again
    producer_task_id bigint REFERENCES tasks(id),
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE task_outputs (
    task_id  bigint NOT NULL REFERENCES tasks(id),
    name     text NOT NULL,
    attempt  int NOT NULL,
    sha256   text NOT NULL REFERENCES artifacts(sha256),
    PRIMARY KEY (task_id, name)
);

CREATE TABLE models (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_versions (
    model_id        bigint NOT NULL REFERENCES models(id),
    version         int NOT NULL CHECK (version > 0),
    artifact_sha256 text NOT NULL REFERENCES artifacts(sha256),
    run_id          bigint REFERENCES runs(id),
    task_id         bigint REFERENCES tasks(id),
    metrics         jsonb NOT NULL DEFAULT '{}',
    lineage         jsonb NOT NULL DEFAULT '{}',     -- dataset artifacts, parameters, pipeline version
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, version)
);

CREATE TABLE model_aliases (
    model_id   bigint NOT NULL REFERENCES models(id),
    alias      text NOT NULL CHECK (alias ~ '^[a-z][a-z0-9_-]{0,62}$'),
    version    int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, alias),
    FOREIGN KEY (model_id, version) REFERENCES model_versions(model_id, version)
);

-- Every move of an alias, so that a rollback is exact.
CREATE TABLE model_alias_history (
    id           bigserial PRIMARY KEY,
    model_id     bigint NOT NULL REFERENCES models(id),
    alias        text NOT NULL,
    from_version int,
    to_version   int NOT NULL,
    run_id       bigint REFERENCES runs(id),
    actor        text NOT NULL DEFAULT '',
    reason       text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_alias_history_by_alias ON model_alias_history (model_id, alias, id DESC);

-- Trigger rules' memory: cooldowns and deduplication per pipeline rule and key.
CREATE TABLE trigger_state (
    pipeline_id   bigint NOT NULL REFERENCES pipelines(id),
    rule          int NOT NULL,
    dedup_key     text NOT NULL DEFAULT '',
    last_fired_at timestamptz NOT NULL,
    last_run_id   bigint REFERENCES runs(id),
    PRIMARY KEY (pipeline_id, rule, dedup_key)
);

-- The audit trail ---------------------------------------------------------------------

-- Every state change is written here in the same transaction as the change itself.
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,               -- e.g. pipeline.applied, run.created, task.state
    pipeline_id bigint,
    run_id      bigint,
    task_id     bigint,
    attempt     int,
    from_state  text,
    to_state    text,
    actor       text NOT NULL DEFAULT '',    -- token name, worker name or "scheduler"
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_run ON events (run_id, id) WHERE run_id IS NOT NULL;
CREATE INDEX events_by_pipeline ON events (pipeline_id, id) WHERE pipeline_id IS NOT NULL;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION weir_forbid_change();
