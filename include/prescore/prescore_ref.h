/* libprescore-cl host reference: every device stage as plain C on the host,
 * taking the same descriptor and the same RNG streams, so that device results
 * can be checked against it. Slow by design; accumulates in double. */
#ifndef PRESCORE_PRESCORE_REF_H
#define PRESCORE_PRESCORE_REF_H

#include "prescore/prescore.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Exact attention on host arrays, same layouts and semantics as ps_attention
 * with PS_METHOD_EXACT (bottom-right causal alignment; rows that see no key
 * get O = 0 and LSE = -inf). Scores, softmax and sums in double.
 * @param lse NULL, or [batch, heads, n_q]
 * @return PS_OK, or the descriptor's validation status */
PS_API ps_status ps_ref_exact_attention(const ps_attention_desc *desc, const float *q,
                                        const float *k, const float *v, float *o,
                                        float *lse);

/** Key scores on the host, same parameters and RNG streams as ps_score_keys.
 * @param k [batch, kv_heads, n_k, d]; @param scores [batch, kv_heads, n_k] */
PS_API ps_status ps_ref_score_keys(const ps_attention_desc *desc, const float *k,
                                   float *scores);

/** Selection on the host, same semantics as ps_select_keys. */
PS_API ps_status ps_ref_select_keys(const ps_attention_desc *desc, const float *scores,
                                    uint32_t *indices, uint32_t *counts);

#ifdef __cplusplus
}
#endif

#endif
