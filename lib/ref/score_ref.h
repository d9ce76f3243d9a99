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

#endif
