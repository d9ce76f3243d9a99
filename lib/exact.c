/* Exact attention on the device (cl/flash_attention.cl): workspace, launch
 * geometry and arguments for both kernel shapes. */
#include "exact.h"

#include "kernel_fit.h"

#include <math.h>

#define PS_CPU_KEY_TILE 16 /* keys per tile of the CPU shape (PS_KTILE_CPU) */

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

ps_status ps_exact_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    cl_int err = CL_SUCCESS;

    if (ctx->tuning.shape == PS_SHAPE_CPU) {
        plan->n_k_pad = round_up(d->n_k, PS_CPU_KEY_TILE);
        const size_t bytes = d->batch * d->kv_heads * d->d * plan->n_k_pad * sizeof(float);
        if (bytes > ctx->info.max_mem_alloc_size)
            return ps_fail(ctx, PS_ERR_OUT_OF_DEVICE_MEMORY,
                           "transposed-key workspace needs %zu bytes, "
                           "CL_DEVICE_MAX_MEM_ALLOC_SIZE is %llu",
                           bytes, (unsigned long long)ctx->info.max_mem_alloc_size);
        plan->k_t = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS)
            return ps_fail_cl(ctx, err, "clCreateBuffer (transposed keys)");
        st = ps_kernel_create(ctx, PS_PROGRAM_UTIL, "transpose_keys", &plan->k_transpose);
        if (st == PS_OK)
            st = ps_kernel_create(ctx, PS_PROGRAM_ATTENTION, "flash_attention_cpu",
                                  &plan->k_attention);
        plan->attention_local = 1;
        return st;
    }

    st = ps_kernel_create(ctx, PS_PROGRAM_ATTENTION, "flash_attention_gpu",
                          &plan->k_attention);
    if (st != PS_OK)
        return st;
    return ps_kernel_fit(ctx, plan->k_attention, "flash_attention_gpu",
                         ctx->tuning.gpu_group, 0, &plan->attention_local);
}

void ps_exact_release(ps_plan *plan)
{
    if (plan->k_attention)
        clReleaseKernel(plan->k_attention);
    if (plan->k_transpose)
        clReleaseKernel(plan->k_transpose);
    if (plan->k_t)
        clReleaseMemObject(plan->k_t);
    plan->k_attention = plan->k_transpose = NULL;
    plan->k_t = NULL;
}

ps_status ps_exact_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                           cl_mem lse, cl_event *first, cl_event *done)
{
    return ps_exact_enqueue_shape(plan, &plan->desc, q, k, v, o, lse, first, done);
}

ps_status ps_exact_enqueue_shape(ps_plan *plan, const ps_attention_desc *d, cl_mem q,
                                 cl_mem k, cl_mem v, cl_mem o, cl_mem lse, cl_event *first,
                                 cl_event *done)
{
    ps_context *ctx = plan->ctx;
    if (d->n_q > plan->desc.n_q || d->n_k > plan->desc.n_k || d->n_q < 1 || d->n_k < 1 ||
        d->batch != plan->desc.batch || d->heads != plan->desc.heads ||
        d->kv_heads != plan->desc.kv_heads || d->d != plan->desc.d || d->d_v != plan->desc.d_v)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_exact_enqueue_shape: shape %zu x %zu exceeds the plan's %zu x %zu "
                       "or changes heads/dims",
                       d->n_q, d->n_k, plan->desc.n_q, plan->desc.n_k);
    const cl_int n_q = (cl_int)d->n_q, n_k = (cl_int)d->n_k, dim = (cl_int)d->d,
                 dv = (cl_int)d->d_v, heads = (cl_int)d->heads,
                 group = (cl_int)(d->heads / d->kv_heads), causal = d->causal;
    const cl_float scale_log2 = (cl_float)(d->scale * 1.4426950408889634);
    ps_status st;

    if (ctx->tuning.shape == PS_SHAPE_CPU) {
        /* k_t holds plan->n_k_pad >= this many columns per KV head. */
        const cl_int n_pad = (cl_int)round_up(d->n_k, PS_CPU_KEY_TILE);
        ps_arg_setter t = {plan->k_transpose, 0, CL_SUCCESS};
        ps_arg(&t, sizeof k, &k);
        ps_arg(&t, sizeof plan->k_t, &plan->k_t);
        ps_arg(&t, sizeof n_k, &n_k);
        ps_arg(&t, sizeof n_pad, &n_pad);
        ps_arg(&t, sizeof dim, &dim);
        if (t.err != CL_SUCCESS)
            return ps_fail_cl(ctx, t.err, "clSetKernelArg (transpose_keys)");
        const size_t tg[3] = {(size_t)n_pad, d->d, d->batch * d->kv_heads};
        st = ps_launch(ctx, plan->k_transpose, "transpose_keys", 3, tg, NULL,
                       first);
        if (st != PS_OK)
            return st;

        ps_arg_setter a = {plan->k_attention, 0, CL_SUCCESS};
        ps_arg(&a, sizeof q, &q);
        ps_arg(&a, sizeof plan->k_t, &plan->k_t);
        ps_arg(&a, sizeof v, &v);
        ps_arg(&a, sizeof o, &o);
        ps_arg(&a, sizeof lse, &lse); /* a NULL cl_mem is a NULL pointer in the kernel */
        ps_arg(&a, sizeof n_q, &n_q);
        ps_arg(&a, sizeof n_k, &n_k);
        ps_arg(&a, sizeof n_pad, &n_pad);
        ps_arg(&a, sizeof dim, &dim);
        ps_arg(&a, sizeof dv, &dv);
        ps_arg(&a, sizeof heads, &heads);
        ps_arg(&a, sizeof group, &group);
        ps_arg(&a, sizeof scale_log2, &scale_log2);
        ps_arg(&a, sizeof causal, &causal);
        if (a.err != CL_SUCCESS)
            return ps_fail_cl(ctx, a.err, "clSetKernelArg (flash_attention_cpu)");
        const size_t qb = ctx->tuning.cpu_query_block;
        const size_t g[3] = {(d->n_q + qb - 1) / qb, d->heads, d->batch};
        const size_t l[3] = {1, 1, 1};
        st = ps_launch(ctx, plan->k_attention, "flash_attention_cpu", 3, g, l,
                       done);
        if (st != PS_OK)
            return st;
        return PS_OK;
    }

    ps_arg_setter a = {plan->k_attention, 0, CL_SUCCESS};
    ps_arg(&a, sizeof q, &q);
    ps_arg(&a, sizeof k, &k);
    ps_arg(&a, sizeof v, &v);
    ps_arg(&a, sizeof o, &o);
    ps_arg(&a, sizeof lse, &lse);
    ps_arg(&a, sizeof n_q, &n_q);
    ps_arg(&a, sizeof n_k, &n_k);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof dv, &dv);
    ps_arg(&a, sizeof heads, &heads);
    ps_arg(&a, sizeof group, &group);
    ps_arg(&a, sizeof scale_log2, &scale_log2);
    ps_arg(&a, sizeof causal, &causal);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (flash_attention_gpu)");
    const size_t local = plan->attention_local;
    const size_t g[3] = {round_up(d->n_q, local), d->heads, d->batch};
    const size_t l[3] = {local, 1, 1};
    st = ps_launch(ctx, plan->k_attention, "flash_attention_gpu", 3, g, l,
                   done);
    if (st != PS_OK)
        return st;
    if (first && done) {
        *first = *done;
        clRetainEvent(*first);
    }
    return PS_OK;
}
