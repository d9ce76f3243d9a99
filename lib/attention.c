/* ps_attention and its host-pointer twin: argument and buffer checks, the
 * dispatch to the method's enqueue, waiting and timing. */
#include "internal.h"

#include "buffer_check.h"
#include "handles.h"
#include "desc.h"
#include "exact.h"
#include "finite.h"
#include "pipeline.h"
#include "stage_times.h"

#include <stdio.h>
#include <stdlib.h>

static ps_status check_buffer(ps_context *ctx, const char *fn, cl_mem mem, size_t elems,
                              const char *name)
{
    char what[64];
    snprintf(what, sizeof what, "%s: %s", fn, name);
    return ps_check_buffer(ctx, mem, elems * sizeof(float), what);
}

static double event_span_ms(cl_event first, cl_event last)
{
    cl_ulong start = 0, end = 0;
    if (clGetEventProfilingInfo(first, CL_PROFILING_COMMAND_START, sizeof start, &start,
                                NULL) != CL_SUCCESS ||
        clGetEventProfilingInfo(last, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL) !=
            CL_SUCCESS)
        return -1.0;
    return (double)(end - start) * 1e-6;
}

/* Which halves of the computation a call runs. */
typedef enum call_kind { CALL_FULL, CALL_KEYS, CALL_QUERIES } call_kind;

/* The public function behind a call of this kind, for messages. */
static const char *call_name(call_kind kind)
{
    return kind == CALL_KEYS      ? "ps_attention_prepare_keys"
           : kind == CALL_QUERIES ? "ps_attention_prepared"
                                  : "ps_attention";
}

/* Validates the buffers a call of this kind takes (NULL-able ones are not
 * part of it) and that no output shares memory with an input or with the
 * other output, sub-buffers included (lib/buffer_check.c). On key reuse, k
 * and v are the prepared keys (checked when they were prepared). */
static ps_status check_call(ps_plan *plan, call_kind kind, cl_mem q, cl_mem k, cl_mem v,
                            cl_mem o, cl_mem lse)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const char *fn = call_name(kind);
    ps_status st = PS_OK;
    if (kind != CALL_QUERIES) {
        st = check_buffer(ctx, fn, k, ps_desc_k_elems(d), "k");
        if (st == PS_OK)
            st = check_buffer(ctx, fn, v, ps_desc_v_elems(d), "v");
        if (st != PS_OK || kind == CALL_KEYS)
            return st;
    }
    st = check_buffer(ctx, fn, q, ps_desc_q_elems(d), "q");
    if (st == PS_OK)
        st = check_buffer(ctx, fn, o, ps_desc_o_elems(d), "o");
    if (st != PS_OK)
        return st;
    if (d->want_lse && !lse)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "%s: lse is NULL but the plan wants LSE",
                       fn);
    if (lse && (st = check_buffer(ctx, fn, lse, ps_desc_lse_elems(d), "lse")) != PS_OK)
        return st;
    const size_t f = sizeof(float);
    const ps_buffer_use inputs[3] = {{"q", q, ps_desc_q_elems(d) * f},
                                     {"k", k, ps_desc_k_elems(d) * f},
                                     {"v", v, ps_desc_v_elems(d) * f}};
    const ps_buffer_use outputs[2] = {{"o", o, ps_desc_o_elems(d) * f},
                                      {"lse", lse, ps_desc_lse_elems(d) * f}};
    return ps_check_overlaps(ctx, fn, inputs, 3, outputs, 2);
}

/* One call: checks, enqueues the halves of `kind`, waits, records timings. */
static ps_status run_call(ps_plan *plan, call_kind kind, cl_mem q, cl_mem k, cl_mem v,
                          cl_mem o, cl_mem lse)
{
    ps_context *ctx = plan->ctx;
    cl_event first = NULL, done = NULL;
    const int exact = ps_plan_path(plan) == PS_METHOD_EXACT;
    ps_status st = PS_OK;

    ps_clear_error(ctx);
    plan->last_time_ms = -1.0;
    st = check_call(plan, kind, q, k, v, o, lse);
    PS_GOTO_IF(st != PS_OK, st);
    /* Prepared keys were checked when they were prepared. */
    st = ps_finite_check(plan, q, kind == CALL_QUERIES ? NULL : k,
                         kind == CALL_QUERIES ? NULL : v);
    PS_GOTO_IF(st != PS_OK, st);
    ps_marks_reset(plan);
    if (kind == CALL_KEYS && exact) {
        return PS_OK; /* the exact path has nothing query-independent to keep */
    } else if (exact) {
        ps_mark(plan, "exact");
        st = ps_exact_enqueue(plan, q, k, v, o, lse, &first, &done);
    } else if (kind == CALL_FULL) {
        st = ps_pipeline_enqueue(plan, q, k, v, o, lse, &first, &done);
    } else if (kind == CALL_KEYS) {
        st = ps_pipeline_enqueue_keys(plan, k, v, &first, &done);
    } else {
        st = ps_pipeline_enqueue_queries(plan, q, o, lse, &first, &done);
    }
    PS_GOTO_IF(st != PS_OK, st);
    if (done) {
        PS_CL_GOTO(ctx, clWaitForEvents(1, &done), "clWaitForEvents (attention)");
        cl_int exec = CL_COMPLETE;
        clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof exec, &exec, NULL);
        PS_GOTO_IF(exec < 0, ps_fail_cl(ctx, exec, "attention kernel execution"));
    } else {
        PS_CL_GOTO(ctx, clFinish(ctx->queue), "clFinish (attention)");
    }
    /* Finite inputs beyond the fp32 range of the method give NaN or Inf. */
    if (kind != CALL_KEYS) {
        st = ps_finite_check_outputs(plan, call_name(kind), o, lse);
        PS_GOTO_IF(st != PS_OK, st);
    }
    if (ctx->profiling) {
        if (first && done)
            plan->last_time_ms = event_span_ms(first, done);
        ps_marks_finish(plan);
    }
cleanup:
    if (st != PS_OK && (first || done))
        clFinish(ctx->queue); /* nothing of ours may still run on the caller's buffers */
    if (st != PS_OK)
        ps_marks_reset(plan);
    if (first)
        clReleaseEvent(first);
    if (done)
        clReleaseEvent(done);
    return st;
}

static void drop_prepared(ps_plan *plan)
{
    if (plan->prepared_k)
        clReleaseMemObject(plan->prepared_k);
    if (plan->prepared_v)
        clReleaseMemObject(plan->prepared_v);
    plan->prepared_k = plan->prepared_v = NULL;
}

ps_status ps_attention(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse)
{
    if (ps_plan_check(plan, "ps_attention") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    drop_prepared(plan); /* the key half is recomputed for these keys */
    return run_call(plan, CALL_FULL, q, k, v, o, lse);
}

ps_status ps_attention_prepare_keys(ps_plan *plan, cl_mem k, cl_mem v)
{
    if (ps_plan_check(plan, "ps_attention_prepare_keys") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    drop_prepared(plan);
    ps_status st = run_call(plan, CALL_KEYS, NULL, k, v, NULL, NULL);
    if (st != PS_OK)
        return st;
    clRetainMemObject(k);
    clRetainMemObject(v);
    plan->prepared_k = k;
    plan->prepared_v = v;
    return PS_OK;
}

ps_status ps_attention_prepared(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse)
{
    if (ps_plan_check(plan, "ps_attention_prepared") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    if (!plan->prepared_k)
        return ps_fail(plan->ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_attention_prepared: no prepared keys (call "
                       "ps_attention_prepare_keys first; ps_attention replaces them)");
    /* The exact path reads K and V themselves; the pipeline its prepared set
     * (and, for HYPER without global keys, the retained K and V). */
    return run_call(plan, CALL_QUERIES, q, plan->prepared_k, plan->prepared_v, o, lse);
}

ps_status ps_attention_host(ps_plan *plan, const float *q, const float *k, const float *v,
                            float *o, float *lse)
{
    if (ps_plan_check(plan, "ps_attention_host") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const float *in_ptr[3] = {q, k, v};
    const size_t in_elems[3] = {ps_desc_q_elems(d), ps_desc_k_elems(d), ps_desc_v_elems(d)};
    static const char *const in_name[3] = {"q", "k", "v"};
    cl_mem in[3] = {NULL, NULL, NULL}, out_o = NULL, out_lse = NULL;
    ps_status st = PS_OK;
    cl_int err = CL_SUCCESS;

    ps_clear_error(ctx);
    for (int i = 0; i < 3; i++)
        PS_GOTO_IF(!in_ptr[i], ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                                       "ps_attention_host: %s is NULL", in_name[i]));
    PS_GOTO_IF(!o, ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "ps_attention_host: o is NULL"));
    PS_GOTO_IF(d->want_lse && !lse,
               ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_attention_host: lse is NULL but the plan wants LSE"));
    for (int i = 0; i < 3; i++) {
        in[i] = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                               in_elems[i] * sizeof(float), (void *)in_ptr[i], &err);
        PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_attention_host input)");
    }
    out_o = clCreateBuffer(ctx->cl_ctx, CL_MEM_WRITE_ONLY, ps_desc_o_elems(d) * sizeof(float),
                           NULL, &err);
    PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_attention_host output)");
    if (lse) {
        out_lse = clCreateBuffer(ctx->cl_ctx, CL_MEM_WRITE_ONLY,
                                 ps_desc_lse_elems(d) * sizeof(float), NULL, &err);
        PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_attention_host lse)");
    }
    st = ps_attention(plan, in[0], in[1], in[2], out_o, out_lse);
    PS_GOTO_IF(st != PS_OK, st);
    PS_CL_GOTO(ctx,
               clEnqueueReadBuffer(ctx->queue, out_o, CL_TRUE, 0,
                                   ps_desc_o_elems(d) * sizeof(float), o, 0, NULL, NULL),
               "clEnqueueReadBuffer (o)");
    if (lse)
        PS_CL_GOTO(ctx,
                   clEnqueueReadBuffer(ctx->queue, out_lse, CL_TRUE, 0,
                                       ps_desc_lse_elems(d) * sizeof(float), lse, 0, NULL,
                                       NULL),
                   "clEnqueueReadBuffer (lse)");
cleanup:
    for (int i = 0; i < 3; i++)
        if (in[i])
            clReleaseMemObject(in[i]);
    if (out_o)
        clReleaseMemObject(out_o);
    if (out_lse)
        clReleaseMemObject(out_lse);
    return st;
}
