/* ps_attention and its host-pointer twin: argument and buffer checks, the
 * dispatch to the method's enqueue, waiting and timing. */
#include "internal.h"

#include "desc.h"
#include "exact.h"
#include "finite.h"
#include "pipeline.h"
#include "stage_times.h"

#include <stdio.h>
#include <stdlib.h>

ps_status ps_check_buffer(ps_context *ctx, cl_mem mem, size_t bytes, const char *what)
{
    size_t size = 0;
    cl_context owner = NULL;
    if (!mem)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    if (clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof owner, &owner, NULL) != CL_SUCCESS)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "%s is not a valid cl_mem", what);
    if (owner != ctx->cl_ctx)
        return ps_fail(ctx, PS_ERR_CONTEXT_MISMATCH, "%s belongs to another cl_context", what);
    if (size < bytes)
        return ps_fail(ctx, PS_ERR_BUFFER_TOO_SMALL,
                       "%s holds %zu bytes, the shape needs %zu", what, size, bytes);
    return PS_OK;
}

static ps_status check_buffer(ps_context *ctx, cl_mem mem, size_t elems, const char *name)
{
    char what[64];
    snprintf(what, sizeof what, "ps_attention: %s", name);
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

ps_status ps_attention(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o, cl_mem lse)
{
    if (!plan)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    cl_event first = NULL, done = NULL;
    ps_status st = PS_OK;

    ps_clear_error(ctx);
    plan->last_time_ms = -1.0;
    st = check_buffer(ctx, q, ps_desc_q_elems(d), "q");
    PS_GOTO_IF(st != PS_OK, st);
    st = check_buffer(ctx, k, ps_desc_k_elems(d), "k");
    PS_GOTO_IF(st != PS_OK, st);
    st = check_buffer(ctx, v, ps_desc_v_elems(d), "v");
    PS_GOTO_IF(st != PS_OK, st);
    st = check_buffer(ctx, o, ps_desc_o_elems(d), "o");
    PS_GOTO_IF(st != PS_OK, st);
    PS_GOTO_IF(d->want_lse && !lse,
               ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_attention: lse is NULL but the plan wants LSE"));
    if (lse) {
        st = check_buffer(ctx, lse, ps_desc_lse_elems(d), "lse");
        PS_GOTO_IF(st != PS_OK, st);
    }
    PS_GOTO_IF(o == q || o == k || o == v || (lse && (lse == q || lse == k || lse == v ||
                                                      lse == o)),
               ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_attention: outputs must not alias inputs or each other"));

    st = ps_finite_check(plan, q, k, v);
    PS_GOTO_IF(st != PS_OK, st);
    ps_marks_reset(plan);
    if (ps_plan_path(plan) == PS_METHOD_EXACT) {
        ps_mark(plan, "exact");
        st = ps_exact_enqueue(plan, q, k, v, o, lse, &first, &done);
    }
    else
        st = ps_pipeline_enqueue(plan, q, k, v, o, lse, &first, &done);
    PS_GOTO_IF(st != PS_OK, st);
    PS_CL_GOTO(ctx, clWaitForEvents(1, &done), "clWaitForEvents (attention)");
    cl_int exec = CL_COMPLETE;
    clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof exec, &exec, NULL);
    PS_GOTO_IF(exec < 0, ps_fail_cl(ctx, exec, "attention kernel execution"));
    if (ctx->profiling) {
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

ps_status ps_attention_host(ps_plan *plan, const float *q, const float *k, const float *v,
                            float *o, float *lse)
{
    if (!plan)
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
