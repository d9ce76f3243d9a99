/* The hyper stage on the device (cl/hyper.cl): workspace, launch
 * geometry and arguments of the gather, block, and residual+merge kernels in
 * both kernel shapes. See docs/HYPER.md. */
#include "hyper.h"
#include "core/size_math.h"
#include "tiles.h" /* cl/: PS_KTILE_CPU, shared with the kernels */
#include "attention_params.h" /* cl/: ps_hyper_params, shared with the kernels */

#include "kernel_fit.h"
#include "core/dropped_params.h"
#include "core/host_alloc.h"
#include "core/select_params.h"
#include "core/tensor_layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


struct ps_hyper_state {
    cl_kernel gather_keys, gather_samples, blocks, residual;
    cl_kernel gather_dropped; /* only with the dropped-key residual */
    ps_dropped_params dropped;
    cl_mem kg, vg;       /* sorted K (CPU: transposed) and V, [B*Hkv][n_k_pad] rows */
    cl_mem kb;           /* sorted keys' log2 weights, [B*Hkv][n_k_pad] */
    cl_mem sk, sv, sblk; /* residual samples per query head, [B*H][s_pad] rows */
    cl_mem sb;           /* the samples' log2 weights, [B*H][s_pad] */
    cl_mem oblk, lseblk; /* block part, sorted order: [B*H][n_q][dv], [B*H][n_q] */
    size_t n_k_pad, s_pad;
    size_t local_blocks, local_residual; /* GPU-shape work-group sizes */
};

/* Work-group size for a GPU-shape kernel (lib/kernel_fit.c). */
static ps_status gpu_local(ps_context *ctx, cl_kernel kernel, const char *base, size_t *out)
{
    char name[PS_KERNEL_NAME_MAX];
    return ps_kernel_fit(ctx, kernel, ps_kernel_shaped_name(ctx, base, name, sizeof name),
                         ctx->tuning.gpu_group, 0, out);
}

ps_status ps_hyper_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    const int cpu = ctx->tuning.shape == PS_SHAPE_CPU;
    ps_status st = PS_OK;

    ps_hyper_state *hs = ps_calloc(1, sizeof *hs);
    if (!hs)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_hyper_setup: no host memory");
    plan->hyper = hs;
    /* Sorted copies of the key set (PRESCORE: the kept keys only). CPU tiles
     * read 16 keys from any start inside the block: pad past its end (a
     * multiple of 16: hyper_gather_keys works in groups of 16). */
    hs->n_k_pad = ps_round_up(ps_candidate_count(d), PS_KTILE_CPU) + PS_KTILE_CPU;
    hs->s_pad = ps_round_up(d->samples, PS_KTILE_CPU);
    const size_t kvh = d->batch * d->kv_heads, qh = d->batch * d->heads;
    /* The sorted and sampled copies keep K's and V's storage type. */
    const size_t ke = ps_dtype_size(d->k_layout.dtype), ve = ps_dtype_size(d->v_layout.dtype);
    const struct {
        size_t bytes;
        const char *what;
        cl_mem *out;
    } bufs[9] = {
        {kvh * hs->n_k_pad * d->d * ke, "hyper sorted keys", &hs->kg},
        {kvh * hs->n_k_pad * d->d_v * ve, "hyper sorted values", &hs->vg},
        {kvh * hs->n_k_pad * sizeof(float), "hyper sorted key weights", &hs->kb},
        {qh * hs->s_pad * d->d * ke, "hyper sampled keys", &hs->sk},
        {qh * hs->s_pad * d->d_v * ve, "hyper sampled values", &hs->sv},
        {qh * hs->s_pad * sizeof(cl_int), "hyper sample blocks", &hs->sblk},
        {qh * hs->s_pad * sizeof(float), "hyper sample weights", &hs->sb},
        {qh * d->n_q * d->d_v * ps_dtype_size(d->o_layout.dtype), "hyper block output",
         &hs->oblk},
        {qh * d->n_q * sizeof(float), "hyper block lse", &hs->lseblk},
    };
    for (int i = 0; i < 9 && st == PS_OK; i++)
        st = ps_buffer_create(ctx, bufs[i].bytes, bufs[i].what, bufs[i].out);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_HYPER, "hyper_gather_keys", &hs->gather_keys);
    /* The residual's samples: Philox positions of the key set, or draws of
     * the dropped keys (core/dropped_params.h); a plan needs one of them. */
    ps_dropped_params_from_desc(d, &hs->dropped);
    if (st == PS_OK && !hs->dropped.active)
        st = ps_kernel_create(ctx, PS_PROGRAM_HYPER, "hyper_gather_samples",
                              &hs->gather_samples);
    if (st == PS_OK && hs->dropped.active)
        st = ps_kernel_create(ctx, PS_PROGRAM_HYPER, "hyper_gather_dropped",
                              &hs->gather_dropped);
    if (st == PS_OK)
        st = ps_kernel_create_shaped(ctx, PS_PROGRAM_HYPER, "hyper_blocks", &hs->blocks);
    if (st == PS_OK)
        st = ps_kernel_create_shaped(ctx, PS_PROGRAM_HYPER, "hyper_residual", &hs->residual);
    if (st == PS_OK && !cpu)
        st = gpu_local(ctx, hs->blocks, "hyper_blocks", &hs->local_blocks);
    if (st == PS_OK && !cpu)
        st = gpu_local(ctx, hs->residual, "hyper_residual", &hs->local_residual);
    return st; /* on failure ps_plan_create calls ps_hyper_release */
}

void ps_hyper_release(ps_plan *plan)
{
    ps_hyper_state *hs = plan->hyper;
    if (!hs)
        return;
    cl_kernel kernels[5] = {hs->gather_keys, hs->gather_samples, hs->blocks, hs->residual,
                            hs->gather_dropped};
    cl_mem mems[9] = {hs->kg, hs->vg, hs->kb, hs->sk, hs->sv, hs->sblk, hs->sb, hs->oblk,
                      hs->lseblk};
    for (int i = 0; i < 5; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    for (int i = 0; i < 9; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    free(hs);
    plan->hyper = NULL;
}

/* The hyper kernels' scalar arguments for shape d over n_k_used keys, qblk
 * query rows per block work-item (CPU) or group (GPU), keys and values in the
 * storage types of k and v. */
static ps_hyper_params hyper_params(const ps_plan *plan, const ps_attention_desc *d,
                                    size_t n_k_used, size_t qblk, const ps_tensor *k,
                                    const ps_tensor *v)
{
    const size_t qb = (size_t)ps_hyper_query_block_max((ps_i32)d->n_q, (ps_i32)n_k_used,
                                                       (ps_i32)d->block);
    ps_hyper_params p;
    memset(&p, 0, sizeof p); /* each caller sets the members its kernels read */
    p.n_q = (ps_i32)d->n_q;
    p.n_k = (ps_i32)n_k_used;
    /* this enqueue's stride in kg/vg: <= hs->n_k_pad */
    p.n_k_pad = (ps_i32)(ps_round_up(n_k_used, PS_KTILE_CPU) + PS_KTILE_CPU);
    p.d = (ps_i32)d->d;
    p.dv = (ps_i32)d->d_v;
    p.heads = (ps_i32)d->heads;
    p.group = (ps_i32)(d->heads / d->kv_heads);
    /* The dropped-key residual: only its draws are live samples. */
    const ps_dropped_params *dp = &plan->hyper->dropped;
    p.dropped = dp->active;
    p.keep_mix = (float)dp->keep_mix;
    p.s = (ps_i32)(dp->active ? dp->draws : d->samples);
    p.s_pad = (ps_i32)plan->hyper->s_pad;
    p.block = (ps_i32)d->block;
    p.qb = (ps_i32)qb;
    p.tiles = (ps_i32)((qb + qblk - 1) / qblk);
    p.transpose = plan->ctx->tuning.shape == PS_SHAPE_CPU;
    p.seed_lo = (ps_u32)d->seed;
    p.seed_hi = (ps_u32)(d->seed >> 32);
    p.scale_log2 = (float)(d->scale * 1.4426950408889634);
    /* Diagnostic unit weight: the LSE then sums exactly the keys reached.
     * Read here, by the query half, also for draws made with the keys. */
    p.log_weight = plan->diag_unit_residual_weight ? 0.0f
                   : dp->active ? (float)dp->log_weight
                                : (float)log((double)n_k_used / (double)d->samples);
    p.keys_f16 = k->view.f16;
    p.values_f16 = v->view.f16;
    return p;
}

ps_status ps_hyper_enqueue(ps_plan *plan, const ps_tensor *q, const ps_tensor *k,
                           const ps_tensor *v, cl_mem key_bias, size_t n_k_used, cl_mem perm_q,
                           cl_mem perm_k, const ps_tensor *o, cl_mem lse)
{
    const ps_attention_desc *d = &plan->desc;
    ps_context *ctx = plan->ctx;
    ps_hyper_state *hs = plan->hyper;
    const int cpu = ctx->tuning.shape == PS_SHAPE_CPU;
    ps_status st = PS_OK;

    const size_t kvh = d->batch * d->kv_heads, qh = d->batch * d->heads;
    const size_t n_blocks = (n_k_used + d->block - 1) / d->block;
    /* Blocks: CPU shape, ceil(qb / QB) work-items per query block; GPU shape,
     * ceil(qb / local) groups per query block (qb: the longest). */
    const size_t qblk = cpu ? ctx->tuning.cpu_query_block : hs->local_blocks;
    ps_hyper_params params = hyper_params(plan, d, n_k_used, qblk, k, v);
    params.blocks_f16 = o->view.f16; /* oblk was sized for the plan's O */
    params.key_bias = key_bias != NULL;

    ps_arg_setter a = {hs->gather_keys, 0, CL_SUCCESS};
    ps_arg_tensor(&a, k);
    ps_arg_tensor(&a, v);
    ps_arg(&a, sizeof key_bias, &key_bias); /* NULL: a NULL pointer, not read */
    ps_arg(&a, sizeof perm_k, &perm_k);
    ps_arg(&a, sizeof hs->kg, &hs->kg);
    ps_arg(&a, sizeof hs->vg, &hs->vg);
    ps_arg(&a, sizeof hs->kb, &hs->kb);
    ps_arg(&a, sizeof params, &params);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (hyper_gather_keys)");
    const size_t g_keys[2] = {(size_t)params.n_k_pad / PS_KTILE_CPU, kvh}; /* 16 positions each */
    st = ps_launch(ctx, hs->gather_keys, "hyper_gather_keys", 2, g_keys, NULL);
    if (st != PS_OK)
        return st;

    if (!hs->dropped.active) { /* else the samples were drawn with the key set */
        a = (ps_arg_setter){hs->gather_samples, 0, CL_SUCCESS};
        ps_arg_tensor(&a, k);
        ps_arg_tensor(&a, v);
        ps_arg(&a, sizeof key_bias, &key_bias);
        ps_arg(&a, sizeof perm_k, &perm_k);
        ps_arg(&a, sizeof hs->sk, &hs->sk);
        ps_arg(&a, sizeof hs->sv, &hs->sv);
        ps_arg(&a, sizeof hs->sblk, &hs->sblk);
        ps_arg(&a, sizeof hs->sb, &hs->sb);
        ps_arg(&a, sizeof params, &params);
        if (a.err != CL_SUCCESS)
            return ps_fail_cl(ctx, a.err, "clSetKernelArg (hyper_gather_samples)");
        const size_t g_samples[2] = {hs->s_pad, qh};
        st = ps_launch(ctx, hs->gather_samples, "hyper_gather_samples", 2, g_samples, NULL);
        if (st != PS_OK)
            return st;
    }

    a = (ps_arg_setter){hs->blocks, 0, CL_SUCCESS};
    ps_arg_tensor(&a, q);
    ps_arg(&a, sizeof perm_q, &perm_q);
    ps_arg(&a, sizeof hs->kg, &hs->kg);
    ps_arg(&a, sizeof hs->vg, &hs->vg);
    ps_arg(&a, sizeof hs->kb, &hs->kb);
    ps_arg(&a, sizeof hs->oblk, &hs->oblk);
    ps_arg(&a, sizeof hs->lseblk, &hs->lseblk);
    ps_arg(&a, sizeof params, &params);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (hyper_blocks)");
    const size_t g_blocks[3] = {n_blocks * (size_t)params.tiles * (cpu ? 1 : qblk), d->heads,
                                d->batch};
    const size_t l_blocks[3] = {cpu ? 1 : qblk, 1, 1};
    st = ps_launch(ctx, hs->blocks, "hyper_blocks", 3, g_blocks, l_blocks);
    if (st != PS_OK)
        return st;

    a = (ps_arg_setter){hs->residual, 0, CL_SUCCESS};
    ps_arg_tensor(&a, q);
    ps_arg(&a, sizeof perm_q, &perm_q);
    ps_arg(&a, sizeof hs->sk, &hs->sk);
    ps_arg(&a, sizeof hs->sv, &hs->sv);
    ps_arg(&a, sizeof hs->sblk, &hs->sblk);
    ps_arg(&a, sizeof hs->sb, &hs->sb);
    ps_arg(&a, sizeof hs->oblk, &hs->oblk);
    ps_arg(&a, sizeof hs->lseblk, &hs->lseblk);
    ps_arg_tensor(&a, o);
    ps_arg(&a, sizeof lse, &lse); /* a NULL cl_mem is a NULL pointer in the kernel */
    ps_arg(&a, sizeof params, &params);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (hyper_residual)");
    const size_t rblk = cpu ? ctx->tuning.cpu_query_block : hs->local_residual;
    const size_t g_res[3] = {cpu ? ps_div_up(d->n_q, rblk) : ps_round_up(d->n_q, rblk),
                             d->heads, d->batch};
    const size_t l_res[3] = {cpu ? 1 : rblk, 1, 1};
    return ps_launch(ctx, hs->residual, "hyper_residual", 3, g_res, l_res);
}

int ps_hyper_draws_dropped(const ps_plan *plan)
{
    return plan->hyper && plan->hyper->dropped.active;
}

ps_status ps_hyper_draw_dropped_enqueue(ps_plan *plan, const ps_tensor *k, const ps_tensor *v,
                                        cl_mem kept)
{
    const ps_attention_desc *d = &plan->desc;
    ps_hyper_state *hs = plan->hyper;
    const ps_dropped_params *dp = &hs->dropped;
    /* The key set of one block: hyper_params' launch fields are not read. */
    const ps_hyper_params params = hyper_params(plan, d, dp->kept, 1, k, v);
    const cl_uint n_all = (cl_uint)d->n_k, n_kept = (cl_uint)dp->kept,
                  n_dropped = (cl_uint)dp->dropped, draws = (cl_uint)dp->draws;
    ps_arg_setter a = {hs->gather_dropped, 0, CL_SUCCESS};
    ps_arg_tensor(&a, k);
    ps_arg_tensor(&a, v);
    ps_arg(&a, sizeof kept, &kept);
    ps_arg(&a, sizeof hs->sk, &hs->sk);
    ps_arg(&a, sizeof hs->sv, &hs->sv);
    ps_arg(&a, sizeof hs->sblk, &hs->sblk);
    ps_arg(&a, sizeof hs->sb, &hs->sb);
    ps_arg(&a, sizeof params, &params);
    ps_arg(&a, sizeof n_all, &n_all);
    ps_arg(&a, sizeof n_kept, &n_kept);
    ps_arg(&a, sizeof n_dropped, &n_dropped);
    ps_arg(&a, sizeof draws, &draws);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(plan->ctx, a.err, "clSetKernelArg (hyper_gather_dropped)");
    const size_t global[2] = {hs->s_pad, d->batch * d->heads};
    return ps_launch(plan->ctx, hs->gather_dropped, "hyper_gather_dropped", 2, global, NULL);
}
