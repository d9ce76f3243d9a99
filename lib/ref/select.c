/* Reference key selection on the host: the definition the device stage is
 * tested against (semantics and NaN policy in lib/core/select_params.h). Per head: mark the
 * forced positions, rank the others by (score key descending, position
 * ascending), keep the best `extra`, and list the kept positions in order.
 * The weighted selection keeps the top-scored `heavy` of the others and
 * draws the rest by Philox priority through the same top-m, then gives each
 * kept key its log-weight. */
#include "prescore/prescore_ref.h"

#include "core/desc.h"
#include "core/select_params.h"
#include "core/host_alloc.h"

#include <stdlib.h>

typedef struct ref_candidate {
    uint32_t key;
    uint32_t pos;
} ref_candidate;

/* Higher key first, then lower position: a total order, so qsort's lack of
 * stability does not matter. */
static int by_rank(const void *a, const void *b)
{
    const ref_candidate *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos ? 1 : 0);
}

ps_status ps_ref_select_keys(const ps_attention_desc *desc, const float *scores,
                             uint32_t *indices, uint32_t *counts)
{
    ps_attention_desc d;
    ps_status st = ps_attention_desc_resolve(desc, &d, NULL, 0);
    if (st != PS_OK)
        return st;
    if (!scores || !indices || !counts)
        return PS_ERR_INVALID_ARGUMENT;

    ps_select_params p;
    ps_select_params_from_desc(&d, &p);
    ref_candidate *cand = ps_malloc((p.n - p.forced + 1) * sizeof *cand);
    unsigned char *kept = ps_malloc(p.n);
    if (!cand || !kept) {
        free(cand);
        free(kept);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    for (size_t h = 0; h < p.heads; h++) {
        const float *s = scores + h * p.n;
        uint32_t *out = indices + h * p.capacity;
        size_t nc = 0;
        for (size_t i = 0; i < p.n; i++) {
            kept[i] = (unsigned char)ps_select_is_forced(&p, i);
            if (!kept[i]) {
                cand[nc].key = ps_select_key_bits(s[i]);
                cand[nc].pos = (uint32_t)i;
                nc++;
            }
        }
        qsort(cand, nc, sizeof *cand, by_rank);
        for (size_t j = 0; j < p.extra; j++)
            kept[cand[j].pos] = 1;
        size_t c = 0;
        for (size_t i = 0; i < p.n; i++)
            if (kept[i])
                out[c++] = (uint32_t)i;
        counts[h] = (uint32_t)c;
        for (; c < p.capacity; c++)
            out[c] = (uint32_t)p.n;
    }
    free(cand);
    free(kept);
    return PS_OK;
}

ps_status ps_ref_select_keys_weighted(const ps_attention_desc *desc, const float *scores,
                                      uint32_t *indices, uint32_t *counts, float *weights)
{
    ps_attention_desc d;
    ps_status st = ps_attention_desc_resolve(desc, &d, NULL, 0);
    if (st != PS_OK)
        return st;
    if (!scores || !indices || !counts || !weights)
        return PS_ERR_INVALID_ARGUMENT;

    ps_select_params p;
    ps_select_params_from_desc(&d, &p);
    const size_t heavy = ps_select_heavy_count(&p, d.global_keys);
    const float drawn_log_weight = (float)ps_select_drawn_log_weight(&p, heavy);
    ref_candidate *cand = ps_malloc((p.n - p.forced + 1) * sizeof *cand);
    float *prio = ps_malloc(p.heads * p.n * sizeof *prio);
    if (!cand || !prio) {
        free(cand);
        free(prio);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    for (size_t h = 0; h < p.heads; h++) {
        float *ph = prio + h * p.n;
        size_t nc = 0;
        for (size_t i = 0; i < p.n; i++) {
            ph[i] = ps_select_draw_priority(d.seed, (uint32_t)h, (uint32_t)i);
            if (!ps_select_is_forced(&p, i)) {
                cand[nc].key = ps_select_key_bits(scores[h * p.n + i]);
                cand[nc].pos = (uint32_t)i;
                nc++;
            }
        }
        qsort(cand, nc, sizeof *cand, by_rank); /* the heavy keys: the top-scored */
        for (size_t j = 0; j < heavy; j++)
            ph[cand[j].pos] = PS_SELECT_HEAVY_PRIORITY;
    }
    st = ps_ref_select_keys(desc, prio, indices, counts);
    for (size_t h = 0; st == PS_OK && h < p.heads; h++)
        for (size_t i = 0; i < p.capacity; i++) {
            const uint32_t pos = indices[h * p.capacity + i];
            const int drawn = i < counts[h] && pos < p.n && !ps_select_is_forced(&p, pos) &&
                              prio[h * p.n + pos] != PS_SELECT_HEAVY_PRIORITY;
            weights[h * p.capacity + i] = drawn ? drawn_log_weight : 0.0f;
        }
    free(cand);
    free(prio);
    return st;
}
