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

/** Weighted selection on the host (PS_SELECTION_WEIGHTED, whatever
 * desc->selection says), same semantics and Philox draws as the device:
 * indices and counts as ps_ref_select_keys, @p weights [batch * kv_heads]
 * [capacity] the kept keys' log-weights (natural log; 0 for forced, heavy
 * and empty slots). */
PS_API ps_status ps_ref_select_keys_weighted(const ps_attention_desc *desc, const float *scores,
                                             uint32_t *indices, uint32_t *counts,
                                             float *weights);

/** Stratified selection on the host (PS_SELECTION_STRATIFIED, whatever
 * desc->selection says), same semantics and draws as the device: the heavy
 * keys by @p rank (the scores, or a query sketch's mass), the rest of the
 * budget shared out over the k-means clusters @p assign [batch * kv_heads]
 * [n_k] (desc->clusters of them) in proportion to their sizes, a systematic
 * sample in each; outputs as ps_ref_select_keys_weighted, a drawn key's
 * log-weight ln(cluster pool / cluster draw). */
PS_API ps_status ps_ref_select_keys_stratified(const ps_attention_desc *desc, const float *rank,
                                               const uint32_t *assign, uint32_t *indices,
                                               uint32_t *counts, float *weights);

/** Query sketch on the host, same sampled rows as ps_sketch_keys: @p mass
 * [batch * kv_heads][n_k] float, per key the sum over the KV head's query
 * heads and their sampled rows of the row's softmax probability of the key
 * (double inside). q and k as the descriptor's layouts say; needs
 * sketch_queries > 0 (PS_ERR_INVALID_ARGUMENT otherwise). */
PS_API ps_status ps_ref_sketch_keys(const ps_attention_desc *desc, const void *q, const void *k,
                                    float *mass);

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

/* ------------------------------------------------------------------ decode
 * The twin of ps_kv_cache (prescore.h "decode") on host arrays: the same
 * descriptor, the same decisions (lib/core/kv_params.h: spans, target,
 * admission, the rescore criterion), the reference's scoring and selection
 * for full scorings, and decode in double. Keys and values are held as fp32
 * (fp16 input widened exactly). */

typedef struct ps_ref_kv_cache ps_ref_kv_cache;

/** Creates an empty cache, reading @p desc as ps_kv_cache_create does.
 * @return PS_OK; the descriptor's validation status; PS_ERR_UNSUPPORTED
 *         (HYPER, cu_seqlens, check_finite); PS_ERR_INVALID_ARGUMENT for a
 *         NULL argument; PS_ERR_OUT_OF_HOST_MEMORY */
PS_API ps_status ps_ref_kv_cache_create(const ps_attention_desc *desc, ps_ref_kv_cache **out);
/** Releases the cache. Accepts NULL. */
PS_API void ps_ref_kv_cache_destroy(ps_ref_kv_cache *cache);

/** Appends @p n_new rows to every KV head: k and v laid out as the
 * descriptor's k_layout and v_layout say for a tensor of n_new tokens (float,
 * or fp16 bits as uint16_t). Scores, admits into the kept set and rescores
 * as ps_kv_cache_append does.
 * @return PS_OK; PS_ERR_INVALID_ARGUMENT for n_new == 0, past the capacity
 *         or a NULL argument (the cache is left as it was);
 *         PS_ERR_OUT_OF_HOST_MEMORY (likewise) */
PS_API ps_status ps_ref_kv_cache_append(ps_ref_kv_cache *cache, const void *k, const void *v,
                                        size_t n_new);
/** Scores every cached key afresh and selects the kept set again (PRESCORE;
 * PS_OK and nothing to do for EXACT or an empty cache). */
PS_API ps_status ps_ref_kv_cache_rescore(ps_ref_kv_cache *cache);
/** Attention of the last @p n_q positions (1 <= n_q <= desc.n_q) against
 * the cache, as ps_kv_cache_decode: q and o as the descriptor's q_layout and
 * o_layout say for n_q queries, lse [batch, heads, n_q] or NULL.
 * @return PS_OK; PS_ERR_INVALID_ARGUMENT (n_q out of range, an empty cache,
 *         an unknown mode, a NULL argument); PS_ERR_OUT_OF_HOST_MEMORY */
PS_API ps_status ps_ref_kv_cache_decode(const ps_ref_kv_cache *cache, const void *q,
                                        size_t n_q, void *o, float *lse, ps_decode_mode mode);
/** The kept positions as ps_kv_cache_kept: @p positions [batch * kv_heads]
 * [kept_capacity] ascending, UINT32_MAX past the count; @p counts
 * [batch * kv_heads] or NULL. */
PS_API ps_status ps_ref_kv_cache_kept(const ps_ref_kv_cache *cache, uint32_t *positions,
                                      uint32_t *counts);
/** Replaces the kept sets (same arrays as ps_ref_kv_cache_kept; counts
 * required), so that a test can give the twin the device's set and check
 * the device's decode on its own. Each set must be ascending, within the
 * eligible keys [sink_len, win_start) of the current length, and hold at
 * most kept_capacity keys; otherwise PS_ERR_INVALID_ARGUMENT and nothing
 * changes. */
PS_API ps_status ps_ref_kv_cache_set_kept(ps_ref_kv_cache *cache, const uint32_t *positions,
                                          const uint32_t *counts);
/** Keys per KV head now cached (0 for NULL). */
PS_API size_t ps_ref_kv_cache_length(const ps_ref_kv_cache *cache);
/** Slots of each kept set (0 for EXACT or NULL). */
PS_API size_t ps_ref_kv_cache_kept_capacity(const ps_ref_kv_cache *cache);

#ifdef __cplusplus
}
#endif

#endif
