-- data_quality.lua — fetch a daily export with plain commands, check it, and publish it; flaky
-- downloads retry with exponential backoff and jitter, every step has a timeout.
-- A sketch to adapt: it needs an export server (params.source) and workers on the "io" queue.

pipeline "daily-export" {
  description = "Download, check and publish the daily transactions export",
  params = {
    source = param.string("https://exports.example.com/transactions"),
    strict = param.bool(true),
  },
  schedule = { cron = "15 1 * * mon-sat", catchup = true },
  defaults = { timeout = "20m", resources = { queue = "io" } },
}

local download = task "download" {
  exec = { "curl", "-fsS", "--retry", "0", "-o", "export.csv.gz", "${params.source}/${run.date}.csv.gz" },
  outputs = { "archive" },
  retries = { max = 5, backoff = "30s", factor = 2, max_backoff = "15m", jitter = true },
  timeout = "10m",
}

local unpack = task "unpack" {
  exec = { "sh", "-c", "gunzip -c \"$ARCHIVE\" > export.csv && sha256sum export.csv > export.csv.sha256" },
  env = { ARCHIVE = download.outputs.archive },
  outputs = { "csv", "checksum" },
}

local load = task "load" {
  step = "ingest.csv",
  with = { source = unpack.outputs.csv },
}

local check = task "check" {
  step = "validate",
  with = {
    data = load.outputs.dataset,
    schema = { columns = { amount = { type = "numeric", min = 0, max_missing = 0.01 }, currency = { type = "categorical",
               categories = { "EUR", "USD", "GBP" } } }, allow_new_columns = true },
    fail_on_anomalies = params.strict,
  },
}

local profile = task "profile" {
  exec = { "python3", "examples/scripts/profile.py", unpack.outputs.csv },
  outputs = { "report" },
  resources = { cpu = 2, memory = "1GiB" },
}

task "publish" {
  exec = { "python3", "examples/scripts/publish.py", "--data", unpack.outputs.csv, "--checksum",
           unpack.outputs.checksum, "--report", profile.outputs.report },
  after = check,
  retries = 3,
  priority = 5,
}

task "alert" {
  exec = "echo \"daily export for ${run.date} failed\" | logger -t weir",
  after = { download, unpack, check },
  trigger_rule = "one_failed",
  retries = 0,
}
