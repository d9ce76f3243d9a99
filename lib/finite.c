/* Input check for Inf and NaN, on request (desc.check_finite): one scan per
 * tensor on the device, one 12-byte read back. The kernels themselves assume
 * finite inputs (-cl-fast-relaxed-math), so without the check such inputs give
 * unspecified (never out-of-bounds) outputs. */
#include "finite.h"

#include "desc.h"
#include "host_alloc.h"

#include <stdlib.h>

struct ps_finite_state {
    cl_kernel kernel;
    cl_mem flags; /* int[3]: q, k, v */
};

ps_status ps_finite_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    cl_int err = CL_SUCCESS;
    if (!plan->desc.check_finite)
        return PS_OK;
    ps_finite_state *f = ps_calloc(1, sizeof *f);
    if (!f)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->finite = f;
    ps_status st = ps_kernel_create(ctx, PS_PROGRAM_CHECK, "find_nonfinite", &f->kernel);
    if (st != PS_OK)
        return st;
    f->flags = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, 3 * sizeof(cl_int), NULL, &err);
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clCreateBuffer (finite-check flags)");
    return PS_OK;
}

void ps_finite_release(ps_plan *plan)
{
    ps_finite_state *f = plan->finite;
    if (!f)
        return;
    if (f->kernel)
        clReleaseKernel(f->kernel);
    if (f->flags)
        clReleaseMemObject(f->flags);
    free(f);
    plan->finite = NULL;
}

ps_status ps_finite_check(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v)
{
    ps_context *ctx = plan->ctx;
    ps_finite_state *f = plan->finite;
    const ps_attention_desc *d = &plan->desc;
    if (!f)
        return PS_OK;
    const cl_mem tensors[3] = {q, k, v};
    const cl_ulong counts[3] = {ps_desc_q_elems(d), ps_desc_k_elems(d), ps_desc_v_elems(d)};
    static const char *const names[3] = {"q", "k", "v"};
    cl_int flags[3] = {0, 0, 0};
    /* Blocking: an early return below must not leave a write reading `flags`. */
    cl_int err = clEnqueueWriteBuffer(ctx->queue, f->flags, CL_TRUE, 0, sizeof flags, flags,
                                      0, NULL, NULL);
    /* Enough work-items to keep every compute unit streaming. */
    const size_t global = (size_t)ctx->info.compute_units * 256;
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clEnqueueWriteBuffer (finite check flags)");
    for (cl_int slot = 0; slot < 3; slot++) {
        if (!tensors[slot])
            continue; /* not part of this call (key reuse) */
        ps_arg_setter a = {f->kernel, 0, CL_SUCCESS};
        ps_arg(&a, sizeof tensors[slot], &tensors[slot]);
        ps_arg(&a, sizeof counts[slot], &counts[slot]);
        ps_arg(&a, sizeof f->flags, &f->flags);
        ps_arg(&a, sizeof slot, &slot);
        if (a.err != CL_SUCCESS)
            return ps_fail_cl(ctx, a.err, "clSetKernelArg (finite check)");
        const ps_status st = ps_launch(ctx, f->kernel, "finite check", 1, &global, NULL, NULL);
        if (st != PS_OK)
            return st;
    }
    err = clEnqueueReadBuffer(ctx->queue, f->flags, CL_TRUE, 0, sizeof flags, flags, 0, NULL,
                              NULL);
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clEnqueueReadBuffer (finite check flags)");
    for (int slot = 0; slot < 3; slot++)
        if (flags[slot])
            return ps_fail(ctx, PS_ERR_NON_FINITE,
                           "ps_attention: %s holds Inf or NaN (desc.check_finite)",
                           names[slot]);
    return PS_OK;
}
