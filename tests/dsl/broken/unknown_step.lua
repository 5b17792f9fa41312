pipeline "steps" {}

task "train" { step = "train.logistic" }
task "shell" { step = "bash", with = { script = "run.sh" } }
