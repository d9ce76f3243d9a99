/* Selection parameters (pipeline steps 2 and 3), pure C: what every KV head
 * keeps, derived once from a resolved descriptor and shared by the device
 * stage (lib/select.c), the descriptor checks (lib/core/desc.c) and the host
 * reference (lib/ref/select.c), so all three make the same decisions.
 *
 * Semantics, per KV head of n = n_k keys:
 *  - forced keys: positions [0, min(sink, n)) and [n - min(window, n), n);
 *  - capacity C = min(n, max(budget, sink + window)) (saturating);
 *  - kept = forced ∪ the best (C - |forced|) other keys, ranked by score,
 *    higher first, ties to the lower position; so every head keeps exactly C;
 *  - output: kept positions in ascending order, slots [count, C) hold n.
 *
 * Score order (ps_select_key_bits): a float maps to an order-preserving uint,
 * with +0.0 and -0.0 equal and every NaN (any sign, any payload) mapped to 0,
 * below -inf: NaN ranks lowest, ties among NaNs by position. Done on the bits,
 * so it survives -cl-fast-relaxed-math (where isnan() may fold to 0). */
#ifndef PRESCORE_CORE_SELECT_PARAMS_H
#define PRESCORE_CORE_SELECT_PARAMS_H

#include "prescore/types.h"
#include "select_common.h" /* cl/: ps_select_key, shared with the kernels */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The selection parameters of one head, derived from a resolved descriptor. */
typedef struct ps_select_params {
    size_t n;            /* keys per head (n_k) */
    size_t heads;        /* batch * kv_heads */
    size_t capacity;     /* slots per head = keys kept per head */
    size_t sink;         /* forced prefix: positions < sink */
    size_t window_start; /* forced suffix: positions >= window_start */
    size_t forced;       /* |forced| */
    size_t extra;        /* keys chosen by score: capacity - forced */
} ps_select_params;

static inline void ps_select_params_from_desc(const ps_attention_desc *d,
                                              ps_select_params *p)
{
    const size_t n = d->n_k;
    const size_t sw = d->sink > SIZE_MAX - d->window ? SIZE_MAX : d->sink + d->window;
    const size_t want = d->budget > sw ? d->budget : sw;
    p->n = n;
    p->heads = d->batch * d->kv_heads;
    p->capacity = want < n ? want : n;
    p->sink = d->sink < n ? d->sink : n;
    p->window_start = n - (d->window < n ? d->window : n);
    /* The two ranges overlap when sink > window_start. */
    const size_t overlap = p->sink > p->window_start ? p->sink - p->window_start : 0;
    p->forced = p->sink + (n - p->window_start) - overlap;
    p->extra = p->capacity - p->forced; /* forced <= min(n, sink + window) <= capacity */
}

static inline int ps_select_is_forced(const ps_select_params *p, size_t pos)
{
    return pos < p->sink || pos >= p->window_start;
}

/* Order-preserving key of a score (see the header comment): the selection's
 * score order, ps_select_key of cl/select_common.h on the float's bits. */
static inline uint32_t ps_select_key_bits(float score)
{
    uint32_t u;
    memcpy(&u, &score, sizeof u);
    return ps_select_key(u);
}

/* Weighted selection (PS_SELECTION_WEIGHTED, docs/SELECT.md): of a head's
 * keys, the forced ones and `heavy` non-forced ones (the top-scored, at most
 * the plan's global keys) stand for themselves (log-weight 0); the other
 * extra - heavy kept keys are drawn uniformly from the pool of
 * n - forced - heavy keys and each stands for pool / drawn of them. The
 * log-weight of a drawn key; 0 when nothing is drawn. */
static inline double ps_select_drawn_log_weight(const ps_select_params *p, size_t heavy)
{
    const size_t drawn = p->extra - heavy, pool = p->n - p->forced - heavy;
    return drawn ? log((double)pool / (double)drawn) : 0.0;
}

/* Heavy keys a weighted selection keeps per head for g global keys:
 * min(g, extra) (all of the budget when g exceeds it). */
static inline size_t ps_select_heavy_count(const ps_select_params *p, size_t g)
{
    return g < p->extra ? g : p->extra;
}

/* Keys the approximate part of a resolved non-causal descriptor sees per KV
 * head: the selection capacity (PRESCORE) or n_k. */
static inline size_t ps_candidate_count(const ps_attention_desc *d)
{
    if (d->method != PS_METHOD_PRESCORE)
        return d->n_k;
    ps_select_params p;
    ps_select_params_from_desc(d, &p);
    return p.capacity;
}

#endif
