/* Exact attention on the device: plan setup and the enqueue of the
 * flash-style kernel in the context's shape. */
#ifndef PRESCORE_EXACT_H
#define PRESCORE_EXACT_H

#include "internal.h"

/* Creates the plan's kernels and workspace for exact attention. */
ps_status ps_exact_setup(ps_plan *plan);
void ps_exact_release(ps_plan *plan);

/* Enqueues exact attention on the context's in-order queue (buffers
 * validated by the public entry point). */
ps_status ps_exact_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                           cl_mem lse);

/* The same with a shape override (internal: the causal recursion runs exact
 * attention on compact sub-ranges): `shape` is the plan's descriptor with
 * n_q <= plan n_q, n_k <= plan n_k and possibly another causal flag; the
 * buffers hold shape->n_q / shape->n_k rows per head. */
ps_status ps_exact_enqueue_shape(ps_plan *plan, const ps_attention_desc *shape, cl_mem q,
                                 cl_mem k, cl_mem v, cl_mem o, cl_mem lse);

#endif
