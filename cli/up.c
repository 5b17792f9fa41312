/* up.c — `weir up`: the embedded default for a laptop. With no database
 * configured it creates a private PostgreSQL cluster under $WEIR_HOME
 * (initdb, pg_ctl; Unix socket only, no TCP port), migrates it, makes an
 * operator token, writes $WEIR_HOME/client.json for the CLI, and runs the
 * scheduler in this process until Ctrl-C, then stops PostgreSQL.
 * It is not a process supervisor and not meant for production. */
#include "cli/cli.h"
#include "common/error.h"
#include "common/sha256.h"
#include "common/util.h"
#include "engine/migrate.h"
#include "engine/sched.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int weir_token_create(PGconn *conn, const char *role, const char *name, char *token, size_t size);

/* PostgreSQL refuses to run as root; as root we run its tools as "postgres". */
static struct passwd *pg_user(void) { return geteuid() == 0 ? getpwnam("postgres") : NULL; }

/* Runs argv quietly (stdout to /dev/null) in a new session, so that a Ctrl-C
 * meant for weir reaches PostgreSQL only through pg_ctl stop. */
static int run_tool(char *const argv[], int quiet) {
    struct passwd *pw = pg_user();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setsid();
        if (pw && (initgroups(pw->pw_name, pw->pw_gid) || setgid(pw->pw_gid) || setuid(pw->pw_uid))) _exit(126);
        /* the postgres user may not be allowed into our working directory (pg_ctl says so) */
        if (pw && chdir("/")) _exit(126);
        if (quiet) {
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0) dup2(fd, 1);
        }
        execv(argv[0], argv);
        fprintf(stderr, "weir up: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Finds PostgreSQL's server tools: WEIR_PG_BIN, PATH, then Debian's /usr/lib/postgresql/N/bin. */
static int find_pg_bin(char *out, size_t size) {
    const char *env = getenv("WEIR_PG_BIN");
    char path[1100];
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return 0;
    }
    const char *p = getenv("PATH");
    while (p && *p) {
        size_t n = strcspn(p, ":");
        snprintf(path, sizeof path, "%.*s/initdb", (int)n, p);
        if (!access(path, X_OK)) { snprintf(out, size, "%.*s", (int)n, p); return 0; }
        p += n + (p[n] == ':');
    }
    DIR *d = opendir("/usr/lib/postgresql");
    int best = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int v = atoi(e->d_name);
        snprintf(path, sizeof path, "/usr/lib/postgresql/%s/bin/initdb", e->d_name);
        if (v > best && !access(path, X_OK)) {
            best = v;
            snprintf(out, size, "/usr/lib/postgresql/%s/bin", e->d_name);
        }
    }
    if (d) closedir(d);
    return best ? 0 : -1;
}

/* Whether the postgres user can reach dir (every ancestor searchable by others or owned by it). */
static int reachable_by(const char *dir, uid_t uid) {
    char path[1024];
    snprintf(path, sizeof path, "%s", dir);
    for (;;) {
        struct stat st;
        if (stat(path, &st) || (!(st.st_mode & S_IXOTH) && st.st_uid != uid)) return 0;
        char *slash = strrchr(path, '/');
        if (!slash || slash == path) return 1;
        *slash = '\0';
    }
}

static int make_dir_for_pg(const char *dir) {
    if (mkdir(dir, 0700) && errno != EEXIST) return -1;
    struct passwd *pw = pg_user();
    return pw && chown(dir, pw->pw_uid, pw->pw_gid) ? -1 : 0;
}

/* A cluster kept apart from its home (root's home is closed to postgres) is found through
 * HOME/pg, a link to it. A cluster there with no link belongs to an earlier home at this path,
 * removed since with its artifacts and tokens: removing the home must start afresh, so that
 * cluster is moved aside (not deleted: its data may still matter) and a new one made. A home
 * from before the link existed (it has client.json) keeps its cluster. 0 or an exit code. */
static int claim_cluster(const char *home, const char *pgdir) {
    char link[1100], pgver[1100], pid[1100], cfgf[1100];
    snprintf(link, sizeof link, "%s/pg", home);
    struct stat st;
    if (!lstat(link, &st)) return 0;
    snprintf(pgver, sizeof pgver, "%s/data/PG_VERSION", pgdir);
    snprintf(cfgf, sizeof cfgf, "%s/client.json", home);
    if (!access(pgver, F_OK) && access(cfgf, F_OK)) {
        snprintf(pid, sizeof pid, "%s/data/postmaster.pid", pgdir);
        if (!access(pid, F_OK)) {
            fprintf(stderr, "weir up: %s holds a running PostgreSQL cluster of an earlier %s; stop it first "
                            "(pg_ctl -D %s/data stop, as the postgres user)\n", pgdir, home, pgdir);
            return WEIR_EXIT_FAIL;
        }
        char aside[1200];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(aside, sizeof aside, "%s.old-%04d%02d%02dT%02d%02d%02d", pgdir, tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (rename(pgdir, aside)) {
            fprintf(stderr, "weir up: cannot move %s aside: %s\n", pgdir, strerror(errno));
            return WEIR_EXIT_FAIL;
        }
        printf("weir up: %s was the cluster of an earlier %s, removed since; it is now %s "
               "(remove it when you no longer need its data)\n", pgdir, home, aside);
    }
    if (make_dir_for_pg(pgdir) || symlink(pgdir, link)) {
        fprintf(stderr, "weir up: cannot link %s to %s: %s\n", link, pgdir, strerror(errno));
        return WEIR_EXIT_FAIL;
    }
    return 0;
}

/* Brings up the private cluster; fills conninfo. 0 or an exit code. */
static int start_private_pg(const weir_config_t *cfg, char *pgdir, size_t pgsize, char *conninfo, size_t csize,
                            int *started) {
    char bin[1024];
    if (find_pg_bin(bin, sizeof bin)) {
        fprintf(stderr, "weir up: PostgreSQL's server tools (initdb, pg_ctl) are not installed: "
                        "apt-get install postgresql, or set WEIR_PG_BIN\n");
        return WEIR_EXIT_FAIL;
    }
    struct passwd *pw = pg_user();
    if (geteuid() == 0 && !pw) {
        fprintf(stderr, "weir up: running as root needs the \"postgres\" user (apt-get install postgresql)\n");
        return WEIR_EXIT_FAIL;
    }
    snprintf(pgdir, pgsize, "%.900s/pg", cfg->home);
    if (pw && !reachable_by(cfg->home, pw->pw_uid)) {
        /* root's home is usually closed to other users; keep the cluster where postgres can reach it. */
        char hash[65];
        weir_sha256_hex(cfg->home, strlen(cfg->home), hash);
        mkdir("/var/lib/weir", 0755);
        snprintf(pgdir, pgsize, "/var/lib/weir/pg-%.12s", hash);
        int rc = claim_cluster(cfg->home, pgdir);
        if (rc) return rc;
    }
    if (strlen(pgdir) > 80) {
        fprintf(stderr, "weir up: %s is too long a path for PostgreSQL's socket; set WEIR_HOME shorter\n", pgdir);
        return WEIR_EXIT_FAIL;
    }
    char data[1100], sock[1100], logf[1100], pgver[1200], tool[1200], opts[1300];
    snprintf(data, sizeof data, "%s/data", pgdir);
    snprintf(sock, sizeof sock, "%s/run", pgdir);
    snprintf(logf, sizeof logf, "%s/postgres.log", pgdir);
    snprintf(pgver, sizeof pgver, "%s/PG_VERSION", data);
    if (make_dir_for_pg(pgdir) || make_dir_for_pg(sock)) {
        fprintf(stderr, "weir up: cannot create %s: %s\n", pgdir, strerror(errno));
        return WEIR_EXIT_FAIL;
    }
    if (access(pgver, F_OK)) {
        printf("weir up: creating a private PostgreSQL cluster in %s\n", data);
        fflush(stdout);
        snprintf(tool, sizeof tool, "%s/initdb", bin);
        char *argv[] = {tool, "-D", data, "-U", "weir", "--auth=trust", "-E", "UTF8", "--no-instructions", NULL};
        if (run_tool(argv, 1)) {
            fprintf(stderr, "weir up: initdb failed for %s\n", data);
            return WEIR_EXIT_FAIL;
        }
    }
    snprintf(tool, sizeof tool, "%s/pg_ctl", bin);
    char *status[] = {tool, "-D", data, "status", NULL};
    if (run_tool(status, 1) != 0) {
        snprintf(opts, sizeof opts, "-c listen_addresses='' -k %s -p 5432", sock);
        char *argv[] = {tool, "-D", data, "-l", logf, "-w", "-t", "60", "-o", opts, "start", NULL};
        if (run_tool(argv, 1)) {
            fprintf(stderr, "weir up: PostgreSQL did not start; see %s\n", logf);
            return WEIR_EXIT_FAIL;
        }
        *started = 1;
    }
    snprintf(conninfo, csize, "host=%.900s port=5432 user=weir dbname=postgres", sock);
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SELECT 1 FROM pg_database WHERE datname = 'weir'");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 0) PQclear(PQexec(c, "CREATE DATABASE weir"));
        PQclear(r);
    }
    PQfinish(c);
    snprintf(conninfo, csize, "host=%.900s port=5432 user=weir dbname=weir", sock);
    return 0;
}

static void stop_private_pg(const char *pgdir) {
    char bin[1024], tool[1100], data[1100];
    if (find_pg_bin(bin, sizeof bin)) return;
    snprintf(tool, sizeof tool, "%s/pg_ctl", bin);
    snprintf(data, sizeof data, "%s/data", pgdir);
    char *argv[] = {tool, "-D", data, "-m", "fast", "-w", "stop", NULL};
    run_tool(argv, 1);
}

/* Keeps a token already in client.json if the database still honours it. */
static int ensure_token(PGconn *conn, weir_config_t *cfg) {
    if (cfg->token[0]) {
        char hash[65];
        weir_sha256_hex(cfg->token, strlen(cfg->token), hash);
        const char *params[1] = {hash};
        PGresult *r = PQexecParams(conn, "SELECT 1 FROM api_tokens WHERE hash = $1 AND role = 'operator' "
                                         "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())", 1, NULL, params, NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        PQclear(r);
        if (ok) return 0;
    }
    return weir_token_create(conn, "operator", "weir-up", cfg->token, sizeof cfg->token);
}

/* Starts `weir worker` child processes against the local scheduler; their pids go to pids. */
static int start_workers(const weir_config_t *cfg, const char *token, int n, pid_t *pids) {
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return -1;
    exe[len] = '\0';
    for (int i = 0; i < n; i++) {
        char name[64], dir[1200];
        snprintf(name, sizeof name, "local-%d", i + 1);
        snprintf(dir, sizeof dir, "%s/workers/%d", cfg->home, i + 1);
        pid_t pid = fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            /* a group of its own: Ctrl-C reaches the scheduler, which stops the workers first */
            setpgid(0, 0);
            /* the token goes through the environment, not argv, where ps would show it */
            setenv("WEIR_TOKEN", token, 1);
            execl(exe, exe, "worker", "--scheduler", cfg->url, "--slots", "4", "--name", name, "--dir", dir,
                  (char *)NULL);
            _exit(127);
        }
        pids[i] = pid;
    }
    return 0;
}

/* SIGTERM to the workers (they finish or hand back their tasks), SIGKILL after 10 s. */
static void stop_workers(pid_t *pids, int n) {
    for (int i = 0; i < n; i++) if (pids[i] > 0) kill(pids[i], SIGTERM);
    for (int waited = 0; waited < 100; waited++) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            if (pids[i] <= 0) continue;
            if (waitpid(pids[i], NULL, WNOHANG) == pids[i]) pids[i] = 0;
            else left++;
        }
        if (!left) return;
        usleep(100 * 1000);
    }
    for (int i = 0; i < n; i++) if (pids[i] > 0) { kill(pids[i], SIGKILL); waitpid(pids[i], NULL, 0); }
}

int weir_cmd_up(int argc, char **argv) {
    const char *usage =
        "usage: weir up [--home DIR] [--port N] [--database URL] [--workers N]\n\n"
        "Starts a local weir: a private PostgreSQL cluster under DIR (default $WEIR_HOME or ~/.weir)\n"
        "unless --database or WEIR_DATABASE_URL names one, the migrations, and the scheduler on\n"
        "127.0.0.1:N (default 8470). Writes DIR/client.json so that the other commands find it.\n"
        "Starts N local workers (default 2, 4 slots each) with a worker token of their own.\n"
        "Ctrl-C stops the workers, the scheduler and the private PostgreSQL.\n";
    static const struct option opts[] = {
        {"home", required_argument, NULL, 'H'}, {"port", required_argument, NULL, 'p'},
        {"database", required_argument, NULL, 'd'}, {"workers", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0},
    };
    weir_config_t cfg = {0};
    int port = 8470, opt, nworkers = 2;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "H:p:d:w:h", opts, NULL)) != -1) {
        if (opt == 'H') snprintf(cfg.home, sizeof cfg.home, "%s", optarg);
        else if (opt == 'p') {
            char *end;
            long v = strtol(optarg, &end, 10);
            port = *optarg && !*end && v > 0 && v <= 65535 ? (int)v : -1;
        }
        else if (opt == 'd') snprintf(cfg.database, sizeof cfg.database, "%s", optarg);
        else if (opt == 'w') {
            char *end;
            long v = strtol(optarg, &end, 10);
            nworkers = *optarg && !*end && v >= 0 && v <= 16 ? (int)v : -1;
        }
        else if (opt == 'h') { fputs(usage, stdout); return 0; }
        else { fputs(usage, stderr); return WEIR_EXIT_USAGE; }
    }
    if (port <= 0 || port > 65535) { fprintf(stderr, "weir up: --port must be 1-65535\n"); return 2; }
    if (nworkers < 0) { fprintf(stderr, "weir up: --workers must be 0-16\n"); return 2; }
    /* Only the home and an explicit database count here: a stale client.json must not redirect us. */
    if (!cfg.home[0]) {
        const char *h = getenv("WEIR_HOME"), *u = getenv("HOME");
        if (h && *h) snprintf(cfg.home, sizeof cfg.home, "%s", h);
        else snprintf(cfg.home, sizeof cfg.home, "%s/.weir", u && *u ? u : ".");
    }
    if (!cfg.database[0] && getenv("WEIR_DATABASE_URL"))
        snprintf(cfg.database, sizeof cfg.database, "%s", getenv("WEIR_DATABASE_URL"));
    if (mkdir(cfg.home, 0700) && errno != EEXIST) {
        fprintf(stderr, "weir up: cannot create %s: %s\n", cfg.home, strerror(errno));
        return WEIR_EXIT_FAIL;
    }
    /* absolute, so that PostgreSQL's tools can run from "/" (see run_tool) */
    char abs_home[PATH_MAX];
    if (realpath(cfg.home, abs_home) && strlen(abs_home) < sizeof cfg.home)
        memcpy(cfg.home, abs_home, strlen(abs_home) + 1);
    /* One `weir up` per home: a second would rewrite client.json and stop the first one's PostgreSQL. */
    char lockpath[1100];
    snprintf(lockpath, sizeof lockpath, "%s/up.lock", cfg.home);
    int lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB)) {
        fprintf(stderr, "weir up: another `weir up` is running on %s; stop it first, or set WEIR_HOME elsewhere\n",
                cfg.home);
        if (lockfd >= 0) close(lockfd);
        return WEIR_EXIT_FAIL;
    }
    char pgdir[1024] = "";
    int rc, started = 0;
    if (!cfg.database[0] &&
        (rc = start_private_pg(&cfg, pgdir, sizeof pgdir, cfg.database, sizeof cfg.database, &started))) {
        close(lockfd);
        return rc;
    }
    PGconn *conn = PQconnectdb(cfg.database);
    char err[1024];
    int applied = 0;
    char worker_token[128] = "";
    rc = WEIR_EXIT_FAIL;
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "weir up: cannot connect to the database: %s", PQerrorMessage(conn));
        rc = WEIR_EXIT_UNREACHABLE;
    } else if ((rc = weir_migrate(conn, weir_migrations, weir_migrations_count, 0, &applied, err, sizeof err))) {
        fprintf(stderr, "weir up: %s\n", err);
        /* A private cluster made by another build of weir (a migration edited in development):
         * say where it is, since as root it may live outside the home. */
        if (rc == WEIR_ECHECKSUM && pgdir[0])
            fprintf(stderr, "weir up: to start afresh, remove the private cluster: rm -rf %s\n", pgdir);
        rc = WEIR_EXIT_FAIL;
    } else {
        /* Reuse the token of a previous `weir up` on the same home when it is still valid. */
        weir_config_t old = {0};
        snprintf(old.home, sizeof old.home, "%s", cfg.home);
        weir_config_load(&old);
        snprintf(cfg.token, sizeof cfg.token, "%s", old.token);
        rc = ensure_token(conn, &cfg) ? WEIR_EXIT_FAIL : 0;
        /* a fresh worker token each start; the previous one is revoked so tokens do not pile up */
        if (!rc && nworkers) {
            PQclear(PQexec(conn, "UPDATE api_tokens SET revoked_at = now() WHERE name = 'weir-up-worker' "
                                 "AND revoked_at IS NULL"));
            rc = weir_token_create(conn, "worker", "weir-up-worker", worker_token, sizeof worker_token)
                     ? WEIR_EXIT_FAIL : 0;
        }
    }
    PQfinish(conn);
    if (!rc) {
        snprintf(cfg.url, sizeof cfg.url, "http://127.0.0.1:%d", port);
        if (weir_config_write(&cfg)) {
            fprintf(stderr, "weir up: cannot write %s/client.json\n", cfg.home);
            rc = WEIR_EXIT_FAIL;
        }
    }
    if (!rc) {
        printf("weir up: scheduler at %s; the CLI finds it through %s/client.json\n"
               "weir up: %d local worker%s; try `weir apply examples/hello.lua`, `weir trigger hello`, `weir runs`;\n"
               "weir up: Ctrl-C stops everything\n",
               cfg.url, cfg.home, nworkers, nworkers == 1 ? "" : "s");
        fflush(stdout);
        pid_t pids[16] = {0};
        if (nworkers && start_workers(&cfg, worker_token, nworkers, pids))
            fprintf(stderr, "weir up: could not start the local workers\n");
        weir_sched_opts_t o;
        memset(&o, 0, sizeof o);
        o.database = cfg.database;
        o.host = "127.0.0.1";
        o.port = port;
        char artifacts[1100];
        snprintf(artifacts, sizeof artifacts, "%s/artifacts", cfg.home);
        o.artifacts_dir = artifacts;
        o.children = pids;
        o.nchildren = nworkers;
        rc = weir_sched_run(&o);
        stop_workers(pids, nworkers); /* those that outlived the scheduler, if it failed to start */
    }
    if (started) {
        /* A second Ctrl-C must not leave PostgreSQL running behind us. */
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        printf("weir up: stopping PostgreSQL\n");
        fflush(stdout);
        stop_private_pg(pgdir);
    }
    close(lockfd);
    return rc;
}
