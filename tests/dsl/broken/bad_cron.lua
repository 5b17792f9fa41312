pipeline "nightly" {
  schedule = "0 24 * * *",
}

task "t" { step = "noop" }
