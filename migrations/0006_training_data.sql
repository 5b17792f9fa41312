-- 0006_training_data.sql — a model version's training dataset, found through its lineage, as a
-- task input: training_data("churn") in a pipeline (docs/dsl.md) is "${training_data.churn.production}",
-- and drift.detect compares new data with it by default (docs/signals.md).
--
-- The plan lists a task's registry references in "models": "NAME.REF" is the model file (0003),
-- "training_data:NAME.REF" the dataset its model task was trained on: the deploy's lineage names
-- the run and the model task; that task's "data" setting names an upstream output
-- ("${tasks.ingest.outputs.dataset}"), and the lineage's "datasets" holds that output's hash.
-- A version whose model task had no such setting has no training data: the key is absent and the
-- worker's error says so.
--
-- Also: a trigger rule's parameter fed by one signal attribute the signal lacks is left out.

CREATE OR REPLACE FUNCTION weir_model_inputs(p_refs jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(CASE WHEN x.data THEN 'training_data.' ELSE 'models.' END || x.ref,
                                     jsonb_build_object('sha256', x.sha, 'size', ar.size, 'version', x.version)), '{}')
      FROM (SELECT r.ref, r.data, mv.version,
                   CASE WHEN NOT r.data THEN mv.artifact_sha256
                        ELSE mv.lineage->'datasets'->>(
                             SELECT array_to_string(regexp_match(t.spec->'with'->>'data',
                                        '^\$\{tasks\.([a-z][a-z0-9_-]*)\.outputs\.([a-z][a-z0-9_]*)\}$'), '.')
                               FROM tasks t
                              WHERE t.run_id = mv.run_id AND t.name = mv.lineage->>'model_task') END AS sha
              FROM (SELECT regexp_replace(e, '^training_data:', '') AS ref, e LIKE 'training_data:%' AS data
                      FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(p_refs) = 'array' THEN p_refs ELSE '[]' END) e) r
              JOIN models mo ON mo.name = substring(r.ref FROM '^(.+)\.[^.]+$')
              CROSS JOIN LATERAL (SELECT substring(r.ref FROM '\.([^.]+)$') AS a) s
              JOIN model_versions mv ON mv.model_id = mo.id AND mv.version =
                   CASE WHEN s.a ~ '^[1-9][0-9]{0,8}$' THEN s.a::int
                        ELSE (SELECT version FROM model_aliases al WHERE al.model_id = mo.id AND al.alias = s.a) END) x
      JOIN artifacts ar ON ar.sha256 = x.sha
$$;

-- A trigger rule's params with the signal's fields in (0004), but a parameter whose template is
-- exactly one "${signal.attributes.NAME}" is left out when the signal has no such attribute, so
-- the pipeline's default applies: a drift signal from a monitor may name the new data
-- (data = "${signal.attributes.data}"), and one sent by hand without it retrains on the default.
CREATE OR REPLACE FUNCTION weir_signal_params(p jsonb, s signals) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, CASE
               WHEN jsonb_typeof(v) <> 'string' THEN v
               WHEN v #>> '{}' = '${signal.value}' THEN coalesce(to_jsonb(s.value), 'null')
               WHEN v #>> '{}' = '${signal.id}' THEN to_jsonb(s.id)
               ELSE to_jsonb(weir_signal_text(v #>> '{}', s)) END), '{}')
      FROM jsonb_each(coalesce(p, '{}')) AS x(k, v)
     WHERE coalesce(s.attributes ? substring(v #>> '{}' FROM '^\$\{signal\.attributes\.([^}]+)\}$'), true)
$$;
