/* migrate.h — applies migrations/NNNN_name.sql in order, each in its own
 * transaction, records each with its SHA-256, and refuses to go on when an
 * applied file was edited. Runs with blocking libpq: it is a command
 * (`weir migrate`, `weir up`), never called on the scheduler's loop. */
#ifndef WEIR_ENGINE_MIGRATE_H
#define WEIR_ENGINE_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

typedef struct {
    const char *name;   /* "0001_schema.sql" */
    const char *sql;
    size_t len;
} weir_migration_t;

/* The migrations built into the binary, sorted by name. */
extern const weir_migration_t weir_migrations[];
extern const size_t weir_migrations_count;

/* Reads DIR/NNNN_*.sql sorted by name. *out is an array of n entries whose
 * strings the caller frees with weir_migrations_free. 0 or a WEIR_E* code with
 * a message in err. */
int weir_migrations_load_dir(const char *dir, weir_migration_t **out, size_t *n, char *err, size_t errsize);
void weir_migrations_free(weir_migration_t *m, size_t n);

/* Applies what is missing, under an advisory lock so that concurrent callers
 * serialise. Prints one line per applied file to stdout when verbose.
 * *applied counts files applied now. 0, WEIR_ECHECKSUM (an applied file was
 * edited; err names it), WEIR_EDB (err has the server's message and the file). */
int weir_migrate(PGconn *conn, const weir_migration_t *m, size_t n, int verbose, int *applied, char *err,
                 size_t errsize);

/* Checks, without changing anything, that every migration is applied and
 * unchanged. 0, WEIR_ECHECKSUM, or WEIR_EINVAL when some are not applied yet. */
int weir_migrate_verify(PGconn *conn, const weir_migration_t *m, size_t n, char *err, size_t errsize);

#endif
