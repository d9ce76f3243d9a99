/* Reference exact attention: the plain-C twin of cl/exact.cl, in
 * double precision (two passes: row maximum, then weights). */
#include "prescore/prescore_ref.h"

#include "core/desc.h"
#include "core/host_alloc.h"
#include "core/varlen.h"
#include "exact_ref.h"
#include "layout_ref.h"

#include <math.h>
#include <stdlib.h>

float ps_ref_attend_row(const float *q, const float *k, const float *v, const uint32_t *idx,
                        size_t n, size_t d, size_t d_v, double scale, double *scores,
                        double *acc, float *o)
{
    double mx = -INFINITY, sum = 0.0;
    for (size_t j = 0; j < n; j++) {
        const float *kj = k + (idx ? idx[j] : j) * d;
        double s = 0.0;
        for (size_t c = 0; c < d; c++)
            s += (double)q[c] * (double)kj[c];
        scores[j] = s * scale;
        if (scores[j] > mx)
            mx = scores[j];
    }
    for (size_t c = 0; c < d_v; c++)
        acc[c] = 0.0;
    for (size_t j = 0; j < n; j++) {
        const float *vj = v + (idx ? idx[j] : j) * d_v;
        const double p = exp(scores[j] - mx);
        sum += p;
        for (size_t c = 0; c < d_v; c++)
            acc[c] += p * (double)vj[c];
    }
    for (size_t c = 0; c < d_v; c++)
        o[c] = n ? (float)(acc[c] / sum) : 0.0f;
    return n ? (float)(mx + log(sum)) : -INFINITY;
}

/* On dense fp32 arrays of the resolved descriptor r. */
static ps_status exact_dense(const ps_attention_desc *rp, const float *q, const float *k,
                             const float *v, float *o, float *lse)
{
    const ps_attention_desc r = *rp;
    if (r.check_finite &&
        (!ps_all_finite(q, ps_desc_q_elems(&r)) || !ps_all_finite(k, ps_desc_k_elems(&r)) ||
         !ps_all_finite(v, ps_desc_v_elems(&r))))
        return PS_ERR_NON_FINITE;
    double *scores = ps_malloc(r.n_k * sizeof *scores);
    double *acc = ps_malloc(r.d_v * sizeof *acc);
    if (!scores || !acc) {
        free(scores);
        free(acc);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    const size_t group = r.heads / r.kv_heads;
    const long long offset = (long long)r.n_k - (long long)r.n_q; /* bottom-right */
    for (size_t b = 0; b < r.batch; b++)
        for (size_t h = 0; h < r.heads; h++) {
            const size_t bh = b * r.heads + h, bhk = b * r.kv_heads + h / group;
            const float *kh = k + bhk * r.n_k * r.d, *vh = v + bhk * r.n_k * r.d_v;
            for (size_t i = 0; i < r.n_q; i++) {
                const float *qi = q + (bh * r.n_q + i) * r.d;
                float *oi = o + (bh * r.n_q + i) * r.d_v;
                long long lim = r.causal ? (long long)i + offset + 1 : (long long)r.n_k;
                const size_t n = lim <= 0 ? 0 : (size_t)(lim < (long long)r.n_k ? lim : (long long)r.n_k);
                const float l = ps_ref_attend_row(qi, kh, vh, NULL, n, r.d, r.d_v,
                                                  (double)r.scale, scores, acc, oi);
                if (lse)
                    lse[bh * r.n_q + i] = l;
            }
        }
    free(scores);
    free(acc);
    return r.check_finite ? ps_outputs_finite(&r, o, lse) : PS_OK;
}

ps_status ps_ref_exact_attention(const ps_attention_desc *desc, const void *q, const void *k,
                                 const void *v, void *o, float *lse)
{
    ps_attention_desc r;
    ps_status st = ps_attention_desc_resolve(desc, &r, NULL, 0);
    if (st != PS_OK)
        return st;
    if (!q || !k || !v || !o)
        return PS_ERR_INVALID_ARGUMENT;
    if (ps_desc_is_varlen(desc)) { /* each sequence exactly (lib/ref/attention.c) */
        ps_attention_desc e = *desc;
        ps_desc_part_method(&e, PS_METHOD_EXACT);
        e.global_keys = 0;
        return ps_ref_attention(&e, q, k, v, o, lse);
    }
    return ps_ref_through_layouts(&r, q, k, v, o, lse, exact_dense);
}
