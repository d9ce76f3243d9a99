/* Host reference of HyperAttention's non-causal core (lib/ref/hyper.c): the
 * plain-C twin of cl/hyper.cl, given the LSH sort permutations.
 * Internal: the public reference is ps_ref_attention (prescore_ref.h); tests
 * include this header for the stage on its own. */
#ifndef PRESCORE_REF_HYPER_REF_H
#define PRESCORE_REF_HYPER_REF_H

#include "prescore/types.h"

#include "philox.h" /* cl/: shared with the kernels */
#include "core/dropped_params.h"

/* Residual sample j of query head bh (bh = b * heads + h): a SORTED key
 * position in [0, n_k), uniform, with replacement: ps_philox_uniform_at of
 * stream (seed, PS_RNG_STAGE_RESIDUAL, bh), the function the kernel calls. */
static inline uint32_t ps_ref_hyper_sample(uint64_t seed, uint32_t bh, uint32_t j,
                                           uint32_t n_k)
{
    return ps_philox_uniform_at(seed, PS_RNG_STAGE_RESIDUAL, bh, j, n_k);
}

/** HyperAttention without the causal recursion, on host arrays, in double.
 * Uses desc->n_k as the key count (in "keys subset" mode pass a descriptor
 * whose n_k is the number of selected keys, and k/v holding those rows).
 * @param q      [batch, heads, n_q, d]
 * @param k      [batch, kv_heads, n_k, d]     @param v [batch, kv_heads, n_k, d_v]
 * @param perm_q [batch * heads][n_q] uint32: original query row at sorted position p
 * @param perm_k [batch * kv_heads][n_k] uint32: key row at sorted position p
 * @param o      [batch, heads, n_q, d_v], original query order
 * @param lse    NULL or [batch, heads, n_q], natural log
 * @return PS_OK, a validation status, PS_ERR_UNSUPPORTED for causal,
 *         PS_ERR_INVALID_ARGUMENT for a NULL array or a permutation entry out of range */
ps_status ps_ref_hyper_attention(const ps_attention_desc *desc, const float *q,
                                 const float *k, const float *v, const uint32_t *perm_q,
                                 const uint32_t *perm_k, float *o, float *lse);

/** The same over a weighted key set: key j of KV head h adds
 * key_bias[h * n_k + j] (natural log; NULL: none) to its score in the block
 * part and the residual (docs/HYPER.md). */
ps_status ps_ref_hyper_attention_weighted(const ps_attention_desc *desc, const float *q,
                                          const float *k, const float *v,
                                          const float *key_bias, const uint32_t *perm_q,
                                          const uint32_t *perm_k, float *o, float *lse);

/* The dropped-key residual of a PRESCORE plan (core/dropped_params.h):
 * each query head's draws of the dropped keys, which replace the residual
 * samples, and the mixing of the kept keys' weights. */
typedef struct ps_ref_dropped {
    ps_dropped_params p;
    const float *k, *v; /* [batch * heads][p.draws][d | d_v]: each query head's draws */
} ps_ref_dropped;

/** The same with the dropped-key residual (@dropped not NULL; the key set
 * must fit in one block): the residual attends every draw, unmasked, each
 * weighing e^dropped->p.log_weight, and key j's log-weight w becomes
 * ps_dropped_kept_log_weight(w). @dropped NULL: ps_ref_hyper_attention_weighted. */
ps_status ps_ref_hyper_attention_dropped(const ps_attention_desc *desc, const float *q,
                                         const float *k, const float *v,
                                         const float *key_bias, const ps_ref_dropped *dropped,
                                         const uint32_t *perm_q, const uint32_t *perm_k,
                                         float *o, float *lse);

#endif
