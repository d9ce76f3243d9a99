/* The dropped-key residual (docs/HYPER.md "Dropped-key residual"), pure C:
 * when a PRESCORE plan's kept keys, less its global keys, fit in one block,
 * HyperAttention over them is exact and its residual would find no key
 * outside the block; the plan spends the residual's s samples on the keys
 * the selection dropped instead. Derived once from a resolved descriptor and
 * shared by the device stage (lib/hyper.c, lib/pipeline.c) and the host
 * reference (lib/ref/attention.c), so both make the same choice.
 *
 * Per KV head, C keys kept (every head keeps exactly C) of n_k, nd = n_k - C
 * dropped; per query head draws = min(s, nd) of them (ps_dropped_rank, a
 * systematic sample: each dropped key with probability draws / nd). Two
 * unbiased estimates of the dropped keys' share then exist: the drawn keys,
 * each standing for nd / draws, and (weighted selections) the kept keys'
 * log-weights, each drawn kept key standing for w - 1 dropped keys beside
 * itself. They are mixed: a kept key's weight w becomes 1 + a (w - 1), a
 * dropped draw's nd (1 - a) / draws, with a = S / (S + draws) for the S
 * keys the selection drew (0 for top-m, whose kept keys stand for
 * themselves): each estimate in proportion to the keys it rests on. */
#ifndef PRESCORE_CORE_DROPPED_PARAMS_H
#define PRESCORE_CORE_DROPPED_PARAMS_H

#include "core/desc.h"
#include "core/select_params.h"

#include <math.h>
#include <string.h>

typedef struct ps_dropped_params {
    int active;        /* the plan draws dropped keys for its residual */
    size_t kept;       /* C: kept rows per KV head (the selection's index rows) */
    size_t dropped;    /* nd = n_k - C */
    size_t draws;      /* per query head: min(s, nd) */
    double keep_mix;   /* a: a kept key's weight w becomes 1 + a (w - 1) */
    double log_weight; /* ln(nd (1 - a) / draws), natural log, every draw */
} ps_dropped_params;

static inline void ps_dropped_params_from_desc(const ps_attention_desc *d, ps_dropped_params *p)
{
    memset(p, 0, sizeof *p);
    if (d->method != PS_METHOD_PRESCORE || d->samples == 0)
        return;
    ps_select_params sp;
    ps_select_params_from_desc(d, &sp);
    const size_t g = d->global_keys < sp.capacity ? d->global_keys : sp.capacity;
    if (sp.capacity >= d->n_k || sp.capacity - g > d->block)
        return;
    p->active = 1;
    p->kept = sp.capacity;
    p->dropped = d->n_k - sp.capacity;
    p->draws = d->samples < p->dropped ? d->samples : p->dropped;
    const size_t drawn_kept = ps_selection_weighted(d->selection)
                                  ? sp.extra - ps_select_heavy_count(&sp, d->global_keys)
                                  : 0;
    p->keep_mix = (double)drawn_kept / (double)(drawn_kept + p->draws);
    p->log_weight = log((double)p->dropped * (1.0 - p->keep_mix) / (double)p->draws);
}

/* A kept key's log-weight lw (natural log) once mixed: ln(1 + a (e^lw - 1)). */
static inline double ps_dropped_kept_log_weight(const ps_dropped_params *p, double lw)
{
    return log1p(p->keep_mix * expm1(lw));
}

#endif
