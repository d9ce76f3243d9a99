/* libprescore-cl host reference: every device stage as plain C on the host,
 * taking the same descriptor and the same RNG streams, so that device results
 * can be checked against it. Slow by design; accumulates in double. */
#ifndef PRESCORE_PRESCORE_REF_H
#define PRESCORE_PRESCORE_REF_H

#include "prescore/types.h" /* no OpenCL needed */

#ifdef __cplusplus
extern "C" {
#endif

/** Exact attention on host arrays, same layouts (the descriptor's tensor
 * layouts) and semantics as ps_attention with PS_METHOD_EXACT (bottom-right causal alignment; rows that see no key
 * get O = 0 and LSE = -inf). Scores, softmax and sums in double.
 * @param lse NULL, or [batch, heads, n_q]
 * @return PS_OK, the descriptor's validation status, or PS_ERR_NON_FINITE
 *         (check_finite: Inf or NaN in Q, K or V; Inf or NaN in O or NaN or
 *         +Inf in LSE after the run) */
PS_API ps_status ps_ref_exact_attention(const ps_attention_desc *desc, const void *q,
                                        const void *k, const void *v, void *o, float *lse);

/** Key scores on the host, same parameters and RNG streams as ps_score_keys.
 * @param k [batch, kv_heads, n_k, d] as desc->k_layout says (fp16 widened on
 *          the host, as the device does); @param scores [batch, kv_heads, n_k] */
PS_API ps_status ps_ref_score_keys(const ps_attention_desc *desc, const void *k,
                                   float *scores);

/** Selection on the host, same semantics as ps_select_keys. */
PS_API ps_status ps_ref_select_keys(const ps_attention_desc *desc, const float *scores,
                                    uint32_t *indices, uint32_t *counts);

/** The whole of ps_attention on host arrays: for any method (EXACT, HYPER,
 * PRESCORE), causal or not, with or without global keys, including the
 * automatic exact path below min_seq_len and the causal recursion, with the
 * same parameter resolution and the same random draws as the device, so
 * that the two make the same discrete choices (selections, LSH buckets,
 * samples) and differ only by rounding. Same layouts as ps_attention: the
 * descriptor's tensor layouts (fp16 widened on the host, O rounded to
 * nearest even; elements outside O's layout untouched).
 * @param lse NULL, or [batch, heads, n_q]; required when desc->want_lse
 * @return PS_OK; the descriptor's validation status; PS_ERR_INVALID_ARGUMENT
 *         for a NULL array; PS_ERR_NON_FINITE (check_finite: Inf or NaN in
 *         Q, K or V, or, after the run, in O, or NaN or +Inf in LSE); the statuses
 *         ps_plan_create / ps_attention give for the same descriptor
 *         (global keys, causal n_q > n_k: PS_ERR_UNSUPPORTED);
 *         PS_ERR_OUT_OF_HOST_MEMORY */
PS_API ps_status ps_ref_attention(const ps_attention_desc *desc, const void *q,
                                  const void *k, const void *v, void *o, float *lse);

#ifdef __cplusplus
}
#endif

#endif
