-- hello.lua — the main job's pipeline: plain shell steps that make a small dataset, profile it,
-- train three toy models in parallel (a learning-rate sweep), keep the best one, check it with
-- a gate, and publish it. Files flow between tasks as artifacts; steps report metrics as JSON.
-- Runs on any worker with /bin/sh and awk: `weir up`, then `weir apply examples/hello.lua`
-- and `weir trigger hello --wait`.

pipeline "hello" {
  description = "A toy training pipeline of shell steps, end to end",
  params = {
    rows = param.int(2000, "rows in the generated dataset"),
    max_loss = param.number(0.5, "the gate's bound on the best model's loss"),
  },
  defaults = { timeout = "2m", retries = { max = 1, backoff = "1s" } },
}

local make = task "make-data" {
  description = "generate a dataset: x, and y = 3x + 1 with noise",
  exec = { "sh", "-c", [[
    awk -v n="$WEIR_PARAM_ROWS" 'BEGIN { srand(7); print "x,y";
      for (i = 0; i < n; i++) { x = rand(); printf "%.5f,%.5f\n", x, 3 * x + 1 + (rand() - 0.5) * 0.2 } }' \
      > "$WEIR_OUTPUT_DIR/data.csv"
    echo "wrote $WEIR_PARAM_ROWS rows"
  ]] },
  outputs = { "data" },
}

task "profile" {
  description = "count rows and average y; report them as metrics",
  exec = { "sh", "-c", [[
    awk -F, 'NR > 1 { n++; s += $2 } END { printf "{\"rows\": %d, \"mean_y\": %.4f}\n", n, s / n }' "$1" \
      > "$WEIR_METRICS_FILE"
    cat "$WEIR_METRICS_FILE"
  ]], "profile", make.outputs.data },
}

local sweep = foreach("train", { 0.05, 0.2, 0.8 }, function(lr)
  return {
    description = "fit y = a x + b by gradient descent",
    exec = { "sh", "-c", [[
      awk -F, -v lr="$1" 'NR > 1 { x[n] = $1; y[n] = $2; n++ }
        END { a = 0; b = 0
              for (e = 0; e < 200; e++) { ga = 0; gb = 0
                for (i = 0; i < n; i++) { d = a * x[i] + b - y[i]; ga += d * x[i]; gb += d }
                a -= lr * ga / n; b -= lr * gb / n }
              l = 0; for (i = 0; i < n; i++) { d = a * x[i] + b - y[i]; l += d * d }
              printf "%.6f %.4f %.4f %s\n", l / n, a, b, lr > ENVIRON["WEIR_OUTPUT_DIR"] "/model.txt"
              printf "{\"loss\": %.6f, \"lr\": %s}\n", l / n, lr > ENVIRON["WEIR_METRICS_FILE"]
              printf "lr %s: loss %.6f\n", lr, l / n }' "$2"
    ]], "train", tostring(lr), make.outputs.data },
    outputs = { "model" },
  }
end)

local pick = task "pick-best" {
  description = "keep the model with the lowest loss",
  after = sweep,
  exec = { "sh", "-c", [[
    cat "$@" | sort -n | head -n 1 > "$WEIR_OUTPUT_DIR/model.txt"
    read loss a b lr < "$WEIR_OUTPUT_DIR/model.txt"
    echo "{\"loss\": $loss, \"a\": $a, \"b\": $b, \"lr\": $lr, \"max_loss\": $WEIR_PARAM_MAX_LOSS}" > "$WEIR_METRICS_FILE"
    echo "best: lr $lr, loss $loss, y = $a x + $b"
  ]], "pick", sweep.outputs.model[1], sweep.outputs.model[2], sweep.outputs.model[3] },
  outputs = { "model" },
}

local check = gate "good-enough" {
  description = "bless the best model only if its loss is at most params.max_loss",
  metrics = pick,
  predicate = "m['pick-best'].loss <= m['pick-best'].max_loss",
}

task "publish" {
  after = check,
  exec = { "sh", "-c", "echo published: && cat \"$1\"", "publish", pick.outputs.model },
}
