/* Global keys (docs/GLOBAL.md), part of the non-causal pipeline: the g best
 * of the candidates leave the candidate set before step 4 (the split); every
 * query attends them exactly and the result is merged with step 7's in
 * log-sum-exp space (the merge). */
#ifndef PRESCORE_GLOBAL_H
#define PRESCORE_GLOBAL_H

#include "internal.h"

/* Checks the plan's global keys (ps_global_check) against the n_cand
 * candidates its pipeline sees per KV head and creates plan->global: the
 * split and merge buffers and kernels. Called for pipeline plans with
 * desc.global_keys > 0. */
ps_status ps_global_setup(ps_plan *plan, size_t n_cand);
/* Releases plan->global; safe after a half-done setup or none. */
void ps_global_release(ps_plan *plan);

/* The split: global scores of the candidate rows *keys, *values
 * [batch * kv_heads][*used][d | d_v], any views (from the plan's own selection, `scores`
 * [..][n_k] and `indices` [..][*used], for PRESCORE with global_score =
 * score; NULL otherwise), the pick of the g best and the split of the rows.
 * *weights is NULL or the candidates' log-weights [..][*used] (a weighted
 * selection). On return *keys, *values, *weights, *used are the remaining
 * candidates (the global state's buffers, dense, in the same storage
 * types; *weights stays NULL without weights). */
ps_status ps_global_split_enqueue(ps_plan *plan, cl_mem scores, cl_mem indices,
                                  ps_tensor *keys, ps_tensor *values, cl_mem *weights,
                                  size_t *used);

/* The row LSE the approximate part must write for the merge: the caller's
 * `lse`, or the plan's own when the caller wants none. */
cl_mem ps_global_row_lse(const ps_plan *plan, cl_mem lse);

/* The merge: exact attention of every query over the g global keys of the
 * last split, merged into (o, lse) in log-sum-exp space (lse from
 * ps_global_row_lse). */
ps_status ps_global_merge_enqueue(ps_plan *plan, const ps_tensor *q, const ps_tensor *o,
                                  cl_mem lse);

#endif
