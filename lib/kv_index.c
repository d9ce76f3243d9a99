/* The key cache's kept set (lib/core/kv_params.h): full scorings through a
 * scoring plan (steps 1 and 2 over the cached keys), and between them the
 * scoring of appended keys against the last scoring's statistics and the
 * admission of keys leaving the window (cl/decode.cl kv_score_rows,
 * kv_admit, kv_fill). */
#include "kv_cache.h"

#include "plan.h"
#include "score.h"
#include "select.h"
#include "core/select_params.h"
#include "core/size_math.h"

#include <string.h>

/* Candidates one kv_admit launch takes within the loop budget (a search of
 * the kept set, the group's reduction and a row copy per candidate). */
static size_t admit_chunk(const ps_plan *plan)
{
    const ps_kv_state *s = plan->kv;
    const unsigned budget = plan->ctx->tuning.loop_budget;
    if (!budget)
        return (size_t)-1;
    const size_t g = s->admit_group;
    const size_t per = s->kept_rows / g + g + (plan->desc.d + plan->desc.d_v) / g + 8;
    const size_t chunk = budget / (2 * per);
    return chunk < 1 ? 1 : chunk;
}

/* Scores cache rows [n0, n1) against the statistics held. */
static ps_status score_rows(ps_plan *plan, size_t n0, size_t n1)
{
    ps_kv_state *s = plan->kv;
    const ps_attention_desc *d = &plan->desc;
    const ps_tensor k = ps_kv_cache_tensor(s, s->k, d->d);
    const cl_int row0 = (cl_int)n0, count = (cl_int)(n1 - n0), rows = (cl_int)d->n_k,
                 dim = (cl_int)d->d, method = (cl_int)d->score, c = (cl_int)s->clusters;
    ps_arg_setter a = {s->score_rows, 0, CL_SUCCESS};
    ps_arg_tensor(&a, &k);
    ps_arg(&a, sizeof s->scores, &s->scores);
    ps_arg(&a, sizeof row0, &row0);
    ps_arg(&a, sizeof count, &count);
    ps_arg(&a, sizeof rows, &rows);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof method, &method);
    ps_arg(&a, sizeof c, &c);
    ps_arg(&a, sizeof s->cent, &s->cent);
    ps_arg(&a, sizeof s->cterm, &s->cterm);
    ps_arg(&a, sizeof s->minv, &s->minv);
    const ps_status st = ps_args_done(plan->ctx, &a, "kv_score_rows");
    if (st != PS_OK)
        return st;
    const size_t g[2] = {n1 - n0, s->p.rows};
    return ps_launch(plan->ctx, s->score_rows, "kv_score_rows", 2, g, NULL);
}

/* Admits positions [first, last) in order; the host follows the count. */
static ps_status admit(ps_plan *plan, size_t first, size_t last)
{
    ps_context *ctx = plan->ctx;
    ps_kv_state *s = plan->kv;
    const ps_attention_desc *d = &plan->desc;
    const size_t count = last - first;
    for (size_t t = 0; t < count; t++) {
        const size_t target = ps_kv_target(&s->p, ps_kv_leave_length(&s->p, first + t));
        s->targets_host[t] = (uint32_t)target;
        if (s->kept < target)
            s->kept++;
    }
    cl_int err = clEnqueueWriteBuffer(ctx->queue, s->targets, CL_TRUE, 0,
                                      count * sizeof(uint32_t), s->targets_host, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clEnqueueWriteBuffer (kv_admit targets)");
    const ps_tensor kc = ps_kv_cache_tensor(s, s->k, d->d), vc = ps_kv_cache_tensor(s, s->v, d->d_v);
    const ps_tensor kk = ps_kv_kept_tensor(s, s->kept_k, d->d);
    const ps_tensor vk = ps_kv_kept_tensor(s, s->kept_v, d->d_v);
    const size_t chunk = admit_chunk(plan);
    for (size_t t0 = 0; t0 < count; t0 += chunk) {
        const size_t n = count - t0 < chunk ? count - t0 : chunk;
        /* targets from element t0: a sub-range costs a copy of at most n words */
        if (t0 > 0) {
            err = clEnqueueWriteBuffer(ctx->queue, s->targets, CL_TRUE, 0, n * sizeof(uint32_t),
                                       s->targets_host + t0, 0, NULL, NULL);
            if (err != CL_SUCCESS)
                return ps_fail_cl(ctx, err, "clEnqueueWriteBuffer (kv_admit targets)");
        }
        const cl_int first_i = (cl_int)(first + t0), n_i = (cl_int)n,
                     rows = (cl_int)d->n_k, kr = (cl_int)s->kept_rows, dim = (cl_int)d->d,
                     dimv = (cl_int)d->d_v;
        ps_arg_setter a = {s->admit, 0, CL_SUCCESS};
        ps_arg_tensor(&a, &kc);
        ps_arg_tensor(&a, &vc);
        ps_arg_tensor(&a, &kk);
        ps_arg_tensor(&a, &vk);
        ps_arg(&a, sizeof s->scores, &s->scores);
        ps_arg(&a, sizeof s->kept_pos, &s->kept_pos);
        ps_arg(&a, sizeof s->kept_key, &s->kept_key);
        ps_arg(&a, sizeof s->kept_count, &s->kept_count);
        ps_arg(&a, sizeof s->targets, &s->targets);
        ps_arg(&a, sizeof first_i, &first_i);
        ps_arg(&a, sizeof n_i, &n_i);
        ps_arg(&a, sizeof rows, &rows);
        ps_arg(&a, sizeof kr, &kr);
        ps_arg(&a, sizeof dim, &dim);
        ps_arg(&a, sizeof dimv, &dimv);
        ps_status st = ps_args_done(ctx, &a, "kv_admit");
        if (st != PS_OK)
            return st;
        const size_t g[2] = {s->admit_group, s->p.rows}, l[2] = {s->admit_group, 1};
        st = ps_launch(ctx, s->admit, "kv_admit", 2, g, l);
        if (st != PS_OK)
            return st;
    }
    return PS_OK;
}

/* The scoring plan's descriptor: PRESCORE over the first n cached keys (a
 * view of the cache), keeping target + forced with the sinks and window
 * forced, so that the rest of its selection is the kept set. */
static void scoring_desc(const ps_plan *plan, size_t n, ps_attention_desc *sd)
{
    const ps_kv_state *s = plan->kv;
    const ps_attention_desc *d = &plan->desc;
    const ps_kv_span span = ps_kv_span_at(&s->p, n);
    const size_t forced = span.sink_len + (n - span.win_start);
    ps_attention_desc_default(sd);
    sd->batch = d->batch;
    sd->heads = sd->kv_heads = d->kv_heads;
    sd->n_q = 1;
    sd->n_k = n;
    sd->d = d->d;
    sd->d_v = d->d_v;
    sd->method = PS_METHOD_PRESCORE;
    sd->score = d->score;
    sd->budget = ps_kv_target(&s->p, n) + forced;
    sd->clusters = d->clusters < n ? d->clusters : n;
    sd->kmeans_iters = d->kmeans_iters;
    sd->leverage_lambda = d->leverage_lambda;
    sd->sink = s->p.sink;
    sd->window = s->p.window;
    sd->seed = d->seed;
    sd->global_keys = 0;
    sd->min_seq_len = 1;
    const size_t cap = d->n_k;
    sd->k_layout.dtype = sd->v_layout.dtype = s->f16 ? PS_DTYPE_F16 : PS_DTYPE_F32;
    sd->k_layout.stride[0] = d->kv_heads * cap * d->d;
    sd->k_layout.stride[1] = cap * d->d;
    sd->k_layout.stride[2] = d->d;
    sd->k_layout.stride[3] = 1;
    sd->v_layout.stride[0] = d->kv_heads * cap * d->d_v;
    sd->v_layout.stride[1] = cap * d->d_v;
    sd->v_layout.stride[2] = d->d_v;
    sd->v_layout.stride[3] = 1;
}

/* Copies the statistics of the scoring plan into the cache's buffers. */
static ps_status keep_statistics(ps_plan *plan, const ps_plan *sp)
{
    ps_context *ctx = plan->ctx;
    ps_kv_state *s = plan->kv;
    cl_mem cent, cterm, minv;
    ps_status st = ps_score_statistics(sp, &cent, &cterm, &minv);
    if (st != PS_OK)
        return ps_fail(ctx, st, "kv index: the scoring plan has no score stage");
    const size_t rows = s->p.rows, dim = plan->desc.d, c = sp->desc.clusters;
    const struct {
        cl_mem src, dst;
        size_t bytes;
    } copies[] = {
        {cent, s->cent, rows * c * dim * sizeof(float)},
        {cterm, s->cterm, rows * c * sizeof(float)},
        {minv, s->minv, rows * dim * dim * sizeof(float)},
    };
    for (size_t i = 0; i < sizeof copies / sizeof copies[0]; i++) {
        if (!copies[i].src)
            continue;
        const cl_int err = clEnqueueCopyBuffer(ctx->queue, copies[i].src, copies[i].dst, 0, 0,
                                               copies[i].bytes, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return ps_fail_cl(ctx, err, "clEnqueueCopyBuffer (kv statistics)");
    }
    s->clusters = c;
    return PS_OK;
}

/* Fills the kept set from the selection and keeps the scores. */
static ps_status fill(ps_plan *plan, size_t n, cl_mem scores, cl_mem indices, cl_mem counts,
                      size_t index_rows)
{
    ps_context *ctx = plan->ctx;
    ps_kv_state *s = plan->kv;
    const ps_attention_desc *d = &plan->desc;
    const ps_kv_span span = ps_kv_span_at(&s->p, n);
    const ps_tensor kc = ps_kv_cache_tensor(s, s->k, d->d), vc = ps_kv_cache_tensor(s, s->v, d->d_v);
    const ps_tensor kk = ps_kv_kept_tensor(s, s->kept_k, d->d);
    const ps_tensor vk = ps_kv_kept_tensor(s, s->kept_v, d->d_v);
    const cl_int ir = (cl_int)index_rows, len = (cl_int)n, sl = (cl_int)span.sink_len,
                 ws = (cl_int)span.win_start, kr = (cl_int)s->kept_rows, dim = (cl_int)d->d,
                 dimv = (cl_int)d->d_v;
    ps_arg_setter a = {s->fill, 0, CL_SUCCESS};
    ps_arg_tensor(&a, &kc);
    ps_arg_tensor(&a, &vc);
    ps_arg_tensor(&a, &kk);
    ps_arg_tensor(&a, &vk);
    ps_arg(&a, sizeof indices, &indices);
    ps_arg(&a, sizeof counts, &counts);
    ps_arg(&a, sizeof scores, &scores);
    ps_arg(&a, sizeof s->kept_pos, &s->kept_pos);
    ps_arg(&a, sizeof s->kept_key, &s->kept_key);
    ps_arg(&a, sizeof s->kept_count, &s->kept_count);
    ps_arg(&a, sizeof ir, &ir);
    ps_arg(&a, sizeof len, &len);
    ps_arg(&a, sizeof sl, &sl);
    ps_arg(&a, sizeof ws, &ws);
    ps_arg(&a, sizeof kr, &kr);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof dimv, &dimv);
    ps_status st = ps_args_done(ctx, &a, "kv_fill");
    if (st != PS_OK)
        return st;
    const size_t g[2] = {s->kept_rows, s->p.rows};
    st = ps_launch(ctx, s->fill, "kv_fill", 2, g, NULL);
    if (st != PS_OK)
        return st;
    /* scores [rows][n] -> the cache's [rows][capacity] */
    const ps_tensor from = ps_dense_tensor(scores, n, 1, 0);
    const ps_tensor to = ps_dense_tensor(s->scores, d->n_k, 1, 0);
    const cl_int zero = 0, count = (cl_int)n, one = 1;
    a = (ps_arg_setter){s->copy_rows, 0, CL_SUCCESS};
    ps_arg_tensor(&a, &from);
    ps_arg_tensor(&a, &to);
    ps_arg(&a, sizeof zero, &zero);
    ps_arg(&a, sizeof zero, &zero);
    ps_arg(&a, sizeof count, &count);
    ps_arg(&a, sizeof one, &one);
    st = ps_args_done(ctx, &a, "copy_rows");
    if (st != PS_OK)
        return st;
    const size_t cg[2] = {n, s->p.rows};
    return ps_launch(ctx, s->copy_rows, "copy_rows", 2, cg, NULL);
}

/* A full scoring at length n: scores, selection, kept set, statistics. */
static ps_status rescore_at(ps_plan *plan, size_t n)
{
    ps_context *ctx = plan->ctx;
    ps_kv_state *s = plan->kv;
    ps_attention_desc sd;
    scoring_desc(plan, n, &sd);
    ps_plan *sp = NULL;
    cl_mem scores = NULL, indices = NULL, counts = NULL;
    ps_status st = ps_plan_create_scoring(ctx, &sd, &sp);
    if (st != PS_OK)
        return st;
    const size_t index_rows = ps_plan_selected_capacity(sp);
    const size_t rows = s->p.rows;
    scores = ps_workspace_buffer(ctx, rows * n * sizeof(float), "kv rescore scores", &st);
    indices = ps_workspace_buffer(ctx, rows * index_rows * sizeof(uint32_t),
                                  "kv rescore indices", &st);
    counts = ps_workspace_buffer(ctx, rows * sizeof(uint32_t), "kv rescore counts", &st);
    if (st == PS_OK) {
        const ps_tensor k = ps_plan_tensor(sp, PS_TENSOR_K, s->k);
        st = ps_score_enqueue(sp, &k, scores);
    }
    if (st == PS_OK)
        st = ps_select_enqueue(sp, scores, indices, counts);
    if (st == PS_OK)
        st = fill(plan, n, scores, indices, counts, index_rows);
    if (st == PS_OK)
        st = keep_statistics(plan, sp);
    if (st == PS_OK) /* the temporaries and the plan go once the queue is done */
        st = ps_wait_enqueued(ctx, "kv rescore");
    if (scores)
        clReleaseMemObject(scores);
    if (indices)
        clReleaseMemObject(indices);
    if (counts)
        clReleaseMemObject(counts);
    if (sp)
        ps_plan_destroy(sp);
    if (st != PS_OK)
        return st;
    const ps_kv_span span = ps_kv_span_at(&s->p, n);
    const size_t eligible = span.win_start - span.sink_len, target = ps_kv_target(&s->p, n);
    s->kept = eligible < target ? eligible : target;
    s->n_scored = n;
    s->rescores++;
    s->have_stats = 1;
    return PS_OK;
}

ps_status ps_kv_index_append(ps_plan *plan, size_t n0, size_t n1)
{
    ps_kv_state *s = plan->kv;
    if (!s->p.scored)
        return PS_OK;
    if (ps_kv_rescore_due(&s->p, n1, s->n_scored))
        return rescore_at(plan, n1);
    ps_status st = PS_OK;
    if (s->have_stats)
        st = score_rows(plan, n0, n1);
    const ps_kv_span a = ps_kv_span_at(&s->p, n0), b = ps_kv_span_at(&s->p, n1);
    const size_t first = a.win_start > b.sink_len ? a.win_start : b.sink_len;
    if (st == PS_OK && b.win_start > first)
        st = admit(plan, first, b.win_start);
    return st;
}

ps_status ps_kv_index_rescore(ps_plan *plan)
{
    ps_kv_state *s = plan->kv;
    if (!s->p.scored || s->length == 0)
        return PS_OK;
    return rescore_at(plan, s->length);
}
