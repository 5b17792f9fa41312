pipeline "typo" {}

local ingest = task "ingest" { step = "ingest.csv", with = { path = "data.csv" } }
task "train" { step = "train.logreg", after = "ingst" }
task "report" { step = "noop", after = { ingest, "evalute" } }
