/* util.h — small helpers shared by the scheduler, the DSL and the CLI:
 * a capped growable buffer, duration and size parsing, edit distance,
 * capped file reads and random tokens. Nothing here allocates without a cap. */
#ifndef WEIR_COMMON_UTIL_H
#define WEIR_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer with a hard cap. The owner calls weir_buf_free.
 * data is always NUL-terminated when len > 0 (the NUL is not counted). */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t max;   /* appends that would pass max fail with WEIR_ELIMIT */
} weir_buf_t;

void weir_buf_init(weir_buf_t *b, size_t max);
void weir_buf_free(weir_buf_t *b);
void weir_buf_reset(weir_buf_t *b);
/* 0, WEIR_ELIMIT (nothing appended) or WEIR_ENOMEM. */
int weir_buf_append(weir_buf_t *b, const void *data, size_t len);
int weir_buf_printf(weir_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses "250ms", "30s", "5m", "1h30m", "2d" into milliseconds.
 * 0 or WEIR_EINVAL. Components must be in decreasing unit order. */
int weir_parse_duration(const char *s, int64_t *ms);
/* Parses "512", "64KiB", "4GiB", "2GB", "100MB" into bytes. 0 or WEIR_EINVAL. */
int weir_parse_size(const char *s, int64_t *bytes);

/* Levenshtein distance, capped: returns cap+1 as soon as it exceeds cap. */
size_t weir_edit_distance(const char *a, const char *b, size_t cap);

/* " (did you mean "x"?)" naming the candidate closest to word (its first len bytes), written
 * into buf; "" (static) when none is close enough: the cap on edits grows with the word's
 * length (1 up to 3 bytes, 2 up to 6, else 3) and never reaches the word's own length. */
const char *weir_did_you_mean(const char *word, size_t len, const char *const *cands, size_t n, char *buf,
                              size_t size);

/* Reads a whole file, at most max bytes. *out is NUL-terminated; caller frees.
 * 0, WEIR_ENOENT, WEIR_EIO or WEIR_ELIMIT. */
int weir_read_file(const char *path, size_t max, char **out, size_t *len);

/* True for a registry model name: [a-z][a-z0-9_.-]*, at most 63 bytes (the models table's rule). */
int weir_model_name_ok(const char *s);

/* Writes the n pieces (data[i], len[i]) one after the other to path, atomically: a temporary
 * file beside it (mode 0644), fsync, rename over path, then a best-effort fsync of the
 * directory. A reader sees the old file or the whole new one; a crash never leaves a truncated
 * file under the name. On failure the temporary file is removed and err (may be NULL) names
 * path and the system error. 0, WEIR_EIO or WEIR_ENOMEM. */
int weir_write_atomic(const char *path, const void *const *data, const size_t *len, size_t n, char *err,
                      size_t errlen);
/* As weir_write_atomic without the fsyncs, for a file rewritten often whose loss in a crash
 * costs nothing (a step's progress): a reader still sees the old file or the whole new one. */
int weir_write_replace(const char *path, const void *const *data, const size_t *len, size_t n, char *err,
                       size_t errlen);

/* Fills buf with n bytes from the kernel's CSPRNG. 0 or WEIR_EIO. */
int weir_random_bytes(void *buf, size_t n);

/* splitmix64 (Steele, Lea, Flood 2014): a seeded generator whose state is a counter, so
 * every seed is a good one and the same seed gives the same numbers on every machine. */
uint64_t weir_splitmix64(uint64_t *state);
/* Uniform in 0..n-1 (n >= 1), without modulo bias: draws below 2^64 mod n are rejected. */
uint64_t weir_rand_below(uint64_t *state, uint64_t n);

/* Monotonic milliseconds, for timing; not wall time. */
uint64_t weir_now_ms(void);

#endif
