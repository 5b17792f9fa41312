/* logship.c — the log chunker: a step's output in, zlib-compressed numbered chunks out.
 *
 * One fixed buffer per attempt (256 KiB raw + its compressed twin); a chunk leaves when the
 * buffer is full or 200 ms after its first byte. Past the per-attempt cap the output is
 * counted and dropped and a one-line marker ends the log, so a step that prints gigabytes
 * costs the worker no more memory than one that prints a line. Not the HTTP part: the sink
 * callback sends (and retries) a chunk; tests pass their own sink. */
#include "workers/worker.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MARKER_RESERVE 96 /* room for the marker line, kept inside the cap */

int wk_log_init(wk_log_t *l, int64_t max_bytes, wk_log_sink_fn sink, void *ud) {
    memset(l, 0, sizeof *l);
    if (max_bytes < 2 * MARKER_RESERVE) max_bytes = 2 * MARKER_RESERVE;
    l->max = max_bytes - MARKER_RESERVE;
    l->buf = malloc(WK_LOG_CHUNK + MARKER_RESERVE);
    l->zsize = compressBound(WK_LOG_CHUNK + MARKER_RESERVE);
    l->zbuf = malloc(l->zsize);
    l->sink = sink;
    l->ud = ud;
    if (!l->buf || !l->zbuf) {
        wk_log_free(l);
        return WEIR_ENOMEM;
    }
    return 0;
}

void wk_log_free(wk_log_t *l) {
    free(l->buf);
    free(l->zbuf);
    l->buf = NULL;
    l->zbuf = NULL;
}

static void flush(wk_log_t *l) {
    if (!l->len) return;
    size_t raw = l->len;
    l->len = 0;
    l->first_unflushed_ms = 0;
    if (l->stopped) return;
    uLongf zlen = (uLongf)l->zsize;
    /* Level 1: log text compresses well even so, and the step's output must not wait on us. */
    if (compress2(l->zbuf, &zlen, (const Bytef *)l->buf, (uLong)raw, 1) != Z_OK) {
        l->stopped = 1;
        l->sink_error = WEIR_ENOMEM;
        return;
    }
    int rc = l->sink(l->ud, l->seq, l->zbuf, (size_t)zlen, raw);
    if (rc >= 0) l->seq++;
    if (rc < 0) l->sink_error = rc;
    if (rc) l->stopped = 1;
}

void wk_log_write(wk_log_t *l, const void *data, size_t n) {
    const char *p = data;
    while (n) {
        if (l->truncated || l->stopped) {
            l->dropped += (int64_t)n;
            return;
        }
        int64_t room = l->max - l->kept;
        if (room <= 0) {
            l->truncated = 1;
            /* the buffer always has MARKER_RESERVE spare bytes beyond WK_LOG_CHUNK */
            l->len += (size_t)snprintf(l->buf + l->len, MARKER_RESERVE, "%s[weir: log truncated after %lld bytes]\n",
                                       l->kept && l->last != '\n' ? "\n" : "", (long long)l->kept);
            flush(l);
            continue;
        }
        size_t take = WK_LOG_CHUNK - l->len;
        if ((int64_t)take > room) take = (size_t)room;
        if (take > n) take = n;
        if (!l->len) l->first_unflushed_ms = weir_now_ms();
        memcpy(l->buf + l->len, p, take);
        l->len += take;
        l->kept += (int64_t)take;
        l->last = p[take - 1];
        p += take;
        n -= take;
        if (l->len == WK_LOG_CHUNK) flush(l);
    }
}

void wk_log_tick(wk_log_t *l, uint64_t now_ms, int force) {
    if (!l->len) return;
    if (force || now_ms >= l->first_unflushed_ms + WK_LOG_FLUSH_MS) flush(l);
}

int wk_log_due_in(const wk_log_t *l, uint64_t now_ms) {
    if (!l->len) return -1;
    uint64_t due = l->first_unflushed_ms + WK_LOG_FLUSH_MS;
    return due <= now_ms ? 0 : (int)(due - now_ms);
}
