/* http.c — the scheduler's HTTP/1.1 server (contract in engine/http.h).
 *
 * Per connection: one uv_tcp_t, one uv_timer_t and one http_parser. The
 * single timer carries whichever deadline the connection is under: idle
 * (waiting for a request), request (first byte to last byte), write (a
 * response the client does not take) or linger (draining after a final
 * response, so that closing does not reset the response away).
 *
 * Deliberately not here: routing (the API layer does that), TLS, HTTP/2,
 * a client, and concurrent pipelining. A connection has at most one request
 * in flight; bytes that arrive meanwhile wait, bounded, in `pending`, and
 * reading stops while that buffer is full. */
#include "engine/http.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    READ_CHUNK = 64 * 1024,        /* one server-wide read buffer of this size */
    PENDING_MAX = 64 * 1024,       /* early bytes held per connection; reading pauses beyond */
    LINGER_MAX_MS = 2000,          /* at most this long draining after a final response */
    LINGER_MAX_BYTES = 1024 * 1024 /* ... or this many discarded bytes, whichever first */
};

/* http-parser also stops a header section at its compiled-in 80 KiB
 * (HPE_HEADER_OVERFLOW, answered 431 too), so a larger max_header_bytes
 * acts as 80 KiB. */
#define DEFAULT_HEADER_BYTES ((size_t)16 * 1024)
#define DEFAULT_BODY_BYTES ((size_t)8 * 1024 * 1024)
#define DEFAULT_REQUEST_MS 10000u
#define DEFAULT_IDLE_MS 60000u
#define DEFAULT_MAX_CONNS 1024u

typedef enum {
    C_IDLE,     /* no request started; idle deadline */
    C_READING,  /* a request has begun; request deadline */
    C_HANDLING, /* the handler owns the request; no deadline */
    C_WRITING,  /* the final response of a request is being written; write deadline */
    C_LINGER    /* last response written and FIN sent; draining until the peer closes */
} conn_state_t;

typedef enum { HS_NONE, HS_FIELD, HS_VALUE } hdr_state_t;

typedef struct conn_s conn_t;

struct weir_http_req_s {
    conn_t *conn; /* NULL once the connection is gone: the answer is then dropped */
    const char *method;
    unsigned short http_major, http_minor;
    int keep_alive;
    int delivered; /* handed to the handler; from then on only a respond call frees it */
    weir_buf_t url;
    const char *path, *query; /* point into url, split in place once the headers end */
    weir_buf_t hdrs;          /* name\0value\0name\0value\0... in arrival order */
    weir_buf_t body;
    void *data;
    char extra[512]; /* response headers a handler added, each "Name: value\r\n" */
};

struct conn_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    http_parser parser;
    weir_http_server_t *srv;
    conn_t *prev, *next;
    conn_state_t state;
    weir_http_req_t *req; /* being parsed, or delivered and awaiting its answer */
    weir_buf_t pending;   /* bytes received while a request was in flight */
    size_t pending_off;
    size_t hdr_bytes;     /* request line + headers, as their canonical wire form */
    hdr_state_t hdr_state;
    size_t val_off;       /* where the current header value starts in req->hdrs */
    int headers_done;     /* later header callbacks are chunked trailers: counted, not kept */
    int complete;         /* the parser finished a request not yet dispatched */
    int fail_status;      /* set by a parser callback that rejects the request */
    int keep_alive;       /* after the response in flight: go on (1) or close (0) */
    int reading;
    int closing;
    int handles;          /* tcp + timer still to be closed */
    size_t lingered;
};

struct weir_http_server_s {
    uv_loop_t *loop;
    uv_tcp_t listener;
    weir_http_limits_t lim;
    weir_http_handler_cb cb;
    void *data;
    conn_t *conns;  /* every connection whose handles are not yet closed */
    size_t nactive; /* connections not closing; what max_connections counts */
    int port;
    int closing;
    int listener_closed;
    uint64_t last_reject_log_ms;
    void (*done)(void *);
    void *done_data;
    /* Reads are consumed synchronously in the read callback (parsed or
     * copied into `pending`), so one buffer serves every connection and idle
     * connections cost no read memory. */
    char rbuf[READ_CHUNK];
};

typedef struct {
    uv_write_t req;
    conn_t *conn;
    int final; /* the response that ends a request (not a 100 Continue) */
    char data[];
} http_write_t;

static void conn_close(conn_t *c);
static void conn_fail(conn_t *c, int status);
static void conn_send(conn_t *c, int status, const char *content_type, const char *extra, const char *body,
                      size_t len, int keep_alive, int head_only, int http10);

static void conn_on_timer(uv_timer_t *t);

/* One timer per connection: arming it replaces whatever deadline it held. */
static void timer_arm(conn_t *c, uint64_t ms) { uv_timer_start(&c->timer, conn_on_timer, ms, 0); }

/* ---- requests ---------------------------------------------------------- */

static weir_http_req_t *req_new(const weir_http_limits_t *lim) {
    weir_http_req_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    weir_buf_init(&r->url, lim->max_header_bytes);
    /* +16: the NULs between names and values are counted in hdr_bytes as
     * ": " and CRLF, so the cap check always trips before this one. */
    weir_buf_init(&r->hdrs, lim->max_header_bytes + 16);
    weir_buf_init(&r->body, lim->max_body_bytes);
    return r;
}

static void req_free(weir_http_req_t *r) {
    if (!r) return;
    weir_buf_free(&r->url);
    weir_buf_free(&r->hdrs);
    weir_buf_free(&r->body);
    free(r);
}

/* Splits the request target into path and query in place. An absolute-form
 * target (a proxy's "http://host/p?q") keeps only its path and query. */
static void req_split_target(weir_http_req_t *r) {
    char *u = r->url.data;
    if (!u) {
        r->path = "/";
        return;
    }
    char *start = u;
    int path_missing = 0;
    if (*u != '/' && *u != '*') {
        char *scheme = strstr(u, "://");
        if (scheme) {
            start = scheme + 3 + strcspn(scheme + 3, "/?#");
            path_missing = *start != '/';
        }
    }
    char *hash = strchr(start, '#');
    if (hash) *hash = '\0';
    char *q = strchr(start, '?');
    if (q) {
        *q = '\0';
        r->query = q + 1;
    }
    r->path = path_missing ? "/" : start;
}

/* Ends the header being stored: NUL-terminates it, trimming the value's
 * trailing whitespace (http-parser strips only the leading part). */
static int req_end_header(conn_t *c) {
    weir_buf_t *h = &c->req->hdrs;
    if (c->hdr_state == HS_FIELD) {
        /* a name with no value callback at all; store an empty value */
        if (weir_buf_append(h, "\0", 1)) return -1;
        c->val_off = h->len;
    }
    if (c->hdr_state != HS_NONE) {
        while (h->len > c->val_off && (h->data[h->len - 1] == ' ' || h->data[h->len - 1] == '\t')) h->len--;
        if (weir_buf_append(h, "\0", 1)) return -1;
    }
    c->hdr_state = HS_NONE;
    return 0;
}

/* ---- parser callbacks -------------------------------------------------- */

static int fail_cb(conn_t *c, int status) {
    if (!c->fail_status) c->fail_status = status;
    return -1;
}

static int count_header_bytes(conn_t *c, size_t n) {
    c->hdr_bytes += n;
    return c->hdr_bytes > c->srv->lim.max_header_bytes ? fail_cb(c, 431) : 0;
}

static int on_message_begin(http_parser *p) {
    conn_t *c = p->data;
    if (c->req) return fail_cb(c, 500); /* cannot happen: parsing pauses after each request */
    c->req = req_new(&c->srv->lim);
    if (!c->req) return fail_cb(c, 500);
    c->req->conn = c;
    /* The request clock starts at its first byte, not at stray CRLFs
     * between requests: those leave the connection idle. */
    c->state = C_READING;
    timer_arm(c, c->srv->lim.request_timeout_ms);
    c->hdr_bytes = 0;
    c->hdr_state = HS_NONE;
    c->headers_done = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    /* "METHOD SP target SP HTTP/1.1 CRLF" */
    if (c->hdr_bytes == 0 && count_header_bytes(c, strlen(http_method_str(p->method)) + 12)) return -1;
    if (count_header_bytes(c, len)) return -1;
    if (weir_buf_append(&c->req->url, at, len)) return fail_cb(c, 431);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    if (c->hdr_state != HS_FIELD && count_header_bytes(c, 4)) return -1; /* ": " and CRLF */
    if (count_header_bytes(c, len)) return -1;
    if (c->headers_done) {
        c->hdr_state = HS_FIELD;
        return 0;
    }
    if (c->hdr_state == HS_VALUE && req_end_header(c)) return fail_cb(c, 431);
    c->hdr_state = HS_FIELD;
    if (weir_buf_append(&c->req->hdrs, at, len)) return fail_cb(c, 431);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    if (count_header_bytes(c, len)) return -1;
    if (c->headers_done) {
        c->hdr_state = HS_VALUE;
        return 0;
    }
    weir_buf_t *h = &c->req->hdrs;
    if (c->hdr_state != HS_VALUE) {
        if (weir_buf_append(h, "\0", 1)) return fail_cb(c, 431);
        c->val_off = h->len;
        c->hdr_state = HS_VALUE;
    }
    if (weir_buf_append(h, at, len)) return fail_cb(c, 431);
    return 0;
}

static void write_continue(conn_t *c);

static int on_headers_complete(http_parser *p) {
    conn_t *c = p->data;
    weir_http_req_t *r = c->req;
    if (count_header_bytes(c, 2)) return -1; /* the blank line */
    if (req_end_header(c)) return fail_cb(c, 431);
    c->headers_done = 1;
    r->method = http_method_str(p->method);
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    req_split_target(r);
    /* Refuse an oversized body before a byte of it is read or stored. */
    if (!(p->flags & F_CHUNKED) && (p->flags & F_CONTENTLENGTH) &&
        p->content_length > c->srv->lim.max_body_bytes)
        return fail_cb(c, 413);
    const char *expect = weir_http_req_header(r, "expect");
    if (expect && !strcasecmp(expect, "100-continue") && (p->http_major > 1 || p->http_minor >= 1) &&
        ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0)))
        write_continue(c); /* libcurl otherwise waits a second before sending the body */
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    conn_t *c = p->data;
    int rc = weir_buf_append(&c->req->body, at, len);
    if (rc == WEIR_ELIMIT) return fail_cb(c, 413); /* chunked, or more than declared */
    if (rc) return fail_cb(c, 500);
    return 0;
}

static int on_message_complete(http_parser *p) {
    conn_t *c = p->data;
    if (!c->req) return fail_cb(c, 500);
    c->complete = 1;
    /* After an upgrade the rest is another protocol; we answer and close. */
    c->req->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    c->keep_alive = c->req->keep_alive;
    /* Pausing makes http_parser_execute return right after this request's
     * last byte, so the next pipelined request waits for this answer. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connections ------------------------------------------------------- */

static void server_maybe_finish(weir_http_server_t *s) {
    if (!s->closing || !s->listener_closed || s->conns) return;
    void (*done)(void *) = s->done;
    void *done_data = s->done_data;
    free(s);
    if (done) done(done_data);
}

static void conn_on_close(uv_handle_t *h) {
    conn_t *c = h->data;
    if (--c->handles > 0) return;
    weir_http_server_t *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    weir_buf_free(&c->pending);
    free(c);
    server_maybe_finish(s);
}

static void conn_close(conn_t *c) {
    if (c->closing) return;
    c->closing = 1;
    c->srv->nactive--;
    weir_http_req_t *r = c->req;
    c->req = NULL;
    if (r) {
        if (r->delivered) r->conn = NULL; /* its respond call will free it */
        else req_free(r);
    }
    /* libuv cancels queued writes and the shutdown (their callbacks run,
     * with UV_ECANCELED) before these close callbacks. */
    uv_close((uv_handle_t *)&c->tcp, conn_on_close);
    uv_close((uv_handle_t *)&c->timer, conn_on_close);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    conn_t *c = h->data;
    *buf = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
}

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static int conn_read_start(conn_t *c) {
    if (c->reading) return 0;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read);
    if (rc) {
        conn_close(c);
        return -1;
    }
    c->reading = 1;
    return 0;
}

static void conn_read_stop(conn_t *c) {
    if (!c->reading) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

/* Feeds bytes to the parser while no request is in flight; returns how many
 * it took. Stops after a complete request (c->complete) or an error
 * (c->fail_status). */
static size_t conn_parse(conn_t *c, const char *data, size_t len) {
    size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        /* unpause now; nothing is fed again before the answer is written */
        http_parser_pause(&c->parser, 0);
        return n;
    }
    if (e != HPE_OK) {
        if (!c->fail_status) c->fail_status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
        return n;
    }
    if (n < len && !c->complete) c->fail_status = 400; /* an upgrade with a body; not ours to speak */
    return n;
}

static void conn_dispatch(conn_t *c) {
    weir_http_req_t *r = c->req;
    r->delivered = 1;
    c->complete = 0;
    c->state = C_HANDLING;
    /* The handler's time (a database round trip, a long-poll) is not the
     * client's fault; only the client-facing phases have deadlines. */
    uv_timer_stop(&c->timer);
    c->srv->cb(r, c->srv->data);
    /* c may be closing now (the handler may even have freed the server);
     * its memory lives until the close callbacks, but touch nothing more. */
}

static void pending_append(conn_t *c, const char *data, size_t len) {
    weir_buf_t *p = &c->pending;
    if (c->pending_off) {
        memmove(p->data, p->data + c->pending_off, p->len - c->pending_off);
        p->len -= c->pending_off;
        c->pending_off = 0;
    }
    /* The cap leaves room for one more read after PENDING_MAX, so this only
     * fails when memory does. */
    if (weir_buf_append(p, data, len)) {
        conn_close(c);
        return;
    }
    if (p->len >= PENDING_MAX) conn_read_stop(c); /* TCP flow control pushes back on the client */
}

/* Bytes fresh from the socket while no request is in flight. */
static void conn_take(conn_t *c, const char *data, size_t len) {
    size_t n = conn_parse(c, data, len);
    if (c->fail_status) {
        conn_fail(c, c->fail_status);
        return;
    }
    if (!c->complete) return;
    if (n < len && c->keep_alive) pending_append(c, data + n, len - n);
    if (c->closing) return;
    conn_dispatch(c);
}

/* The answer is written and the connection stays: serve what waited. */
static void conn_next(conn_t *c) {
    c->state = C_IDLE;
    timer_arm(c, c->srv->lim.idle_timeout_ms);
    weir_buf_t *p = &c->pending;
    if (p->len > c->pending_off) {
        size_t n = conn_parse(c, p->data + c->pending_off, p->len - c->pending_off);
        c->pending_off += n;
        if (c->pending_off == p->len) {
            weir_buf_reset(p);
            c->pending_off = 0;
        }
        if (c->fail_status) {
            conn_fail(c, c->fail_status);
            return;
        }
    }
    /* Reading resumes only while the backlog is under its cap; otherwise
     * the next answer comes back here with less of it left. */
    if (p->len - c->pending_off < PENDING_MAX && conn_read_start(c)) return;
    if (c->complete) conn_dispatch(c);
}

static void conn_on_shutdown(uv_shutdown_t *req, int status) {
    conn_t *c = req->data;
    if (c->closing) return;
    if (status < 0) conn_close(c);
}

/* Closing a socket with unread input makes the kernel send RST, which can
 * destroy a response (a 413, say) before the client reads it. So: FIN
 * first, then drain until the client closes or the linger time ends. */
static void conn_linger(conn_t *c) {
    c->state = C_LINGER;
    c->lingered = 0;
    if (conn_read_start(c)) return;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, conn_on_shutdown)) {
        conn_close(c);
        return;
    }
    uint64_t ms = c->srv->lim.idle_timeout_ms;
    timer_arm(c, ms < LINGER_MAX_MS ? ms : LINGER_MAX_MS);
}

static void conn_on_write(uv_write_t *wr, int status) {
    http_write_t *w = wr->data;
    conn_t *c = w->conn;
    int final = w->final;
    free(w);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!final) return;
    if (c->keep_alive) conn_next(c);
    else conn_linger(c);
}

static void write_continue(conn_t *c) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    http_write_t *w = malloc(sizeof *w + sizeof cont);
    if (!w) return; /* the client sends the body after its own wait */
    memcpy(w->data, cont, sizeof cont);
    w->conn = c;
    w->final = 0;
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data, sizeof cont - 1);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write)) free(w);
}

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = stream->data;
    if (nread == 0 || c->closing) return;
    if (nread < 0) {
        /* EOF or reset: the client is gone (half-closing clients included).
         * A request in flight is detached and its answer dropped. */
        conn_close(c);
        return;
    }
    size_t n = (size_t)nread;
    switch (c->state) {
    case C_LINGER:
        c->lingered += n;
        if (c->lingered > LINGER_MAX_BYTES) conn_close(c);
        return;
    case C_HANDLING:
    case C_WRITING:
        /* On a connection that ends with this response, nothing will read
         * these bytes: drop them rather than hold them. */
        if (c->keep_alive) pending_append(c, buf->base, n);
        return;
    case C_IDLE:
    case C_READING:
        conn_take(c, buf->base, n);
        return;
    }
}

static void conn_on_timer(uv_timer_t *t) {
    conn_t *c = t->data;
    if (c->closing) return;
    switch (c->state) {
    case C_READING:
        conn_fail(c, 408);
        return;
    case C_HANDLING:
        return; /* not armed in this state */
    case C_IDLE:    /* includes a client that connected and never spoke */
    case C_WRITING: /* the client stopped reading */
    case C_LINGER:
        conn_close(c);
        return;
    }
}

/* ---- responses --------------------------------------------------------- */

static int status_has_body(int status) { return status >= 200 && status != 204 && status != 304; }

static void conn_send(conn_t *c, int status, const char *content_type, const char *extra, const char *body,
                      size_t len, int keep_alive, int head_only, int http10) {
    if (status < 100 || status > 999) {
        weir_log_error("http: handler answered with status %d; sending 500 instead", status);
        status = 500;
    }
    if (content_type && strpbrk(content_type, "\r\n")) {
        weir_log_error("http: content type with a line break refused; sending application/octet-stream");
        content_type = "application/octet-stream";
    }
    if (!body) len = 0;
    if (!content_type && len) content_type = "application/octet-stream";
    int has_body = status_has_body(status);
    char clen[48] = "";
    if (has_body) snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", len);
    const char *conn_hdr = !keep_alive ? "Connection: close\r\n" : http10 ? "Connection: keep-alive\r\n" : "";
    const char *fmt = "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s\r\n";
    if (!extra) extra = "";
    const char *ct_name = content_type ? "Content-Type: " : "";
    const char *ct_val = content_type ? content_type : "";
    const char *ct_end = content_type ? "\r\n" : "";
    const char *reason = weir_http_reason(status);
    int hn = snprintf(NULL, 0, fmt, status, reason, ct_name, ct_val, ct_end, clen, extra, conn_hdr);
    size_t blen = has_body && !head_only ? len : 0;
    http_write_t *w = hn < 0 ? NULL : malloc(sizeof *w + (size_t)hn + 1 + blen);
    if (!w) {
        weir_log_error("http: out of memory for a %zu-byte response; closing the connection", len);
        conn_close(c);
        return;
    }
    snprintf(w->data, (size_t)hn + 1, fmt, status, reason, ct_name, ct_val, ct_end, clen, extra, conn_hdr);
    if (blen) memcpy(w->data + hn, body, blen);
    w->conn = c;
    w->final = 1;
    w->req.data = w;
    c->keep_alive = keep_alive;
    c->state = C_WRITING;
    /* A response the client does not take within the longer of the two
     * client-facing timeouts frees the connection. */
    const weir_http_limits_t *lim = &c->srv->lim;
    timer_arm(c, lim->idle_timeout_ms > lim->request_timeout_ms ? lim->idle_timeout_ms : lim->request_timeout_ms);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)((size_t)hn + blen));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write)) {
        free(w);
        conn_close(c);
    }
}

/* A malloc'd compact JSON error body, or NULL when memory is short. */
static char *error_body(int status, const char *msg) {
    json_t *j = json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", msg);
    if (!j) {
        /* not UTF-8 (a message quoting raw request bytes): keep it ASCII */
        char safe[512];
        size_t i = 0;
        for (; msg[i] && i < sizeof safe - 1; i++) safe[i] = (unsigned char)msg[i] < 0x80 ? msg[i] : '?';
        safe[i] = '\0';
        j = json_pack("{s:{s:i,s:s}}", "error", "status", status, "message", safe);
    }
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

/* Rejects the request being received (nothing was delivered to the handler)
 * and closes after the answer. */
static void conn_fail(conn_t *c, int status) {
    const weir_http_limits_t *lim = &c->srv->lim;
    char msg[256];
    switch (status) {
    case 408:
        snprintf(msg, sizeof msg, "request not received within %llu ms",
                 (unsigned long long)lim->request_timeout_ms);
        break;
    case 413:
        snprintf(msg, sizeof msg, "request body larger than %zu bytes", lim->max_body_bytes);
        break;
    case 431:
        snprintf(msg, sizeof msg, "request line and headers larger than %zu bytes", lim->max_header_bytes);
        break;
    case 400:
        snprintf(msg, sizeof msg, "malformed HTTP request: %s",
                 http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        break;
    default:
        snprintf(msg, sizeof msg, "%s", weir_http_reason(status));
        break;
    }
    weir_log_debug("http: rejecting a request with %d: %s", status, msg);
    req_free(c->req);
    c->req = NULL;
    c->fail_status = 0;
    c->complete = 0;
    char *body = error_body(status, msg);
    conn_send(c, status, "application/json", NULL, body ? body : "", body ? strlen(body) : 0, 0, 0, 0);
    free(body);
}

void weir_http_respond(weir_http_req_t *r, int status, const char *content_type, const char *body, size_t len) {
    if (!r) return;
    conn_t *c = r->conn;
    if (c) {
        c->req = NULL;
        int keep = r->keep_alive && !c->srv->closing;
        int head_only = r->method && !strcmp(r->method, "HEAD");
        int http10 = r->http_major == 1 && r->http_minor == 0;
        /* body may point into r (an echo): conn_send copies it before r goes */
        conn_send(c, status, content_type, r->extra, body, len, keep, head_only, http10);
    }
    req_free(r);
}

int weir_http_req_add_header(weir_http_req_t *r, const char *name, const char *value) {
    if (!r || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return WEIR_EINVAL;
    size_t used = strlen(r->extra);
    int n = snprintf(r->extra + used, sizeof r->extra - used, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= sizeof r->extra - used) {
        r->extra[used] = '\0';
        return WEIR_ELIMIT;
    }
    return 0;
}

int weir_http_req_gone(const weir_http_req_t *r) { return !r || !r->conn; }

void weir_http_respond_json(weir_http_req_t *r, int status, json_t *body) {
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (!s) {
        char *e = error_body(500, "response could not be serialized");
        weir_http_respond(r, 500, "application/json", e ? e : "", e ? strlen(e) : 0);
        free(e);
        return;
    }
    weir_http_respond(r, status, "application/json", s, strlen(s));
    free(s);
}

void weir_http_respond_error(weir_http_req_t *r, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *s = error_body(status, msg);
    weir_http_respond(r, status, "application/json", s ? s : "", s ? strlen(s) : 0);
    free(s);
}

const char *weir_http_reason(int status) {
    switch (status) {
#define WEIR_HTTP_REASON(num, name, string) \
    case num:                               \
        return #string;
        HTTP_STATUS_MAP(WEIR_HTTP_REASON)
#undef WEIR_HTTP_REASON
    default:
        return "Unknown";
    }
}

/* ---- request accessors ------------------------------------------------- */

const char *weir_http_req_method(const weir_http_req_t *r) { return r && r->method ? r->method : ""; }
const char *weir_http_req_path(const weir_http_req_t *r) { return r && r->path ? r->path : "/"; }
const char *weir_http_req_query(const weir_http_req_t *r) { return r ? r->query : NULL; }

const char *weir_http_req_header(const weir_http_req_t *r, const char *name) {
    if (!r || !name || !r->hdrs.data) return NULL;
    const char *p = r->hdrs.data, *end = p + r->hdrs.len;
    while (p < end) {
        const char *value = p + strlen(p) + 1;
        if (value >= end) break; /* a header still being received */
        if (!strcasecmp(p, name)) return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}

const char *weir_http_req_body(const weir_http_req_t *r, size_t *len) {
    if (len) *len = r ? r->body.len : 0;
    return r && r->body.data ? r->body.data : "";
}

void weir_http_req_set_data(weir_http_req_t *r, void *data) {
    if (r) r->data = data;
}
void *weir_http_req_data(const weir_http_req_t *r) { return r ? r->data : NULL; }

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* One decoded character of a form-encoded query. A malformed escape and
 * %00 stay literal: a NUL would silently cut the C string short. */
static int query_next(const char **pp, const char *end) {
    const char *p = *pp;
    if (*p == '+') {
        *pp = p + 1;
        return ' ';
    }
    if (*p == '%' && end - p >= 3) {
        int hi = hexval((unsigned char)p[1]), lo = hexval((unsigned char)p[2]);
        if (hi >= 0 && lo >= 0 && (hi | lo)) {
            *pp = p + 3;
            return hi * 16 + lo;
        }
    }
    *pp = p + 1;
    return (unsigned char)*p;
}

int weir_http_req_query_param(const weir_http_req_t *r, const char *name, char *buf, size_t bufsize) {
    if (!buf || !bufsize) return 0;
    buf[0] = '\0';
    if (!r || !r->query || !name) return 0;
    const char *p = r->query;
    while (*p) {
        const char *end = p + strcspn(p, "&");
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq ? eq : end;
        const char *k = p, *nm = name;
        int match = 1;
        while (k < kend) {
            int ch = query_next(&k, kend);
            if (!*nm || (unsigned char)*nm != ch) {
                match = 0;
                break;
            }
            nm++;
        }
        if (match && !*nm && kend > p) {
            size_t o = 0;
            const char *v = eq ? eq + 1 : end;
            while (v < end) {
                int ch = query_next(&v, end);
                if (o + 1 >= bufsize) {
                    buf[0] = '\0'; /* does not fit: absent rather than silently truncated */
                    return 0;
                }
                buf[o++] = (char)ch;
            }
            buf[o] = '\0';
            return 1;
        }
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* ---- server ------------------------------------------------------------ */

static void server_on_connection(uv_stream_t *ls, int status) {
    weir_http_server_t *s = ls->data;
    if (status < 0) {
        weir_log_warn("http: accept failed on port %d: %s", s->port, uv_strerror(status));
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        weir_log_error("http: out of memory accepting a connection on port %d", s->port);
        return;
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c->shutdown.data = c;
    c->handles = 2;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    weir_buf_init(&c->pending, PENDING_MAX + READ_CHUNK);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nactive++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    if (s->nactive > s->lim.max_connections) {
        uint64_t now = weir_now_ms();
        if (now - s->last_reject_log_ms >= 1000) { /* one line a second, not one per attempt */
            weir_log_warn("http: %zu connections open on port %d (max_connections); closing new ones",
                          s->nactive - 1, s->port);
            s->last_reject_log_ms = now;
        }
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1); /* small responses must not wait for delayed ACKs */
    c->state = C_IDLE;
    timer_arm(c, s->lim.idle_timeout_ms);
    conn_read_start(c);
}

static void server_on_listener_close(uv_handle_t *h) {
    weir_http_server_t *s = h->data;
    s->listener_closed = 1;
    server_maybe_finish(s);
}

static void set_msg(char *msg, size_t msgsize, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_msg(char *msg, size_t msgsize, const char *fmt, ...) {
    if (!msg || !msgsize) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msgsize, fmt, ap);
    va_end(ap);
}

/* Binds with plain sockets first so that the common failures (address in
 * use, bad host) return before any libuv handle exists: nothing to close
 * asynchronously, and *out is NULL as promised. */
static int bind_socket(const char *host, int port, int *fd_out, char *msg, size_t msgsize) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    const char *node = host && *host && strcmp(host, "*") ? host : NULL;
    int gai = getaddrinfo(node, portstr, &hints, &res);
    if (gai) {
        set_msg(msg, msgsize, "cannot resolve listen address \"%s\": %s", host ? host : "", gai_strerror(gai));
        return WEIR_EINVAL;
    }
    int err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(res);
            *fd_out = fd;
            return 0;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    set_msg(msg, msgsize, "cannot listen on %s:%d: %s (is another process using the port?)",
            host && *host ? host : "*", port, strerror(err));
    return WEIR_EIO;
}

int weir_http_server_new(uv_loop_t *loop, const char *host, int port, const weir_http_limits_t *lim,
                         weir_http_handler_cb cb, void *data, weir_http_server_t **out, char *msg,
                         size_t msgsize) {
    if (out) *out = NULL;
    if (msg && msgsize) msg[0] = '\0';
    if (!loop || !cb || !out || port < 0 || port > 65535) {
        set_msg(msg, msgsize, "weir_http_server_new: loop, handler and out are required and port must be 0-65535");
        return WEIR_EINVAL;
    }
    int fd = -1;
    int rc = bind_socket(host, port, &fd, msg, msgsize);
    if (rc) return rc;
    weir_http_server_t *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        set_msg(msg, msgsize, "out of memory");
        return WEIR_ENOMEM;
    }
    s->loop = loop;
    s->cb = cb;
    s->data = data;
    if (lim) s->lim = *lim;
    if (!s->lim.max_header_bytes) s->lim.max_header_bytes = DEFAULT_HEADER_BYTES;
    if (!s->lim.max_body_bytes) s->lim.max_body_bytes = DEFAULT_BODY_BYTES;
    if (!s->lim.request_timeout_ms) s->lim.request_timeout_ms = DEFAULT_REQUEST_MS;
    if (!s->lim.idle_timeout_ms) s->lim.idle_timeout_ms = DEFAULT_IDLE_MS;
    if (!s->lim.max_connections) s->lim.max_connections = DEFAULT_MAX_CONNS;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    rc = uv_tcp_open(&s->listener, fd);
    if (rc) close(fd);
    if (!rc) rc = uv_listen((uv_stream_t *)&s->listener, 511, server_on_connection);
    if (rc) {
        set_msg(msg, msgsize, "cannot listen on %s:%d: %s", host && *host ? host : "*", port, uv_strerror(rc));
        /* the handle exists now; the server goes with its close callback */
        s->closing = 1;
        uv_close((uv_handle_t *)&s->listener, server_on_listener_close);
        return WEIR_EIO;
    }
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    s->port = port;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET) s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6) s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    *out = s;
    return 0;
}

int weir_http_server_port(const weir_http_server_t *s) { return s ? s->port : -1; }

void weir_http_server_free(weir_http_server_t *s, void (*done)(void *), void *done_data) {
    if (!s || s->closing) return;
    s->closing = 1;
    s->done = done;
    s->done_data = done_data;
    uv_close((uv_handle_t *)&s->listener, server_on_listener_close);
    /* conn_close only starts closing; connections leave the list in their
     * close callbacks, so this walk stays valid. */
    for (conn_t *c = s->conns; c; c = c->next) conn_close(c);
}
