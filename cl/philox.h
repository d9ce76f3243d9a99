/* Philox4x32-10 counter-based RNG and the library's stream convention, in one
 * header shared by the host (C99) and the kernels (OpenCL C 1.2).
 *
 * The host includes it like any header; lib/program.c prepends it verbatim to
 * every kernel program, so the OpenCL branch includes nothing. Everything
 * below the type definitions is a single text compiled by both languages:
 * keeping one copy is what makes the host reference and the device draw the
 * same random numbers (docs/ARCHITECTURE.md, "Device stages and the plain-C reference").
 *
 * Philox4x32-10 is the generator of Salmon, Moraes, Dror and Shaw, "Parallel
 * random numbers: as easy as 1, 2, 3" (SC'11), as in Random123: a 128-bit
 * counter and a 64-bit key map to 128 random bits through 10 rounds. It has
 * no state, so any work-item can draw any value directly, in any order.
 *
 * Stream convention (ps_philox_draw_sub): every random value of the library
 * is a pure function of
 *     key     = { seed bits 0..31, seed bits 32..63 }
 *     counter = { index, batch_head, stage, sub }
 * - seed:       ps_attention_desc.seed.
 * - stage:      one of PS_RNG_STAGE_*, so stages never share values.
 * - batch_head: the flat index of the head the values serve, b * H + h. Use
 *               the key/value head count for stages that work on keys
 *               (k-means++ seeds, LSH projections shared by a KV head's
 *               queries and keys), the query head count for per-query-head
 *               choices. The caller documents which at each use.
 * - index:      the draw number within that (stage, head); each draw yields
 *               four 32-bit words, which the stage may use as it likes.
 * - sub:        a further coordinate when one (stage, head) needs several
 *               independent streams (e.g. the node of the causal recursion);
 *               ps_philox_draw is the common case sub = 0.
 * Index varies fastest in counter word 0 so neighbouring work-items differ in
 * the first word, but Philox mixes all words, so any layout would do.
 *
 * Conversions: ps_philox_uniform and ps_philox_uniform_int use integer
 * arithmetic and exact float operations only, so host and device results are
 * bit-identical (also under -cl-fast-relaxed-math). ps_philox_normal2 uses
 * log, sqrt, cos and sin, whose results may differ between the host libm
 * and the device in the last few ulps (more under -cl-fast-relaxed-math):
 * compare normals with a tolerance, and never let a discrete choice depend on
 * a normal's exact bits without a tie-aware check. */
#ifndef PS_PHILOX_H
#define PS_PHILOX_H

#ifdef __OPENCL_VERSION__

typedef uint ps_u32;
typedef int ps_i32;
typedef ulong ps_u64;
/* static: OpenCL C 1.2 allows it, and unlike a plain C99 `inline` it never
 * leaves an undefined external symbol when the compiler does not inline
 * (e.g. with -cl-opt-disable). */
#define PS_PHILOX_FN static inline
#define ps_philox_mulhi(a, b) mul_hi((ps_u32)(a), (ps_u32)(b))
#define ps_philox_log(x) log(x)
#define ps_philox_sqrt(x) sqrt(x)
#define ps_philox_cos(x) cos(x)
#define ps_philox_sin(x) sin(x)

#else /* host C99 */

#include <math.h>
#include <stdint.h>

typedef uint32_t ps_u32;
typedef int32_t ps_i32;
typedef uint64_t ps_u64;
#define PS_PHILOX_FN static inline
/* The high half of the 64-bit product is exactly OpenCL's mul_hi. */
#define ps_philox_mulhi(a, b) ((ps_u32)(((ps_u64)(a) * (ps_u64)(b)) >> 32))
/* Float functions, so the host computes in the device's precision. */
#define ps_philox_log(x) logf(x)
#define ps_philox_sqrt(x) sqrtf(x)
#define ps_philox_cos(x) cosf(x)
#define ps_philox_sin(x) sinf(x)

#endif

/* Stages of the pipeline that draw random numbers (counter word 2). */
#define PS_RNG_STAGE_TEST 0        /* tests and the device-vs-host check */
#define PS_RNG_STAGE_KMEANS_INIT 1 /* k-means++ seeding */
#define PS_RNG_STAGE_LSH_PROJ 2    /* Gaussian LSH hyperplanes */
#define PS_RNG_STAGE_RESIDUAL 3    /* residual key samples */
#define PS_RNG_STAGE_SELECT 4      /* the drawn keys of a weighted selection */
#define PS_RNG_STAGE_SKETCH 5      /* the sampled queries of a query sketch */
#define PS_RNG_STAGE_STRATA 6      /* the phases of a stratified draw */
#define PS_RNG_STAGE_PROBE 7       /* the probe rows of the error estimate */
#define PS_RNG_STAGE_DROPPED 8     /* the phase of the dropped-key residual */

/* Philox4x32 constants (Salmon et al. 2011): round multipliers and the
 * Weyl increments of the key schedule (golden ratio, sqrt(3) - 1). */
#define PS_PHILOX_M0 0xD2511F53u
#define PS_PHILOX_M1 0xCD9E8D57u
#define PS_PHILOX_W0 0x9E3779B9u
#define PS_PHILOX_W1 0xBB67AE85u

/* Four 32-bit words. A struct (not uint4) so that both languages share the
 * type and the code that indexes it. */
typedef struct ps_philox_u4 {
    ps_u32 v[4];
} ps_philox_u4;

/* A pair of floats, the two normals of one Box-Muller transform. */
typedef struct ps_philox_f2 {
    float v[2];
} ps_philox_f2;

/* One Philox round: two 32x32->64 multiplies, the halves crossed and mixed
 * with the other two words and the round key. */
PS_PHILOX_FN ps_philox_u4 ps_philox_round(ps_philox_u4 x, ps_u32 k0, ps_u32 k1)
{
    ps_philox_u4 y;
    y.v[0] = ps_philox_mulhi(PS_PHILOX_M1, x.v[2]) ^ x.v[1] ^ k0;
    y.v[1] = (ps_u32)(PS_PHILOX_M1 * x.v[2]);
    y.v[2] = ps_philox_mulhi(PS_PHILOX_M0, x.v[0]) ^ x.v[3] ^ k1;
    y.v[3] = (ps_u32)(PS_PHILOX_M0 * x.v[0]);
    return y;
}

/* Philox4x32-10: 128 random bits for counter @p ctr under key @p k0, @p k1.
 * Matches Random123's philox4x32 with 10 rounds (see tests/test_philox.c). */
PS_PHILOX_FN ps_philox_u4 ps_philox4x32_10(ps_philox_u4 ctr, ps_u32 k0, ps_u32 k1)
{
    int r;
    for (r = 0; r < 10; r++) {
        if (r > 0) { /* the key advances before every round but the first */
            k0 += PS_PHILOX_W0;
            k1 += PS_PHILOX_W1;
        }
        ctr = ps_philox_round(ctr, k0, k1);
    }
    return ctr;
}

/* The library's stream: four words for (seed, stage, batch_head, index, sub),
 * laid out as described at the top of this file. */
PS_PHILOX_FN ps_philox_u4 ps_philox_draw_sub(ps_u64 seed, ps_u32 stage, ps_u32 batch_head,
                                             ps_u32 index, ps_u32 sub)
{
    ps_philox_u4 ctr;
    ctr.v[0] = index;
    ctr.v[1] = batch_head;
    ctr.v[2] = stage;
    ctr.v[3] = sub;
    return ps_philox4x32_10(ctr, (ps_u32)seed, (ps_u32)(seed >> 32));
}

/* The common case: sub-stream 0. */
PS_PHILOX_FN ps_philox_u4 ps_philox_draw(ps_u64 seed, ps_u32 stage, ps_u32 batch_head,
                                         ps_u32 index)
{
    return ps_philox_draw_sub(seed, stage, batch_head, index, 0u);
}

/* Uniform float in [0, 1) from one word: the top 24 bits times 2^-24. Both
 * steps are exact in float (a 24-bit integer, a power-of-two scale), so the
 * host and every device agree bit for bit. Largest value 1 - 2^-24. */
PS_PHILOX_FN float ps_philox_uniform(ps_u32 w)
{
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n) from one word: floor(w * n / 2^32) (Lemire's
 * multiply-shift without rejection). Each value's probability is within
 * 1/2^32 of 1/n, far below anything a sample of a few hundred keys can
 * show, and unlike rejection it costs one word and has no data-dependent
 * loop. Integer-only, hence identical on host and device. n = 0 gives 0. */
PS_PHILOX_FN ps_u32 ps_philox_uniform_int(ps_u32 w, ps_u32 n)
{
    return ps_philox_mulhi(w, n);
}

/* Element j of a stream of uniform ints in [0, n): word j % 4 of draw j / 4
 * of stream (seed, stage, batch_head). Residual samples use it (kernel and
 * reference call this one function). */
PS_PHILOX_FN ps_u32 ps_philox_uniform_at(ps_u64 seed, ps_u32 stage, ps_u32 batch_head,
                                         ps_u32 j, ps_u32 n)
{
    const ps_philox_u4 w = ps_philox_draw(seed, stage, batch_head, j >> 2);
    return ps_philox_uniform_int(w.v[j & 3u], n);
}

/* Two independent standard normals from two words (Box-Muller), in float on
 * both sides. u1 lies in (0, 1] so log(u1) is finite; as a consequence
 * |z| <= sqrt(-2 ln 2^-24) ~ 5.77, a tail cut far beyond what random
 * projections notice. Not bit-identical between host and device (see the
 * top of this file). */
PS_PHILOX_FN ps_philox_f2 ps_philox_normal2(ps_u32 a, ps_u32 b)
{
    const float u1 = (float)((a >> 8) + 1u) * (1.0f / 16777216.0f);
    const float theta = 6.2831853071795864769f * ps_philox_uniform(b);
    const float r = ps_philox_sqrt(-2.0f * ps_philox_log(u1));
    ps_philox_f2 z;
    z.v[0] = r * ps_philox_cos(theta);
    z.v[1] = r * ps_philox_sin(theta);
    return z;
}

/* One standard normal (the first of the pair) when only one is needed. */
PS_PHILOX_FN float ps_philox_normal(ps_u32 a, ps_u32 b)
{
    return ps_philox_normal2(a, b).v[0];
}

#endif /* PS_PHILOX_H */
