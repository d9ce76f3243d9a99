/* The host reference of the causal recursion (docs/HYPER.md "Causal"), built
 * from ps_ref_exact_attention and the non-causal pipeline reference on
 * sub-ranges, walking the recursion of lib/core/causal_walk.h with the same
 * random choices as the device. */
#ifndef PRESCORE_REF_CAUSAL_REF_H
#define PRESCORE_REF_CAUSAL_REF_H

#include "prescore/types.h"

#include "core/causal_walk.h"

#include <stddef.h>
#include <stdint.h>

/* The non-causal approximate pipeline of a resolved descriptor (method HYPER
 * or PRESCORE, causal 0) on host arrays, whatever n_k vs min_seq_len:
 * scores, selection, gather, global keys, LSH, blocks + residual, merge
 * (lib/ref/attention.c). */
ps_status ps_ref_pipeline(const ps_attention_desc *desc, const float *q, const float *k,
                          const float *v, float *o, float *lse);

/* The causal recursion of a resolved causal descriptor on host arrays (what
 * ps_ref_attention runs for causal plans on the approximate path). The square
 * is the last n_sq = min(n_q, n_k) queries against the last n_sq keys;
 * n_sq <= min_seq_len: exact causal attention. Otherwise, with
 * off = n_k - n_sq and qoff = n_q - n_sq (one of them 0): query rows
 * [0, qoff) see no key (O = 0, LSE = -inf); the key prefix [0, off) (seen by
 * every query) is exact non-causal attention when off < min_seq_len, else the
 * node-0 pipeline (ps_causal_node_desc); and query qoff + r against key
 * off + r is ps_causal_walk(n_sq, min_seq_len): exact causal leaves, and per
 * quarter the non-causal pipeline of its node descriptor, merged in
 * log-sum-exp space. lse may be NULL.
 * @return PS_OK, a validation status, PS_ERR_UNSUPPORTED when the descriptor
 *         is not causal, PS_ERR_OUT_OF_HOST_MEMORY */
ps_status ps_ref_causal(const ps_attention_desc *desc, const float *q, const float *k,
                        const float *v, float *o, float *lse);

#endif
