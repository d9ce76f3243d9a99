/* The causal recursion's structure and per-node parameters (docs/HYPER.md
 * "Causal"), pure C: shared by the device path (lib/causal.c) and the host
 * reference (lib/ref/causal.c), so both visit the same parts with the same
 * descriptors and seeds. */
#ifndef PRESCORE_CORE_CAUSAL_WALK_H
#define PRESCORE_CORE_CAUSAL_WALK_H

#include "prescore/types.h"

#include <stddef.h>
#include <stdint.h>

/* Seed of recursion node `node` (heap numbering: root 1, children 2i and
 * 2i + 1; 0 is the key prefix): a splitmix64 finaliser of seed and node, so
 * nodes draw from independent Philox keys (k-means++ seeds, LSH projections,
 * residual samples). */
static inline uint64_t ps_causal_node_seed(uint64_t seed, uint64_t node)
{
    uint64_t z = seed + node * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* One part of the square recursion over rows/keys [0, n):
 * a leaf: exact causal attention on rows and keys [lo, hi);
 * a quarter: non-causal attention of queries [mid, hi) on keys [lo, mid),
 * merged into rows [mid, hi). `index` counts the quarters in visiting order
 * (post-order: both halves first, then the quarter). */
typedef struct ps_causal_part {
    int quarter; /* 0: leaf, 1: quarter */
    size_t lo, mid, hi;
    uint64_t node;
    size_t index;
} ps_causal_part;

typedef ps_status (*ps_causal_visit)(void *user, const ps_causal_part *part);

/* Visits the parts of causal(0, n) in execution order:
 * causal(lo, hi) = leaf when hi - lo <= min_seq_len, else mid = lo + (hi - lo) / 2,
 * causal(lo, mid), causal(mid, hi), quarter. Stops at the first non-OK status.
 * `quarters` (may be NULL) receives the number of quarters visited. */
ps_status ps_causal_walk(size_t n, size_t min_seq_len, ps_causal_visit visit, void *user,
                         size_t *quarters);

/* The non-causal descriptor of a recursion node (a quarter, or the key
 * prefix with node 0) of the resolved causal plan `plan`: queries nq, keys
 * [k0, k0 + nk) in absolute key rows. Same method, score and parameters;
 * seed ps_causal_node_seed(seed, node); min_seq_len 1 (never exact);
 * want_lse 1 (the merge needs it); check_finite 0 (the plan checked);
 * budget the plan's m (resolution clamps it to nk); sink only where k0 = 0
 * (sinks are absolute positions); window: the node's last keys (the ones
 * nearest to its queries); global keys g' = min(g, C' - 1) of the node's C'
 * candidates; a PRESCORE node that keeps all its keys (and needs no scores
 * for its global keys) runs as HYPER, which gives the same result without
 * scoring. Layouts: dense K, V and (quarters) Q in the plan's storage types,
 * a dense fp32 O; the key prefix keeps the plan's Q and O layouts (it reads
 * and writes the caller's tensors). `out` is resolved. */
ps_status ps_causal_node_desc(const ps_attention_desc *plan, size_t nq, size_t k0, size_t nk,
                              uint64_t node, ps_attention_desc *out);

#endif
