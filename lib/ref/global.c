/* Reference of the global keys: see global_ref.h. */
#include "global_ref.h"

#include "prescore/prescore_ref.h"

#include "core/desc.h"
#include "core/global_params.h"
#include "core/select_params.h"
#include "hyper_ref.h"
#include "lsh_ref.h"
#include "core/host_alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


float ps_global_norm(const float *row, size_t d)
{
    float s = 0.0f;
    for (size_t c = 0; c < d; c++)
        s = fmaf(row[c], row[c], s);
    return s;
}

/* Rank of candidate j: score key above, then lower index above. */
static uint64_t rank_of(const float *scores, size_t j)
{
    return ((uint64_t)ps_select_key_bits(scores[j]) << 32) | (uint64_t)(0xffffffffu - (uint32_t)j);
}

void ps_ref_global_pick(const float *scores, size_t n, size_t g, uint32_t *sel)
{
    uint64_t prev = ~(uint64_t)0;
    for (size_t t = 0; t < g; t++) {
        uint64_t best = 0;
        uint32_t arg = 0;
        for (size_t j = 0; j < n; j++) {
            const uint64_t r = rank_of(scores, j);
            if (r < prev && r >= best) {
                best = r;
                arg = (uint32_t)j;
            }
        }
        prev = best;
        size_t p = t;
        while (p > 0 && sel[p - 1] > arg) {
            sel[p] = sel[p - 1];
            p--;
        }
        sel[p] = arg;
    }
}

ps_status ps_ref_global_attention(const ps_attention_desc *desc, const float *q,
                                  const float *kc, const float *vc, const float *wc,
                                  size_t n_cand, const float *gscore,
                                  const ps_ref_dropped *dropped, float *o, float *lse)
{
    ps_status st = ps_attention_desc_validate(desc, NULL, 0);
    if (st != PS_OK)
        return st;
    if (!q || !kc || !vc || !gscore || !o)
        return PS_ERR_INVALID_ARGUMENT;
    if (desc->causal)
        return PS_ERR_UNSUPPORTED;
    const size_t g = desc->global_keys;
    if (g < 1 || g >= n_cand)
        return PS_ERR_INVALID_ARGUMENT;
    const size_t kh = desc->batch * desc->kv_heads, qh = desc->batch * desc->heads;
    const size_t d = desc->d, dv = desc->d_v, nq = desc->n_q, nr = n_cand - g;
    const size_t hmax = qh > kh ? qh : kh, nmax = nq > nr ? nq : nr;
    uint32_t *sel = ps_malloc(g * sizeof *sel);
    float *kg = ps_malloc(kh * g * d * sizeof(float)), *vg = ps_malloc(kh * g * dv * sizeof(float));
    float *kr = ps_malloc(kh * nr * d * sizeof(float)), *vr = ps_malloc(kh * nr * dv * sizeof(float));
    float *og = ps_malloc(qh * nq * dv * sizeof(float)), *lseg = ps_malloc(qh * nq * sizeof(float));
    float *lseh = ps_malloc(qh * nq * sizeof(float));
    uint32_t *codes = ps_malloc(hmax * nmax * sizeof(uint32_t));
    uint32_t *perm_q = ps_malloc(qh * nq * sizeof(uint32_t));
    uint32_t *perm_k = ps_malloc(kh * nr * sizeof(uint32_t));
    uint32_t *perm_inv = ps_malloc(hmax * nmax * sizeof(uint32_t));
    float *wr = wc ? ps_malloc(kh * nr * sizeof(float)) : NULL;
    if (!sel || !kg || !vg || !kr || !vr || !og || !lseg || !lseh || !codes || !perm_q ||
        !perm_k || !perm_inv || (wc && !wr)) {
        st = PS_ERR_OUT_OF_HOST_MEMORY;
        goto done;
    }
    for (size_t h = 0; h < kh; h++) {
        ps_ref_global_pick(gscore + h * n_cand, n_cand, g, sel);
        size_t c = 0;
        for (size_t j = 0; j < n_cand; j++) {
            const float *sk = kc + (h * n_cand + j) * d, *sv = vc + (h * n_cand + j) * dv;
            if (c < g && sel[c] == j) {
                if (wc && wc[h * n_cand + j] != 0.0f) { /* exact keys stand for themselves */
                    st = PS_ERR_INVALID_ARGUMENT;
                    goto done;
                }
                memcpy(kg + (h * g + c) * d, sk, d * sizeof(float));
                memcpy(vg + (h * g + c) * dv, sv, dv * sizeof(float));
                c++;
            } else {
                memcpy(kr + (h * nr + j - c) * d, sk, d * sizeof(float));
                memcpy(vr + (h * nr + j - c) * dv, sv, dv * sizeof(float));
                if (wr)
                    wr[h * nr + j - c] = wc[h * n_cand + j];
            }
        }
    }
    /* The hyper part over the n_cand - g other candidates. */
    ps_attention_desc s = *desc;
    ps_desc_part_method(&s, PS_METHOD_HYPER); /* the compact candidate rows; their
                                                 weights come as an argument */
    s.n_k = nr;
    s.budget = 0;
    s.clusters = 0;
    s.global_keys = 0;
    const ps_lsh_rows key_rows = {desc->kv_heads, nr, 0, nr};
    const ps_lsh_rows query_rows = {desc->heads, nq, 0, nq};
    st = ps_ref_lsh_codes(&s, &key_rows, kr, NULL, NULL, PS_LSH_ORDER_GRAY_RANK, codes);
    if (st == PS_OK)
        st = ps_ref_lsh_sort(&s, &key_rows, codes, NULL, perm_k, perm_inv);
    if (st == PS_OK)
        st = ps_ref_lsh_codes(&s, &query_rows, q, NULL, NULL, PS_LSH_ORDER_GRAY_RANK, codes);
    if (st == PS_OK)
        st = ps_ref_lsh_sort(&s, &query_rows, codes, NULL, perm_q, perm_inv);
    if (st == PS_OK)
        st = ps_ref_hyper_attention_dropped(&s, q, kr, vr, wr, dropped, perm_q, perm_k, o,
                                            lseh);
    /* The exact part over the g global keys. */
    ps_attention_desc e = s;
    e.method = PS_METHOD_EXACT;
    e.n_k = g;
    e.check_finite = 0; /* a part: ps_ref_attention checks the inputs and the outputs */
    if (st == PS_OK)
        st = ps_ref_exact_attention(&e, q, kg, vg, og, lseg);
    if (st != PS_OK)
        goto done;
    for (size_t r = 0; r < qh * nq; r++) {
        const double l1 = lseh[r], l2 = lseg[r], m = l1 > l2 ? l1 : l2;
        const double w1 = exp(l1 - m), w2 = exp(l2 - m), inv = 1.0 / (w1 + w2);
        for (size_t c = 0; c < dv; c++)
            o[r * dv + c] = (float)((w1 * o[r * dv + c] + w2 * og[r * dv + c]) * inv);
        if (lse)
            lse[r] = (float)(m + log(w1 + w2));
    }
done:
    free(wr);
    free(sel);
    free(kg);
    free(vg);
    free(kr);
    free(vr);
    free(og);
    free(lseg);
    free(lseh);
    free(codes);
    free(perm_q);
    free(perm_k);
    free(perm_inv);
    return st;
}
