/* client.c — see client.h. */
#include "common/client.h"
#include "common/error.h"
#include "common/util.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESPONSE_MAX ((size_t)256 << 20)

static void set_if_empty(char *dst, size_t size, const char *v) {
    if (!dst[0] && v && *v) snprintf(dst, size, "%s", v);
}

void weir_config_load(weir_config_t *c) {
    set_if_empty(c->home, sizeof c->home, getenv("WEIR_HOME"));
    if (!c->home[0]) {
        const char *h = getenv("HOME");
        snprintf(c->home, sizeof c->home, "%s/.weir", h && *h ? h : ".");
    }
    set_if_empty(c->url, sizeof c->url, getenv("WEIR_URL"));
    set_if_empty(c->token, sizeof c->token, getenv("WEIR_TOKEN"));
    set_if_empty(c->database, sizeof c->database, getenv("WEIR_DATABASE_URL"));
    char path[1100], *text = NULL;
    snprintf(path, sizeof path, "%s/client.json", c->home);
    if (!weir_read_file(path, 1 << 16, &text, NULL)) {
        json_t *j = json_loads(text, 0, NULL);
        set_if_empty(c->url, sizeof c->url, json_string_value(json_object_get(j, "url")));
        set_if_empty(c->token, sizeof c->token, json_string_value(json_object_get(j, "token")));
        set_if_empty(c->database, sizeof c->database, json_string_value(json_object_get(j, "database")));
        json_decref(j);
        free(text);
    }
    set_if_empty(c->url, sizeof c->url, "http://127.0.0.1:8470");
    size_t n = strlen(c->url);
    while (n && c->url[n - 1] == '/') c->url[--n] = '\0';
}

int weir_config_write(const weir_config_t *c) {
    char path[1100], tmp[1110];
    mkdir(c->home, 0700);
    snprintf(path, sizeof path, "%s/client.json", c->home);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    json_t *j = json_pack("{s:s, s:s, s:s}", "url", c->url, "token", c->token, "database", c->database);
    char *text = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 || !text || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ? WEIR_EIO : 0;
    if (fd >= 0 && close(fd)) rc = WEIR_EIO;
    free(text);
    /* rename makes the update atomic: a reader sees the old file or the new one. */
    if (!rc && rename(tmp, path)) rc = WEIR_EIO;
    return rc;
}

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
    weir_buf_t *b = userdata;
    return weir_buf_append(b, p, size * n) ? 0 : size * n;
}

#define HEADERS_MAX ((size_t)64 << 10)

/* Keeps the header lines of the last answer only: an interim 100 Continue starts a new block. */
static size_t on_header(char *p, size_t size, size_t n, void *userdata) {
    weir_buf_t *b = userdata;
    if (size * n >= 5 && !memcmp(p, "HTTP/", 5)) weir_buf_reset(b);
    weir_buf_append(b, p, size * n); /* past the cap headers are dropped, not the answer */
    return size * n;
}

int weir_client_call(const weir_config_t *c, const char *method, const char *path, const json_t *body,
                     weir_response_t *res) {
    memset(res, 0, sizeof *res);
    CURL *h = curl_easy_init();
    if (!h) { snprintf(res->error, sizeof res->error, "cannot start libcurl"); return WEIR_ENOMEM; }
    char url[2048], auth[400];
    snprintf(url, sizeof url, "%s%s", c->url, path);
    struct curl_slist *hdr = NULL;
    if (c->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        hdr = curl_slist_append(hdr, auth);
    }
    char *payload = NULL;
    if (body) {
        payload = json_dumps(body, JSON_COMPACT);
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload ? payload : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(payload ? strlen(payload) : 0));
    }
    weir_buf_t buf, hbuf;
    weir_buf_init(&buf, RESPONSE_MAX);
    weir_buf_init(&hbuf, HEADERS_MAX);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hbuf);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "weir-cli");
    CURLcode cc = curl_easy_perform(h);
    int rc = 0;
    if (cc != CURLE_OK) {
        snprintf(res->error, sizeof res->error, "cannot reach the scheduler at %.200s: %s", c->url,
                 curl_easy_strerror(cc));
        rc = WEIR_EUNAVAIL;
        weir_buf_free(&buf);
        weir_buf_free(&hbuf);
    } else {
        res->headers = hbuf.data;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
        if (!buf.data) weir_buf_append(&buf, "", 0);
        res->body = buf.data;
        res->len = buf.len;
        res->json = json_loadb(res->body, res->len, 0, NULL);
        const char *msg = json_string_value(json_object_get(json_object_get(res->json, "error"), "message"));
        if (res->status >= 400)
            snprintf(res->error, sizeof res->error, "%s (HTTP %ld)", msg ? msg : "request failed", res->status);
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    free(payload);
    return rc;
}

void weir_response_free(weir_response_t *res) {
    free(res->body);
    free(res->headers);
    json_decref(res->json);
    res->body = NULL;
    res->headers = NULL;
    res->json = NULL;
}

/* ---- response headers ---- */

const char *weir_response_header(const weir_response_t *res, const char *name, char *buf, size_t size) {
    size_t nlen = strlen(name);
    for (const char *line = res->headers; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > nlen && line[nlen] == ':' && !strncasecmp(line, name, nlen)) {
            const char *v = line + nlen + 1, *e = line + len;
            while (v < e && (*v == ' ' || *v == '\t')) v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) e--;
            snprintf(buf, size, "%.*s", (int)(e - v), v);
            return buf;
        }
        line = end ? end + 1 : line + len;
    }
    return NULL;
}
