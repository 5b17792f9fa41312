-- a NUL byte would cut a name short in C, and PostgreSQL refuses it in jsonb
pipeline "nul" { description = "before\0after" }

task "a" { step = "noop\0evil" }
task "b" { exec = { "echo", "x\0y" } }
