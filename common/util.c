/* util.c — see util.h. */
#include "common/util.h"
#include "common/error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void weir_buf_init(weir_buf_t *b, size_t max) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void weir_buf_free(weir_buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void weir_buf_reset(weir_buf_t *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

static int buf_reserve(weir_buf_t *b, size_t extra) {
    if (extra > b->max || b->len > b->max - extra) return WEIR_ELIMIT;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    if (cap > b->max + 1) cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p) return WEIR_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int weir_buf_append(weir_buf_t *b, const void *data, size_t len) {
    int rc = buf_reserve(b, len);
    if (rc) return rc;
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int weir_buf_printf(weir_buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return WEIR_EINVAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int weir_parse_duration(const char *s, int64_t *ms) {
    if (!s || !*s) return WEIR_EINVAL;
    int64_t total = 0, last_unit = INT64_MAX;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p)) return WEIR_EINVAL;
        char *end;
        errno = 0;
        long long n = strtoll(p, &end, 10);
        if (errno || n > 1000000000LL) return WEIR_EINVAL;
        p = end;
        int64_t unit;
        if (p[0] == 'm' && p[1] == 's') unit = 1, p += 2;
        else if (*p == 's') unit = 1000, p++;
        else if (*p == 'm') unit = 60000, p++;
        else if (*p == 'h') unit = 3600000, p++;
        else if (*p == 'd') unit = 86400000, p++;
        else return WEIR_EINVAL;
        /* "1h30m" reads naturally; "30m1h" is more likely a typo than intent. */
        if (unit >= last_unit) return WEIR_EINVAL;
        last_unit = unit;
        total += n * unit;
        if (total > (int64_t)366 * 86400000) return WEIR_EINVAL;
    }
    *ms = total;
    return 0;
}

int weir_parse_size(const char *s, int64_t *bytes) {
    static const struct { const char *unit; int64_t mult; } units[] = {
        {"", 1}, {"B", 1}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000LL}, {"TB", 1000000000000LL},
        {"KiB", 1024}, {"MiB", 1048576}, {"GiB", 1073741824LL}, {"TiB", 1099511627776LL},
    };
    if (!s || !isdigit((unsigned char)*s)) return WEIR_EINVAL;
    char *end;
    errno = 0;
    double n = strtod(s, &end);
    if (errno || n < 0) return WEIR_EINVAL;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (!strcmp(end, units[i].unit)) {
            double v = n * (double)units[i].mult;
            if (v > 9.0e18) return WEIR_EINVAL;
            *bytes = (int64_t)v;
            return 0;
        }
    }
    return WEIR_EINVAL;
}

size_t weir_edit_distance(const char *a, const char *b, size_t cap) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 256 || lb > 256) return cap + 1;
    if ((la > lb ? la - lb : lb - la) > cap) return cap + 1;
    size_t row[257];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0], best = i;
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t v = diag + (a[i - 1] != b[j - 1]);
            if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
            if (up + 1 < v) v = up + 1;
            row[j] = v;
            diag = up;
            if (v < best) best = v;
        }
        if (best > cap) return cap + 1;
    }
    return row[lb] > cap ? cap + 1 : row[lb];
}

const char *weir_did_you_mean(const char *word, size_t len, const char *const *cands, size_t n, char *buf,
                              size_t size) {
    char w[257];
    if (len >= sizeof w) return "";
    memcpy(w, word, len);
    w[len] = '\0';
    size_t cap = len <= 3 ? 1 : len <= 6 ? 2 : 3, bestd = cap + 1;
    const char *best = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t d = weir_edit_distance(w, cands[i], cap);
        if (d <= cap && d < len && d < bestd) best = cands[i], bestd = d;
    }
    if (!best) return "";
    snprintf(buf, size, " (did you mean \"%s\"?)", best);
    return buf;
}

int weir_read_file(const char *path, size_t max, char **out, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? WEIR_ENOENT : WEIR_EIO;
    weir_buf_t b;
    weir_buf_init(&b, max);
    char chunk[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { rc = WEIR_EIO; break; }
        if (n == 0) break;
        if ((rc = weir_buf_append(&b, chunk, (size_t)n))) break;
    }
    close(fd);
    if (rc) { weir_buf_free(&b); return rc; }
    if (!b.data && (rc = weir_buf_append(&b, "", 0))) return rc;
    *out = b.data;
    if (len) *len = b.len;
    return 0;
}

int weir_random_bytes(void *buf, size_t n) {
    char *p = buf;
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return WEIR_EIO;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

uint64_t weir_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t weir_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t weir_rand_below(uint64_t *state, uint64_t n) {
    uint64_t lim = -n % n, r;
    do r = weir_splitmix64(state); while (r < lim);
    return r % n;
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* weir_write_atomic, and without its fsyncs when !durable (weir_write_replace). */
static int write_replace(const char *path, const void *const *data, const size_t *len, size_t n, int durable,
                         char *err, size_t errlen) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp) {
        if (err && errlen) snprintf(err, errlen, "%s: out of memory", path);
        return WEIR_ENOMEM;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) goto fail;
    int bad = fchmod(fd, 0644);
    for (size_t i = 0; !bad && i < n; i++) bad = write_all(fd, data[i], len[i]);
    /* on disk before the name points at it, or a crash could leave a truncated file under the final name */
    if (!bad && durable) bad = fsync(fd);
    int saved = errno;
    if (close(fd) && !bad) { bad = -1; saved = errno; }
    if (!bad && rename(tmp, path)) { bad = -1; saved = errno; }
    if (bad) {
        unlink(tmp);
        errno = saved;
        goto fail;
    }
    free(tmp);
    if (!durable) return 0;
    /* makes the rename itself durable; best effort, as some file systems refuse fsync on a directory */
    const char *slash = strrchr(path, '/');
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path + 1) : 1, slash ? path : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
fail:
    if (err && errlen) snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    free(tmp);
    return WEIR_EIO;
}

int weir_write_atomic(const char *path, const void *const *data, const size_t *len, size_t n, char *err,
                      size_t errlen) {
    return write_replace(path, data, len, n, 1, err, errlen);
}

int weir_write_replace(const char *path, const void *const *data, const size_t *len, size_t n, char *err,
                       size_t errlen) {
    return write_replace(path, data, len, n, 0, err, errlen);
}

int weir_model_name_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    return n && n <= 63 && s[0] >= 'a' && s[0] <= 'z' && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}
