/* Internal helpers of the score stage's host reference (lib/ref/score.c):
 * the twins of kernel helpers and the k-means reference with its
 * intermediate results, for the tests. Parameters shared with the device:
 * lib/core/score_params.h. */
#ifndef PRESCORE_SCORE_REF_H
#define PRESCORE_SCORE_REF_H

#include "prescore/types.h"

#include "core/score_params.h"

#include <stddef.h>
#include <stdint.h>

/* ps_kpp_scale, ps_score_round and the PS_*_SCORE_BITS: score_common.h (cl/),
 * one text with the kernels. */

/* k-means of one KV head on the host, exactly the device algorithm:
 * k-means++ seeds from Philox (seed, PS_RNG_STAGE_KMEANS_INIT, batch_head),
 * then up to desc->kmeans_iters Lloyd iterations in double.
 * @param desc       resolved descriptor (clusters, kmeans_iters, d, n_k, seed)
 * @param k_head     [n_k][d] keys of the head
 * @param batch_head b * kv_heads + kv_head (the Philox stream)
 * @param seeds      [clusters] chosen key indices, or NULL
 * @param assign     [n_k] final cluster of each key, or NULL
 * @param centroids  [clusters][d] final centroids, or NULL
 * @param inertia    [kmeans_iters + 1] sum of squared distances after each
 *                   assignment step (repeated after an early stop), or NULL
 * @param iters_run  last assignment step that ran (0 = the initial one), or NULL
 * @param scores     [n_k] k-means scores, or NULL */
ps_status ps_ref_kmeans(const ps_attention_desc *desc, const float *k_head,
                        uint32_t batch_head, uint32_t *seeds, uint32_t *assign,
                        float *centroids, double *inertia, size_t *iters_run,
                        float *scores);

/* What a full scoring leaves for scoring later keys of the same heads
 * against it (a key cache's frozen statistics, lib/ref/kv_cache.c). The
 * caller provides the arrays, for batch * kv_heads heads and room for the
 * resolved desc->clusters; the scoring sets clusters (at most n_k). */
typedef struct ps_ref_score_stats {
    size_t clusters;   /* KMEANS: centroids per head */
    double *centroids; /* KMEANS: [heads][clusters][d] the final centroids */
    double *cterm;     /* KMEANS: [heads][clusters] ||c_j - mu||^2 as the score adds it */
    double *chol;      /* LEVERAGE: [heads][d][d] the lower Cholesky factor L of
                          K^T K + lambda I; score = ||L^-1 k||^2 (M = L^-T) */
} ps_ref_score_stats;

/* ps_ref_score_keys, also filling stats (NULL: none) for KMEANS and
 * LEVERAGE. */
ps_status ps_ref_score_keys_stats(const ps_attention_desc *desc, const void *k, float *scores,
                                  ps_ref_score_stats *stats);

/* The score of one key [d] of head `head` against the statistics of the last
 * scoring (unused for NORM and NONE: may be NULL), exactly as that scoring
 * scores its own keys: KMEANS the nearest centroid (lowest index on ties),
 * LEVERAGE ||L^-1 k||^2, both rounded (ps_score_round). */
float ps_ref_score_key(const ps_ref_score_stats *stats, ps_score score, size_t head,
                       const float *key, size_t d);

#endif
