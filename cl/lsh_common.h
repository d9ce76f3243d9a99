/* Angular-LSH code functions shared by the host (C99) and the kernels
 * (OpenCL C 1.2), like philox.h: lib/program.c prepends this file to every
 * program after philox.h, and the host reference includes it as a header.
 *
 * A row x is hashed by r Gaussian hyperplanes w_0 .. w_{r-1}: its sign
 * pattern p has bit j set iff x . w_j > 0. The sort key ("code") is a
 * function of p chosen by the ordering (docs/LSH.md):
 *
 *  PS_LSH_ORDER_GRAY_RANK (default): code = rank of p in the reflected
 *    Gray-code sequence, i.e. the inverse Gray code (prefix XOR from the top
 *    bit). Sorting by it walks the Gray sequence, so patterns of neighbouring
 *    codes differ in exactly one hyperplane.
 *  PS_LSH_ORDER_GRAY_CODE: code = gray(p) = p ^ (p >> 1), the Gray code OF
 *    the pattern. This is what HyperAttention's public code computes (it
 *    indexes its table of the Gray sequence by the binary pattern), i.e. the
 *    sequence indexed the other way round; neighbouring codes then differ in
 *    one bit of gray(p), not of p.
 *  PS_LSH_ORDER_BINARY: code = p (plain binary rank), for comparison.
 *
 * Every function is integer-only, hence identical on host and device. */
#ifndef PS_LSH_COMMON_H
#define PS_LSH_COMMON_H

#ifndef __OPENCL_VERSION__
#include "philox.h" /* ps_u32, ps_i32 */
#endif

#define PS_LSH_ORDER_GRAY_RANK 0
#define PS_LSH_ORDER_GRAY_CODE 1
#define PS_LSH_ORDER_BINARY 2

/* Scalar arguments of lsh_hash (cl/lsh.cl), filled by lib/lsh.c and
 * passed by value: 32-bit members only, as in attention_params.h. */
typedef struct ps_lsh_hash_params {
    ps_u32 n;      /* slots per head */
    ps_u32 x_rows; /* rows of x per head */
    ps_u32 row0;   /* without a row list, slot i hashes row row0 + i */
    ps_u32 group;  /* heads of x per KV head (the projections are per KV head) */
    ps_i32 d;      /* head dimension */
    ps_i32 r;      /* hyperplanes */
    ps_i32 order;  /* PS_LSH_ORDER_* */
} ps_lsh_hash_params;
#define PS_LSH_HASH_PARAMS_WORDS 7
/* A member that is not 4 bytes wide, or padding, fails the build (both
 * languages; C99 has no static assert). */
typedef char ps_lsh_hash_params_size_check
    [sizeof(ps_lsh_hash_params) == 4 * PS_LSH_HASH_PARAMS_WORDS ? 1 : -1];

/* Code written for rows past a head's row count (never a real code: r <= 16). */
#define PS_LSH_CODE_NONE 0xFFFFFFFFu

#define PS_LSH_FN static inline

/* Reflected binary Gray code of k: the k-th element of the Gray sequence. */
PS_LSH_FN ps_u32 ps_lsh_gray(ps_u32 k) { return k ^ (k >> 1); }

/* Inverse Gray code: the position of pattern g in the Gray sequence. Bit i of
 * the result is the XOR of bits i.. of g (a suffix XOR from the top). */
PS_LSH_FN ps_u32 ps_lsh_gray_rank(ps_u32 g)
{
    g ^= g >> 1;
    g ^= g >> 2;
    g ^= g >> 4;
    g ^= g >> 8;
    g ^= g >> 16;
    return g;
}

/* The sort key of sign pattern p under an ordering (PS_LSH_ORDER_*). */
PS_LSH_FN ps_u32 ps_lsh_code(ps_u32 p, int order)
{
    if (order == PS_LSH_ORDER_GRAY_CODE)
        return ps_lsh_gray(p);
    if (order == PS_LSH_ORDER_BINARY)
        return p;
    return ps_lsh_gray_rank(p);
}

/* Projection element e = j * d + c (hyperplane j, dimension c) of a KV head
 * is normal (e % 4) of draw e / 4 of (seed, PS_RNG_STAGE_LSH_PROJ,
 * b * kv_heads + kv_head): the draw's words 0, 1 give normals 0, 1 and words
 * 2, 3 give normals 2, 3 (ps_philox_normal2). Hyperplane j does not depend
 * on r, so the first r' < r hyperplanes of an r-bit plan are those of an
 * r'-bit plan with the same seed and d. */
PS_LSH_FN float ps_lsh_projection(ps_u64 seed, ps_u32 kv_batch_head, ps_u32 e)
{
    const ps_philox_u4 w = ps_philox_draw(seed, PS_RNG_STAGE_LSH_PROJ, kv_batch_head, e >> 2);
    const ps_u32 pair = (e >> 1) & 1u;
    const ps_philox_f2 z = ps_philox_normal2(w.v[2 * pair], w.v[2 * pair + 1]);
    return z.v[e & 1u];
}

/* Rows per tile of the counting sort for r bits: each tile owns one column
 * of the 2^r-bucket histogram, so tiles never hold fewer rows than half the
 * buckets (zeroing a column then costs at most twice the counting). */
PS_LSH_FN ps_u32 ps_lsh_sort_tile(ps_u32 r)
{
    return r <= 9u ? 256u : (1u << (r - 1u));
}

#endif /* PS_LSH_COMMON_H */
