/* test_http.c — the HTTP server over real sockets.
 *
 * Each case runs a libuv loop with the server on 127.0.0.1:0 in a thread and
 * talks to it from the test thread with plain blocking sockets, with short
 * limits so that the timeouts are observable. Stopping the server goes
 * through weir_http_server_free and then uv_loop_close, which fails if any
 * handle was left open; under ASan every case ends with a leak check. */
#include "engine/http.h"
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() __lsan_do_leak_check()
#else
#define LEAK_CHECK() ((void)0)
#endif

/* ---- the server side ---------------------------------------------------- */

typedef struct {
    weir_http_limits_t lim;
    uv_loop_t loop;
    uv_async_t stop;
    weir_http_server_t *srv;
    pthread_t thread;
    atomic_int port;
    atomic_int handled;       /* handler calls */
    atomic_int async_started; /* requests answered later from a timer */
    atomic_int async_answered;
    int done_called;
    int loop_close_rc;
    char err[256];
} server_t;

typedef struct {
    uv_timer_t timer;
    weir_http_req_t *req;
    server_t *srv;
} late_t;

static void late_closed(uv_handle_t *h) { free(h->data); }

static void late_fire(uv_timer_t *t) {
    late_t *l = t->data;
    weir_http_respond(l->req, 200, "text/plain", "late", 4);
    atomic_fetch_add(&l->srv->async_answered, 1);
    uv_close((uv_handle_t *)&l->timer, late_closed);
}

static void handler(weir_http_req_t *r, void *data) {
    server_t *s = data;
    atomic_fetch_add(&s->handled, 1);
    const char *path = weir_http_req_path(r);
    char buf[64], out[512];
    if (!strcmp(path, "/hello")) {
        weir_http_respond(r, 200, "text/plain", "hello", 5);
    } else if (!strcmp(path, "/echo")) {
        size_t n;
        const char *b = weir_http_req_body(r, &n);
        const char *ct = weir_http_req_header(r, "content-type");
        weir_http_respond(r, 200, ct ? ct : "application/octet-stream", b, n);
    } else if (!strcmp(path, "/header")) {
        const char *v = weir_http_req_header(r, "x-test");
        snprintf(out, sizeof out, "[%s][%s]", v ? v : "(none)", weir_http_req_method(r));
        weir_http_respond(r, 200, "text/plain", out, strlen(out));
    } else if (!strcmp(path, "/query")) {
        size_t o = 0;
        const char *names[] = {"a", "b", "empty", "key", "missing", "long", "pct"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            int found = weir_http_req_query_param(r, names[i], buf, 16);
            o += (size_t)snprintf(out + o, sizeof out - o, "%s=%s%s;", names[i], found ? "" : "!", buf);
        }
        const char *q = weir_http_req_query(r);
        snprintf(out + o, sizeof out - o, "raw=%s", q ? q : "(null)");
        weir_http_respond(r, 200, "text/plain", out, strlen(out));
    } else if (!strcmp(path, "/json")) {
        weir_http_respond_json(r, 201, json_pack("{s:b,s:s}", "ok", 1, "path", path));
    } else if (!strcmp(path, "/async")) {
        int ms = 50;
        if (weir_http_req_query_param(r, "ms", buf, sizeof buf)) ms = atoi(buf);
        late_t *l = calloc(1, sizeof *l);
        l->req = r;
        l->srv = s;
        uv_timer_init(&s->loop, &l->timer);
        l->timer.data = l;
        uv_timer_start(&l->timer, late_fire, (uint64_t)ms, 0);
        atomic_fetch_add(&s->async_started, 1);
    } else if (!strcmp(path, "/big")) {
        size_t n = weir_http_req_query_param(r, "n", buf, sizeof buf) ? (size_t)atol(buf) : 0;
        char *b = malloc(n + 1);
        memset(b, 'B', n);
        weir_http_respond(r, 200, "application/octet-stream", b, n);
        free(b);
    } else if (!strcmp(path, "/count")) {
        snprintf(out, sizeof out, "%d", atomic_load(&s->handled));
        weir_http_respond(r, 200, "text/plain", out, strlen(out));
    } else {
        weir_http_respond_error(r, 404, "no route for %s", path);
    }
}

static void server_done(void *data) { ((server_t *)data)->done_called++; }

static void server_on_stop(uv_async_t *a) {
    server_t *s = a->data;
    weir_http_server_free(s->srv, server_done, s);
    uv_close((uv_handle_t *)&s->stop, NULL);
}

static void *server_thread(void *arg) {
    server_t *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    s->loop_close_rc = uv_loop_close(&s->loop);
    return NULL;
}

static void server_start(server_t *s, size_t max_header, size_t max_body, uint64_t req_ms, uint64_t idle_ms,
                         size_t max_conns) {
    memset(s, 0, sizeof *s);
    s->lim = (weir_http_limits_t){max_header, max_body, req_ms, idle_ms, max_conns};
    CHECK_EQ(uv_loop_init(&s->loop), 0);
    CHECK_EQ(uv_async_init(&s->loop, &s->stop, server_on_stop), 0);
    s->stop.data = s;
    int rc = weir_http_server_new(&s->loop, "127.0.0.1", 0, &s->lim, handler, s, &s->srv, s->err, sizeof s->err);
    if (rc) fprintf(stderr, "    server: %s\n", s->err);
    CHECK_EQ(rc, 0);
    CHECK(s->srv != NULL);
    atomic_store(&s->port, weir_http_server_port(s->srv));
    CHECK(atomic_load(&s->port) > 0);
    CHECK_EQ(pthread_create(&s->thread, NULL, server_thread, s), 0);
}

static void server_default(server_t *s) { server_start(s, 4096, 4096, 300, 500, 64); }

/* Frees the server from its own loop, waits for the loop to end, and checks
 * that nothing was left open or leaked. */
static void server_stop(server_t *s) {
    uv_async_send(&s->stop);
    pthread_join(s->thread, NULL);
    CHECK_EQ(s->done_called, 1);
    CHECK_EQ(s->loop_close_rc, 0);
    LEAK_CHECK();
}

/* ---- the client side ---------------------------------------------------- */

typedef struct {
    int fd;
    char buf[1 << 17];
    size_t len;
} client_t;

typedef struct {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
} resp_t;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static client_t *cl_open(server_t *s) {
    client_t *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atomic_load(&s->port))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return c;
}

static void cl_close(client_t *c) {
    if (!c) return;
    close(c->fd);
    free(c);
}

/* Closes with RST instead of FIN: a client that vanishes. */
static void cl_reset(client_t *c) {
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    cl_close(c);
}

static void cl_send_n(client_t *c, const char *data, size_t n) {
    while (n) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        CHECK(w > 0);
        data += w;
        n -= (size_t)w;
    }
}

static void cl_send(client_t *c, const char *s) { cl_send_n(c, s, strlen(s)); }

/* Reads more into the buffer: >0 bytes, 0 EOF, -1 reset or timeout. */
static ssize_t cl_fill(client_t *c) {
    if (c->len >= sizeof c->buf - 1) return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
    if (n > 0) c->len += (size_t)n;
    return n < 0 ? -1 : n;
}

static void cl_consume(client_t *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Reads one response; 0, or -1 when the connection ended first. */
static int cl_response(client_t *c, resp_t *r) {
    memset(r, 0, sizeof *r);
    char *end;
    for (;;) {
        c->buf[c->len] = '\0';
        end = strstr(c->buf, "\r\n\r\n");
        if (end) break;
        if (cl_fill(c) <= 0) return -1;
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    CHECK(hlen < sizeof r->head);
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    CHECK(sscanf(r->head, "HTTP/1.1 %d ", &r->status) == 1);
    size_t clen = 0;
    const char *cl = strcasestr(r->head, "\r\ncontent-length:");
    if (cl) clen = (size_t)strtoul(cl + 17, NULL, 10);
    cl_consume(c, hlen);
    while (c->len < clen)
        if (cl_fill(c) <= 0) return -1;
    r->body = malloc(clen + 1);
    memcpy(r->body, c->buf, clen);
    r->body[clen] = '\0';
    r->body_len = clen;
    cl_consume(c, clen);
    return 0;
}

static void resp_free(resp_t *r) {
    free(r->body);
    r->body = NULL;
}

/* Waits for the server to close: the elapsed ms, or -1 if it did not
 * within ms, or -2 if bytes came instead. */
static long cl_wait_closed(client_t *c, int ms) {
    uint64_t t0 = now_ms();
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int left = ms;
    while (left > 0) {
        int pr = poll(&pfd, 1, left);
        if (pr == 0) return -1;
        char b[256];
        ssize_t n = recv(c->fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return (long)(now_ms() - t0);
        if (n > 0) return -2;
        left = ms - (int)(now_ms() - t0);
    }
    return -1;
}

/* One request, one response, on connection c. */
static void cl_get(client_t *c, const char *path, resp_t *r) {
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    cl_send(c, req);
    CHECK_EQ(cl_response(c, r), 0);
}

/* ---- cases --------------------------------------------------------------- */

TEST(get_answered) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    resp_t r;
    cl_get(c, "/hello", &r);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "hello");
    CHECK_CONTAINS(r.head, "HTTP/1.1 200 OK\r\n");
    CHECK_CONTAINS(r.head, "Content-Type: text/plain\r\n");
    CHECK_CONTAINS(r.head, "Content-Length: 5\r\n");
    CHECK(!strcasestr(r.head, "connection: close"));
    resp_free(&r);
    cl_get(c, "/nope?x=1", &r);
    CHECK_EQ(r.status, 404);
    CHECK_CONTAINS(r.head, "HTTP/1.1 404 Not Found\r\n");
    CHECK_CONTAINS(r.head, "Content-Type: application/json\r\n");
    CHECK_STR(r.body, "{\"error\":{\"status\":404,\"message\":\"no route for /nope\"}}");
    resp_free(&r);
    cl_get(c, "/json", &r);
    CHECK_EQ(r.status, 201);
    CHECK_CONTAINS(r.head, "Content-Type: application/json\r\n");
    CHECK_STR(r.body, "{\"ok\":true,\"path\":\"/json\"}");
    resp_free(&r);
    cl_close(c);
    server_stop(&s);
}

TEST(head_has_no_body) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    cl_send(c, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    /* read only the head; then the next response must follow it directly */
    for (;;) {
        c->buf[c->len] = '\0';
        if (strstr(c->buf, "\r\n\r\n")) break;
        CHECK(cl_fill(c) > 0);
    }
    char *end = strstr(c->buf, "\r\n\r\n") + 4;
    CHECK_CONTAINS(c->buf, "Content-Length: 5\r\n");
    cl_consume(c, (size_t)(end - c->buf));
    resp_t r;
    cl_get(c, "/hello", &r);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "hello");
    resp_free(&r);
    cl_close(c);
    server_stop(&s);
}

TEST(keep_alive_three_requests) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    for (int i = 0; i < 3; i++) {
        resp_t r;
        cl_get(c, "/count", &r);
        CHECK_EQ(r.status, 200);
        char want[16];
        snprintf(want, sizeof want, "%d", i + 1);
        CHECK_STR(r.body, want);
        resp_free(&r);
    }
    CHECK_EQ(atomic_load(&s.handled), 3);
    cl_close(c);
    server_stop(&s);
}

TEST(pipelined_answered_in_order) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    /* three requests in one write; the middle one is answered late, so an
     * out-of-order or concurrent server would answer the third first */
    cl_send(c,
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\none"
            "GET /async?ms=80 HTTP/1.1\r\nHost: t\r\n\r\n"
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nthree");
    const char *want[] = {"one", "late", "three"};
    for (int i = 0; i < 3; i++) {
        resp_t r;
        CHECK_EQ(cl_response(c, &r), 0);
        CHECK_EQ(r.status, 200);
        CHECK_STR(r.body, want[i]);
        resp_free(&r);
    }
    CHECK_EQ(atomic_load(&s.handled), 3);
    cl_close(c);
    server_stop(&s);
}

typedef struct {
    client_t *c;
    const char *data;
    size_t len;
} sender_t;

static void *sender_thread(void *arg) {
    sender_t *sd = arg;
    cl_send_n(sd->c, sd->data, sd->len);
    return NULL;
}

TEST(pipelined_flood_behind_slow_request) {
    server_t s;
    server_start(&s, 4096, 4096, 2000, 2000, 64);
    client_t *c = cl_open(&s);
    /* one slow request, then far more pipelined bytes than the server holds
     * per connection (64 KiB): it must stop reading, then resume in order */
    enum { N = 6000 };
    size_t cap = 64 + (size_t)N * 64, o = 0;
    char *all = malloc(cap);
    o += (size_t)snprintf(all + o, cap - o, "GET /async?ms=150 HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < N; i++) o += (size_t)snprintf(all + o, cap - o, "GET /count?i=%d HTTP/1.1\r\n\r\n", i);
    CHECK(o > 128 * 1024);
    sender_t sd = {c, all, o};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, sender_thread, &sd), 0);
    resp_t r;
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_STR(r.body, "late");
    resp_free(&r);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(cl_response(c, &r), 0);
        char want[16];
        snprintf(want, sizeof want, "%d", i + 2);
        CHECK_STR(r.body, want);
        resp_free(&r);
    }
    pthread_join(th, NULL);
    free(all);
    cl_close(c);
    server_stop(&s);
}

TEST(client_that_stops_reading_is_dropped) {
    server_t s;
    server_start(&s, 4096, 4096, 300, 500, 64); /* write deadline: max(300, 500) ms */
    client_t *c = cl_open(&s);
    cl_send(c, "GET /big?n=67108864 HTTP/1.1\r\nHost: t\r\n\r\n");
    sleep_ms(1500); /* read nothing, well past the deadline */
    size_t got = 0;
    for (;;) {
        char b[65536];
        ssize_t n = recv(c->fd, b, sizeof b, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    CHECK(got < 67108864); /* cut off, not delivered whole */
    cl_close(c);
    /* the server is fine afterwards */
    c = cl_open(&s);
    resp_t r;
    cl_get(c, "/hello", &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    cl_close(c);
    server_stop(&s);
}

TEST(post_body_echoed) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    cl_send(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-test\r\nContent-Length: 11\r\n\r\n");
    sleep_ms(20); /* the body in a later packet */
    cl_send(c, "hello world");
    resp_t r;
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 200);
    CHECK_CONTAINS(r.head, "Content-Type: application/x-test\r\n");
    CHECK_STR(r.body, "hello world");
    resp_free(&r);
    /* a chunked body within the cap is decoded */
    cl_send(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nabcde\r\n3\r\nfgh\r\n0\r\n\r\n");
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "abcdefgh");
    resp_free(&r);
    /* exactly at the cap is allowed */
    char *body = malloc(4096 + 1);
    memset(body, 'x', 4096);
    body[4096] = '\0';
    cl_send(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n");
    cl_send(c, body);
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.body_len, 4096);
    CHECK(memcmp(r.body, body, 4096) == 0);
    resp_free(&r);
    free(body);
    cl_close(c);
    server_stop(&s);
}

TEST(expect_100_continue) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    cl_send(c, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    resp_t r;
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 100);
    resp_free(&r);
    cl_send(c, "data");
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "data");
    resp_free(&r);
    cl_close(c);
    server_stop(&s);
}

TEST(headers_case_insensitive) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    cl_send(c, "GET /header HTTP/1.1\r\nhost: t\r\nX-TeSt:   spaced value  \r\nx-test: second\r\n\r\n");
    resp_t r;
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_STR(r.body, "[spaced value][GET]");
    resp_free(&r);
    /* a header split across many packets, name and value */
    const char *parts[] = {"GET /hea", "der HTTP/1.1\r\nX-", "Te", "st: ab", "cd\r", "\n\r\n"};
    for (size_t i = 0; i < 6; i++) {
        cl_send(c, parts[i]);
        sleep_ms(5);
    }
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_STR(r.body, "[abcd][GET]");
    resp_free(&r);
    cl_close(c);
    server_stop(&s);
}

TEST(http10_closes_unless_keep_alive) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    cl_send(c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    resp_t r;
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_CONTAINS(r.head, "Connection: keep-alive\r\n");
    resp_free(&r);
    cl_send(c, "GET /hello HTTP/1.0\r\n\r\n");
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 200);
    CHECK_CONTAINS(r.head, "Connection: close\r\n");
    resp_free(&r);
    long t = cl_wait_closed(c, 300);
    CHECK(t >= 0);
    cl_close(c);
    /* HTTP/1.1 with Connection: close */
    c = cl_open(&s);
    cl_send(c, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n");
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_CONTAINS(r.head, "Connection: close\r\n");
    resp_free(&r);
    CHECK(cl_wait_closed(c, 300) >= 0);
    cl_close(c);
    server_stop(&s);
}

TEST(header_cap_431) {
    server_t s;
    server_start(&s, 1024, 4096, 1000, 1000, 64);
    client_t *c = cl_open(&s);
    char big[2048], req[4096];
    /* just under the cap: answered */
    memset(big, 'a', 900);
    big[900] = '\0';
    snprintf(req, sizeof req, "GET /hello HTTP/1.1\r\nX-Big: %s\r\n\r\n", big);
    cl_send(c, req);
    resp_t r;
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    /* over it: 431, then the connection is closed */
    memset(big, 'a', 1500);
    big[1500] = '\0';
    snprintf(req, sizeof req, "GET /hello HTTP/1.1\r\nX-Big: %s\r\n\r\n", big);
    cl_send(c, req);
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 431);
    CHECK_CONTAINS(r.head, "Connection: close\r\n");
    CHECK_CONTAINS(r.body, "\"status\":431");
    resp_free(&r);
    CHECK(cl_wait_closed(c, 500) >= 0);
    cl_close(c);
    /* many small headers, each small, in many packets: counted together */
    c = cl_open(&s);
    cl_send(c, "GET /hello HTTP/1.1\r\n");
    int answered = 0;
    for (int i = 0; i < 100 && !answered; i++) {
        char h[64];
        snprintf(h, sizeof h, "X-H%03d: 0123456789\r\n", i);
        if (send(c->fd, h, strlen(h), MSG_NOSIGNAL) < 0) break;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        answered = poll(&pfd, 1, 2) > 0;
    }
    CHECK(answered); /* 100 x 22 bytes passes 1024 well before the end */
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 431);
    resp_free(&r);
    cl_close(c);
    /* the cap is on the bytes as sent, not on what is kept: empty headers
     * cost their ": " and CRLF too */
    for (int round = 0; round < 2; round++) {
        int n = round == 0 ? 100 : 160; /* about 720 and 1140 bytes on the wire */
        size_t o = (size_t)snprintf(req, sizeof req, "GET /hello HTTP/1.1\r\n");
        for (int i = 0; i < n; i++) o += (size_t)snprintf(req + o, sizeof req - o, "X%03d:\r\n", i);
        snprintf(req + o, sizeof req - o, "\r\n");
        c = cl_open(&s);
        cl_send(c, req);
        CHECK_EQ(cl_response(c, &r), 0);
        CHECK_EQ(r.status, round == 0 ? 200 : 431);
        resp_free(&r);
        cl_close(c);
    }
    CHECK_EQ(atomic_load(&s.handled), 2);
    server_stop(&s);
}

TEST(body_cap_content_length_413) {
    server_t s;
    server_start(&s, 4096, 1024, 1000, 1000, 64);
    client_t *c = cl_open(&s);
    /* refused from the header alone, before any body byte is sent */
    cl_send(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n");
    resp_t r;
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 413);
    CHECK_CONTAINS(r.head, "Connection: close\r\n");
    CHECK_CONTAINS(r.body, "\"status\":413");
    resp_free(&r);
    CHECK(cl_wait_closed(c, 500) >= 0);
    cl_close(c);
    /* a huge declared body whose first bytes are already on the way still
     * gets its 413 read by the client (no reset) */
    c = cl_open(&s);
    char chunk[8192];
    memset(chunk, 'z', sizeof chunk);
    cl_send(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n");
    cl_send_n(c, chunk, sizeof chunk);
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 413);
    resp_free(&r);
    cl_close(c);
    CHECK_EQ(atomic_load(&s.handled), 0);
    server_stop(&s);
}

TEST(body_cap_chunked_413) {
    server_t s;
    server_start(&s, 4096, 1024, 1000, 1000, 64);
    client_t *c = cl_open(&s);
    cl_send(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[600];
    memset(chunk, 'c', sizeof chunk);
    int got = 0;
    resp_t r;
    for (int i = 0; i < 4; i++) { /* 2400 decoded bytes against a 1024 cap */
        if (send(c->fd, "258\r\n", 5, MSG_NOSIGNAL) < 0) break; /* 0x258 = 600 */
        if (send(c->fd, chunk, sizeof chunk, MSG_NOSIGNAL) < 0) break;
        if (send(c->fd, "\r\n", 2, MSG_NOSIGNAL) < 0) break;
        sleep_ms(10);
    }
    got = cl_response(c, &r) == 0;
    CHECK(got);
    CHECK_EQ(r.status, 413);
    CHECK_CONTAINS(r.head, "Connection: close\r\n");
    resp_free(&r);
    CHECK(cl_wait_closed(c, 2500) >= 0);
    cl_close(c);
    CHECK_EQ(atomic_load(&s.handled), 0);
    server_stop(&s);
}

TEST(slow_request_408) {
    server_t s;
    /* request timeout 300 ms, idle 3 s: a 408 near 300 ms is the request clock */
    server_start(&s, 4096, 4096, 300, 3000, 64);
    client_t *c = cl_open(&s);
    uint64_t t0 = now_ms();
    cl_send(c, "GET /hello HTTP/1.1\r\nHost: t\r\n");
    resp_t r;
    CHECK_EQ(cl_response(c, &r), 0);
    uint64_t took = now_ms() - t0;
    CHECK_EQ(r.status, 408);
    CHECK_CONTAINS(r.head, "Connection: close\r\n");
    CHECK_CONTAINS(r.body, "\"status\":408");
    CHECK(took >= 250 && took < 1000);
    resp_free(&r);
    CHECK(cl_wait_closed(c, 1000) >= 0);
    cl_close(c);
    /* slow-loris: a byte every 40 ms does not extend the deadline */
    c = cl_open(&s);
    t0 = now_ms();
    const char *req = "GET /hello HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (const char *p = req; *p; p++) {
        if (send(c->fd, p, 1, MSG_NOSIGNAL) < 0) break;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 40) > 0) break;
    }
    CHECK_EQ(cl_response(c, &r), 0);
    took = now_ms() - t0;
    CHECK_EQ(r.status, 408);
    CHECK(took >= 250 && took < 1000);
    resp_free(&r);
    cl_close(c);
    /* the clock starts at a request's first byte, not when the connection
     * went idle after the previous answer */
    c = cl_open(&s);
    cl_get(c, "/hello", &r);
    resp_free(&r);
    sleep_ms(200);
    t0 = now_ms();
    cl_send(c, "GET /hello HTTP/1.1\r\n");
    CHECK_EQ(cl_response(c, &r), 0);
    took = now_ms() - t0;
    CHECK_EQ(r.status, 408);
    CHECK(took >= 250 && took < 1000);
    resp_free(&r);
    cl_close(c);
    CHECK_EQ(atomic_load(&s.handled), 1);
    server_stop(&s);
}

TEST(idle_connection_closed) {
    server_t s;
    server_default(&s); /* idle 500 ms */
    client_t *c = cl_open(&s);
    resp_t r;
    cl_get(c, "/hello", &r);
    resp_free(&r);
    long t = cl_wait_closed(c, 3000);
    CHECK(t >= 400 && t < 1500);
    cl_close(c);
    /* a client that connects and never speaks is closed by the same timer */
    c = cl_open(&s);
    t = cl_wait_closed(c, 3000);
    CHECK(t >= 400 && t < 1500);
    cl_close(c);
    /* a connection in use is not idle: requests every 300 ms keep it */
    c = cl_open(&s);
    for (int i = 0; i < 4; i++) {
        cl_get(c, "/hello", &r);
        CHECK_EQ(r.status, 200);
        resp_free(&r);
        sleep_ms(300);
    }
    cl_close(c);
    server_stop(&s);
}

TEST(malformed_400) {
    server_t s;
    server_default(&s);
    const char *bad[] = {
        "BREW / HTTP/1.1\r\n\r\n",               /* unknown method */
        "GET / HTTP/9.x\r\n\r\n",                /* bad version */
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",  /* no colon */
        "POST /echo HTTP/1.1\r\nContent-Length: 12x\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        client_t *c = cl_open(&s);
        cl_send(c, bad[i]);
        resp_t r;
        CHECK_EQ(cl_response(c, &r), 0);
        CHECK_EQ(r.status, 400);
        CHECK_CONTAINS(r.head, "Connection: close\r\n");
        CHECK_CONTAINS(r.body, "{\"error\":{\"status\":400,\"message\":\"malformed HTTP request");
        resp_free(&r);
        CHECK(cl_wait_closed(c, 1000) >= 0);
        cl_close(c);
    }
    /* a good request, then garbage on the same connection */
    client_t *c = cl_open(&s);
    cl_send(c, "GET /hello HTTP/1.1\r\n\r\n\x01\x02garbage\r\n\r\n");
    resp_t r;
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    CHECK_EQ(cl_response(c, &r), 0);
    CHECK_EQ(r.status, 400);
    resp_free(&r);
    cl_close(c);
    CHECK_EQ(atomic_load(&s.handled), 1);
    server_stop(&s);
}

TEST(async_answer) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    uint64_t t0 = now_ms();
    resp_t r;
    cl_get(c, "/async?ms=50", &r);
    uint64_t took = now_ms() - t0;
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "late");
    CHECK(took >= 45);
    resp_free(&r);
    /* a handler that takes longer than the request timeout is not cut off */
    cl_get(c, "/async?ms=400", &r);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "late");
    resp_free(&r);
    cl_get(c, "/hello", &r);
    CHECK_STR(r.body, "hello");
    resp_free(&r);
    cl_close(c);
    server_stop(&s);
    CHECK_EQ(atomic_load(&s.async_answered), 2);
}

TEST(client_gone_before_async_answer) {
    server_t s;
    server_default(&s);
    for (int i = 0; i < 20; i++) {
        client_t *c = cl_open(&s);
        cl_send(c, "GET /async?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n");
        /* wait until the handler has it, then vanish (FIN or RST) */
        while (atomic_load(&s.async_started) < i + 1) sleep_ms(1);
        if (i % 2) cl_reset(c);
        else cl_close(c);
    }
    /* pipelined request behind the one in flight, then gone */
    client_t *c = cl_open(&s);
    cl_send(c, "GET /async?ms=100 HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
    while (atomic_load(&s.async_started) < 21) sleep_ms(1);
    cl_close(c);
    sleep_ms(250); /* every late answer has fired into a closed connection */
    CHECK_EQ(atomic_load(&s.async_answered), 21);
    c = cl_open(&s);
    resp_t r;
    cl_get(c, "/hello", &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    cl_close(c);
    CHECK_EQ(atomic_load(&s.handled), 22); /* the pipelined /hello was never dispatched */
    server_stop(&s);
}

TEST(server_freed_with_request_awaiting_answer) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    cl_send(c, "GET /async?ms=150 HTTP/1.1\r\nHost: t\r\n\r\n");
    while (atomic_load(&s.async_started) < 1) sleep_ms(1);
    uint64_t t0 = now_ms();
    /* the server goes first; the request stays valid until the timer answers it */
    server_stop(&s);
    CHECK(now_ms() - t0 >= 100); /* the loop ran until the late answer */
    CHECK_EQ(atomic_load(&s.async_answered), 1);
    CHECK(cl_wait_closed(c, 1000) >= 0);
    cl_close(c);
}

TEST(max_connections_enforced) {
    server_t s;
    server_start(&s, 4096, 4096, 1000, 5000, 2);
    client_t *a = cl_open(&s), *b = cl_open(&s);
    resp_t r;
    cl_get(a, "/hello", &r);
    resp_free(&r);
    cl_get(b, "/hello", &r);
    resp_free(&r);
    client_t *x = cl_open(&s);
    long t = cl_wait_closed(x, 1000); /* well before the 5 s idle timeout */
    CHECK(t >= 0);
    cl_close(x);
    /* the two admitted ones still work */
    cl_get(a, "/hello", &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    /* closing one frees its slot */
    cl_close(b);
    sleep_ms(100);
    client_t *d = cl_open(&s);
    cl_get(d, "/hello", &r);
    CHECK_EQ(r.status, 200);
    resp_free(&r);
    cl_close(d);
    cl_close(a);
    server_stop(&s);
}

TEST(query_params_decoded) {
    server_t s;
    server_default(&s);
    client_t *c = cl_open(&s);
    resp_t r;
    cl_get(c, "/query?a=hello%20w%2Fd&b=x+y&empty=&k%65y=v&a=second&long=0123456789abcdefXYZ&pct=%zz%00%4"
              "#frag", &r);
    CHECK_EQ(r.status, 200);
    CHECK_STR(r.body, "a=hello w/d;b=x y;empty=;key=v;missing=!;long=!;pct=%zz%00%4;"
                      "raw=a=hello%20w%2Fd&b=x+y&empty=&k%65y=v&a=second&long=0123456789abcdefXYZ&pct=%zz%00%4");
    resp_free(&r);
    cl_get(c, "/query", &r);
    CHECK_CONTAINS(r.body, "a=!;");
    CHECK_CONTAINS(r.body, "raw=(null)");
    resp_free(&r);
    /* the path carries no query; absolute-form targets keep only the path */
    cl_get(c, "http://example.com/query?b=1", &r);
    CHECK_EQ(r.status, 200);
    CHECK_CONTAINS(r.body, "b=1;");
    resp_free(&r);
    cl_close(c);
    server_stop(&s);
}

TEST(ten_thousand_keep_alive_requests) {
    server_t s;
    server_start(&s, 4096, 4096, 2000, 2000, 64);
    client_t *c = cl_open(&s);
    uint64_t t0 = now_ms();
    int ok = 0;
    for (int i = 0; i < 10000; i++) {
        resp_t r;
        cl_get(c, "/hello", &r);
        ok += r.status == 200 && !strcmp(r.body, "hello");
        resp_free(&r);
    }
    uint64_t took = now_ms() - t0;
    CHECK_EQ(ok, 10000);
    CHECK_EQ(atomic_load(&s.handled), 10000);
    fprintf(stderr, "    10000 keep-alive requests in %llu ms\n", (unsigned long long)took);
    cl_close(c);
    server_stop(&s);
}

static void noop_handler(weir_http_req_t *r, void *data) {
    (void)data;
    weir_http_respond(r, 200, NULL, NULL, 0);
}

TEST(bind_failure_reported) {
    server_t s;
    server_default(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    weir_http_server_t *other = (weir_http_server_t *)&loop; /* must be reset to NULL */
    char msg[256] = "";
    int rc = weir_http_server_new(&loop, "127.0.0.1", atomic_load(&s.port), NULL, noop_handler, NULL, &other, msg,
                                  sizeof msg);
    CHECK(rc < 0);
    CHECK(other == NULL);
    CHECK_CONTAINS(msg, "cannot listen on 127.0.0.1:");
    rc = weir_http_server_new(&loop, "not-a-host.invalid", 0, NULL, noop_handler, NULL, &other, msg, sizeof msg);
    CHECK(rc < 0);
    CHECK(other == NULL);
    CHECK(msg[0] != '\0');
    CHECK_EQ(uv_loop_close(&loop), 0); /* nothing was left on the loop */
    weir_http_server_free(NULL, NULL, NULL);
    server_stop(&s);
}

TEST(reason_phrases) {
    CHECK_STR(weir_http_reason(200), "OK");
    CHECK_STR(weir_http_reason(404), "Not Found");
    CHECK_STR(weir_http_reason(408), "Request Timeout");
    CHECK_STR(weir_http_reason(413), "Payload Too Large");
    CHECK_STR(weir_http_reason(431), "Request Header Fields Too Large");
    CHECK_STR(weir_http_reason(503), "Service Unavailable");
    CHECK_STR(weir_http_reason(799), "Unknown");
}

UNIT_MAIN(http, CASE(get_answered), CASE(head_has_no_body), CASE(keep_alive_three_requests),
          CASE(pipelined_answered_in_order), CASE(pipelined_flood_behind_slow_request),
          CASE(client_that_stops_reading_is_dropped), CASE(post_body_echoed), CASE(expect_100_continue),
          CASE(headers_case_insensitive), CASE(http10_closes_unless_keep_alive), CASE(header_cap_431),
          CASE(body_cap_content_length_413), CASE(body_cap_chunked_413), CASE(slow_request_408),
          CASE(idle_connection_closed), CASE(malformed_400), CASE(async_answer),
          CASE(client_gone_before_async_answer), CASE(server_freed_with_request_awaiting_answer),
          CASE(max_connections_enforced), CASE(query_params_decoded), CASE(ten_thousand_keep_alive_requests),
          CASE(bind_failure_reported), CASE(reason_phrases))
