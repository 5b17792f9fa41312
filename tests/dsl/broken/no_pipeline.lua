task "orphan" { step = "noop" }
