/* Host reference of the global keys (docs/GLOBAL.md): the
 * plain-C twin of the global-key path of lib/pipeline.c (non-causal). */
#ifndef PRESCORE_REF_GLOBAL_REF_H
#define PRESCORE_REF_GLOBAL_REF_H

#include "prescore/prescore.h"

#include <stddef.h>
#include <stdint.h>

/* Checks the global keys of a resolved, non-causal descriptor whose
 * approximate part sees n_cand candidates per KV head (shared by
 * ps_plan_create and ps_ref_attention): PS_OK when g = 0 or supported;
 * PS_ERR_INVALID_ARGUMENT unless g < n_cand; PS_ERR_NOT_IMPLEMENTED for a
 * global_score other than the plan's own (PRESCORE) or NORM. A message naming
 * the field goes to `message` (may be NULL). */
ps_status ps_global_check(const ps_attention_desc *desc, size_t n_cand, char *message,
                          size_t message_size);

/* 1 when the global keys are picked by the plan's own selection scores
 * (PRESCORE with global_score == score), 0 when by NORM of the candidates. */
int ps_global_own_scores(const ps_attention_desc *desc);

/* The squared norm of a candidate row as the device computes it (float fma
 * chain, cl/util.cl global_scores mode 1). */
float ps_global_norm(const float *row, size_t d);

/* The g best candidates of one head by score (higher first, ties to the lower
 * index, NaN lowest: ps_select_key_bits), as ascending candidate indices in
 * sel[0..g). g <= n. */
void ps_ref_global_pick(const float *scores, size_t n, size_t g, uint32_t *sel);

/** Non-causal attention with g = desc->global_keys global keys, on host arrays.
 * Per KV head the candidates are the n_cand rows of kc/vc (all keys for
 * HYPER, the kept keys in ascending position for PRESCORE); the g best by
 * gscore (ps_ref_global_pick) are attended exactly by every query; the other
 * n_cand - g, compacted in order, go through the LSH reference (Gray rank,
 * projections of desc->seed) and ps_ref_hyper_attention (residual stream of
 * desc->seed); the two parts are merged in log-sum-exp space.
 * @param kc [batch, kv_heads, n_cand, d]  @param vc [.., n_cand, d_v]
 * @param gscore [batch * kv_heads][n_cand]
 * @param o [batch, heads, n_q, d_v]  @param lse NULL or [batch, heads, n_q]
 * @return PS_OK, a validation status, PS_ERR_UNSUPPORTED for causal,
 *         PS_ERR_INVALID_ARGUMENT unless 1 <= g < n_cand, PS_ERR_OUT_OF_HOST_MEMORY */
ps_status ps_ref_global_attention(const ps_attention_desc *desc, const float *q,
                                  const float *kc, const float *vc, size_t n_cand,
                                  const float *gscore, float *o, float *lse);

#endif
