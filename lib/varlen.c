/* Variable-length batches on the device (lib/varlen.h). */
#include "varlen.h"

#include "merge.h"
#include "plan.h"
#include "stage_times.h"
#include "core/host_alloc.h"
#include "core/varlen.h"

#include <stdlib.h>
#include <string.h>

struct ps_varlen_state {
    uint32_t *cu_q, *cu_k; /* the plan's copies of the offsets (batch + 1 each) */
    ps_plan **seq;         /* [batch]: a sequence's plan, NULL when it has no query */
    cl_mem *lse;           /* [batch]: its LSE, [heads][len_q] */
    cl_kernel copy_rows;
};

ps_status ps_varlen_setup(ps_plan *plan, const ps_attention_desc *user)
{
    ps_context *ctx = plan->ctx;
    ps_attention_desc *d = &plan->desc;
    const size_t n = d->batch;
    ps_varlen_state *s = ps_calloc(1, sizeof *s);
    if (!s)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->varlen = s;
    s->cu_q = ps_malloc((n + 1) * sizeof *s->cu_q);
    s->cu_k = ps_malloc((n + 1) * sizeof *s->cu_k);
    s->seq = ps_calloc(n, sizeof *s->seq);
    s->lse = ps_calloc(n, sizeof *s->lse);
    if (!s->cu_q || !s->cu_k || !s->seq || !s->lse)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    memcpy(s->cu_q, user->cu_seqlens_q, (n + 1) * sizeof *s->cu_q);
    memcpy(s->cu_k, user->cu_seqlens_k, (n + 1) * sizeof *s->cu_k);
    d->cu_seqlens_q = s->cu_q; /* the caller's arrays may go away */
    d->cu_seqlens_k = s->cu_k;
    ps_status st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "copy_rows", &s->copy_rows);
    for (size_t b = 0; b < n && st == PS_OK; b++) {
        if (ps_varlen_len_q(d, b) == 0)
            continue;
        ps_attention_desc sd;
        ps_varlen_seq_desc(user, b, &sd);
        sd.check_finite = 0; /* the plan checks the packed tensors once */
        st = ps_plan_create(ctx, &sd, &s->seq[b]);
        if (st == PS_OK)
            st = ps_buffer_create(ctx, d->heads * sd.n_q * sizeof(float), "sequence lse",
                                  &s->lse[b]);
    }
    return st;
}

void ps_varlen_release(ps_plan *plan)
{
    ps_varlen_state *s = plan->varlen;
    if (!s)
        return;
    for (size_t b = 0; b < plan->desc.batch; b++) {
        if (s->seq && s->seq[b])
            ps_plan_destroy(s->seq[b]);
        if (s->lse && s->lse[b])
            clReleaseMemObject(s->lse[b]);
    }
    if (s->copy_rows)
        clReleaseKernel(s->copy_rows);
    free(s->seq);
    free(s->lse);
    free(s->cu_q);
    free(s->cu_k);
    free(s);
    plan->varlen = NULL;
}

ps_status ps_varlen_enqueue(ps_plan *plan, int kind, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                            cl_mem lse, ps_varlen_path_fn path)
{
    const ps_attention_desc *d = &plan->desc;
    ps_varlen_state *s = plan->varlen;
    ps_status st = PS_OK;
    for (size_t b = 0; b < d->batch && st == PS_OK; b++) {
        ps_plan *seq = s->seq[b];
        if (!seq)
            continue;
        seq->diag_unit_residual_weight = plan->diag_unit_residual_weight;
        st = path(seq, kind, q, k, v, o, s->lse[b]);
        ps_marks_reset(seq); /* the plan times the batch as a whole */
        if (st == PS_OK && lse && o) { /* a query half wrote this LSE */
            const size_t len = seq->desc.n_q;
            const ps_tensor src = ps_dense_tensor(s->lse[b], len, 1, 0),
                            dst = ps_dense_tensor(lse, d->n_q, 1, 0);
            st = ps_copy_rows_enqueue(plan, s->copy_rows, &src, &dst, d->heads, 0, s->cu_q[b],
                                      len, 1);
        }
    }
    return st;
}
