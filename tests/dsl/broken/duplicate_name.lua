pipeline "dup" {}

task "train" { step = "train.logreg" }
task "train" { step = "train.mlp" }
foreach("train", { 1, 2 }, function(i) return { step = "noop" } end)
