/* ml.c — weir's ML plugin (weir-ml.so): its step table and settings schemas. The steps
 * themselves are one file each. */
#include "plugins/ml/ml.h"

static const weir_plugin_step_t steps[] = {
    {
        .name = "ingest.csv",
        .summary = "read a CSV (path, http(s) URL or .gz) into a dataset with a train/test split",
        .outputs = "dataset",
        .run = ml_ingest_csv,
        .settings_schema =
            "{\"source\": {\"type\": \"string\", \"required\": true,"
            "  \"doc\": \"a local path or an http(s) URL; gzip data is inflated\"},"
            " \"label\": {\"type\": \"string\", \"doc\": \"the label column: the split is stratified by it\"},"
            " \"test_fraction\": {\"type\": \"number\", \"default\": 0.25, \"doc\": \"share of each class held out\"},"
            " \"seed\": {\"type\": \"integer\", \"default\": 0, \"doc\": \"the split's seed\"},"
            " \"header\": {\"type\": \"string\", \"default\": \"auto\", \"doc\": \"auto, yes or no\"},"
            " \"delimiter\": {\"type\": \"string\", \"default\": \",\", \"doc\": \"one character\"},"
            " \"missing\": {\"type\": \"list\", \"doc\": \"strings that mean a missing value"
            " (default: empty, NA, N/A, NaN, null, ?)\"},"
            " \"skip_rows\": {\"type\": \"integer\", \"default\": 0, \"doc\": \"lines dropped before the header\"},"
            " \"names\": {\"type\": \"list\", \"doc\": \"column names, one per column (replace the header's or c0, c1, ...)\"},"
            " \"max_bytes\": {\"type\": \"any\", \"default\": \"1GiB\", \"doc\": \"cap on the download and the"
            " uncompressed text\"},"
            " \"timeout\": {\"type\": \"any\", \"default\": \"60s\", \"doc\": \"cap on a download\"}}",
    },
    {
        .name = "ingest.sql",
        .summary = "read the rows of a PostgreSQL query into a dataset with a train/test split",
        .outputs = "dataset",
        .run = ml_ingest_sql,
        .settings_schema =
            "{\"query\": {\"type\": \"string\", \"required\": true, \"doc\": \"a SELECT; it runs read-only\"},"
            " \"conninfo\": {\"type\": \"string\", \"default\": \"\", \"doc\": \"libpq connection string, e.g."
            " service=warehouse (default: the worker's PG* environment)\"},"
            " \"label\": {\"type\": \"string\", \"doc\": \"the label column: the split is stratified by it\"},"
            " \"test_fraction\": {\"type\": \"number\", \"default\": 0.25},"
            " \"seed\": {\"type\": \"integer\", \"default\": 0},"
            " \"max_rows\": {\"type\": \"integer\", \"default\": 10000000},"
            " \"timeout\": {\"type\": \"any\", \"default\": \"5m\", \"doc\": \"the query's statement_timeout\"}}",
    },
    {
        .name = "validate",
        .summary = "statistics per column; fail on anomalies against a schema or a reference dataset",
        .outputs = "report",
        .run = ml_validate,
        .settings_schema =
            "{\"data\": {\"type\": \"string\", \"required\": true, \"doc\": \"the dataset (ingest's output)\"},"
            " \"schema\": {\"type\": \"map\", \"doc\": \"columns = { NAME = { type, min, max, max_missing,"
            " categories } }, allow_new_columns\"},"
            " \"reference\": {\"type\": \"string\", \"doc\": \"a dataset to infer the schema from\"},"
            " \"fail_on_anomalies\": {\"type\": \"boolean\", \"default\": true},"
            " \"max_bytes\": {\"type\": \"any\", \"default\": \"1GiB\", \"doc\": \"cap on the dataset file\"}}",
    },
    {
        .name = "deploy",
        .summary = "copy a model into a serving directory and notify a URL; the scheduler registers the version "
                   "and moves the alias when the gates blessed it",
        .outputs = "",
        .run = ml_deploy,
        .settings_schema =
            "{\"model\": {\"type\": \"string\", \"required\": true, \"doc\": \"the model (a trainer's output)\"},"
            " \"name\": {\"type\": \"string\", \"required\": true, \"doc\": \"the registry model name\"},"
            " \"alias\": {\"type\": \"string\", \"default\": \"production\", \"doc\": \"the alias moved when blessed\"},"
            " \"metrics_from\": {\"type\": \"string\", \"doc\": \"the task whose metrics go with the version"
            " (default: the nearest evaluate upstream)\"},"
            " \"serving_dir\": {\"type\": \"string\", \"doc\": \"copy to SERVING_DIR/NAME/model.safetensors\"},"
            " \"notify_url\": {\"type\": \"string\", \"doc\": \"POSTed the model's name, alias, sha256 and path\"},"
            " \"timeout\": {\"type\": \"any\", \"default\": \"10s\", \"doc\": \"cap on the notification\"}}",
    },
    {
        .name = "train.logreg",
        .summary = "train a logistic regression (binary or multinomial, L2, L-BFGS)",
        .outputs = "model",
        .run = ml_train_logreg,
        .settings_schema =
            "{\"data\": {\"type\": \"string\", \"required\": true, \"doc\": \"the dataset (ingest's output)\"},"
            " \"label\": {\"type\": \"string\", \"doc\": \"the label column (default: the dataset's)\"},"
            " \"features\": {\"type\": \"list\", \"doc\": \"columns to use (default: all but the label)\"},"
            " \"C\": {\"type\": \"number\", \"default\": 1.0, \"doc\": \"inverse L2 strength, as scikit-learn\"},"
            " \"max_iter\": {\"type\": \"integer\", \"default\": 100},"
            " \"tol\": {\"type\": \"number\", \"default\": 0.0001},"
            " \"max_bytes\": {\"type\": \"any\", \"default\": \"1GiB\", \"doc\": \"cap on the dataset file\"}}",
    },
    {
        .name = "train.mlp",
        .summary = "train a multi-layer perceptron (ReLU, Adam, early stopping) on the CPU or a GPU",
        .outputs = "model",
        .run = ml_train_mlp,
        .settings_schema =
            "{\"data\": {\"type\": \"string\", \"required\": true, \"doc\": \"the dataset (ingest's output)\"},"
            " \"label\": {\"type\": \"string\", \"doc\": \"the label column (default: the dataset's)\"},"
            " \"features\": {\"type\": \"list\", \"doc\": \"columns to use (default: all but the label)\"},"
            " \"hidden\": {\"type\": \"list\", \"default\": [64], \"doc\": \"units per hidden layer\"},"
            " \"lr\": {\"type\": \"number\", \"default\": 0.001, \"doc\": \"Adam's learning rate\"},"
            " \"alpha\": {\"type\": \"number\", \"default\": 0.0001, \"doc\": \"L2 penalty\"},"
            " \"batch_size\": {\"type\": \"integer\", \"default\": 200},"
            " \"max_epochs\": {\"type\": \"integer\", \"default\": 200},"
            " \"early_stopping\": {\"type\": \"boolean\", \"default\": false, \"doc\": \"stop on a validation"
            " split's accuracy, keeping the best epoch (default: stop when the training loss stops improving)\"},"
            " \"validation_fraction\": {\"type\": \"number\", \"doc\": \"with early_stopping (default 0.1)\"},"
            " \"patience\": {\"type\": \"integer\", \"doc\": \"epochs without progress before stopping (default 10)\"},"
            " \"seed\": {\"type\": \"integer\", \"default\": 0},"
            " \"device\": {\"type\": \"string\", \"default\": \"auto\", \"doc\": \"auto (the GPU when the task has one), cpu or cuda\"},"
            " \"max_bytes\": {\"type\": \"any\", \"default\": \"1GiB\", \"doc\": \"cap on the dataset file\"}}",
    },
    {
        .name = "evaluate",
        .summary = "score a model on a dataset's held-out rows: accuracy, precision, recall, F1, ROC AUC, log loss",
        .outputs = "report",
        .run = ml_evaluate,
        .settings_schema =
            "{\"model\": {\"type\": \"string\", \"required\": true, \"doc\": \"the model (a trainer's output)\"},"
            " \"data\": {\"type\": \"string\", \"required\": true, \"doc\": \"the dataset\"},"
            " \"split\": {\"type\": \"string\", \"default\": \"test\", \"doc\": \"test, train or all\"},"
            " \"max_bytes\": {\"type\": \"any\", \"default\": \"1GiB\", \"doc\": \"cap on each file\"}}",
    },
    {
        .name = "infer.batch",
        .summary = "predict every row of a dataset in batches, on the CPU or a GPU; CSV and safetensors out",
        .outputs = "predictions,scores",
        .run = ml_infer_batch,
        .settings_schema =
            "{\"model\": {\"type\": \"string\", \"required\": true, \"doc\": \"the model\"},"
            " \"data\": {\"type\": \"string\", \"required\": true, \"doc\": \"the dataset\"},"
            " \"split\": {\"type\": \"string\", \"default\": \"all\", \"doc\": \"test, train or all\"},"
            " \"batch_size\": {\"type\": \"integer\", \"default\": 65536},"
            " \"max_bytes\": {\"type\": \"any\", \"default\": \"1GiB\", \"doc\": \"cap on each file\"}}",
    },
    {
        .name = "drift.detect",
        .summary = "compare a dataset with a reference column by column (Evidently's methods); a drift signal "
                   "when it drifts",
        .outputs = "report",
        .run = ml_drift_detect,
        .settings_schema =
            "{\"current\": {\"type\": \"string\", \"required\": true, \"doc\": \"the new data (a dataset)\"},"
            " \"reference\": {\"type\": \"string\", \"required\": true, \"doc\": \"the data to compare with;"
            " with model = NAME the DSL fills in training_data(NAME), the production version's training data\"},"
            " \"model\": {\"type\": \"string\", \"doc\": \"the model it watches: the signal's subject is model:NAME\"},"
            " \"method\": {\"type\": \"string\", \"default\": \"auto\", \"doc\": \"auto, ks, chisquare, z,"
            " wasserstein, jensenshannon or psi for every column\"},"
            " \"threshold\": {\"type\": \"number\", \"doc\": \"p-value (tests) or distance (the others)\"},"
            " \"columns\": {\"type\": \"map\", \"doc\": \"per column: { method = ..., threshold = ... }\"},"
            " \"skip\": {\"type\": \"list\", \"doc\": \"columns left out (default: the label)\"},"
            " \"drift_share\": {\"type\": \"number\", \"default\": 0.5, \"doc\": \"the share of drifted columns"
            " that makes the dataset drift\"},"
            " \"signal\": {\"type\": \"map\", \"doc\": \"{ kind = \\\"drift\\\", subject = ..., attributes = { ... } }"
            " of the signal it emits (attributes are added to the drifted columns' list)\"},"
            " \"fail_on_drift\": {\"type\": \"boolean\", \"default\": false},"
            " \"max_bytes\": {\"type\": \"any\", \"default\": \"1GiB\", \"doc\": \"cap on each file\"}}",
    },
};

static const weir_plugin_t plugin = {
    .size = sizeof(weir_plugin_t),
    .abi_version = WEIR_PLUGIN_ABI_VERSION,
    .name = "ml",
    .version = "0.1.0",
    .steps = steps,
    .nsteps = sizeof steps / sizeof steps[0],
    .step_size = sizeof(weir_plugin_step_t),
};

WEIR_PLUGIN_DEFINE(plugin)
