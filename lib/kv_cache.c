/* The key cache object (ps_kv_cache, docs/API.md "Decode"): creation, the
 * cached rows and the public calls. A cache is a plan handle (registered,
 * counted on its context, messages in plan->last_error) whose plan->kv
 * holds the state; lib/kv_index.c keeps its kept set, lib/decode.c decodes. */
#include "kv_cache.h"

#include "kernel_fit.h"
#include "core/host_alloc.h"
#include "core/tensor_layout.h"

#include <stdlib.h>
#include <string.h>

static ps_plan *plan_of(ps_kv_cache *cache) { return (ps_plan *)cache; }

ps_tensor ps_kv_cache_tensor(const ps_kv_state *s, cl_mem mem, size_t dim)
{
    return ps_dense_tensor(mem, s->p.capacity, dim, s->f16);
}

ps_tensor ps_kv_kept_tensor(const ps_kv_state *s, cl_mem mem, size_t dim)
{
    return ps_dense_tensor(mem, s->kept_rows, dim, s->f16);
}

/* An empty index: no kept keys on any head, scores 0 (keys appended before
 * the first scoring compete with score 0 until it runs). */
static ps_status clear_index(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    ps_kv_state *s = plan->kv;
    const cl_uint zero = 0;
    cl_int err = clEnqueueFillBuffer(ctx->queue, s->kept_count, &zero, sizeof zero, 0,
                                     s->p.rows * sizeof zero, 0, NULL, NULL);
    if (err == CL_SUCCESS && s->scores)
        err = clEnqueueFillBuffer(ctx->queue, s->scores, &zero, sizeof zero, 0,
                                  s->p.rows * s->p.capacity * sizeof(float), 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clEnqueueFillBuffer (key cache index)");
    return ps_wait_enqueued(ctx, "key cache index");
}

ps_status ps_kv_setup(ps_plan *plan, const ps_attention_desc *user)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    char msg[512];
    ps_kv_state *s = ps_calloc(1, sizeof *s);
    if (!s)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_kv_cache_create: no host memory");
    plan->kv = s;
    s->user = *user;
    ps_status st = ps_kv_params_from_desc(user, &s->p, msg, sizeof msg);
    if (st != PS_OK)
        return ps_fail(ctx, st, "ps_kv_cache_create: %s", msg);
    if (d->k_layout.dtype != d->v_layout.dtype)
        return ps_fail(ctx, PS_ERR_UNSUPPORTED,
                       "ps_kv_cache_create: k_layout.dtype and v_layout.dtype differ (the "
                       "cache stores K and V in one storage type)");
    s->f16 = d->k_layout.dtype == PS_DTYPE_F16;
    s->clusters = d->clusters;
    const size_t rows = s->p.rows, cap = s->p.capacity, el = s->f16 ? 2 : 4;
    s->kept_rows = s->p.kept_capacity ? s->p.kept_capacity : 1; /* valid kernel arguments */
    s->k = ps_workspace_buffer(ctx, rows * cap * d->d * el, "key cache K", &st);
    s->v = ps_workspace_buffer(ctx, rows * cap * d->d_v * el, "key cache V", &st);
    s->kept_k = ps_workspace_buffer(ctx, rows * s->kept_rows * d->d * el, "kept K", &st);
    s->kept_v = ps_workspace_buffer(ctx, rows * s->kept_rows * d->d_v * el, "kept V", &st);
    s->kept_pos = ps_workspace_buffer(ctx, rows * s->kept_rows * 4, "kept positions", &st);
    s->kept_key = ps_workspace_buffer(ctx, rows * s->kept_rows * 4, "kept score order", &st);
    s->kept_count = ps_workspace_buffer(ctx, rows * 4, "kept counts", &st);
    if (s->p.scored) {
        const size_t c = d->clusters ? d->clusters : 1;
        s->scores = ps_workspace_buffer(ctx, rows * cap * sizeof(float), "key scores", &st);
        s->targets = ps_workspace_buffer(ctx, cap * sizeof(uint32_t), "admission targets", &st);
        s->cent = ps_workspace_buffer(ctx, rows * c * d->d * sizeof(float), "centroids", &st);
        s->cterm = ps_workspace_buffer(ctx, rows * c * sizeof(float), "centroid terms", &st);
        s->minv = ps_workspace_buffer(ctx, rows * d->d * d->d * sizeof(float),
                                      "leverage factor", &st);
        s->targets_host = ps_malloc(cap * sizeof(uint32_t));
        if (st == PS_OK && !s->targets_host)
            st = ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_kv_cache_create: no host memory");
    }
    if (st != PS_OK)
        return st;
    st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "copy_rows", &s->copy_rows);
    if (st == PS_OK && s->p.scored) {
        st = ps_kernel_create(ctx, PS_PROGRAM_DECODE, "kv_score_rows", &s->score_rows);
        if (st == PS_OK)
            st = ps_kernel_create(ctx, PS_PROGRAM_DECODE, "kv_admit", &s->admit);
        if (st == PS_OK)
            st = ps_kernel_create(ctx, PS_PROGRAM_DECODE, "kv_fill", &s->fill);
        /* kv_admit's group: one work-item in the CPU shape, as the flash
         * kernels; its reduction arrays hold PS_SCORE_RED. */
        const size_t cap_group = ctx->tuning.shape == PS_SHAPE_CPU ? 1
                                 : ctx->tuning.group_cap < 256 ? ctx->tuning.group_cap
                                                               : 256;
        if (st == PS_OK)
            st = ps_kernel_fit(ctx, s->admit, "kv_admit", cap_group, 0, &s->admit_group);
    }
    if (st == PS_OK)
        st = ps_decode_setup(plan);
    return st == PS_OK ? clear_index(plan) : st;
}

void ps_kv_release(ps_plan *plan)
{
    ps_kv_state *s = plan->kv;
    if (!s)
        return;
    cl_mem mems[] = {s->k,        s->v,        s->kept_k,  s->kept_v, s->kept_pos,
                     s->kept_key, s->kept_count, s->scores, s->targets, s->cent,
                     s->cterm,    s->minv,     s->part_o,  s->part_ml};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    cl_kernel kernels[] = {s->copy_rows,  s->score_rows, s->admit,      s->fill,
                           s->partial[0], s->partial[1], s->partial[2], s->partial[3],
                           s->merge};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    free(s->targets_host);
    free(s);
    plan->kv = NULL;
}

ps_status ps_kv_cache_destroy(ps_kv_cache *cache)
{
    if (!cache)
        return PS_OK;
    if (ps_kv_enter(plan_of(cache), "ps_kv_cache_destroy") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_plan_result(plan_of(cache), PS_OK);
    return ps_plan_destroy(plan_of(cache));
}

/* The descriptor of a call's tensors: n_q queries or n_new appended rows. */
static ps_attention_desc call_desc(const ps_plan *plan, size_t n_q, size_t n_k)
{
    ps_attention_desc c = plan->desc;
    c.n_q = n_q;
    c.n_k = n_k;
    return c;
}

/* Writes rows [length, length + n_new) from k and v, then the index. */
static ps_status append_checked(ps_plan *plan, cl_mem k, cl_mem v, size_t n_new)
{
    ps_context *ctx = plan->ctx;
    ps_kv_state *s = plan->kv;
    const size_t n0 = s->length;
    if (n_new == 0 || n_new > s->p.capacity - n0)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_kv_cache_append: %zu rows do not fit: the cache holds %zu of %zu "
                       "(capacity, desc.n_k)%s",
                       n_new, n0, s->p.capacity, n_new == 0 ? " (n_new is 0)" : "");
    const ps_attention_desc cd = call_desc(plan, 1, n_new);
    ps_status st = ps_check_buffer(ctx, k, ps_layout_bytes(&cd, PS_TENSOR_K), "ps_kv_cache_append: k");
    if (st == PS_OK)
        st = ps_check_buffer(ctx, v, ps_layout_bytes(&cd, PS_TENSOR_V), "ps_kv_cache_append: v");
    if (st != PS_OK)
        return st;
    const ps_tensor in[2] = {ps_tensor_make(k, ps_layout_view(&cd, PS_TENSOR_K)),
                             ps_tensor_make(v, ps_layout_view(&cd, PS_TENSOR_V))};
    const ps_tensor to[2] = {ps_kv_cache_tensor(s, s->k, cd.d), ps_kv_cache_tensor(s, s->v, cd.d_v)};
    const cl_int zero = 0, row0 = (cl_int)n0, count = (cl_int)n_new;
    for (int i = 0; i < 2; i++) {
        const cl_int width = (cl_int)(i ? cd.d_v : cd.d);
        ps_arg_setter a = {s->copy_rows, 0, CL_SUCCESS};
        ps_arg_tensor(&a, &in[i]);
        ps_arg_tensor(&a, &to[i]);
        ps_arg(&a, sizeof zero, &zero);
        ps_arg(&a, sizeof row0, &row0);
        ps_arg(&a, sizeof count, &count);
        ps_arg(&a, sizeof width, &width);
        st = ps_args_done(ctx, &a, "copy_rows");
        if (st != PS_OK)
            return st;
        const size_t g[2] = {n_new, s->p.rows};
        st = ps_launch(ctx, s->copy_rows, "copy_rows", 2, g, NULL);
        if (st != PS_OK)
            return st;
    }
    const size_t saved_kept = s->kept;
    st = ps_kv_index_append(plan, n0, n0 + n_new);
    if (st == PS_OK)
        st = ps_wait_enqueued(ctx, "ps_kv_cache_append");
    if (st != PS_OK) { /* the rows beyond the length are not part of the cache */
        s->kept = saved_kept;
        return st;
    }
    s->length = n0 + n_new;
    return PS_OK;
}

ps_status ps_kv_cache_append(ps_kv_cache *cache, cl_mem k, cl_mem v, size_t n_new)
{
    ps_plan *plan = plan_of(cache);
    if (ps_kv_enter(plan, "ps_kv_cache_append") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_plan_result(plan, append_checked(plan, k, v, n_new));
}

ps_status ps_kv_cache_append_host(ps_kv_cache *cache, const void *k, const void *v,
                                  size_t n_new)
{
    ps_plan *plan = plan_of(cache);
    if (ps_kv_enter(plan, "ps_kv_cache_append_host") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    ps_status st = PS_OK;
    cl_mem kb = NULL, vb = NULL;
    cl_int err = CL_SUCCESS;
    PS_GOTO_IF(!k || !v, ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                                 "ps_kv_cache_append_host: %s is NULL", !k ? "k" : "v"));
    PS_GOTO_IF(n_new == 0 || n_new > plan->kv->p.capacity - plan->kv->length,
               append_checked(plan, NULL, NULL, n_new)); /* the capacity message */
    const ps_attention_desc cd = call_desc(plan, 1, n_new);
    kb = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                        ps_layout_bytes(&cd, PS_TENSOR_K), (void *)k, &err);
    PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_kv_cache_append_host k)");
    vb = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                        ps_layout_bytes(&cd, PS_TENSOR_V), (void *)v, &err);
    PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_kv_cache_append_host v)");
    st = append_checked(plan, kb, vb, n_new);
cleanup:
    if (kb)
        clReleaseMemObject(kb);
    if (vb)
        clReleaseMemObject(vb);
    return ps_plan_result(plan, st);
}

ps_status ps_kv_cache_rescore(ps_kv_cache *cache)
{
    ps_plan *plan = plan_of(cache);
    if (ps_kv_enter(plan, "ps_kv_cache_rescore") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_plan_result(plan, ps_kv_index_rescore(plan));
}

ps_status ps_kv_cache_reset(ps_kv_cache *cache)
{
    ps_plan *plan = plan_of(cache);
    if (ps_kv_enter(plan, "ps_kv_cache_reset") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_kv_state *s = plan->kv;
    s->length = s->kept = s->n_scored = s->rescores = 0;
    s->have_stats = 0;
    s->clusters = plan->desc.clusters;
    return ps_plan_result(plan, clear_index(plan));
}

static ps_status decode_checked(ps_plan *plan, cl_mem q, size_t n_q, cl_mem o, cl_mem lse,
                                ps_decode_mode mode)
{
    ps_context *ctx = plan->ctx;
    const ps_kv_state *s = plan->kv;
    if (mode != PS_DECODE_CACHE && mode != PS_DECODE_EXACT)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "ps_kv_cache_decode: mode %d is not a "
                       "ps_decode_mode", (int)mode);
    if (n_q == 0 || n_q > s->p.max_queries)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_kv_cache_decode: n_q = %zu: 1 to %zu (desc.n_q at creation)", n_q,
                       s->p.max_queries);
    if (s->length == 0)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "ps_kv_cache_decode: the cache is empty");
    const ps_attention_desc cd = call_desc(plan, n_q, s->length);
    ps_status st = ps_check_buffer(ctx, q, ps_layout_bytes(&cd, PS_TENSOR_Q), "ps_kv_cache_decode: q");
    if (st == PS_OK)
        st = ps_check_buffer(ctx, o, ps_layout_bytes(&cd, PS_TENSOR_O), "ps_kv_cache_decode: o");
    if (st == PS_OK && lse)
        st = ps_check_buffer(ctx, lse, ps_desc_lse_elems(&cd) * sizeof(float),
                             "ps_kv_cache_decode: lse");
    if (st != PS_OK)
        return st;
    if (o == q || o == lse)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_kv_cache_decode: o is also %s", o == q ? "q" : "lse");
    const ps_tensor qt = ps_tensor_make(q, ps_layout_view(&cd, PS_TENSOR_Q));
    const ps_tensor ot = ps_tensor_make(o, ps_layout_view(&cd, PS_TENSOR_O));
    st = ps_decode_enqueue(plan, &qt, n_q, &ot, lse, mode == PS_DECODE_EXACT);
    return st == PS_OK ? ps_wait_enqueued(ctx, "ps_kv_cache_decode") : st;
}

ps_status ps_kv_cache_decode(ps_kv_cache *cache, cl_mem q, size_t n_q, cl_mem o, cl_mem lse,
                             ps_decode_mode mode)
{
    ps_plan *plan = plan_of(cache);
    if (ps_kv_enter(plan, "ps_kv_cache_decode") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_plan_result(plan, decode_checked(plan, q, n_q, o, lse, mode));
}

ps_status ps_kv_cache_decode_host(ps_kv_cache *cache, const void *q, size_t n_q, void *o,
                                  float *lse, ps_decode_mode mode)
{
    ps_plan *plan = plan_of(cache);
    if (ps_kv_enter(plan, "ps_kv_cache_decode_host") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    ps_status st = PS_OK;
    cl_mem qb = NULL, ob = NULL, lb = NULL;
    cl_int err = CL_SUCCESS;
    PS_GOTO_IF(!q || !o, ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                                 "ps_kv_cache_decode_host: %s is NULL", !q ? "q" : "o"));
    PS_GOTO_IF(n_q == 0 || n_q > plan->kv->p.max_queries,
               decode_checked(plan, NULL, n_q, NULL, NULL, mode)); /* the n_q message */
    const ps_attention_desc cd = call_desc(plan, n_q, plan->kv->length);
    const size_t o_bytes = ps_layout_bytes(&cd, PS_TENSOR_O);
    const size_t lse_bytes = ps_desc_lse_elems(&cd) * sizeof(float);
    qb = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                        ps_layout_bytes(&cd, PS_TENSOR_Q), (void *)q, &err);
    PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_kv_cache_decode_host q)");
    /* O's elements between its rows come back as they were (as ps_attention_host). */
    ob = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, o_bytes, o, &err);
    PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_kv_cache_decode_host o)");
    if (lse) {
        lb = clCreateBuffer(ctx->cl_ctx, CL_MEM_WRITE_ONLY, lse_bytes, NULL, &err);
        PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_kv_cache_decode_host lse)");
    }
    st = decode_checked(plan, qb, n_q, ob, lb, mode);
    PS_GOTO_IF(st != PS_OK, st);
    PS_CL_GOTO(ctx, clEnqueueReadBuffer(ctx->queue, ob, CL_TRUE, 0, o_bytes, o, 0, NULL, NULL),
               "clEnqueueReadBuffer (o)");
    if (lse)
        PS_CL_GOTO(ctx, clEnqueueReadBuffer(ctx->queue, lb, CL_TRUE, 0, lse_bytes, lse, 0, NULL,
                                            NULL),
                   "clEnqueueReadBuffer (lse)");
cleanup:
    if (qb)
        clReleaseMemObject(qb);
    if (ob)
        clReleaseMemObject(ob);
    if (lb)
        clReleaseMemObject(lb);
    return ps_plan_result(plan, st);
}

ps_status ps_kv_cache_get_info(const ps_kv_cache *cache, ps_kv_cache_info *info)
{
    ps_plan *plan = plan_of((ps_kv_cache *)cache);
    if (ps_kv_enter(plan, "ps_kv_cache_get_info") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    if (!info)
        return ps_plan_result(plan, ps_fail(plan->ctx, PS_ERR_INVALID_ARGUMENT,
                                            "ps_kv_cache_get_info: info is NULL"));
    const ps_kv_state *s = plan->kv;
    memset(info, 0, sizeof *info);
    info->length = s->length;
    info->capacity = s->p.capacity;
    info->kept = s->kept;
    info->kept_capacity = s->p.kept_capacity;
    info->scored_length = s->n_scored;
    info->rescores = s->rescores;
    info->device_bytes = plan->device_bytes;
    return ps_plan_result(plan, PS_OK);
}

static int cmp_u32(const void *a, const void *b)
{
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

ps_status ps_kv_cache_kept(ps_kv_cache *cache, uint32_t *positions, uint32_t *counts)
{
    ps_plan *plan = plan_of(cache);
    if (ps_kv_enter(plan, "ps_kv_cache_kept") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    const ps_kv_state *s = plan->kv;
    ps_status st = PS_OK;
    uint32_t *dev_counts = NULL;
    PS_GOTO_IF(!positions, ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                                   "ps_kv_cache_kept: positions is NULL"));
    const size_t rows = s->p.rows, kc = s->p.kept_capacity;
    if (kc == 0) { /* EXACT: no kept set */
        if (counts)
            memset(counts, 0, rows * sizeof *counts);
        goto cleanup;
    }
    dev_counts = ps_malloc(rows * sizeof *dev_counts);
    PS_GOTO_IF(!dev_counts, ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_kv_cache_kept: no host memory"));
    PS_CL_GOTO(ctx, clEnqueueReadBuffer(ctx->queue, s->kept_pos, CL_TRUE, 0,
                                        rows * kc * sizeof(uint32_t), positions, 0, NULL, NULL),
               "clEnqueueReadBuffer (kept positions)");
    PS_CL_GOTO(ctx, clEnqueueReadBuffer(ctx->queue, s->kept_count, CL_TRUE, 0,
                                        rows * sizeof(uint32_t), dev_counts, 0, NULL, NULL),
               "clEnqueueReadBuffer (kept counts)");
    for (size_t r = 0; r < rows; r++) {
        const size_t n = s->length == 0 ? 0 : (dev_counts[r] < kc ? dev_counts[r] : kc);
        uint32_t *p = positions + r * kc;
        qsort(p, n, sizeof *p, cmp_u32);
        for (size_t i = n; i < kc; i++)
            p[i] = UINT32_MAX;
        if (counts)
            counts[r] = (uint32_t)n;
    }
cleanup:
    free(dev_counts);
    return ps_plan_result(plan, st);
}

const char *ps_kv_cache_last_error(const ps_kv_cache *cache)
{
    return ps_plan_last_error((const ps_plan *)cache);
}
