/* The score stage on the device: plan state, setup and enqueue. */
#ifndef PRESCORE_SCORE_H
#define PRESCORE_SCORE_H

#include "internal.h"

#include <stdint.h>

/* Creates plan->score (kernels, workspace) for the plan's resolved descriptor;
 * called by ps_plan_create when the method needs the stage. */
ps_status ps_score_setup(ps_plan *plan);
/* Releases plan->score; safe when setup failed half-way or never ran. */
void ps_score_release(ps_plan *plan);

/* Enqueues the scoring of every KV head on the context's (in-order) queue
 * without waiting; buffers must already be checked.
 * @param k      [batch, kv_heads, n_k, d] through its view (the plan's
 *               k_layout: ps_plan_tensor(plan, PS_TENSOR_K, mem))
 * @param scores [batch, kv_heads, n_k], dense fp32 */
ps_status ps_score_enqueue(ps_plan *plan, const ps_tensor *k, cl_mem scores);

/* After a KMEANS scoring: reads the k-means state of every KV head (blocking)
 * for tests and diagnostics. Any pointer may be NULL.
 * @param seeds     [heads][clusters] k-means++ key indices
 * @param assign    [heads][n_k] final clusters
 * @param centroids [heads][clusters][d]
 * @param inertia   [heads][kmeans_iters + 1] sum of squared distances after
 *                  each assignment step (repeated after an early stop)
 * @param iters_run [heads] last assignment step that ran (0 = initial)
 * heads = batch * kv_heads. PS_ERR_INVALID_ARGUMENT unless the plan scores
 * with KMEANS. */
ps_status ps_score_kmeans_read(ps_plan *plan, uint32_t *seeds, uint32_t *assign,
                               float *centroids, float *inertia, uint32_t *iters_run);

/* The k-means clusters of the last KMEANS scoring enqueued on the plan,
 * int [batch * kv_heads][n_k] (a stratified selection's strata); NULL before
 * one or for another score. */
cl_mem ps_score_assignments(const ps_plan *plan);

/* The statistics a scoring leaves behind, for scoring further keys against
 * them (the key cache, lib/kv_index.c); buffers owned by the plan, NULL where
 * the score method has none: KMEANS centroids [heads][clusters][d] and
 * cterm [heads][clusters] (||c_j - mu||^2); LEVERAGE minv [heads][d][d]
 * (L^-1 transposed: a key's score is ||minv^T k||^2, as lev_apply). */
ps_status ps_score_statistics(const ps_plan *plan, cl_mem *centroids, cl_mem *cterm,
                              cl_mem *minv);

#endif
