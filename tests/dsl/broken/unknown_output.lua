pipeline "outputs" {}

local train = task "train" { step = "train.logreg" }
local prep = task "prep" { exec = { "python3", "prep.py" } }
task "evaluate" { step = "evaluate", with = { model = train.outputs.modle, data = prep.outputs.data } }
