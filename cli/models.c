/* models.c — `weir models`: the model registry for operators (docs/registry.md). Lists models,
 * shows one (its versions with their key metrics, its aliases, the history of alias moves), and
 * moves an alias: promote a version, or roll the alias back one move. A thin client of
 * /v1/models; what a deploy registers and when an alias may move are decided by the scheduler
 * (migrations/0003_registry.sql), never here. */
#include "cli/runs.h"
#include "common/util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>


/* The metrics `models show` gives a column each, when any version reports them. */
static const char *const key_metrics[] = {"accuracy", "f1_macro", "roc_auc", "log_loss"};
static const char *const key_heads[] = {"ACCURACY", "F1_MACRO", "ROC_AUC", "LOG_LOSS"};
enum { NKEY = sizeof key_metrics / sizeof key_metrics[0] };

/* Names as the registry allows them (models.name, model_aliases.alias); prints why not. */
static int model_name_ok(const char *cmd, const char *s) {
    if (weir_model_name_ok(s)) return 1;
    fprintf(stderr, "weir %s: \"%s\" is not a model name (lowercase letters, digits, \".\", \"-\" and \"_\", "
                    "starting with a letter, at most 63 characters)\n", cmd, s);
    return 0;
}

static int alias_ok(const char *cmd, const char *s) {
    size_t n = strlen(s);
    if (n && n <= 63 && s[0] >= 'a' && s[0] <= 'z' && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n)
        return 1;
    fprintf(stderr, "weir %s: --alias \"%s\" is not an alias name (lowercase letters, digits, \"-\" and \"_\", "
                    "starting with a letter, at most 63 characters)\n", cmd, s);
    return 0;
}

/* The common flags, --help, and the command's own (--alias, --limit). Returns the index of the
 * first argument, or -1 with *rc set. */
static int parse_flags(int argc, char **argv, const char *cmd, const char *usage, weir_config_t *cfg, int *json,
                       const char **alias, long *limit, int *rc) {
    enum { OPT_ALIAS = CLI_OPT_FIRST_FREE, OPT_LIMIT };
    static const struct option opts[] = {CLI_COMMON_OPTIONS,
                                         {"alias", required_argument, NULL, OPT_ALIAS},
                                         {"limit", required_argument, NULL, OPT_LIMIT},
                                         {0, 0, 0, 0}};
    int opt;
    optind = 1;
    while ((opt = cli_next_flag(argc, argv, "o:h", opts, usage, cfg, json, rc)) != -1) {
        if (opt == -2) return -1;
        if (opt == OPT_ALIAS && alias) {
            if (!alias_ok(cmd, optarg)) { *rc = WEIR_EXIT_USAGE; return -1; }
            *alias = optarg;
        } else if (opt == OPT_LIMIT && limit) {
            char *end;
            *limit = strtol(optarg, &end, 10);
            if (*end || end == optarg || *limit < 1 || *limit > 1000) {
                fprintf(stderr, "weir %s: --limit \"%s\" must be a number from 1 to 1000\n", cmd, optarg);
                *rc = WEIR_EXIT_USAGE;
                return -1;
            }
        } else {
            fprintf(stderr, "weir %s: option not accepted here\n", cmd);
            fputs(usage, stderr);
            *rc = WEIR_EXIT_USAGE;
            return -1;
        }
    }
    weir_config_load(cfg);
    return optind;
}

/* "production=3, candidate=2": production first, the others as the API lists them. */
static void aliases_text(const json_t *aliases, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = '\0';
    json_t *prod = json_object_get(aliases, "production");
    if (json_is_integer(prod))
        n += (size_t)snprintf(buf, size, "production=%lld", (long long)json_integer_value(prod));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)aliases, k, v) {
        if (!strcmp(k, "production") || n >= size) continue;
        n += (size_t)snprintf(buf + n, size - n, "%s%s=%lld", n ? ", " : "", k, (long long)json_integer_value(v));
    }
}

static const char *num_text(const json_t *v, char *buf, size_t size) {
    if (json_is_integer(v)) snprintf(buf, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) snprintf(buf, size, "%.4g", json_real_value(v));
    else return NULL;
    return buf;
}

/* ---- weir models [list] ------------------------------------------------------------------- */

static int models_list(int argc, char **argv) {
    const char *usage = "usage: weir models [list] [-o json]\n\n"
                        "Lists the registry's models: how many versions each has, where its aliases\n"
                        "point, and when it last changed (a new version or an alias move).\n\n" COMMON_HELP;
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    int first = parse_flags(argc, argv, "models", usage, &cfg, &json, NULL, NULL, &rc);
    if (first < 0) return rc;
    if (first < argc) {
        fprintf(stderr, "weir models: unexpected argument \"%s\"\n%s", argv[first], usage);
        return WEIR_EXIT_USAGE;
    }
    weir_response_t res;
    if ((rc = cli_call(&cfg, "GET", "/v1/models", NULL, &res))) { weir_response_free(&res); return rc; }
    json_t *list = json_object_get(res.json, "models");
    if (json) cli_print_json(list);
    else if (!json_array_size(list))
        printf("no models yet: a pipeline's deploy task registers one (docs/registry.md)\n");
    else {
        cli_table_t t;
        cli_table_init(&t, 4);
        cli_table_row(&t, "NAME", "VERSIONS", "ALIASES", "UPDATED");
        size_t i;
        json_t *m;
        json_array_foreach(list, i, m) {
            char versions[32], aliases[512], when[32];
            aliases_text(json_object_get(m, "aliases"), aliases, sizeof aliases);
            cli_table_row(&t, json_string_value(json_object_get(m, "name")),
                          cli_field(m, "versions", versions, sizeof versions), aliases,
                          cli_time(json_string_value(json_object_get(m, "updated_at")), when, sizeof when));
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
    }
    weir_response_free(&res);
    return 0;
}

/* ---- weir models show --------------------------------------------------------------------- */

static void print_versions(const json_t *model) {
    json_t *versions = json_object_get(model, "versions");
    int have[NKEY] = {0}, ncols = 2;
    size_t i;
    json_t *v;
    json_array_foreach(versions, i, v)
        for (int k = 0; k < NKEY; k++)
            if (json_is_number(json_object_get(json_object_get(v, "metrics"), key_metrics[k]))) have[k] = 1;
    for (int k = 0; k < NKEY; k++) ncols += have[k];
    ncols += 3;
    cli_table_t t;
    cli_table_init(&t, ncols);
    const char *cells[2 + NKEY + 3];
    int c = 0;
    cells[c++] = "VERSION";
    cells[c++] = "ALIASES";
    for (int k = 0; k < NKEY; k++)
        if (have[k]) cells[c++] = key_heads[k];
    cells[c++] = "RUN";
    cells[c++] = "ARTIFACT";
    cells[c++] = "CREATED";
    cli_table_rowv(&t, cells);
    json_array_foreach(versions, i, v) {
        char ver[32], aliases[256] = "", metric[NKEY][32], run[32], sha[16], when[32];
        size_t k2, n = 0;
        json_t *al;
        json_array_foreach(json_object_get(v, "aliases"), k2, al)
            if (n < sizeof aliases)
                n += (size_t)snprintf(aliases + n, sizeof aliases - n, "%s%s", n ? ", " : "", json_string_value(al) ?: "?");
        c = 0;
        cells[c++] = cli_field(v, "version", ver, sizeof ver);
        cells[c++] = aliases;
        for (int k = 0; k < NKEY; k++)
            if (have[k])
                cells[c++] = num_text(json_object_get(json_object_get(v, "metrics"), key_metrics[k]), metric[k],
                                      sizeof metric[k]);
        cells[c++] = cli_field(v, "run", run, sizeof run);
        const char *s = json_string_value(json_object_get(json_object_get(v, "artifact"), "sha256"));
        snprintf(sha, sizeof sha, "%.12s", s ? s : "");
        cells[c++] = sha;
        cells[c++] = cli_time(json_string_value(json_object_get(v, "created_at")), when, sizeof when);
        cli_table_rowv(&t, cells);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    long long total = json_integer_value(json_object_get(model, "versions_total"));
    if ((size_t)total > json_array_size(versions))
        printf("(the newest %zu of %lld versions; --limit shows more)\n", json_array_size(versions), total);
}

static void print_history(const json_t *model) {
    json_t *history = json_object_get(model, "history");
    cli_table_t t;
    cli_table_init(&t, 6);
    cli_table_row(&t, "MOVE", "ALIAS", "VERSION", "BY", "REASON", "AT");
    size_t i;
    json_t *h;
    json_array_foreach(history, i, h) {
        char id[32], move[96], from[32], to[32], reason[512], when[32];
        snprintf(id, sizeof id, "#%lld", (long long)json_integer_value(json_object_get(h, "id")));
        snprintf(move, sizeof move, "%s → %s", cli_field(h, "from_version", from, sizeof from) ?: "-",
                 cli_field(h, "to_version", to, sizeof to) ?: "?");
        json_t *undone = json_object_get(h, "undone_by");
        int n = snprintf(reason, sizeof reason, "%s", json_string_value(json_object_get(h, "reason")) ?: "");
        if (json_is_integer(undone) && n >= 0 && (size_t)n < sizeof reason)
            snprintf(reason + n, sizeof reason - (size_t)n, " (undone by #%lld)", (long long)json_integer_value(undone));
        cli_table_row(&t, id, json_string_value(json_object_get(h, "alias")), move,
                      json_string_value(json_object_get(h, "actor")), reason,
                      cli_time(json_string_value(json_object_get(h, "at")), when, sizeof when));
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    long long total = json_integer_value(json_object_get(model, "history_total"));
    if ((size_t)total > json_array_size(history))
        printf("(the newest %zu of %lld moves; --limit shows more)\n", json_array_size(history), total);
}

static int models_show(int argc, char **argv) {
    const char *usage = "usage: weir models show NAME [--limit N] [-o json]\n\n"
                        "Shows a model: where its aliases point, its versions (newest first) with their\n"
                        "key metrics (accuracy, f1_macro, roc_auc, log_loss when reported), the run that\n"
                        "made each and when, and the history of alias moves (newest first). -o json has\n"
                        "everything, each version's lineage included.\n\n"
                        "  --limit N              at most N versions and N moves (default 100, at most 1000)\n" COMMON_HELP;
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    long limit = 0;
    int first = parse_flags(argc, argv, "models show", usage, &cfg, &json, NULL, &limit, &rc);
    if (first < 0) return rc;
    if (first != argc - 1) { fprintf(stderr, "weir models show: give one model name\n%s", usage); return WEIR_EXIT_USAGE; }
    const char *name = argv[first];
    if (!model_name_ok("models show", name)) return WEIR_EXIT_USAGE;
    char path[160];
    int n = snprintf(path, sizeof path, "/v1/models/%s", name);
    if (limit) snprintf(path + n, sizeof path - (size_t)n, "?limit=%ld", limit);
    weir_response_t res;
    if ((rc = cli_call(&cfg, "GET", path, NULL, &res))) {
        if (rc == WEIR_EXIT_NOTFOUND) fprintf(stderr, "  `weir models` lists the models there are\n");
        weir_response_free(&res);
        return rc;
    }
    const json_t *m = res.json;
    if (json) cli_print_json(m);
    else {
        char b[512], b2[64];
        printf("%-10s%s\n", "model", json_string_value(json_object_get(m, "name")) ?: "?");
        const char *desc = json_string_value(json_object_get(m, "description"));
        if (desc && *desc) printf("%-10s%s\n", "about", desc);
        aliases_text(json_object_get(m, "aliases"), b, sizeof b);
        printf("%-10s%s\n", "aliases", *b ? b : "none");
        printf("%-10s%s\n", "versions", cli_field(m, "versions_total", b2, sizeof b2) ?: "0");
        printf("%-10s%s\n", "created", cli_time(json_string_value(json_object_get(m, "created_at")), b2, sizeof b2));
        printf("%-10s%s\n", "updated", cli_time(json_string_value(json_object_get(m, "updated_at")), b2, sizeof b2));
        if (json_array_size(json_object_get(m, "versions"))) {
            printf("\n");
            print_versions(m);
        }
        if (json_array_size(json_object_get(m, "history"))) {
            printf("\nalias moves, newest first:\n");
            print_history(m);
        }
    }
    weir_response_free(&res);
    return 0;
}

/* ---- weir models promote | rollback ------------------------------------------------------- */

/* After an alias move: one line for people. */
static void print_move(const char *name, const json_t *r) {
    char to[32], from[32];
    const char *alias = json_string_value(json_object_get(r, "alias")) ?: "?";
    cli_field(r, "version", to, sizeof to);
    if (!json_is_true(json_object_get(r, "moved"))) {
        printf("model %s: %s is already at version %s; nothing changed\n", name, alias, to);
        return;
    }
    const char *was = cli_field(r, "from_version", from, sizeof from);
    printf("model %s: %s → version %s (%s%s), move #%lld: %s\n", name, alias, to, was ? "was " : "new alias",
           was ? was : "", (long long)json_integer_value(json_object_get(r, "move")),
           json_string_value(json_object_get(r, "reason")) ?: "");
}

/* POSTs an alias move and reports it; the exit code. */
static int post_move(const weir_config_t *cfg, const char *name, const char *verb, json_t *body, int json) {
    char path[160];
    snprintf(path, sizeof path, "/v1/models/%s/%s", name, verb);
    weir_response_t res;
    int rc = cli_call(cfg, "POST", path, body, &res);
    json_decref(body);
    if (rc == WEIR_EXIT_FAIL && res.status == 409)
        fprintf(stderr, "  `weir models show %s` shows the alias's history\n", name);
    else if (rc == WEIR_EXIT_NOTFOUND && strstr(res.error, "no model named"))
        fprintf(stderr, "  `weir models` lists the models there are\n");
    else if (rc == WEIR_EXIT_NOTFOUND)
        fprintf(stderr, "  `weir models show %s` lists its versions and aliases\n", name);
    if (!rc) {
        if (json) cli_print_json(res.json);
        else print_move(name, res.json);
    }
    weir_response_free(&res);
    return rc;
}

static int models_promote(int argc, char **argv) {
    const char *usage = "usage: weir models promote NAME VERSION [--alias A] [-o json]\n\n"
                        "Points the model's alias (default production) at VERSION and records the move in\n"
                        "the alias's history, by you. `weir models rollback` undoes it.\n\n"
                        "  --alias A              the alias to move (default production)\n" COMMON_HELP;
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    const char *alias = "production";
    int first = parse_flags(argc, argv, "models promote", usage, &cfg, &json, &alias, NULL, &rc);
    if (first < 0) return rc;
    if (first != argc - 2) {
        fprintf(stderr, "weir models promote: give a model name and a version\n%s", usage);
        return WEIR_EXIT_USAGE;
    }
    const char *name = argv[first], *vs = argv[first + 1];
    if (!model_name_ok("models promote", name)) return WEIR_EXIT_USAGE;
    const char *digits = vs[0] == 'v' ? vs + 1 : vs;
    char *end;
    long version = strtol(digits, &end, 10);
    if (!*digits || *end || digits[0] == '-' || digits[0] == '+' || version < 1 || version > 2147483647L) {
        fprintf(stderr, "weir models promote: \"%s\" is not a version: versions are numbered 1, 2, 3 "
                        "(see `weir models show %s`)\n", vs, name);
        return WEIR_EXIT_USAGE;
    }
    return post_move(&cfg, name, "promote",
                     json_pack("{s:I, s:s}", "version", (json_int_t)version, "alias", alias), json);
}

static int models_rollback(int argc, char **argv) {
    const char *usage = "usage: weir models rollback NAME [--alias A] [-o json]\n\n"
                        "Undoes the latest move of the model's alias (default production) that was not\n"
                        "undone yet, pointing it back at the version it had before that move. Rolling\n"
                        "back again undoes the move before that one, and so on; it is refused when no\n"
                        "earlier version is left.\n\n"
                        "  --alias A              the alias to roll back (default production)\n" COMMON_HELP;
    weir_config_t cfg = {0};
    int json = 0, rc = 0;
    const char *alias = "production";
    int first = parse_flags(argc, argv, "models rollback", usage, &cfg, &json, &alias, NULL, &rc);
    if (first < 0) return rc;
    if (first != argc - 1) { fprintf(stderr, "weir models rollback: give one model name\n%s", usage); return 2; }
    const char *name = argv[first];
    if (!model_name_ok("models rollback", name)) return WEIR_EXIT_USAGE;
    return post_move(&cfg, name, "rollback", json_pack("{s:s}", "alias", alias), json);
}

int weir_cmd_models(int argc, char **argv) {
    const char *usage = "usage: weir models [VERB] ...    (weir models VERB --help for details)\n\n"
                        "  list                              the models, their versions and aliases (the default)\n"
                        "  show NAME                         a model's versions, aliases and alias history\n"
                        "  promote NAME VERSION [--alias A]  point an alias (default production) at a version\n"
                        "  rollback NAME [--alias A]         undo the alias's latest move (default production)\n";
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) { fputs(usage, stdout); return 0; }
    if (argc < 2 || argv[1][0] == '-' || !strcmp(argv[1], "list") || !strcmp(argv[1], "ls"))
        return argc >= 2 && argv[1][0] != '-' ? models_list(argc - 1, argv + 1) : models_list(argc, argv);
    if (!strcmp(argv[1], "show") || !strcmp(argv[1], "get")) return models_show(argc - 1, argv + 1);
    if (!strcmp(argv[1], "promote")) return models_promote(argc - 1, argv + 1);
    if (!strcmp(argv[1], "rollback")) return models_rollback(argc - 1, argv + 1);
    static const char *const verbs[] = {"list", "show", "promote", "rollback"};
    char hint[128];
    fprintf(stderr, "weir models: unknown verb \"%s\"%s\n%s", argv[1],
            weir_did_you_mean(argv[1], strlen(argv[1]), verbs, 4, hint, sizeof hint), usage);
    return WEIR_EXIT_USAGE;
}
