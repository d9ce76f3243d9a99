/* Score helpers shared by the host (C99) and the kernels (OpenCL C 1.2), like
 * philox.h: lib/program.c prepends this file to every program after
 * lsh_common.h, and the host reference (lib/ref/score.c) and the score
 * parameters (lib/core/score_params.h) include it as a header. One text, so
 * the device and the reference cannot drift apart. Integer-only on the float
 * bit patterns: identical on both sides whatever the compiler flags. */
#ifndef PS_SCORE_COMMON_H
#define PS_SCORE_COMMON_H

#ifdef __OPENCL_VERSION__
#define ps_float_bits(x) as_uint(x)
#define ps_bits_float(x) as_float(x)
#else
#include "philox.h" /* ps_u32 */

#include <string.h>

static inline ps_u32 ps_float_bits(float x)
{
    ps_u32 u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float ps_bits_float(ps_u32 u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
#endif

/* Keys per chunk of the k-means++ D^2 sums (exact integers: any chunking
 * gives the same picks). */
#define PS_KPP_CHUNK 256

/* Work-group size limit of the score reduction kernels (the host picks at
 * most this many work-items; the kernels size __local arrays by it). */
#define PS_SCORE_RED 256

/* Significant bits kept of KMEANS and LEVERAGE scores (ps_score_round). */
#define PS_KMEANS_SCORE_BITS 16u
#define PS_LEVERAGE_SCORE_BITS 12u

/* k-means++ quantisation: the power-of-two scale s with maxabs * s in
 * [64, 128) for a head whose largest |k| is maxabs; 0 when maxabs is 0 or
 * denormal. */
static inline float ps_kpp_scale(float maxabs)
{
    const ps_u32 e = (ps_float_bits(maxabs) >> 23) & 0xffu;
    if (e == 0u)
        return 0.0f;
    ps_u32 biased = 260u - e; /* 2^(133 - e): 2^(e-127) * 2^(133-e) = 2^6 */
    if (biased > 254u)
        biased = 254u;
    return ps_bits_float(biased << 23);
}

/* Rounds a non-negative score to `bits` significant bits (round half up on
 * the bit pattern), so that keys whose scores tie exactly (the two members of
 * a two-key cluster; leverages that are all 1 - O(lambda) for rank-deficient
 * keys) and that float rounding puts an ulp or a few apart get the same
 * value again, as in the double reference; selection then breaks the tie by
 * position on both sides. Used by KMEANS and LEVERAGE. */
static inline float ps_score_round(float v, ps_u32 bits)
{
    const ps_u32 drop = 24u - bits;
    const ps_u32 u = ps_float_bits(v);
    return ps_bits_float((u + (1u << (drop - 1u))) & ~((1u << drop) - 1u));
}

#endif
