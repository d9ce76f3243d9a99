/* The full-pipeline reference: ps_ref_attention runs on the host exactly what
 * ps_attention runs on the device, for every method, composed of the stage
 * references (score, select, global keys, LSH, hyper, exact, causal) with the
 * parameter resolution of lib/core/desc.c and the same Philox draws. */
#include "prescore/prescore_ref.h"

#include "core/desc.h"
#include "core/host_alloc.h"
#include "layout_ref.h"
#include "core/select_params.h"
#include "core/varlen.h"
#include "causal_ref.h"
#include "global_ref.h"
#include "hyper_ref.h"
#include "lsh_ref.h"
#include "score_ref.h"
#include "sketch_ref.h"

#include <stdlib.h>
#include <string.h>

/* Candidate key set of a non-causal plan: the kept keys (PRESCORE) or all
 * keys (HYPER), [kheads][n][d | d_v], with the global score of each. */
typedef struct ref_candidates {
    size_t n;
    const float *k, *v;
    float *k_own, *v_own; /* gathered rows (PRESCORE) */
    float *w;             /* [kheads][n] log-weights (selection WEIGHTED), else NULL */
    float *gscore;        /* [kheads][n], only with global keys */
    uint32_t *idx;        /* [kheads][n] the kept rows, ascending (PRESCORE) */
} ref_candidates;

static void candidates_free(ref_candidates *c)
{
    free(c->k_own);
    free(c->v_own);
    free(c->w);
    free(c->gscore);
    free(c->idx);
}

/* Score (and sketch), select and gather (PRESCORE), then the global scores
 * when g > 0. */
static ps_status candidates_make(const ps_attention_desc *d, const float *q, const float *k,
                                 const float *v, ref_candidates *c)
{
    const size_t kh = d->batch * d->kv_heads;
    float *scores = NULL, *mass = NULL;
    uint32_t *assign = NULL;
    const float *rank = NULL; /* what ranks the heavy and global keys */
    uint32_t *idx = NULL, *counts = NULL;
    ps_status st = PS_OK;
    memset(c, 0, sizeof *c);
    c->n = d->n_k;
    c->k = k;
    c->v = v;
    if (d->method == PS_METHOD_PRESCORE) {
        ps_select_params p;
        ps_select_params_from_desc(d, &p);
        c->n = p.capacity;
        scores = ps_malloc(kh * d->n_k * sizeof *scores);
        idx = c->idx = ps_malloc(kh * p.capacity * sizeof *idx);
        counts = ps_malloc(kh * sizeof *counts);
        c->k_own = ps_malloc(kh * p.capacity * d->d * sizeof(float));
        c->v_own = ps_malloc(kh * p.capacity * d->d_v * sizeof(float));
        const int stratified = d->selection == PS_SELECTION_STRATIFIED;
        if (ps_selection_weighted(d->selection))
            c->w = ps_malloc(kh * p.capacity * sizeof(float));
        if (d->sketch_queries > 0)
            mass = ps_malloc(kh * d->n_k * sizeof *mass);
        if (stratified)
            assign = ps_malloc(kh * d->n_k * sizeof *assign);
        if (!scores || !idx || !counts || !c->k_own || !c->v_own ||
            (ps_selection_weighted(d->selection) && !c->w) ||
            (d->sketch_queries > 0 && !mass) || (stratified && !assign)) {
            st = PS_ERR_OUT_OF_HOST_MEMORY;
            goto done;
        }
        if (stratified) /* the k-means scores and clusters together */
            for (size_t h = 0; h < kh && st == PS_OK; h++)
                st = ps_ref_kmeans(d, k + h * d->n_k * d->d, (uint32_t)h, NULL,
                                   assign + h * d->n_k, NULL, NULL, NULL, scores + h * d->n_k);
        else
            st = ps_ref_score_keys(d, k, scores);
        rank = scores;
        if (st == PS_OK && mass) {
            st = ps_ref_sketch_dense(d, q, k, mass);
            rank = mass;
        }
        if (st == PS_OK && stratified)
            st = ps_ref_select_keys_stratified(d, rank, assign, idx, counts, c->w);
        else if (st == PS_OK && c->w)
            st = ps_ref_select_keys_weighted(d, rank, idx, counts, c->w);
        else if (st == PS_OK)
            st = ps_ref_select_keys(d, scores, idx, counts);
        if (st != PS_OK)
            goto done;
        for (size_t h = 0; h < kh; h++)
            for (size_t i = 0; i < p.capacity; i++) { /* every head keeps exactly C */
                const size_t j = idx[h * p.capacity + i];
                memcpy(c->k_own + (h * p.capacity + i) * d->d, k + (h * d->n_k + j) * d->d,
                       d->d * sizeof(float));
                memcpy(c->v_own + (h * p.capacity + i) * d->d_v,
                       v + (h * d->n_k + j) * d->d_v, d->d_v * sizeof(float));
            }
        c->k = c->k_own;
        c->v = c->v_own;
    }
    if (d->global_keys > 0) {
        c->gscore = ps_malloc(kh * c->n * sizeof(float));
        if (!c->gscore) {
            st = PS_ERR_OUT_OF_HOST_MEMORY;
            goto done;
        }
        const int own = ps_global_own_scores(d);
        for (size_t h = 0; h < kh; h++)
            for (size_t j = 0; j < c->n; j++)
                c->gscore[h * c->n + j] =
                    own ? rank[h * d->n_k + idx[h * c->n + j]]
                        : ps_global_norm(c->k + (h * c->n + j) * d->d, d->d);
    }
done:
    free(scores);
    free(mass);
    free(assign);
    free(counts);
    if (st != PS_OK)
        candidates_free(c);
    return st;
}

/* The dropped-key residual's draws (core/dropped_params.h): for every query
 * head, the rows of the dropped keys ps_dropped_rank picks, from the full k
 * and v; NULL rows when the plan has none. */
static ps_status dropped_make(const ps_attention_desc *d, const float *k, const float *v,
                              const ref_candidates *c, ps_ref_dropped *out)
{
    memset(out, 0, sizeof *out);
    ps_dropped_params_from_desc(d, &out->p);
    if (!out->p.active)
        return PS_OK;
    const size_t qh = d->batch * d->heads, group = d->heads / d->kv_heads, n = out->p.draws;
    float *kd = ps_malloc(qh * n * d->d * sizeof *kd);
    float *vd = ps_malloc(qh * n * d->d_v * sizeof *vd);
    if (!kd || !vd) {
        free(kd);
        free(vd);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    for (size_t bh = 0; bh < qh; bh++) {
        const size_t bhk = (bh / d->heads) * d->kv_heads + (bh % d->heads) / group;
        for (size_t j = 0; j < n; j++) {
            const uint32_t r = ps_dropped_rank(d->seed, (uint32_t)bh, (uint32_t)j,
                                               (uint32_t)out->p.dropped, (uint32_t)n);
            const size_t row = ps_dropped_row(c->idx + bhk * out->p.kept,
                                              (uint32_t)out->p.kept, r);
            memcpy(kd + (bh * n + j) * d->d, k + (bhk * d->n_k + row) * d->d,
                   d->d * sizeof *kd);
            memcpy(vd + (bh * n + j) * d->d_v, v + (bhk * d->n_k + row) * d->d_v,
                   d->d_v * sizeof *vd);
        }
    }
    out->k = kd;
    out->v = vd;
    return PS_OK;
}

/* LSH sort of the n candidates and of the queries, then the hyper core. */
static ps_status hyper_on(const ps_attention_desc *d, const float *q, const float *k,
                          const float *v, const float *w, const ps_ref_dropped *dropped,
                          size_t n, float *o, float *lse)
{
    const size_t qh = d->batch * d->heads, kh = d->batch * d->kv_heads;
    const size_t hmax = qh > kh ? qh : kh, nmax = d->n_q > n ? d->n_q : n;
    ps_attention_desc s = *d;
    ps_desc_part_method(&s, PS_METHOD_HYPER); /* the compact candidate rows; their
                                                 weights come as an argument */
    s.n_k = n;
    s.budget = 0;
    s.clusters = 0;
    s.global_keys = 0;
    uint32_t *codes = ps_malloc(hmax * nmax * sizeof(uint32_t));
    uint32_t *perm_q = ps_malloc(qh * d->n_q * sizeof(uint32_t));
    uint32_t *perm_k = ps_malloc(kh * n * sizeof(uint32_t));
    uint32_t *perm_inv = ps_malloc(hmax * nmax * sizeof(uint32_t));
    ps_status st = PS_ERR_OUT_OF_HOST_MEMORY;
    if (codes && perm_q && perm_k && perm_inv) {
        const ps_lsh_rows key_rows = {d->kv_heads, n, 0, n};
        const ps_lsh_rows query_rows = {d->heads, d->n_q, 0, d->n_q};
        st = ps_ref_lsh_codes(&s, &key_rows, k, NULL, NULL, PS_LSH_ORDER_GRAY_RANK, codes);
        if (st == PS_OK)
            st = ps_ref_lsh_sort(&s, &key_rows, codes, NULL, perm_k, perm_inv);
        if (st == PS_OK)
            st = ps_ref_lsh_codes(&s, &query_rows, q, NULL, NULL, PS_LSH_ORDER_GRAY_RANK,
                                  codes);
        if (st == PS_OK)
            st = ps_ref_lsh_sort(&s, &query_rows, codes, NULL, perm_q, perm_inv);
        if (st == PS_OK)
            st = ps_ref_hyper_attention_dropped(&s, q, k, v, w, dropped, perm_q, perm_k, o,
                                                lse);
    }
    free(codes);
    free(perm_q);
    free(perm_k);
    free(perm_inv);
    return st;
}

ps_status ps_ref_pipeline(const ps_attention_desc *d, const float *q, const float *k,
                          const float *v, float *o, float *lse)
{
    if (d->causal || d->method == PS_METHOD_EXACT)
        return PS_ERR_INVALID_ARGUMENT;
    ps_status st = ps_global_check(d, ps_candidate_count(d), NULL, 0);
    if (st != PS_OK)
        return st;
    ref_candidates c;
    st = candidates_make(d, q, k, v, &c);
    if (st != PS_OK)
        return st;
    ps_ref_dropped dropped;
    st = dropped_make(d, k, v, &c, &dropped);
    const ps_ref_dropped *dr = dropped.p.active ? &dropped : NULL;
    if (st == PS_OK && d->global_keys > 0)
        st = ps_ref_global_attention(d, q, c.k, c.v, c.w, c.n, c.gscore, dr, o, lse);
    else if (st == PS_OK)
        st = hyper_on(d, q, c.k, c.v, c.w, dr, c.n, o, lse);
    free((void *)dropped.k);
    free((void *)dropped.v);
    candidates_free(&c);
    return st;
}

/* On dense fp32 arrays of the resolved descriptor dp. */
static ps_status attention_dense(const ps_attention_desc *dp, const float *q, const float *k,
                                 const float *v, float *o, float *lse)
{
    const ps_attention_desc d = *dp;
    ps_status st = PS_OK;
    if (d.check_finite &&
        (!ps_all_finite(q, ps_desc_q_elems(&d)) || !ps_all_finite(k, ps_desc_k_elems(&d)) ||
         !ps_all_finite(v, ps_desc_v_elems(&d))))
        return PS_ERR_NON_FINITE;
    /* ps_plan_path: short sequences (and EXACT) run exact attention. */
    if (d.method == PS_METHOD_EXACT || d.n_k < d.min_seq_len)
        st = ps_ref_exact_attention(&d, q, k, v, o, lse);
    else if (d.causal)
        st = ps_ref_causal(&d, q, k, v, o, lse);
    else
        st = ps_ref_pipeline(&d, q, k, v, o, lse);
    /* As on the device: the outputs too (finite inputs beyond the range). */
    if (st == PS_OK && d.check_finite)
        st = ps_outputs_finite(&d, o, lse);
    return st;
}

/* A variable-length batch: every sequence as a batch-1 call on its rows of
 * the packed tensors (lib/core/varlen.c), its LSE copied into its rows. */
static ps_status attention_varlen(const ps_attention_desc *desc, const void *q, const void *k,
                                  const void *v, void *o, float *lse)
{
    ps_status st = PS_OK;
    for (size_t b = 0; b < desc->batch && st == PS_OK; b++) {
        const size_t len = ps_varlen_len_q(desc, b), row0 = desc->cu_seqlens_q[b];
        if (len == 0)
            continue;
        ps_attention_desc sd;
        ps_varlen_seq_desc(desc, b, &sd);
        float *seq_lse = lse ? ps_malloc(desc->heads * len * sizeof *seq_lse) : NULL;
        if (lse && !seq_lse)
            return PS_ERR_OUT_OF_HOST_MEMORY;
        st = ps_ref_attention(&sd, q, k, v, o, seq_lse);
        for (size_t h = 0; lse && h < desc->heads; h++)
            memcpy(lse + h * desc->n_q + row0, seq_lse + h * len, len * sizeof *lse);
        free(seq_lse);
    }
    return st;
}

ps_status ps_ref_attention(const ps_attention_desc *desc, const void *q, const void *k,
                           const void *v, void *o, float *lse)
{
    ps_attention_desc d;
    ps_status st = ps_attention_desc_resolve(desc, &d, NULL, 0);
    if (st != PS_OK)
        return st;
    if (!q || !k || !v || !o || (d.want_lse && !lse))
        return PS_ERR_INVALID_ARGUMENT;
    if (ps_desc_is_varlen(desc))
        return attention_varlen(desc, q, k, v, o, lse);
    return ps_ref_through_layouts(&d, q, k, v, o, lse, attention_dense);
}
