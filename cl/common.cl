/* Shared prelude of every program (after philox.h): constants and helpers.
 * Built with -cl-fast-relaxed-math, which assumes finite math, so masks use a
 * large finite negative logit instead of -INFINITY. */

/* Masked logit (log2 domain). exp2(PS_NEG_BIG - m) is 0 for any real m. */
#define PS_NEG_BIG (-1.0e30f)

#ifndef PS_DMAX
#define PS_DMAX 128
#endif

/* Horizontal reductions of a float16. */
inline float ps_hmax16(float16 v)
{
    float8 a = fmax(v.lo, v.hi);
    float4 b = fmax(a.lo, a.hi);
    float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
}

inline float ps_hsum16(float16 v)
{
    float8 a = v.lo + v.hi;
    float4 b = a.lo + a.hi;
    float2 c = b.lo + b.hi;
    return c.x + c.y;
}

/* ------------------------------------------------------------------------
 * Flash tile code shared by exact attention (cl/exact.cl) and the
 * HyperAttention blocks and residual (cl/hyper.cl): one copy of the
 * online-softmax update in each kernel shape. Scores are in the log2 domain.
 * static inline: never leaves an undefined external symbol (see philox.h). */

#ifndef PS_CPU_QB
#define PS_CPU_QB 8
#endif
#ifndef PS_GPU_KTILE
#define PS_GPU_KTILE 32
#endif
/* PS_KTILE_CPU: tiles.h, in the program prelude. */

/* Start of a row's running maximum: above the mask value, so that a tile in
 * which all of a row's keys are masked adds exp2(PS_NEG_BIG - PS_M_INIT) = 0
 * to the row sum rather than exp2(0) = 1. A row that saw only masked keys
 * ends with l = 0 (the hyper residual relies on it). */
#define PS_M_INIT (0.5f * PS_NEG_BIG)

/* CPU shape: rows[i] (element indices into x, cl/tensor_view.h) copied to
 * row i of the private block xp (row stride PS_DMAX), widened to fp32. */
static inline void ps_cpu_load_rows(float *xp, __global const void *x, const ps_view xv,
                                    const size_t *rows, const int d)
{
    #pragma unroll
    for (int i = 0; i < PS_CPU_QB; i++)
        for (int c = 0; c < d; c += 16)
            vstore16(ps_ld16(x, xv, rows[i] + c), 0, xp + i * PS_DMAX + c);
}

/* CPU shape: raw dot products of the PS_CPU_QB private rows qp (row stride
 * PS_DMAX) with 16 consecutive keys of a transposed key array: column c of
 * the tile is 16 elements at kcol + c * stride of kt (view ktv). */
static inline void ps_cpu_tile_scores(float16 *s, const float *qp, __global const void *kt,
                                      const ps_view ktv, const size_t kcol,
                                      const size_t stride, const int d)
{
    #pragma unroll
    for (int i = 0; i < PS_CPU_QB; i++)
        s[i] = (float16)(0.0f);
    for (int c = 0; c < d; c++) {
        const float16 kv = ps_ld16(kt, ktv, kcol + (size_t)c * stride);
        #pragma unroll
        for (int i = 0; i < PS_CPU_QB; i++)
            s[i] = fma((float16)(qp[i * PS_DMAX + c]), kv, s[i]);
    }
}

/* PS_GPU_SHAPE (lib/program.c) is 1 or 0 in the programs that hold a variant
 * of some kernel per shape and undefined in the others; helpers of one shape
 * are compiled only into that shape's programs. ps_cpu_tile_scores above is
 * also lev_apply's product in both shapes. */
#if defined(PS_GPU_SHAPE) && !PS_GPU_SHAPE

/* CPU shape: online-softmax update of one row by a tile of scaled, masked
 * scores; stores the tile's weights in p[0..15], returns the factor that
 * rescales the row's accumulator. */
static inline float ps_cpu_tile_softmax(const float16 si, float *m, float *l, float *p)
{
    const float m_new = fmax(*m, ps_hmax16(si));
    const float16 pi = exp2(si - m_new);
    const float alpha = exp2(*m - m_new);
    *l = *l * alpha + ps_hsum16(pi);
    *m = m_new;
    vstore16(pi, 0, p);
    return alpha;
}

/* CPU shape: acc[i] = alpha[i] acc[i] + sum_t p[i][t] v[t] for PS_CPU_QB rows
 * (row stride PS_DMAX in acc, PS_KTILE_CPU in p) over tile_keys rows of v
 * (view vv) from element v0 on, one row every `step` elements. */
static inline void ps_cpu_tile_accumulate(float *acc, const float *alpha, const float *p,
                                          __global const void *v, const ps_view vv,
                                          const size_t v0, const size_t step,
                                          const int tile_keys, const int dv)
{
    for (int c = 0; c < dv; c += 16) {
        float16 a[PS_CPU_QB];
        #pragma unroll
        for (int i = 0; i < PS_CPU_QB; i++)
            a[i] = vload16(0, acc + i * PS_DMAX + c) * alpha[i];
        for (int t = 0; t < tile_keys; t++) {
            const float16 vt = ps_ld16(v, vv, v0 + (size_t)t * step + c);
            #pragma unroll
            for (int i = 0; i < PS_CPU_QB; i++)
                a[i] = fma((float16)(p[i * PS_KTILE_CPU + t]), vt, a[i]);
        }
        #pragma unroll
        for (int i = 0; i < PS_CPU_QB; i++)
            vstore16(a[i], 0, acc + i * PS_DMAX + c);
    }
}

#endif /* CPU shape */

#if defined(PS_GPU_SHAPE) && PS_GPU_SHAPE

/* GPU shape: the work-group copies tile_keys consecutive rows of K and V
 * (views kv, vv; the first at elements k0, v0) into __local memory, widened
 * to fp32, four elements per step (barriers before and after: the previous
 * tile is consumed). */
static inline void ps_gpu_tile_load(__local float *ks, __local float *vs,
                                    __global const void *k, const ps_view kv, const size_t k0,
                                    __global const void *v, const ps_view vv, const size_t v0,
                                    const int tile_keys, const int d, const int dv)
{
    const int lid = get_local_id(0);
    const int group_size = get_local_size(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int idx = lid * 4; idx < tile_keys * d; idx += group_size * 4)
        vstore4(ps_ld4(k, kv, k0 + (size_t)(idx / d) * kv.s_token + idx % d), 0, ks + idx);
    for (int idx = lid * 4; idx < tile_keys * dv; idx += group_size * 4)
        vstore4(ps_ld4(v, vv, v0 + (size_t)(idx / dv) * vv.s_token + idx % dv), 0, vs + idx);
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* GPU shape: online-softmax update of one row (query qv, pre-scaled to the
 * log2 domain) by the first `mine` keys of the tile. With use_mask, key t is
 * masked where tile_blk[t] == row_blk. With tile_bias (not NULL), key t's
 * score gains tile_bias[t] (a log2-domain key weight; read from global
 * memory, the same address in every work-item). sc holds PS_GPU_KTILE
 * scratch scores. */
static inline void ps_gpu_tile_update(const float *qv, __local const float *ks,
                                      __local const float *vs, const int mine, const int d,
                                      const int dv, const int use_mask,
                                      __global const int *tile_blk, const int row_blk,
                                      __global const float *tile_bias, float *m, float *l,
                                      float *acc, float *sc)
{
    if (mine <= 0)
        return;
    /* Four dimensions per step (d and dv are multiples of 16): a quarter of
     * the loop trips, which matters where a driver bounds a work-item's loop
     * back-edges (Mesa llvmpipe, docs/DEVICES.md) and costs nothing elsewhere. */
    float tile_max = PS_NEG_BIG;
    for (int t = 0; t < mine; t++) {
        float4 s4 = (float4)(0.0f);
        for (int c = 0; c < d; c += 4)
            s4 = mad(vload4(0, qv + c), vload4(0, ks + t * d + c), s4);
        float s = (s4.x + s4.y) + (s4.z + s4.w);
        if (tile_bias)
            s += tile_bias[t];
        if (use_mask && tile_blk[t] == row_blk)
            s = PS_NEG_BIG;
        sc[t] = s;
        tile_max = fmax(tile_max, s);
    }
    const float m_new = fmax(*m, tile_max);
    const float alpha = exp2(*m - m_new);
    float lsum = *l * alpha;
    for (int c = 0; c < dv; c += 4)
        vstore4(vload4(0, acc + c) * alpha, 0, acc + c);
    for (int t = 0; t < mine; t++) {
        const float pt = exp2(sc[t] - m_new);
        lsum += pt;
        for (int c = 0; c < dv; c += 4)
            vstore4(mad((float4)(pt), vload4(0, vs + t * dv + c), vload4(0, acc + c)), 0,
                    acc + c);
    }
    *l = lsum;
    *m = m_new;
}

#endif /* GPU shape */
