/* admin.c — commands that run a process or touch PostgreSQL directly:
 * `weir scheduler`, `weir migrate`, `weir token`. Tokens are created here,
 * not over HTTP, because the first token has no token to authenticate with. */
#include "cli/cli.h"
#include "common/error.h"
#include "common/sha256.h"
#include "common/util.h"
#include "engine/migrate.h"
#include "engine/sched.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const struct option db_opts[] = {
    {"database", required_argument, NULL, 'd'},
    {"dir", required_argument, NULL, 'D'},
    {"help", no_argument, NULL, 'h'},
    {0, 0, 0, 0},
};

int weir_cmd_migrate(int argc, char **argv) {
    const char *usage = "usage: weir migrate [--database URL] [--dir DIR]\n\n"
                        "Applies the migrations not yet applied, each in its own transaction, and refuses\n"
                        "to go on when an applied file was edited. DIR defaults to the migrations built\n"
                        "into this binary. The database comes from --database, WEIR_DATABASE_URL, or\n"
                        "the file `weir up` wrote.\n";
    weir_config_t cfg = {0};
    const char *dir = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "d:h", db_opts, NULL)) != -1) {
        if (opt == 'd') snprintf(cfg.database, sizeof cfg.database, "%s", optarg);
        else if (opt == 'D') dir = optarg;
        else if (opt == 'h') { fputs(usage, stdout); return 0; }
        else { fputs(usage, stderr); return WEIR_EXIT_USAGE; }
    }
    if (optind < argc) { fprintf(stderr, "weir migrate: unexpected argument \"%s\"\n", argv[optind]); return 2; }
    char err[1024];
    weir_migration_t *loaded = NULL;
    size_t n = weir_migrations_count;
    const weir_migration_t *m = weir_migrations;
    if (dir) {
        if (weir_migrations_load_dir(dir, &loaded, &n, err, sizeof err)) {
            fprintf(stderr, "weir migrate: %s\n", err);
            return WEIR_EXIT_FAIL;
        }
        m = loaded;
    }
    PGconn *conn = cli_db_connect(&cfg);
    if (!conn) { weir_migrations_free(loaded, dir ? n : 0); return WEIR_EXIT_UNREACHABLE; }
    int applied = 0;
    int rc = weir_migrate(conn, m, n, 1, &applied, err, sizeof err);
    PQfinish(conn);
    if (loaded) weir_migrations_free(loaded, n);
    if (rc) {
        fprintf(stderr, "weir migrate: %s\n", err);
        return WEIR_EXIT_FAIL;
    }
    printf("%d migration%s applied, %zu in total; the schema is up to date\n", applied, applied == 1 ? "" : "s", n);
    return 0;
}

/* Creates a token: prints it once, stores only its SHA-256. */
int weir_token_create(PGconn *conn, const char *role, const char *name, char *token, size_t size) {
    unsigned char raw[20];
    if (size < 46 || weir_random_bytes(raw, sizeof raw)) return WEIR_EIO;
    memcpy(token, "weir_", 5);
    weir_hex(raw, sizeof raw, token + 5);
    char hash[65], prefix[16];
    weir_sha256_hex(token, strlen(token), hash);
    snprintf(prefix, sizeof prefix, "%.12s", token);
    const char *params[4] = {name, role, hash, prefix};
    PGresult *r = PQexecParams(conn, "INSERT INTO api_tokens (name, role, hash, prefix) VALUES ($1, $2, $3, $4)", 4,
                               NULL, params, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : WEIR_EDB;
    if (rc) fprintf(stderr, "weir token: %s", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

int weir_cmd_token(int argc, char **argv) {
    const char *usage =
        "usage: weir token create --role worker|operator|viewer [--name NAME] [--database URL]\n"
        "       weir token list [--database URL] [-o json]\n"
        "       weir token revoke ID [--database URL]\n\n"
        "Tokens authenticate workers and people to the scheduler. `create` prints the token once;\n"
        "only its SHA-256 is stored. Roles: viewer reads, operator reads and changes, worker runs tasks.\n";
    static const struct option opts[] = {
        {"role", required_argument, NULL, 'r'}, {"name", required_argument, NULL, 'n'},
        {"database", required_argument, NULL, 'd'}, {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0},
    };
    if (argc < 2 || cli_wants_help(argc, argv)) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? WEIR_EXIT_USAGE : 0;
    }
    const char *verb = argv[1];
    weir_config_t cfg = {0};
    const char *role = NULL, *name = NULL;
    int json = 0, opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "r:n:d:o:h", opts, NULL)) != -1) {
        if (opt == 'r') role = optarg;
        else if (opt == 'n') name = optarg;
        else if (opt == 'd') snprintf(cfg.database, sizeof cfg.database, "%s", optarg);
        else if (opt == 'o') { if (cli_output_format(optarg, &json)) return WEIR_EXIT_USAGE; }
        else { fputs(usage, stderr); return WEIR_EXIT_USAGE; }
    }
    if (!strcmp(verb, "create")) {
        if (!role || (strcmp(role, "worker") && strcmp(role, "operator") && strcmp(role, "viewer"))) {
            fprintf(stderr, "weir token create: --role must be worker, operator or viewer\n");
            return WEIR_EXIT_USAGE;
        }
        PGconn *conn = cli_db_connect(&cfg);
        if (!conn) return WEIR_EXIT_UNREACHABLE;
        char token[64];
        int rc = weir_token_create(conn, role, name ? name : role, token, sizeof token);
        PQfinish(conn);
        if (rc) return WEIR_EXIT_FAIL;
        printf("%s\n", token);
        return 0;
    }
    if (!strcmp(verb, "list")) {
        PGconn *conn = cli_db_connect(&cfg);
        if (!conn) return WEIR_EXIT_UNREACHABLE;
        PGresult *r = PQexec(conn,
                             "SELECT coalesce(json_agg(json_build_object('id', id, 'name', name, 'role', role, "
                             "'prefix', prefix, 'created_at', created_at, 'revoked_at', revoked_at, 'expires_at', expires_at, "
                             "'state', CASE WHEN revoked_at IS NOT NULL THEN 'revoked' WHEN expires_at <= now() "
                             "THEN 'expired' ELSE 'active' END) ORDER BY id), "
                             "'[]') FROM api_tokens");
        int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : WEIR_EXIT_FAIL;
        if (rc) fprintf(stderr, "weir token list: %s", PQresultErrorMessage(r));
        else if (json) printf("%s\n", PQgetvalue(r, 0, 0));
        else {
            json_t *list = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
            cli_table_t t;
            cli_table_init(&t, 5);
            cli_table_row(&t, "ID", "NAME", "ROLE", "PREFIX", "STATE");
            size_t i;
            json_t *e;
            json_array_foreach(list, i, e) {
                char id[32];
                snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(e, "id")));
                cli_table_row(&t, id, json_string_value(json_object_get(e, "name")),
                              json_string_value(json_object_get(e, "role")),
                              json_string_value(json_object_get(e, "prefix")),
                              json_string_value(json_object_get(e, "state")));
            }
            cli_table_print(&t, stdout);
            cli_table_free(&t);
            json_decref(list);
        }
        PQclear(r);
        PQfinish(conn);
        return rc;
    }
    if (!strcmp(verb, "revoke")) {
        if (optind >= argc) { fprintf(stderr, "weir token revoke: which token? give its ID\n"); return 2; }
        PGconn *conn = cli_db_connect(&cfg);
        if (!conn) return WEIR_EXIT_UNREACHABLE;
        const char *params[1] = {argv[optind]};
        PGresult *r = PQexecParams(conn,
                                   "UPDATE api_tokens SET revoked_at = now() WHERE id::text = $1 "
                                   "AND revoked_at IS NULL RETURNING id",
                                   1, NULL, params, NULL, NULL, 0);
        int rc = PQresultStatus(r) != PGRES_TUPLES_OK ? WEIR_EXIT_FAIL : PQntuples(r) ? 0 : WEIR_EXIT_NOTFOUND;
        if (rc == WEIR_EXIT_FAIL) fprintf(stderr, "weir token revoke: %s", PQresultErrorMessage(r));
        else if (rc) fprintf(stderr, "weir token revoke: no active token with id %s\n", argv[optind]);
        else printf("revoked token %s\n", argv[optind]);
        PQclear(r);
        PQfinish(conn);
        return rc;
    }
    fprintf(stderr, "weir token: unknown verb \"%s\"\n%s", verb, usage);
    return WEIR_EXIT_USAGE;
}

/* "host:port", ":port" or "port". */
static int parse_listen(const char *s, char *host, size_t hostsize, int *port) {
    const char *colon = strrchr(s, ':');
    const char *p = colon ? colon + 1 : s;
    char *end;
    long v = strtol(p, &end, 10);
    if (!*p || *end || v < 0 || v > 65535) return -1;
    if (colon && colon > s) snprintf(host, hostsize, "%.*s", (int)(colon - s), s);
    *port = (int)v;
    return 0;
}

int weir_cmd_scheduler(int argc, char **argv) {
    const char *usage =
        "usage: weir scheduler [--database URL] [--listen [HOST:]PORT] [--port-file FILE]\n"
        "                      [--max-body SIZE] [--max-header SIZE] [--request-timeout DUR]\n"
        "                      [--idle-timeout DUR] [--lua-memory SIZE] [--lua-instructions N]\n"
        "                      [--lease DUR] [--max-log SIZE] [--artifacts DIR] [--tick DUR]\n\n"
        "Runs the scheduler: the HTTP API on 127.0.0.1:8470 by default, state in PostgreSQL.\n"
        "Refuses to start on a database whose migrations are missing or edited.\n\n"
        "  --lease DUR      a claimed task's lease, renewed by worker heartbeats (default 15s)\n"
        "  --max-log SIZE   log kept per attempt; the rest is dropped (default 64MiB)\n"
        "  --artifacts DIR  the artifact store (default $WEIR_HOME/artifacts)\n"
        "  --tick DUR       how often leases, retries and deadlines are checked (default 200ms)\n";
    static const struct option opts[] = {
        {"database", required_argument, NULL, 'd'}, {"listen", required_argument, NULL, 'l'},
        {"port-file", required_argument, NULL, 'P'}, {"max-body", required_argument, NULL, 'B'},
        {"max-header", required_argument, NULL, 'H'}, {"request-timeout", required_argument, NULL, 'T'},
        {"idle-timeout", required_argument, NULL, 'I'}, {"lua-memory", required_argument, NULL, 'M'},
        {"lua-instructions", required_argument, NULL, 'N'}, {"lease", required_argument, NULL, 'L'},
        {"max-log", required_argument, NULL, 'G'}, {"artifacts", required_argument, NULL, 'A'},
        {"tick", required_argument, NULL, 'K'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0},
    };
    weir_config_t cfg = {0};
    weir_sched_opts_t o;
    memset(&o, 0, sizeof o);
    char host[256] = "127.0.0.1";
    o.port = 8470;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "d:l:h", opts, NULL)) != -1) {
        int64_t v = 0;
        int bad = 0;
        switch (opt) {
        case 'd': snprintf(cfg.database, sizeof cfg.database, "%s", optarg); break;
        case 'l': bad = parse_listen(optarg, host, sizeof host, &o.port); break;
        case 'P': o.port_file = optarg; break;
        case 'B': bad = weir_parse_size(optarg, &v); o.http.max_body_bytes = (size_t)v; break;
        case 'H': bad = weir_parse_size(optarg, &v); o.http.max_header_bytes = (size_t)v; break;
        case 'T': bad = weir_parse_duration(optarg, &v); o.http.request_timeout_ms = (uint64_t)v; break;
        case 'I': bad = weir_parse_duration(optarg, &v); o.http.idle_timeout_ms = (uint64_t)v; break;
        case 'M': bad = weir_parse_size(optarg, &v); o.dsl.mem_max = (size_t)v; break;
        case 'N': bad = weir_parse_size(optarg, &v); o.dsl.instr_max = (uint64_t)v; break;
        case 'L': bad = weir_parse_duration(optarg, &v) || v < 1000 || v > 3600000; o.lease_ms = (int)v; break;
        case 'G': bad = weir_parse_size(optarg, &v) || v < 1024; o.max_log_bytes = v; break;
        case 'A': o.artifacts_dir = optarg; break;
        case 'K': bad = weir_parse_duration(optarg, &v) || v < 10 || v > 60000; o.tick_ms = (int)v; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return WEIR_EXIT_USAGE;
        }
        if (bad) {
            fprintf(stderr, "weir scheduler: bad value \"%s\" for --%s\n", optarg,
                    opt == 'l' ? "listen" : "a size or duration flag");
            return WEIR_EXIT_USAGE;
        }
    }
    weir_config_load(&cfg);
    if (!cfg.database[0]) {
        fprintf(stderr, "weir scheduler: no database: pass --database URL or set WEIR_DATABASE_URL\n");
        return WEIR_EXIT_USAGE;
    }
    o.database = cfg.database;
    o.host = host;
    char artifacts[1100];
    if (!o.artifacts_dir) {
        snprintf(artifacts, sizeof artifacts, "%s/artifacts", cfg.home);
        o.artifacts_dir = artifacts;
    }
    return weir_sched_run(&o);
}
