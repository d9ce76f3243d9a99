/* Reference of the causal recursion (any approximate method): see causal_ref.h. */
#include "causal_ref.h"

#include "prescore/prescore_ref.h"

#include "core/desc.h"
#include "core/host_alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct causal_ref {
    ps_attention_desc d;
    const float *q, *k, *v;
    float *o, *lse;
    float *qc, *kc, *vc, *oc, *lsec; /* compact sub-range copies */
    size_t off;  /* n_k - n_sq: key row of square position 0 */
    size_t qoff; /* n_q - n_sq: query row of square position 0 (rows before see no key) */
} causal_ref;

/* Rows [r0, r0 + cnt) of every head of x [heads][n][w] -> y [heads][cnt][w]. */
static void take(const float *x, float *y, size_t heads, size_t n, size_t r0, size_t cnt,
                 size_t w)
{
    for (size_t h = 0; h < heads; h++)
        memcpy(y + h * cnt * w, x + (h * n + r0) * w, cnt * w * sizeof *x);
}

static void put(const float *y, float *x, size_t heads, size_t n, size_t r0, size_t cnt,
                size_t w)
{
    for (size_t h = 0; h < heads; h++)
        memcpy(x + (h * n + r0) * w, y + h * cnt * w, cnt * w * sizeof *x);
}

/* Q rows [q0, q0 + nq) of the square and K/V rows [k0, k0 + nk) (absolute)
 * into the copies. */
static void gather(causal_ref *c, size_t q0, size_t nq, size_t k0, size_t nk)
{
    const ps_attention_desc *d = &c->d;
    const size_t qh = d->batch * d->heads, kh = d->batch * d->kv_heads;
    take(c->q, c->qc, qh, d->n_q, c->qoff + q0, nq, d->d);
    take(c->k, c->kc, kh, d->n_k, k0, nk, d->d);
    take(c->v, c->vc, kh, d->n_k, k0, nk, d->d_v);
}

/* Log-sum-exp merge of (oc, lsec), `count` rows, into square rows
 * [row0, row0 + count). */
static void merge_into(causal_ref *c, size_t row0, size_t count)
{
    const ps_attention_desc *d = &c->d;
    const size_t qh = d->batch * d->heads, n = d->n_q;
    row0 += c->qoff;
    for (size_t h = 0; h < qh; h++)
        for (size_t i = 0; i < count; i++) {
            const size_t r1 = h * n + row0 + i, r2 = h * count + i;
            const double l1 = c->lse[r1], l2 = c->lsec[r2];
            const double m = l1 > l2 ? l1 : l2;
            const double w1 = exp(l1 - m), w2 = exp(l2 - m), sum = w1 + w2;
            float *a = c->o + r1 * d->d_v;
            const float *b = c->oc + r2 * d->d_v;
            for (size_t col = 0; col < d->d_v; col++)
                a[col] = (float)((w1 * a[col] + w2 * b[col]) / sum);
            c->lse[r1] = (float)(m + log(sum));
        }
}

/* Rows before the square see no key: O = 0, LSE = -inf. */
static void empty_rows(causal_ref *c)
{
    const ps_attention_desc *d = &c->d;
    for (size_t h = 0; h < d->batch * d->heads; h++)
        for (size_t r = 0; r < c->qoff; r++) {
            memset(c->o + (h * d->n_q + r) * d->d_v, 0, d->d_v * sizeof(float));
            c->lse[h * d->n_q + r] = -INFINITY;
        }
}

static ps_status leaf(causal_ref *c, size_t lo, size_t hi)
{
    const ps_attention_desc *d = &c->d;
    const size_t cnt = hi - lo, qh = d->batch * d->heads;
    ps_attention_desc s = *d;
    ps_desc_part_method(&s, PS_METHOD_EXACT);
    s.causal = 1;
    s.n_q = s.n_k = cnt;
    s.budget = 0;
    s.clusters = 0;
    s.check_finite = 0; /* a part: ps_ref_attention checks the inputs and the outputs */
    gather(c, lo, cnt, c->off + lo, cnt);
    ps_status st = ps_ref_exact_attention(&s, c->qc, c->kc, c->vc, c->oc, c->lsec);
    if (st != PS_OK)
        return st;
    if (c->off) {
        merge_into(c, lo, cnt);
        return PS_OK;
    }
    put(c->oc, c->o, qh, d->n_q, c->qoff + lo, cnt, d->d_v);
    put(c->lsec, c->lse, qh, d->n_q, c->qoff + lo, cnt, 1);
    return PS_OK;
}

static ps_status quarter(causal_ref *c, size_t lo, size_t mid, size_t hi, uint64_t node)
{
    const size_t nq = hi - mid, nk = mid - lo;
    ps_attention_desc s;
    ps_status st = ps_causal_node_desc(&c->d, nq, c->off + lo, nk, node, &s);
    if (st != PS_OK)
        return st;
    gather(c, mid, nq, c->off + lo, nk);
    st = ps_ref_pipeline(&s, c->qc, c->kc, c->vc, c->oc, c->lsec);
    if (st != PS_OK)
        return st;
    merge_into(c, mid, nq);
    return PS_OK;
}

/* Keys [0, off), seen by every query: exact below min_seq_len keys, else the
 * non-causal pipeline of node 0; written into o/lse. */
static ps_status prefix(causal_ref *c)
{
    const ps_attention_desc *d = &c->d;
    const size_t nk = c->off, nq = d->n_q;
    gather(c, 0, 0, 0, nk);
    if (nk < d->min_seq_len) {
        ps_attention_desc s = *d;
        ps_desc_part_method(&s, PS_METHOD_EXACT);
        s.causal = 0;
        s.n_k = nk;
        s.budget = 0;
        s.clusters = 0;
        s.global_keys = 0;
        s.check_finite = 0; /* a part, as in leaf() */
        return ps_ref_exact_attention(&s, c->q, c->kc, c->vc, c->o, c->lse);
    }
    ps_attention_desc s;
    ps_status st = ps_causal_node_desc(d, nq, 0, nk, 0, &s);
    if (st != PS_OK)
        return st;
    return ps_ref_pipeline(&s, c->q, c->kc, c->vc, c->o, c->lse);
}

static ps_status visit(void *user, const ps_causal_part *part)
{
    causal_ref *c = user;
    if (!part->quarter)
        return leaf(c, part->lo, part->hi);
    return quarter(c, part->lo, part->mid, part->hi, part->node);
}

ps_status ps_ref_causal(const ps_attention_desc *desc, const float *q, const float *k,
                        const float *v, float *o, float *lse)
{
    causal_ref c;
    memset(&c, 0, sizeof c);
    ps_status st = ps_attention_desc_resolve(desc, &c.d, NULL, 0);
    if (st != PS_OK)
        return st;
    if (!q || !k || !v || !o)
        return PS_ERR_INVALID_ARGUMENT;
    const ps_attention_desc *d = &c.d;
    if (!d->causal)
        return PS_ERR_UNSUPPORTED;
    /* The square: the last n_sq queries against the last n_sq keys. */
    const size_t n_sq = d->n_q < d->n_k ? d->n_q : d->n_k;
    if (n_sq <= d->min_seq_len) { /* few queries or keys: exact, prefix included */
        ps_attention_desc e = *d;
        ps_desc_part_method(&e, PS_METHOD_EXACT);
        return ps_ref_exact_attention(&e, q, k, v, o, lse);
    }
    const size_t n = d->n_q, qh = d->batch * d->heads, kh = d->batch * d->kv_heads;
    const size_t cap = d->n_k; /* covers the halves, the prefix and all queries */
    c.off = d->n_k - n_sq;
    c.qoff = d->n_q - n_sq;
    c.q = q;
    c.k = k;
    c.v = v;
    c.o = o;
    c.lse = lse ? lse : ps_malloc(qh * n * sizeof(float));
    c.qc = ps_malloc(qh * cap * d->d * sizeof(float));
    c.kc = ps_malloc(kh * cap * d->d * sizeof(float));
    c.vc = ps_malloc(kh * cap * d->d_v * sizeof(float));
    c.oc = ps_malloc(qh * cap * d->d_v * sizeof(float));
    c.lsec = ps_malloc(qh * cap * sizeof(float));
    if (!c.lse || !c.qc || !c.kc || !c.vc || !c.oc || !c.lsec)
        st = PS_ERR_OUT_OF_HOST_MEMORY;
    else {
        empty_rows(&c);
        st = c.off ? prefix(&c) : PS_OK;
        if (st == PS_OK)
            st = ps_causal_walk(n_sq, d->min_seq_len, visit, &c, NULL);
    }
    if (!lse)
        free(c.lse);
    free(c.qc);
    free(c.kc);
    free(c.vc);
    free(c.oc);
    free(c.lsec);
    return st;
}
