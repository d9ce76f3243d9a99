/* The non-causal approximate pipeline behind ps_attention: HyperAttention
 * over all keys (PS_METHOD_HYPER) and over the pre-scored subset
 * (PS_METHOD_PRESCORE):
 *
 *   PRESCORE: score keys -> select m per KV head -> gather K/V rows -> (*)
 *             (selection WEIGHTED: each kept key with its log-weight, which
 *             the split and the hyper stage carry along; with a query sketch
 *             its mass, not the score, ranks the heavy and global keys;
 *             kept keys that fit in one block: the residual's samples are
 *             drawn from the dropped keys here, lib/core/dropped_params.h)
 *   HYPER:    (*) on all keys
 *   (*)       LSH hash + sort keys and queries -> blocks + residual + merge
 *
 * With global keys (g > 0; lib/global.c, docs/GLOBAL.md) the g best of the
 * keys (*) would see are split off first: (*) runs on the other ones, exact
 * attention of every query over the g global rows is merged in LSE space.
 * Causal plans run the recursion of lib/causal.c, whose nodes are plans of
 * this pipeline.
 *
 * Everything is enqueued on the context's in-order queue; the workspace
 * between stages belongs to the plan (allocated in ps_pipeline_setup). */
#include "pipeline.h"

#include "global.h"
#include "hyper.h"
#include "lsh.h"
#include "score.h"
#include "select.h"
#include "select_weighted.h"
#include "sketch.h"
#include "compact.h"
#include "stage_times.h"
#include "core/desc.h"
#include "core/host_alloc.h"
#include "core/select_params.h"
#include "core/tensor_layout.h"

#include <stdlib.h>

struct ps_pipeline_state {
    cl_mem codes_q, perm_q, perm_inv_q; /* [batch * heads][n_q] */
    cl_mem codes_k, perm_k, perm_inv_k; /* [batch * kv_heads][keys used] */
    cl_mem scores;                      /* [batch * kv_heads][n_k] */
    cl_mem indices, counts;             /* [batch * kv_heads][capacity], [..] */
    cl_mem k_sel, v_sel;                /* [batch * kv_heads][capacity][d | d_v], K's and
                                           V's storage types */
    cl_mem weights;                     /* [batch * kv_heads][capacity]: selection WEIGHTED's
                                           log-weights of the kept keys */
    size_t keys_used;                   /* n_k (HYPER) or the selection capacity */
    /* Q compacted when its rows are apart: LSH, blocks, residual and global
     * keys read it (6% of prescore for [B, T, H, D] at n = 16384, 8 heads). */
    ps_compaction q_c;
    /* The key set of the last key half: what the query half attends to. */
    ps_tensor keys_cur, values_cur;
    cl_mem weights_cur; /* its log-weights, NULL when unweighted */
    size_t used_cur;
};

ps_status ps_pipeline_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    ps_pipeline_state *p = ps_calloc(1, sizeof *p);
    if (!p)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->pipeline = p;
    const size_t qheads = d->batch * d->heads, kheads = d->batch * d->kv_heads;
    const size_t u32 = sizeof(cl_uint);
    p->keys_used = ps_candidate_count(d);

    p->codes_q = ps_workspace_buffer(ctx, qheads * d->n_q * u32, "LSH query codes", &st);
    p->perm_q = ps_workspace_buffer(ctx, qheads * d->n_q * u32, "LSH query order", &st);
    p->perm_inv_q = ps_workspace_buffer(ctx, qheads * d->n_q * u32, "LSH query positions", &st);
    p->codes_k = ps_workspace_buffer(ctx, kheads * p->keys_used * u32, "LSH key codes", &st);
    p->perm_k = ps_workspace_buffer(ctx, kheads * p->keys_used * u32, "LSH key order", &st);
    p->perm_inv_k =
        ps_workspace_buffer(ctx, kheads * p->keys_used * u32, "LSH key positions", &st);
    if (d->method == PS_METHOD_PRESCORE) {
        p->scores = ps_workspace_buffer(ctx, kheads * d->n_k * sizeof(float), "key scores", &st);
        p->indices =
            ps_workspace_buffer(ctx, kheads * p->keys_used * u32, "selected key indices", &st);
        p->counts = ps_workspace_buffer(ctx, kheads * u32, "selected key counts", &st);
        p->k_sel = ps_workspace_buffer(
            ctx, kheads * p->keys_used * d->d * ps_dtype_size(d->k_layout.dtype),
            "selected keys", &st);
        p->v_sel = ps_workspace_buffer(
            ctx, kheads * p->keys_used * d->d_v * ps_dtype_size(d->v_layout.dtype),
            "selected values", &st);
        if (ps_selection_weighted(d->selection))
            p->weights = ps_workspace_buffer(ctx, kheads * p->keys_used * sizeof(float),
                                             "selected key weights", &st);
    }
    if (st == PS_OK)
        st = ps_compaction_setup(plan, PS_TENSOR_Q, "compacted queries", &p->q_c);
    if (st == PS_OK && d->global_keys > 0)
        st = ps_global_setup(plan, p->keys_used);
    return st;
}

void ps_pipeline_release(ps_plan *plan)
{
    ps_pipeline_state *p = plan->pipeline;
    ps_global_release(plan);
    if (!p)
        return;
    cl_mem all[] = {p->codes_q, p->perm_q,  p->perm_inv_q, p->codes_k, p->perm_k, p->perm_inv_k,
                    p->scores,  p->indices, p->counts,     p->k_sel,   p->v_sel,  p->weights};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            clReleaseMemObject(all[i]);
    ps_compaction_release(&p->q_c);
    free(p);
    plan->pipeline = NULL;
}

/* The key half: scores, selection, gather, global split and the keys' LSH
 * sort; remembers the key set the query half attends to. Query-independent
 * unless the plan has a query sketch, which reads q (NULL: prepared keys,
 * which an explicit sketch refuses and an automatic one leaves to the
 * score). */
ps_status ps_pipeline_enqueue_keys(ps_plan *plan, cl_mem k, cl_mem v, cl_mem q)
{
    const ps_attention_desc *d = &plan->desc;
    ps_pipeline_state *p = plan->pipeline;
    ps_status st = PS_OK;

    const int sketch = plan->sketch && q; /* an automatic sketch skips prepared keys */
    if (plan->sketch && !q && !plan->sketch_optional)
        return ps_fail(plan->ctx, PS_ERR_UNSUPPORTED,
                       "prepared keys: the plan's query sketch (sketch_queries = %u) ranks the "
                       "keys by the queries; call ps_attention",
                       (unsigned)d->sketch_queries);
    ps_tensor keys = ps_plan_tensor(plan, PS_TENSOR_K, k),
              values = ps_plan_tensor(plan, PS_TENSOR_V, v);
    cl_mem rank = p->scores; /* what ranks the heavy and the global keys */
    if (d->method == PS_METHOD_PRESCORE) {
        ps_mark(plan, "score");
        st = ps_score_enqueue(plan, &keys, p->scores);
        if (st == PS_OK && sketch) {
            ps_mark(plan, "sketch");
            const ps_tensor tq = ps_plan_tensor(plan, PS_TENSOR_Q, q);
            st = ps_sketch_enqueue(plan, &tq, &keys, NULL, &rank);
        }
        ps_mark(plan, "select");
        if (st == PS_OK && plan->weighted)
            st = ps_select_weighted_enqueue(plan, rank, p->indices, p->counts, p->weights);
        else if (st == PS_OK)
            st = ps_select_enqueue(plan, p->scores, p->indices, p->counts);
        if (st == PS_OK)
            st = ps_select_gather_enqueue(plan, &keys, &values, p->indices, p->counts,
                                          p->k_sel, p->v_sel);
        if (st == PS_OK && ps_hyper_draws_dropped(plan)) {
            ps_mark(plan, "dropped");
            st = ps_hyper_draw_dropped_enqueue(plan, &keys, &values, p->indices);
        }
        keys = ps_dense_tensor(p->k_sel, p->keys_used, d->d, keys.view.f16);
        values = ps_dense_tensor(p->v_sel, p->keys_used, d->d_v, values.view.f16);
    }
    size_t used = p->keys_used;
    cl_mem weights = plan->weighted ? p->weights : NULL;
    if (st == PS_OK && plan->global) {
        /* The global keys leave the candidate set. */
        ps_mark(plan, "global_split");
        st = ps_global_split_enqueue(plan, rank, p->indices, &keys, &values, &weights, &used);
    }
    const ps_lsh_rows key_rows = {d->kv_heads, used, 0, used};
    ps_mark(plan, "lsh_keys");
    if (st == PS_OK)
        st = ps_lsh_enqueue(plan, &key_rows, &keys, NULL, NULL, p->codes_k, p->perm_k,
                            p->perm_inv_k);
    p->keys_cur = keys;
    p->values_cur = values;
    p->weights_cur = weights;
    p->used_cur = used;
    return st;
}

/* The query half against the key set of the last ps_pipeline_enqueue_keys. */
ps_status ps_pipeline_enqueue_queries(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse)
{
    const ps_attention_desc *d = &plan->desc;
    ps_pipeline_state *p = plan->pipeline;
    ps_status st = PS_OK;
    /* With global keys the hyper part needs a row LSE for the merge even when
     * the caller wants none. */
    cl_mem lse_h = ps_global_row_lse(plan, lse);
    const ps_tensor q_in = ps_plan_tensor(plan, PS_TENSOR_Q, q),
                    to = ps_plan_tensor(plan, PS_TENSOR_O, o);
    ps_tensor tq; /* the caller's Q, or its compact copy */
    ps_mark(plan, "lsh_queries"); /* the compaction of Q counts here too */
    st = ps_compaction_enqueue(plan, &p->q_c, &q_in, d->n_q, &tq);
    if (st != PS_OK)
        return st;

    const ps_lsh_rows query_rows = {d->heads, d->n_q, 0, d->n_q};
    st = ps_lsh_enqueue(plan, &query_rows, &tq, NULL, NULL, p->codes_q, p->perm_q,
                        p->perm_inv_q);
    ps_mark(plan, "hyper");
    if (st == PS_OK)
        st = ps_hyper_enqueue(plan, &tq, &p->keys_cur, &p->values_cur, p->weights_cur,
                              p->used_cur, p->perm_q, p->perm_k, &to, lse_h);
    if (plan->global)
        ps_mark(plan, "global_merge");
    if (st == PS_OK && plan->global)
        st = ps_global_merge_enqueue(plan, &tq, &to, lse_h);
    return st;
}

ps_status ps_pipeline_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                              cl_mem lse)
{
    ps_status st = ps_pipeline_enqueue_keys(plan, k, v, q);
    if (st == PS_OK)
        st = ps_pipeline_enqueue_queries(plan, q, o, lse);
    return st;
}
