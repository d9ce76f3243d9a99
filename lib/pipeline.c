/* The approximate pipelines behind ps_attention: HyperAttention over all keys
 * (PS_METHOD_HYPER) and over the pre-scored subset (PS_METHOD_PRESCORE):
 *
 *   PRESCORE: score keys -> select m per KV head -> gather K/V rows -> (*)
 *   HYPER:    (*) on all keys
 *   (*)       LSH hash + sort keys and queries -> blocks + residual + merge
 *
 * Everything is enqueued on the context's in-order queue; the workspace
 * between stages belongs to the plan (allocated in ps_pipeline_setup). */
#include "pipeline.h"

#include "hyper.h"
#include "lsh.h"
#include "score.h"
#include "select.h"

#include <stdlib.h>

struct ps_pipeline_state {
    cl_mem codes_q, perm_q, perm_inv_q; /* [batch * heads][n_q] */
    cl_mem codes_k, perm_k, perm_inv_k; /* [batch * kv_heads][keys used] */
    cl_mem scores;                      /* [batch * kv_heads][n_k] */
    cl_mem indices, counts;             /* [batch * kv_heads][capacity], [..] */
    cl_mem k_sel, v_sel;                /* [batch * kv_heads][capacity][d | d_v] */
    size_t keys_used;                   /* n_k (HYPER) or the selection capacity */
};

ps_method ps_plan_path(const ps_plan *plan)
{
    if (!plan)
        return PS_METHOD_EXACT;
    const ps_attention_desc *d = &plan->desc;
    /* Short sequences: exact attention is both faster and exact. */
    if (d->method == PS_METHOD_EXACT || d->n_k < d->min_seq_len)
        return PS_METHOD_EXACT;
    return d->method;
}

static cl_mem alloc(ps_context *ctx, size_t bytes, const char *what, ps_status *st)
{
    cl_int err = CL_SUCCESS;
    if (*st != PS_OK)
        return NULL;
    if (bytes > ctx->info.max_mem_alloc_size) {
        *st = ps_fail(ctx, PS_ERR_OUT_OF_DEVICE_MEMORY,
                      "%s needs %zu bytes, the device allows %llu per buffer", what, bytes,
                      (unsigned long long)ctx->info.max_mem_alloc_size);
        return NULL;
    }
    cl_mem m = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err != CL_SUCCESS)
        *st = ps_fail_cl(ctx, err, what);
    return m;
}

ps_status ps_pipeline_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    ps_pipeline_state *p = calloc(1, sizeof *p);
    if (!p)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->pipeline = p;
    const size_t qheads = d->batch * d->heads, kheads = d->batch * d->kv_heads;
    const size_t u32 = sizeof(cl_uint);
    p->keys_used = d->method == PS_METHOD_PRESCORE ? ps_plan_selected_capacity(plan) : d->n_k;

    p->codes_q = alloc(ctx, qheads * d->n_q * u32, "LSH query codes", &st);
    p->perm_q = alloc(ctx, qheads * d->n_q * u32, "LSH query order", &st);
    p->perm_inv_q = alloc(ctx, qheads * d->n_q * u32, "LSH query positions", &st);
    p->codes_k = alloc(ctx, kheads * p->keys_used * u32, "LSH key codes", &st);
    p->perm_k = alloc(ctx, kheads * p->keys_used * u32, "LSH key order", &st);
    p->perm_inv_k = alloc(ctx, kheads * p->keys_used * u32, "LSH key positions", &st);
    if (d->method == PS_METHOD_PRESCORE) {
        p->scores = alloc(ctx, kheads * d->n_k * sizeof(float), "key scores", &st);
        p->indices = alloc(ctx, kheads * p->keys_used * u32, "selected key indices", &st);
        p->counts = alloc(ctx, kheads * u32, "selected key counts", &st);
        p->k_sel = alloc(ctx, kheads * p->keys_used * d->d * sizeof(float), "selected keys", &st);
        p->v_sel =
            alloc(ctx, kheads * p->keys_used * d->d_v * sizeof(float), "selected values", &st);
    }
    return st;
}

void ps_pipeline_release(ps_plan *plan)
{
    ps_pipeline_state *p = plan->pipeline;
    if (!p)
        return;
    cl_mem all[] = {p->codes_q, p->perm_q, p->perm_inv_q, p->codes_k, p->perm_k,
                    p->perm_inv_k, p->scores, p->indices, p->counts, p->k_sel, p->v_sel};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            clReleaseMemObject(all[i]);
    free(p);
    plan->pipeline = NULL;
}

/* Keeps the first event of the whole run and the last one seen so far. */
static void track(cl_event *first, cl_event *last, cl_event stage_first, cl_event stage_last)
{
    if (stage_first && !*first) {
        *first = stage_first;
        clRetainEvent(stage_first);
    }
    if (stage_first)
        clReleaseEvent(stage_first);
    if (stage_last) {
        if (*last)
            clReleaseEvent(*last);
        *last = stage_last;
    }
}

ps_status ps_pipeline_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                              cl_mem lse, cl_event *first, cl_event *done)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_pipeline_state *p = plan->pipeline;
    ps_status st = PS_OK;
    cl_event ev_first = NULL, ev_last = NULL;

    if (d->causal)
        return ps_fail(ctx, PS_ERR_NOT_IMPLEMENTED,
                       "ps_attention: causal HyperAttention (the recursion) is not available "
                       "yet for n_k >= min_seq_len (%zu); use PS_METHOD_EXACT or raise "
                       "min_seq_len",
                       d->min_seq_len);
    cl_mem keys = k, values = v;
    if (d->method == PS_METHOD_PRESCORE) {
        /* The score and select stages enqueue without events: track the
         * pipeline's first event from the LSH stage when timing. */
        st = ps_score_enqueue(plan, k, p->scores);
        if (st == PS_OK)
            st = ps_select_enqueue(plan, p->scores, p->indices, p->counts);
        if (st == PS_OK)
            st = ps_select_gather_enqueue(plan, k, v, p->indices, p->counts, p->k_sel,
                                          p->v_sel);
        if (st != PS_OK)
            return st;
        keys = p->k_sel;
        values = p->v_sel;
    }

    const ps_lsh_rows key_rows = {d->kv_heads, p->keys_used, 0, p->keys_used};
    const ps_lsh_rows query_rows = {d->heads, d->n_q, 0, d->n_q};
    cl_event a = NULL, b = NULL;
    st = ps_lsh_enqueue(plan, &key_rows, keys, NULL, NULL, p->codes_k, p->perm_k,
                        p->perm_inv_k, &a, &b);
    track(&ev_first, &ev_last, a, b);
    a = b = NULL;
    if (st == PS_OK)
        st = ps_lsh_enqueue(plan, &query_rows, q, NULL, NULL, p->codes_q, p->perm_q,
                            p->perm_inv_q, &a, &b);
    track(&ev_first, &ev_last, a, b);
    a = b = NULL;
    if (st == PS_OK)
        st = ps_hyper_enqueue(plan, q, keys, values, p->keys_used, p->perm_q, p->perm_k, o,
                              lse, &a, &b);
    track(&ev_first, &ev_last, a, b);
    if (st != PS_OK) {
        if (ev_first)
            clReleaseEvent(ev_first);
        if (ev_last)
            clReleaseEvent(ev_last);
        return st;
    }
    *first = ev_first;
    *done = ev_last;
    return PS_OK;
}
