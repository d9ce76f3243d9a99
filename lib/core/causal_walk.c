/* The causal recursion's walk and node descriptors: see causal_walk.h. */
#include "causal_walk.h"

#include "desc.h"
#include "select_params.h"

#include <string.h>

static ps_status walk_node(size_t lo, size_t hi, uint64_t node, size_t min_seq_len,
                           ps_causal_visit fn, void *user, size_t *count)
{
    if (hi - lo <= min_seq_len) {
        const ps_causal_part leaf_part = {0, lo, lo, hi, node, 0};
        return fn(user, &leaf_part);
    }
    const size_t mid = lo + (hi - lo) / 2;
    ps_status st = walk_node(lo, mid, 2 * node, min_seq_len, fn, user, count);
    if (st == PS_OK)
        st = walk_node(mid, hi, 2 * node + 1, min_seq_len, fn, user, count);
    if (st != PS_OK)
        return st;
    const ps_causal_part q = {1, lo, mid, hi, node, *count};
    ++*count;
    return fn(user, &q);
}

ps_status ps_causal_walk(size_t n, size_t min_seq_len, ps_causal_visit fn, void *user,
                         size_t *quarters)
{
    size_t count = 0;
    /* min_seq_len >= 1 after resolution; 0 would never reach a leaf */
    ps_status st = walk_node(0, n, 1, min_seq_len ? min_seq_len : 1, fn, user, &count);
    if (quarters)
        *quarters = count;
    return st;
}

ps_status ps_causal_node_desc(const ps_attention_desc *plan, size_t nq, size_t k0, size_t nk,
                              uint64_t node, ps_attention_desc *out)
{
    ps_attention_desc s = *plan;
    s.causal = 0;
    s.n_q = nq;
    s.n_k = nk;
    s.seed = ps_causal_node_seed(plan->seed, node);
    s.min_seq_len = 1;
    s.want_lse = 1;
    s.check_finite = 0;
    s.error_probes = 0; /* the plan estimates its whole output */
    s.error_tolerance = 0.0f;
    if (k0 != 0)
        s.sink = 0;
    s.global_keys = 0;
    const uint32_t sketch = s.sketch_queries; /* set below, with the node's g */
    s.sketch_queries = 0;
    /* A node reads compact copies of its key rows (a quarter also of its
     * query rows) in the plan's storage types and writes a compact fp32
     * partial output; the key prefix (node 0, every query) reads the
     * caller's Q and writes the caller's O in place. */
    const ps_tensor_layout q = s.q_layout, o = s.o_layout;
    const ps_dtype kt = s.k_layout.dtype, vt = s.v_layout.dtype;
    memset(&s.q_layout, 0, sizeof s.q_layout);
    s.k_layout = s.v_layout = s.o_layout = s.q_layout;
    s.q_layout.dtype = q.dtype;
    s.k_layout.dtype = kt;
    s.v_layout.dtype = vt;
    if (node == 0) {
        s.q_layout = q;
        s.o_layout = o;
    }
    ps_status st = ps_attention_desc_resolve(&s, out, NULL, 0);
    if (st != PS_OK)
        return st;
    const size_t cand = ps_candidate_count(out);
    out->global_keys = plan->global_keys < cand ? plan->global_keys : cand - 1;
    /* A node that keeps every key is HyperAttention on them (same seed, same
     * order, same result) without the scoring, unless its global keys need
     * the scores. */
    if (out->method == PS_METHOD_PRESCORE && cand == nk &&
        (out->global_keys == 0 || out->global_score == PS_SCORE_NORM)) {
        out->method = PS_METHOD_HYPER;
        out->selection = PS_SELECTION_TOP; /* every key kept: nothing drawn, no weight */
    }
    /* The sketch ranks a weighted selection's heavy keys among the node's
     * keys by the node's own query rows (all later than its keys). */
    out->sketch_queries =
        ps_selection_weighted(out->selection) && out->global_keys > 0 ? sketch : 0;
    return PS_OK;
}
