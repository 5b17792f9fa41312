-- drift_monitor.lua — every 30 minutes, score the latest batch with the production model and
-- compare its inputs with the training data. drift.detect emits a "drift" signal that the churn
-- pipeline (churn.lua) listens to. A "new-batch" signal from the ingestion system also starts a run.
-- A sketch to adapt: it needs the batches (params.batch, params.reference), a churn model in the
-- registry and a GPU worker for the scoring.

pipeline "churn-drift" {
  description = "Score new customers and watch the churn model's inputs for drift",
  params = {
    batch = param.string("examples/data/churn-latest.csv"),
    reference = param.string("examples/data/churn.csv"),
    psi_threshold = param.number(0.2),
  },
  schedule = "*/30 * * * *",
  triggers = {
    on_signal "new-batch" {
      subject = "dataset:churn",
      cooldown = "10m",
      dedup_key = "${signal.kind}:${signal.id}",
      params = { batch = "${signal.subject}" },
      max_active_runs = 2,
    },
  },
  max_active_runs = 2,
}

local batch = task "load-batch" {
  step = "ingest.csv",
  with = { source = params.batch },
  timeout = "5m",
}

task "score" {
  step = "infer.batch",
  with = { data = batch.outputs.dataset, model = model("churn") },
  resources = { queue = "gpu", gpu = 1, memory = "4GiB" },
  timeout = "15m",
}

local reference = task "load-reference" {
  step = "ingest.csv",
  with = { source = params.reference },
  timeout = "5m",
}

task "detect-drift" {
  step = "drift.detect",
  with = {
    current = batch.outputs.dataset,
    reference = reference.outputs.dataset,
    method = "psi",
    threshold = params.psi_threshold,
    signal = { kind = "drift", subject = "dataset:churn" },
  },
  retries = { max = 2, backoff = "10s" },
  timeout = "10m",
}
