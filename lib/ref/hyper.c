/* Reference HyperAttention core: blocked diagonal attention over the sorted
 * rows, the residual estimated from Philox samples with the diagonal block
 * masked out, their merge in log-sum-exp space and the unsort. Double
 * precision; the twin of cl/hyper.cl (see docs/HYPER.md). */
#include "hyper_ref.h"
#include "attention_params.h" /* cl/: the block pairing, shared with the kernels */

#include "core/desc.h"
#include "core/host_alloc.h"

#include <math.h>
#include <stdlib.h>

/* Adds key row kr with logit s to a running (max, sum, acc) triple. */
static void add_key(double s, const float *vr, size_t dv, double *mx, double *sum,
                    double *acc)
{
    if (s > *mx) {
        const double f = exp(*mx - s); /* exp(-inf) = 0 on the first key */
        *sum *= f;
        for (size_t c = 0; c < dv; c++)
            acc[c] *= f;
        *mx = s;
    }
    const double p = exp(s - *mx);
    *sum += p;
    for (size_t c = 0; c < dv; c++)
        acc[c] += p * (double)vr[c];
}

static double dot(const float *a, const float *b, size_t d)
{
    double s = 0.0;
    for (size_t c = 0; c < d; c++)
        s += (double)a[c] * (double)b[c];
    return s;
}

ps_status ps_ref_hyper_attention(const ps_attention_desc *desc, const float *q,
                                 const float *k, const float *v, const uint32_t *perm_q,
                                 const uint32_t *perm_k, float *o, float *lse)
{
    return ps_ref_hyper_attention_weighted(desc, q, k, v, NULL, perm_q, perm_k, o, lse);
}

ps_status ps_ref_hyper_attention_weighted(const ps_attention_desc *desc, const float *q,
                                          const float *k, const float *v,
                                          const float *key_bias, const uint32_t *perm_q,
                                          const uint32_t *perm_k, float *o, float *lse)
{
    return ps_ref_hyper_attention_dropped(desc, q, k, v, key_bias, NULL, perm_q, perm_k, o,
                                          lse);
}

/* Key kr's logit for query qi: its score plus its log-weight (mixed with the
 * dropped-key residual's estimate when there is one). */
static double key_logit(const ps_attention_desc *r, const float *qi, const float *kh,
                        const float *wh, const ps_ref_dropped *dropped, size_t kr)
{
    double w = wh ? wh[kr] : 0.0;
    if (dropped)
        w = ps_dropped_kept_log_weight(&dropped->p, w);
    return dot(qi, kh + kr * r->d, r->d) * r->scale + w;
}

ps_status ps_ref_hyper_attention_dropped(const ps_attention_desc *desc, const float *q,
                                         const float *k, const float *v,
                                         const float *key_bias, const ps_ref_dropped *dropped,
                                         const uint32_t *perm_q, const uint32_t *perm_k,
                                         float *o, float *lse)
{
    ps_attention_desc r;
    ps_status st = ps_attention_desc_resolve(desc, &r, NULL, 0);
    if (st != PS_OK)
        return st;
    if (r.causal)
        return PS_ERR_UNSUPPORTED;
    if (!q || !k || !v || !perm_q || !perm_k || !o)
        return PS_ERR_INVALID_ARGUMENT;
    if (dropped && (r.n_k > r.block || !dropped->k || !dropped->v))
        return PS_ERR_INVALID_ARGUMENT; /* the key set is one block */
    for (size_t i = 0; i < r.batch * r.heads * r.n_q; i++)
        if (perm_q[i] >= r.n_q)
            return PS_ERR_INVALID_ARGUMENT;
    for (size_t i = 0; i < r.batch * r.kv_heads * r.n_k; i++)
        if (perm_k[i] >= r.n_k)
            return PS_ERR_INVALID_ARGUMENT;

    double *acc1 = ps_malloc(r.d_v * sizeof *acc1), *acc2 = ps_malloc(r.d_v * sizeof *acc2);
    uint32_t *samples = ps_malloc(r.samples * sizeof *samples);
    if (!acc1 || !acc2 || !samples) {
        free(acc1);
        free(acc2);
        free(samples);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    const size_t group = r.heads / r.kv_heads, bsz = r.block, s_count = r.samples;
    const double log_weight =
        dropped ? dropped->p.log_weight : log((double)r.n_k / (double)s_count);
    for (size_t b = 0; b < r.batch; b++)
        for (size_t h = 0; h < r.heads; h++) {
            const size_t bh = b * r.heads + h, bhk = b * r.kv_heads + h / group;
            const float *kh = k + bhk * r.n_k * r.d, *vh = v + bhk * r.n_k * r.d_v;
            const float *wh = key_bias ? key_bias + bhk * r.n_k : NULL;
            const uint32_t *pq = perm_q + bh * r.n_q, *pk = perm_k + bhk * r.n_k;
            for (size_t j = 0; j < s_count; j++)
                samples[j] = ps_ref_hyper_sample(r.seed, (uint32_t)bh, (uint32_t)j,
                                                 (uint32_t)r.n_k);
            for (size_t p = 0; p < r.n_q; p++) {
                const size_t row = pq[p];
                const size_t blk = (size_t)ps_hyper_row_block((ps_i32)p, (ps_i32)r.n_q,
                                                              (ps_i32)r.n_k, (ps_i32)bsz);
                const float *qi = q + (bh * r.n_q + row) * r.d;
                /* Diagonal block: sorted keys [blk * b, min((blk + 1) * b, n_k)). */
                double mx1 = -INFINITY, sum1 = 0.0, mx2 = -INFINITY, sum2 = 0.0;
                for (size_t c = 0; c < r.d_v; c++)
                    acc1[c] = acc2[c] = 0.0;
                const size_t k_end = (blk + 1) * bsz < r.n_k ? (blk + 1) * bsz : r.n_k;
                for (size_t kp = blk * bsz; kp < k_end; kp++) {
                    const size_t kr = pk[kp];
                    add_key(key_logit(&r, qi, kh, wh, dropped, kr), vh + kr * r.d_v, r.d_v,
                            &mx1, &sum1, acc1);
                }
                /* Residual: the dropped keys' draws, or samples outside the
                 * diagonal block. */
                for (size_t j = 0; dropped && j < dropped->p.draws; j++) {
                    const size_t row = bh * dropped->p.draws + j;
                    add_key(dot(qi, dropped->k + row * r.d, r.d) * r.scale,
                            dropped->v + row * r.d_v, r.d_v, &mx2, &sum2, acc2);
                }
                for (size_t j = 0; !dropped && j < s_count; j++) {
                    if (samples[j] / bsz == blk)
                        continue;
                    const size_t kr = pk[samples[j]];
                    add_key(key_logit(&r, qi, kh, wh, NULL, kr), vh + kr * r.d_v, r.d_v, &mx2,
                            &sum2, acc2);
                }
                /* Merge in log-sum-exp space: part weights e^lse / (e^lse1 + e^lse2). */
                const double lse1 = mx1 + log(sum1);
                const double lse2 = sum2 > 0.0 ? mx2 + log(sum2) + log_weight : -INFINITY;
                const double top = lse1 > lse2 ? lse1 : lse2;
                const double w1 = exp(lse1 - top), w2 = exp(lse2 - top), wsum = w1 + w2;
                float *oi = o + (bh * r.n_q + row) * r.d_v;
                for (size_t c = 0; c < r.d_v; c++) {
                    const double part2 = sum2 > 0.0 ? w2 * acc2[c] / sum2 : 0.0;
                    oi[c] = (float)((w1 * acc1[c] / sum1 + part2) / wsum);
                }
                if (lse)
                    lse[bh * r.n_q + row] = (float)(top + log(wsum));
            }
        }
    free(acc1);
    free(acc2);
    free(samples);
    return PS_OK;
}
