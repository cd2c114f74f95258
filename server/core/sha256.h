/*
 * sha256.h - SHA-256 (FIPS 180-4). Used to name stored files after a hash of
 * their SOP Instance UID (paths are never built from request text) and for
 * ETags. Plain value state, no allocation.
 */
#ifndef YY_SHA256_H
#define YY_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
    uint32_t h[8];
    uint64_t n;
    uint8_t block[64];
    size_t fill;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t out[32]);
/* Lower-case hex of the digest of data into out[65]. */
void sha256_hex(const void *data, size_t len, char out[65]);

#endif
