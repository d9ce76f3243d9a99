/* The score order of the selection (lib/core/select_params.h), shared by the
 * host (C99) and the kernels (OpenCL C 1.2), like philox.h: lib/program.c
 * prepends this file to every program, and lib/core/select_params.h includes
 * it. Integer-only on the float's bit pattern, so it survives
 * -cl-fast-relaxed-math (where isnan() may fold to 0). */
#ifndef PS_SELECT_COMMON_H
#define PS_SELECT_COMMON_H

#ifndef __OPENCL_VERSION__
#include "philox.h" /* ps_u32 */
#endif

/* The radix select's digits: 2^11 bins (the widest digit), three passes of
 * 11, 11 and 10 bits. */
#define PS_SEL_BINS 2048
#define PS_SEL_PASSES 3

/* Order-preserving key of a score's bits u: a higher score gets a higher
 * key; +0.0 and -0.0 are equal; every NaN (any sign, any payload) maps to 0,
 * below -inf. Branch-free (selects): a data-dependent branch per key costs
 * more than the whole transform on CPU devices. */
static inline ps_u32 ps_select_key(ps_u32 u)
{
    const ps_u32 mag = u & 0x7fffffffu;
    ps_u32 key = u ^ ((0u - (u >> 31)) | 0x80000000u); /* ~u if negative */
    key = mag == 0u ? 0x80000000u : key;
    return mag > 0x7f800000u ? 0u : key;
}

/* Weighted selection (docs/SELECT.md): the draw priority of position pos of
 * KV head `head` (batch_head = the KV head's flat index), uniform in [0, 1)
 * with 24 bits; a head keeps the drawn keys of highest priority (ties to the
 * lower position), a uniform draw without replacement. Kept heavy keys get
 * PS_SELECT_HEAVY_PRIORITY, above every draw. Integer-exact: host and device
 * draw the same keys. */
#define PS_SELECT_HEAVY_PRIORITY 2.0f
PS_PHILOX_FN float ps_select_draw_priority(ps_u64 seed, ps_u32 head, ps_u32 pos)
{
    const ps_philox_u4 r = ps_philox_draw(seed, PS_RNG_STAGE_SELECT, head, pos / 4u);
    return ps_philox_uniform(r.v[pos % 4u]);
}

/* Query sketch (docs/SELECT.md "Query sketch"): the rows query head `head`
 * (flat batch * heads index) samples out of n_q, ps_sketch_rows of them.
 * Row i: all rows in order when n_q <= s; else one row drawn uniformly from
 * stratum [i n_q / s, (i + 1) n_q / s), so the sample spreads over the
 * sequence. Integer-exact: host and device sample the same rows. */
PS_PHILOX_FN ps_u32 ps_sketch_rows(ps_u32 n_q, ps_u32 s)
{
    return n_q < s ? n_q : s;
}

/* Row i of a stratified sample of s rows out of n_q from Philox stream
 * (seed, stage, head); the sketch's rows and the error estimate's probes. */
PS_PHILOX_FN ps_u32 ps_stratum_row(ps_u64 seed, ps_u32 stage, ps_u32 head, ps_u32 i, ps_u32 n_q,
                                   ps_u32 s)
{
    if (n_q <= s)
        return i;
    const ps_u32 lo = (ps_u32)(((ps_u64)i * n_q) / s);
    const ps_u32 hi = (ps_u32)(((ps_u64)(i + 1u) * n_q) / s);
    return lo + ps_philox_uniform_at(seed, stage, head, i, hi - lo);
}

PS_PHILOX_FN ps_u32 ps_sketch_row(ps_u64 seed, ps_u32 head, ps_u32 i, ps_u32 n_q, ps_u32 s)
{
    return ps_stratum_row(seed, PS_RNG_STAGE_SKETCH, head, i, n_q, s);
}

/* Stratified draw (PS_SELECTION_STRATIFIED, docs/SELECT.md "Stratified
 * draw"): a head's r drawn keys are shared out over its k-means clusters in
 * proportion to the clusters' pool sizes P_c (P = sum P_c): a_c =
 * floor(r P_c / P), plus one for the r - sum floor(...) clusters whose
 * remainders (r P_c mod P) rank highest (ps_strata_outranks: larger
 * remainder, then lower cluster). Within cluster c, pool key number t (in
 * position order) is kept iff ps_strata_keep: a systematic sample of exactly
 * a_c keys with a random phase in [0, P_c). Integer-exact. */
#define PS_STRATA_TILE 256 /* least positions per tile of the device's rank count */

PS_PHILOX_FN int ps_strata_outranks(ps_u64 rem_a, ps_u32 a, ps_u64 rem_b, ps_u32 b)
{
    return rem_a > rem_b || (rem_a == rem_b && a < b);
}

PS_PHILOX_FN ps_u32 ps_strata_phase(ps_u64 seed, ps_u32 head, ps_u32 cluster, ps_u32 pool_c)
{
    const ps_philox_u4 w = ps_philox_draw(seed, PS_RNG_STAGE_STRATA, head, cluster);
    return ps_philox_uniform_int(w.v[0], pool_c);
}

PS_PHILOX_FN int ps_strata_keep(ps_u32 t, ps_u32 a_c, ps_u32 pool_c, ps_u32 phase)
{
    const ps_u64 lo = (ps_u64)t * a_c + phase, hi = lo + a_c;
    return pool_c > 0u && hi / pool_c > lo / pool_c;
}

/* Dropped-key residual (docs/HYPER.md "Dropped-key residual"): a PRESCORE
 * plan whose kept keys fit in one block draws `draws` of the nd keys its
 * selection dropped, per query head `head`, as a systematic sample with a
 * random phase: draw j is dropped key number floor((j + u) nd / draws), u
 * uniform in [0, 1) from 32 bits. Every dropped key is drawn with
 * probability draws / nd (draws <= nd; to within nd / 2^32, the phase's
 * resolution), none twice. Integer-exact:
 * floor((j nd + u nd) / draws) = floor((j nd + floor(u nd)) / draws). */
PS_PHILOX_FN ps_u32 ps_dropped_rank(ps_u64 seed, ps_u32 head, ps_u32 j, ps_u32 nd,
                                    ps_u32 draws)
{
    const ps_philox_u4 w = ps_philox_draw(seed, PS_RNG_STAGE_DROPPED, head, 0u);
    const ps_u64 phase = ((ps_u64)w.v[0] * nd) >> 32;
    return (ps_u32)(((ps_u64)j * nd + phase) / draws);
}

/* The key row of dropped key number r (0-based, in position order) of a
 * head whose c kept rows are kept[0..c), ascending and distinct: r plus the
 * number of kept rows before it, found by bisection on kept[i] - i (the
 * dropped keys before kept row i), which never decreases. */
#ifdef __OPENCL_VERSION__
#define PS_KEPT_ROWS __global const ps_u32 *
#else
#define PS_KEPT_ROWS const ps_u32 *
#endif
PS_PHILOX_FN ps_u32 ps_dropped_row(PS_KEPT_ROWS kept, ps_u32 c, ps_u32 r)
{
    ps_u32 lo = 0u, hi = c;
    while (lo < hi) {
        const ps_u32 mid = lo + (hi - lo) / 2u;
        if (kept[mid] - mid > r)
            hi = mid;
        else
            lo = mid + 1u;
    }
    return r + lo;
}

#endif
