/* artifacts.c — the scheduler's content-addressed artifact store (docs/protocol.md, "Artifacts").
 *
 * A file per artifact, DIR/ab/abcdef…zz, holding the zlib stream as the worker sent it, so a
 * download is a plain file read with no recompression. An upload is inflated with the declared
 * size as a hard cap and hashed on the thread pool before it is kept; only then is its row
 * written (the artifacts table), so a row always names verified content. Not here: garbage
 * collection of unreferenced artifacts, ranged downloads, streaming uploads larger than the
 * HTTP body cap (--max-body). */
#include "engine/api.h"
#include "common/error.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef struct {
    char sha[65];
    long long size;
    char media[128];
    int verdict;        /* 0 kept; else an HTTP status */
    char why[1400];
} upload_t;

static int is_sha256(const char *s) { return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64; }

static void artifact_path(const weir_sched_t *s, const char *sha, char *out, size_t size, int tmp) {
    if (tmp)
        snprintf(out, size, "%s/%.2s/.%s.%d.tmp", s->artifacts_dir, sha, sha, (int)getpid());
    else
        snprintf(out, size, "%s/%.2s/%s.zz", s->artifacts_dir, sha, sha);
}

/* Inflates z (capped at want bytes) and checks its size and SHA-256. 0, or a reason in why. */
static int verify(const unsigned char *z, size_t zlen, long long want, const char *sha, char *why, size_t whysize) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) { snprintf(why, whysize, "zlib could not start"); return -1; }
    weir_sha256_t h;
    weir_sha256_init(&h);
    unsigned char out[64 * 1024];
    long long total = 0;
    int rc = Z_OK;
    zs.next_in = (unsigned char *)z;
    zs.avail_in = (uInt)zlen;
    while (rc == Z_OK) {
        zs.next_out = out;
        zs.avail_out = sizeof out;
        rc = inflate(&zs, Z_NO_FLUSH);
        size_t got = sizeof out - zs.avail_out;
        total += (long long)got;
        if (total > want) { rc = Z_DATA_ERROR; break; } /* more than declared: stop inflating at once */
        weir_sha256_update(&h, out, got);
        if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;
    }
    inflateEnd(&zs);
    if (total > want) { snprintf(why, whysize, "body inflates to more than X-Weir-Size (%lld bytes)", want); return -1; }
    if (rc != Z_STREAM_END) { snprintf(why, whysize, "body is not a complete zlib stream"); return -1; }
    if (zs.avail_in) { snprintf(why, whysize, "bytes after the end of the zlib stream"); return -1; }
    if (total != want) {
        snprintf(why, whysize, "body inflates to %lld bytes, X-Weir-Size says %lld", total, want);
        return -1;
    }
    uint8_t d[32];
    char hex[65];
    weir_sha256_final(&h, d);
    weir_hex(d, 32, hex);
    if (strcmp(hex, sha)) { snprintf(why, whysize, "content has SHA-256 %s, not the %s in the path", hex, sha); return -1; }
    return 0;
}

static void put_work(uv_work_t *w) {
    api_req_t *a = w->data;
    upload_t *u = a->ctx;
    size_t len;
    const unsigned char *body = (const unsigned char *)weir_http_req_body(a->http, &len);
    if (verify(body, len, u->size, u->sha, u->why, sizeof u->why)) { u->verdict = 400; return; }
    char dir[1200], tmp[1300], path[1300];
    snprintf(dir, sizeof dir, "%s/%.2s", a->s->artifacts_dir, u->sha);
    if (mkdir(a->s->artifacts_dir, 0755) && errno != EEXIST) goto io;
    if (mkdir(dir, 0755) && errno != EEXIST) goto io;
    artifact_path(a->s, u->sha, tmp, sizeof tmp, 1);
    artifact_path(a->s, u->sha, path, sizeof path, 0);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) goto io;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, body + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { close(fd); unlink(tmp); goto io; }
        off += (size_t)n;
    }
    /* durable before its row says it exists */
    if (fsync(fd) || close(fd) || rename(tmp, path)) { unlink(tmp); goto io; }
    return;
io:
    u->verdict = 500;
    snprintf(u->why, sizeof u->why, "artifact store %s: %s", a->s->artifacts_dir, strerror(errno));
}

static void put_recorded(weir_db_tx_t *tx, int i, int status, void *data) {
    api_req_t *a = data;
    upload_t *u = a->ctx;
    if (status) { free(u); a->ctx = NULL; api_reply_db_error(a, tx, status); return; }
    int created = weir_db_rows(tx, i) > 0;
    json_t *out = json_pack("{s:s, s:I, s:b}", "sha256", u->sha, "size", (json_int_t)u->size, "created", created);
    free(u);
    a->ctx = NULL;
    api_reply_json(a, created ? 201 : 200, out);
}

static void put_done(uv_work_t *w, int status) {
    api_req_t *a = w->data;
    upload_t *u = a->ctx;
    if (status || u->verdict) {
        int code = status ? 503 : u->verdict;
        if (code == 500) weir_log_error("artifacts: %s", u->why);
        char why[1400];
        snprintf(why, sizeof why, "%s", status ? "scheduler is stopping" : u->why);
        free(u);
        a->ctx = NULL;
        api_reply_error(a, code, "artifact %s refused: %s", a->args[0], why);
        return;
    }
    char size[24];
    snprintf(size, sizeof size, "%lld", u->size);
    if (weir_batch_add(a->s->batch,
                       "INSERT INTO artifacts (sha256, size, media_type) VALUES ($1, $2::bigint, $3) "
                       "ON CONFLICT (sha256) DO NOTHING RETURNING 1",
                       3, (const char *[]){u->sha, size, u->media}, 0, put_recorded, a)) {
        free(u);
        a->ctx = NULL;
        api_reply_error(a, 503, "scheduler is overloaded; retry shortly");
    }
}

void api_put_artifact(api_req_t *a) {
    const char *sha = a->args[0];
    if (!is_sha256(sha)) { api_reply_error(a, 400, "the path must name the artifact's SHA-256 (64 lowercase hex digits)"); return; }
    const char *size = weir_http_req_header(a->http, "x-weir-size");
    char *end = NULL;
    long long n = size ? strtoll(size, &end, 10) : -1;
    if (!size || !*size || *end || n < 0) {
        api_reply_error(a, 400, "header X-Weir-Size (the artifact's size before compression) is required");
        return;
    }
    const char *media = weir_http_req_header(a->http, "x-weir-media-type");
    if (media && (strlen(media) > 127 || strpbrk(media, "\r\n"))) {
        api_reply_error(a, 400, "header X-Weir-Media-Type is longer than 127 bytes");
        return;
    }
    upload_t *u = calloc(1, sizeof *u);
    if (!u) { api_reply_error(a, 500, "out of memory"); return; }
    memcpy(u->sha, sha, 64);  /* is_sha256 checked the length */
    u->size = n;
    snprintf(u->media, sizeof u->media, "%s", media && *media ? media : "application/octet-stream");
    a->ctx = u;
    a->work.data = a;
    if (uv_queue_work(a->s->loop, &a->work, put_work, put_done)) {
        free(u);
        a->ctx = NULL;
        api_reply_error(a, 503, "scheduler is stopping");
    }
}

static void get_found(weir_db_tx_t *tx, int status, void *data) {
    api_req_t *a = data;
    if (status) { api_reply_db_error(a, tx, status); return; }
    if (weir_db_rows(tx, 0) == 0) { api_reply_error(a, 404, "no artifact %s", a->args[0]); return; }
    char path[1300];
    artifact_path(a->s, a->args[0], path, sizeof path, 0);
    char *body = NULL;
    size_t len = 0;
    if (weir_read_file(path, (size_t)1 << 32, &body, &len)) {
        weir_log_error("artifacts: %s is recorded but %s cannot be read", a->args[0], path);
        api_reply_error(a, 500, "artifact %s is recorded but missing from the store", a->args[0]);
        return;
    }
    weir_http_req_add_header(a->http, "X-Weir-Size", weir_db_value(tx, 0, 0, 0));
    weir_http_req_add_header(a->http, "X-Weir-Media-Type", weir_db_value(tx, 0, 0, 1));
    weir_http_respond(a->http, 200, "application/zlib", body, len);
    free(body);
    api_free(a);
}

void api_get_artifact(api_req_t *a) {
    if (!is_sha256(a->args[0])) {
        api_reply_error(a, 400, "the path must name the artifact's SHA-256 (64 lowercase hex digits)");
        return;
    }
    if (!a->s->db) { api_reply_error(a, 503, "scheduler is stopping"); return; }
    weir_db_tx_t *tx = weir_db_tx_new(a->s->db);
    if (tx) weir_db_tx_add(tx, "SELECT size, media_type FROM artifacts WHERE sha256 = $1", 1, (const char *[]){a->args[0]});
    api_submit(a, tx, get_found);
}
