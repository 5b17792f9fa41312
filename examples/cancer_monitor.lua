-- cancer_monitor.lua — every 30 minutes, compare the latest tumour measurements with the data
-- the cancer model in production was trained on (found through the registry's lineage), column
-- by column with Evidently's methods. When half the columns or more have drifted, drift.detect
-- emits a "drift" signal for model:cancer, and the trigger rule in cancer.lua starts one
-- retraining run: train, evaluate, bless against production, deploy if better.
--
--   weir trigger cancer-monitor -p current=batch.csv   # a batch in the training data's layout

pipeline "cancer-monitor" {
  description = "Watch the cancer model's inputs for drift",
  params = {
    current = param.string("/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv",
                           "the latest batch: 30 measurements and the diagnosis, as in the training data"),
  },
  schedule = "*/30 * * * *",
}

-- the columns as cancer.lua names them, so that the batch lines up with the training data
local columns = {}
for _, f in ipairs({ "radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
                     "concave_points", "symmetry", "fractal_dimension" }) do
  columns[#columns + 1] = "mean_" .. f
end
for _, prefix in ipairs({ "se_", "worst_" }) do
  for i = 1, 10 do columns[#columns + 1] = prefix .. columns[i]:sub(6) end
end
columns[#columns + 1] = "target"

local current = task "load-current" {
  step = "ingest.csv",
  with = { source = params.current, skip_rows = 1, header = "no", names = columns, label = "target" },
  timeout = "5m",
}

task "detect-drift" {
  step = "drift.detect",
  -- no reference: the dataset the production model was trained on, training_data("cancer");
  -- the signal names the batch, and the retraining run trains on it
  with = { current = current.outputs.dataset, model = "cancer", signal = { attributes = { data = params.current } } },
  timeout = "10m",
}
