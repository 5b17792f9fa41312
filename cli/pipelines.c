/* pipelines.c — `weir apply`, `weir pipelines`, `weir pipeline show`: thin
 * clients of the scheduler's /v1/pipelines API. Compilation happens on the
 * scheduler; `weir lint` is the offline twin. */
#include "cli/cli.h"
#include "common/error.h"
#include "common/util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define SOURCE_MAX (1 << 20)

enum { OPT_URL = 1000, OPT_TOKEN };

/* Parses the flags every client command shares; returns the first non-flag index or -1 (exit code in *rc). */
static int client_flags(int argc, char **argv, const char *usage, weir_config_t *cfg, int *json, const char **version,
                        int *rc) {
    static const struct option opts[] = {
        {"url", required_argument, NULL, OPT_URL}, {"token", required_argument, NULL, OPT_TOKEN},
        {"output", required_argument, NULL, 'o'}, {"version", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0},
    };
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (opt == OPT_URL) snprintf(cfg->url, sizeof cfg->url, "%s", optarg);
        else if (opt == OPT_TOKEN) snprintf(cfg->token, sizeof cfg->token, "%s", optarg);
        else if (opt == 'o' && json) { if (cli_output_format(optarg, json)) { *rc = 2; return -1; } }
        else if (opt == 'v' && version) *version = optarg;
        else if (opt == 'h') { fputs(usage, stdout); *rc = 0; return -1; }
        else { fputs(usage, stderr); *rc = WEIR_EXIT_USAGE; return -1; }
    }
    weir_config_load(cfg);
    return optind;
}

int weir_cmd_apply(int argc, char **argv) {
    const char *usage = "usage: weir apply [--url URL] [--token T] [-o json] FILE...\n\n"
                        "Sends each pipeline file to the scheduler, which compiles it in its sandbox and\n"
                        "stores it as an immutable version. Applying an unchanged pipeline changes nothing\n"
                        "and returns the same version. Check files offline first with `weir lint`.\n";
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    int first = client_flags(argc, argv, usage, &cfg, &json, NULL, &rc);
    if (first < 0) return rc;
    if (first >= argc) { fprintf(stderr, "weir apply: no files given\n%s", usage); return WEIR_EXIT_USAGE; }
    json_t *all = json_array();
    for (int i = first; i < argc; i++) {
        char *src;
        size_t len;
        int err = weir_read_file(argv[i], SOURCE_MAX, &src, &len);
        if (err) {
            fprintf(stderr, "weir apply: %s: %s\n", argv[i],
                    err == WEIR_ELIMIT ? "larger than 1 MiB" : err == WEIR_ENOENT ? "no such file" : weir_strerror(err));
            rc = WEIR_EXIT_FAIL;
            continue;
        }
        json_t *body = json_pack("{s:s%, s:s}", "source", src, len, "filename", argv[i]);
        free(src);
        weir_response_t res;
        if (!body) {
            fprintf(stderr, "weir apply: %s: the file is not valid UTF-8\n", argv[i]);
            rc = WEIR_EXIT_FAIL;
            continue;
        }
        int crc = weir_client_call(&cfg, "POST", "/v1/pipelines", body, &res);
        json_decref(body);
        if (crc) {
            /* the files before this one were applied: still report them below */
            fprintf(stderr, "weir: %s\n", res.error);
            rc = WEIR_EXIT_UNREACHABLE;
            break;
        }
        if (res.status == 422) {
            json_t *errors = json_object_get(json_object_get(res.json, "error"), "errors");
            size_t k;
            json_t *e;
            json_array_foreach(errors, k, e) fprintf(stderr, "%s\n", json_string_value(e));
            fprintf(stderr, "weir apply: %s: %zu error%s; nothing was applied\n", argv[i], json_array_size(errors),
                    json_array_size(errors) == 1 ? "" : "s");
            rc = WEIR_EXIT_FAIL;
        } else if (res.status >= 300) {
            fprintf(stderr, "weir apply: %s: %s\n", argv[i], res.error);
            rc = res.status == 503 ? WEIR_EXIT_UNREACHABLE : WEIR_EXIT_FAIL;
        } else if (json) {
            json_array_append(all, res.json);
        } else {
            json_t *j = res.json;
            const char *v = json_string_value(json_object_get(j, "version"));
            int created = json_is_true(json_object_get(j, "created"));
            int changed = json_is_true(json_object_get(j, "current_changed"));
            printf("%s: version %lld (%.12s), %lld tasks: %s\n", json_string_value(json_object_get(j, "pipeline")),
                   (long long)json_integer_value(json_object_get(j, "seq")), v ? v : "",
                   (long long)json_integer_value(json_object_get(j, "tasks")),
                   created ? "created" : changed ? "unchanged, made current again" : "unchanged");
        }
        weir_response_free(&res);
    }
    if (json) {
        char *s = json_dumps(all, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    }
    json_decref(all);
    return rc;
}

int weir_cmd_pipelines(int argc, char **argv) {
    const char *usage = "usage: weir pipelines [--url URL] [--token T] [-o json]\n\n"
                        "Lists the pipelines the scheduler knows, with their current version.\n";
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    int first = client_flags(argc, argv, usage, &cfg, &json, NULL, &rc);
    if (first < 0) return rc;
    if (first < argc) { fprintf(stderr, "weir pipelines: unexpected argument \"%s\"\n", argv[first]); return 2; }
    weir_response_t res;
    if ((rc = cli_call(&cfg, "GET", "/v1/pipelines", NULL, &res))) { weir_response_free(&res); return rc; }
    json_t *list = json_object_get(res.json, "pipelines");
    if (json) {
        char *s = json_dumps(list, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    } else if (json_array_size(list) == 0) {
        printf("no pipelines yet: apply one with `weir apply FILE`\n");
    } else {
        cli_table_t t;
        cli_table_init(&t, 6);
        cli_table_row(&t, "NAME", "VERSION", "ID", "TASKS", "SCHEDULE", "UPDATED");
        size_t i;
        json_t *p;
        json_array_foreach(list, i, p) {
            char seq[32], tasks[32], id[16], when[32];
            snprintf(seq, sizeof seq, "%lld", (long long)json_integer_value(json_object_get(p, "seq")));
            snprintf(tasks, sizeof tasks, "%lld", (long long)json_integer_value(json_object_get(p, "tasks")));
            snprintf(id, sizeof id, "%.12s", json_string_value(json_object_get(p, "current_version")) ?: "");
            cli_table_row(&t, json_string_value(json_object_get(p, "name")), seq, id, tasks,
                          json_string_value(json_object_get(p, "schedule")),
                          cli_time(json_string_value(json_object_get(p, "updated_at")), when, sizeof when));
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
    }
    weir_response_free(&res);
    return 0;
}

/* Prints a plan's tasks as a table: name, kind, step, upstream. */
static void print_plan_tasks(json_t *plan) {
    cli_table_t t;
    cli_table_init(&t, 4);
    cli_table_row(&t, "TASK", "KIND", "STEP", "AFTER");
    size_t i;
    json_t *task;
    json_array_foreach(json_object_get(plan, "tasks"), i, task) {
        weir_buf_t up;
        weir_buf_init(&up, 4096);
        size_t k;
        json_t *u;
        json_array_foreach(json_object_get(task, "upstream"), k, u)
            if (weir_buf_printf(&up, "%s%s", k ? ", " : "", json_string_value(u))) break;
        cli_table_row(&t, json_string_value(json_object_get(task, "name")),
                      json_string_value(json_object_get(task, "kind")), json_string_value(json_object_get(task, "step")),
                      up.data);
        weir_buf_free(&up);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

int weir_cmd_pipeline(int argc, char **argv) {
    const char *usage = "usage: weir pipeline show NAME [--version current|N|ID] [--url URL] [--token T] [-o json]\n\n"
                        "Shows a pipeline: its versions and the plan of one version (the current one by\n"
                        "default): every task with its kind, step and upstream tasks.\n";
    if (argc < 2 || cli_wants_help(argc, argv)) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? WEIR_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "show")) {
        fprintf(stderr, "weir pipeline: unknown verb \"%s\"\n%s", argv[1], usage);
        return WEIR_EXIT_USAGE;
    }
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    const char *version = "current";
    int first = client_flags(argc - 1, argv + 1, usage, &cfg, &json, &version, &rc);
    if (first < 0) return rc;
    first++;
    if (first != argc - 1) { fprintf(stderr, "weir pipeline show: give one pipeline name\n"); return 2; }
    const char *name = argv[first];
    if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(name) || strlen(name) > 63 ||
        strspn(version, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(version) || strlen(version) > 64) {
        fprintf(stderr, "weir pipeline show: \"%s\" version \"%s\" is not a valid name or version\n", name, version);
        return WEIR_EXIT_USAGE;
    }
    char path[256];
    weir_response_t pipe, ver;
    snprintf(path, sizeof path, "/v1/pipelines/%s", name);
    if ((rc = cli_call(&cfg, "GET", path, NULL, &pipe))) { weir_response_free(&pipe); return rc; }
    snprintf(path, sizeof path, "/v1/pipelines/%s/versions/%s", name, version);
    if ((rc = cli_call(&cfg, "GET", path, NULL, &ver))) {
        weir_response_free(&pipe);
        weir_response_free(&ver);
        return rc;
    }
    if (json) {
        json_object_set(ver.json, "versions", json_object_get(pipe.json, "versions"));
        char *s = json_dumps(ver.json, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    } else {
        json_t *plan = json_object_get(ver.json, "plan");
        char when[32];
        printf("pipeline  %s\n", name);
        const char *desc = json_string_value(json_object_get(plan, "description"));
        if (desc && *desc) printf("about     %s\n", desc);
        printf("version   %lld (%s)%s\n", (long long)json_integer_value(json_object_get(ver.json, "seq")),
               json_string_value(json_object_get(ver.json, "id")),
               json_is_true(json_object_get(ver.json, "current")) ? ", current" : "");
        printf("applied   %s by %s\n", cli_time(json_string_value(json_object_get(ver.json, "created_at")), when,
                                              sizeof when),
               json_string_value(json_object_get(ver.json, "created_by")));
        json_t *sched = json_object_get(plan, "schedule");
        if (json_is_object(sched))
            printf("schedule  %s (%s)\n", json_string_value(json_object_get(sched, "cron")),
                   json_string_value(json_object_get(sched, "timezone")));
        printf("\n");
        print_plan_tasks(plan);
        printf("\n");
        cli_table_t t;
        cli_table_init(&t, 4);
        cli_table_row(&t, "VERSION", "ID", "TASKS", "APPLIED");
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(pipe.json, "versions"), i, v) {
            char seq[40], id[16], tasks[32];
            snprintf(seq, sizeof seq, "%lld%s", (long long)json_integer_value(json_object_get(v, "seq")),
                     json_is_true(json_object_get(v, "current")) ? " (current)" : "");
            snprintf(id, sizeof id, "%.12s", json_string_value(json_object_get(v, "id")) ?: "");
            snprintf(tasks, sizeof tasks, "%lld", (long long)json_integer_value(json_object_get(v, "tasks")));
            cli_table_row(&t, seq, id, tasks, cli_time(json_string_value(json_object_get(v, "created_at")), when,
                                                       sizeof when));
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
    }
    weir_response_free(&pipe);
    weir_response_free(&ver);
    return 0;
}
