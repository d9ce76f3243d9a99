/* Kernel launch geometry from device limits (see kernel_fit.h). */
#include "kernel_fit.h"
#include "core/size_math.h"

/* Loop back-edges a work-item may take before the driver silently ends its
 * loops (Mesa gallivm: 65535 per invocation, all loops together); 0 where a
 * probe of 2^20 iterations runs to completion. lib/exact.c splits its key
 * loop into launches that stay inside it. */
static void probe_loop_budget(ps_context *ctx)
{
    if (ctx->tuning.loop_budget != PS_LOOP_BUDGET_PROBE)
        return; /* PRESCORE_LOOP_BUDGET */
    unsigned budget = 0;
    cl_kernel kern = NULL;
    cl_mem in = NULL, out = NULL;
    cl_int err = CL_SUCCESS;
    cl_uint data[16], res[2] = {0, 0};
    const cl_uint n = 1u << 20;
    for (int i = 0; i < 16; i++)
        data[i] = (cl_uint)(i * 2654435761u);
    if (ps_kernel_create(ctx, PS_PROGRAM_UTIL, "loop_budget_probe", &kern) != PS_OK)
        goto done;
    in = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof data,
                        data, &err);
    if (err == CL_SUCCESS)
        out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, sizeof res, NULL, &err);
    if (err != CL_SUCCESS)
        goto done;
    ps_arg_setter a = {kern, 0, CL_SUCCESS};
    ps_arg(&a, sizeof in, &in);
    ps_arg(&a, sizeof out, &out);
    ps_arg(&a, sizeof n, &n);
    const size_t one = 1;
    /* A probe that cannot run leaves no limit assumed (budget 0). */
    if (a.err == CL_SUCCESS &&
        clEnqueueNDRangeKernel(ctx->queue, kern, 1, NULL, &one, &one, 0, NULL, NULL) ==
            CL_SUCCESS &&
        clEnqueueReadBuffer(ctx->queue, out, CL_TRUE, 0, sizeof res, res, 0, NULL, NULL) ==
            CL_SUCCESS &&
        res[0] < n)
        budget = res[0];
done:
    if (kern)
        clReleaseKernel(kern);
    if (in)
        clReleaseMemObject(in);
    if (out)
        clReleaseMemObject(out);
    ctx->tuning.loop_budget = budget;
}

ps_status ps_kernel_fit_probe(ps_context *ctx)
{
    probe_loop_budget(ctx);
    cl_kernel probe = NULL;
    cl_ulong reported = 0;
    ps_status st = ps_kernel_create(ctx, PS_PROGRAM_UTIL, "local_probe", &probe);
    if (st != PS_OK)
        return st;
    const cl_uint declared = PS_LOCAL_PROBE_WORDS * sizeof(cl_uint);
    ctx->tuning.local_mem_report_scale = 1;
    if (clGetKernelWorkGroupInfo(probe, ctx->device, CL_KERNEL_LOCAL_MEM_SIZE,
                                 sizeof reported, &reported, NULL) == CL_SUCCESS &&
        reported >= 2ull * declared && reported % declared == 0 && reported <= 16ull * declared)
        ctx->tuning.local_mem_report_scale = (unsigned)(reported / declared);
    clReleaseKernel(probe);
    return PS_OK;
}

size_t ps_loop_items(const ps_context *ctx, size_t per_item, size_t cap)
{
    const unsigned budget = ctx->tuning.loop_budget;
    if (!budget || budget == PS_LOOP_BUDGET_PROBE || per_item == 0)
        return cap ? cap : 1;
    const size_t items = (size_t)budget / 2 / per_item;
    return items < 1 ? 1 : (items > cap ? cap : items);
}

ps_status ps_kernel_fit(ps_context *ctx, cl_kernel kernel, const char *name, size_t cap,
                        uint64_t dynamic_local, size_t *group)
{
    size_t kernel_max = 0;
    cl_ulong reported = 0;
    if (clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_LOCAL_MEM_SIZE,
                                 sizeof reported, &reported, NULL) != CL_SUCCESS)
        reported = 0;
    const uint64_t local = reported / ctx->tuning.local_mem_report_scale + dynamic_local;
    if (local > ctx->info.local_mem_size)
        return ps_fail(ctx, PS_ERR_UNSUPPORTED,
                       "%s needs %llu bytes of local memory, the device has %llu "
                       "(CL_DEVICE_LOCAL_MEM_SIZE%s)",
                       name, (unsigned long long)local,
                       (unsigned long long)ctx->info.local_mem_size,
                       ctx->tuning.limits_narrowed ? ", narrowed by PRESCORE_LIMITS" : "");
    if (!group)
        return PS_OK;
    if (cap > ctx->info.max_work_group_size)
        cap = ctx->info.max_work_group_size;
    if (clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                 sizeof kernel_max, &kernel_max, NULL) == CL_SUCCESS &&
        kernel_max && kernel_max < cap)
        cap = kernel_max;
    *group = ps_pow2_floor(cap);
    return PS_OK;
}
