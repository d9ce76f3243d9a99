/* --check: runs the method and exact attention (same device, same inputs,
 * both with LSE) and reports rel_error and lse_error as DESIGN.md defines
 * them. The exact run is the expensive part; it is not timed. */
#include "check.h"

#include <math.h>
#include <stdlib.h>

static ps_status run_into(ps_context *ctx, ps_plan *plan, const ps_attention_desc *d,
                          cl_mem q, cl_mem k, cl_mem v, float *o, float *lse)
{
    cl_context cl_ctx;
    cl_command_queue queue;
    cl_int err = CL_SUCCESS;
    const size_t no = d->batch * d->heads * d->n_q * d->d_v, nl = d->batch * d->heads * d->n_q;
    ps_context_cl_handles(ctx, &cl_ctx, NULL, &queue);
    cl_mem bo = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, no * sizeof(float), NULL, &err);
    cl_mem bl = err == CL_SUCCESS
                    ? clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, nl * sizeof(float), NULL, &err)
                    : NULL;
    ps_status st = err == CL_SUCCESS ? ps_attention(plan, q, k, v, bo, bl) : PS_ERR_OPENCL;
    if (st == PS_OK &&
        (clEnqueueReadBuffer(queue, bo, CL_TRUE, 0, no * sizeof(float), o, 0, NULL, NULL) !=
             CL_SUCCESS ||
         clEnqueueReadBuffer(queue, bl, CL_TRUE, 0, nl * sizeof(float), lse, 0, NULL, NULL) !=
             CL_SUCCESS))
        st = PS_ERR_OPENCL;
    if (bo)
        clReleaseMemObject(bo);
    if (bl)
        clReleaseMemObject(bl);
    return st;
}

ps_status bench_check(ps_context *ctx, ps_plan *plan, const ps_attention_desc *desc,
                      cl_mem q, cl_mem k, cl_mem v, bench_check_result *result)
{
    const size_t no = desc->batch * desc->heads * desc->n_q * desc->d_v;
    const size_t nl = desc->batch * desc->heads * desc->n_q;
    float *o = malloc(no * sizeof *o), *o_ex = malloc(no * sizeof *o_ex);
    float *lse = malloc(nl * sizeof *lse), *lse_ex = malloc(nl * sizeof *lse_ex);
    ps_plan *exact = NULL;
    ps_attention_desc ed = *desc;
    ps_status st = PS_ERR_OUT_OF_HOST_MEMORY;

    ed.method = PS_METHOD_EXACT;
    ed.want_lse = 1;
    if (o && o_ex && lse && lse_ex)
        st = run_into(ctx, plan, desc, q, k, v, o, lse);
    if (st == PS_OK)
        st = ps_plan_create(ctx, &ed, &exact);
    if (st == PS_OK)
        st = run_into(ctx, exact, &ed, q, k, v, o_ex, lse_ex);
    if (st == PS_OK) {
        double num = 0.0, den = 0.0, lse_sum = 0.0;
        size_t rows = 0;
        for (size_t i = 0; i < no; i++) {
            const double e = (double)o[i] - (double)o_ex[i];
            num += e * e;
            den += (double)o_ex[i] * (double)o_ex[i];
        }
        for (size_t i = 0; i < nl; i++)
            if (isfinite(lse_ex[i])) {
                lse_sum += fabs((double)lse[i] - (double)lse_ex[i]);
                rows++;
            }
        result->rel_error = den > 0.0 ? sqrt(num / den) : sqrt(num);
        result->lse_error = rows ? lse_sum / (double)rows : 0.0;
    }
    ps_plan_destroy(exact);
    free(o);
    free(o_ex);
    free(lse);
    free(lse_ex);
    return st;
}
