/* migrate.c — see migrate.h. The schema is plain SQL files; this file only
 * orders, checksums and applies them. It does not generate or roll back. */
#include "engine/migrate.h"
#include "common/error.h"
#include "common/sha256.h"
#include "common/util.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Arbitrary but fixed: every weir process agrees on it. */
#define MIGRATE_LOCK_KEY "7740211"

static int name_ok(const char *name) {
    size_t l = strlen(name);
    if (l < 10 || strcmp(name + l - 4, ".sql")) return 0;
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)name[i])) return 0;
    return name[4] == '_';
}

static int cmp_migration(const void *a, const void *b) {
    return strcmp(((const weir_migration_t *)a)->name, ((const weir_migration_t *)b)->name);
}

int weir_migrations_load_dir(const char *dir, weir_migration_t **out, size_t *n, char *err, size_t errsize) {
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errsize, "%s: cannot open the migrations directory", dir);
        return WEIR_ENOENT;
    }
    weir_migration_t *m = NULL;
    size_t count = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!name_ok(e->d_name)) continue;
        if (count == 10000) { rc = WEIR_ELIMIT; snprintf(err, errsize, "%s: too many migrations", dir); break; }
        weir_migration_t *grown = realloc(m, (count + 1) * sizeof *m);
        if (!grown) { rc = WEIR_ENOMEM; break; }
        m = grown;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *sql;
        size_t len;
        if ((rc = weir_read_file(path, 16 << 20, &sql, &len))) {
            snprintf(err, errsize, "%s: %s", path, weir_strerror(rc));
            break;
        }
        m[count].name = strdup(e->d_name);
        m[count].sql = sql;
        m[count].len = len;
        count++;
        if (!m[count - 1].name) { rc = WEIR_ENOMEM; break; }
    }
    closedir(d);
    if (rc) { weir_migrations_free(m, count); return rc; }
    qsort(m, count, sizeof *m, cmp_migration);
    *out = m;
    *n = count;
    return 0;
}

void weir_migrations_free(weir_migration_t *m, size_t n) {
    for (size_t i = 0; m && i < n; i++) {
        free((char *)m[i].name);
        free((char *)m[i].sql);
    }
    free(m);
}

static int exec_ok(PGconn *conn, const char *sql, char *err, size_t errsize) {
    PGresult *r = PQexec(conn, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) snprintf(err, errsize, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : WEIR_EDB;
}

/* The line of a 1-based character position, for errors that point into a file. */
static int line_of(const char *sql, long pos) {
    int line = 1;
    for (long i = 0; i < pos - 1 && sql[i]; i++)
        if (sql[i] == '\n') line++;
    return line;
}

/* Compares the applied set with the given files. Returns 0 and sets *first_missing
 * to the index of the first file not applied (n when all are). */
static int compare_applied(PGconn *conn, const weir_migration_t *m, size_t n, size_t *first_missing, char *err,
                           size_t errsize) {
    PGresult *r = PQexec(conn, /* bytewise, as the files are sorted, whatever the database's collation */
                             "SELECT name, checksum FROM weir_migrations ORDER BY name COLLATE \"C\"");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errsize, "reading weir_migrations: %s", PQresultErrorMessage(r));
        PQclear(r);
        return WEIR_EDB;
    }
    int rc = 0;
    size_t applied = (size_t)PQntuples(r);
    for (size_t i = 0; i < applied && !rc; i++) {
        const char *name = PQgetvalue(r, (int)i, 0), *sum = PQgetvalue(r, (int)i, 1);
        if (i >= n || strcmp(m[i].name, name)) {
            snprintf(err, errsize, "migration %s is applied in the database but %s", name,
                     i >= n ? "missing from this weir's migrations" : "out of order with this weir's migrations");
            rc = WEIR_ECHECKSUM;
            break;
        }
        char hex[65];
        weir_sha256_hex(m[i].sql, m[i].len, hex);
        if (strcmp(hex, sum)) {
            snprintf(err, errsize,
                     "migrations/%s was edited after it was applied (checksum %.12s, applied %.12s); "
                     "restore it and put the change in a new migration",
                     name, hex, sum);
            rc = WEIR_ECHECKSUM;
        }
    }
    PQclear(r);
    *first_missing = applied;
    return rc;
}

int weir_migrate(PGconn *conn, const weir_migration_t *m, size_t n, int verbose, int *applied, char *err,
                 size_t errsize) {
    int rc;
    *applied = 0;
    if ((rc = exec_ok(conn, "SET client_min_messages = warning", err, errsize))) return rc;
    if ((rc = exec_ok(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errsize))) return rc;
    /* The bookkeeping table is created under the lock so that two first runs cannot race on it. */
    rc = exec_ok(conn,
                 "CREATE TABLE IF NOT EXISTS weir_migrations (name text PRIMARY KEY, checksum text NOT NULL, "
                 "applied_at timestamptz NOT NULL DEFAULT now())",
                 err, errsize);
    size_t next = 0;
    if (!rc) rc = compare_applied(conn, m, n, &next, err, errsize);
    for (size_t i = next; i < n && !rc; i++) {
        if ((rc = exec_ok(conn, "BEGIN", err, errsize))) break;
        PGresult *r = PQexec(conn, m[i].sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
            const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
            snprintf(err, errsize, "migrations/%s:%d: %s", m[i].name, pos ? line_of(m[i].sql, atol(pos)) : 0,
                     msg ? msg : PQresultErrorMessage(r));
            PQclear(r);
            char ignored[8];
            exec_ok(conn, "ROLLBACK", ignored, sizeof ignored);
            rc = WEIR_EDB;
            break;
        }
        PQclear(r);
        char hex[65];
        weir_sha256_hex(m[i].sql, m[i].len, hex);
        const char *params[2] = {m[i].name, hex};
        r = PQexecParams(conn, "INSERT INTO weir_migrations (name, checksum) VALUES ($1, $2)", 2, NULL, params,
                         NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            snprintf(err, errsize, "recording %s: %s", m[i].name, PQresultErrorMessage(r));
            rc = WEIR_EDB;
        }
        PQclear(r);
        if (!rc) rc = exec_ok(conn, "COMMIT", err, errsize);
        if (rc) {
            char ignored[8];
            exec_ok(conn, "ROLLBACK", ignored, sizeof ignored);
            break;
        }
        (*applied)++;
        if (verbose) printf("applied %s\n", m[i].name);
    }
    char ignored[256];
    exec_ok(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", ignored, sizeof ignored);
    return rc;
}

int weir_migrate_verify(PGconn *conn, const weir_migration_t *m, size_t n, char *err, size_t errsize) {
    PGresult *r = PQexec(conn, "SELECT to_regclass('weir_migrations') IS NOT NULL");
    int exists = PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (!exists) {
        snprintf(err, errsize, "the database has no weir schema yet: run `weir migrate`");
        return WEIR_EINVAL;
    }
    size_t next = 0;
    int rc = compare_applied(conn, m, n, &next, err, errsize);
    if (!rc && next < n) {
        snprintf(err, errsize, "migration %s is not applied yet: run `weir migrate`", m[next].name);
        rc = WEIR_EINVAL;
    }
    return rc;
}
