/* The hyper stage on the device: HyperAttention's blocked diagonal attention,
 * residual sampling, log-sum-exp merge and unsort (non-causal), given the LSH
 * sort permutations. Definitions and layouts: docs/HYPER.md. */
#ifndef PRESCORE_HYPER_H
#define PRESCORE_HYPER_H

#include "internal.h"

/* Creates plan->hyper (kernels, workspace) for the plan's resolved descriptor;
 * called by ps_plan_create when the method needs the stage. The workspace is
 * sized for desc.n_k keys per KV head (the most any enqueue may pass). */
ps_status ps_hyper_setup(ps_plan *plan);
/* Releases plan->hyper; safe when setup failed half-way or never ran. */
void ps_hyper_release(ps_plan *plan);

/* Enqueues the stage on the context's (in-order) queue; does not wait and
 * validates nothing (the callers, lib/pipeline.c and lib/causal.c, pass
 * buffers sized from the plan).
 * @param q       [batch][heads][n_q][d] float
 * @param k, v    [batch][kv_heads][n_k_used][d] and [..][d_v] float: the key
 *                set, all n_k keys or a compact selected subset (n_sel rows
 *                per KV head, the stride between heads is n_k_used rows)
 * @param n_k_used keys per KV head, 1 <= n_k_used <= desc.n_k; blocks of b
 *                 and the residual weight n_k_used / s refer to it
 * @param perm_q  [batch * heads][n_q] uint32: original query row at sorted
 *                position p of that query head (a permutation of 0..n_q-1)
 * @param perm_k  [batch * kv_heads][n_k_used] uint32: key row (0..n_k_used-1)
 *                at sorted position p of that KV head
 * @param o       [batch][heads][n_q][d_v] float, original query order
 * @param lse     NULL or [batch][heads][n_q] float, natural log
 * @return PS_OK or an OpenCL status (message on the context) */
ps_status ps_hyper_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, size_t n_k_used,
                           cl_mem perm_q, cl_mem perm_k, cl_mem o, cl_mem lse);

/* The same with a shape override (internal, for the causal recursion): `shape`
 * is a copy of the plan's descriptor with n_q <= plan n_q, n_k <= plan n_k,
 * causal = 0 and possibly another seed (the residual samples' stream); the
 * buffers then hold shape->n_q query rows per head. */
ps_status ps_hyper_enqueue_shape(ps_plan *plan, const ps_attention_desc *shape, cl_mem q,
                                 cl_mem k, cl_mem v, size_t n_k_used, cl_mem perm_q,
                                 cl_mem perm_k, cl_mem o, cl_mem lse);

#endif
