pipeline "types" {
  max_active_runs = "2",
  params = { epochs = param.int(2.5) },
}

task "train" {
  step = "train.mlp",
  priority = "high",
  retries = { max = "three" },
  resources = { gpu = -1, memory = 4096 },
  trigger_rule = "all_succeeded",
}
