/* Checks for Inf and NaN, on request (desc.check_finite): one scan per
 * tensor on the device, one 12-byte read back; of Q, K and V before a run,
 * of O and LSE after it. The kernels themselves assume finite inputs
 * (-cl-fast-relaxed-math), so without the check such inputs give unspecified
 * (never out-of-bounds) outputs; finite inputs beyond the fp32 range of a
 * method give non-finite outputs, which the output scan reports. */
#include "finite.h"

#include "core/desc.h"
#include "core/host_alloc.h"
#include "core/tensor_layout.h"

#include <stdlib.h>

struct ps_finite_state {
    cl_kernel kernel;
    cl_mem flags; /* int[3]: q, k, v before a run; o, lse after it */
};

ps_status ps_finite_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    if (!plan->desc.check_finite)
        return PS_OK;
    ps_finite_state *f = ps_calloc(1, sizeof *f);
    if (!f)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->finite = f;
    ps_status st = ps_kernel_create(ctx, PS_PROGRAM_FINITE, "find_nonfinite", &f->kernel);
    if (st != PS_OK)
        return st;
    return ps_buffer_create(ctx, 3 * sizeof(cl_int), "finite-check flags", &f->flags);
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

/* find_nonfinite modes (cl/finite.cl). */
enum { FINITE_ALL = 0, FINITE_LSE = 1 };

/* One tensor to scan: its buffer (NULL: not part of this call), view and
 * shape as flat heads of rows of dim elements. */
typedef struct scan_item {
    cl_mem mem;
    ps_view view;
    cl_uint heads, rows, dim;
    cl_int mode;
} scan_item;

static scan_item tensor_item(const ps_attention_desc *d, ps_tensor_id id, cl_mem mem)
{
    size_t dims[4];
    ps_desc_dims(d, id, dims);
    const scan_item it = {mem, ps_layout_view(d, id), (cl_uint)(dims[0] * dims[1]),
                          (cl_uint)dims[2], (cl_uint)dims[3], FINITE_ALL};
    return it;
}

/* Scans up to three tensors into flag slots 0..count-1 and waits for the flags. */
static ps_status scan(ps_plan *plan, const scan_item *items, int count, cl_int *flags)
{
    ps_context *ctx = plan->ctx;
    ps_finite_state *f = plan->finite;
    for (int slot = 0; slot < count; slot++)
        flags[slot] = 0;
    /* Blocking: an early return below must not leave a write reading `flags`. */
    cl_int err = clEnqueueWriteBuffer(ctx->queue, f->flags, CL_TRUE, 0, count * sizeof *flags,
                                      flags, 0, NULL, NULL);
    /* Enough work-items to keep every compute unit streaming. */
    const size_t global = (size_t)ctx->info.compute_units * 256;
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clEnqueueWriteBuffer (finite check flags)");
    for (cl_int slot = 0; slot < count; slot++) {
        const scan_item *it = &items[slot];
        if (!it->mem)
            continue; /* not part of this call (key reuse, no LSE) */
        const ps_tensor t = ps_tensor_make(it->mem, it->view);
        ps_arg_setter a = {f->kernel, 0, CL_SUCCESS};
        ps_arg_tensor(&a, &t);
        ps_arg(&a, sizeof it->heads, &it->heads);
        ps_arg(&a, sizeof it->rows, &it->rows);
        ps_arg(&a, sizeof it->dim, &it->dim);
        ps_arg(&a, sizeof f->flags, &f->flags);
        ps_arg(&a, sizeof slot, &slot);
        ps_arg(&a, sizeof it->mode, &it->mode);
        if (a.err != CL_SUCCESS)
            return ps_fail_cl(ctx, a.err, "clSetKernelArg (finite check)");
        const ps_status st = ps_launch(ctx, f->kernel, "finite check", 1, &global, NULL);
        if (st != PS_OK)
            return st;
    }
    err = clEnqueueReadBuffer(ctx->queue, f->flags, CL_TRUE, 0, count * sizeof *flags, flags,
                              0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clEnqueueReadBuffer (finite check flags)");
    return PS_OK;
}

ps_status ps_finite_check(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v)
{
    const ps_attention_desc *d = &plan->desc;
    if (!plan->finite)
        return PS_OK;
    const scan_item items[3] = {tensor_item(d, PS_TENSOR_Q, q), tensor_item(d, PS_TENSOR_K, k),
                                tensor_item(d, PS_TENSOR_V, v)};
    static const char *const names[3] = {"q", "k", "v"};
    cl_int flags[3];
    const ps_status st = scan(plan, items, 3, flags);
    if (st != PS_OK)
        return st;
    for (int slot = 0; slot < 3; slot++)
        if (flags[slot])
            return ps_fail(plan->ctx, PS_ERR_NON_FINITE,
                           "ps_attention: %s holds Inf or NaN (desc.check_finite)",
                           names[slot]);
    return PS_OK;
}

ps_status ps_finite_check_outputs(ps_plan *plan, const char *fn, cl_mem o, cl_mem lse)
{
    const ps_attention_desc *d = &plan->desc;
    if (!plan->finite)
        return PS_OK;
    const scan_item items[2] = {
        tensor_item(d, PS_TENSOR_O, o),
        {lse, ps_view_dense(d->n_q, 1, 0), (cl_uint)(d->batch * d->heads), (cl_uint)d->n_q, 1,
         FINITE_LSE}};
    cl_int flags[2];
    const ps_status st = scan(plan, items, 2, flags);
    if (st != PS_OK)
        return st;
    if (flags[0])
        return ps_fail(plan->ctx, PS_ERR_NON_FINITE,
                       "%s: o holds NaN or Inf after the run: inputs beyond the fp32 range "
                       "of the method (desc.check_finite; docs/RELIABILITY.md)",
                       fn);
    if (flags[1])
        return ps_fail(plan->ctx, PS_ERR_NON_FINITE,
                       "%s: lse holds NaN or +Inf after the run: inputs beyond the fp32 range "
                       "of the method (desc.check_finite; docs/RELIABILITY.md)",
                       fn);
    return PS_OK;
}
