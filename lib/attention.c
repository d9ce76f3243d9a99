/* ps_attention, its enqueue form (returns once the commands are on the queue,
 * after the caller's events, with an event for the end) and its host-pointer
 * twin: argument and buffer checks, the dispatch to the method's enqueue,
 * waiting and timing. */
#include "internal.h"

#include "buffer_check.h"
#include "causal.h"
#include "handles.h"
#include "core/desc.h"
#include "core/tensor_layout.h"
#include "estimate.h"
#include "exact.h"
#include "finite.h"
#include "pipeline.h"
#include "stage_times.h"
#include "varlen.h"

#include <stdio.h>
#include <stdlib.h>

static ps_status check_buffer(ps_context *ctx, const char *fn, cl_mem mem, size_t bytes,
                              const char *name)
{
    char what[64];
    snprintf(what, sizeof what, "%s: %s", fn, name);
    return ps_check_buffer(ctx, mem, bytes, what);
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
        st = check_buffer(ctx, fn, k, ps_layout_bytes(d, PS_TENSOR_K), "k");
        if (st == PS_OK)
            st = check_buffer(ctx, fn, v, ps_layout_bytes(d, PS_TENSOR_V), "v");
        if (st != PS_OK || kind == CALL_KEYS)
            return st;
    }
    st = check_buffer(ctx, fn, q, ps_layout_bytes(d, PS_TENSOR_Q), "q");
    if (st == PS_OK)
        st = check_buffer(ctx, fn, o, ps_layout_bytes(d, PS_TENSOR_O), "o");
    if (st != PS_OK)
        return st;
    if (d->want_lse && !lse)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "%s: lse is NULL but the plan wants LSE",
                       fn);
    const size_t lse_bytes = ps_desc_lse_elems(d) * sizeof(float);
    if (lse && (st = check_buffer(ctx, fn, lse, lse_bytes, "lse")) != PS_OK)
        return st;
    const ps_buffer_use inputs[3] = {ps_tensor_use(d, PS_TENSOR_Q, q),
                                     ps_tensor_use(d, PS_TENSOR_K, k),
                                     ps_tensor_use(d, PS_TENSOR_V, v)};
    const ps_buffer_use outputs[2] = {ps_tensor_use(d, PS_TENSOR_O, o),
                                      {"lse", lse, lse_bytes, 0}};
    return ps_check_overlaps(ctx, fn, inputs, 3, outputs, 2);
}

static ps_status enqueue_seq(ps_plan *seq, int kind, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                             cl_mem lse);

/* The halves of `kind` on the plan's path (decided at plan creation; the
 * exact path has no key half: its keys are simply kept). */
static ps_status enqueue_path(ps_plan *plan, call_kind kind, cl_mem q, cl_mem k, cl_mem v,
                              cl_mem o, cl_mem lse)
{
    const ps_attention_desc *d = &plan->desc;
    if (kind == CALL_KEYS && plan->path == PS_PATH_EXACT)
        return PS_OK;
    switch (plan->path) {
    case PS_PATH_VARLEN:
        ps_mark(plan, "varlen");
        return ps_varlen_enqueue(plan, (int)kind, q, k, v, kind == CALL_KEYS ? NULL : o, lse,
                                 enqueue_seq);
    case PS_PATH_EXACT: {
        const ps_tensor tq = ps_tensor_make(q, ps_layout_view(d, PS_TENSOR_Q)),
                        tk = ps_tensor_make(k, ps_layout_view(d, PS_TENSOR_K)),
                        tv = ps_tensor_make(v, ps_layout_view(d, PS_TENSOR_V)),
                        to = ps_tensor_make(o, ps_layout_view(d, PS_TENSOR_O));
        ps_mark(plan, "exact");
        return ps_exact_enqueue(plan, &tq, &tk, &tv, &to, lse);
    }
    case PS_PATH_PIPELINE:
        if (kind == CALL_KEYS)
            return ps_pipeline_enqueue_keys(plan, k, v, NULL);
        if (kind == CALL_QUERIES)
            return ps_pipeline_enqueue_queries(plan, q, o, lse);
        return ps_pipeline_enqueue(plan, q, k, v, o, lse);
    case PS_PATH_CAUSAL:
        if (kind == CALL_KEYS)
            return ps_causal_enqueue_keys(plan, k, v);
        if (kind == CALL_QUERIES)
            return ps_causal_enqueue_queries(plan, q, o, lse);
        return ps_causal_enqueue(plan, q, k, v, o, lse);
    }
    return ps_fail(plan->ctx, PS_ERR_INTERNAL, "%s: unknown path %d", call_name(kind),
                   (int)plan->path);
}

/* A variable-length batch's sequence: its plan's path on the packed buffers. */
static ps_status enqueue_seq(ps_plan *seq, int kind, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                             cl_mem lse)
{
    return enqueue_path(seq, (call_kind)kind, q, k, v, o, lse);
}

/* Enqueues the halves of `kind` after the caller's events, returning at
 * once; the run's markers stay on the plan for timing (collected when asked
 * for). On failure nothing of the call is left running on the caller's
 * buffers: the commands already enqueued are waited for (never the whole
 * queue). */
static ps_status enqueue_call(ps_plan *plan, call_kind kind, cl_mem q, cl_mem k, cl_mem v,
                              cl_mem o, cl_mem lse, cl_uint num_wait,
                              const cl_event *wait_list)
{
    ps_context *ctx = plan->ctx;
    ps_status st = PS_OK;

    if (num_wait > 0)
        PS_CL_GOTO(ctx, clEnqueueBarrierWithWaitList(ctx->queue, num_wait, wait_list, NULL),
                   "clEnqueueBarrierWithWaitList (the caller's events)");
    ps_run_begin(plan);
    /* An estimating plan compares the LSE too: it keeps one if the caller does not. */
    cl_mem lse_run = kind == CALL_KEYS ? lse : ps_estimate_row_lse(plan, lse);
    if (kind != CALL_KEYS)
        ps_estimate_forget(plan); /* a failed call leaves no estimate behind */
    st = enqueue_path(plan, kind, q, k, v, o, lse_run);
    PS_GOTO_IF(st != PS_OK, st);
    if (plan->estimate && kind != CALL_KEYS) {
        ps_mark(plan, "estimate");
        st = ps_estimate_enqueue(plan, q, k, v, o, lse_run);
        PS_GOTO_IF(st != PS_OK, st);
    }
    ps_run_end(plan);
    return PS_OK;
cleanup:
    (void)ps_wait_enqueued(ctx, NULL);
    ps_marks_reset(plan);
    return st;
}

/* The enqueue entry points: checks, then enqueue_call, then the event the
 * caller waits for (a marker after the call's last command). */
static ps_status enqueue_public(ps_plan *plan, call_kind kind, cl_mem q, cl_mem k, cl_mem v,
                                cl_mem o, cl_mem lse, cl_uint num_wait,
                                const cl_event *wait_list, cl_event *done)
{
    ps_context *ctx = plan->ctx;
    const char *fn = call_name(kind);
    if (done)
        *done = NULL;
    if ((num_wait > 0) != (wait_list != NULL))
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "%s_enqueue: num_wait = %u with %s wait_list", fn, (unsigned)num_wait,
                       wait_list ? "a" : "a NULL");
    if (plan->desc.check_finite)
        return ps_fail(ctx, PS_ERR_UNSUPPORTED,
                       "%s_enqueue: desc.check_finite reads the inputs and outputs back and "
                       "so must wait: use %s",
                       fn, fn);
    if (plan->desc.error_tolerance > 0.0f)
        return ps_fail(ctx, PS_ERR_UNSUPPORTED,
                       "%s_enqueue: desc.error_tolerance reads the error estimate back to "
                       "choose the heads it recomputes, and so must wait: use %s",
                       fn, fn);
    ps_status st = check_call(plan, kind, q, k, v, o, lse);
    if (st == PS_OK)
        st = enqueue_call(plan, kind, q, k, v, o, lse, num_wait, wait_list);
    if (st == PS_OK && done) {
        const cl_int err = clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, done);
        if (err != CL_SUCCESS) {
            *done = NULL;
            (void)ps_wait_enqueued(ctx, NULL);
            st = ps_fail_cl(ctx, err, "clEnqueueMarkerWithWaitList (the done event)");
        }
    }
    return st;
}

/* One call that waits: checks, the finite checks around the run when the
 * plan asks for them, and the times. */
static ps_status run_call(ps_plan *plan, call_kind kind, cl_mem q, cl_mem k, cl_mem v,
                          cl_mem o, cl_mem lse)
{
    ps_context *ctx = plan->ctx;
    ps_status st = PS_OK;

    st = check_call(plan, kind, q, k, v, o, lse);
    if (st != PS_OK)
        return st;
    /* Prepared keys were checked when they were prepared. */
    st = ps_finite_check(plan, q, kind == CALL_QUERIES ? NULL : k,
                         kind == CALL_QUERIES ? NULL : v);
    if (st != PS_OK)
        return st;
    st = enqueue_call(plan, kind, q, k, v, o, lse, 0, NULL);
    if (st == PS_OK)
        st = ps_wait_enqueued(ctx, "waiting for the attention kernels");
    /* Finite inputs beyond the fp32 range of the method give NaN or Inf. */
    if (st == PS_OK && kind != CALL_KEYS)
        st = ps_finite_check_outputs(plan, call_name(kind), o, lse);
    if (st != PS_OK) {
        ps_marks_reset(plan);
        return st;
    }
    ps_times_collect(plan);
    return PS_OK;
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
    if (ps_plan_enter(plan, "ps_attention") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    drop_prepared(plan); /* the key half is recomputed for these keys */
    return ps_plan_result(plan, run_call(plan, CALL_FULL, q, k, v, o, lse));
}

static void keep_prepared(ps_plan *plan, cl_mem k, cl_mem v)
{
    clRetainMemObject(k);
    clRetainMemObject(v);
    plan->prepared_k = k;
    plan->prepared_v = v;
}

static ps_status no_prepared_keys(ps_plan *plan, const char *fn)
{
    return ps_fail(plan->ctx, PS_ERR_INVALID_ARGUMENT,
                   "%s: no prepared keys (call ps_attention_prepare_keys first; "
                   "ps_attention replaces them)",
                   fn);
}

ps_status ps_attention_prepare_keys(ps_plan *plan, cl_mem k, cl_mem v)
{
    if (ps_plan_enter(plan, "ps_attention_prepare_keys") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    drop_prepared(plan);
    const ps_status st = run_call(plan, CALL_KEYS, NULL, k, v, NULL, NULL);
    if (st == PS_OK)
        keep_prepared(plan, k, v);
    return ps_plan_result(plan, st);
}

ps_status ps_attention_prepared(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse)
{
    if (ps_plan_enter(plan, "ps_attention_prepared") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    if (!plan->prepared_k)
        return ps_plan_result(plan, no_prepared_keys(plan, "ps_attention_prepared"));
    /* The exact path reads K and V themselves; the pipeline its prepared set
     * (and, for HYPER without global keys, the retained K and V). */
    return ps_plan_result(
        plan, run_call(plan, CALL_QUERIES, q, plan->prepared_k, plan->prepared_v, o, lse));
}

ps_status ps_attention_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                               cl_mem lse, cl_uint num_wait, const cl_event *wait_list,
                               cl_event *done)
{
    if (ps_plan_enter(plan, "ps_attention_enqueue") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    drop_prepared(plan);
    return ps_plan_result(
        plan, enqueue_public(plan, CALL_FULL, q, k, v, o, lse, num_wait, wait_list, done));
}

ps_status ps_attention_prepare_keys_enqueue(ps_plan *plan, cl_mem k, cl_mem v,
                                            cl_uint num_wait, const cl_event *wait_list,
                                            cl_event *done)
{
    if (ps_plan_enter(plan, "ps_attention_prepare_keys_enqueue") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    drop_prepared(plan);
    const ps_status st =
        enqueue_public(plan, CALL_KEYS, NULL, k, v, NULL, NULL, num_wait, wait_list, done);
    if (st == PS_OK)
        keep_prepared(plan, k, v);
    return ps_plan_result(plan, st);
}

ps_status ps_attention_prepared_enqueue(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse,
                                        cl_uint num_wait, const cl_event *wait_list,
                                        cl_event *done)
{
    if (ps_plan_enter(plan, "ps_attention_prepared_enqueue") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    if (!plan->prepared_k)
        return ps_plan_result(plan, no_prepared_keys(plan, "ps_attention_prepared_enqueue"));
    return ps_plan_result(plan, enqueue_public(plan, CALL_QUERIES, q, plan->prepared_k,
                                               plan->prepared_v, o, lse, num_wait, wait_list,
                                               done));
}

ps_status ps_attention_host(ps_plan *plan, const void *q, const void *k, const void *v,
                            void *o, float *lse)
{
    if (ps_plan_enter(plan, "ps_attention_host") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const void *in_ptr[3] = {q, k, v};
    const ps_tensor_id in_id[3] = {PS_TENSOR_Q, PS_TENSOR_K, PS_TENSOR_V};
    cl_mem in[3] = {NULL, NULL, NULL}, out_o = NULL, out_lse = NULL;
    const size_t o_bytes = ps_layout_bytes(d, PS_TENSOR_O);
    ps_status st = PS_OK;
    cl_int err = CL_SUCCESS;

    for (int i = 0; i < 3; i++)
        PS_GOTO_IF(!in_ptr[i], ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                                       "ps_attention_host: %s is NULL", ps_tensor_name(in_id[i])));
    PS_GOTO_IF(!o, ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "ps_attention_host: o is NULL"));
    PS_GOTO_IF(d->want_lse && !lse,
               ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_attention_host: lse is NULL but the plan wants LSE"));
    for (int i = 0; i < 3; i++) {
        in[i] = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                               ps_layout_bytes(d, in_id[i]), (void *)in_ptr[i], &err);
        PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_attention_host input)");
    }
    /* An O that does not fill its extent (strides, offset) is copied in too,
     * so that the elements between its rows come back as they were. */
    if (ps_layout_is_dense(d, PS_TENSOR_O))
        out_o = clCreateBuffer(ctx->cl_ctx, CL_MEM_WRITE_ONLY, o_bytes, NULL, &err);
    else
        out_o = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, o_bytes,
                               o, &err);
    PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_attention_host output)");
    if (lse) {
        out_lse = clCreateBuffer(ctx->cl_ctx, CL_MEM_WRITE_ONLY,
                                 ps_desc_lse_elems(d) * sizeof(float), NULL, &err);
        PS_CL_GOTO(ctx, err, "clCreateBuffer (ps_attention_host lse)");
    }
    st = ps_attention(plan, in[0], in[1], in[2], out_o, out_lse);
    PS_GOTO_IF(st != PS_OK, st);
    PS_CL_GOTO(ctx, clEnqueueReadBuffer(ctx->queue, out_o, CL_TRUE, 0, o_bytes, o, 0, NULL, NULL),
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
    return ps_plan_result(plan, st);
}
