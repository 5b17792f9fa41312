/* http.h — the scheduler's HTTP/1.1 server: libuv TCP + http-parser.
 *
 * Keep-alive, one request in flight per connection (the next request is not
 * parsed before the current one is answered), hard caps on header and body
 * size (431 / 413), a deadline to receive a whole request (408) and an idle
 * timeout for keep-alive connections. Not a general web server: no TLS, no
 * chunked request bodies beyond what http-parser decodes, no pipelining
 * concurrency, no HTTP/2.
 *
 * Handlers may answer asynchronously (after a database round trip): the
 * request object stays valid until weir_http_respond* is called exactly once,
 * even if the client has gone away meanwhile (the answer is then dropped). */
#ifndef WEIR_ENGINE_HTTP_H
#define WEIR_ENGINE_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct weir_http_server_s weir_http_server_t;
typedef struct weir_http_req_s weir_http_req_t;

typedef struct {
    size_t max_header_bytes;     /* request line + headers; 431 beyond. 0 = 16 KiB */
    size_t max_body_bytes;       /* 413 beyond (checked against Content-Length first). 0 = 8 MiB */
    uint64_t request_timeout_ms; /* from a request's first byte to its last; 408 beyond. 0 = 10 s */
    uint64_t idle_timeout_ms;    /* keep-alive connection with no request; closed. 0 = 60 s */
    size_t max_connections;      /* further accepts are closed at once. 0 = 1024 */
} weir_http_limits_t;

/* Called once per complete request. The handler must eventually call one of
 * weir_http_respond*(req, ...) exactly once; it may do so before returning. */
typedef void (*weir_http_handler_cb)(weir_http_req_t *req, void *data);

/* Binds host:port (port 0 picks a free one) and starts accepting on loop.
 * lim may be NULL for defaults. 0 or a negative WEIR_E* code; on error *out is NULL
 * and msg (if not NULL) holds a reason. */
int weir_http_server_new(uv_loop_t *loop, const char *host, int port, const weir_http_limits_t *lim,
                         weir_http_handler_cb cb, void *data, weir_http_server_t **out, char *msg,
                         size_t msgsize);
/* The port actually bound. */
int weir_http_server_port(const weir_http_server_t *s);
/* Stops accepting, closes every connection, and frees the server once all its
 * handles are closed; then calls done(done_data) if done is not NULL. Requests
 * still awaiting an answer stay valid until answered. free(NULL) is a no-op. */
void weir_http_server_free(weir_http_server_t *s, void (*done)(void *), void *done_data);

/* Request accessors; strings are borrowed until the response is sent. */
const char *weir_http_req_method(const weir_http_req_t *r);  /* "GET", "POST", ... */
const char *weir_http_req_path(const weir_http_req_t *r);    /* decoded of nothing; no query */
const char *weir_http_req_query(const weir_http_req_t *r);   /* raw query after '?', or NULL */
/* Value of the first header with this name (case-insensitive), or NULL. */
const char *weir_http_req_header(const weir_http_req_t *r, const char *name);
/* The body (NUL-terminated, len excludes the NUL); "" with len 0 when none. */
const char *weir_http_req_body(const weir_http_req_t *r, size_t *len);
/* Looks up one query parameter by name, percent-decoded into buf. 1 if found, 0 if not.
 * A value that does not fit in bufsize (with its NUL) counts as not found, never truncated. */
int weir_http_req_query_param(const weir_http_req_t *r, const char *name, char *buf, size_t bufsize);
/* Per-request user pointer for the handler's own use. */
void weir_http_req_set_data(weir_http_req_t *r, void *data);
void *weir_http_req_data(const weir_http_req_t *r);

/* Adds a response header (sent with whichever respond call follows); at most 512 bytes in all.
 * 0, WEIR_EINVAL for a name or value with line breaks, WEIR_ELIMIT when full. */
int weir_http_req_add_header(weir_http_req_t *r, const char *name, const char *value);
/* 1 when the client's connection has gone: an answer would be dropped. */
int weir_http_req_gone(const weir_http_req_t *r);

/* Sends the response and releases the request. */
void weir_http_respond(weir_http_req_t *r, int status, const char *content_type, const char *body, size_t len);
/* Serializes body (steals the reference) as application/json. */
void weir_http_respond_json(weir_http_req_t *r, int status, json_t *body);
/* {"error": {"status": N, "message": "..."}} */
void weir_http_respond_error(weir_http_req_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reason phrase for a status ("Not Found"). */
const char *weir_http_reason(int status);

#endif
