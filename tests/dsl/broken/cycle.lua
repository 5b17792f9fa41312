pipeline "cycle" {}

task "prepare" { step = "noop", after = "publish" }
task "train" { step = "noop", after = "prepare" }
task "publish" { step = "noop", after = "train" }
task "unrelated" { step = "noop" }
