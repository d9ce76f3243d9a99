/* The per-call error estimate (lib/estimate.c; docs/API.md "Error
 * estimate"): min(p, n_q) probe rows per query head, one per stratum of the
 * sequence (ps_stratum_row, stage PS_RNG_STAGE_PROBE), attended exactly over
 * every key the row sees, compared with the approximate output and LSE the
 * call wrote for the same rows. Split over key chunks like the sketch
 * (cl/select.cl): plain NDRanges, no __local; the host sizes the chunks from
 * the loop budget (lib/kernel_fit.h ps_loop_items); the other loops run over
 * d_v, the chunk count or the probe count. */

/* qp[qh][i][c]: probe row i of query head qh times scale_log2; rowpos[qh][i]
 * its position. Global (rows, batch * heads). */
__kernel void probe_gather(__global const void *restrict q, const ps_view qv,
                           __global float *restrict qp, __global uint *restrict rowpos,
                           const int d, const int n_q, const int p, const uint seed_lo,
                           const uint seed_hi, const float scale_log2)
{
    const int i = get_global_id(0);
    const size_t qh = get_global_id(1);
    const int rows = min(n_q, p);
    if (i >= rows)
        return;
    const ulong seed = ((ulong)seed_hi << 32) | seed_lo;
    const uint t = ps_stratum_row(seed, PS_RNG_STAGE_PROBE, (uint)qh, (uint)i, (uint)n_q, (uint)p);
    rowpos[qh * rows + i] = t;
    const size_t src = ps_row(qv, qh, t);
    __global float *dst = qp + (qh * rows + i) * (size_t)d;
    for (int c = 0; c < d; c += 4)
        vstore4(ps_ld4(q, qv, src + c) * scale_log2, 0, dst + c);
}

/* part_o[qh][i][chunk][dv] (unnormalised) and part_ml[qh][i][chunk]
 * (maximum, sum; log2 domain): exact attention of probe row i over the keys
 * of the chunk it sees (causal: key j <= t + n_k - n_q). Global (rows,
 * batch * heads, chunks). */
__kernel void probe_partial(__global const float *restrict qp, __global const uint *restrict rowpos,
                            __global const void *restrict k, const ps_view kv,
                            __global const void *restrict v, const ps_view vv,
                            __global float *restrict part_o, __global float2 *restrict part_ml,
                            const int d, const int dv, const int n_q, const int n_k,
                            const int rows, const int group, const int chunk_keys,
                            const int causal)
{
    const int i = get_global_id(0);
    const size_t qh = get_global_id(1);
    const int chunk = get_global_id(2), chunks = get_global_size(2);
    if (i >= rows)
        return;
    const size_t r = qh * rows + i, kvh = qh / (size_t)group;
    __global const float *qrow = qp + r * d;
    int j_end = min(n_k, (chunk + 1) * chunk_keys);
    if (causal)
        j_end = min(j_end, (int)rowpos[r] + n_k - n_q + 1);
    float4 acc[PS_DMAX / 4]; /* d_v is a multiple of 16 */
    for (int c = 0; c < dv / 4; c++)
        acc[c] = (float4)(0.0f);
    float m = PS_NEG_BIG, l = 0.0f;
    for (int j = chunk * chunk_keys; j < j_end; j++) {
        const size_t k_el = ps_row(kv, kvh, j), v_el = ps_row(vv, kvh, j);
        float x = 0.0f;
        for (int c = 0; c < d; c += 4)
            x += dot(vload4(0, qrow + c), ps_ld4(k, kv, k_el + c));
        const float m_new = fmax(m, x), alpha = exp2(m - m_new), e = exp2(x - m_new);
        l = l * alpha + e;
        for (int c = 0; c < dv / 4; c++)
            acc[c] = fma((float4)(e), ps_ld4(v, vv, v_el + 4 * c), acc[c] * alpha);
        m = m_new;
    }
    const size_t at = r * chunks + chunk;
    part_ml[at] = (float2)(m, l);
    for (int c = 0; c < dv / 4; c++)
        vstore4(acc[c], 0, part_o + at * dv + 4 * c);
}

/* The chunks of probe row r merged in log-sum-exp space: the maximum and
 * the total (0 when the row sees no key). */
static inline float2 ps_probe_total(__global const float2 *ml, const int chunks)
{
    float mx = PS_NEG_BIG;
    for (int c = 0; c < chunks; c++)
        mx = ml[c].y > 0.0f ? fmax(mx, ml[c].x) : mx;
    float total = 0.0f;
    for (int c = 0; c < chunks; c++)
        total += ml[c].y > 0.0f ? ml[c].y * exp2(ml[c].x - mx) : 0.0f;
    return (float2)(mx, total);
}

/* oexact[qh][i][c]: exact output c of probe row i, the chunks merged; and,
 * by the work-item of c = 0, lse_exact[qh][i] (natural log; -inf for a row
 * that sees no key). Global (dv, rows, batch * heads): each work-item walks
 * the chunks three times. */
__kernel void probe_merge(__global const float *restrict part_o,
                          __global const float2 *restrict part_ml,
                          __global float *restrict oexact, __global float *restrict lse_exact,
                          const int dv, const int rows, const int chunks)
{
    const int c = get_global_id(0), i = get_global_id(1);
    const size_t qh = get_global_id(2);
    if (c >= dv || i >= rows)
        return;
    const size_t r = qh * rows + i;
    __global const float2 *ml = part_ml + r * chunks;
    const float2 mt = ps_probe_total(ml, chunks);
    float o = 0.0f;
    for (int s = 0; s < chunks; s++)
        o += ml[s].y > 0.0f ? part_o[(r * chunks + s) * dv + c] * exp2(ml[s].x - mt.x) : 0.0f;
    oexact[r * dv + c] = mt.y > 0.0f ? o / mt.y : 0.0f;
    if (c == 0)
        lse_exact[r] = mt.y > 0.0f ? (mt.x + log2(mt.y)) * M_LN2_F : -INFINITY;
}

/* stats[qh][i] = (|o - o_exact|^2, |o_exact|^2, |lse - lse_exact|, 1) for
 * probe row i (o and lse: what the call wrote; lse natural log); (0, 0, 0,
 * 0) for a row that sees no key. Global (rows, batch * heads). */
__kernel void probe_compare(__global const float *restrict oexact,
                            __global const float *restrict lse_exact,
                            __global const uint *restrict rowpos, __global const void *restrict o,
                            const ps_view ov, __global const float *restrict lse,
                            __global float4 *restrict stats, const int dv, const int n_q,
                            const int rows)
{
    const int i = get_global_id(0);
    const size_t qh = get_global_id(1);
    if (i >= rows)
        return;
    const size_t r = qh * rows + i;
    if (lse_exact[r] == -INFINITY) {
        stats[r] = (float4)(0.0f);
        return;
    }
    const uint t = rowpos[r];
    const size_t orow = ps_row(ov, qh, t);
    float err = 0.0f, ref = 0.0f;
    for (int c = 0; c < dv; c++) {
        const float exact = oexact[r * dv + c], diff = ps_ld(o, ov, orow + c) - exact;
        err = fma(diff, diff, err);
        ref = fma(exact, exact, ref);
    }
    stats[r] = (float4)(err, ref, fabs(lse[qh * (size_t)n_q + t] - lse_exact[r]), 1.0f);
}

/* est[qh] = (sqrt(sum err / sum ref), mean |lse diff|) over the probe rows
 * that see a key (0, 0 without one). Global (batch * heads). */
__kernel void probe_reduce(__global const float4 *restrict stats, __global float2 *restrict est,
                           const int rows, const int heads)
{
    const int qh = get_global_id(0);
    if (qh >= heads)
        return;
    float4 sum = (float4)(0.0f);
    for (int i = 0; i < rows; i++)
        sum += stats[(size_t)qh * rows + i];
    est[qh] = (float2)(sum.y > 0.0f ? sqrt(sum.x / sum.y) : 0.0f,
                       sum.w > 0.0f ? sum.z / sum.w : 0.0f);
}
