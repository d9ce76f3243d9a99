/* Host-array forms of the key stages (ps_score_keys_host, ps_select_keys_host):
 * temporary buffers around the cl_mem calls, for callers that hold no OpenCL
 * buffers of their own (the Python module, scripts). The cl_mem calls do
 * every check of the plan; here only the pointers are checked. */
#include "internal.h"

#include "core/tensor_layout.h"

static cl_mem host_buffer(ps_context *ctx, cl_mem_flags flags, size_t bytes, const void *src,
                          const char *what, ps_status *st)
{
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(ctx->cl_ctx, flags, bytes, (void *)src, &err);
    if (err != CL_SUCCESS) {
        *st = ps_fail_cl(ctx, err, what);
        return NULL;
    }
    return m;
}

static ps_status read_back(ps_context *ctx, cl_mem m, size_t bytes, void *dst, const char *what)
{
    const cl_int err = clEnqueueReadBuffer(ctx->queue, m, CL_TRUE, 0, bytes, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? PS_OK : ps_fail_cl(ctx, err, what);
}

static void release(cl_mem *mems, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
}

ps_status ps_score_keys_host(ps_plan *plan, const void *k, float *scores)
{
    if (ps_plan_enter(plan, "ps_score_keys_host") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    if (!k || !scores)
        return ps_plan_result(plan, ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                                            "ps_score_keys_host: %s is NULL",
                                            k ? "scores" : "k"));
    const size_t score_bytes = d->batch * d->kv_heads * d->n_k * sizeof(float);
    ps_status st = PS_OK;
    cl_mem mem[2] = {NULL, NULL};
    mem[0] = host_buffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                         ps_layout_bytes(d, PS_TENSOR_K), k, "clCreateBuffer (k)", &st);
    if (st == PS_OK)
        mem[1] = host_buffer(ctx, CL_MEM_WRITE_ONLY, score_bytes, NULL,
                             "clCreateBuffer (scores)", &st);
    if (st == PS_OK)
        st = ps_score_keys(plan, mem[0], mem[1]);
    if (st == PS_OK)
        st = read_back(ctx, mem[1], score_bytes, scores, "clEnqueueReadBuffer (scores)");
    release(mem, 2);
    return ps_plan_result(plan, st);
}

ps_status ps_select_keys_host(ps_plan *plan, const float *scores, uint32_t *indices,
                              uint32_t *counts, float *log_weights)
{
    if (ps_plan_enter(plan, "ps_select_keys_host") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    if (!scores || !indices || !counts)
        return ps_plan_result(plan, ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                                            "ps_select_keys_host: %s is NULL",
                                            !scores ? "scores" : !indices ? "indices" : "counts"));
    const size_t heads = d->batch * d->kv_heads;
    const size_t slots = heads * ps_plan_selected_capacity(plan);
    /* A plan that is not PRESCORE has no capacity: the cl_mem call names the
     * problem, so give it buffers of at least one element. */
    const size_t bytes[4] = {heads * d->n_k * sizeof(float), (slots ? slots : 1) * sizeof(uint32_t),
                             heads * sizeof(uint32_t), (slots ? slots : 1) * sizeof(float)};
    const char *names[4] = {"clCreateBuffer (scores)", "clCreateBuffer (indices)",
                            "clCreateBuffer (counts)", "clCreateBuffer (log_weights)"};
    const size_t n_mem = log_weights ? 4 : 3;
    ps_status st = PS_OK;
    cl_mem mem[4] = {NULL, NULL, NULL, NULL};
    for (size_t i = 0; i < n_mem && st == PS_OK; i++)
        mem[i] = host_buffer(ctx, i == 0 ? CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR
                                         : CL_MEM_WRITE_ONLY,
                             bytes[i], i == 0 ? scores : NULL, names[i], &st);
    if (st == PS_OK)
        st = log_weights ? ps_select_keys_weighted(plan, mem[0], mem[1], mem[2], mem[3])
                         : ps_select_keys(plan, mem[0], mem[1], mem[2]);
    if (st == PS_OK)
        st = read_back(ctx, mem[1], slots * sizeof(uint32_t), indices,
                       "clEnqueueReadBuffer (indices)");
    if (st == PS_OK)
        st = read_back(ctx, mem[2], bytes[2], counts, "clEnqueueReadBuffer (counts)");
    if (st == PS_OK && log_weights)
        st = read_back(ctx, mem[3], slots * sizeof(float), log_weights,
                       "clEnqueueReadBuffer (log_weights)");
    release(mem, n_mem);
    return ps_plan_result(plan, st);
}
