/* SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), host only, free of OpenCL
 * calls. Used to authenticate on-disk program-cache entries with a per-user
 * secret. Digests are the same on every host whatever its byte order. */
#ifndef PRESCORE_SHA256_H
#define PRESCORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define PS_SHA256_SIZE 32  /* digest bytes */
#define PS_SHA256_BLOCK 64 /* message block bytes */

/* Running hash; treat the fields as private. */
typedef struct ps_sha256 {
    uint32_t state[8];                    /* H0..H7 */
    uint64_t length;                      /* message bytes so far */
    unsigned char block[PS_SHA256_BLOCK]; /* partial block */
    size_t used;                          /* bytes held in block, < PS_SHA256_BLOCK */
} ps_sha256;

/* Starts a new message. */
void ps_sha256_init(ps_sha256 *s);
/* Appends size bytes (data may be NULL when size is 0). */
void ps_sha256_update(ps_sha256 *s, const void *data, size_t size);
/* Writes the digest and wipes *s; call ps_sha256_init before reusing it. */
void ps_sha256_final(ps_sha256 *s, unsigned char out[PS_SHA256_SIZE]);

/* Running MAC: the inner hash has absorbed key ^ ipad, the outer key ^ opad. */
typedef struct ps_hmac_sha256 {
    ps_sha256 inner, outer;
} ps_hmac_sha256;

/* Starts a MAC under key (may be NULL when key_size is 0). Keys longer than
 * PS_SHA256_BLOCK bytes are hashed first, per RFC 2104. */
void ps_hmac_sha256_init(ps_hmac_sha256 *h, const void *key, size_t key_size);
/* Appends size bytes (data may be NULL when size is 0). */
void ps_hmac_sha256_update(ps_hmac_sha256 *h, const void *data, size_t size);
/* Writes the full 32-byte tag and wipes *h (it holds key material). */
void ps_hmac_sha256_final(ps_hmac_sha256 *h, unsigned char out[PS_SHA256_SIZE]);

/* Constant-time comparison of two n-byte strings: 1 when equal, 0 otherwise.
 * The time depends on n only, not on where the strings differ. */
int ps_equal_constant_time(const void *a, const void *b, size_t n);

#endif
