/* Host reference of causal HyperAttention by the recursion (DESIGN.md step 7;
 * docs/HYPER.md "Causal"): the plain-C twin of the causal path of
 * lib/pipeline.c, built from ps_ref_exact_attention, the LSH reference and
 * ps_ref_hyper_attention on sub-ranges, with the same random choices. */
#ifndef PRESCORE_REF_CAUSAL_REF_H
#define PRESCORE_REF_CAUSAL_REF_H

#include "prescore/prescore.h"

#include <stdint.h>

/* Seed of the residual samples of recursion node `node` (heap numbering:
 * root 1, children 2i and 2i + 1): a splitmix64 finaliser of seed and node,
 * so nodes draw from independent Philox keys. The LSH projections are the
 * plan's own (same seed) for every node. */
static inline uint64_t ps_causal_node_seed(uint64_t seed, uint64_t node)
{
    uint64_t z = seed + node * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/** Causal HyperAttention, bottom-right aligned, n_q <= n_k, on host arrays.
 * n_q <= min_seq_len: exact causal attention. Otherwise, with off = n_k - n_q,
 * the key prefix [0, off) (seen by every query) is exact non-causal attention
 * when off < min_seq_len, else non-causal HyperAttention (seed of node 0), and
 * query r against key off + r is the recursion, its parts merged in:
 * causal(lo, hi) = exact causal attention on rows/keys [lo, hi) when
 * hi - lo <= min_seq_len, else causal(lo, mid), causal(mid, hi) with
 * mid = lo + (hi - lo) / 2, and the non-causal HyperAttention of queries
 * [mid, hi) against keys [lo, mid) (LSH order PS_LSH_ORDER_GRAY_RANK, seed
 * ps_causal_node_seed(seed, node)) merged into rows [mid, hi) in log-sum-exp
 * space. Layouts as ps_ref_exact_attention; lse may be NULL.
 * (keys of the square counted from off).
 * @return PS_OK, a validation status, PS_ERR_UNSUPPORTED when n_q > n_k or
 *         the descriptor is not causal, PS_ERR_OUT_OF_HOST_MEMORY */
ps_status ps_ref_hyper_causal(const ps_attention_desc *desc, const float *q, const float *k,
                              const float *v, float *o, float *lse);

#endif
