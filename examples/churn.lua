-- churn.lua — retrain the churn model every night and when its input drifts; bless the new
-- model against production (TFX Evaluator style) and wait for a person before deploying it.

pipeline "churn" {
  description = "Retrain the churn classifier on the latest customer snapshot",
  params = {
    data = param.string("examples/data/churn.csv", "customer snapshot, one row per customer"),
    lr = param.number(0.1, "learning rate"),
    epochs = param.int(20),
    l2 = 0.001,
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
  with = { path = params.data, label = "churned" },
}

local validate = task "validate" {
  step = "validate",
  with = { data = ingest.outputs.dataset, max_missing = 0.05 },
}

local train = task "train" {
  step = "train.logreg",
  after = validate,
  with = { data = ingest.outputs.dataset, lr = params.lr, epochs = params.epochs, l2 = params.l2 },
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
  predicate = "m.evaluate.recall >= 0.6",
}

local sign_off = approval "sign-off" {
  after = bless,
  message = "Deploy churn model from run ${run.id}?",
  timeout = "72h",
}

task "deploy" {
  step = "deploy",
  after = sign_off,
  with = { model = train.outputs.model, registry = "churn", alias = "production" },
}
