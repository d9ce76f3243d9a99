/* Exact attention on the device (cl/exact.cl): workspace, launch
 * geometry and arguments for both kernel shapes. */
#include "exact.h"
#include "core/host_alloc.h"
#include "core/size_math.h"
#include "core/tensor_layout.h"
#include "tiles.h" /* cl/: PS_KTILE_CPU, shared with the kernels */
#include "attention_params.h" /* cl/: ps_flash_params, shared with the kernels */

#include "kernel_fit.h"
#include "compact.h"

#include <math.h>
#include <stdlib.h>

/* The stage's state on the plan (plan->exact). */
struct ps_exact_state {
    cl_kernel attention;    /* flash_attention_cpu or _gpu */
    cl_kernel transpose;    /* CPU shape: transpose_keys */
    cl_mem k_t;             /* CPU shape: K transposed per KV head, keys padded */
    ps_compaction v_c;      /* CPU shape: V compacted when its rows are apart */
    size_t local;           /* work-group size of the attention kernel */
    size_t keys_per_launch; /* keys per launch (0: all at once) */
    cl_mem lse_ws;          /* LSE carried between launches when the caller wants none */
};


/* Keys one launch may walk within the loop budget, at half the back-edges per
 * key measured on llvmpipe (Mesa 22.3; largest n_k one launch got right:
 * GPU shape 816 at d = 128, 1568 at d = 64; CPU shape 384 and 768): CPU shape
 * (d + dv)(QB + 2) / 15, GPU shape (d + dv) / 4 + 16 (the tile update steps
 * four dimensions); fixed loops (init, resume, write) take 4 * QB * 128. A
 * multiple of the shape's key tile; 0: no limit. */
static size_t keys_per_launch(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const unsigned budget = ctx->tuning.loop_budget;
    if (!budget)
        return 0;
    const double dd = (double)(plan->desc.d + plan->desc.d_v);
    const int cpu = ctx->tuning.shape == PS_SHAPE_CPU;
    const double qb = ctx->tuning.cpu_query_block;
    const double per_key = cpu ? dd * (qb + 2.0) / 15.0 : dd / 4.0 + 16.0;
    const double fixed = cpu ? 4.0 * qb * PS_MAX_HEAD_DIM : 4.0 * PS_MAX_HEAD_DIM;
    const size_t tile = cpu ? PS_KTILE_CPU : ctx->tuning.gpu_key_tile;
    double keys = ((double)budget - fixed) / (2.0 * per_key);
    size_t k = keys > 0 ? (size_t)keys / tile * tile : 0;
    return k < tile ? tile : k;
}

static ps_status exact_setup_chunks(ps_plan *plan);

ps_status ps_exact_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    ps_exact_state *e = ps_calloc(1, sizeof *e);
    if (!e)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_exact_setup: no host memory");
    plan->exact = e;

    if (ctx->tuning.shape == PS_SHAPE_CPU) {
        /* In K's storage type: the transpose copies elements exactly. On the
         * pipeline path exact attention only ever sees the g global keys. */
        const size_t rows = plan->path == PS_PATH_PIPELINE ? d->global_keys : d->n_k;
        const size_t n_k_pad = ps_round_up(rows, PS_KTILE_CPU);
        st = ps_buffer_create(ctx,
                              d->batch * d->kv_heads * d->d * n_k_pad *
                                  ps_dtype_size(d->k_layout.dtype),
                              "transposed-key workspace", &e->k_t);
        if (st != PS_OK)
            return st;
        st = ps_kernel_create(ctx, PS_PROGRAM_UTIL, "transpose_keys", &e->transpose);
        /* The key loop re-reads V once per block of queries (measured 2x
         * for [B, T, H, D] at n = 16384, 8 heads, without the copy); the
         * pipeline path passes only its dense global-key rows. */
        if (st == PS_OK && plan->path != PS_PATH_PIPELINE)
            st = ps_compaction_setup(plan, PS_TENSOR_V, "compacted values", &e->v_c);
        if (st == PS_OK)
            st = ps_kernel_create_shaped(ctx, PS_PROGRAM_EXACT, "flash_attention",
                                         &e->attention);
        e->local = 1;
        return st == PS_OK ? exact_setup_chunks(plan) : st;
    }

    char name[PS_KERNEL_NAME_MAX];
    st = ps_kernel_create_shaped(ctx, PS_PROGRAM_EXACT, "flash_attention", &e->attention);
    if (st != PS_OK)
        return st;
    st = ps_kernel_fit(ctx, e->attention,
                       ps_kernel_shaped_name(ctx, "flash_attention", name, sizeof name),
                       ctx->tuning.gpu_group, 0, &e->local);
    return st == PS_OK ? exact_setup_chunks(plan) : st;
}

/* Where one launch cannot walk every key, launches carry O and LSE between
 * key ranges; an LSE workspace stands in when the caller wants none. */
static ps_status exact_setup_chunks(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_exact_state *e = plan->exact;
    e->keys_per_launch = keys_per_launch(plan);
    if (!e->keys_per_launch || e->keys_per_launch >= d->n_k)
        return PS_OK;
    return ps_buffer_create(ctx, d->batch * d->heads * d->n_q * sizeof(float),
                            "exact attention LSE workspace", &e->lse_ws);
}

/* The flash kernels' scalar arguments for shape d, but the key range. */
static ps_flash_params flash_params(const ps_attention_desc *d)
{
    ps_flash_params p;
    p.n_q = (ps_i32)d->n_q;
    p.n_k = (ps_i32)d->n_k;
    p.n_k_pad = (ps_i32)ps_round_up(d->n_k, PS_KTILE_CPU); /* CPU shape: k_t's stride */
    p.d = (ps_i32)d->d;
    p.dv = (ps_i32)d->d_v;
    p.heads = (ps_i32)d->heads;
    p.group = (ps_i32)(d->heads / d->kv_heads);
    p.causal = d->causal;
    p.key_begin = p.key_stop = 0; /* launch_key_ranges */
    p.scale_log2 = (float)(d->scale * 1.4426950408889634);
    return p;
}

/* The attention launches over key ranges of plan->keys_per_launch (one range
 * where that is 0), each with params (argument params_arg) for its range; the
 * buffer arguments are set. */
static ps_status launch_key_ranges(ps_plan *plan, const char *name, cl_uint params_arg,
                                   ps_flash_params params, const size_t *g, const size_t *l)
{
    ps_context *ctx = plan->ctx;
    const ps_exact_state *e = plan->exact;
    const cl_int n_k = params.n_k;
    const cl_int step = e->keys_per_launch ? (cl_int)e->keys_per_launch : n_k;
    for (cl_int begin = 0; begin < n_k; begin += step) {
        params.key_begin = begin;
        params.key_stop = n_k - begin > step ? begin + step : n_k;
        ps_arg_setter a = {e->attention, params_arg, CL_SUCCESS};
        ps_arg(&a, sizeof params, &params);
        if (a.err != CL_SUCCESS)
            return ps_fail_cl(ctx, a.err, "clSetKernelArg (attention key range)");
        ps_status st = ps_launch(ctx, e->attention, name, 3, g, l);
        if (st != PS_OK)
            return st;
    }
    return PS_OK;
}

void ps_exact_release(ps_plan *plan)
{
    ps_exact_state *e = plan->exact;
    if (!e)
        return;
    if (e->attention)
        clReleaseKernel(e->attention);
    if (e->transpose)
        clReleaseKernel(e->transpose);
    if (e->k_t)
        clReleaseMemObject(e->k_t);
    ps_compaction_release(&e->v_c);
    if (e->lse_ws)
        clReleaseMemObject(e->lse_ws);
    free(e);
    plan->exact = NULL;
}

ps_status ps_exact_enqueue(ps_plan *plan, const ps_tensor *q, const ps_tensor *k,
                           const ps_tensor *v, const ps_tensor *o, cl_mem lse)
{
    return ps_exact_enqueue_shape(plan, &plan->desc, q, k, v, o, lse);
}

ps_status ps_exact_enqueue_shape(ps_plan *plan, const ps_attention_desc *d, const ps_tensor *q,
                                 const ps_tensor *k, const ps_tensor *v, const ps_tensor *o,
                                 cl_mem lse)
{
    ps_context *ctx = plan->ctx;
    const ps_exact_state *e = plan->exact;
    const ps_flash_params params = flash_params(d);
    char name[PS_KERNEL_NAME_MAX];
    ps_kernel_shaped_name(ctx, "flash_attention", name, sizeof name);
    ps_status st;
    if (!lse && e->keys_per_launch && e->keys_per_launch < d->n_k)
        lse = e->lse_ws; /* carries the running maximum and sum between launches */

    ps_arg_setter a = {e->attention, 0, CL_SUCCESS};
    ps_arg_tensor(&a, q);
    if (ctx->tuning.shape == PS_SHAPE_CPU) {
        /* k_t holds the plan's padded n_k >= params.n_k_pad columns per KV
         * head, in K's storage type (a plan's K keeps one dtype). */
        const ps_tensor kt =
            ps_tensor_make(e->k_t, ps_view_dense((size_t)params.n_k_pad, d->d, k->view.f16));
        ps_arg_setter t = {e->transpose, 0, CL_SUCCESS};
        ps_arg_tensor(&t, k);
        ps_arg(&t, sizeof kt.mem, &kt.mem);
        ps_arg(&t, sizeof params.n_k, &params.n_k);
        ps_arg(&t, sizeof params.n_k_pad, &params.n_k_pad);
        ps_arg(&t, sizeof params.d, &params.d);
        if (t.err != CL_SUCCESS)
            return ps_fail_cl(ctx, t.err, "clSetKernelArg (transpose_keys)");
        const size_t tg[3] = {(size_t)params.n_k_pad, d->d, d->batch * d->kv_heads};
        st = ps_launch(ctx, e->transpose, "transpose_keys", 3, tg, NULL);
        if (st != PS_OK)
            return st;
        ps_arg_tensor(&a, &kt);
    } else {
        ps_arg_tensor(&a, k);
    }
    ps_tensor vc; /* the caller's V, or its compact copy */
    st = ps_compaction_enqueue(plan, &e->v_c, v, d->n_k, &vc);
    if (st != PS_OK)
        return st;
    ps_arg_tensor(&a, &vc);
    ps_arg_tensor(&a, o);
    ps_arg(&a, sizeof lse, &lse); /* a NULL cl_mem is a NULL pointer in the kernel */
    if (a.err != CL_SUCCESS)
        return ps_args_done(ctx, &a, name);
    if (ctx->tuning.shape == PS_SHAPE_CPU) {
        const size_t qb = ctx->tuning.cpu_query_block;
        const size_t g[3] = {ps_div_up(d->n_q, qb), d->heads, d->batch};
        const size_t l[3] = {1, 1, 1};
        return launch_key_ranges(plan, name, a.index, params, g, l);
    }
    const size_t local = e->local;
    const size_t g[3] = {ps_round_up(d->n_q, local), d->heads, d->batch};
    const size_t l[3] = {local, 1, 1};
    return launch_key_ranges(plan, name, a.index, params, g, l);
}
