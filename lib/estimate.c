/* The per-call error estimate on the device; see estimate.h. */
#include "estimate.h"

#include "exact.h"
#include "handles.h"
#include "kernel_fit.h"
#include "core/host_alloc.h"
#include "core/tensor_layout.h"

#include <stdlib.h>
#include <string.h>

/* Keys one probe_partial work-item walks at most (as the sketch's chunks):
 * enough work-items at long n_k; fewer where the loop budget asks. */
#define PS_PROBE_CHUNK_KEYS 1024

struct ps_estimate_state {
    size_t rows, chunks; /* probe rows per query head; key chunks */
    size_t chunk_keys;   /* keys per probe_partial work-item */
    cl_kernel gather, partial, merge, compare, reduce;
    cl_mem oexact, lse_exact; /* [B*H][rows][dv], [B*H][rows]: the probes' exact rows */
    cl_mem qp, rowpos;      /* [B*H][rows][d] float, [B*H][rows] uint */
    cl_mem part_o, part_ml; /* [B*H][rows][chunks][dv], [..][chunks] float2 */
    cl_mem stats, est;      /* [B*H][rows] float4, [B*H] float2 */
    cl_mem lse_own;         /* [B*H][n_q]: the LSE when the caller wants none */
    cl_mem lse_head;        /* [n_q]: one recomputed head's LSE (tolerance) */
    ps_plan *head_plan;     /* tolerance: exact attention of one head (its own
                               exact stage, sized for every key) */
    float *host_est;        /* [B*H][2]: the last estimate, read back */
    unsigned char *recomputed; /* [B*H]: heads the last call recomputed exactly */
    int done;               /* a call has written an estimate */
};

/* The exact plan of one head of plan: its shapes with batch = heads =
 * kv_heads = 1, its layouts' strides without offsets (the calls shift the
 * views to the head), nothing approximate. */
static ps_status head_plan_create(ps_plan *plan, ps_plan **out)
{
    ps_attention_desc one = plan->desc;
    one.batch = one.heads = one.kv_heads = 1;
    one.method = PS_METHOD_EXACT;
    one.selection = PS_SELECTION_TOP;
    one.sketch_queries = one.error_probes = 0;
    one.error_tolerance = 0.0f;
    one.global_keys = 0;
    one.check_finite = 0;
    one.want_lse = 1;
    one.cu_seqlens_q = one.cu_seqlens_k = NULL;
    one.q_layout.offset = one.k_layout.offset = one.v_layout.offset = one.o_layout.offset = 0;
    return ps_plan_create(plan->ctx, &one, out);
}

ps_status ps_estimate_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    ps_estimate_state *e = ps_calloc(1, sizeof *e);
    if (!e)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->estimate = e;
    const size_t qh = d->batch * d->heads;
    e->rows = d->n_q < d->error_probes ? d->n_q : d->error_probes;
    /* Back-edges per key of probe_partial: d / 4, d_v / 4 and its own. */
    e->chunk_keys = ps_loop_items(ctx, d->d / 4 + d->d_v / 4 + 2, PS_PROBE_CHUNK_KEYS);
    e->chunks = d->n_k ? (d->n_k + e->chunk_keys - 1) / e->chunk_keys : 1;
    const size_t r = qh * (e->rows ? e->rows : 1);
    e->host_est = ps_calloc(2 * qh, sizeof *e->host_est);
    e->recomputed = ps_calloc(qh, 1);
    if (!e->host_est || !e->recomputed)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    e->qp = ps_workspace_buffer(ctx, r * d->d * sizeof(float), "probe rows", &st);
    e->rowpos = ps_workspace_buffer(ctx, r * sizeof(cl_uint), "probe positions", &st);
    e->part_o = ps_workspace_buffer(ctx, r * e->chunks * d->d_v * sizeof(float),
                                    "probe partial outputs", &st);
    e->part_ml = ps_workspace_buffer(ctx, r * e->chunks * 2 * sizeof(float),
                                     "probe partial statistics", &st);
    e->stats = ps_workspace_buffer(ctx, r * 4 * sizeof(float), "probe row errors", &st);
    e->oexact = ps_workspace_buffer(ctx, r * d->d_v * sizeof(float), "probe exact rows", &st);
    e->lse_exact = ps_workspace_buffer(ctx, r * sizeof(float), "probe exact LSE", &st);
    e->est = ps_workspace_buffer(ctx, qh * 2 * sizeof(float), "error estimate", &st);
    e->lse_own = ps_workspace_buffer(ctx, qh * (d->n_q ? d->n_q : 1) * sizeof(float),
                                     "estimate LSE", &st);
    if (d->error_tolerance > 0.0f) {
        e->lse_head = ps_workspace_buffer(ctx, (d->n_q ? d->n_q : 1) * sizeof(float),
                                          "recomputed head LSE", &st);
        if (st == PS_OK)
            st = head_plan_create(plan, &e->head_plan);
    }
    const char *names[5] = {"probe_gather", "probe_partial", "probe_merge", "probe_compare",
                            "probe_reduce"};
    cl_kernel *kernels[5] = {&e->gather, &e->partial, &e->merge, &e->compare, &e->reduce};
    for (int i = 0; i < 5 && st == PS_OK; i++)
        st = ps_kernel_create(ctx, PS_PROGRAM_ESTIMATE, names[i], kernels[i]);
    return st; /* on failure ps_plan_create calls ps_estimate_release */
}

void ps_estimate_release(ps_plan *plan)
{
    ps_estimate_state *e = plan->estimate;
    if (!e)
        return;
    cl_kernel kernels[] = {e->gather, e->partial, e->merge, e->compare, e->reduce};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    cl_mem mems[] = {e->qp,  e->rowpos,  e->part_o,    e->part_ml,  e->stats,
                     e->est, e->lse_own, e->lse_head, e->oexact, e->lse_exact};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    if (e->head_plan)
        ps_plan_destroy(e->head_plan);
    free(e->host_est);
    free(e->recomputed);
    free(e);
    plan->estimate = NULL;
}

void ps_estimate_forget(ps_plan *plan)
{
    if (plan->estimate)
        plan->estimate->done = 0;
}

cl_mem ps_estimate_row_lse(const ps_plan *plan, cl_mem lse)
{
    return lse || !plan->estimate ? lse : plan->estimate->lse_own;
}

/* The probes: gather, partial attention per key chunk, compare, reduce. */
static ps_status probes_enqueue(ps_plan *plan, ps_estimate_state *e, cl_mem q, cl_mem k,
                                cl_mem v, cl_mem o, cl_mem lse)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const cl_int dim = (cl_int)d->d, dv = (cl_int)d->d_v, n_q = (cl_int)d->n_q,
                 n_k = (cl_int)d->n_k, p = (cl_int)d->error_probes, rows = (cl_int)e->rows,
                 chunks = (cl_int)e->chunks, group = (cl_int)(d->heads / d->kv_heads),
                 chunk_keys = (cl_int)e->chunk_keys, causal = d->causal,
                 heads = (cl_int)(d->batch * d->heads);
    const cl_uint seed_lo = (cl_uint)d->seed, seed_hi = (cl_uint)(d->seed >> 32);
    const cl_float scale_log2 = (cl_float)(d->scale * 1.4426950408889634);
    const ps_tensor tq = ps_plan_tensor(plan, PS_TENSOR_Q, q),
                    tk = ps_plan_tensor(plan, PS_TENSOR_K, k),
                    tv = ps_plan_tensor(plan, PS_TENSOR_V, v),
                    to = ps_plan_tensor(plan, PS_TENSOR_O, o);
    const size_t qh = d->batch * d->heads;
    const size_t g_rows[2] = {e->rows, qh}, g_part[3] = {e->rows, qh, e->chunks};

    ps_arg_setter a = {e->gather, 0, CL_SUCCESS};
    ps_arg_tensor(&a, &tq);
    ps_arg(&a, sizeof e->qp, &e->qp);
    ps_arg(&a, sizeof e->rowpos, &e->rowpos);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof n_q, &n_q);
    ps_arg(&a, sizeof p, &p);
    ps_arg(&a, sizeof seed_lo, &seed_lo);
    ps_arg(&a, sizeof seed_hi, &seed_hi);
    ps_arg(&a, sizeof scale_log2, &scale_log2);
    ps_status st = ps_args_done(ctx, &a, "probe_gather");
    if (st == PS_OK)
        st = ps_launch(ctx, e->gather, "probe_gather", 2, g_rows, NULL);

    a = (ps_arg_setter){e->partial, 0, CL_SUCCESS};
    ps_arg(&a, sizeof e->qp, &e->qp);
    ps_arg(&a, sizeof e->rowpos, &e->rowpos);
    ps_arg_tensor(&a, &tk);
    ps_arg_tensor(&a, &tv);
    ps_arg(&a, sizeof e->part_o, &e->part_o);
    ps_arg(&a, sizeof e->part_ml, &e->part_ml);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof dv, &dv);
    ps_arg(&a, sizeof n_q, &n_q);
    ps_arg(&a, sizeof n_k, &n_k);
    ps_arg(&a, sizeof rows, &rows);
    ps_arg(&a, sizeof group, &group);
    ps_arg(&a, sizeof chunk_keys, &chunk_keys);
    ps_arg(&a, sizeof causal, &causal);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "probe_partial");
    if (st == PS_OK)
        st = ps_launch(ctx, e->partial, "probe_partial", 3, g_part, NULL);

    a = (ps_arg_setter){e->merge, 0, CL_SUCCESS};
    ps_arg(&a, sizeof e->part_o, &e->part_o);
    ps_arg(&a, sizeof e->part_ml, &e->part_ml);
    ps_arg(&a, sizeof e->oexact, &e->oexact);
    ps_arg(&a, sizeof e->lse_exact, &e->lse_exact);
    ps_arg(&a, sizeof dv, &dv);
    ps_arg(&a, sizeof rows, &rows);
    ps_arg(&a, sizeof chunks, &chunks);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "probe_merge");
    const size_t g_merge[3] = {d->d_v, e->rows, qh};
    if (st == PS_OK)
        st = ps_launch(ctx, e->merge, "probe_merge", 3, g_merge, NULL);

    a = (ps_arg_setter){e->compare, 0, CL_SUCCESS};
    ps_arg(&a, sizeof e->oexact, &e->oexact);
    ps_arg(&a, sizeof e->lse_exact, &e->lse_exact);
    ps_arg(&a, sizeof e->rowpos, &e->rowpos);
    ps_arg_tensor(&a, &to);
    ps_arg(&a, sizeof lse, &lse);
    ps_arg(&a, sizeof e->stats, &e->stats);
    ps_arg(&a, sizeof dv, &dv);
    ps_arg(&a, sizeof n_q, &n_q);
    ps_arg(&a, sizeof rows, &rows);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "probe_compare");
    if (st == PS_OK)
        st = ps_launch(ctx, e->compare, "probe_compare", 2, g_rows, NULL);

    a = (ps_arg_setter){e->reduce, 0, CL_SUCCESS};
    ps_arg(&a, sizeof e->stats, &e->stats);
    ps_arg(&a, sizeof e->est, &e->est);
    ps_arg(&a, sizeof rows, &rows);
    ps_arg(&a, sizeof heads, &heads);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "probe_reduce");
    const size_t g_heads[1] = {qh};
    if (st == PS_OK)
        st = ps_launch(ctx, e->reduce, "probe_reduce", 1, g_heads, NULL);
    return st;
}

/* Exact attention of query head qh (flat b * heads + h) alone, into its rows
 * of o and lse: the one-head plan's exact stage on views of that head. */
static ps_status recompute_head(ps_plan *plan, ps_estimate_state *e, size_t qh, cl_mem q,
                                cl_mem k, cl_mem v, cl_mem o, cl_mem lse)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const size_t b = qh / d->heads, h = qh % d->heads, hk = h / (d->heads / d->kv_heads);
    ps_tensor t[4] = {ps_plan_tensor(plan, PS_TENSOR_Q, q), ps_plan_tensor(plan, PS_TENSOR_K, k),
                      ps_plan_tensor(plan, PS_TENSOR_V, v), ps_plan_tensor(plan, PS_TENSOR_O, o)};
    for (int i = 0; i < 4; i++) { /* row 0 of head 0 of the view: this head's first row */
        const size_t head = (i == 1 || i == 2) ? hk : h;
        t[i].view.offset += (ps_u32)(b * t[i].view.s_batch + head * t[i].view.s_head);
        t[i].view.heads = 1;
    }
    ps_plan *hp = e->head_plan;
    ps_status st = ps_exact_enqueue_shape(hp, &hp->desc, &t[0], &t[1], &t[2], &t[3], e->lse_head);
    if (st != PS_OK)
        return st;
    const cl_int err = clEnqueueCopyBuffer(ctx->queue, e->lse_head, lse, 0,
                                           qh * d->n_q * sizeof(float), d->n_q * sizeof(float),
                                           0, NULL, NULL);
    return err == CL_SUCCESS ? PS_OK : ps_fail_cl(ctx, err, "clEnqueueCopyBuffer (head LSE)");
}

ps_status ps_estimate_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_estimate_state *e = plan->estimate;
    const size_t qh = d->batch * d->heads;
    ps_status st = PS_OK;
    memset(e->recomputed, 0, qh);
    e->done = 0;
    if (plan->path == PS_PATH_EXACT || e->rows == 0 || d->n_k == 0) { /* nothing approximated */
        const cl_float zero = 0.0f;
        const cl_int err = clEnqueueFillBuffer(ctx->queue, e->est, &zero, sizeof zero, 0,
                                               qh * 2 * sizeof(float), 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return ps_fail_cl(ctx, err, "clEnqueueFillBuffer (error estimate)");
        e->done = 1;
        return PS_OK;
    }
    st = probes_enqueue(plan, e, q, k, v, o, lse);
    if (st != PS_OK || d->error_tolerance <= 0.0f) {
        e->done = st == PS_OK;
        return st;
    }
    /* The tolerance: the estimate decides which heads run again. */
    const cl_int err = clEnqueueReadBuffer(ctx->queue, e->est, CL_TRUE, 0,
                                           qh * 2 * sizeof(float), e->host_est, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clEnqueueReadBuffer (error estimate)");
    for (size_t h = 0; h < qh && st == PS_OK; h++)
        if (!(e->host_est[2 * h] <= d->error_tolerance)) { /* NaN recomputes too */
            st = recompute_head(plan, e, h, q, k, v, o, lse);
            e->recomputed[h] = st == PS_OK;
        }
    e->done = st == PS_OK;
    return st;
}

static ps_status error_estimate_read(ps_plan *plan, float *rel_error, float *lse_error,
                                     int *recomputed, size_t count)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const size_t qh = d->batch * d->heads;
    ps_estimate_state *e = plan->estimate;
    if (!e)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_plan_error_estimate: the plan has no error estimate (error_probes 0)");
    if (count < qh)
        return ps_fail(ctx, PS_ERR_BUFFER_TOO_SMALL,
                       "ps_plan_error_estimate: count %zu < batch * heads = %zu", count, qh);
    if (!e->done)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_plan_error_estimate: no attention call has completed on the plan");
    const cl_int err = clEnqueueReadBuffer(ctx->queue, e->est, CL_TRUE, 0,
                                           qh * 2 * sizeof(float), e->host_est, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clEnqueueReadBuffer (error estimate)");
    for (size_t h = 0; h < qh; h++) {
        if (rel_error)
            rel_error[h] = e->host_est[2 * h];
        if (lse_error)
            lse_error[h] = e->host_est[2 * h + 1];
        if (recomputed)
            recomputed[h] = e->recomputed[h];
    }
    return PS_OK;
}

ps_status ps_plan_error_estimate(ps_plan *plan, float *rel_error, float *lse_error,
                                 int *recomputed, size_t count)
{
    if (ps_plan_enter(plan, "ps_plan_error_estimate") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_plan_result(plan,
                          error_estimate_read(plan, rel_error, lse_error, recomputed, count));
}
