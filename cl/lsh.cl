/* Hamming-sort LSH (pipeline step 4, docs/LSH.md): Gaussian hyperplanes from Philox, sign
 * patterns turned into Gray-rank codes (lsh_common.h), and a stable counting
 * sort by code per head, producing the permutation and its inverse.
 *
 * The sort is deterministic without atomics: a head's n slots are cut into
 * tiles of `tile` slots (ps_lsh_sort_tile), one work-item per (tile, head)
 * counts its tile into its own column of hist[head][bucket][tile]; an
 * exclusive scan of that array in flat (bucket-major) order gives, for each
 * (bucket, tile), the sorted position of the tile's first slot with that code,
 * so tiles in order and slots in order within a tile make the sort stable.
 * The scan is three integer passes (chunk sums, a serial scan of the sums per
 * head, chunk scans). No __local memory and no barriers: the kernels run on
 * any work-group size the host picks from CL_KERNEL_WORK_GROUP_SIZE.
 *
 * Layouts (flat head hx = b * heads_x + h):
 *   proj     [batch * kv_heads][r][d] floats
 *   x        [batch * heads_x][x_rows][d], a view (cl/tensor_view.h)
 *   rows     NULL or [batch * heads_x][n] uint: slot i hashes x row rows[i]
 *   counts   NULL or [batch * heads_x] uint: valid slots per head (<= n)
 *   codes    [batch * heads_x][n] uint (PS_LSH_CODE_NONE past the count)
 *   hist     [batch * heads_x][2^r][tiles] uint (workspace)
 *   sums     [batch * heads_x][chunks] uint (workspace)
 *   perm     [batch * heads_x][n] uint: slot at sorted position p
 *   perm_inv [batch * heads_x][n] uint: sorted position of slot i */

static inline uint ps_lsh_count(__global const uint *counts, size_t hx, uint n)
{
    return counts ? min(counts[hx], n) : n;
}

/* Projections of every KV head. Global size: (r * d, batch * kv_heads). */
__kernel void lsh_projections(__global float *restrict proj, const ulong seed,
                              const uint per_head)
{
    const uint e = get_global_id(0);
    const uint bk = get_global_id(1);
    if (e >= per_head)
        return;
    proj[(size_t)bk * per_head + e] = ps_lsh_projection(seed, bk, e);
}

/* Horizontal sums of eight float16 vectors as one float8 (a transposing add
 * tree: 8 vector adds instead of 8 separate 4-level reductions). */
inline float8 ps_lsh_hsum8(float16 v0, float16 v1, float16 v2, float16 v3, float16 v4,
                           float16 v5, float16 v6, float16 v7)
{
    /* Level 1: each half holds 8 partial sums of one vector. */
    const float16 t0 = (float16)(v0.lo, v1.lo) + (float16)(v0.hi, v1.hi);
    const float16 t1 = (float16)(v2.lo, v3.lo) + (float16)(v2.hi, v3.hi);
    const float16 t2 = (float16)(v4.lo, v5.lo) + (float16)(v4.hi, v5.hi);
    const float16 t3 = (float16)(v6.lo, v7.lo) + (float16)(v6.hi, v7.hi);
    /* Level 2: each quarter holds 4 partial sums of one vector. */
    const float16 u0 = (float16)(t0.s0123, t0.s89ab, t1.s0123, t1.s89ab) +
                       (float16)(t0.s4567, t0.scdef, t1.s4567, t1.scdef);
    const float16 u1 = (float16)(t2.s0123, t2.s89ab, t3.s0123, t3.s89ab) +
                       (float16)(t2.s4567, t2.scdef, t3.s4567, t3.scdef);
    /* Level 3: pairs; level 4: the sums. */
    const float16 w = (float16)(u0.s01, u0.s45, u0.s89, u0.scd, u1.s01, u1.s45, u1.s89,
                                u1.scd) +
                      (float16)(u0.s23, u0.s67, u0.sab, u0.sef, u1.s23, u1.s67, u1.sab,
                                u1.sef);
    return w.even + w.odd;
}

/* Code of every slot. d is a multiple of 16 (PS_HEAD_DIM_MULTIPLE), so rows
 * and hyperplanes are read as float16 vectors; hyperplanes go in groups of
 * eight (the last group repeats hyperplane r - 1 and drops those bits).
 * Global size: (>= n, batch * heads_x). Scalars: ps_lsh_hash_params. */
__kernel void lsh_hash(__global const void *restrict x, const ps_view xv,
                       __global const uint *restrict rows,
                       __global const uint *restrict counts,
                       __global const float *restrict proj, __global uint *restrict codes,
                       const ps_lsh_hash_params params)
{
    const uint n = params.n, x_rows = params.x_rows, row0 = params.row0, group = params.group;
    const int d = params.d, r = params.r, order = params.order;
    const uint i = get_global_id(0);
    const size_t hx = get_global_id(1);
    if (i >= n)
        return;
    if (i >= ps_lsh_count(counts, hx, n)) {
        codes[hx * n + i] = PS_LSH_CODE_NONE;
        return;
    }
    /* Clamped so that a bad index list cannot read outside x. */
    const uint src = min(rows ? rows[hx * n + i] : row0 + i, x_rows - 1u);
    const size_t xr = ps_row(xv, hx, src);
    __global const float *w = proj + (hx / group) * (size_t)r * d;
    const int d16 = d / 16;
    uint pattern = 0u;
    for (int j0 = 0; j0 < r; j0 += 8) {
        __global const float *wj[8];
        #pragma unroll
        for (int k = 0; k < 8; k++)
            wj[k] = w + (size_t)min(j0 + k, r - 1) * d;
        float16 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, a4 = 0.0f, a5 = 0.0f,
                a6 = 0.0f, a7 = 0.0f;
        for (int c = 0; c < d16; c++) {
            const float16 xc = ps_ld16(x, xv, xr + (size_t)c * 16);
            a0 = fma(xc, vload16(c, wj[0]), a0);
            a1 = fma(xc, vload16(c, wj[1]), a1);
            a2 = fma(xc, vload16(c, wj[2]), a2);
            a3 = fma(xc, vload16(c, wj[3]), a3);
            a4 = fma(xc, vload16(c, wj[4]), a4);
            a5 = fma(xc, vload16(c, wj[5]), a5);
            a6 = fma(xc, vload16(c, wj[6]), a6);
            a7 = fma(xc, vload16(c, wj[7]), a7);
        }
        const float8 dots = ps_lsh_hsum8(a0, a1, a2, a3, a4, a5, a6, a7);
        /* Relational operators give -1 (all bits) in true vector lanes. */
        const uint8 on = as_uint8(dots > (float8)0.0f) &
                         (uint8)(1u, 2u, 4u, 8u, 16u, 32u, 64u, 128u);
        const uint4 p4 = on.lo | on.hi;
        const uint2 p2 = p4.lo | p4.hi;
        const uint bits8 = (p2.x | p2.y) & ((r - j0 >= 8) ? 0xFFu : ((1u << (r - j0)) - 1u));
        pattern |= bits8 << j0;
    }
    codes[hx * n + i] = ps_lsh_code(pattern, order);
}

/* Per-tile histograms, counted into a zeroed hist. Global size: (>= tiles, heads). */
__kernel void lsh_histogram(__global const uint *restrict codes,
                            __global const uint *restrict counts,
                            __global uint *restrict hist, const uint n, const uint tile,
                            const uint tiles, const uint buckets)
{
    const uint t = get_global_id(0);
    const size_t hx = get_global_id(1);
    if (t >= tiles)
        return;
    __global uint *col = hist + hx * buckets * tiles + t; /* zeroed by the host */
    const uint count = ps_lsh_count(counts, hx, n);
    const uint end = min(count, (t + 1u) * tile);
    __global const uint *code = codes + hx * n;
    /* min(): codes from outside (sort-only calls) cannot write out of range. */
    for (uint i = t * tile; i < end; i++)
        col[(size_t)min(code[i], buckets - 1u) * tiles]++;
}

/* Scan pass 1: the sum of each chunk of a head's histogram.
 * Global size: (>= chunks, heads). */
__kernel void lsh_scan_sums(__global const uint *restrict hist, __global uint *restrict sums,
                            const uint length, const uint chunk, const uint chunks)
{
    const uint k = get_global_id(0);
    const size_t hx = get_global_id(1);
    if (k >= chunks)
        return;
    __global const uint *h = hist + hx * length;
    const uint end = min(length, (k + 1u) * chunk);
    uint s = 0u;
    for (uint i = k * chunk; i < end; i++)
        s += h[i];
    sums[hx * chunks + k] = s;
}

/* Scan pass 2: exclusive scan of the chunk sums, serially per head.
 * Global size: (>= heads). */
__kernel void lsh_scan_top(__global uint *restrict sums, const uint chunks, const uint heads)
{
    const size_t hx = get_global_id(0);
    if (hx >= heads)
        return;
    __global uint *s = sums + hx * chunks;
    uint run = 0u;
    for (uint k = 0; k < chunks; k++) {
        const uint v = s[k];
        s[k] = run;
        run += v;
    }
}

/* Scan pass 3: exclusive scan inside each chunk from its base, in place, so
 * hist becomes the start offsets. Global size: (>= chunks, heads). */
__kernel void lsh_scan_chunks(__global uint *restrict hist, __global const uint *restrict sums,
                              const uint length, const uint chunk, const uint chunks)
{
    const uint k = get_global_id(0);
    const size_t hx = get_global_id(1);
    if (k >= chunks)
        return;
    __global uint *h = hist + hx * length;
    const uint end = min(length, (k + 1u) * chunk);
    uint run = sums[hx * chunks + k];
    for (uint i = k * chunk; i < end; i++) {
        const uint v = h[i];
        h[i] = run;
        run += v;
    }
}

/* Stable scatter: each tile walks its slots in order and takes the next
 * position of its own (bucket, tile) offset. Slots past the count map to
 * themselves. Global size: (>= tiles, heads). */
__kernel void lsh_scatter(__global const uint *restrict codes,
                          __global const uint *restrict counts,
                          __global uint *restrict offsets, __global uint *restrict perm,
                          __global uint *restrict perm_inv, const uint n, const uint tile,
                          const uint tiles, const uint buckets)
{
    const uint t = get_global_id(0);
    const size_t hx = get_global_id(1);
    if (t >= tiles)
        return;
    __global uint *col = offsets + hx * buckets * tiles + t;
    const uint count = ps_lsh_count(counts, hx, n);
    const uint end = min(n, (t + 1u) * tile);
    __global const uint *code = codes + hx * n;
    __global uint *p = perm + hx * n;
    __global uint *pi = perm_inv + hx * n;
    for (uint i = t * tile; i < end; i++) {
        uint pos = i;
        if (i < count) {
            __global uint *o = col + (size_t)min(code[i], buckets - 1u) * tiles;
            pos = *o;
            *o = pos + 1u;
        }
        p[pos] = i;
        pi[i] = pos;
    }
}
