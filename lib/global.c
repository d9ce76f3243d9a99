/* Global keys (docs/GLOBAL.md): setup, the split (cl/global.cl
 * global_scores, global_pick, global_split) and the merge (exact attention
 * over the g rows, then cl/merge.cl merge_rows). */
#include "global.h"

#include "core/desc.h"
#include "core/global_params.h"
#include "exact.h"
#include "kernel_fit.h"
#include "merge.h"
#include "core/host_alloc.h"
#include "core/tensor_layout.h"

#include <stdlib.h>

struct ps_global_state {
    size_t g;      /* global keys per KV head */
    size_t n_cand; /* candidates per KV head before the split */
    cl_kernel global_scores, global_pick, global_split, merge_rows;
    size_t pick_group; /* work-items of global_pick's group (one group per head) */
    cl_mem gscores;    /* [batch * kv_heads][n_cand] global score per candidate */
    cl_mem gsel;       /* [batch * kv_heads][g] candidate index, ascending */
    cl_mem kg, vg;     /* [batch * kv_heads][g][d | d_v] */
    cl_mem kr, vr;     /* [batch * kv_heads][n_cand - g][d | d_v] */
    cl_mem wr;         /* [batch * kv_heads][n_cand - g] their log-weights (weighted) */
    cl_mem og, lseg;   /* [batch * heads][n_q][d_v], [..][n_q]: the exact part */
    cl_mem lse_own;    /* [batch * heads][n_q]: row LSE when the caller wants none */
};

ps_status ps_global_setup(ps_plan *plan, size_t n_cand)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const size_t qheads = d->batch * d->heads, kheads = d->batch * d->kv_heads;
    const size_t f = sizeof(float), u32 = sizeof(cl_uint);
    /* The split rows are exact copies: in K's and V's storage types. */
    const size_t ke = ps_dtype_size(d->k_layout.dtype), ve = ps_dtype_size(d->v_layout.dtype);
    const size_t g = d->global_keys, c = n_cand;
    char msg[256];
    ps_status st = ps_global_check(d, c, msg, sizeof msg);
    if (st != PS_OK)
        return ps_fail(ctx, st, "ps_plan_create: %s", msg);
    ps_global_state *s = ps_calloc(1, sizeof *s);
    if (!s)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->global = s;
    s->g = g;
    s->n_cand = c;
    s->gscores = ps_workspace_buffer(ctx, kheads * c * f, "global key scores", &st);
    s->gsel = ps_workspace_buffer(ctx, kheads * g * u32, "global key indices", &st);
    s->kg = ps_workspace_buffer(ctx, kheads * g * d->d * ke, "global keys", &st);
    s->vg = ps_workspace_buffer(ctx, kheads * g * d->d_v * ve, "global values", &st);
    s->kr = ps_workspace_buffer(ctx, kheads * (c - g) * d->d * ke, "non-global keys", &st);
    s->vr = ps_workspace_buffer(ctx, kheads * (c - g) * d->d_v * ve, "non-global values", &st);
    if (ps_selection_weighted(d->selection))
        s->wr = ps_workspace_buffer(ctx, kheads * (c - g) * f, "non-global key weights", &st);
    /* The global part's output waits for the merge in O's storage type. */
    s->og = ps_workspace_buffer(ctx, qheads * d->n_q * d->d_v * ps_dtype_size(d->o_layout.dtype),
                                "global part output", &st);
    s->lseg = ps_workspace_buffer(ctx, qheads * d->n_q * f, "global part lse", &st);
    s->lse_own = ps_workspace_buffer(ctx, qheads * d->n_q * f, "row lse", &st);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_GLOBAL, "global_scores", &s->global_scores);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_GLOBAL, "global_pick", &s->global_pick);
    if (st == PS_OK)
        st = ps_kernel_fit(ctx, s->global_pick, "global_pick", ctx->tuning.group_cap,
                           ctx->tuning.group_cap * sizeof(cl_ulong), &s->pick_group);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_GLOBAL, "global_split", &s->global_split);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_MERGE, "merge_rows", &s->merge_rows);
    return st;
}

void ps_global_release(ps_plan *plan)
{
    ps_global_state *s = plan->global;
    if (!s)
        return;
    cl_mem bufs[] = {s->gscores, s->gsel, s->kg, s->vg, s->kr, s->vr, s->wr, s->og, s->lseg,
                     s->lse_own};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i])
            clReleaseMemObject(bufs[i]);
    cl_kernel kernels[] = {s->global_scores, s->global_pick, s->global_split, s->merge_rows};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    free(s);
    plan->global = NULL;
}

/* Global scores of the candidates (keys [kheads][c][d]), the top g, and the
 * split into kg/vg (global) and kr/vr (the rest, for the hyper stage). */
ps_status ps_global_split_enqueue(ps_plan *plan, cl_mem scores, cl_mem indices,
                                  ps_tensor *keys, ps_tensor *values, cl_mem *weights,
                                  size_t *used)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_global_state *s = plan->global;
    const size_t kheads = d->batch * d->kv_heads;
    const int own = ps_global_own_scores(d);
    const cl_int n_scores = (cl_int)d->n_k, n_cand = (cl_int)s->n_cand, g = (cl_int)s->g,
                 dim = (cl_int)d->d, dv = (cl_int)d->d_v, mode = own ? 0 : 1;
    const ps_tensor kc = *keys, vc = *values;
    cl_mem sc = own ? scores : s->gscores, idx = own ? indices : s->gsel;
    const size_t per_key[2] = {s->n_cand, kheads};
    ps_status st;

    const cl_mem wc = *weights;
    const cl_int weighted = wc != NULL;
    *used = s->n_cand - s->g;
    *keys = ps_dense_tensor(s->kr, *used, d->d, kc.view.f16);
    *values = ps_dense_tensor(s->vr, *used, d->d_v, vc.view.f16);
    if (weighted)
        *weights = s->wr;
    ps_arg_setter a = {s->global_scores, 0, CL_SUCCESS};
    ps_arg(&a, sizeof sc, &sc);
    ps_arg(&a, sizeof idx, &idx);
    ps_arg_tensor(&a, &kc);
    ps_arg(&a, sizeof s->gscores, &s->gscores);
    ps_arg(&a, sizeof n_scores, &n_scores);
    ps_arg(&a, sizeof n_cand, &n_cand);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof mode, &mode);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (global_scores)");
    st = ps_launch(ctx, a.kernel, "global_scores", 2, per_key, NULL);
    if (st != PS_OK)
        return st;

    a = (ps_arg_setter){s->global_pick, 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->gscores, &s->gscores);
    ps_arg(&a, sizeof s->gsel, &s->gsel);
    ps_arg(&a, sizeof n_cand, &n_cand);
    ps_arg(&a, sizeof g, &g);
    ps_arg(&a, s->pick_group * sizeof(cl_ulong), NULL);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (global_pick)");
    const size_t pick_global[1] = {kheads * s->pick_group}, pick_local[1] = {s->pick_group};
    st = ps_launch(ctx, a.kernel, "global_pick", 1, pick_global, pick_local);
    if (st != PS_OK)
        return st;

    a = (ps_arg_setter){s->global_split, 0, CL_SUCCESS};
    ps_arg_tensor(&a, &kc);
    ps_arg_tensor(&a, &vc);
    ps_arg(&a, sizeof s->gsel, &s->gsel);
    ps_arg(&a, sizeof s->kg, &s->kg);
    ps_arg(&a, sizeof s->vg, &s->vg);
    ps_arg(&a, sizeof s->kr, &s->kr);
    ps_arg(&a, sizeof s->vr, &s->vr);
    ps_arg(&a, sizeof wc, &wc); /* NULL without weights: not read */
    ps_arg(&a, sizeof s->wr, &s->wr);
    ps_arg(&a, sizeof weighted, &weighted);
    ps_arg(&a, sizeof n_cand, &n_cand);
    ps_arg(&a, sizeof g, &g);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof dv, &dv);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (global_split)");
    return ps_launch(ctx, a.kernel, "global_split", 2, per_key, NULL);
}

cl_mem ps_global_row_lse(const ps_plan *plan, cl_mem lse)
{
    return lse || !plan->global ? lse : plan->global->lse_own;
}

/* Exact attention of every query over the g global keys, merged into (o, lse)
 * in log-sum-exp space (both parts are over disjoint, non-empty key sets). */
ps_status ps_global_merge_enqueue(ps_plan *plan, const ps_tensor *q, const ps_tensor *o,
                                  cl_mem lse)
{
    const ps_attention_desc *d = &plan->desc;
    ps_global_state *s = plan->global;
    ps_attention_desc shape = *d;
    shape.causal = 0;
    shape.n_k = s->g;
    const ps_tensor tk = ps_dense_tensor(s->kg, s->g, d->d, d->k_layout.dtype == PS_DTYPE_F16),
                    tv = ps_dense_tensor(s->vg, s->g, d->d_v,
                                         d->v_layout.dtype == PS_DTYPE_F16),
                    to = ps_dense_tensor(s->og, d->n_q, d->d_v, o->view.f16);
    ps_status st = ps_exact_enqueue_shape(plan, &shape, q, &tk, &tv, &to, s->lseg);
    if (st != PS_OK)
        return st;
    return ps_merge_rows_enqueue(plan, s->merge_rows, o, lse, &to, s->lseg, 0, d->n_q);
}
