/* Exact attention, flash-style (online softmax), in two shapes of one
 * algorithm; a program holds the one -DPS_GPU_SHAPE selects (lib/program.c,
 * docs/ARCHITECTURE.md):
 *
 *  flash_attention_cpu: a work-item owns PS_CPU_QB query rows and walks the
 *    keys in tiles of 16, scores as explicit float16 vectors against the
 *    tile-transposed keys (cl/util.cl transpose_keys), no __local and no barriers. The row loops are
 *    unrolled (#pragma unroll) so the accumulators stay in registers, and use
 *    fma(): PoCL lowers mad() to a multiply and an add.
 *  flash_attention_gpu: a work-item owns one query row, a work-group shares
 *    K/V tiles of PS_GPU_KTILE rows through __local memory.
 *
 * Scores live in the log2 domain (scale_log2 = scale * log2 e), so every
 * exponential is an exp2. Causal masking is bottom-right aligned: row r sees
 * key j iff j <= r + (n_k - n_q). A row that sees no key gets O = 0 and
 * LSE = -inf. Q [B][H][n_q][d], K [B][Hkv][n_k][d], V [B][Hkv][n_k][dv]
 * and O [B][H][n_q][dv] are views (cl/tensor_view.h: fp32 or fp16, any
 * strides); LSE is dense fp32 [B][H][n_q] (may be NULL). The scalar
 * arguments come as one ps_flash_params (attention_params.h). */

/* PS_CPU_QB, PS_GPU_KTILE, PS_KTILE_CPU and the per-tile online-softmax
 * update (ps_cpu_tile_*, ps_gpu_tile_*) live in cl/common.cl, shared with the
 * HyperAttention kernels. */

#ifndef PS_GPU_SHAPE
#error "PS_GPU_SHAPE undefined: program_shaped[] of lib/program.c must list this file"
#endif

/* Exclusive key limit of query row r. */
inline int ps_key_limit(int r, int n_q, int n_k, int causal)
{
    return causal ? min(n_k, r + (n_k - n_q) + 1) : n_k;
}

/* Row r's output (element o_row of o, view ov) and LSE from the accumulator. */
inline void ps_write_row(__global void *o, const ps_view ov, const size_t o_row,
                         __global float *lse, size_t lse_index, const float *acc, float m,
                         float l, int visible, int dv)
{
    const float inv = visible ? 1.0f / l : 0.0f;
    for (int c = 0; c < dv; c++)
        ps_st(o, ov, o_row + c, acc[c] * inv);
    if (lse)
        lse[lse_index] = visible ? (m + log2(l)) * M_LN2_F : -INFINITY;
}

#if !PS_GPU_SHAPE /* CPU shape */
__kernel void flash_attention_cpu(__global const void *restrict q, const ps_view qv,
                                  __global const void *restrict kt, const ps_view ktv,
                                  __global const void *restrict v, const ps_view vv,
                                  __global void *restrict o, const ps_view ov,
                                  __global float *restrict lse, const ps_flash_params params)
{
    const int n_q = params.n_q, n_k = params.n_k, n_k_pad = params.n_k_pad, d = params.d,
              dv = params.dv, heads = params.heads, group = params.group,
              causal = params.causal, key_begin = params.key_begin,
              key_stop = params.key_stop;
    const float scale_log2 = params.scale_log2;
    const int r0 = get_global_id(0) * PS_CPU_QB;
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    if (r0 >= n_q)
        return;
    const size_t bh = (size_t)b * heads + h;
    const size_t bhk = (size_t)b * (heads / group) + h / group;
    const size_t kt0 = bhk * d * n_k_pad;

    const int rows = min(PS_CPU_QB, n_q - r0);
    /* Keys [key_begin, key_stop) in this launch (a multiple of 16 apart);
     * key_begin > 0 resumes from the O and LSE the previous launch wrote. */
    const int key_end = min(key_stop, ps_key_limit(r0 + rows - 1, n_q, n_k, causal));
    /* Keys every row of the block sees: tiles below this need no mask. */
    const int key_all = ps_key_limit(r0, n_q, n_k, causal);

    float acc[PS_CPU_QB * PS_DMAX], qp[PS_CPU_QB * PS_DMAX];
    float m[PS_CPU_QB], l[PS_CPU_QB], alpha[PS_CPU_QB];
    float p[PS_CPU_QB * PS_KTILE_CPU];
    size_t qrow[PS_CPU_QB];
    #pragma unroll
    for (int i = 0; i < PS_CPU_QB; i++) {
        m[i] = PS_M_INIT;
        l[i] = 0.0f;
        qrow[i] = ps_row(qv, bh, r0 + min(i, rows - 1)); /* clamp: stay in bounds */
    }
    ps_cpu_load_rows(qp, q, qv, qrow, d);
    for (int i = 0; i < PS_CPU_QB * PS_DMAX; i++)
        acc[i] = 0.0f;
    if (key_begin > 0) {
        for (int i = 0; i < rows; i++) {
            const int r = r0 + i;
            if (ps_key_limit(r, n_q, n_k, causal) > 0) { /* saw key 0 before */
                m[i] = lse[bh * n_q + r] * M_LOG2E_F;
                l[i] = 1.0f;
                const size_t orow = ps_row(ov, bh, r);
                for (int c = 0; c < dv; c++)
                    acc[i * PS_DMAX + c] = ps_ld(o, ov, orow + c);
            }
        }
    }

    const size_t v0 = ps_row(vv, bhk, 0);
    const int16 lane = (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int j0 = key_begin; j0 < key_end; j0 += PS_KTILE_CPU) {
        float16 s[PS_CPU_QB];
        /* Tiled transposed keys: tile j0 / 16 is d rows of 16 keys. */
        ps_cpu_tile_scores(s, qp, kt, ktv, kt0 + (size_t)j0 * d, PS_KTILE_CPU, d);
        const int masked = j0 + PS_KTILE_CPU > key_all;
        #pragma unroll
        for (int i = 0; i < PS_CPU_QB; i++) {
            float16 si = s[i] * scale_log2;
            if (masked) {
                const int lim = ps_key_limit(r0 + i, n_q, n_k, causal);
                si = select(si, (float16)(PS_NEG_BIG), (lane + j0) >= lim);
            }
            alpha[i] = ps_cpu_tile_softmax(si, &m[i], &l[i], p + i * PS_KTILE_CPU);
        }
        ps_cpu_tile_accumulate(acc, alpha, p, v, vv, v0 + (size_t)j0 * vv.s_token, vv.s_token,
                               min(PS_KTILE_CPU, key_end - j0), dv);
    }

    for (int i = 0; i < rows; i++) {
        const int r = r0 + i;
        const int visible = ps_key_limit(r, n_q, n_k, causal) > 0;
        ps_write_row(o, ov, ps_row(ov, bh, r), lse, bh * n_q + r, acc + i * PS_DMAX, m[i],
                     l[i], visible, dv);
    }
}

#else /* GPU shape */
__kernel void flash_attention_gpu(__global const void *restrict q, const ps_view qv,
                                  __global const void *restrict k, const ps_view kv,
                                  __global const void *restrict v, const ps_view vv,
                                  __global void *restrict o, const ps_view ov,
                                  __global float *restrict lse, const ps_flash_params params)
{
    const int n_q = params.n_q, n_k = params.n_k, d = params.d, dv = params.dv,
              heads = params.heads, group = params.group, causal = params.causal,
              key_begin = params.key_begin, key_stop = params.key_stop;
    const float scale_log2 = params.scale_log2;
    __local float ks[PS_GPU_KTILE * PS_DMAX];
    __local float vs[PS_GPU_KTILE * PS_DMAX];
    const int group_size = get_local_size(0);
    const int r = get_global_id(0);
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    const size_t bh = (size_t)b * heads + h;
    const size_t bhk = (size_t)b * (heads / group) + h / group;
    const size_t k0 = ps_row(kv, bhk, 0), v0 = ps_row(vv, bhk, 0);

    const int rr = min(r, n_q - 1); /* rows past n_q help load tiles, write nothing */
    const int last_row = min((int)(get_group_id(0) + 1) * group_size, n_q) - 1;
    const int key_end = min(key_stop, ps_key_limit(last_row, n_q, n_k, causal)); /* uniform */
    const int my_lim = ps_key_limit(rr, n_q, n_k, causal);
    const int my_end = min(key_stop, my_lim);

    float qp[PS_DMAX], acc[PS_DMAX], sc[PS_GPU_KTILE];
    const size_t qrow = ps_row(qv, bh, rr), orow = ps_row(ov, bh, rr);
    for (int c = 0; c < d; c += 4)
        vstore4(ps_ld4(q, qv, qrow + c) * scale_log2, 0, qp + c);
    for (int c = 0; c < dv; c++)
        acc[c] = 0.0f;
    float m = PS_M_INIT, l = 0.0f;
    if (key_begin > 0 && my_lim > 0 && r < n_q) { /* resume from the previous launch */
        m = lse[bh * n_q + rr] * M_LOG2E_F;
        l = 1.0f;
        for (int c = 0; c < dv; c++)
            acc[c] = ps_ld(o, ov, orow + c);
    }

    for (int j0 = key_begin; j0 < key_end; j0 += PS_GPU_KTILE) {
        const int tile_keys = min(PS_GPU_KTILE, key_end - j0);
        ps_gpu_tile_load(ks, vs, k, kv, k0 + (size_t)j0 * kv.s_token, v, vv,
                         v0 + (size_t)j0 * vv.s_token, tile_keys, d, dv);
        ps_gpu_tile_update(qp, ks, vs, clamp(my_end - j0, 0, tile_keys), d, dv, 0, NULL, 0,
                           NULL, &m, &l, acc, sc);
    }
    if (r < n_q)
        ps_write_row(o, ov, orow, lse, bh * n_q + r, acc, m, l, my_lim > 0, dv);
}
#endif /* PS_GPU_SHAPE */
