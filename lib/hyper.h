/* The hyper stage on the device: HyperAttention's blocked diagonal attention,
 * residual sampling, log-sum-exp merge and unsort (non-causal), given the LSH
 * sort permutations. Definitions and layouts: docs/HYPER.md. */
#ifndef PRESCORE_HYPER_H
#define PRESCORE_HYPER_H

#include "internal.h"

/* Creates plan->hyper (kernels, workspace) for the plan's resolved descriptor;
 * called by ps_plan_create when the method needs the stage. The workspace is
 * sized for the key set of the plan's method (ps_candidate_count: n_k for
 * HYPER, the selection's capacity for PRESCORE), the most any enqueue may
 * pass. */
ps_status ps_hyper_setup(ps_plan *plan);
/* Releases plan->hyper; safe when setup failed half-way or never ran. */
void ps_hyper_release(ps_plan *plan);

/* Enqueues the stage on the context's (in-order) queue; does not wait and
 * validates nothing (the callers, lib/pipeline.c and the node plans of
 * lib/causal.c, pass tensors sized from the plan).
 * @param q       [batch][heads][n_q][d], any view
 * @param k, v    [batch][kv_heads][n_k_used][d] and [..][d_v], any view: the
 *                key set, all n_k keys or a compact selected subset; their
 *                storage types must be the plan's K and V types (the sorted
 *                and sampled copies are sized for them)
 * @param key_bias NULL or [batch * kv_heads][n_k_used] float: a weighted key
 *                set, key j's log-weight (natural log, key row order) added
 *                to its score everywhere (docs/HYPER.md)
 * @param n_k_used keys per KV head, 1 <= n_k_used <= ps_candidate_count; blocks of b
 *                 and the residual weight n_k_used / s refer to it
 * @param perm_q  [batch * heads][n_q] uint32: original query row at sorted
 *                position p of that query head (a permutation of 0..n_q-1)
 * @param perm_k  [batch * kv_heads][n_k_used] uint32: key row (0..n_k_used-1)
 *                at sorted position p of that KV head
 * @param o       [batch][heads][n_q][d_v], any view, original query order
 * @param lse     NULL or [batch][heads][n_q] float, natural log
 * @return PS_OK or an OpenCL status (message on the plan) */
ps_status ps_hyper_enqueue(ps_plan *plan, const ps_tensor *q, const ps_tensor *k,
                           const ps_tensor *v, cl_mem key_bias, size_t n_k_used, cl_mem perm_q,
                           cl_mem perm_k, const ps_tensor *o, cl_mem lse);

/* Whether the plan has the dropped-key residual (core/dropped_params.h,
 * docs/HYPER.md): its key set is one block and the residual's samples are
 * draws of the keys the selection dropped. */
int ps_hyper_draws_dropped(const ps_plan *plan);

/* Enqueues the dropped-key residual's draws from the full key set, for the
 * next ps_hyper_enqueue calls on the plan (which then draw no samples).
 * @param k, v  [batch][kv_heads][n_k][d | d_v], any view: all keys, in the
 *              plan's K and V types
 * @param kept  [batch * kv_heads][C] uint32: the selection's kept rows,
 *              ascending (C = the selection's capacity) */
ps_status ps_hyper_draw_dropped_enqueue(ps_plan *plan, const ps_tensor *k, const ps_tensor *v,
                                        cl_mem kept);

#endif
