-- sweep.lua — a hyper-parameter sweep: one GPU training task per combination (static fan-out),
-- then a fan-in that picks the best model even if some trainings failed.
-- A sketch to adapt: it needs a customer snapshot (params.data, with a "churned" column),
-- workers with GPUs (weir worker --label queue=gpu --label gpu=1) and a pick_best.py of yours.

pipeline "mlp-sweep" {
  description = "Grid search for the churn MLP",
  params = { data = param.string("examples/data/churn.csv"), epochs = param.int(30) },
  max_active_runs = 1,
}

local ingest = task "ingest" {
  step = "ingest.csv",
  with = { source = params.data, label = "churned" },
}

local grid = {}
for _, lr in ipairs({ 0.001, 0.01 }) do
  for _, hidden in ipairs({ 32, 128 }) do
    grid[#grid + 1] = { lr = lr, hidden = { hidden, hidden } }
  end
end

local sweep = foreach("train", grid, function(hp, i)
  return {
    step = "train.mlp",
    with = { data = ingest.outputs.dataset, lr = hp.lr, hidden = hp.hidden, epochs = params.epochs, seed = i },
    resources = { queue = "gpu", gpu = 1, memory = "8GiB" },
    retries = { max = 3, backoff = "1m", max_backoff = "10m" },
    timeout = "2h",
  }
end)

task "pick-best" {
  description = "compare the finished trainings and keep the best model",
  exec = { "python3", "examples/scripts/pick_best.py", "--out", "best.safetensors" },
  with = { models = sweep.outputs.model },
  outputs = { "model" },
  after = sweep,
  trigger_rule = "all_done",
}

task "report-failures" {
  exec = "echo 'some sweep trainings failed in run ${run.id}' >&2",
  after = sweep,
  trigger_rule = "one_failed",
}
