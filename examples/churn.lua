-- churn.lua — retrain the churn model every night and when its input drifts; bless the new
-- model against production (TFX Evaluator style) and wait for a person before deploying it.
-- A sketch to adapt: it needs a customer snapshot (params.data) with a "churned" column.

pipeline "churn" {
  description = "Retrain the churn classifier on the latest customer snapshot",
  params = {
    data = param.string("examples/data/churn.csv", "customer snapshot, one row per customer"),
    c = param.number(1.0, "inverse L2 strength (scikit-learn's C)"),
    max_iter = param.int(200),
  },
  schedule = { cron = "0 3 * * *", timezone = "Europe/Paris" },
  triggers = {
    -- one drift storm starts one run: same subject within 6 hours is deduplicated
    on_signal "drift" { subject = "dataset:churn", threshold = 0.3, cooldown = "6h", dedup_key = "${signal.subject}" },
  },
  defaults = { retries = { max = 2, backoff = "30s" }, timeout = "1h" },
}

local ingest = task "ingest" {
  step = "ingest.csv",
  with = { source = params.data, label = "churned" },
}

local validate = task "validate" {
  step = "validate",
  with = { data = ingest.outputs.dataset, schema = { allow_new_columns = true, columns = { churned = { type = "categorical" },
           tenure_months = { type = "numeric", min = 0, max = 600, max_missing = 0.05 } } } },
}

local train = task "train" {
  step = "train.logreg",
  after = validate,
  with = { data = ingest.outputs.dataset, C = params.c, max_iter = params.max_iter },
  resources = { memory = "2GiB" },
  priority = 10,
}

local evaluate = task "evaluate" {
  step = "evaluate",
  with = { model = train.outputs.model, data = ingest.outputs.dataset },
}

local bless = gate "bless" {
  description = "good enough on its own, and no worse than production",
  metrics = evaluate,
  model = "churn",
  thresholds = { accuracy = { min = 0.80 }, log_loss = { max = 0.45 } },
  change = { accuracy = { min = -0.01 } },
  predicate = "m.evaluate.recall_macro >= 0.6",
}

local sign_off = approval "sign-off" {
  after = bless,
  message = "Deploy churn model from run ${run.id}?",
  timeout = "72h",
}

task "deploy" {
  step = "deploy",
  after = sign_off,
  with = { model = train.outputs.model, name = "churn", alias = "production" },
}
