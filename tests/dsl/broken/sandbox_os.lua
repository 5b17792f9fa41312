pipeline "escape" {}

task "t" { step = "noop", with = { home = os.getenv("HOME") } }
