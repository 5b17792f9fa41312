/* signals.c — `weir signal KIND` sends a signal, as a monitor would; `weir signals` lists the
 * latest ones with what each caused: the run it started, or why it started none. A thin client
 * of /v1/signals; the rules are decided by the scheduler (migrations/0004_signals.sql). */
#include "cli/runs.h"
#include "common/util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int weir_cmd_signal(int argc, char **argv) {
    const char *usage =
        "usage: weir signal KIND [--subject S] [--value V] [--attr K=V]... [--dedup-key K] [-o json]\n\n"
        "Sends a signal to the scheduler, which stores it and starts the runs whose trigger rules\n"
        "(on_signal in a pipeline) it matches: same kind and subject, a value at least the rule's\n"
        "threshold, outside its cooldown, no run of the same key still active. Prints what it caused.\n\n"
        "  --subject S            what it is about, e.g. model:churn\n"
        "  --value V              a number (a drift share, an error rate)\n"
        "  --attr K=V             an attribute (repeat for more)\n"
        "  --dedup-key K          count signals with this key once while their run is active\n" COMMON_HELP;
    enum { OPT_SUBJECT = CLI_OPT_FIRST_FREE, OPT_VALUE, OPT_ATTR, OPT_DEDUP };
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"subject", required_argument, NULL, OPT_SUBJECT},
                                         {"value", required_argument, NULL, OPT_VALUE},
                                         {"attr", required_argument, NULL, OPT_ATTR},
                                         {"dedup-key", required_argument, NULL, OPT_DEDUP},
                                         {0, 0, 0, 0}};
    weir_config_t cfg = {0};
    int json = 0, rc = 0, opt;
    json_t *body = json_object(), *attrs = json_object();
    optind = 1;
    while ((opt = cli_next_flag(argc, argv, "o:h", opts, usage, &cfg, &json, &rc)) != -1) {
        if (opt == -2) goto out;
        if (opt == OPT_SUBJECT) json_object_set_new(body, "subject", json_string(optarg));
        else if (opt == OPT_DEDUP) json_object_set_new(body, "dedup_key", json_string(optarg));
        else if (opt == OPT_VALUE) {
            char *end;
            double v = strtod(optarg, &end);
            if (*end || end == optarg || !isfinite(v)) {
                fprintf(stderr, "weir signal: --value \"%s\" must be a number\n", optarg);
                rc = WEIR_EXIT_USAGE;
                goto out;
            }
            json_object_set_new(body, "value", json_real(v));
        } else if (opt == OPT_ATTR) {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "weir signal: --attr \"%s\" must be KEY=VALUE\n", optarg);
                rc = WEIR_EXIT_USAGE;
                goto out;
            }
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - optarg), optarg);
            json_object_set_new(attrs, key, json_string(eq + 1));
        } else {
            fputs(usage, stderr);
            rc = WEIR_EXIT_USAGE;
            goto out;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "weir signal: give one KIND\n%s", usage);
        rc = WEIR_EXIT_USAGE;
        goto out;
    }
    weir_config_load(&cfg);
    json_object_set_new(body, "kind", json_string(argv[optind]));
    if (json_object_size(attrs)) json_object_set(body, "attributes", attrs);
    weir_response_t res;
    if ((rc = cli_call(&cfg, "POST", "/v1/signals", body, &res))) { weir_response_free(&res); goto out; }
    if (json) cli_print_json(res.json);
    else {
        printf("signal %lld (%s): %s\n", (long long)json_integer_value(json_object_get(res.json, "signal")),
               argv[optind], json_string_value(json_object_get(res.json, "outcome")));
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(res.json, "rules"), i, r) {
            json_t *run = json_object_get(r, "run");
            const char *detail = json_string_value(json_object_get(r, "detail"));
            printf("  %s rule %lld: %s", json_string_value(json_object_get(r, "pipeline")),
                   (long long)json_integer_value(json_object_get(r, "rule")), json_string_value(json_object_get(r, "outcome")));
            if (json_is_integer(run)) printf(", run %lld", (long long)json_integer_value(run));
            else if (detail && *detail) printf(": %s", detail);
            printf("\n");
        }
        if (!json_array_size(json_object_get(res.json, "rules"))) printf("  no trigger rule matches it\n");
    }
    weir_response_free(&res);
out:
    json_decref(body);
    json_decref(attrs);
    return rc;
}

int weir_cmd_signals(int argc, char **argv) {
    const char *usage = "usage: weir signals [--limit N] [-o json]\n\n"
                        "The latest signals (default 50), newest first, with what each caused: the run it\n"
                        "started, or why it started none (below threshold, cooldown, duplicate, run active).\n\n"
                        COMMON_HELP;
    enum { OPT_LIMIT = CLI_OPT_FIRST_FREE };
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {"limit", required_argument, NULL, OPT_LIMIT}, {0, 0, 0, 0}};
    weir_config_t cfg = {0};
    int json = 0, rc = 0, opt;
    long limit = 50;
    optind = 1;
    while ((opt = cli_next_flag(argc, argv, "o:h", opts, usage, &cfg, &json, &rc)) != -1) {
        if (opt == -2) return rc;
        char *end; /* OPT_LIMIT: the table has no other flag of its own */
        if ((limit = strtol(optarg, &end, 10)) >= 1 && limit <= 1000 && !*end) continue;
        fprintf(stderr, "weir signals: --limit must be a number from 1 to 1000\n%s", usage);
        return WEIR_EXIT_USAGE;
    }
    if (optind < argc) { fprintf(stderr, "weir signals: unexpected argument \"%s\"\n%s", argv[optind], usage); return WEIR_EXIT_USAGE; }
    weir_config_load(&cfg);
    char path[64];
    snprintf(path, sizeof path, "/v1/signals?limit=%ld", limit);
    weir_response_t res;
    if ((rc = cli_call(&cfg, "GET", path, NULL, &res))) { weir_response_free(&res); return rc; }
    json_t *list = json_object_get(res.json, "signals");
    if (json) cli_print_json(list);
    else if (!json_array_size(list)) printf("no signals yet: weir signal KIND, POST /v1/signals, or a step's emit_signal\n");
    else {
        cli_table_t t;
        cli_table_init(&t, 8);
        cli_table_row(&t, "ID", "RECEIVED", "KIND", "SUBJECT", "VALUE", "SOURCE", "OUTCOME", "DETAIL");
        size_t i;
        json_t *s;
        json_array_foreach(list, i, s) {
            char id[32], when[32], value[64];
            cli_table_row(&t, cli_field(s, "id", id, sizeof id),
                          cli_time(json_string_value(json_object_get(s, "received_at")), when, sizeof when),
                          json_string_value(json_object_get(s, "kind")), json_string_value(json_object_get(s, "subject")),
                          cli_field(s, "value", value, sizeof value), json_string_value(json_object_get(s, "source")),
                          json_string_value(json_object_get(s, "outcome")), json_string_value(json_object_get(s, "detail")));
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
    }
    weir_response_free(&res);
    return 0;
}

int weir_cmd_schedules(int argc, char **argv) {
    const char *usage = "usage: weir schedules [-o json]\n\n"
                        "The pipelines' cron schedules: expression, time zone, catch-up, the next fire time\n"
                        "and the last run one started.\n\n" COMMON_HELP;
    static const struct option opts[] = {CLI_COMMON_OPTIONS, {0, 0, 0, 0}};
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    optind = 1;
    if (cli_next_flag(argc, argv, "o:h", opts, usage, &cfg, &json, &rc) != -1) return rc; /* only common flags */
    if (optind < argc) { fprintf(stderr, "weir schedules: unexpected argument \"%s\"\n%s", argv[optind], usage); return WEIR_EXIT_USAGE; }
    weir_config_load(&cfg);
    weir_response_t res;
    if ((rc = cli_call(&cfg, "GET", "/v1/schedules", NULL, &res))) { weir_response_free(&res); return rc; }
    json_t *list = json_object_get(res.json, "schedules");
    if (json) cli_print_json(list);
    else if (!json_array_size(list)) printf("no schedules: pipeline \"x\" { schedule = \"0 3 * * *\" } declares one\n");
    else {
        cli_table_t t;
        cli_table_init(&t, 6);
        cli_table_row(&t, "PIPELINE", "CRON", "TIMEZONE", "CATCHUP", "NEXT", "LAST RUN");
        size_t i;
        json_t *s;
        json_array_foreach(list, i, s) {
            char next[32], run[32];
            cli_table_row(&t, json_string_value(json_object_get(s, "pipeline")), json_string_value(json_object_get(s, "cron")),
                          json_string_value(json_object_get(s, "timezone")),
                          json_is_true(json_object_get(s, "catchup")) ? "yes" : "no",
                          cli_time(json_string_value(json_object_get(s, "next_fire_at")), next, sizeof next),
                          cli_field(s, "last_run", run, sizeof run));
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
    }
    weir_response_free(&res);
    return 0;
}
