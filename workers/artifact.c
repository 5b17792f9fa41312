/* artifact.c — artifact bytes in and out of zlib, streaming and bounded.
 *
 * Upload side: one pass over an output file hashes it and deflates it into a temp file, so
 * the PUT has a known length and the file is read once. Download side: an inflater fed by
 * the HTTP body writes into a file, hashes as it goes and refuses to produce more than the
 * size the claim announced (a zip bomb stops at the cap). 64 KiB buffers; nothing grows with
 * the artifact. Not the HTTP calls nor the cache layout (task.c). */
#include "workers/worker.h"
#include "common/error.h"
#include "common/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define BUFSZ 65536

int wk_deflate_file(const char *path, const char *zpath, char sha[65], int64_t *size, int64_t *zsize, char *err,
                    size_t errsize) {
    FILE *in = fopen(path, "rb");
    if (!in) {
        snprintf(err, errsize, "cannot read output file %s: %s", path, strerror(errno));
        return WEIR_EIO;
    }
    int fd = open(zpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *out = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!out) {
        snprintf(err, errsize, "cannot create %s: %s", zpath, strerror(errno));
        if (fd >= 0) close(fd);
        fclose(in);
        return WEIR_EIO;
    }
    unsigned char *ib = malloc(BUFSZ), *ob = malloc(BUFSZ);
    z_stream z;
    memset(&z, 0, sizeof z);
    int rc = ib && ob && deflateInit(&z, 6) == Z_OK ? 0 : WEIR_ENOMEM;
    weir_sha256_t h;
    weir_sha256_init(&h);
    int64_t total = 0, ztotal = 0;
    int flush = Z_NO_FLUSH;
    while (!rc && flush != Z_FINISH) {
        size_t n = fread(ib, 1, BUFSZ, in);
        if (ferror(in)) {
            snprintf(err, errsize, "cannot read output file %s: %s", path, strerror(errno));
            rc = WEIR_EIO;
            break;
        }
        if (n < BUFSZ) flush = Z_FINISH;
        weir_sha256_update(&h, ib, n);
        total += (int64_t)n;
        z.next_in = ib;
        z.avail_in = (uInt)n;
        do {
            z.next_out = ob;
            z.avail_out = BUFSZ;
            deflate(&z, flush);
            size_t have = BUFSZ - z.avail_out;
            if (have && fwrite(ob, 1, have, out) != have) {
                snprintf(err, errsize, "cannot write %s: %s", zpath, strerror(errno));
                rc = WEIR_EIO;
                break;
            }
            ztotal += (int64_t)have;
        } while (z.avail_out == 0);
    }
    if (ib && ob) deflateEnd(&z);
    free(ib);
    free(ob);
    fclose(in);
    if (fclose(out) && !rc) {
        snprintf(err, errsize, "cannot write %s: %s", zpath, strerror(errno));
        rc = WEIR_EIO;
    }
    if (rc == WEIR_ENOMEM) snprintf(err, errsize, "out of memory compressing %s", path);
    uint8_t d[32];
    weir_sha256_final(&h, d);
    weir_hex(d, 32, sha);
    *size = total;
    *zsize = ztotal;
    return rc;
}

struct wk_inflate_s {
    z_stream z;
    FILE *out;
    int64_t cap, total;
    weir_sha256_t h;
    int err;
    int ended;
    unsigned char ob[BUFSZ];
};

wk_inflate_t *wk_inflate_new(FILE *out, int64_t cap) {
    wk_inflate_t *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    if (inflateInit(&f->z) != Z_OK) {
        free(f);
        return NULL;
    }
    f->out = out;
    f->cap = cap;
    weir_sha256_init(&f->h);
    return f;
}

int wk_inflate_feed(wk_inflate_t *f, const void *data, size_t n) {
    if (f->err) return f->err;
    f->z.next_in = (Bytef *)data;
    f->z.avail_in = (uInt)n;
    if (f->ended) return n ? (f->err = WEIR_EINVAL) : 0;
    do {
        f->z.next_out = f->ob;
        f->z.avail_out = BUFSZ;
        int zr = inflate(&f->z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) return f->err = WEIR_EINVAL;
        size_t have = BUFSZ - f->z.avail_out;
        if (f->total + (int64_t)have > f->cap) return f->err = WEIR_ELIMIT;
        f->total += (int64_t)have;
        weir_sha256_update(&f->h, f->ob, have);
        if (have && f->out && fwrite(f->ob, 1, have, f->out) != have) return f->err = WEIR_EIO;
        if (zr == Z_STREAM_END) { f->ended = 1; break; }
        if (zr == Z_BUF_ERROR) break; /* needs more input */
    } while (f->z.avail_in || f->z.avail_out == 0);
    /* bytes after the end of the zlib stream: not ours to ignore */
    if (f->ended && f->z.avail_in) return f->err = WEIR_EINVAL;
    return 0;
}

int wk_inflate_finish(wk_inflate_t *f, char sha[65], int64_t *size) {
    if (f->err) return f->err;
    if (!f->ended) return f->err = WEIR_EINVAL;
    uint8_t d[32];
    weir_sha256_final(&f->h, d);
    weir_hex(d, 32, sha);
    *size = f->total;
    return 0;
}

void wk_inflate_free(wk_inflate_t *f) {
    if (!f) return;
    inflateEnd(&f->z);
    free(f);
}
