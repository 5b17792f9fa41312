/* wire.c — the worker's HTTP calls: blocking libcurl, one keep-alive handle per thread,
 * several scheduler URLs with failover.
 *
 * A connection failure or a 503 (a standby scheduler, or one without its database) moves
 * every thread to the next URL; a call is repeated on the next URL only when no answer came,
 * so repeating it is safe (all worker routes are idempotent under retries anyway: log
 * chunks by seq, completions by duplicate:true, artifacts by hash). Response bodies are
 * capped at 16 MiB unless streamed to a callback. Not asynchronous: the claim long-poll
 * runs in its own thread (worker.c). */
#include "workers/worker.h"
#include "common/error.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESPONSE_MAX ((size_t)16 << 20)

int wk_http_init(wk_http_t *h, wk_sched_t *s) {
    h->sched = s;
    h->curl = curl_easy_init();
    return h->curl ? 0 : WEIR_ENOMEM;
}

void wk_http_close(wk_http_t *h) {
    if (h->curl) curl_easy_cleanup(h->curl);
    h->curl = NULL;
}

void wk_resp_free(wk_resp_t *res) {
    json_decref(res->json);
    res->json = NULL;
}

typedef struct {
    CURL *curl;
    const wk_req_t *req;
    weir_buf_t body;      /* the answer, when not streamed (or not 2xx) */
    long status;
    int callback_failed;
    int got_any;
} call_t;

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
    call_t *c = ud;
    size_t len = size * n;
    c->got_any = 1;
    if (!c->status) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
    if (c->req->on_body && c->status >= 200 && c->status < 300) {
        if (c->req->on_body(c->req->ud, p, len)) {
            c->callback_failed = 1;
            return 0;
        }
        return len;
    }
    return weir_buf_append(&c->body, p, len) ? 0 : len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    ((call_t *)ud)->got_any = 1;
    (void)p;
    return size * n;
}

int wk_http_call(wk_http_t *h, const wk_req_t *req, wk_resp_t *res) {
    memset(res, 0, sizeof *res);
    wk_sched_t *s = h->sched;
    CURL *curl = h->curl;
    char *payload = NULL;
    size_t plen = 0;
    const char *ctype = req->content_type;
    if (req->json) {
        payload = json_dumps(req->json, JSON_COMPACT);
        if (!payload) {
            snprintf(res->error, sizeof res->error, "out of memory");
            return WEIR_ENOMEM;
        }
        plen = strlen(payload);
        ctype = "application/json";
    }
    struct curl_slist *hdr = NULL;
    if (s->auth[0]) hdr = curl_slist_append(hdr, s->auth);
    char ct[128];
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        hdr = curl_slist_append(hdr, ct);
    }
    hdr = curl_slist_append(hdr, "Expect:"); /* no 100-continue round trip on uploads */
    for (int i = 0; i < 4 && req->headers[i]; i++) hdr = curl_slist_append(hdr, req->headers[i]);

    int rc = WEIR_EUNAVAIL;
    int first = atomic_load(&s->current);
    for (int tries = 0; tries < s->nurls; tries++) {
        int idx = (first + tries) % s->nurls;
        char url[2048];
        snprintf(url, sizeof url, "%s%s", s->urls[idx], req->path);
        call_t c = {.curl = curl, .req = req};
        weir_buf_init(&c.body, RESPONSE_MAX);
        curl_easy_reset(curl);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &c);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &c);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 30000L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "weir-worker");
        if (req->body_file) {
            rewind(req->body_file);
            curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(curl, CURLOPT_READDATA, req->body_file);
            curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_file_len);
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
        } else if (payload || req->body) {
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload ? payload : (const char *)req->body);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(payload ? plen : req->body_len));
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
        } else if (!strcmp(req->method, "GET")) {
            curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
        } else {
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
        }
        CURLcode cc = curl_easy_perform(curl);
        long status = 0;
        if (cc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK && !(c.callback_failed && c.status)) {
            snprintf(res->error, sizeof res->error, "cannot reach the scheduler at %.300s: %s", s->urls[idx],
                     curl_easy_strerror(cc));
            weir_buf_free(&c.body);
            /* an answer that started and broke off is not retried here: the caller decides */
            if (c.got_any) { rc = WEIR_EUNAVAIL; break; }
            continue;
        }
        if (cc != CURLE_OK) status = c.status; /* the body callback refused the data */
        if (status == 503 && tries + 1 < s->nurls) {
            weir_buf_free(&c.body);
            snprintf(res->error, sizeof res->error, "scheduler at %.300s is unavailable (HTTP 503)", s->urls[idx]);
            continue;
        }
        if (idx != first) atomic_store(&s->current, idx);
        res->status = status;
        if (c.body.len) res->json = json_loadb(c.body.data, c.body.len, 0, NULL);
        if (c.callback_failed) snprintf(res->error, sizeof res->error, "the response body was refused");
        if (status >= 400) {
            const char *msg = json_string_value(json_object_get(json_object_get(res->json, "error"), "message"));
            snprintf(res->error, sizeof res->error, "%.400s (HTTP %ld)", msg ? msg : "request failed", status);
        }
        weir_buf_free(&c.body);
        rc = 0;
        break;
    }
    curl_slist_free_all(hdr);
    free(payload);
    return rc;
}
