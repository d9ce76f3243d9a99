/* The weighted selection on the device (PS_SELECTION_WEIGHTED,
 * docs/SELECT.md): the heavy keys, the draw priorities, the top-m select
 * of lib/select.c over them, and each kept key's log-weight. What a head
 * keeps and the weights are defined in lib/core/select_params.h and
 * cl/select_common.h, shared with ps_ref_select_keys_weighted. */
#ifndef PRESCORE_SELECT_WEIGHTED_H
#define PRESCORE_SELECT_WEIGHTED_H

#include "internal.h"

/* Creates plan->weighted (kernels, workspace) for a resolved descriptor with
 * selection WEIGHTED; called by ps_plan_create after ps_select_setup. */
ps_status ps_select_weighted_setup(ps_plan *plan);
/* Releases plan->weighted; safe when setup failed half-way or never ran. */
void ps_select_weighted_release(ps_plan *plan);

/* Enqueues the weighted selection without waiting: rank [heads][n_k] float
 * in (what ranks the heavy keys: the key scores, or a query sketch's mass),
 * indices [heads][capacity] uint, counts [heads] uint and weights
 * [heads][capacity] float (natural log; 0 past a head's count; NULL: the
 * stage's own buffer) out. Buffers are sized by the caller; nothing is
 * validated here. */
ps_status ps_select_weighted_enqueue(ps_plan *plan, cl_mem rank, cl_mem indices,
                                     cl_mem counts, cl_mem weights);

#endif
