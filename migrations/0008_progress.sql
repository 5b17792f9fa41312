-- 0008_progress.sql — a running attempt's progress, as its step last reported it: a plugin's
-- host->progress(fraction, note), or an exec step's $WEIR_PROGRESS_FILE. Workers send it with
-- their heartbeats (every third of a lease); `weir run show` and `run watch` show it.

ALTER TABLE attempts ADD COLUMN progress jsonb;  -- {"fraction": 0..1, "note": TEXT}, NULL before any
