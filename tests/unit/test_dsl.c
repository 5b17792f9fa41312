/* test_dsl.c — the pipeline DSL: plans, versions, every kind of validation error with its exact
 * message, the sandbox refusing each way out, and the limits ending runaway scripts quickly. */
#include "unit.h"
#include "common/error.h"
#include "common/sha256.h"
#include "common/util.h"
#include "dsl/canon.h"
#include "dsl/dsl.h"

#include <pthread.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

static weir_dsl_result_t R;

static int compile_with(const char *src, size_t mem_max, uint64_t instr_max) {
    weir_dsl_limits_t lim = {mem_max, instr_max};
    weir_dsl_result_free(&R);
    return weir_dsl_compile("p.lua", src, strlen(src), &lim, &R);
}

static int compile(const char *src) { return compile_with(src, 0, 0); }

/* The errors of a script that must not compile. */
static const char *errors(const char *src) {
    int rc = compile(src);
    if (rc != WEIR_ECOMPILE) {
        fprintf(stderr, "    expected WEIR_ECOMPILE, got %d for:\n%s\n", rc, src);
        exit(1);
    }
    CHECK(R.plan == NULL && R.plan_json == NULL && R.version[0] == '\0');
    return R.errors;
}

static const json_t *task_of(const char *name) {
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(R.plan, "tasks"), i, t) if (!strcmp(json_string_value(json_object_get(t, "name")), name)) return t;
    return NULL;
}

/* The canonical text of one part of the plan, for compact comparisons. */
static const char *text_of(const json_t *v) {
    static char out[4096];
    weir_buf_t b;
    weir_buf_init(&b, sizeof out - 1);
    CHECK(weir_dsl_canonical(v, 0, &b) == 0);
    memcpy(out, b.data, b.len + 1);
    weir_buf_free(&b);
    return out;
}

#define HEAD "pipeline \"p\" { params = { lr = param.number(0.1), data = \"d.csv\" } }\n"

/* ---- plans ------------------------------------------------------------------------------------ */

TEST(minimal_plan_is_canonical) {
    CHECK_EQ(compile("pipeline \"tiny\" {}\ntask \"hello\" { exec = { \"echo\", \"hi\" } }\n"), 0);
    CHECK_STR(R.plan_json,
              "{\"description\":\"\",\"format\":1,\"max_active_runs\":1,\"name\":\"tiny\",\"params\":{},\"tasks\":["
              "{\"command\":[\"echo\",\"hi\"],\"description\":\"\",\"env\":{},\"kind\":\"task\",\"name\":\"hello\","
              "\"outputs\":[],\"priority\":0,\"resources\":{\"cpu\":1,\"gpu\":0,\"memory_bytes\":0,\"queue\":"
              "\"default\"},\"retries\":{\"backoff_ms\":10000,\"factor\":2.0,\"jitter\":true,\"max\":0,"
              "\"max_backoff_ms\":600000},\"step\":\"exec\",\"timeout_ms\":0,\"trigger_rule\":\"all_success\","
              "\"upstream\":[],\"with\":{}}],\"triggers\":[]}");
    CHECK_EQ(R.plan_len, strlen(R.plan_json));
    CHECK_EQ(strlen(R.version), 64);
    CHECK_EQ(R.nerrors, 0);
    CHECK(R.errors == NULL);
}

TEST(pipeline_fields) {
    CHECK_EQ(compile("pipeline \"churn\" {\n"
                     "  description = \"Retrain\",\n"
                     "  params = { lr = param.number(1, \"learning rate\"), epochs = param.int(10), full = false,\n"
                     "             table = param.string(\"t\") },\n"
                     "  schedule = { cron = \"0  3 * * MON-FRI\", timezone = \"Europe/Paris\", catchup = true },\n"
                     "  triggers = { on_signal \"drift\" { subject = \"model:churn\", threshold = 0.3, cooldown = \"6h\",\n"
                     "               params = { full = true, table = \"${signal.subject}\" } } },\n"
                     "  max_active_runs = 2,\n"
                     "}\n"
                     "task \"t\" { step = \"noop\" }\n"),
             0);
    CHECK_STR(text_of(json_object_get(R.plan, "params")),
              "{\"epochs\":{\"default\":10,\"description\":\"\",\"required\":false,\"type\":\"int\"},"
              "\"full\":{\"default\":false,\"description\":\"\",\"required\":false,\"type\":\"bool\"},"
              "\"lr\":{\"default\":1.0,\"description\":\"learning rate\",\"required\":false,\"type\":\"number\"},"
              "\"table\":{\"default\":\"t\",\"description\":\"\",\"required\":false,\"type\":\"string\"}}");
    CHECK_STR(text_of(json_object_get(R.plan, "schedule")),
              "{\"catchup\":true,\"cron\":\"0 3 * * MON-FRI\",\"timezone\":\"Europe/Paris\"}");
    CHECK_STR(text_of(json_object_get(R.plan, "triggers")),
              "[{\"cooldown_ms\":21600000,\"dedup_key\":\"${signal.kind}:${signal.subject}\",\"max_active_runs\":1,"
              "\"params\":{\"full\":true,\"table\":\"${signal.subject}\"},\"signal\":\"drift\",\"subject\":"
              "\"model:churn\",\"threshold\":0.3}]");
    CHECK_EQ(json_integer_value(json_object_get(R.plan, "max_active_runs")), 2);
    CHECK_STR(json_string_value(json_object_get(R.plan, "description")), "Retrain");
}

TEST(required_parameters) {
    CHECK_EQ(compile("pipeline \"p\" { params = { day = param.string(nil, \"YYYY-MM-DD\") },\n"
                     "  triggers = { on_signal \"batch\" { params = { day = \"${signal.subject}\" } } } }\n"),
             0);
    CHECK_STR(text_of(json_object_get(R.plan, "params")),
              "{\"day\":{\"description\":\"YYYY-MM-DD\",\"required\":true,\"type\":\"string\"}}");
    CHECK_STR(errors("pipeline \"p\" { params = { day = param.string() }, schedule = \"@daily\",\n"
                     "  triggers = { on_signal \"batch\" {} } }\n"),
              "p.lua:1: pipeline \"p\" has a schedule, but parameter \"day\" has no default (scheduled runs pass no parameters)\n"
              "p.lua:2: trigger on_signal \"batch\" must set parameter \"day\", which has no default\n");
}

TEST(task_fields_and_defaults) {
    CHECK_EQ(compile(HEAD "pipeline_defaults = nil\n"
                          "task \"a\" { exec = \"python3 a.py --lr=${params.lr}\", env = { MODE = \"fast\", N = 3 },\n"
                          "  retries = { max = 3, backoff = \"5s\", factor = 3, max_backoff = \"1m\", jitter = false },\n"
                          "  timeout = \"1h30m\", resources = { queue = \"gpu\", gpu = 2, memory = \"4GiB\", cpu = 8 },\n"
                          "  priority = -5, outputs = { \"model\", \"data\" } }\n"),
             0);
    const json_t *a = task_of("a");
    CHECK_STR(text_of(json_object_get(a, "command")), "[\"/bin/sh\",\"-c\",\"python3 a.py --lr=${params.lr}\"]");
    CHECK_STR(text_of(json_object_get(a, "env")), "{\"MODE\":\"fast\",\"N\":\"3\"}");
    CHECK_STR(text_of(json_object_get(a, "retries")),
              "{\"backoff_ms\":5000,\"factor\":3.0,\"jitter\":false,\"max\":3,\"max_backoff_ms\":60000}");
    CHECK_EQ(json_integer_value(json_object_get(a, "timeout_ms")), 5400000);
    CHECK_STR(text_of(json_object_get(a, "resources")),
              "{\"cpu\":8,\"gpu\":2,\"memory_bytes\":4294967296,\"queue\":\"gpu\"}");
    CHECK_EQ(json_integer_value(json_object_get(a, "priority")), -5);
    CHECK_STR(text_of(json_object_get(a, "outputs")), "[\"data\",\"model\"]");
}

TEST(pipeline_defaults_merge_field_by_field) {
    CHECK_EQ(compile("pipeline \"p\" { defaults = { retries = { max = 2, backoff = \"30s\" }, timeout = \"1h\",\n"
                     "  resources = { queue = \"cpu\" }, priority = 7, trigger_rule = \"all_done\" } }\n"
                     "task \"a\" { step = \"noop\", retries = 5, resources = { gpu = 1 } }\n"
                     "task \"b\" { step = \"noop\", timeout = \"5m\", priority = 1, trigger_rule = \"one_failed\" }\n"
                     "gate \"g\" { predicate = \"true\" }\n"),
             0);
    const json_t *a = task_of("a"), *b = task_of("b"), *g = task_of("g");
    CHECK_STR(text_of(json_object_get(a, "retries")),
              "{\"backoff_ms\":30000,\"factor\":2.0,\"jitter\":true,\"max\":5,\"max_backoff_ms\":600000}");
    CHECK_STR(text_of(json_object_get(a, "resources")), "{\"cpu\":1,\"gpu\":1,\"memory_bytes\":0,\"queue\":\"cpu\"}");
    CHECK_EQ(json_integer_value(json_object_get(a, "timeout_ms")), 3600000);
    CHECK_EQ(json_integer_value(json_object_get(a, "priority")), 7);
    CHECK_STR(json_string_value(json_object_get(a, "trigger_rule")), "all_done");
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(b, "retries"), "max")), 2);
    CHECK_EQ(json_integer_value(json_object_get(b, "timeout_ms")), 300000);
    CHECK_EQ(json_integer_value(json_object_get(b, "priority")), 1);
    CHECK_STR(json_string_value(json_object_get(b, "trigger_rule")), "one_failed");
    /* defaults are for tasks; a gate is run by the scheduler and keeps all_success */
    CHECK_STR(json_string_value(json_object_get(g, "trigger_rule")), "all_success");
    CHECK(json_object_get(g, "retries") == NULL);
}

TEST(implied_and_explicit_dependencies) {
    CHECK_EQ(compile(HEAD "local i = task \"ingest\" { exec = { \"x\" }, outputs = { \"dataset\" } }\n"
                          "local v = task \"validate\" { step = \"validate\", with = { data = i.outputs.dataset } }\n"
                          "local t = task \"train\" { step = \"train.mlp\",\n"
                          "  with = { data = i.outputs.dataset, nested = { list = { \"--in=\" .. i.outputs.dataset } } },\n"
                          "  after = { v, \"validate\" } }\n"
                          "task \"report\" { exec = { \"r\", \"${tasks.train.outputs.model}\" } }\n"
                          "task \"notify\" { exec = { \"n\" }, env = { REPORT = \"${tasks.validate.outputs.report}\" } }\n"),
             0);
    CHECK_STR(text_of(json_object_get(task_of("ingest"), "upstream")), "[]");
    CHECK_STR(text_of(json_object_get(task_of("validate"), "upstream")), "[\"ingest\"]");
    CHECK_STR(text_of(json_object_get(task_of("train"), "upstream")), "[\"ingest\",\"validate\"]");
    CHECK_STR(text_of(json_object_get(task_of("report"), "upstream")), "[\"train\"]");
    CHECK_STR(text_of(json_object_get(task_of("notify"), "upstream")), "[\"validate\"]");
    CHECK_STR(text_of(json_object_get(task_of("train"), "with")),
              "{\"data\":\"${tasks.ingest.outputs.dataset}\",\"nested\":{\"list\":[\"--in=${tasks.ingest.outputs."
              "dataset}\"]}}");
    /* tasks are sorted by name in the plan */
    const json_t *tasks = json_object_get(R.plan, "tasks");
    CHECK_STR(json_string_value(json_object_get(json_array_get(tasks, 0), "name")), "ingest");
    CHECK_STR(json_string_value(json_object_get(json_array_get(tasks, 4), "name")), "validate");
}

TEST(fan_out_and_fan_in) {
    CHECK_EQ(compile(HEAD "local i = task \"ingest\" { exec = { \"x\" }, outputs = { \"dataset\" } }\n"
                          "local sweep = foreach(\"sweep\", { 0.01, 0.1, 1 }, function(c, n)\n"
                          "  return { step = \"train.logreg\", with = { C = c, n = n, data = i.outputs.dataset } }\n"
                          "end)\n"
                          "task \"pick\" { step = \"noop\", after = sweep, trigger_rule = \"all_done\",\n"
                          "  with = { models = sweep.outputs.model } }\n"
                          "task \"last\" { step = \"noop\", after = \"sweep\" }\n"),
             0);
    const json_t *s2 = task_of("sweep-2");
    CHECK(s2 != NULL && task_of("sweep-1") && task_of("sweep-3") && !task_of("sweep-4") && !task_of("sweep"));
    CHECK_STR(json_string_value(json_object_get(s2, "group")), "sweep");
    CHECK_STR(text_of(json_object_get(s2, "with")),
              "{\"C\":0.1,\"data\":\"${tasks.ingest.outputs.dataset}\",\"n\":2}");
    CHECK_STR(text_of(json_object_get(s2, "upstream")), "[\"ingest\"]");
    CHECK_STR(text_of(json_object_get(task_of("pick"), "upstream")), "[\"sweep-1\",\"sweep-2\",\"sweep-3\"]");
    CHECK_STR(text_of(json_object_get(json_object_get(task_of("pick"), "with"), "models")),
              "[\"${tasks.sweep-1.outputs.model}\",\"${tasks.sweep-2.outputs.model}\",\"${tasks.sweep-3.outputs.model}\"]");
    CHECK_STR(json_string_value(json_object_get(task_of("pick"), "trigger_rule")), "all_done");
    CHECK_STR(text_of(json_object_get(task_of("last"), "upstream")), "[\"sweep-1\",\"sweep-2\",\"sweep-3\"]");
    CHECK(json_object_get(task_of("pick"), "group") == NULL);
}

TEST(registry_references_and_drift_default_reference) {
    /* model() and training_data() name registry entries the scheduler resolves at claim time;
     * drift.detect watching a model compares with its production training data by default */
    CHECK_EQ(compile(HEAD "local i = task \"ingest\" { exec = { \"x\" }, outputs = { \"dataset\" } }\n"
                          "local shared = { current = i.outputs.dataset, model = \"churn\" }\n"
                          "task \"watch\" { step = \"drift.detect\", with = shared }\n"
                          "task \"again\" { step = \"drift.detect\", with = shared }\n"
                          "task \"staged\" { step = \"drift.detect\", with = { current = i.outputs.dataset,\n"
                          "  model = \"churn\", reference = training_data(\"churn\", \"staging\") } }\n"
                          "task \"named\" { step = \"drift.detect\", with = { current = i.outputs.dataset,\n"
                          "  model = \"${params.data}\" } }\n"
                          "task \"score\" { step = \"infer.batch\", with = { model = model(\"churn\", 3),\n"
                          "  data = training_data(\"churn\", 3) } }\n"),
             0);
    CHECK_STR(text_of(json_object_get(task_of("watch"), "with")),
              "{\"current\":\"${tasks.ingest.outputs.dataset}\",\"model\":\"churn\","
              "\"reference\":\"${training_data.churn.production}\"}");
    CHECK_STR(text_of(json_object_get(task_of("watch"), "models")), "[\"training_data:churn.production\"]");
    /* the shared table was copied, not changed: the second task got its own default */
    CHECK_STR(text_of(json_object_get(task_of("again"), "models")), "[\"training_data:churn.production\"]");
    CHECK_STR(text_of(json_object_get(task_of("staged"), "models")), "[\"training_data:churn.staging\"]");
    /* a model named by a placeholder has no default: the step asks for its reference */
    CHECK(json_object_get(json_object_get(task_of("named"), "with"), "reference") == NULL);
    CHECK(json_object_get(task_of("named"), "models") == NULL);
    CHECK_STR(text_of(json_object_get(task_of("score"), "models")), "[\"churn.3\",\"training_data:churn.3\"]");
    CHECK_STR(errors(HEAD "task \"a\" { step = \"drift.detect\", with = { reference = training_data(\"Churn\") } }\n"),
              "p.lua:2: training_data(NAME[, ALIAS or VERSION]): NAME is a registry model name like \"churn\", not the string "
              "\"Churn\"\n");
    CHECK_STR(errors(HEAD "task \"a\" { step = \"drift.detect\", with = { reference = \"${training_data.churn}\" } }\n"),
              "p.lua:2: task \"a\" has a malformed model reference \"${training_data.churn}\" (write "
              "training_data(\"NAME\"), training_data(\"NAME\", \"ALIAS\") or training_data(\"NAME\", VERSION))\n");
}

TEST(gate_and_approval_plans) {
    CHECK_EQ(compile(HEAD "local e = task \"evaluate\" { step = \"evaluate\" }\n"
                          "local g = gate \"bless\" { metrics = e, model = \"churn\",\n"
                          "  thresholds = { accuracy = { min = 0.9 }, log_loss = { max = 0.4 }, auc = { min = 0, max = 1 } },\n"
                          "  change = { accuracy = { min = 0 } }, predicate = \"m.evaluate.f1 >= 0.8\" }\n"
                          "approval \"sign-off\" { after = g, timeout = \"72h\", message = \"Ship ${params.lr}?\" }\n"
                          "gate \"custom\" { after = g, predicate = \"local f1 = m.evaluate.f1\\nreturn f1 > 0.5\" }\n"),
             0);
    const json_t *g = task_of("bless");
    CHECK_STR(json_string_value(json_object_get(g, "kind")), "gate");
    CHECK_STR(text_of(json_object_get(g, "gate")),
              "{\"baseline\":\"production\",\"change\":{\"accuracy\":{\"min\":0.0}},\"metrics_from\":\"evaluate\","
              "\"model\":\"churn\",\"predicate\":\"return m.evaluate.f1 >= 0.8\",\"thresholds\":{\"accuracy\":"
              "{\"min\":0.9},\"auc\":{\"max\":1.0,\"min\":0.0},\"log_loss\":{\"max\":0.4}}}");
    CHECK_STR(text_of(json_object_get(g, "upstream")), "[\"evaluate\"]");
    const json_t *a = task_of("sign-off");
    CHECK_STR(json_string_value(json_object_get(a, "kind")), "approval");
    CHECK_STR(text_of(json_object_get(a, "approval")), "{\"message\":\"Ship ${params.lr}?\",\"timeout_ms\":259200000}");
    CHECK_STR(text_of(json_object_get(a, "upstream")), "[\"bless\"]");
    CHECK_STR(json_string_value(json_object_get(json_object_get(task_of("custom"), "gate"), "predicate")),
              "local f1 = m.evaluate.f1\nreturn f1 > 0.5");
}

TEST(version_is_stable_and_ignores_comments) {
    const char *a = "pipeline \"p\" { params = { lr = 0.1 } }\n"
                    "local t = task \"t\" { exec = { \"x\", params.lr } }\n"
                    "task \"u\" { step = \"noop\", after = t }\n";
    const char *b = "-- a comment, and different layout\n"
                    "pipeline \"p\" {\n  params = { lr = 0.1 },\n}\n\n"
                    "local t = task \"t\" {\n  exec = { \"x\", params.lr },  -- the command\n}\n"
                    "task \"u\" { after = t, step = \"noop\" }\n";
    const char *c = "pipeline \"p\" { params = { lr = 0.2 } }\n"
                    "local t = task \"t\" { exec = { \"x\", params.lr } }\n"
                    "task \"u\" { step = \"noop\", after = t }\n";
    char v1[65], v2[65];
    CHECK_EQ(compile(a), 0);
    memcpy(v1, R.version, 65);
    char *json1 = strdup(R.plan_json);
    CHECK_EQ(compile(a), 0);
    CHECK_STR(R.version, v1);
    CHECK_STR(R.plan_json, json1);
    CHECK_EQ(compile(b), 0);
    CHECK_STR(R.version, v1);
    memcpy(v2, R.version, 65);
    CHECK_EQ(compile(c), 0);
    CHECK(strcmp(R.version, v1) != 0);
    char hex[65];
    weir_sha256_hex(R.plan_json, R.plan_len, hex);
    CHECK_STR(R.version, hex);
    free(json1);
}

/* Lua seeds its string hashes per state: pairs order differs between compiles, the plan must not. */
TEST(version_does_not_depend_on_hash_order) {
    const char *src = "pipeline \"p\" {}\n"
                      "local names = { alpha = 1, beta = 2, gamma = 3, delta = 4, epsilon = 5, zeta = 6, eta = 7,\n"
                      "  theta = 8, iota = 9, kappa = 10, lambda = 11, mu = 12, nu = 13, xi = 14, omicron = 15 }\n"
                      "local prev\n"
                      "for name, n in pairs(names) do\n"
                      "  prev = task(name) { step = \"noop\", after = prev, with = { n = n } }\n"
                      "end\n"
                      "local sorted = {}\n"
                      "for name in pairs(names) do sorted[#sorted + 1] = name end\n"
                      "table.sort(sorted)\n"
                      "task \"last\" { step = \"noop\", after = sorted[1] }\n";
    CHECK_EQ(compile(src), 0);
    char first[65];
    memcpy(first, R.version, 65);
    for (int i = 0; i < 8; i++) {
        CHECK_EQ(compile(src), 0);
        CHECK_STR(R.version, first);
    }
    CHECK_STR(text_of(json_object_get(task_of("beta"), "upstream")), "[\"alpha\"]");
    CHECK_STR(text_of(json_object_get(task_of("last"), "upstream")), "[\"alpha\"]");
}

TEST(math_random_is_reproducible) {
    const char *src = "pipeline \"p\" {}\n"
                      "foreach(\"search\", { 1, 2, 3 }, function() return { step = \"noop\", with = { lr = math.random() } } end)\n";
    CHECK_EQ(compile(src), 0);
    char first[65];
    memcpy(first, R.version, 65);
    CHECK_EQ(compile(src), 0);
    CHECK_STR(R.version, first);
}

TEST(canonical_numbers_and_strings) {
    json_t *v = json_pack("{s:f, s:f, s:f, s:f, s:I, s:s, s:[]}", "a", 0.1, "b", 100.0, "c", 1e21, "d", -0.0, "e",
                          (json_int_t)-7, "f", "q\"\\\n\x01é", "g");
    weir_buf_t b;
    weir_buf_init(&b, 1024);
    CHECK_EQ(weir_dsl_canonical(v, 0, &b), 0);
    CHECK_STR(b.data, "{\"a\":0.1,\"b\":100.0,\"c\":1e+21,\"d\":-0.0,\"e\":-7,\"f\":\"q\\\"\\\\\\n\\u0001é\",\"g\":[]}");
    weir_buf_reset(&b);
    CHECK_EQ(weir_dsl_canonical(v, 2, &b), 0);
    CHECK_CONTAINS(b.data, "{\n  \"a\": 0.1,\n  \"b\": 100.0,");
    weir_buf_free(&b);
    json_decref(v);
}

static void *compile_thread(void *arg) {
    (void)arg;
    const char *src = "pipeline \"p\" {}\nlocal prev\nfor i = 1, 200 do prev = task(\"t\" .. i) { step = \"noop\", after = prev } end\n";
    char *version = NULL;
    for (int i = 0; i < 10; i++) {
        weir_dsl_result_t r;
        if (weir_dsl_compile("p.lua", src, strlen(src), NULL, &r) == 0) {
            free(version);
            version = strdup(r.version);
        }
        weir_dsl_result_free(&r);
    }
    return version;
}

TEST(compiles_in_parallel_threads) {
    /* The scheduler compiles on libuv's thread pool: nothing may be shared between calls. */
    pthread_t th[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&th[i], NULL, compile_thread, NULL) == 0);
    char *versions[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_join(th[i], (void **)&versions[i]) == 0);
    for (int i = 0; i < 4; i++) {
        CHECK(versions[i] != NULL);
        CHECK_STR(versions[i], versions[0]);
    }
    for (int i = 0; i < 4; i++) free(versions[i]);
}

/* ---- validation: every error, each exactly ---------------------------------------------------- */

TEST(unknown_dependency_suggests) {
    CHECK_STR(errors("pipeline \"p\" {}\n"
                     "task \"ingest\" { step = \"noop\" }\n"
                     "task \"train\" { step = \"noop\", after = \"ingst\" }\n"
                     "task \"other\" { step = \"noop\", after = { \"zzzzzz\" } }\n"),
              "p.lua:3: task \"train\" depends on unknown task \"ingst\" (did you mean \"ingest\"?)\n"
              "p.lua:4: task \"other\" depends on unknown task \"zzzzzz\"\n");
    CHECK_EQ(R.nerrors, 2);
}

TEST(cycle_is_printed) {
    CHECK_STR(errors("pipeline \"p\" {}\n"
                     "task \"a\" { step = \"noop\", after = \"c\" }\n"
                     "task \"b\" { step = \"noop\", after = \"a\" }\n"
                     "task \"c\" { step = \"noop\", after = \"b\" }\n"
                     "task \"d\" { step = \"noop\", after = \"c\" }\n"
                     "task \"self\" { step = \"noop\", after = \"self\" }\n"),
              "p.lua:2: dependency cycle: a -> c -> b -> a (each task depends on the next)\n"
              "p.lua:6: dependency cycle: self -> self (each task depends on the next)\n");
}

TEST(cycle_through_outputs) {
    CHECK_STR(errors("pipeline \"p\" {}\n"
                     "task \"a\" { exec = { \"x\", \"${tasks.b.outputs.o}\" }, outputs = { \"o\" } }\n"
                     "task \"b\" { exec = { \"y\", \"${tasks.a.outputs.o}\" }, outputs = { \"o\" } }\n"),
              "p.lua:2: dependency cycle: a -> b -> a (each task depends on the next)\n");
}

TEST(duplicate_names) {
    CHECK_STR(errors("pipeline \"p\" {}\n"
                     "task \"a\" { step = \"noop\" }\n"
                     "gate \"a\" { predicate = \"true\" }\n"
                     "foreach(\"a\", { 1 }, function() return { step = \"noop\" } end)\n"
                     "task \"a-1\" { step = \"noop\" }\n"),
              "p.lua:3: duplicate task name \"a\" (first declared at line 2)\n"
              "p.lua:4: duplicate task name \"a\" (first declared at line 2)\n"
              "p.lua:5: duplicate task name \"a-1\" (first declared at line 4)\n");
}

TEST(unknown_step_suggests) {
    CHECK_STR(errors("pipeline \"p\" {}\n"
                     "task \"a\" { step = \"train.logreg2\" }\n"
                     "task \"b\" { step = \"shell\" }\n"
                     "task \"c\" { }\n"
                     "task \"d\" { step = \"noop\", exec = { \"x\" } }\n"
                     "task \"e\" { step = \"exec\" }\n"),
              "p.lua:2: task \"a\" has unknown step \"train.logreg2\" (did you mean \"train.logreg\"?)\n"
              "p.lua:3: task \"b\" has unknown step \"shell\" (known steps: deploy, drift.detect, evaluate, exec, "
              "infer.batch, ingest.csv, ingest.sql, noop, train.logreg, train.mlp, validate)\n"
              "p.lua:4: task \"c\" needs a step (step = \"train.logreg\") or a command (exec = { \"python3\", \"train.py\" })\n"
              "p.lua:5: task \"d\" has both step = \"noop\" and exec; a task runs one step\n"
              "p.lua:6: task \"e\": step \"exec\" needs the command in exec = { ... }\n");
}

TEST(wrong_types) {
    CHECK_STR(errors("pipeline \"p\" { max_active_runs = \"one\", params = { n = param.int(2.5), s = param.string(3) } }\n"
                     "task \"a\" { step = \"noop\", priority = \"high\", retries = { max = -1, factor = 0.5, jitter = 1 },\n"
                     "  resources = { gpu = 1.5, queue = \"a b\" }, with = { f = function() end, t = task }, outputs = { \"Bad\" } }\n"
                     "task \"b\" { exec = { \"x\", true }, env = { [\"BAD NAME\"] = \"x\" }, trigger_rule = \"alldone\" }\n"
                     "task \"c\" { step = \"noop\", with = { data = task \"c2\" { step = \"noop\" } } }\n"),
              "p.lua:1: param.int(): the default must be an integer, not 2.5\n"
              "p.lua:1: param.string(): the default must be a string, not 3\n"
              "p.lua:1: pipeline \"p\": max_active_runs must be an integer, not the string \"one\"\n"
              "p.lua:2: task \"a\": outputs[1] must be a name (lowercase letters, digits, _), not the string \"Bad\"\n"
              "p.lua:2: task \"a\": priority must be an integer, not the string \"high\"\n"
              "p.lua:2: task \"a\": resources.gpu must be an integer, not 1.5\n"
              "p.lua:2: task \"a\": resources.queue \"a b\" is not a queue name (letters, digits, \".\", \"-\", \"_\")\n"
              "p.lua:2: task \"a\": retries.factor must be at least 1, not 0.5\n"
              "p.lua:2: task \"a\": retries.jitter must be true or false, not 1\n"
              "p.lua:2: task \"a\": retries.max must be at least 0, not -1\n"
              "p.lua:2: task \"a\": with.f must be a string, number, boolean or table, not a function\n"
              "p.lua:2: task \"a\": with.t must be a string, number, boolean or table, not a function\n"
              "p.lua:4: task \"b\": env keys must be variable names, not the string \"BAD NAME\"\n"
              "p.lua:4: task \"b\": exec[2] must be a string, not true\n"
              "p.lua:4: task \"b\": trigger_rule \"alldone\" is not one of all_success, all_done, one_failed (did you mean \"all_done\"?)\n"
              "p.lua:5: task \"c\": with.data is a task; pass one of its outputs instead (c2.outputs.NAME)\n");
}

TEST(bad_durations_and_sizes) {
    CHECK_STR(errors("pipeline \"p\" { triggers = { on_signal \"drift\" { cooldown = \"6 hours\" } } }\n"
                     "task \"a\" { step = \"noop\", timeout = \"30x\", retries = { backoff = 10 } }\n"
                     "task \"b\" { step = \"noop\", resources = { memory = \"4 GB\" } }\n"
                     "approval \"c\" { timeout = \"1h1h\" }\n"
                     "task \"d\" { step = \"noop\", retries = { backoff = \"1m\", max_backoff = \"10s\" } }\n"),
              "p.lua:1: trigger on_signal \"drift\": cooldown \"6 hours\" is not a duration (write e.g. \"90s\", \"30m\" or \"1h30m\")\n"
              "p.lua:2: task \"a\": retries.backoff must be a duration string like \"30m\", not 10\n"
              "p.lua:2: task \"a\": timeout \"30x\" is not a duration (write e.g. \"90s\", \"30m\" or \"1h30m\")\n"
              "p.lua:3: task \"b\": resources.memory \"4 GB\" is not a size (write e.g. \"512MiB\" or \"4GiB\")\n"
              "p.lua:4: approval \"c\": timeout \"1h1h\" is not a duration (write e.g. \"90s\", \"30m\" or \"1h30m\")\n"
              "p.lua:5: task \"d\": retries.max_backoff is shorter than retries.backoff\n");
}

TEST(bad_cron_and_schedule) {
    CHECK_STR(errors("pipeline \"p\" { schedule = \"0 25 * * *\" }\n"), "p.lua:1: pipeline \"p\": schedule \"0 25 * * *\" is not a valid cron expression: hour: 25 is out of range 0-23\n");
    CHECK_STR(errors("pipeline \"p\" { schedule = \"@reboot\" }\n"), "p.lua:1: pipeline \"p\": schedule \"@reboot\" is not a valid cron expression: unknown macro \"@reboot\" (use @hourly, @daily, @weekly, @monthly or @yearly)\n");
    CHECK_STR(errors("pipeline \"p\" { schedule = { cron = \"0 3 * *\", timezone = \"Paris time\", catchup = \"no\" } }\n"),
              "p.lua:1: pipeline \"p\": schedule \"0 3 * *\" is not a valid cron expression: expected 5 fields (minute hour day-of-month month day-of-week), found 4\n"
              "p.lua:1: pipeline \"p\": schedule.catchup must be true or false, not the string \"no\"\n"
              "p.lua:1: pipeline \"p\": schedule.timezone \"Paris time\" is not a time zone name like \"UTC\" or \"Europe/Paris\"\n");
}

TEST(parameters_used_but_not_declared) {
    CHECK_STR(errors("pipeline \"p\" { params = { lr = 0.1, epochs = 3 },\n"
                     "  triggers = { on_signal \"drift\" { params = { lrr = 1, epochs = 0.5 }, dedup_key = \"${signal.subj}\" } } }\n"
                     "task \"a\" { exec = { \"train\", \"--lr=\" .. params.lrr, \"--e=${params.epochs}\" } }\n"
                     "task \"b\" { step = \"noop\", with = { x = \"${params.nothing}\", y = \"${run.dat}\", z = \"${foo}\" } }\n"
                     "task \"c\" { exec = { \"${signal.subject}\", \"${params.lr\" } }\n"),
              "p.lua:2: trigger on_signal \"drift\" sets parameter \"lrr\", which is not declared in pipeline params (did you mean \"lr\"?)\n"
              "p.lua:2: trigger on_signal \"drift\" uses unknown signal field \"subj\" (signal has id, kind, subject, value, attributes.NAME)\n"
              "p.lua:2: trigger on_signal \"drift\": params.epochs must be a int (or a \"${signal.FIELD}\" placeholder), not 0.5\n"
              "p.lua:3: task \"a\" uses parameter \"lrr\", which is not declared in pipeline params (did you mean \"lr\"?)\n"
              "p.lua:4: task \"b\" has an unknown reference \"${foo}\" (use ${params.NAME}, ${tasks.NAME.outputs.OUTPUT}, ${models.NAME.ALIAS}, ${training_data.NAME.ALIAS} or ${run.FIELD})\n"
              "p.lua:4: task \"b\" uses parameter \"nothing\", which is not declared in pipeline params\n"
              "p.lua:4: task \"b\" uses unknown run field \"dat\" (did you mean \"date\"?) (run has date, id, pipeline, trigger, version)\n"
              "p.lua:5: task \"c\" has an unterminated \"${\" in \"${params.lr\"\n"
              "p.lua:5: task \"c\" uses \"${signal.subject}\", but signal fields are only available in trigger rules\n");
}

TEST(unknown_outputs) {
    CHECK_STR(errors("pipeline \"p\" {}\n"
                     "local t = task \"train\" { step = \"train.logreg\" }\n"
                     "local x = task \"x\" { exec = { \"x\" } }\n"
                     "local s = foreach(\"s\", { 1 }, function() return { step = \"noop\" } end)\n"
                     "task \"a\" { step = \"noop\", with = { m = t.outputs.modle, n = x.outputs.out, o = \"${tasks.s.outputs.y}\",\n"
                     "  p = \"${tasks.nope.outputs.y}\", q = t.outputs.weights } }\n"),
              "p.lua:5: task \"a\" uses \"${tasks.s.outputs.y}\", but \"s\" is a foreach group: use s.outputs.y (a list) instead\n"
              "p.lua:5: task \"a\" uses an output of unknown task \"nope\"\n"
              "p.lua:5: task \"a\" uses unknown output \"modle\" of task \"train\" (did you mean \"model\"?)\n"
              "p.lua:5: task \"a\" uses unknown output \"out\" of task \"x\" (it declares no outputs; add outputs = { \"out\" } to task \"x\")\n"
              "p.lua:5: task \"a\" uses unknown output \"weights\" of task \"train\" (its outputs: model)\n");
}

TEST(unknown_fields_and_bad_names) {
    CHECK_STR(errors("pipeline \"p\" { retries = 2, defaults = { timout = \"1h\" } }\n"
                     "task \"a\" { step = \"noop\", retires = 3, resources = { gpus = 1 }, \"positional\" }\n"
                     "task \"Bad Name\" { step = \"noop\" }\n"
                     "task { step = \"noop\" }\n"
                     "gate \"g\" { metrics = \"a\", thresholds = { acc = 0.9 }, treshold = 1 }\n"
                     "task \"pending\"\n"),
              "p.lua:1: pipeline \"p\" has unknown field \"defaults.timout\" (did you mean \"timeout\"?)\n"
              "p.lua:1: pipeline \"p\" has unknown field \"retries\"\n"
              "p.lua:2: task \"a\" has a value without a field name (write name = value)\n"
              "p.lua:2: task \"a\" has unknown field \"resources.gpus\" (did you mean \"gpu\"?)\n"
              "p.lua:2: task \"a\" has unknown field \"retires\" (did you mean \"retries\"?)\n"
              "p.lua:3: task name \"Bad Name\" is invalid: use lowercase letters, digits, \"-\" and \"_\", starting with a letter (at most 63 characters)\n"
              "p.lua:4: task needs a name: write task \"name\" { ... }, not a table\n"
              "p.lua:5: gate \"g\" has unknown field \"treshold\" (did you mean \"thresholds\"?)\n"
              "p.lua:5: gate \"g\": thresholds.acc must be a table like { min = 0.9 } or { max = 0.4 }, not 0.9\n"
              "p.lua:6: task \"pending\" has no body: write task \"pending\" { ... }\n");
}

TEST(gate_errors) {
    CHECK_STR(errors("pipeline \"p\" {}\n"
                     "task \"e\" { step = \"evaluate\" }\n"
                     "gate \"a\" { }\n"
                     "gate \"b\" { metrics = \"e\", predicate = \"m.e.f1 >=\" }\n"
                     "gate \"c\" { thresholds = { acc = { min = 0.9 } } }\n"
                     "gate \"d\" { metrics = \"e\", change = { acc = { min = 0.1, max = 0 } } }\n"
                     "gate \"f\" { metrics = \"evaluat\", thresholds = { acc = { min = 0.9 } } }\n"),
              "p.lua:3: gate \"a\" has nothing to check (give thresholds, change or predicate)\n"
              "p.lua:4: gate \"b\": predicate does not parse: predicate:1: unexpected symbol near <eof>\n"
              "p.lua:5: gate \"c\": thresholds and change need metrics = TASK (the task whose metrics are compared)\n"
              "p.lua:6: gate \"d\": change thresholds need model = \"NAME\" (the registry model whose production version is the baseline)\n"
              "p.lua:6: gate \"d\": change.acc has min greater than max\n"
              "p.lua:7: gate \"f\" takes metrics from unknown task \"evaluat\"\n");
}

TEST(pipeline_missing_or_twice) {
    CHECK_STR(errors("task \"a\" { step = \"noop\" }\n"),
              "p.lua:1: no pipeline declared: start the file with pipeline \"name\" { ... }\n");
    CHECK_STR(errors(""), "p.lua:1: no pipeline declared: start the file with pipeline \"name\" { ... }\n");
    CHECK_STR(errors("pipeline \"a\" {}\npipeline \"b\" {}\n"),
              "p.lua:2: a file declares one pipeline; \"a\" was already declared at line 1\n");
}

TEST(errors_sorted_by_line_with_file_name) {
    const char *src = "pipeline \"p\" {}\n\n\ntask \"z\" { step = \"nope\" }\ntask \"a\" { step = \"noop\", after = \"b\" }\n";
    weir_dsl_result_free(&R);
    CHECK_EQ(weir_dsl_compile("dir/my pipeline.lua", src, strlen(src), NULL, &R), WEIR_ECOMPILE);
    CHECK_STR(R.errors, "dir/my pipeline.lua:4: task \"z\" has unknown step \"nope\" (did you mean \"noop\"?)\n"
                        "dir/my pipeline.lua:5: task \"a\" depends on unknown task \"b\"\n");
}

TEST(error_lists_and_dependencies_are_capped) {
    const char *src = "pipeline \"p\" {}\n"
                      "local items = {} for i = 1, 1500 do items[i] = i end\n"
                      "local g = foreach(\"g\", items, function() return { step = \"noop\" } end)\n"
                      "for i = 1, 700 do task(\"t\" .. i) { step = \"noop\", after = g } end\n"
                      "for i = 1, 1500 do task(\"u\" .. i) { step = \"noop\", after = \"nope\" .. i } end\n";
    uint64_t t0 = weir_now_ms();
    const char *e = errors(src);
    CHECK(weir_now_ms() - t0 < 5000);
    CHECK_EQ(R.nerrors, 1001);
    const char *head = "p.lua:4: the pipeline has more than 1000000 dependencies; join large groups through a noop task\n"
                       "p.lua:5: task \"u1\" depends on unknown task \"nope1\"\n";
    CHECK(strncmp(e, head, strlen(head)) == 0);
    CHECK_CONTAINS(e, "\np.lua: 501 more errors not shown\n");
}

TEST(runtime_and_syntax_errors_have_lines) {
    CHECK_STR(errors("pipeline \"p\" {}\nlocal x\nx.y = 1\n"), "p.lua:3: attempt to index a nil value (local 'x')\n");
    CHECK_STR(errors("pipeline \"p\" {}\ntask \"a\" { step = \"noop\"\n"),
              "p.lua:3: '}' expected (to close '{' at line 2) near <eof>\n");
    CHECK_STR(errors("pipeline \"p\" {}\nerror({})\n"), "p.lua:2: (error object is a table value)\n");
    CHECK_STR(errors("pipeline \"p\" {}\nlocal function f()\n  error(\"boom\", 0)\nend\nf()\n"), "p.lua:3: boom\n");
    CHECK_STR(errors("pipeline \"p\" {}\ntsk \"a\" {}\n"), "p.lua:2: unknown global \"tsk\" (did you mean \"task\"?)\n");
    /* an error inside a coroutine is reported where it happened */
    CHECK_STR(errors("pipeline \"p\" {}\nlocal f = coroutine.wrap(function()\n  error(\"inner\")\nend)\nf()\n"),
              "p.lua:3: inner\n");
    /* errors found before a runtime error are kept */
    CHECK_STR(errors("pipeline \"p\" {}\ntask \"a\" { step = \"noop\", after = \"b\" }\nnil_call()\n"),
              "p.lua:3: unknown global \"nil_call\"\n");
    CHECK_STR(errors("pipeline \"p\" {}\ntask \"a\" { step = \"bogus\" }\nnil_call()\n"),
              "p.lua:2: task \"a\" has unknown step \"bogus\" (known steps: deploy, drift.detect, evaluate, exec, "
              "infer.batch, ingest.csv, ingest.sql, noop, train.logreg, train.mlp, validate)\n"
              "p.lua:3: unknown global \"nil_call\"\n");
}

/* ---- the sandbox ------------------------------------------------------------------------------ */

#define SANDBOX(code) errors("pipeline \"p\" {}\n" code "\n")

TEST(sandbox_refuses_host_access) {
    static const char *const host = "is not available in a pipeline: scripts run in a sandbox and cannot touch the host\n";
    static const struct { const char *code, *name; } cases[] = {
        {"io.open('/etc/passwd')", "io"},        {"os.execute('id')", "os"},     {"require('os')", "require"},
        {"debug.getinfo(1)", "debug"},           {"loadfile('/etc/passwd')", "loadfile"},
        {"dofile('/etc/passwd')", "dofile"},     {"collectgarbage()", "collectgarbage"},
        {"package.loadlib('x', 'y')", "package"}, {"local x = _G.io", "io"},   {"local x = _ENV.os", "os"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char src[256], want[256];
        snprintf(src, sizeof src, "pipeline \"p\" {}\n%s\n", cases[i].code);
        snprintf(want, sizeof want, "p.lua:2: %s %s", cases[i].name, host);
        CHECK_STR(errors(src), want);
    }
}

TEST(sandbox_refuses_binary_chunks_and_dump) {
    CHECK_STR(SANDBOX("string.dump(function() end)"),
              "p.lua:2: string.dump is not available in a pipeline (binary chunks are refused)\n");
    CHECK_STR(SANDBOX("local s = ''\nlocal d = s.dump\nd(print)"),
              "p.lua:4: string.dump is not available in a pipeline (binary chunks are refused)\n");
    CHECK_STR(SANDBOX("getmetatable('').__index.dump(tostring)"),
              "p.lua:2: string.dump is not available in a pipeline (binary chunks are refused)\n");
    CHECK_STR(SANDBOX("local f, e = load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n')\nassert(f == nil)\nerror(e, 0)"),
              "p.lua:4: attempt to load a binary chunk (mode is 't')\n");
    CHECK_STR(SANDBOX("local f, e = load('\\27Lua', 'x', 'b')\nerror(e, 0)"), "p.lua:3: attempt to load a binary chunk (mode is 't')\n");
    /* the script itself may not be a binary chunk */
    weir_dsl_result_free(&R);
    CHECK_EQ(weir_dsl_compile("p.lua", "\x1bLuaT\0", 6, NULL, &R), WEIR_ECOMPILE);
    CHECK_STR(R.errors, "p.lua:1: attempt to load a binary chunk (mode is 't')\n");
}

TEST(sandbox_load_stays_inside) {
    CHECK_STR(SANDBOX("load('return io')()"),
              "p.lua:2: [string \"return io\"]:1: io is not available in a pipeline: scripts run in a sandbox and cannot touch the host\n");
    /* a chunk given its own environment sees only that */
    CHECK_STR(SANDBOX("local f = load('return os', 'x', 't', {})\nassert(f() == nil)\nerror('ok', 0)"), "p.lua:4: ok\n");
    CHECK_EQ(compile("pipeline \"p\" {}\nlocal n = load('return 1 + 1')()\ntask('t' .. n) { step = 'noop' }\n"), 0);
    CHECK(task_of("t2") != NULL);
}

TEST(sandbox_metatable_tricks) {
    CHECK_STR(SANDBOX("setmetatable(_ENV, nil)"), "p.lua:2: cannot change a protected metatable\n");
    CHECK_STR(SANDBOX("assert(getmetatable(params) == false)\nassert(getmetatable(_G) == false)\nerror('ok', 0)"),
              "p.lua:4: ok\n");
    CHECK_STR(SANDBOX("setmetatable({}, { __gc = function() end })"),
              "p.lua:2: __gc metamethods are not available in a pipeline\n");
    CHECK_STR(SANDBOX("math.randomseed()"), "p.lua:2: math.randomseed needs a seed in a pipeline (plans must be reproducible)\n");
    /* print is accepted and goes nowhere */
    CHECK_EQ(compile("pipeline \"p\" {}\nprint('hello')\n"), 0);
}

/* ---- limits ----------------------------------------------------------------------------------- */

static uint64_t timed(const char *src, size_t mem, uint64_t instr, int *rc) {
    uint64_t t0 = weir_now_ms();
    *rc = compile_with(src, mem, instr);
    return weir_now_ms() - t0;
}

#define BUDGET "instruction budget exceeded (5000000 instructions): is there an endless loop?\n"
#define MEMORY "memory limit exceeded (16 MiB)\n"

TEST(endless_loop_ends_within_budget) {
    int rc;
    uint64_t ms = timed("pipeline \"p\" {}\nlocal i = 0\nwhile true do\n  i = i + 1\nend\n", 0, 5000000, &rc);
    CHECK_EQ(rc, WEIR_ECOMPILE);
    CHECK_CONTAINS(R.errors, "p.lua:");
    CHECK_CONTAINS(R.errors, BUDGET);
    CHECK(ms < 2000);
    /* and with the default budget, in well under the 10 s backstop */
    ms = timed("pipeline \"p\" {}\nwhile true do end\n", 0, 0, &rc);
    CHECK_STR(R.errors, "p.lua:2: instruction budget exceeded (200000000 instructions): is there an endless loop?\n");
    CHECK(ms < 5000);
}

TEST(endless_loop_in_coroutine) {
    int rc;
    timed("pipeline \"p\" {}\nlocal f = coroutine.wrap(function()\n  while true do end\nend)\nf()\n", 0, 5000000, &rc);
    CHECK_STR(R.errors, "p.lua:3: " BUDGET);
    timed("pipeline \"p\" {}\nlocal co = coroutine.create(function()\n  while true do end\nend)\n"
          "while true do coroutine.resume(co) end\n", 0, 5000000, &rc);
    CHECK_STR(R.errors, "p.lua:3: " BUDGET);
    /* many short coroutines, each dying before the hook would have counted it */
    timed("pipeline \"p\" {}\nwhile true do\n  coroutine.wrap(function() for i = 1, 500 do end end)()\nend\n", 0,
          5000000, &rc);
    CHECK_CONTAINS(R.errors, BUDGET);
}

TEST(endless_loop_inside_pcall) {
    int rc;
    uint64_t ms = timed("pipeline \"p\" {}\nwhile true do\n  pcall(function() while true do end end)\nend\n", 0,
                        5000000, &rc);
    CHECK_EQ(rc, WEIR_ECOMPILE);
    CHECK_CONTAINS(R.errors, BUDGET);
    CHECK(ms < 2000);
    timed("pipeline \"p\" {}\nwhile true do\n  xpcall(function() while true do end end, function() while true do end end)\nend\n",
          0, 5000000, &rc);
    CHECK_CONTAINS(R.errors, BUDGET);
    /* a budget error caught by the script does not let it finish either */
    timed("pipeline \"p\" {}\npcall(function() while true do end end)\ntask \"t\" { step = \"noop\" }\n", 0, 5000000,
          &rc);
    CHECK_EQ(rc, WEIR_ECOMPILE);
    CHECK_CONTAINS(R.errors, BUDGET);
}

TEST(handlers_and_close_cannot_outlive_the_budget) {
    int rc;
    uint64_t ms = timed("pipeline \"p\" {}\nwhile true do\n"
                        "  xpcall(function() while true do end end, function() while true do end end)\nend\n",
                        0, 5000000, &rc);
    CHECK_STR(R.errors, "p.lua:3: " BUDGET);
    CHECK(ms < 2000);
    ms = timed("pipeline \"p\" {}\nlocal f = coroutine.wrap(function()\n"
               "  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
               "  while true do end\nend)\nf()\n",
               0, 5000000, &rc);
    CHECK_STR(R.errors, "p.lua:4: " BUDGET);
    CHECK(ms < 2000);
    ms = timed("pipeline \"p\" {}\nlocal co = coroutine.create(function()\n"
               "  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
               "  while true do end\nend)\nprint(coroutine.resume(co))\ncoroutine.close(co)\n",
               0, 5000000, &rc);
    CHECK_CONTAINS(R.errors, BUDGET);
    CHECK(ms < 2000);
    /* a loop in __close of the main chunk is stopped by the hook */
    ms = timed("pipeline \"p\" {}\ndo\n  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
               "  while true do end\nend\n",
               0, 5000000, &rc);
    CHECK_CONTAINS(R.errors, BUDGET);
    CHECK(ms < 2000);
    /* outside limits, wrap, close and xpcall behave as in Lua */
    CHECK_STR(errors("pipeline \"p\" {}\nlocal closed = false\nlocal f = coroutine.wrap(function(a)\n"
                     "  local x <close> = setmetatable({}, { __close = function() closed = true end })\n"
                     "  local b = coroutine.yield(a + 1)\n  error('stop ' .. b)\nend)\nassert(f(1) == 2)\n"
                     "local ok, e = pcall(f, 5)\nassert(closed)\n"
                     "local ok2, e2 = xpcall(error, function(m) return 'handled ' .. m end, 'x', 0)\n"
                     "error(e .. ' / ' .. e2, 0)\n"),
              "p.lua:6: stop 5 / handled x\n");
}

TEST(work_in_c_counts_against_the_budget) {
    int rc;
    uint64_t ms = timed("pipeline \"p\" {}\nlocal s = string.rep('', 1e15)\n", 0, 5000000, &rc);
    CHECK_STR(R.errors, "p.lua:2: " BUDGET);
    CHECK(ms < 2000);
    ms = timed("pipeline \"p\" {}\ntable.move({}, 1, 1e15, 2)\n", 0, 5000000, &rc);
    CHECK_STR(R.errors, "p.lua:2: " BUDGET);
    CHECK(ms < 2000);
    ms = timed("pipeline \"p\" {}\nlocal s = string.rep('a', 100000)\nlocal x = s:find('.-.-.-b')\n", 0, 0, &rc);
    CHECK_STR(R.errors, "p.lua:3: pattern is too expensive for a string of 100000 bytes in a pipeline (it could "
                        "backtrack for a very long time); split the string or simplify the pattern\n");
    CHECK(ms < 2000);
    /* ordinary patterns on ordinary strings work */
    CHECK_EQ(compile("pipeline \"p\" {}\nfor name in ('a,b,c'):gmatch('[^,]+') do task(name) { step = 'noop' } end\n"
                     "local s = ('  x  '):match('^%s*(.-)%s*$')\ntask(s) { step = 'noop' }\n"),
             0);
    CHECK(task_of("c") && task_of("x"));
}

/* Each finding of the sandbox review: a loop in C the hook never sees, a pattern that backtracks
 * for long, a checked declaration changed afterwards, a NUL byte cut short by strcmp. */
TEST(table_library_cannot_loop_unbounded) {
    static const char *const hangs[] = {
        "local t = setmetatable({}, { __len = function() return math.maxinteger end })\ntable.remove(t, 1)",
        "table.insert(setmetatable({}, { __len = function() return math.maxinteger - 2 end }), 1, 5)",
        "table.sort(setmetatable({}, { __len = function() return 2^31 - 2 end, __index = rawlen, __newindex = rawequal }))",
        "table.concat(setmetatable({}, { __len = function() return 1e12 end, __index = function() return '' end }))",
        "table.move(setmetatable({}, { __index = rawlen, __newindex = rawequal }), 1, 1.5e9, 2)",
        /* __len answers small when charged and huge when the original asks again */
        "local n = 0\nlocal t = setmetatable({}, { __len = function() n = n + 1 return n == 1 and 3 or math.maxinteger end })\n"
        "table.remove(t, 1)\nwhile true do table.unpack({}, 1, 1e5) end",
        /* a C comparator: each comparison is charged */
        "local t = {}\nfor i = 1, 1000 do t[i] = i end\nwhile true do table.sort(t, rawequal) end",
    };
    for (size_t i = 0; i < sizeof hangs / sizeof hangs[0]; i++) {
        char src[512];
        snprintf(src, sizeof src, "pipeline \"p\" {}\n%s\n", hangs[i]);
        int rc;
        uint64_t ms = timed(src, 0, 0, &rc);
        CHECK_EQ(rc, WEIR_ECOMPILE);
        CHECK_CONTAINS(R.errors, "exceeded");
        CHECK(ms < 5000);
    }
    /* and they still do their work */
    CHECK_STR(SANDBOX("local t = { 'c', 'a', 'b' }\ntable.insert(t, 1, 'd')\ntable.remove(t, 2)\ntable.sort(t)\n"
                      "local u = setmetatable({}, { __len = function() return 2 end, __index = function(_, i) return 'x' .. i end })\n"
                      "error(table.concat(t, ',') .. ' ' .. table.concat(u) .. ' ' .. select('#', table.unpack(u)), 0)"),
              "p.lua:7: a,b,d x1x2 2\n");
}

TEST(patterns_are_always_costed) {
    static const char *const slow[] = {
        "string.find(string.rep('(', 200000), '%b()')",
        "string.find(string.rep('a', 300000), string.rep('%a', 100000) .. 'b')",
        "string.match(string.rep('a', 40), string.rep('a?', 40) .. string.rep('a', 40) .. 'b')",
        "string.find(string.rep('a', 100000), '(a*)%1b')",
    };
    for (size_t i = 0; i < sizeof slow / sizeof slow[0]; i++) {
        char src[512];
        snprintf(src, sizeof src, "pipeline \"p\" {}\n%s\n", slow[i]);
        int rc;
        uint64_t ms = timed(src, 0, 0, &rc);
        CHECK_EQ(rc, WEIR_ECOMPILE);
        CHECK_CONTAINS(R.errors, "p.lua:2: pattern is too expensive for a string of ");
        CHECK(ms < 2000);
    }
    /* a pattern just under the cap, called in a loop, runs out of budget */
    int rc;
    uint64_t ms = timed("pipeline \"p\" {}\nlocal s = string.rep('a', 300)\nwhile true do s:find('.-.-b') end\n", 0, 0, &rc);
    CHECK_STR(R.errors, "p.lua:3: instruction budget exceeded (200000000 instructions): is there an endless loop?\n");
    CHECK(ms < 5000);
    CHECK_EQ(compile("pipeline \"p\" {}\nlocal a, b = ('f(x(y))z'):match('^(%w)(%b())')\nassert(b == '(x(y))')\n"
                     "assert(('THE (quick) fox'):find('%f[%a]%a+') == 1)\n"),
             0);
}

TEST(declarations_cannot_change_after_their_check) {
    /* a table reaching itself 4 million times over used to be copied after the limits were lifted */
    int rc;
    uint64_t ms = timed("local x = 'leaf'\nfor i = 1, 22 do x = { a = x, b = x } end\nlocal p = param.string('s')\n"
                        "p.default = x\npipeline \"p\" { params = { lr = p } }\ntask \"a\" { exec = { \"true\" } }\n",
                        0, 0, &rc);
    CHECK_STR(R.errors, "p.lua:4: a parameter declaration is read-only: declare a new one with param.string(...)\n");
    CHECK(ms < 2000);
    /* rawset reaches the handle, not what was checked */
    CHECK_EQ(compile("local p = param.string('s', 'about')\nrawset(p, 'type', 'evil')\nrawset(p, 'default', { 1 })\n"
                     "local tr = on_signal 'drift' { subject = 'm' }\nrawset(tr, 'subject', {})\n"
                     "pipeline \"p\" { params = { lr = p }, triggers = tr }\ntask \"a\" { exec = { \"true\" } }\n"),
             0);
    CHECK_STR(text_of(json_object_get(R.plan, "params")),
              "{\"lr\":{\"default\":\"s\",\"description\":\"about\",\"required\":false,\"type\":\"string\"}}");
    CHECK_CONTAINS(text_of(json_object_get(R.plan, "triggers")), "\"subject\":\"m\"");
    CHECK_STR(SANDBOX("local tr = on_signal 'drift' {}\ntr.subject = 'x'"),
              "p.lua:3: an on_signal rule is read-only: declare a new one with on_signal \"kind\" { ... }\n");
    CHECK_STR(SANDBOX("local p = param.int(3)\nassert(p.type == 'int' and p.default == 3)\nerror('ok', 0)"), "p.lua:4: ok\n");
}

TEST(nul_bytes_are_refused_with_the_field) {
    CHECK_STR(errors("pipeline \"p\" { description = 'a\\0b', params = { s = 'x\\0', t = param.string('y\\0') } }\n"
                     "task \"a\" { description = 'a\\0b', exec = { 'true' } }\ntask \"b\" { step = 'noop\\0evil' }\n"
                     "task \"c\" { exec = { 'x\\0' }, with = { k = { 'x\\0y' } }, env = { ['A\\0'] = 'v' } }\n"
                     "task \"d\" { step = 'noop', timeout = '30m\\0x', with = { m = { ['k\\0'] = 1 } } }\n"),
              "p.lua:1: param.string(): the default contains a NUL byte\n"
              "p.lua:1: pipeline \"p\": description contains a NUL byte\n"
              "p.lua:1: pipeline \"p\": params.s contains a NUL byte\n"
              "p.lua:2: task \"a\": description contains a NUL byte\n"
              "p.lua:3: task \"b\": step contains a NUL byte\n"
              "p.lua:4: task \"c\": env keys must be variable names, not the string \"A\"\n"
              "p.lua:4: task \"c\": exec[1] contains a NUL byte\n"
              "p.lua:4: task \"c\": with.k[1] contains a NUL byte\n"
              "p.lua:5: task \"d\": timeout \"30m\" is not a duration (write e.g. \"90s\", \"30m\" or \"1h30m\")\n"
              "p.lua:5: task \"d\": with.m has a key that contains a NUL byte\n");
}

TEST(memory_bombs_end_with_clear_error) {
    static const char *const bombs[] = {
        "local s = string.rep('x', 1e9)",
        "local t = {}\nwhile true do t[#t + 1] = {} end",
        "local s = 'x'\nfor i = 1, 40 do s = s .. s end",
        "local t = {}\nfor i = 1, 1e9 do t[i] = i end",
        "local f = coroutine.wrap(function() local t = {} while true do t[#t + 1] = 'x' .. #t end end)\nf()",
    };
    for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) {
        char src[512];
        snprintf(src, sizeof src, "pipeline \"p\" {}\n%s\n", bombs[i]);
        int rc;
        uint64_t ms = timed(src, (size_t)16 << 20, 0, &rc);
        CHECK_EQ(rc, WEIR_ECOMPILE);
        CHECK_CONTAINS(R.errors, "p.lua:");
        CHECK_CONTAINS(R.errors, MEMORY);
        CHECK(ms < 3000);
    }
}

TEST(memory_error_caught_by_script_still_fails) {
    int rc;
    timed("pipeline \"p\" {}\nlocal ok = pcall(string.rep, 'x', 1e9)\ntask \"t\" { step = \"noop\" }\n", (size_t)16 << 20,
          0, &rc);
    CHECK_EQ(rc, WEIR_ECOMPILE);
    CHECK_STR(R.errors, "p.lua:2: " MEMORY);
}

/* The runner ends each case with _exit, which skips LeakSanitizer: check here, in sanitizer builds. */
TEST(no_leaks_on_any_path) {
    static const char *const sources[] = {
        "pipeline \"p\" { params = { a = 1 }, schedule = \"@daily\" }\nlocal t = task \"t\" { exec = { \"x\" }, outputs = { \"o\" } }\n"
        "foreach(\"f\", { 1, 2 }, function(i) return { step = \"noop\", with = { x = t.outputs.o } } end)\n",
        "pipeline \"p\" {}\ntask \"a\" { step = \"nope\", after = \"b\" }\ntask \"c\" { step = \"noop\", after = \"c\" }\n",
        "pipeline \"p\" {}\nerror('x')\n",
        "pipeline \"p\" {\n",
        "pipeline \"p\" {}\nwhile true do end\n",
        "pipeline \"p\" {}\nlocal t = {} while true do t[#t + 1] = {} end\n",
        "pipeline \"p\" {}\ncoroutine.wrap(function() local t = {} while true do t[#t + 1] = 'x' .. #t end end)()\n",
    };
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) compile_with(sources[i], (size_t)16 << 20, 5000000);
    weir_dsl_result_free(&R);
#ifdef __SANITIZE_ADDRESS__
    CHECK_EQ(__lsan_do_recoverable_leak_check(), 0);
#endif
}

TEST(result_free_is_safe) {
    weir_dsl_result_t r;
    memset(&r, 0, sizeof r);
    weir_dsl_result_free(&r);
    weir_dsl_result_free(NULL);
    CHECK_EQ(weir_dsl_compile("p.lua", "pipeline \"p\" {}", 15, NULL, &r), 0);
    weir_dsl_result_free(&r);
    weir_dsl_result_free(&r);
    CHECK(r.plan == NULL);
}

UNIT_MAIN(dsl, CASE(minimal_plan_is_canonical), CASE(pipeline_fields), CASE(required_parameters), CASE(task_fields_and_defaults),
          CASE(pipeline_defaults_merge_field_by_field), CASE(implied_and_explicit_dependencies),
          CASE(fan_out_and_fan_in), CASE(registry_references_and_drift_default_reference),
          CASE(gate_and_approval_plans), CASE(version_is_stable_and_ignores_comments),
          CASE(version_does_not_depend_on_hash_order), CASE(math_random_is_reproducible),
          CASE(canonical_numbers_and_strings), CASE(compiles_in_parallel_threads), CASE(unknown_dependency_suggests),
          CASE(cycle_is_printed), CASE(cycle_through_outputs), CASE(duplicate_names), CASE(unknown_step_suggests),
          CASE(wrong_types), CASE(bad_durations_and_sizes), CASE(bad_cron_and_schedule),
          CASE(parameters_used_but_not_declared), CASE(unknown_outputs), CASE(unknown_fields_and_bad_names),
          CASE(gate_errors), CASE(pipeline_missing_or_twice), CASE(errors_sorted_by_line_with_file_name),
          CASE(error_lists_and_dependencies_are_capped),
          CASE(runtime_and_syntax_errors_have_lines), CASE(sandbox_refuses_host_access),
          CASE(sandbox_refuses_binary_chunks_and_dump), CASE(sandbox_load_stays_inside),
          CASE(sandbox_metatable_tricks), CASE(endless_loop_ends_within_budget), CASE(endless_loop_in_coroutine),
          CASE(endless_loop_inside_pcall),
          CASE(handlers_and_close_cannot_outlive_the_budget), CASE(work_in_c_counts_against_the_budget),
          CASE(table_library_cannot_loop_unbounded), CASE(patterns_are_always_costed),
          CASE(declarations_cannot_change_after_their_check), CASE(nul_bytes_are_refused_with_the_field),
          CASE(memory_bombs_end_with_clear_error), CASE(memory_error_caught_by_script_still_fails),
          CASE(no_leaks_on_any_path), CASE(result_free_is_safe))
