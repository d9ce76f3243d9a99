/* The select stage (pipeline steps 2 and 3) on the device: plan state, setup
 * and enqueue. What each head keeps, and the score order, are defined in
 * lib/core/select_params.h, shared with the host reference. */
#ifndef PRESCORE_SELECT_H
#define PRESCORE_SELECT_H

#include "internal.h"

#include "core/select_params.h"

/* Creates plan->select (kernels, workspace) for the plan's resolved descriptor;
 * called by ps_plan_create when the method needs the stage. */
ps_status ps_select_setup(ps_plan *plan);
/* Releases plan->select; safe when setup failed half-way or never ran. */
void ps_select_release(ps_plan *plan);

/* Enqueues the selection on the context's (in-order) queue without waiting;
 * buffers already validated: scores [heads][n_k] float, indices
 * [heads][capacity] uint, counts [heads] uint. */
ps_status ps_select_enqueue(ps_plan *plan, cl_mem scores, cl_mem indices, cl_mem counts);

/* ps_select_enqueue keeping only the `ranked` best non-forced keys (at most
 * the plan's extra): indices [heads][forced + ranked], the forced keys
 * included, ascending. The weighted selection's heavy keys. */
ps_status ps_select_enqueue_top(ps_plan *plan, cl_mem scores, size_t ranked, cl_mem indices,
                                cl_mem counts);

/* Enqueues the gather of the selected rows without waiting:
 * k [heads][n_k][d], v [heads][n_k][d_v] (any views) -> k_sel
 * [heads][capacity][d], v_sel [heads][capacity][d_v], dense and in k's and
 * v's storage types; rows past a head's count (or whose index is not below
 * n_k) are zero. Buffers are sized by the caller (lib/pipeline.c) from the
 * plan; nothing is validated here. */
ps_status ps_select_gather_enqueue(ps_plan *plan, const ps_tensor *k, const ps_tensor *v,
                                   cl_mem indices, cl_mem counts, cl_mem k_sel, cl_mem v_sel);

#endif
