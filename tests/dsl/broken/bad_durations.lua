pipeline "durations" {
  triggers = { on_signal "drift" { cooldown = "6 hours" } },
}

task "download" { exec = { "curl", "-O", "x" }, timeout = "30 min" }
task "wait" { step = "noop", retries = { max = 3, backoff = "10s", max_backoff = "5s" } }
approval "ok" { timeout = "3d12" }
