pipeline "gates" {}

local eval = task "evaluate" { step = "evaluate" }
gate "empty" { after = eval }
gate "bad-predicate" { metrics = eval, predicate = "m.evaluate.accuracy >" }
gate "no-model" { metrics = eval, change = { accuracy = { min = 0 } } }
