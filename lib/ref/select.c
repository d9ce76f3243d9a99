/* Reference key selection on the host: the definition the device stage is
 * tested against (semantics and NaN policy in lib/core/select_params.h). Per head: mark the
 * forced positions, rank the others by (score key descending, position
 * ascending), keep the best `extra`, and list the kept positions in order.
 * The weighted selection keeps the top-scored `heavy` of the others and
 * draws the rest by Philox priority through the same top-m, then gives each
 * kept key its log-weight; the stratified one draws a systematic sample per
 * k-means cluster instead. */
#include "prescore/prescore_ref.h"

#include "core/desc.h"
#include "core/select_params.h"
#include "core/host_alloc.h"

#include <math.h>
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

/* prio [heads][n]: the draw priority of every key, PS_SELECT_HEAVY_PRIORITY
 * for the `heavy` top-ranked non-forced keys of each head (rank: the scores
 * or a query sketch's mass). */
static ps_status heavy_priorities(const ps_attention_desc *d, const ps_select_params *p,
                                  size_t heavy, const float *rank, float *prio)
{
    ref_candidate *cand = ps_malloc((p->n - p->forced + 1) * sizeof *cand);
    if (!cand)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    for (size_t h = 0; h < p->heads; h++) {
        float *ph = prio + h * p->n;
        size_t nc = 0;
        for (size_t i = 0; i < p->n; i++) {
            ph[i] = ps_select_draw_priority(d->seed, (uint32_t)h, (uint32_t)i);
            if (!ps_select_is_forced(p, i)) {
                cand[nc].key = ps_select_key_bits(rank[h * p->n + i]);
                cand[nc].pos = (uint32_t)i;
                nc++;
            }
        }
        qsort(cand, nc, sizeof *cand, by_rank); /* the heavy keys: the top-ranked */
        for (size_t j = 0; j < heavy; j++)
            ph[cand[j].pos] = PS_SELECT_HEAVY_PRIORITY;
    }
    free(cand);
    return PS_OK;
}

/* Whether kept position pos is a drawn key: not forced, not heavy. */
static int is_drawn(const ps_select_params *p, const float *ph, uint32_t pos)
{
    return pos < p->n && !ps_select_is_forced(p, pos) && ph[pos] != PS_SELECT_HEAVY_PRIORITY;
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
    float *prio = ps_malloc(p.heads * p.n * sizeof *prio);
    if (!prio)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    st = heavy_priorities(&d, &p, heavy, scores, prio);
    if (st == PS_OK)
        st = ps_ref_select_keys(desc, prio, indices, counts);
    for (size_t h = 0; st == PS_OK && h < p.heads; h++)
        for (size_t i = 0; i < p.capacity; i++) {
            const uint32_t pos = indices[h * p.capacity + i];
            weights[h * p.capacity + i] =
                i < counts[h] && is_drawn(&p, prio + h * p.n, pos) ? drawn_log_weight : 0.0f;
        }
    free(prio);
    return st;
}

/* Head h of a stratified draw (cl/select_common.h ps_strata_*): turns the
 * priorities ph into 2 (heavy), 1 (drawn) or 0, and sets cweight [clusters]
 * to each cluster's log-weight. pool, alloc: [clusters] scratch. */
static void strata_head(const ps_attention_desc *d, const ps_select_params *p, size_t h,
                        size_t drawn, const uint32_t *ah, float *ph, uint32_t *pool,
                        uint32_t *alloc, float *cweight)
{
    const size_t clusters = d->clusters;
    uint64_t total = 0, given = 0;
    for (size_t c = 0; c < clusters; c++)
        pool[c] = 0;
    for (uint32_t i = 0; i < p->n; i++)
        if (is_drawn(p, ph, i))
            pool[ah[i] < clusters ? ah[i] : clusters - 1]++;
    for (size_t c = 0; c < clusters; c++)
        total += pool[c];
    for (size_t c = 0; c < clusters; c++)
        given += total ? (uint64_t)drawn * pool[c] / total : 0;
    for (size_t c = 0; c < clusters; c++) {
        alloc[c] = 0;
        cweight[c] = 0.0f;
        if (total == 0)
            continue;
        const uint64_t rem = (uint64_t)drawn * pool[c] % total;
        uint64_t above = 0;
        for (size_t j = 0; j < clusters; j++)
            above += ps_strata_outranks((uint64_t)drawn * pool[j] % total, (uint32_t)j, rem,
                                        (uint32_t)c);
        alloc[c] = (uint32_t)((uint64_t)drawn * pool[c] / total) + (above < drawn - given);
        cweight[c] = alloc[c] ? logf((float)pool[c] / (float)alloc[c]) : 0.0f;
    }
    /* Pool key number t of each cluster, in position order. */
    uint32_t *seen = pool + clusters; /* the second half of the scratch */
    for (size_t c = 0; c < clusters; c++)
        seen[c] = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        if (!is_drawn(p, ph, i)) {
            ph[i] = ph[i] == PS_SELECT_HEAVY_PRIORITY ? PS_SELECT_HEAVY_PRIORITY : 0.0f;
            continue;
        }
        const size_t c = ah[i] < clusters ? ah[i] : clusters - 1;
        const uint32_t phase = ps_strata_phase(d->seed, (uint32_t)h, (uint32_t)c, pool[c]);
        ph[i] = ps_strata_keep(seen[c]++, alloc[c], pool[c], phase) ? 1.0f : 0.0f;
    }
}

ps_status ps_ref_select_keys_stratified(const ps_attention_desc *desc, const float *rank,
                                        const uint32_t *assign, uint32_t *indices,
                                        uint32_t *counts, float *weights)
{
    ps_attention_desc d;
    ps_status st = ps_attention_desc_resolve(desc, &d, NULL, 0);
    if (st != PS_OK)
        return st;
    if (!rank || !assign || !indices || !counts || !weights || d.clusters == 0)
        return PS_ERR_INVALID_ARGUMENT;

    ps_select_params p;
    ps_select_params_from_desc(&d, &p);
    const size_t heavy = ps_select_heavy_count(&p, d.global_keys), drawn = p.extra - heavy;
    float *prio = ps_malloc(p.heads * p.n * sizeof *prio);
    float *cweight = ps_malloc(p.heads * d.clusters * sizeof *cweight);
    uint32_t *scratch = ps_malloc(2 * d.clusters * sizeof *scratch);
    uint32_t *alloc = ps_malloc(d.clusters * sizeof *alloc);
    if (!prio || !cweight || !scratch || !alloc) {
        st = PS_ERR_OUT_OF_HOST_MEMORY;
        goto done;
    }
    st = heavy_priorities(&d, &p, heavy, rank, prio);
    for (size_t h = 0; st == PS_OK && h < p.heads; h++)
        strata_head(&d, &p, h, drawn, assign + h * p.n, prio + h * p.n, scratch, alloc,
                    cweight + h * d.clusters);
    if (st == PS_OK)
        st = ps_ref_select_keys(desc, prio, indices, counts);
    for (size_t h = 0; st == PS_OK && h < p.heads; h++)
        for (size_t i = 0; i < p.capacity; i++) {
            const uint32_t pos = indices[h * p.capacity + i];
            const int kept_drawn = i < counts[h] && pos < p.n && prio[h * p.n + pos] == 1.0f;
            const uint32_t c = kept_drawn ? assign[h * p.n + pos] : 0;
            weights[h * p.capacity + i] =
                kept_drawn ? cweight[h * d.clusters + (c < d.clusters ? c : d.clusters - 1)]
                           : 0.0f;
        }
done:
    free(prio);
    free(cweight);
    free(scratch);
    free(alloc);
    return st;
}
