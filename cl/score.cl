/* Key scores (pipeline step 1, docs/SCORING.md): squared norms, ridge
 * leverage through the Gram matrix and its Cholesky factor, and k-means
 * clustering scores (k-means++ seeding from Philox, Lloyd iterations).
 *
 * Layouts: K is the caller's tensor, fp32 or fp16 at any offset and strides:
 * row i of flat KV head h (h = b * kv_heads + kvh, also the Philox
 * batch_head) starts at element ps_row(kv, h, i) and is read through ps_ld*
 * (cl/tensor_view.h), widened to fp32. Everything else is the plan's dense
 * fp32 (or int) workspace: scores [H][n], H = batch * kv_heads. Every
 * kernel takes the flat head as its last global dimension.
 *
 * Reductions are deterministic: fixed chunks of keys write partial results,
 * and a second kernel adds the partials in chunk order; no float atomics
 * anywhere. The only atomic is an integer OR that flags a changed
 * assignment.
 *
 * Built with -cl-fast-relaxed-math: no INFINITY/NaN tests, "+inf" is PS_BIG. */

#define PS_BIG 1.0e30f
/* PS_KPP_CHUNK, PS_SCORE_RED, PS_*_SCORE_BITS, ps_kpp_scale and
 * ps_score_round come from score_common.h (the program prelude), shared with
 * the host. */

/* km_assign has a variant per shape; a program holds the one -DPS_GPU_SHAPE
 * names (lib/program.c). */
#ifndef PS_GPU_SHAPE
#error "PS_GPU_SHAPE undefined: program_shaped[] of lib/program.c must list this file"
#endif

#if !PS_GPU_SHAPE /* horizontal minima of km_assign_cpu */
static inline float ps_score_hmin16(float16 v)
{
    float8 a = fmin(v.lo, v.hi);
    float4 b = fmin(a.lo, a.hi);
    float2 c = fmin(b.lo, b.hi);
    return fmin(c.x, c.y);
}

static inline int ps_score_hmin16i(int16 v)
{
    int8 a = min(v.lo, v.hi);
    int4 b = min(a.lo, a.hi);
    int2 c = min(b.lo, b.hi);
    return min(c.x, c.y);
}
#endif /* PS_GPU_SHAPE */

/* ------------------------------------------------------------ simple scores */

/* scores[h][i] = ||k_i||^2. Global (n, H). */
__kernel void score_norm(__global const void *restrict k, const ps_view kv,
                         __global float *restrict scores, const int n, const int d)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= n)
        return;
    const size_t row = ps_row(kv, h, i);
    float16 acc = (float16)(0.0f);
    for (int t = 0; t < d; t += 16) {
        const float16 v = ps_ld16(k, kv, row + t);
        acc = fma(v, v, acc);
    }
    scores[h * n + i] = ps_hsum16(acc);
}

/* scores[h][i] = 1 (PS_SCORE_NONE: selection then keeps by position).
 * Global (n, H). */
__kernel void score_fill_one(__global float *restrict scores, const int n)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i < n)
        scores[h * n + i] = 1.0f;
}

/* ----------------------------------------------------------- k-means++ seeds
 * D^2 weights are computed on keys quantised to integers in [-127, 127] with a
 * power-of-two scale per head, so every distance is an integer below 2^24,
 * exact in float in any summation order, and the prefix sums are exact 64-bit
 * integers: the device and the host reference (lib/ref/score.c, ps_kpp_scale)
 * pick the same keys bit for bit. */

/* Largest |k| per chunk of PS_KPP_CHUNK keys (max is exact in any order).
 * Global (nchunk, H). */
__kernel void kpp_maxabs(__global const void *restrict k, const ps_view kv,
                         __global float *restrict pmax, const int n, const int d,
                         const int nchunk, const int chunk)
{
    const int p = get_global_id(0);
    const size_t h = get_global_id(1);
    if (p >= nchunk)
        return;
    const int i1 = min(n, (p + 1) * chunk);
    float16 m = (float16)(0.0f);
    for (int i = p * chunk; i < i1; i++) { /* rows need not be contiguous */
        const size_t row = ps_row(kv, h, i);
        for (int t = 0; t < d; t += 16)
            m = fmax(m, fabs(ps_ld16(k, kv, row + t)));
    }
    float8 a = fmax(m.lo, m.hi);
    float4 b = fmax(a.lo, a.hi);
    float2 c = fmax(b.lo, b.hi);
    pmax[h * nchunk + p] = fmax(c.x, c.y);
}

/* One work-group per head: the largest of the chunk maxima, then the scale.
 * Global (L, H), local (L, 1), L <= PS_SCORE_RED. */
__kernel void kpp_scale_head(__global const float *restrict pmax, __global float *restrict scale,
                             const int nchunk)
{
    __local float red[PS_SCORE_RED];
    const int l = get_local_id(0);
    const int size = get_local_size(0);
    const size_t h = get_group_id(1);
    float m = 0.0f;
    for (int i = l; i < nchunk; i += size)
        m = fmax(m, pmax[h * nchunk + i]);
    red[l] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = size / 2; s > 0; s /= 2) {
        if (l < s)
            red[l] = fmax(red[l], red[l + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0)
        scale[h] = ps_kpp_scale(red[0]);
}

/* kq = clamp(rint(k * scale), -127, 127). Global (n, H). */
__kernel void kpp_quantize(__global const void *restrict k, const ps_view kv,
                           __global char *restrict kq, __global const float *restrict scale,
                           const int n, const int d)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= n)
        return;
    const float16 s = (float16)(scale[h]);
    const size_t row = ps_row(kv, h, i), off = (h * n + i) * d;
    for (int t = 0; t < d; t += 16) {
        const int16 q = convert_int16_rte(ps_ld16(k, kv, row + t) * s);
        vstore16(convert_char16(clamp(q, (int16)(-127), (int16)(127))), 0, kq + off + t);
    }
}

/* Round j >= 1: mind[i] = min over chosen centers of the integer squared
 * distance, and per-chunk sums (exact 64-bit). Global (nchunk, H). */
__kernel void kpp_update(__global const char *restrict kq, __global uint *restrict mind,
                         __global ulong *restrict csum, __global const uint *restrict centers,
                         const int n, const int d, const int c, const int j, const int nchunk,
                         const int chunk)
{
    const int p = get_global_id(0);
    const size_t h = get_global_id(1);
    if (p >= nchunk)
        return;
    kq += h * n * d;
    mind += h * n;
    __global const char *cr = kq + (size_t)centers[h * c + j - 1] * d;
    const int i1 = min(n, (p + 1) * chunk);
    ulong sum = 0;
    for (int i = p * chunk; i < i1; i++) {
        __global const char *row = kq + (size_t)i * d;
        float16 acc = (float16)(0.0f);
        for (int t = 0; t < d; t += 16) {
            const float16 a = convert_float16(vload16(0, row + t)) -
                              convert_float16(vload16(0, cr + t));
            acc = fma(a, a, acc); /* integers < 2^24: exact in any order */
        }
        const uint d2 = convert_uint(ps_hsum16(acc));
        const uint m = j == 1 ? d2 : min(mind[i], d2);
        mind[i] = m;
        sum += m;
    }
    csum[h * nchunk + p] = sum;
}

/* Round j: draw u in [0, total) from Philox (seed, KMEANS_INIT, h, j) and pick
 * the first key whose inclusive prefix sum of mind exceeds u; total 0 (j = 0,
 * or every key on a center) picks uniformly. Global (H). */
__kernel void kpp_pick(__global const uint *restrict mind, __global const ulong *restrict csum,
                       __global uint *restrict centers, const ulong seed, const int n,
                       const int c, const int j, const int nchunk, const int chunk)
{
    const uint h = get_global_id(0);
    const ps_philox_u4 r = ps_philox_draw(seed, PS_RNG_STAGE_KMEANS_INIT, h, (uint)j);
    csum += (size_t)h * nchunk;
    mind += (size_t)h * n;
    ulong total = 0;
    if (j > 0)
        for (int p = 0; p < nchunk; p++)
            total += csum[p];
    uint pick;
    if (total == 0) {
        pick = ps_philox_uniform_int(r.v[2], (uint)n);
    } else {
        const ulong u = ((((ulong)r.v[0]) << 32) | (ulong)r.v[1]) % total;
        ulong acc = 0;
        int p = 0;
        while (acc + csum[p] <= u)
            acc += csum[p++];
        int i = p * chunk;
        while (acc + mind[i] <= u)
            acc += mind[i++];
        pick = (uint)i;
    }
    centers[h * c + j] = pick;
}

/* ------------------------------------------------------------------- Lloyd */

/* assign = -1 (everything "changed" in the first step), flags cleared.
 * Global (n, H). */
__kernel void km_reset(__global int *restrict assign, __global int *restrict changed,
                       __global int *restrict done, const int n)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= n)
        return;
    assign[h * n + i] = -1;
    if (i == 0) {
        changed[h] = 0;
        done[h] = 0;
    }
}

/* Centroid j = key centers[j]. Global (c, H). */
__kernel void km_gather(__global const void *restrict k, const ps_view kv,
                        __global const uint *restrict centers, __global float *restrict cent,
                        const int n, const int d, const int c)
{
    const int j = get_global_id(0);
    const size_t h = get_global_id(1);
    if (j >= c)
        return;
    const size_t row = ps_row(kv, h, centers[h * c + j]);
    for (int t = 0; t < d; t++)
        cent[(h * c + j) * d + t] = ps_ld(k, kv, row + t);
}

/* Centroids transposed to [H][d][c_pad] with squared norms; padding columns
 * are zero with norm PS_BIG so that no key picks them. Global (c_pad, H). */
__kernel void km_prep(__global const float *restrict cent, __global float *restrict ct,
                      __global float *restrict cn, __global const int *restrict done,
                      const int d, const int c, const int c_pad)
{
    const int j = get_global_id(0);
    const size_t h = get_global_id(1);
    if (j >= c_pad || done[h])
        return;
    float norm = PS_BIG;
    if (j < c) {
        norm = 0.0f;
        for (int t = 0; t < d; t++) {
            const float v = cent[(h * c + j) * d + t];
            ct[(h * d + t) * c_pad + j] = v;
            norm = fma(v, v, norm);
        }
    } else {
        for (int t = 0; t < d; t++)
            ct[(h * d + t) * c_pad + j] = 0.0f;
    }
    cn[h * c_pad + j] = norm;
}

#if !PS_GPU_SHAPE /* CPU shape */
/* CPU shape. Nearest centroid (lowest index on ties) of PS_CPU_QB keys per
 * work-item, as a GEMM-shaped product: ||c||^2 - 2 k.c over 16 centroids at
 * a time in float16 registers (ps_cpu_tile_scores of cl/common.cl, the
 * product of the flash kernels' CPU shape). kdist gets the squared distance
 * ||k||^2 + ||c||^2 - 2 k.c, clamped at 0. Global (ceil(n / PS_CPU_QB), H),
 * local (1, 1). */
__kernel void km_assign_cpu(__global const void *restrict k, const ps_view kv,
                            __global const float *restrict ct,
                            __global const float *restrict cn, __global int *restrict assign,
                            __global float *restrict kdist, __global int *restrict changed,
                            __global const int *restrict done, const int n, const int d,
                            const int c, const int c_pad)
{
    const int r0 = get_global_id(0) * PS_CPU_QB;
    const size_t h = get_global_id(1);
    if (r0 >= n || done[h])
        return;
    const ps_view f32 = ps_view_flat(0u); /* ct: flat fp32 */
    const size_t ct0 = h * d * c_pad;
    cn += h * c_pad;
    const int rows = min(PS_CPU_QB, n - r0);
    float kp[PS_CPU_QB * PS_DMAX];
    size_t krow[PS_CPU_QB];
    float best[PS_CPU_QB], knorm[PS_CPU_QB];
    int besti[PS_CPU_QB];
    #pragma unroll
    for (int i = 0; i < PS_CPU_QB; i++)
        krow[i] = ps_row(kv, h, r0 + min(i, rows - 1));
    ps_cpu_load_rows(kp, k, kv, krow, d);
    #pragma unroll
    for (int i = 0; i < PS_CPU_QB; i++) {
        best[i] = PS_BIG;
        besti[i] = 0;
        float16 acc = (float16)(0.0f);
        for (int t = 0; t < d; t += 16) {
            const float16 v = vload16(0, kp + i * PS_DMAX + t);
            acc = fma(v, v, acc);
        }
        knorm[i] = ps_hsum16(acc);
    }
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int j0 = 0; j0 < c_pad; j0 += 16) {
        float16 s[PS_CPU_QB];
        ps_cpu_tile_scores(s, kp, ct, f32, ct0 + j0, (size_t)c_pad, d); /* cl/common.cl */
        const float16 norms = vload16(0, cn + j0);
        #pragma unroll
        for (int i = 0; i < PS_CPU_QB; i++) {
            const float16 dist = fma((float16)(-2.0f), s[i], norms);
            const float m = ps_score_hmin16(dist);
            if (m < best[i]) {
                best[i] = m;
                const int16 at = select((int16)(16), lane, dist == (float16)(m));
                besti[i] = j0 + ps_score_hmin16i(at); /* first lane at the minimum */
            }
        }
    }
    int any = 0;
    for (int i = 0; i < rows; i++) {
        const size_t r = h * n + r0 + i;
        /* A key whose distances are not finite (Inf or NaN input, or
         * overflow) matches no lane: it still gets a real cluster, since
         * the accumulation and the scores index by it. */
        const int a = min(besti[i], c - 1);
        any |= assign[r] != a;
        assign[r] = a;
        kdist[r] = fmax(0.0f, knorm[i] + best[i]);
    }
    if (any)
        atomic_or(changed + h, 1);
}

#else /* GPU shape */
/* GPU shape of km_assign: one key per work-item (kept in private memory),
 * tiles of PS_SCORE_CTILE centroids shared through __local (8 KiB at
 * d = 128). Same distances, same lowest-index tie rule. Global
 * (round_up(n, L), H), local (L, 1). */
#define PS_SCORE_CTILE 16
__kernel void km_assign_gpu(__global const void *restrict k, const ps_view kv,
                            __global const float *restrict cent,
                            __global const float *restrict cn, __global int *restrict assign,
                            __global float *restrict kdist, __global int *restrict changed,
                            __global const int *restrict done, const int n, const int d,
                            const int c, const int c_pad)
{
    __local float tile[PS_SCORE_CTILE * PS_DMAX];
    __local float tnorm[PS_SCORE_CTILE];
    const int l = get_local_id(0);
    const int size = get_local_size(0);
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (done[h]) /* uniform in the group */
        return;
    const int valid = i < n;
    const size_t row = ps_row(kv, h, valid ? i : n - 1);
    float kr[PS_DMAX];
    float knorm = 0.0f;
    for (int t = 0; t < d; t++) {
        kr[t] = ps_ld(k, kv, row + t);
        knorm = fma(kr[t], kr[t], knorm);
    }
    float best = PS_BIG;
    int besti = 0;
    for (int j0 = 0; j0 < c; j0 += PS_SCORE_CTILE) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = l; e < PS_SCORE_CTILE * d; e += size) {
            const int jj = j0 + e / d;
            tile[e] = jj < c ? cent[(h * c + jj) * d + e % d] : 0.0f;
        }
        for (int e = l; e < PS_SCORE_CTILE; e += size)
            tnorm[e] = j0 + e < c ? cn[h * c_pad + j0 + e] : PS_BIG;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int jj = 0; jj < PS_SCORE_CTILE; jj++) {
            float dot = 0.0f;
            for (int t = 0; t < d; t++)
                dot = fma(kr[t], tile[jj * d + t], dot);
            const float dist = fma(-2.0f, dot, tnorm[jj]);
            if (dist < best) {
                best = dist;
                besti = j0 + jj;
            }
        }
    }
    if (!valid)
        return;
    besti = min(besti, c - 1); /* a real cluster whatever the distances (CPU shape) */
    const size_t r = h * n + i;
    const int was = assign[r];
    assign[r] = besti;
    kdist[r] = fmax(0.0f, knorm + best);
    if (was != besti)
        atomic_or(changed + h, 1);
}
#endif /* PS_GPU_SHAPE */

/* Per-chunk sums of (k_i - c_old[a_i]) and member counts, one 16-dim slice
 * per work-item. Summing offsets from the old centroid keeps the sums small
 * and makes a cluster of identical keys keep its centroid exactly.
 * part [H][nchunk][c][d], pcount [H][nchunk][c]. Global (nchunk * d/16, H). */
__kernel void km_accumulate(__global const void *restrict k, const ps_view kv,
                            __global const int *restrict assign,
                            __global const float *restrict cent, __global float *restrict part,
                            __global int *restrict pcount, __global const int *restrict done,
                            const int n, const int d, const int c, const int nchunk,
                            const int chunk)
{
    const int dg = d / 16;
    const int p = get_global_id(0) / dg;
    const int g = get_global_id(0) % dg;
    const size_t h = get_global_id(1);
    if (p >= nchunk || done[h])
        return;
    __global float *pp = part + ((h * nchunk + p) * c) * d + g * 16;
    __global int *pc = pcount + (h * nchunk + p) * c;
    for (int j = 0; j < c; j++)
        vstore16((float16)(0.0f), 0, pp + (size_t)j * d);
    if (g == 0)
        for (int j = 0; j < c; j++)
            pc[j] = 0;
    cent += h * c * d + g * 16;
    assign += h * n;
    const int i1 = min(n, (p + 1) * chunk);
    for (int i = p * chunk; i < i1; i++) {
        const int a = assign[i];
        const float16 v =
            ps_ld16(k, kv, ps_row(kv, h, i) + g * 16) - vload16(0, cent + (size_t)a * d);
        vstore16(vload16(0, pp + (size_t)a * d) + v, 0, pp + (size_t)a * d);
        if (g == 0)
            pc[a]++;
    }
}

/* New centroids: old + (sum over chunks, in chunk order) / count; counts per
 * cluster to `count`. Empty clusters keep their centroid until km_reseed.
 * Global (c * d/16, H). */
__kernel void km_finalize(__global float *restrict cent, __global const float *restrict part,
                          __global const int *restrict pcount, __global int *restrict count,
                          __global const int *restrict done, const int d, const int c,
                          const int nchunk)
{
    const int dg = d / 16;
    const int j = get_global_id(0) / dg;
    const int g = get_global_id(0) % dg;
    const size_t h = get_global_id(1);
    if (j >= c || done[h])
        return;
    int cnt = 0;
    float16 s = (float16)(0.0f);
    for (int p = 0; p < nchunk; p++) {
        const size_t base = (h * nchunk + p) * c + j;
        cnt += pcount[base];
        s += vload16(0, part + base * d + g * 16);
    }
    __global float *cr = cent + (h * c + j) * d + g * 16;
    if (cnt > 0)
        vstore16(vload16(0, cr) + s / (float16)((float)cnt), 0, cr);
    if (g == 0)
        count[h * c + j] = cnt;
}

/* Empty clusters, in increasing order, move onto the key farthest from its
 * centroid (lowest index on ties), each taking a different key. Rare, so one
 * work-item per head. Global (H). */
__kernel void km_reseed(__global const void *restrict k, const ps_view kv,
                        __global float *restrict cent, __global const int *restrict count,
                        __global float *restrict kdist, __global const int *restrict done,
                        const int n, const int d, const int c)
{
    const size_t h = get_global_id(0);
    if (done[h])
        return;
    kdist += h * n;
    for (int j = 0; j < c; j++) {
        if (count[h * c + j] != 0)
            continue;
        float best = -1.0f;
        int bi = 0;
        for (int i = 0; i < n; i++)
            if (kdist[i] > best) {
                best = kdist[i];
                bi = i;
            }
        kdist[bi] = -1.0f; /* taken */
        const size_t row = ps_row(kv, h, bi);
        for (int t = 0; t < d; t++)
            cent[(h * c + j) * d + t] = ps_ld(k, kv, row + t);
    }
}

/* After an assignment step: inertia (sum of kdist, fixed-order tree in one
 * work-group), the iteration count, and early stop when nothing changed.
 * Global (L, H), local (L, 1). */
__kernel void km_check(__global const float *restrict kdist, __global int *restrict changed,
                       __global int *restrict done, __global float *restrict inertia,
                       __global int *restrict iters_run, const int n, const int it,
                       const int iters1)
{
    __local float red[PS_SCORE_RED];
    const int l = get_local_id(0);
    const int size = get_local_size(0);
    const size_t h = get_group_id(1);
    if (done[h]) { /* uniform in the group: read before anyone writes it */
        if (l == 0)
            inertia[h * iters1 + it] = inertia[h * iters1 + it - 1];
        return;
    }
    float s = 0.0f;
    for (int i = l; i < n; i += size)
        s += kdist[h * n + i];
    red[l] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int w = size / 2; w > 0; w /= 2) {
        if (l < w)
            red[l] += red[l + w];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) {
        inertia[h * iters1 + it] = red[0];
        iters_run[h] = it;
        done[h] = changed[h] == 0;
        changed[h] = 0;
    }
}

/* Scores (docs/SCORING.md): score_i = ||c(i) - mu||^2 + ||k_i - c(i)||^2,
 * the cluster's squared distance from the keys' mean mu (count-weighted mean
 * of the final centroids) plus the key's own squared offset from its
 * centroid. A tight cluster of large keys scores high through its first
 * term; the old dist / cluster-sum score made such keys look unremarkable.
 *
 * Step 1: squared distance of each key to its centroid (direct form, so a
 * key equal to its centroid gets exactly 0) and per-chunk member counts.
 * Global (nchunk, H). */
__kernel void km_score_partial(__global const void *restrict k, const ps_view kv,
                               __global const float *restrict cent,
                               __global const int *restrict assign, __global float *restrict dist,
                               __global int *restrict pcount, const int n, const int d,
                               const int c, const int nchunk, const int chunk)
{
    const int p = get_global_id(0);
    const size_t h = get_global_id(1);
    if (p >= nchunk)
        return;
    __global int *pc = pcount + (h * nchunk + p) * c;
    for (int j = 0; j < c; j++)
        pc[j] = 0;
    const int i1 = min(n, (p + 1) * chunk);
    for (int i = p * chunk; i < i1; i++) {
        const int a = assign[h * n + i];
        const size_t row = ps_row(kv, h, i);
        __global const float *cr = cent + (h * c + a) * d;
        float16 acc = (float16)(0.0f);
        for (int t = 0; t < d; t += 16) {
            const float16 v = ps_ld16(k, kv, row + t) - vload16(0, cr + t);
            acc = fma(v, v, acc);
        }
        dist[h * n + i] = ps_hsum16(acc);
        pc[a]++;
    }
}

/* Step 2: cluster sizes, chunks in order. Global (c, H). */
__kernel void km_score_cluster(__global const int *restrict pcount, __global int *restrict count,
                               const int c, const int nchunk)
{
    const int j = get_global_id(0);
    const size_t h = get_global_id(1);
    if (j >= c)
        return;
    int cnt = 0;
    for (int p = 0; p < nchunk; p++)
        cnt += pcount[(h * nchunk + p) * c + j];
    count[h * c + j] = cnt;
}

/* Step 3: mu[t] = sum_j count_j c_j[t] / n, clusters in order (empty ones
 * weigh 0). Global (d, H). */
__kernel void km_score_mean(__global const float *restrict cent,
                            __global const int *restrict count, __global float *restrict mu,
                            const int n, const int d, const int c)
{
    const int t = get_global_id(0);
    const size_t h = get_global_id(1);
    if (t >= d)
        return;
    float s = 0.0f;
    for (int j = 0; j < c; j++)
        s = fma((float)count[h * c + j], cent[(h * c + j) * d + t], s);
    mu[h * d + t] = s / (float)n;
}

/* Step 4: cterm[j] = ||c_j - mu||^2. Global (c, H). */
__kernel void km_score_cterm(__global const float *restrict cent, __global const float *restrict mu,
                             __global float *restrict cterm, const int d, const int c)
{
    const int j = get_global_id(0);
    const size_t h = get_global_id(1);
    if (j >= c)
        return;
    __global const float *cr = cent + (h * c + j) * d;
    __global const float *m = mu + h * d;
    float16 acc = (float16)(0.0f);
    for (int t = 0; t < d; t += 16) {
        const float16 v = vload16(0, cr + t) - vload16(0, m + t);
        acc = fma(v, v, acc);
    }
    cterm[h * c + j] = ps_hsum16(acc);
}

/* Step 5: score = cterm[cluster] + squared offset, rounded. Global (n, H). */
__kernel void km_score_write(__global const float *restrict dist,
                             __global const int *restrict assign,
                             __global const float *restrict cterm, __global float *restrict scores,
                             const int n, const int c)
{
    const int i = get_global_id(0);
    const size_t h = get_global_id(1);
    if (i >= n)
        return;
    const float v = cterm[h * c + assign[h * n + i]] + dist[h * n + i];
    scores[h * n + i] = ps_score_round(v, PS_KMEANS_SCORE_BITS);
}

/* ---------------------------------------------------------------- leverage */

/* Per-chunk Gram partials: gpart[h][p][a][b] = sum_{i in chunk p} k_ia k_ib,
 * one (row a, 16-column slice) per work-item. Global (nchunk * d/16, d, H). */
__kernel void lev_gram_partial(__global const void *restrict k, const ps_view kv,
                               __global float *restrict gpart, const int n, const int d,
                               const int nchunk, const int chunk)
{
    const int dg = d / 16;
    const int p = get_global_id(0) / dg;
    const int g = get_global_id(0) % dg;
    const int a = get_global_id(1);
    const size_t h = get_global_id(2);
    if (p >= nchunk || a >= d)
        return;
    float16 acc = (float16)(0.0f);
    const int i1 = min(n, (p + 1) * chunk);
    for (int i = p * chunk; i < i1; i++) {
        const size_t row = ps_row(kv, h, i);
        acc = fma((float16)(ps_ld(k, kv, row + a)), ps_ld16(k, kv, row + g * 16), acc);
    }
    vstore16(acc, 0, gpart + (((h * nchunk + p) * d + a) * d) + g * 16);
}

/* Gram = sum of the partials in chunk order. Global (d/16, d, H). */
__kernel void lev_gram_reduce(__global const float *restrict gpart, __global float *restrict gram,
                              const int d, const int nchunk)
{
    const int g = get_global_id(0);
    const int a = get_global_id(1);
    const size_t h = get_global_id(2);
    if (g >= d / 16 || a >= d)
        return;
    float16 s = (float16)(0.0f);
    for (int p = 0; p < nchunk; p++)
        s += vload16(0, gpart + (((h * nchunk + p) * d + a) * d) + g * 16);
    vstore16(s, 0, gram + (h * d + a) * d + g * 16);
}

/* In-place Cholesky of gram + lambda I, lambda = lambda_rel * trace / d (1
 * when the trace is 0), by one work-group per head: left-looking, column j
 * updated by the group in parallel, two barriers per column. The lower
 * triangle (with the diagonal) becomes L. A pivot is never taken below
 * lambda / 2 (exactly it is >= lambda; the clamp only guards rounding).
 * Global (L, H), local (L, 1). */
__kernel void lev_cholesky(__global float *restrict gram, const int d, const float lambda_rel)
{
    const int l = get_local_id(0);
    const int size = get_local_size(0);
    const size_t h = get_group_id(1);
    __global float *A = gram + h * d * d;
    float trace = 0.0f;
    for (int t = 0; t < d; t++)
        trace += A[t * d + t];
    float lambda = lambda_rel * trace / (float)d;
    if (!(lambda > 0.0f))
        lambda = 1.0f;
    for (int j = 0; j < d; j++) {
        for (int i = j + l; i < d; i += size) {
            float s = A[i * d + j] + (i == j ? lambda : 0.0f);
            for (int t = 0; t < j; t++)
                s = fma(-A[i * d + t], A[j * d + t], s);
            A[i * d + j] = s;
        }
        barrier(CLK_GLOBAL_MEM_FENCE);
        const float ljj = sqrt(fmax(A[j * d + j], 0.5f * lambda));
        for (int i = j + 1 + l; i < d; i += size)
            A[i * d + j] = A[i * d + j] / ljj;
        barrier(CLK_GLOBAL_MEM_FENCE);
        if (l == 0)
            A[j * d + j] = ljj;
        barrier(CLK_GLOBAL_MEM_FENCE);
    }
}

/* M = L^-1, stored transposed: mt[h][t][r] = M[r][t] (zero for r < t).
 * Column t of M solves L x = e_t by forward substitution; the group's
 * work-items take columns in turn. Global (L, H), local (L, 1). */
__kernel void lev_inverse(__global const float *restrict chol, __global float *restrict mt,
                          const int d)
{
    const int l = get_local_id(0);
    const int size = get_local_size(0);
    const size_t h = get_group_id(1);
    __global const float *L = chol + h * d * d;
    mt += h * d * d;
    for (int t = l; t < d; t += size) {
        __global float *x = mt + (size_t)t * d;
        for (int r = 0; r < t; r++)
            x[r] = 0.0f;
        x[t] = 1.0f / L[t * d + t];
        for (int r = t + 1; r < d; r++) {
            float v = 0.0f;
            for (int q = t; q < r; q++)
                v = fma(L[r * d + q], x[q], v);
            x[r] = -v / L[r * d + r];
        }
    }
}

/* scores[i] = ||L^-1 k_i||^2 = ||M k_i||^2 for PS_CPU_QB keys per work-item:
 * 16 rows of M k at a time in float16 registers (lower-triangular M: row
 * block r0 needs columns t < r0 + 16 only). A GEMM-shaped product instead of
 * a per-key substitution chain. Global (ceil(n / PS_CPU_QB), H). */
__kernel void lev_apply(__global const void *restrict k, const ps_view kv,
                        __global const float *restrict mt, __global float *restrict scores,
                        const int n, const int d)
{
    const int r0 = get_global_id(0) * PS_CPU_QB;
    const size_t h = get_global_id(1);
    if (r0 >= n)
        return;
    const ps_view f32 = ps_view_flat(0u); /* mt: flat fp32 */
    const size_t mt0 = h * d * d;
    const int rows = min(PS_CPU_QB, n - r0);
    float kp[PS_CPU_QB * PS_DMAX];
    size_t krow[PS_CPU_QB];
    float16 sq[PS_CPU_QB];
    #pragma unroll
    for (int i = 0; i < PS_CPU_QB; i++) {
        krow[i] = ps_row(kv, h, r0 + min(i, rows - 1));
        sq[i] = (float16)(0.0f);
    }
    ps_cpu_load_rows(kp, k, kv, krow, d);
    for (int b = 0; b < d; b += 16) {
        float16 y[PS_CPU_QB];
        ps_cpu_tile_scores(y, kp, mt, f32, mt0 + b, (size_t)d, b + 16); /* columns t < b + 16 */
        #pragma unroll
        for (int i = 0; i < PS_CPU_QB; i++)
            sq[i] = fma(y[i], y[i], sq[i]);
    }
    for (int i = 0; i < rows; i++)
        scores[h * n + r0 + i] = ps_score_round(ps_hsum16(sq[i]), PS_LEVERAGE_SCORE_BITS);
}
