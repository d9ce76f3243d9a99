/* The key cache's host twin (prescore_ref.h "decode"): the decisions of
 * lib/core/kv_params.h on host arrays. Full scorings are the reference's
 * scoring and selection on the cached keys; between them new keys are scored
 * against the last scoring's statistics (ps_ref_score_key) and compete for
 * the kept set when they leave the window; decode is the reference's softmax
 * row over the attended positions. */
#include "prescore/prescore_ref.h"

#include "core/desc.h"
#include "core/host_alloc.h"
#include "core/kv_params.h"
#include "core/select_params.h"
#include "core/tensor_layout.h"
#include "exact_ref.h"
#include "layout_ref.h"
#include "score_ref.h"

#include <stdlib.h>
#include <string.h>

struct ps_ref_kv_cache {
    ps_attention_desc desc; /* as the caller set it: the layouts of appends, q, o */
    ps_attention_desc r;    /* resolved once: scale, score, clusters, iterations */
    ps_kv_params p;
    size_t n;               /* keys per head now */
    size_t n_scored;        /* length at the last full scoring; 0: none */
    float *k, *v;           /* [rows][capacity][d | d_v] */
    float *scores;          /* [rows][capacity]; 0 until a key is scored */
    uint32_t *kept;         /* [rows][kept_capacity] ascending positions */
    size_t *kept_count;     /* [rows] */
    ps_ref_score_stats stats; /* of the last full scoring */
};

static void stats_free(ps_ref_score_stats *s)
{
    free(s->centroids);
    free(s->cterm);
    free(s->chol);
    memset(s, 0, sizeof *s);
}

/* Room for the statistics of r's score over `rows` heads (none for NORM
 * and NONE). */
static ps_status stats_alloc(const ps_attention_desc *r, size_t rows, ps_ref_score_stats *s)
{
    memset(s, 0, sizeof *s);
    int ok = 1;
    if (r->score == PS_SCORE_KMEANS) {
        s->centroids = ps_calloc(rows * r->clusters * r->d, sizeof *s->centroids);
        s->cterm = ps_calloc(rows * r->clusters, sizeof *s->cterm);
        ok = s->centroids && s->cterm;
    } else if (r->score == PS_SCORE_LEVERAGE) {
        s->chol = ps_calloc(rows * r->d * r->d, sizeof *s->chol);
        ok = s->chol != NULL;
    }
    if (!ok)
        stats_free(s);
    return ok ? PS_OK : PS_ERR_OUT_OF_HOST_MEMORY;
}

ps_status ps_ref_kv_cache_create(const ps_attention_desc *desc, ps_ref_kv_cache **out)
{
    if (!out)
        return PS_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!desc)
        return PS_ERR_INVALID_ARGUMENT;
    ps_kv_params p;
    ps_attention_desc top = *desc, r;
    ps_desc_auto_selection_top(&top); /* as the device cache's plan */
    ps_status st = ps_kv_params_from_desc(&top, &p, NULL, 0);
    if (st == PS_OK)
        st = ps_attention_desc_resolve(&top, &r, NULL, 0);
    if (st != PS_OK)
        return st;
    ps_ref_kv_cache *c = ps_calloc(1, sizeof *c);
    if (!c)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    c->desc = top;
    c->r = r;
    c->p = p;
    const size_t cells = p.rows * p.capacity;
    c->k = ps_calloc(cells * r.d, sizeof *c->k);
    c->v = ps_calloc(cells * r.d_v, sizeof *c->v);
    c->scores = ps_calloc(cells, sizeof *c->scores);
    c->kept = ps_calloc(p.rows * p.kept_capacity + 1, sizeof *c->kept); /* +1: EXACT has 0 */
    c->kept_count = ps_calloc(p.rows, sizeof *c->kept_count);
    if (!(c->k && c->v && c->scores && c->kept && c->kept_count)) {
        ps_ref_kv_cache_destroy(c);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    *out = c;
    return PS_OK;
}

void ps_ref_kv_cache_destroy(ps_ref_kv_cache *c)
{
    if (!c)
        return;
    free(c->k);
    free(c->v);
    free(c->scores);
    free(c->kept);
    free(c->kept_count);
    stats_free(&c->stats);
    free(c);
}

/* Unpacks the a->n_k rows of k and v (a: the cache's descriptor for them)
 * into positions [n, n + a->n_k) of every head. */
static ps_status store_rows(ps_ref_kv_cache *c, const ps_attention_desc *a, const void *k,
                            const void *v)
{
    const size_t m = a->n_k, d = a->d, dv = a->d_v, cap = c->p.capacity;
    float *kd = ps_malloc(ps_desc_k_elems(a) * sizeof *kd);
    float *vd = ps_malloc(ps_desc_v_elems(a) * sizeof *vd);
    if (kd && vd) {
        ps_layout_to_f32(a, PS_TENSOR_K, k, kd);
        ps_layout_to_f32(a, PS_TENSOR_V, v, vd);
        for (size_t h = 0; h < c->p.rows; h++) {
            memcpy(c->k + (h * cap + c->n) * d, kd + h * m * d, m * d * sizeof *kd);
            memcpy(c->v + (h * cap + c->n) * dv, vd + h * m * dv, m * dv * sizeof *vd);
        }
    }
    const ps_status st = kd && vd ? PS_OK : PS_ERR_OUT_OF_HOST_MEMORY;
    free(kd);
    free(vd);
    return st;
}

/* Scores all c->n cached keys afresh and selects as the plan's selection
 * does, with target(n) keys besides the forced ones; the kept set is the
 * selected keys that are not forced. On failure nothing changes. */
static ps_status full_rescore(ps_ref_kv_cache *c)
{
    const size_t n = c->n, rows = c->p.rows, cap = c->p.capacity, d = c->r.d;
    if (!c->p.scored || n == 0)
        return PS_OK;
    ps_attention_desc s = c->r; /* the cached keys in place: head h at row h * capacity */
    s.n_k = n;
    s.causal = 0;
    s.global_keys = 0;
    ps_ref_plain_layouts(&s);
    s.k_layout.stride[0] = c->r.kv_heads * cap * d;
    s.k_layout.stride[1] = cap * d;
    s.k_layout.stride[2] = d;
    s.k_layout.stride[3] = 1;
    ps_select_params sp;
    ps_select_params_from_desc(&s, &sp); /* forced does not depend on the budget */
    s.budget = ps_kv_target(&c->p, n) + sp.forced;
    ps_select_params_from_desc(&s, &sp);

    ps_ref_score_stats stats;
    ps_status st = stats_alloc(&c->r, rows, &stats);
    float *scores = ps_malloc(rows * n * sizeof *scores);
    uint32_t *idx = ps_malloc(rows * sp.capacity * sizeof *idx);
    uint32_t *counts = ps_malloc(rows * sizeof *counts);
    if (st == PS_OK && !(scores && idx && counts))
        st = PS_ERR_OUT_OF_HOST_MEMORY;
    if (st == PS_OK)
        st = ps_ref_score_keys_stats(&s, c->k, scores, &stats);
    if (st == PS_OK)
        st = ps_ref_select_keys(&s, scores, idx, counts);
    if (st == PS_OK) {
        const ps_kv_span span = ps_kv_span_at(&c->p, n);
        for (size_t h = 0; h < rows; h++) {
            memcpy(c->scores + h * cap, scores + h * n, n * sizeof *scores);
            size_t m = 0;
            for (size_t j = 0; j < counts[h]; j++) {
                const uint32_t pos = idx[h * sp.capacity + j];
                if (pos >= span.sink_len && pos < span.win_start)
                    c->kept[h * c->p.kept_capacity + m++] = pos;
            }
            c->kept_count[h] = m;
        }
        stats_free(&c->stats);
        c->stats = stats;
        c->n_scored = n;
    } else {
        stats_free(&stats);
    }
    free(scores);
    free(idx);
    free(counts);
    return st;
}

/* Scores of the new positions [n0, n1): against the last full scoring's
 * statistics, 0 before any (every candidate is admitted then). */
static void score_new(ps_ref_kv_cache *c, size_t n0, size_t n1)
{
    const size_t cap = c->p.capacity, d = c->r.d;
    for (size_t h = 0; h < c->p.rows; h++)
        for (size_t pos = n0; pos < n1; pos++) {
            const float *key = c->k + (h * cap + pos) * d;
            c->scores[h * cap + pos] =
                c->n_scored ? ps_ref_score_key(&c->stats, c->r.score, h, key, d) : 0.0f;
        }
}

/* Position pos of head h leaves the window: it joins the kept set while the
 * set is below the target t, else it replaces the weakest kept key (lowest
 * score order, the later one among equals) if it ranks strictly above it.
 * Kept positions all lie before pos, so appending keeps the set ascending. */
static void admit_one(ps_ref_kv_cache *c, size_t h, uint32_t pos, size_t t)
{
    uint32_t *set = c->kept + h * c->p.kept_capacity;
    const float *sc = c->scores + h * c->p.capacity;
    size_t *count = &c->kept_count[h];
    if (*count < t) {
        set[(*count)++] = pos;
        return;
    }
    if (*count == 0)
        return;
    size_t weak = 0;
    uint32_t weak_key = ps_select_key_bits(sc[set[0]]);
    for (size_t j = 1; j < *count; j++) {
        const uint32_t key = ps_select_key_bits(sc[set[j]]);
        if (key <= weak_key) {
            weak = j;
            weak_key = key;
        }
    }
    if (ps_select_key_bits(sc[pos]) <= weak_key)
        return;
    memmove(set + weak, set + weak + 1, (*count - weak - 1) * sizeof *set);
    set[*count - 1] = pos;
}

/* The keys that left the window between lengths n0 and n1, in order, each
 * under the target of the length at which it left. */
static void admit(ps_ref_kv_cache *c, size_t n0, size_t n1)
{
    if (!c->p.scored)
        return;
    const ps_kv_span s0 = ps_kv_span_at(&c->p, n0), s1 = ps_kv_span_at(&c->p, n1);
    const size_t lo = s0.win_start > s1.sink_len ? s0.win_start : s1.sink_len;
    for (size_t pos = lo; pos < s1.win_start; pos++) {
        const size_t t = ps_kv_target(&c->p, ps_kv_leave_length(&c->p, pos));
        for (size_t h = 0; h < c->p.rows; h++)
            admit_one(c, h, (uint32_t)pos, t);
    }
}

ps_status ps_ref_kv_cache_append(ps_ref_kv_cache *c, const void *k, const void *v,
                                 size_t n_new)
{
    if (!c || !k || !v || n_new == 0 || n_new > c->p.capacity - c->n)
        return PS_ERR_INVALID_ARGUMENT;
    ps_attention_desc a = c->desc; /* the layouts, for a tensor of n_new tokens */
    a.n_k = n_new;
    ps_status st = ps_attention_desc_validate(&a, NULL, 0);
    if (st == PS_OK)
        st = store_rows(c, &a, k, v);
    if (st != PS_OK)
        return st;
    const size_t n0 = c->n, n1 = n0 + n_new;
    c->n = n1;
    if (ps_kv_rescore_due(&c->p, n1, c->n_scored)) {
        st = full_rescore(c);
        if (st != PS_OK)
            c->n = n0; /* the rows past the length are not part of the cache */
        return st;
    }
    score_new(c, n0, n1);
    admit(c, n0, n1);
    return PS_OK;
}

ps_status ps_ref_kv_cache_rescore(ps_ref_kv_cache *c)
{
    return c ? full_rescore(c) : PS_ERR_INVALID_ARGUMENT;
}

/* The positions head h attends at the current length, ascending, into idx
 * [n]: all of them, or the sinks, the kept set and the window. */
static size_t attended(const ps_ref_kv_cache *c, size_t h, int all, uint32_t *idx)
{
    const ps_kv_span s = ps_kv_span_at(&c->p, c->n);
    const size_t sinks = all ? c->n : s.sink_len;
    const size_t kept = all ? 0 : c->kept_count[h];
    size_t m = 0;
    for (size_t pos = 0; pos < sinks; pos++)
        idx[m++] = (uint32_t)pos;
    for (size_t j = 0; j < kept; j++)
        idx[m++] = c->kept[h * c->p.kept_capacity + j];
    for (size_t pos = all ? c->n : s.win_start; pos < c->n; pos++)
        idx[m++] = (uint32_t)pos;
    return m;
}

ps_status ps_ref_kv_cache_decode(const ps_ref_kv_cache *c, const void *q, size_t n_q,
                                 void *o, float *lse, ps_decode_mode mode)
{
    if (!c || !q || !o || n_q == 0 || n_q > c->p.max_queries || c->n == 0 ||
        (mode != PS_DECODE_CACHE && mode != PS_DECODE_EXACT))
        return PS_ERR_INVALID_ARGUMENT;
    ps_attention_desc a = c->desc; /* the layouts, for a tensor of n_q queries */
    a.n_q = n_q;
    ps_status st = ps_attention_desc_validate(&a, NULL, 0);
    if (st != PS_OK)
        return st;
    const ps_attention_desc *r = &c->r;
    const size_t n = c->n, cap = c->p.capacity, group = r->heads / r->kv_heads;
    float *qd = ps_malloc(ps_desc_q_elems(&a) * sizeof *qd);
    float *od = ps_malloc(ps_desc_o_elems(&a) * sizeof *od);
    uint32_t *idx = ps_malloc(n * sizeof *idx);
    double *scores = ps_malloc(n * sizeof *scores), *acc = ps_malloc(r->d_v * sizeof *acc);
    if (!qd || !od || !idx || !scores || !acc) {
        st = PS_ERR_OUT_OF_HOST_MEMORY;
        goto cleanup;
    }
    ps_layout_to_f32(&a, PS_TENSOR_Q, q, qd);
    const int all = mode == PS_DECODE_EXACT || !c->p.scored;
    for (size_t row = 0; row < c->p.rows; row++) {
        const size_t m = attended(c, row, all, idx);
        const float *kh = c->k + row * cap * r->d, *vh = c->v + row * cap * r->d_v;
        const size_t b = row / r->kv_heads, kvh = row % r->kv_heads;
        for (size_t h = kvh * group; h < (kvh + 1) * group; h++) { /* GQA */
            const size_t bh = b * r->heads + h;
            size_t seen = m;
            for (size_t i = n_q; i-- > 0;) { /* query i sees positions <= n - n_q + i */
                while (seen > 0 && (size_t)idx[seen - 1] + n_q > n + i)
                    seen--;
                const float l = ps_ref_attend_row(qd + (bh * n_q + i) * r->d, kh, vh, idx,
                                                  seen, r->d, r->d_v, (double)r->scale,
                                                  scores, acc, od + (bh * n_q + i) * r->d_v);
                if (lse)
                    lse[bh * n_q + i] = l;
            }
        }
    }
    ps_layout_from_f32(&a, PS_TENSOR_O, od, o);
cleanup:
    free(qd);
    free(od);
    free(idx);
    free(scores);
    free(acc);
    return st;
}

ps_status ps_ref_kv_cache_kept(const ps_ref_kv_cache *c, uint32_t *positions,
                               uint32_t *counts)
{
    if (!c || (!positions && c->p.kept_capacity > 0))
        return PS_ERR_INVALID_ARGUMENT;
    const size_t kc = c->p.kept_capacity;
    for (size_t h = 0; h < c->p.rows; h++) {
        for (size_t j = 0; j < kc; j++)
            positions[h * kc + j] = j < c->kept_count[h] ? c->kept[h * kc + j] : UINT32_MAX;
        if (counts)
            counts[h] = (uint32_t)c->kept_count[h];
    }
    return PS_OK;
}

ps_status ps_ref_kv_cache_set_kept(ps_ref_kv_cache *c, const uint32_t *positions,
                                   const uint32_t *counts)
{
    if (!c || !counts || (!positions && c->p.kept_capacity > 0))
        return PS_ERR_INVALID_ARGUMENT;
    const size_t kc = c->p.kept_capacity;
    const ps_kv_span s = ps_kv_span_at(&c->p, c->n);
    for (size_t h = 0; h < c->p.rows; h++) { /* all checked before anything changes */
        if (counts[h] > kc)
            return PS_ERR_INVALID_ARGUMENT;
        for (size_t j = 0; j < counts[h]; j++) {
            const uint32_t pos = positions[h * kc + j];
            if (pos < s.sink_len || pos >= s.win_start ||
                (j > 0 && pos <= positions[h * kc + j - 1]))
                return PS_ERR_INVALID_ARGUMENT;
        }
    }
    for (size_t h = 0; h < c->p.rows; h++) {
        memcpy(c->kept + h * kc, positions + h * kc, counts[h] * sizeof *positions);
        c->kept_count[h] = counts[h];
    }
    return PS_OK;
}

size_t ps_ref_kv_cache_length(const ps_ref_kv_cache *c)
{
    return c ? c->n : 0;
}

size_t ps_ref_kv_cache_kept_capacity(const ps_ref_kv_cache *c)
{
    return c ? c->p.kept_capacity : 0;
}
