/* sha256.h — SHA-256 (FIPS 180-4), for version ids, token hashes and artifacts.
 *
 * A small self-contained implementation so that the DSL, the CLI and the
 * scheduler hash the same way without pulling in a crypto library. Not
 * constant-time beyond what SHA-256 is by nature; not an HMAC. */
#ifndef WEIR_COMMON_SHA256_H
#define WEIR_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;       /* bytes hashed so far */
    uint8_t block[64];
    size_t fill;        /* bytes waiting in block */
} weir_sha256_t;

void weir_sha256_init(weir_sha256_t *c);
void weir_sha256_update(weir_sha256_t *c, const void *data, size_t len);
void weir_sha256_final(weir_sha256_t *c, uint8_t out[32]);

/* One-shot: writes 64 lowercase hex digits and a NUL into hex. */
void weir_sha256_hex(const void *data, size_t len, char hex[65]);
/* Writes 2*n lowercase hex digits and a NUL. */
void weir_hex(const uint8_t *bytes, size_t n, char *out);

#endif
