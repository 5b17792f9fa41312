pipeline "syntax" {}

task "a" {
  step = "noop"
  after = "b",
}
