/* Exact attention on the device: plan setup and the enqueue of the
 * flash-style kernel in the context's shape. */
#ifndef PRESCORE_EXACT_H
#define PRESCORE_EXACT_H

#include "internal.h"

/* Creates the plan's kernels and workspace for exact attention. */
ps_status ps_exact_setup(ps_plan *plan);
void ps_exact_release(ps_plan *plan);

/* Enqueues exact attention on the context's in-order queue (buffers
 * validated by the public entry point); q, k, v, o in any view, lse dense
 * fp32 or NULL. */
ps_status ps_exact_enqueue(ps_plan *plan, const ps_tensor *q, const ps_tensor *k,
                           const ps_tensor *v, const ps_tensor *o, cl_mem lse);

/* The same with a shape override (internal: the causal recursion runs exact
 * attention on compact sub-ranges, the global keys on their rows): `shape`
 * is the plan's descriptor with n_q <= plan n_q, n_k <= plan n_k and
 * possibly another causal flag; the views address shape->n_q / shape->n_k
 * rows per head; k's storage type must be the plan's (the transposed-key
 * workspace is sized for it). */
ps_status ps_exact_enqueue_shape(ps_plan *plan, const ps_attention_desc *shape,
                                 const ps_tensor *q, const ps_tensor *k, const ps_tensor *v,
                                 const ps_tensor *o, cl_mem lse);

#endif
