/* The causal recursion (docs/HYPER.md "Causal"): a causal HYPER or PRESCORE
 * plan on PS_PATH_CAUSAL runs exact causal leaves and non-causal nodes, each
 * node a child plan of the non-causal pipeline (lib/pipeline.c) on its own
 * earlier keys, merged into O/LSE in log-sum-exp space (lib/merge.c). */
#ifndef PRESCORE_CAUSAL_H
#define PRESCORE_CAUSAL_H

#include "internal.h"

/* Creates plan->causal: whether the square recurses at all (else the call is
 * exact causal attention over all keys), the node plans, the compact row
 * buffers and the row kernels. */
ps_status ps_causal_setup(ps_plan *plan);
/* Releases plan->causal and the node plans; safe after a half-done setup. */
void ps_causal_release(ps_plan *plan);

/* A whole call: the key half, then the query half (buffers validated). */
ps_status ps_causal_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse);
/* Key reuse: every node's key half, keeping k and v for the leaves ... */
ps_status ps_causal_enqueue_keys(ps_plan *plan, cl_mem k, cl_mem v);
/* ... and the query half against them. */
ps_status ps_causal_enqueue_queries(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse);

#endif
