-- Every error is reported, in line order, not just the first.
pipeline "many" {
  params = { lr = 0.1 },
  schedule = "@every-day",
  retries = 3,
}

task "Ingest" { exec = { "ingest" } }
task "train" { step = "train.mlp", with = { lr = params.rl }, after = "ingest", timeout = "1 hour" }
task "train" { step = "noop" }
task "pick" { step = "noop", after = "train", trigger_rule = "any" }
task "pending"
