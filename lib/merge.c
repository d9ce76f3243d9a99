/* Launches of the cl/merge.cl kernels (see merge.h). */
#include "merge.h"

ps_status ps_copy_rows_enqueue(ps_plan *plan, cl_kernel copy_rows, const ps_tensor *src,
                               const ps_tensor *dst, size_t heads, size_t src_row0,
                               size_t dst_row0, size_t count, size_t width)
{
    const cl_int a4[4] = {(cl_int)src_row0, (cl_int)dst_row0, (cl_int)count, (cl_int)width};
    ps_arg_setter a = {copy_rows, 0, CL_SUCCESS};
    ps_arg_tensor(&a, src);
    ps_arg_tensor(&a, dst);
    for (int i = 0; i < 4; i++)
        ps_arg(&a, sizeof a4[i], &a4[i]);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(plan->ctx, a.err, "clSetKernelArg (copy_rows)");
    const size_t g[2] = {count, heads};
    return ps_launch(plan->ctx, a.kernel, "copy_rows", 2, g, NULL);
}

ps_status ps_merge_rows_enqueue(ps_plan *plan, cl_kernel merge_rows, const ps_tensor *o,
                                cl_mem lse, const ps_tensor *o2, cl_mem lse2, size_t row0,
                                size_t count)
{
    const ps_attention_desc *d = &plan->desc;
    const cl_int ai[4] = {(cl_int)d->n_q, (cl_int)row0, (cl_int)count, (cl_int)d->d_v};
    ps_arg_setter a = {merge_rows, 0, CL_SUCCESS};
    ps_arg_tensor(&a, o);
    ps_arg(&a, sizeof lse, &lse);
    ps_arg_tensor(&a, o2);
    ps_arg(&a, sizeof lse2, &lse2);
    for (int i = 0; i < 4; i++)
        ps_arg(&a, sizeof ai[i], &ai[i]);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(plan->ctx, a.err, "clSetKernelArg (merge_rows)");
    const size_t g[2] = {count, d->batch * d->heads};
    return ps_launch(plan->ctx, a.kernel, "merge_rows", 2, g, NULL);
}

ps_status ps_empty_rows_enqueue(ps_plan *plan, cl_kernel empty_rows, const ps_tensor *o,
                                cl_mem lse, size_t count)
{
    const ps_attention_desc *d = &plan->desc;
    const cl_int rows = (cl_int)d->n_q, n = (cl_int)count, dv = (cl_int)d->d_v;
    ps_arg_setter a = {empty_rows, 0, CL_SUCCESS};
    ps_arg_tensor(&a, o);
    ps_arg(&a, sizeof lse, &lse);
    ps_arg(&a, sizeof rows, &rows);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dv, &dv);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(plan->ctx, a.err, "clSetKernelArg (empty_rows)");
    const size_t g[2] = {count, d->batch * d->heads};
    return ps_launch(plan->ctx, a.kernel, "empty_rows", 2, g, NULL);
}
