/* HyperAttention's non-causal core (pipeline steps 5-7, docs/ARCHITECTURE.md; the
 * definitions are in docs/HYPER.md), given the LSH sort permutations:
 *
 *  hyper_gather_keys     K and V rows of each KV head in sorted order, K
 *                        transposed for the CPU shape ([d][n_k_pad]) and
 *                        row-major for the GPU shape ([n_k_pad][d]), and
 *                        the keys' log2-domain weights in that order.
 *  hyper_gather_samples  the s residual samples of each query head (Philox,
 *                        sorted key positions), the key block and the
 *                        log2-domain weight of each.
 *  hyper_gather_dropped  instead of those, for a PRESCORE key set of one
 *                        block: draws of the keys the selection dropped.
 *  hyper_blocks_*        exact attention of each sorted query block with its
 *                        diagonal key block: O_blk, LSE_blk in sorted order.
 *  hyper_residual_*      attention over the samples, masking those inside the
 *                        row's own block, weighted by n_k / s; merged with
 *                        the block part in log-sum-exp space and written to
 *                        the row's original position (the unsort).
 *
 * A program holds the *_cpu or the *_gpu kernels, as -DPS_GPU_SHAPE says
 * (lib/program.c). The per-tile online-softmax update is the flash kernel's
 * (cl/common.cl).
 * Scores are in the log2 domain (scale_log2 = scale * log2 e); the LSE that
 * leaves a kernel is a natural log. A part with no unmasked key has l = 0 and
 * enters the merge with LSE = PS_NEG_BIG (finite: -cl-fast-relaxed-math).
 * Layouts: Q [B][H][n_q][d], K [B][Hkv][n_k][d], V [B][Hkv][n_k][dv] and
 * O [B][H][n_q][dv] are views (cl/tensor_view.h); the sorted and sampled
 * copies of K and V keep their storage type (params.keys_f16, values_f16);
 * perm_q [B*H][n_q], perm_k [B*Hkv][n_k] (uint: original row at sorted
 * position p), LSE [B][H][n_q] (fp32, may be NULL).
 * A weighted key set (params.key_bias) has a log-weight per key, bias
 * [B*Hkv][n_k] (natural log, key row order): key j's score gains bias[j],
 * in the block part, in the residual and so in the LSE (docs/HYPER.md). The
 * gathers copy it, in the log2 domain, beside the sorted and sampled keys;
 * without one they write zeros and the kernels add those.
 * Permutations are trusted to be permutations (a repeated entry leaves a row
 * unwritten); entries out of range are clamped so no access leaves a buffer.
 * The scalar arguments come as one ps_hyper_params (attention_params.h). */

#ifndef PS_GPU_SHAPE
#error "PS_GPU_SHAPE undefined: program_shaped[] of lib/program.c must list this file"
#endif

/* Residual sample j of query head bh: a sorted key position in [0, n_k)
 * (philox.h; the reference calls the same function). */
static inline uint ps_hyper_sample(ulong seed, uint bh, uint j, uint n_k)
{
    return ps_philox_uniform_at(seed, PS_RNG_STAGE_RESIDUAL, bh, j, n_k);
}

/* Writes a block row (element o_row of oblk, in O's storage type:
 * params.blocks_f16): O = acc / l, LSE = ln(sum) (the block is never empty). */
static inline void ps_hyper_write_block(__global void *oblk, const ps_view ov,
                                        const size_t o_row, __global float *lse,
                                        const size_t lse_index, const float *acc,
                                        const float m, const float l, const int dv)
{
    const float inv = 1.0f / l;
    for (int c = 0; c < dv; c += 4)
        ps_st4(oblk, ov, o_row + c, vload4(0, acc + c) * inv);
    lse[lse_index] = (m + log2(l)) * M_LN2_F;
}

/* Merges the residual part (acc, m, l; l = 0: nothing unmasked) into the
 * block part (element o1 of oblk, lse1) in log-sum-exp space and writes the
 * result row (element o_row of o, view ov). */
static inline void ps_hyper_merge_write(__global const void *oblk, const ps_view bv,
                                        const size_t o1, const float lse1,
                                        const float *acc, const float m, const float l,
                                        const float log_weight, __global void *o,
                                        const ps_view ov, const size_t o_row,
                                        __global float *lse, const size_t lse_index,
                                        const int dv)
{
    const int any = l > 0.0f;
    const float lse2 = any ? (m + log2(l)) * M_LN2_F + log_weight : PS_NEG_BIG;
    const float top = fmax(lse1, lse2);
    const float w1 = exp(lse1 - top), w2 = exp(lse2 - top);
    const float wsum = w1 + w2;
    const float c1 = w1 / wsum, c2 = any ? w2 / (wsum * l) : 0.0f;
    for (int c = 0; c < dv; c += 4)
        ps_st4(o, ov, o_row + c,
               c1 * ps_ld4(oblk, bv, o1 + c) + c2 * vload4(0, acc + c));
    if (lse)
        lse[lse_index] = top + log(wsum);
}

/* Global (n_k_pad / 16, B*Hkv): a work-item gathers 16 consecutive sorted
 * positions, so the CPU shape's transposed K is written as 16-element
 * vectors (scattered scalar stores at a stride of n_k_pad were the slow
 * part). The copies keep K's and V's storage type. Positions p >= n_k of
 * the workspace are zero. */
__kernel void hyper_gather_keys(__global const void *restrict k, const ps_view kv,
                                __global const void *restrict v, const ps_view vv,
                                __global const float *restrict bias,
                                __global const uint *restrict perm_k,
                                __global void *restrict kg, __global void *restrict vg,
                                __global float *restrict kb, const ps_hyper_params params)
{
    const int n_k = params.n_k, n_k_pad = params.n_k_pad, d = params.d, dv = params.dv,
              transpose = params.transpose;
    const int p0 = get_global_id(0) * 16;
    const size_t bhk = get_global_id(1);
    if (p0 >= n_k_pad)
        return;
    const ps_view kgv = ps_view_flat(kv.f16), vgv = ps_view_flat(vv.f16);
    const size_t kg0 = bhk * n_k_pad * d, vg0 = bhk * n_k_pad * dv;
    size_t kr[16];
    for (int t = 0; t < 16; t++) {
        const int p = p0 + t;
        const size_t row = min(perm_k[bhk * n_k + min(p, n_k - 1)], (uint)n_k - 1u);
        kr[t] = ps_row(kv, bhk, row);
        float w = p < n_k && params.key_bias ? bias[bhk * n_k + row] : 0.0f;
        if (params.dropped) /* mixed with the draws' estimate (core/dropped_params.h) */
            w = log1p(params.keep_mix * expm1(w));
        kb[bhk * n_k_pad + p] = w * M_LOG2E_F;
        const size_t vr = ps_row(vv, bhk, row);
        for (int c = 0; c < dv; c += 4)
            ps_st4(vg, vgv, vg0 + (size_t)p * dv + c,
                   p < n_k ? ps_ld4(v, vv, vr + c) : (float4)(0.0f));
        if (!transpose)
            for (int c = 0; c < d; c += 4)
                ps_st4(kg, kgv, kg0 + (size_t)p * d + c,
                       p < n_k ? ps_ld4(k, kv, kr[t] + c) : (float4)(0.0f));
    }
    if (transpose) {
        const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const int16 valid = (lane + p0) < n_k;
        for (int c = 0; c < d; c++) {
            float16 col;
            col.s0 = ps_ld(k, kv, kr[0] + c);
            col.s1 = ps_ld(k, kv, kr[1] + c);
            col.s2 = ps_ld(k, kv, kr[2] + c);
            col.s3 = ps_ld(k, kv, kr[3] + c);
            col.s4 = ps_ld(k, kv, kr[4] + c);
            col.s5 = ps_ld(k, kv, kr[5] + c);
            col.s6 = ps_ld(k, kv, kr[6] + c);
            col.s7 = ps_ld(k, kv, kr[7] + c);
            col.s8 = ps_ld(k, kv, kr[8] + c);
            col.s9 = ps_ld(k, kv, kr[9] + c);
            col.sa = ps_ld(k, kv, kr[10] + c);
            col.sb = ps_ld(k, kv, kr[11] + c);
            col.sc = ps_ld(k, kv, kr[12] + c);
            col.sd = ps_ld(k, kv, kr[13] + c);
            col.se = ps_ld(k, kv, kr[14] + c);
            col.sf = ps_ld(k, kv, kr[15] + c);
            ps_st16(kg, kgv, kg0 + (size_t)c * n_k_pad + p0,
                    select((float16)(0.0f), col, valid));
        }
    }
}

/* The KV head of flat query head bh (GQA: `group` query heads per KV head). */
static inline size_t ps_hyper_kv_head(const int bh, const ps_hyper_params params)
{
    const int heads = params.heads, group = params.group;
    return (size_t)(bh / heads) * (heads / group) + (bh % heads) / group;
}

/* Stores sample j of query head bh: K row kr and V row vr of views kv and
 * vv (zeros unless `in`), in the sample buffers' layout (K transposed for
 * the CPU shape), in K's and V's storage types. */
static inline void ps_hyper_store_sample(__global const void *restrict k, const ps_view kv,
                                         __global const void *restrict v, const ps_view vv,
                                         const size_t kr, const size_t vr, const int in,
                                         __global void *restrict sk, __global void *restrict sv,
                                         const int bh, const int j, const ps_hyper_params params)
{
    const int d = params.d, dv = params.dv, s_pad = params.s_pad;
    const ps_view skv = ps_view_flat(kv.f16), svv = ps_view_flat(vv.f16);
    const size_t sk0 = (size_t)bh * s_pad * d, sv0 = (size_t)bh * s_pad * dv;
    for (int c = 0; c < d; c++)
        ps_st(sk, skv,
              sk0 + (params.transpose ? (size_t)c * s_pad + j : (size_t)j * d + c),
              in ? ps_ld(k, kv, kr + c) : 0.0f);
    for (int c = 0; c < dv; c += 4)
        ps_st4(sv, svv, sv0 + (size_t)j * dv + c, in ? ps_ld4(v, vv, vr + c) : (float4)(0.0f));
}

/* Global (s_pad, B*H). Samples are per query head: stream batch_head = bh.
 * sblk[j] = key block of sample j (-1 in the padding, which is masked). The
 * copies keep K's and V's storage type. */
__kernel void hyper_gather_samples(__global const void *restrict k, const ps_view kv,
                                   __global const void *restrict v, const ps_view vv,
                                   __global const float *restrict bias,
                                   __global const uint *restrict perm_k,
                                   __global void *restrict sk, __global void *restrict sv,
                                   __global int *restrict sblk, __global float *restrict sb,
                                   const ps_hyper_params params)
{
    const int n_k = params.n_k, s = params.s, s_pad = params.s_pad, block = params.block;
    const ulong seed = ((ulong)params.seed_hi << 32) | params.seed_lo;
    const int j = get_global_id(0);
    const int bh = get_global_id(1);
    if (j >= s_pad)
        return;
    const size_t bhk = ps_hyper_kv_head(bh, params);
    const int in = j < s;
    uint pos = 0u;
    size_t kr = 0, vr = 0;
    float weight = 0.0f;
    if (in) {
        pos = ps_hyper_sample(seed, (uint)bh, (uint)j, (uint)n_k);
        const size_t row = min(perm_k[bhk * n_k + pos], (uint)n_k - 1u);
        kr = ps_row(kv, bhk, row);
        vr = ps_row(vv, bhk, row);
        if (params.key_bias)
            weight = bias[bhk * n_k + row] * M_LOG2E_F;
    }
    sb[(size_t)bh * s_pad + j] = weight;
    ps_hyper_store_sample(k, kv, v, vv, kr, vr, in, sk, sv, bh, j, params);
    sblk[(size_t)bh * s_pad + j] = in ? (int)(pos / (uint)block) : -1;
}

/* Dropped-key residual (docs/HYPER.md), global (s_pad, B*H): the kept set
 * is one block, so every query row lies in block 0. Sample j < draws of
 * query head bh is the dropped key ps_dropped_rank of the caller's K and V
 * (all n_all rows per KV head; `kept` [B*Hkv][n_kept], the selection's
 * ascending rows), block 1 (never masked), bias 0: every draw weighs the
 * same, params.log_weight at the merge (set by the query half, so the
 * diagnostic switch applies to prepared keys too). The samples past
 * `draws` get block 0 (masked everywhere). */
__kernel void hyper_gather_dropped(__global const void *restrict k, const ps_view kv,
                                   __global const void *restrict v, const ps_view vv,
                                   __global const uint *restrict kept,
                                   __global void *restrict sk, __global void *restrict sv,
                                   __global int *restrict sblk, __global float *restrict sb,
                                   const ps_hyper_params params, const uint n_all,
                                   const uint n_kept, const uint n_dropped, const uint draws)
{
    const int s_pad = params.s_pad;
    const ulong seed = ((ulong)params.seed_hi << 32) | params.seed_lo;
    const int j = get_global_id(0);
    const int bh = get_global_id(1);
    if (j >= s_pad)
        return;
    const size_t bhk = ps_hyper_kv_head(bh, params);
    const int in = (uint)j < draws;
    size_t kr = 0, vr = 0;
    if (in) {
        const uint r = ps_dropped_rank(seed, (uint)bh, (uint)j, n_dropped, draws);
        const uint row = min(ps_dropped_row(kept + bhk * n_kept, n_kept, r), n_all - 1u);
        kr = ps_row(kv, bhk, row);
        vr = ps_row(vv, bhk, row);
    }
    sb[(size_t)bh * s_pad + j] = 0.0f;
    ps_hyper_store_sample(k, kv, v, vv, kr, vr, in, sk, sv, bh, j, params);
    sblk[(size_t)bh * s_pad + j] = in ? 1 : 0;
}

#if !PS_GPU_SHAPE /* CPU shape */
/* CPU shape. Global (n_blocks * tiles, H, B), tiles = ceil(qb / PS_CPU_QB)
 * for the longest query block qb: a work-item owns PS_CPU_QB sorted rows of
 * one query block (ps_hyper_query_block_start). */
__kernel void hyper_blocks_cpu(__global const void *restrict q, const ps_view qv,
                               __global const uint *restrict perm_q,
                               __global const void *restrict kt,
                               __global const void *restrict vg,
                               __global const float *restrict kb,
                               __global void *restrict oblk, __global float *restrict lseblk,
                               const ps_hyper_params params)
{
    const int n_q = params.n_q, n_k = params.n_k, n_k_pad = params.n_k_pad, d = params.d,
              dv = params.dv, heads = params.heads, group = params.group,
              block = params.block, tiles = params.tiles;
    const float scale_log2 = params.scale_log2;
    const int wi = get_global_id(0);
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    const int blk = wi / tiles;
    const int r0 = ps_hyper_query_block_start(blk, n_q, n_k, block) + (wi % tiles) * PS_CPU_QB;
    const int r_end = ps_hyper_query_block_start(blk + 1, n_q, n_k, block);
    if (r0 >= r_end)
        return;
    const size_t bh = (size_t)b * heads + h;
    const size_t bhk = (size_t)b * (heads / group) + h / group;
    const ps_view ktv = ps_view_flat(params.keys_f16), vgv = ps_view_flat(params.values_f16);
    perm_q += bh * n_q;
    const ps_view bv = ps_view_flat(params.blocks_f16);
    const size_t ob0 = bh * n_q * dv;
    const size_t kt0 = bhk * d * n_k_pad, v0 = bhk * n_k_pad * dv;
    kb += bhk * n_k_pad;

    const int rows = min(PS_CPU_QB, r_end - r0);
    const uint last = (uint)n_q - 1u; /* permutation entries are clamped: never out of bounds */
    const int key0 = blk * block, key_end = min(key0 + block, n_k);

    float acc[PS_CPU_QB * PS_DMAX];
    float m[PS_CPU_QB], l[PS_CPU_QB], alpha[PS_CPU_QB];
    float p[PS_CPU_QB * PS_KTILE_CPU];
    float qp[PS_CPU_QB * PS_DMAX];
    size_t qrow[PS_CPU_QB];
    #pragma unroll
    for (int i = 0; i < PS_CPU_QB; i++) {
        m[i] = PS_M_INIT;
        l[i] = 0.0f;
        qrow[i] = ps_row(qv, bh, min(perm_q[r0 + min(i, rows - 1)], last));
    }
    ps_cpu_load_rows(qp, q, qv, qrow, d);
    for (int i = 0; i < PS_CPU_QB * PS_DMAX; i++)
        acc[i] = 0.0f;

    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int j0 = key0; j0 < key_end; j0 += PS_KTILE_CPU) {
        float16 s[PS_CPU_QB];
        ps_cpu_tile_scores(s, qp, kt, ktv, kt0 + j0, (size_t)n_k_pad, d);
        const int masked = j0 + PS_KTILE_CPU > key_end;
        const float16 weight = vload16(0, kb + j0); /* inside n_k_pad: padded by 16 */
        #pragma unroll
        for (int i = 0; i < PS_CPU_QB; i++) {
            float16 si = mad(s[i], (float16)(scale_log2), weight);
            if (masked)
                si = select(si, (float16)(PS_NEG_BIG), (lane + j0) >= key_end);
            alpha[i] = ps_cpu_tile_softmax(si, &m[i], &l[i], p + i * PS_KTILE_CPU);
        }
        ps_cpu_tile_accumulate(acc, alpha, p, vg, vgv, v0 + (size_t)j0 * dv, dv,
                               min(PS_KTILE_CPU, key_end - j0), dv);
    }
    for (int i = 0; i < rows; i++)
        ps_hyper_write_block(oblk, bv, ob0 + (size_t)(r0 + i) * dv, lseblk, bh * n_q + r0 + i,
                             acc + i * PS_DMAX, m[i], l[i], dv);
}

/* CPU shape. Global (ceil(n_q / PS_CPU_QB), H, B): a work-item owns
 * PS_CPU_QB consecutive sorted rows (possibly of two query blocks). */
__kernel void hyper_residual_cpu(__global const void *restrict q, const ps_view qv,
                                 __global const uint *restrict perm_q,
                                 __global const void *restrict skt,
                                 __global const void *restrict sv,
                                 __global const int *restrict sblk,
                                 __global const float *restrict sb,
                                 __global const void *restrict oblk,
                                 __global const float *restrict lseblk,
                                 __global void *restrict o, const ps_view ov,
                                 __global float *restrict lse, const ps_hyper_params params)
{
    const int n_q = params.n_q, n_k = params.n_k, d = params.d, dv = params.dv,
              heads = params.heads, s = params.s, s_pad = params.s_pad, block = params.block;
    const float scale_log2 = params.scale_log2, log_weight = params.log_weight;
    const int r0 = get_global_id(0) * PS_CPU_QB;
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    if (r0 >= n_q)
        return;
    const size_t bh = (size_t)b * heads + h;
    const ps_view sktv = ps_view_flat(params.keys_f16), svv = ps_view_flat(params.values_f16);
    perm_q += bh * n_q;
    const ps_view bv = ps_view_flat(params.blocks_f16);
    const size_t ob0 = bh * n_q * dv;
    sblk += bh * s_pad;
    sb += bh * s_pad;
    const size_t skt0 = bh * d * s_pad, sv0 = bh * s_pad * dv;

    const int rows = min(PS_CPU_QB, n_q - r0);
    const uint last = (uint)n_q - 1u; /* permutation entries are clamped: never out of bounds */
    float acc[PS_CPU_QB * PS_DMAX];
    float m[PS_CPU_QB], l[PS_CPU_QB], alpha[PS_CPU_QB];
    float p[PS_CPU_QB * PS_KTILE_CPU];
    int row_blk[PS_CPU_QB];
    float qp[PS_CPU_QB * PS_DMAX];
    size_t qrow[PS_CPU_QB];
    #pragma unroll
    for (int i = 0; i < PS_CPU_QB; i++) {
        const int r = r0 + min(i, rows - 1);
        m[i] = PS_M_INIT;
        l[i] = 0.0f;
        row_blk[i] = ps_hyper_row_block(r, n_q, n_k, block);
        qrow[i] = ps_row(qv, bh, min(perm_q[r], last));
    }
    ps_cpu_load_rows(qp, q, qv, qrow, d);
    for (int i = 0; i < PS_CPU_QB * PS_DMAX; i++)
        acc[i] = 0.0f;

    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int j0 = 0; j0 < s; j0 += PS_KTILE_CPU) {
        float16 sc[PS_CPU_QB];
        ps_cpu_tile_scores(sc, qp, skt, sktv, skt0 + j0, (size_t)s_pad, d);
        const int16 kblk = vload16(0, sblk + j0);
        const float16 weight = vload16(0, sb + j0);
        const int16 outside = (lane + j0) >= s;
        #pragma unroll
        for (int i = 0; i < PS_CPU_QB; i++) {
            const float16 si = select(mad(sc[i], (float16)(scale_log2), weight),
                                      (float16)(PS_NEG_BIG),
                                      outside | (kblk == (int16)(row_blk[i])));
            alpha[i] = ps_cpu_tile_softmax(si, &m[i], &l[i], p + i * PS_KTILE_CPU);
        }
        ps_cpu_tile_accumulate(acc, alpha, p, sv, svv, sv0 + (size_t)j0 * dv, dv,
                               min(PS_KTILE_CPU, s - j0), dv);
    }
    for (int i = 0; i < rows; i++) {
        const int r = r0 + i;
        const size_t orig = min(perm_q[r], last);
        ps_hyper_merge_write(oblk, bv, ob0 + (size_t)r * dv, lseblk[bh * n_q + r],
                             acc + i * PS_DMAX, m[i], l[i], log_weight, o, ov, ps_row(ov, bh, orig), lse,
                             bh * n_q + orig, dv);
    }
}

#else /* GPU shape */
/* GPU shape. Global (n_blocks * chunks * local, H, B), chunks =
 * ceil(qb / local) for the longest query block qb: a work-group owns `local`
 * sorted rows of one query block and shares the block's key tiles through
 * __local memory. */
__kernel void hyper_blocks_gpu(__global const void *restrict q, const ps_view qv,
                               __global const uint *restrict perm_q,
                               __global const void *restrict kg,
                               __global const void *restrict vg,
                               __global const float *restrict kb,
                               __global void *restrict oblk, __global float *restrict lseblk,
                               const ps_hyper_params params)
{
    const int n_q = params.n_q, n_k = params.n_k, n_k_pad = params.n_k_pad, d = params.d,
              dv = params.dv, heads = params.heads, group = params.group,
              block = params.block, chunks = params.tiles;
    const float scale_log2 = params.scale_log2;
    __local float ks[PS_GPU_KTILE * PS_DMAX];
    __local float vs[PS_GPU_KTILE * PS_DMAX];
    const int group_size = get_local_size(0);
    const int gid = get_group_id(0);
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    const int blk = gid / chunks;
    const int first =
        ps_hyper_query_block_start(blk, n_q, n_k, block) + (gid % chunks) * group_size;
    const int r_end = ps_hyper_query_block_start(blk + 1, n_q, n_k, block);
    if (first >= r_end)
        return; /* uniform in the group: no barrier is skipped by part of it */
    const int r = first + (int)get_local_id(0);
    const int rr = min(r, r_end - 1);
    const size_t bh = (size_t)b * heads + h;
    const size_t bhk = (size_t)b * (heads / group) + h / group;
    perm_q += bh * n_q;
    const ps_view bv = ps_view_flat(params.blocks_f16);
    const size_t ob0 = bh * n_q * dv;
    const size_t kg0 = bhk * n_k_pad * d, vg0 = bhk * n_k_pad * dv;
    /* Rows of d (dv) elements: ps_gpu_tile_load steps by s_token. */
    const ps_view kgv = {0u, 0u, 0u, (uint)d, 1u, params.keys_f16},
                  vgv = {0u, 0u, 0u, (uint)dv, 1u, params.values_f16};

    float qp[PS_DMAX], acc[PS_DMAX], sc[PS_GPU_KTILE];
    const size_t qr = ps_row(qv, bh, min(perm_q[rr], (uint)n_q - 1u));
    for (int c = 0; c < d; c += 4)
        vstore4(ps_ld4(q, qv, qr + c) * scale_log2, 0, qp + c);
    for (int c = 0; c < dv; c++)
        acc[c] = 0.0f;
    float m = PS_M_INIT, l = 0.0f;
    const int key0 = blk * block, key_end = min(key0 + block, n_k);
    for (int j0 = key0; j0 < key_end; j0 += PS_GPU_KTILE) {
        const int tile_keys = min(PS_GPU_KTILE, key_end - j0);
        ps_gpu_tile_load(ks, vs, kg, kgv, kg0 + (size_t)j0 * d, vg, vgv, vg0 + (size_t)j0 * dv,
                         tile_keys, d, dv);
        ps_gpu_tile_update(qp, ks, vs, tile_keys, d, dv, 0, NULL, 0, kb + bhk * n_k_pad + j0,
                           &m, &l, acc, sc);
    }
    if (r < r_end)
        ps_hyper_write_block(oblk, bv, ob0 + (size_t)r * dv, lseblk, bh * n_q + r, acc, m, l,
                             dv);
}

/* GPU shape. Global (round_up(n_q, local), H, B): one sorted row per
 * work-item; the group shares tiles of samples through __local memory. */
__kernel void hyper_residual_gpu(__global const void *restrict q, const ps_view qv,
                                 __global const uint *restrict perm_q,
                                 __global const void *restrict sk,
                                 __global const void *restrict sv,
                                 __global const int *restrict sblk,
                                 __global const float *restrict sb,
                                 __global const void *restrict oblk,
                                 __global const float *restrict lseblk,
                                 __global void *restrict o, const ps_view ov,
                                 __global float *restrict lse, const ps_hyper_params params)
{
    const int n_q = params.n_q, n_k = params.n_k, d = params.d, dv = params.dv,
              heads = params.heads, s = params.s, s_pad = params.s_pad, block = params.block;
    const float scale_log2 = params.scale_log2, log_weight = params.log_weight;
    __local float ks[PS_GPU_KTILE * PS_DMAX];
    __local float vs[PS_GPU_KTILE * PS_DMAX];
    const int r = get_global_id(0);
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    const int rr = min(r, n_q - 1);
    const size_t bh = (size_t)b * heads + h;
    perm_q += bh * n_q;
    const ps_view bv = ps_view_flat(params.blocks_f16);
    const size_t ob0 = bh * n_q * dv;
    sblk += bh * s_pad;
    sb += bh * s_pad;
    const size_t sk0 = bh * s_pad * d, sv0 = bh * s_pad * dv;
    /* Rows of d (dv) elements: ps_gpu_tile_load steps by s_token. */
    const ps_view skv = {0u, 0u, 0u, (uint)d, 1u, params.keys_f16},
                  svv = {0u, 0u, 0u, (uint)dv, 1u, params.values_f16};

    float qp[PS_DMAX], acc[PS_DMAX], sc[PS_GPU_KTILE];
    const size_t orig = min(perm_q[rr], (uint)n_q - 1u);
    const size_t qr = ps_row(qv, bh, orig);
    for (int c = 0; c < d; c += 4)
        vstore4(ps_ld4(q, qv, qr + c) * scale_log2, 0, qp + c);
    for (int c = 0; c < dv; c++)
        acc[c] = 0.0f;
    float m = PS_M_INIT, l = 0.0f;
    const int row_blk = ps_hyper_row_block(rr, n_q, n_k, block);
    for (int j0 = 0; j0 < s; j0 += PS_GPU_KTILE) {
        const int tile_keys = min(PS_GPU_KTILE, s - j0);
        ps_gpu_tile_load(ks, vs, sk, skv, sk0 + (size_t)j0 * d, sv, svv, sv0 + (size_t)j0 * dv,
                         tile_keys, d, dv);
        /* Sample blocks and weights are read from global memory (a word
         * each per key, the same address in every work-item): __local holds
         * only K and V, so the tile sizing of lib/tuning.c is the whole
         * __local budget. */
        ps_gpu_tile_update(qp, ks, vs, tile_keys, d, dv, 1, sblk + j0, row_blk, sb + j0, &m,
                           &l, acc, sc);
    }
    if (r < n_q)
        ps_hyper_merge_write(oblk, bv, ob0 + (size_t)r * dv, lseblk[bh * n_q + r], acc, m, l,
                             log_weight, o, ov, ps_row(ov, bh, orig), lse, bh * n_q + orig,
                             dv);
}
#endif /* PS_GPU_SHAPE */
