-- cancer.lua — the whole ML chain on a real dataset, with no Python anywhere in the path:
-- ingest the Wisconsin breast cancer data (569 tumours, 30 measurements, scikit-learn's copy
-- from Debian's python3-sklearn), validate it against a schema, train a logistic regression,
-- evaluate it on the held-out quarter, bless it against the model in production (TFX
-- Evaluator style), deploy it (registry version + production alias + serving directory) and
-- score every row with it.
--
--   weir trigger cancer --wait                  # a model in production
--   weir trigger cancer --param c=0.00001 --wait # a deliberately worse one: the gate rejects it
--   weir models show cancer                      # versions, metrics, the alias and its history
--   weir trigger cancer-monitor -p current=drifted.csv   # drift: a signal starts a retraining run

pipeline "cancer" {
  description = "Breast cancer classifier: ingest, validate, train, evaluate, bless, deploy, score",
  params = {
    data = param.string("/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv",
                        "the CSV: 30 features, then the target (0 malignant, 1 benign)"),
    c = param.number(1.0, "inverse L2 strength of the logistic regression (C)"),
    seed = param.int(0, "train/test split seed"),
    serving = param.string("", "a serving directory to copy the model into (none when empty)"),
    drift = param.number(0, "the share of drifted columns, when a drift signal started the run"),
  },
  defaults = { retries = { max = 1, backoff = "2s" }, timeout = "10m" },
  -- retrain when the monitor (cancer_monitor.lua) sees the inputs drift, on the batch that
  -- drifted (the default data when the signal names none); one run per drift episode (the key
  -- is the subject), and not again within the hour
  triggers = { on_signal "drift" { subject = "model:cancer", threshold = 0.5, cooldown = "1h",
                                  params = { drift = "${signal.value}", data = "${signal.attributes.data}" } } },
}

local features = {}
for _, f in ipairs({ "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
                     "concave_points", "symmetry", "fractal_dimension" }) do
  features[#features + 1] = "mean_" .. f
end
for _, prefix in ipairs({ "se_", "worst_" }) do
  for i = 1, 10 do features[#features + 1] = prefix .. features[i]:sub(6) end
end
local columns = { table.unpack(features) }
columns[#columns + 1] = "target"

local ingest = task "ingest" {
  step = "ingest.csv",
  -- the file's first line is "569,30,malignant,benign", not a header
  with = { source = params.data, skip_rows = 1, header = "no", names = columns, label = "target",
           test_fraction = 0.25, seed = params.seed },
}

local validate = task "validate" {
  step = "validate",
  with = {
    data = ingest.outputs.dataset,
    schema = {
      allow_new_columns = true,
      columns = {
        target = { type = "numeric", min = 0, max = 1 },
        mean_radius = { type = "numeric", min = 5, max = 30 },
        mean_area = { type = "numeric", min = 100, max = 3000 },
        worst_concave_points = { type = "numeric", min = 0, max = 1 },
      },
    },
  },
}

local train = task "train" {
  step = "train.logreg",
  after = validate,
  with = { data = ingest.outputs.dataset, C = params.c, max_iter = 200 },
}

local evaluate = task "evaluate" {
  step = "evaluate",
  with = { model = train.outputs.model, data = ingest.outputs.dataset },
}

local bless = gate "bless" {
  description = "accurate on its own, and no worse than the model in production",
  metrics = evaluate,
  model = "cancer",
  thresholds = { accuracy = { min = 0.9 }, roc_auc = { min = 0.95 } },
  change = { accuracy = { min = 0 } },
}

local deploy = task "deploy" {
  step = "deploy",
  after = bless,
  with = { model = train.outputs.model, name = "cancer", alias = "production", serving_dir = params.serving },
}

task "score" {
  step = "infer.batch",
  after = deploy,
  with = { model = train.outputs.model, data = ingest.outputs.dataset },
}
