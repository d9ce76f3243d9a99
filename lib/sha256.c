/* SHA-256 after FIPS 180-4 (sections 4.1.2, 4.2.2, 5.1.1, 5.3.3, 6.2) and
 * HMAC after RFC 2104. Words are loaded and stored big-endian byte by byte, so
 * the code does not depend on the host's byte order or alignment. All word
 * arithmetic is on uint32_t and every shift count is in 1..31. */
#include "sha256.h"

#include <string.h>

/* First 32 bits of the fractional parts of the cube roots of the first 64
 * primes (FIPS 180-4, 4.2.2). */
static const uint32_t k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

/* Zeroes n bytes through a volatile pointer so that the stores are not
 * dropped as dead. */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* n in 1..31; the result is reduced to 32 bits whatever the width of int. */
static uint32_t rotr(uint32_t x, unsigned n)
{
    return ((x >> n) | (x << (32u - n))) & 0xffffffffu;
}

static uint32_t load_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
           (uint32_t)p[3];
}

static void store_be32(unsigned char *p, uint32_t x)
{
    p[0] = (unsigned char)(x >> 24 & 0xffu);
    p[1] = (unsigned char)(x >> 16 & 0xffu);
    p[2] = (unsigned char)(x >> 8 & 0xffu);
    p[3] = (unsigned char)(x & 0xffu);
}

/* One 64-byte block into the state (FIPS 180-4, 6.2.2). */
static void compress(uint32_t state[8], const unsigned char *block)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = load_be32(block + 4 * t);
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = (uint32_t)(s1 + w[t - 7] + s0 + w[t - 16]) & 0xffffffffu;
    }

    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; t++) {
        uint32_t sum1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = (uint32_t)(h + sum1 + ch + k[t] + w[t]) & 0xffffffffu;
        uint32_t sum0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = (uint32_t)(sum0 + maj) & 0xffffffffu;
        h = g;
        g = f;
        f = e;
        e = (uint32_t)(d + t1) & 0xffffffffu;
        d = c;
        c = b;
        b = a;
        a = (uint32_t)(t1 + t2) & 0xffffffffu;
    }
    state[0] = (uint32_t)(state[0] + a) & 0xffffffffu;
    state[1] = (uint32_t)(state[1] + b) & 0xffffffffu;
    state[2] = (uint32_t)(state[2] + c) & 0xffffffffu;
    state[3] = (uint32_t)(state[3] + d) & 0xffffffffu;
    state[4] = (uint32_t)(state[4] + e) & 0xffffffffu;
    state[5] = (uint32_t)(state[5] + f) & 0xffffffffu;
    state[6] = (uint32_t)(state[6] + g) & 0xffffffffu;
    state[7] = (uint32_t)(state[7] + h) & 0xffffffffu;
}

void ps_sha256_init(ps_sha256 *s)
{
    /* First 32 bits of the fractional parts of the square roots of the first
     * 8 primes (FIPS 180-4, 5.3.3). */
    s->state[0] = 0x6a09e667u;
    s->state[1] = 0xbb67ae85u;
    s->state[2] = 0x3c6ef372u;
    s->state[3] = 0xa54ff53au;
    s->state[4] = 0x510e527fu;
    s->state[5] = 0x9b05688cu;
    s->state[6] = 0x1f83d9abu;
    s->state[7] = 0x5be0cd19u;
    s->length = 0;
    memset(s->block, 0, sizeof s->block);
    s->used = 0;
}

void ps_sha256_update(ps_sha256 *s, const void *data, size_t size)
{
    const unsigned char *p = data;
    if (size == 0)
        return;
    s->length += (uint64_t)size;
    if (s->used > 0) {
        size_t take = PS_SHA256_BLOCK - s->used;
        if (take > size)
            take = size;
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        size -= take;
        if (s->used < PS_SHA256_BLOCK)
            return;
        compress(s->state, s->block);
        s->used = 0;
    }
    for (; size >= PS_SHA256_BLOCK; p += PS_SHA256_BLOCK, size -= PS_SHA256_BLOCK)
        compress(s->state, p);
    if (size > 0) {
        memcpy(s->block, p, size);
        s->used = size;
    }
}

void ps_sha256_final(ps_sha256 *s, unsigned char out[PS_SHA256_SIZE])
{
    /* Padding (FIPS 180-4, 5.1.1): a one bit, zeros up to 56 mod 64 bytes,
     * then the message length in bits as a 64-bit big-endian integer. */
    uint64_t bits = s->length << 3;
    s->block[s->used++] = 0x80u;
    if (s->used > PS_SHA256_BLOCK - 8) {
        memset(s->block + s->used, 0, PS_SHA256_BLOCK - s->used);
        compress(s->state, s->block);
        s->used = 0;
    }
    memset(s->block + s->used, 0, PS_SHA256_BLOCK - 8 - s->used);
    store_be32(s->block + 56, (uint32_t)(bits >> 32 & 0xffffffffu));
    store_be32(s->block + 60, (uint32_t)(bits & 0xffffffffu));
    compress(s->state, s->block);
    for (int i = 0; i < 8; i++)
        store_be32(out + 4 * i, s->state[i]);
    wipe(s, sizeof *s);
}

void ps_hmac_sha256_init(ps_hmac_sha256 *h, const void *key, size_t key_size)
{
    unsigned char k0[PS_SHA256_BLOCK];
    unsigned char pad[PS_SHA256_BLOCK];
    memset(k0, 0, sizeof k0);
    if (key_size > PS_SHA256_BLOCK) {
        ps_sha256 s;
        ps_sha256_init(&s);
        ps_sha256_update(&s, key, key_size);
        ps_sha256_final(&s, k0); /* wipes s */
    } else if (key_size > 0) {
        memcpy(k0, key, key_size);
    }

    for (int i = 0; i < PS_SHA256_BLOCK; i++)
        pad[i] = (unsigned char)(k0[i] ^ 0x36u);
    ps_sha256_init(&h->inner);
    ps_sha256_update(&h->inner, pad, sizeof pad);
    for (int i = 0; i < PS_SHA256_BLOCK; i++)
        pad[i] = (unsigned char)(k0[i] ^ 0x5cu);
    ps_sha256_init(&h->outer);
    ps_sha256_update(&h->outer, pad, sizeof pad);

    wipe(k0, sizeof k0);
    wipe(pad, sizeof pad);
}

void ps_hmac_sha256_update(ps_hmac_sha256 *h, const void *data, size_t size)
{
    ps_sha256_update(&h->inner, data, size);
}

void ps_hmac_sha256_final(ps_hmac_sha256 *h, unsigned char out[PS_SHA256_SIZE])
{
    unsigned char inner[PS_SHA256_SIZE];
    ps_sha256_final(&h->inner, inner);
    ps_sha256_update(&h->outer, inner, sizeof inner);
    ps_sha256_final(&h->outer, out);
    wipe(inner, sizeof inner);
    wipe(h, sizeof *h);
}

int ps_equal_constant_time(const void *a, const void *b, size_t n)
{
    const unsigned char *pa = a;
    const unsigned char *pb = b;
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff = (unsigned char)(diff | (pa[i] ^ pb[i]));
    /* diff is 0..255: diff - 1 wraps to all ones exactly when diff is 0. */
    return (int)(((unsigned)diff - 1u) >> 8 & 1u);
}
