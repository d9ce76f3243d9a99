/* Host reference of the global keys (docs/GLOBAL.md): the
 * plain-C twin of the global-key path of lib/global.c (non-causal). */
#ifndef PRESCORE_REF_GLOBAL_REF_H
#define PRESCORE_REF_GLOBAL_REF_H

#include "prescore/types.h"

#include "hyper_ref.h" /* ps_ref_dropped */

#include "core/global_params.h"

#include <stddef.h>
#include <stdint.h>



/* The squared norm of a candidate row as the device computes it (float fma
 * chain, cl/global.cl global_scores mode 1). */
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
 * @param wc NULL or the candidates' log-weights [batch * kv_heads][n_cand]
 *           (a weighted selection): the hyper part gets those of its
 *           candidates; the global keys must weigh 1 (log-weight 0)
 * @param gscore [batch * kv_heads][n_cand]
 * @param dropped NULL or the dropped-key residual of the hyper part
 *           (hyper_ref.h; its key set, n_cand - g keys, must fit in a block)
 * @param o [batch, heads, n_q, d_v]  @param lse NULL or [batch, heads, n_q]
 * @return PS_OK, a validation status, PS_ERR_UNSUPPORTED for causal,
 *         PS_ERR_INVALID_ARGUMENT unless 1 <= g < n_cand or for a global key
 *         with a log-weight, PS_ERR_OUT_OF_HOST_MEMORY */
ps_status ps_ref_global_attention(const ps_attention_desc *desc, const float *q,
                                  const float *kc, const float *vc, const float *wc,
                                  size_t n_cand, const float *gscore,
                                  const ps_ref_dropped *dropped, float *o, float *lse);

#endif
