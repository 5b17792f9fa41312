-- sql_drain.sql — the hand-off's functions alone, for bench/sql.sh: PL/pgSQL loops that claim and
-- complete tasks of the pipeline "p" as a worker "w1" would, with no scheduler, no HTTP and no
-- fsync wait (synchronous_commit off: what is measured is the database's CPU per task).
SET jit = off;
SET synchronous_commit = off;
SET client_min_messages = notice;
CREATE OR REPLACE FUNCTION pg_temp.cpu_ns() RETURNS bigint LANGUAGE sql AS
$$ SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint $$;

-- the tasks a claim leased, as jsonb, from either form of weir_claim, so that sql.sh can compare
-- binaries from before migration 0017 (one jsonb answer) with later ones (columns, the tasks as
-- text; the cast back to jsonb is counted in the claim's time)
SELECT prorettype = 'jsonb'::regtype AS claim_jsonb FROM pg_proc WHERE proname = 'weir_claim' \gset
\if :claim_jsonb
CREATE OR REPLACE FUNCTION pg_temp.claim(w bigint, k int) RETURNS jsonb LANGUAGE sql AS
$$ SELECT weir_claim(w, k, 0, 0, 30000)->'tasks' $$;
\else
CREATE OR REPLACE FUNCTION pg_temp.claim(w bigint, k int) RETURNS jsonb LANGUAGE sql AS
$$ SELECT tasks::jsonb FROM weir_claim(w, k, 0, 0, 30000) $$;
\endif

-- a wide run (or, for independent runs, p_runs runs of a one-task pipeline): claims of 64 and
-- their completions, each in its own transaction
CREATE OR REPLACE PROCEDURE pg_temp.drain_wide(p_runs int DEFAULT 1) LANGUAGE plpgsql AS $$
DECLARE c jsonb; t0 timestamptz; tc interval := '0'; tm interval := '0'; n int := 0; w bigint; payload jsonb; cpu0 bigint;
BEGIN
  SELECT id INTO w FROM workers WHERE name = 'w1';
  PERFORM weir_run_create('p', '{}', 'manual', 'bench') FROM generate_series(1, p_runs);
  COMMIT;
  cpu0 := pg_temp.cpu_ns();
  LOOP
    t0 := clock_timestamp();
    c := pg_temp.claim(w, 64);
    tc := tc + (clock_timestamp() - t0);
    COMMIT;
    EXIT WHEN jsonb_array_length(c) = 0;
    SELECT jsonb_agg(jsonb_build_object('worker', w, 'task', x->'task_id', 'attempt', x->'attempt', 'status', 'succeeded', 'exit_code', 0))
      INTO payload FROM jsonb_array_elements(c) x;
    n := n + jsonb_array_length(payload);
    t0 := clock_timestamp();
    PERFORM weir_complete_many(payload);
    tm := tm + (clock_timestamp() - t0);
    COMMIT;
  END LOOP;
  RAISE NOTICE '% % % % %', CASE WHEN p_runs > 1 THEN 'indep' ELSE 'wide' END, n, round(extract(epoch FROM tc) * 1e6 / n), round(extract(epoch FROM tm) * 1e6 / n),
    round((pg_temp.cpu_ns() - cpu0) / 1e3 / n);
END $$;

-- a chain: each hop completes one task and claims its successor in one transaction
CREATE OR REPLACE PROCEDURE pg_temp.drain_chain() LANGUAGE plpgsql AS $$
DECLARE c jsonb; t0 timestamptz; t1 timestamptz; n int := 0; w bigint; payload jsonb; hops float8[] := '{}'; cpu0 bigint;
BEGIN
  SELECT id INTO w FROM workers WHERE name = 'w1';
  PERFORM weir_run_create('p', '{}', 'manual', 'bench');
  COMMIT;
  c := pg_temp.claim(w, 1);
  COMMIT;
  cpu0 := pg_temp.cpu_ns();
  LOOP
    EXIT WHEN jsonb_array_length(c) = 0;
    SELECT jsonb_agg(jsonb_build_object('worker', w, 'task', x->'task_id', 'attempt', x->'attempt', 'status', 'succeeded', 'exit_code', 0))
      INTO payload FROM jsonb_array_elements(c) x;
    t0 := clock_timestamp();
    PERFORM weir_complete_many(payload);
    c := pg_temp.claim(w, 1);
    t1 := clock_timestamp();
    hops := hops || extract(epoch FROM t1 - t0) * 1e6;
    n := n + 1;
    COMMIT;
  END LOOP;
  RAISE NOTICE 'chain % % % %', n, round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY h) FROM unnest(hops) h)::numeric),
    round((SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY h) FROM unnest(hops) h)::numeric),
    round((pg_temp.cpu_ns() - cpu0) / 1e3 / n);
END $$;
