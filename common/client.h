/* client.h — where a weir client finds its scheduler, and one HTTP call to it.
 *
 * Used by the CLI (and, later, workers). Configuration comes from, in order:
 * flags, the environment (WEIR_URL, WEIR_TOKEN, WEIR_DATABASE_URL), then the
 * file $WEIR_HOME/client.json that `weir up` writes (WEIR_HOME defaults to
 * ~/.weir). A blocking libcurl call with connect and total timeouts and a
 * cap on the response size; not an async client. */
#ifndef WEIR_COMMON_CLIENT_H
#define WEIR_COMMON_CLIENT_H

#include <jansson.h>
#include <stddef.h>

typedef struct {
    char home[1024];
    char url[512];        /* scheduler base URL, no trailing slash */
    char token[320];
    char database[1024];  /* libpq conninfo, for commands that talk to PostgreSQL directly */
} weir_config_t;

/* Fills c from the environment and the client file; fields already set
 * (non-empty) are kept, so set flag values first. */
void weir_config_load(weir_config_t *c);
/* Writes url, token and database to $WEIR_HOME/client.json, mode 0600. 0 or WEIR_EIO. */
int weir_config_write(const weir_config_t *c);

typedef struct {
    long status;          /* HTTP status; 0 when no answer came */
    char *body;           /* NUL-terminated; caller frees with weir_response_free */
    size_t len;
    json_t *json;         /* parsed body when it is JSON, else NULL */
    char error[512];      /* transport error, or the server's error message */
    char *headers;        /* the final answer's header lines, "Name: value\r\n" each (capped at 64 KiB);
                             NULL when none arrived; read with weir_response_header, freed with the response */
} weir_response_t;

/* Sends method path (e.g. "/v1/pipelines") with an optional JSON body.
 * 0 when an HTTP answer arrived (any status; see res->status), WEIR_EUNAVAIL
 * when the scheduler could not be reached (res->error says why). */
int weir_client_call(const weir_config_t *c, const char *method, const char *path, const json_t *body,
                     weir_response_t *res);
void weir_response_free(weir_response_t *res);

/* ---- response headers ---- */

/* The value of response header name (case-insensitive), without surrounding blanks, copied into buf
 * (truncated to size); NULL when the answer has no such header. The first one wins when repeated. */
const char *weir_response_header(const weir_response_t *res, const char *name, char *buf, size_t size);

#endif
