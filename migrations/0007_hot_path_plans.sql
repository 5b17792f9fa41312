-- 0007_hot_path_plans.sql — the two functions every hand-off runs, weir_complete_many and
-- weir_claim, keep one generic plan per statement instead of planning each call again.
--
-- Their statements take arrays and JSON (`id = ANY($1)`), and PostgreSQL's plan cache judged a
-- custom plan cheaper every time, so each call planned a dozen statements afresh: about half
-- of a chain hop's database CPU (docs/decisions.md, "Runs"). A generic plan made while the
-- tables are small would scan them sequentially and keep doing so as they grow, so the same
-- functions also run with enable_seqscan off: every statement in them finds its rows by key
-- or through a partial index, and a table without a usable index is still scanned.
-- The settings apply to what the functions call (weir_tasks_finished, weir_model_deploy,
-- weir_signal_receive, ...) and end when they return.

ALTER FUNCTION weir_complete_many(jsonb) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION weir_complete_many(jsonb) SET enable_seqscan = off;
ALTER FUNCTION weir_claim(bigint, int, int, bigint, int) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION weir_claim(bigint, int, int, bigint, int) SET enable_seqscan = off;
