/* The score stage on the device (cl/score.cl, docs/SCORING.md): kernels and
 * all workspace are created by ps_score_setup for the plan's score method, so
 * that scoring itself only sets arguments and enqueues. */
#include "score.h"
#include "core/size_math.h"
#include "handles.h"

#include "buffer_check.h"
#include "core/desc.h"
#include "core/score_params.h"
#include "core/tensor_layout.h"
#include "core/host_alloc.h"
#include "kernel_fit.h"
#include "compact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


enum {
    K_NORM,
    K_FILL_ONE,
    K_KPP_MAXABS,
    K_KPP_SCALE,
    K_KPP_QUANTIZE,
    K_KPP_UPDATE,
    K_KPP_PICK,
    K_KM_RESET,
    K_KM_GATHER,
    K_KM_PREP,
    K_KM_ASSIGN,
    K_KM_ACCUMULATE,
    K_KM_FINALIZE,
    K_KM_RESEED,
    K_KM_CHECK,
    K_KM_SCORE_PARTIAL,
    K_KM_SCORE_CLUSTER,
    K_KM_SCORE_MEAN,
    K_KM_SCORE_CTERM,
    K_KM_SCORE_WRITE,
    K_LEV_GRAM_PARTIAL,
    K_LEV_GRAM_REDUCE,
    K_LEV_CHOLESKY,
    K_LEV_INVERSE,
    K_LEV_APPLY,
    K_COUNT
};

static const char *const kernel_names[K_COUNT] = {
    "score_norm",       "score_fill_one",   "kpp_maxabs",       "kpp_scale_head",   "kpp_quantize",
    "kpp_update",       "kpp_pick",         "km_reset",         "km_gather",
    "km_prep",          "km_assign",        "km_accumulate",    "km_finalize",
    "km_reseed",        "km_check",         "km_score_partial", "km_score_cluster",
    "km_score_mean",    "km_score_cterm",   "km_score_write",   "lev_gram_partial",
    "lev_gram_reduce",  "lev_cholesky",
    "lev_inverse",      "lev_apply",
};

enum {
    B_KQ,       /* char [H][n][d] quantised keys (k-means++) */
    B_MIND,     /* uint [H][n] D^2 weights */
    B_KCSUM,    /* ulong [H][kpp_chunks] */
    B_CENTERS,  /* uint [H][c] seeds */
    B_QSCALE,   /* float [H] */
    B_PMAX,     /* float [H][kpp_chunks] */
    B_CENT,     /* float [H][c][d] */
    B_CT,       /* float [H][d][c_pad] */
    B_CN,       /* float [H][c_pad] */
    B_ASSIGN,   /* int [H][n] */
    B_KDIST,    /* float [H][n] squared distances to the centroid */
    B_PART,     /* float [H][chunks][c][d] */
    B_PCOUNT,   /* int [H][chunks][c] */
    B_MU,       /* float [H][d] mean of the keys (from the centroids) */
    B_COUNT,    /* int [H][c] */
    B_CTERM,    /* float [H][c] ||c_j - mu||^2 */
    B_CHANGED,  /* int [H] */
    B_DONE,     /* int [H] */
    B_ITERS,    /* int [H] */
    B_INERTIA,  /* float [H][iters + 1] */
    B_GPART,    /* float [H][chunks][d][d] */
    B_GRAM,     /* float [H][d][d], then the Cholesky factor */
    B_MINV,     /* float [H][d][d], L^-1 transposed */
    B_COUNT_ALL
};

struct ps_score_state {
    cl_kernel kernels[K_COUNT];
    cl_mem bufs[B_COUNT_ALL];
    size_t heads, chunk, nchunk, kpp_nchunk, c_pad;
    size_t group;       /* work-group size of the reduction kernels */
    size_t apply_group; /* of lev_apply (lev_apply_group) */
    ps_compaction k_c;   /* K compacted when its rows are apart */
    int clustered;       /* a KMEANS scoring was enqueued: B_ASSIGN holds clusters */
};

/* lev_apply's work-items each hold a block of PS_CPU_QB key rows in private
 * memory. A driver choosing the group itself may pack thousands of them
 * into one (PoCL: 2048 from n_k = 32768 on, overflowing its stack: a crash),
 * so the group is set: 1 in the CPU shape, as the flash kernels, and at most
 * this in the GPU shape. */
#define PS_LEV_APPLY_GROUP_CAP 64

ps_status ps_score_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    ps_score_state *s = ps_calloc(1, sizeof *s);
    if (!s)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_score_setup: no host memory");
    plan->score = s;
    const size_t H = d->batch * d->kv_heads, n = d->n_k, dim = d->d, c = d->clusters;
    s->heads = H;
    s->chunk = ps_score_chunk(n);
    s->nchunk = (n + s->chunk - 1) / s->chunk;
    s->kpp_nchunk = (n + PS_KPP_CHUNK - 1) / PS_KPP_CHUNK;
    s->c_pad = ps_round_up(c, 16);

    size_t sizes[B_COUNT_ALL] = {0};
    int first = K_COUNT, last = -1;
    switch (d->score) {
    case PS_SCORE_NORM:
        first = last = K_NORM;
        break;
    case PS_SCORE_NONE:
        first = last = K_FILL_ONE;
        break;
    case PS_SCORE_LEVERAGE:
        first = K_LEV_GRAM_PARTIAL;
        last = K_LEV_APPLY;
        sizes[B_GPART] = H * s->nchunk * dim * dim * sizeof(float);
        sizes[B_GRAM] = sizes[B_MINV] = H * dim * dim * sizeof(float);
        break;
    case PS_SCORE_KMEANS:
    default:
        first = K_KPP_MAXABS;
        last = K_KM_SCORE_WRITE;
        sizes[B_KQ] = H * n * dim;
        sizes[B_MIND] = H * n * sizeof(cl_uint);
        sizes[B_KCSUM] = H * s->kpp_nchunk * sizeof(cl_ulong);
        sizes[B_CENTERS] = H * c * sizeof(cl_uint);
        sizes[B_QSCALE] = H * sizeof(float);
        sizes[B_PMAX] = H * s->kpp_nchunk * sizeof(float);
        sizes[B_CENT] = H * c * dim * sizeof(float);
        sizes[B_CT] = H * dim * s->c_pad * sizeof(float);
        sizes[B_CN] = H * s->c_pad * sizeof(float);
        sizes[B_ASSIGN] = H * n * sizeof(cl_int);
        sizes[B_KDIST] = H * n * sizeof(float);
        sizes[B_PART] = H * s->nchunk * c * dim * sizeof(float);
        sizes[B_PCOUNT] = H * s->nchunk * c * sizeof(cl_int);
        sizes[B_MU] = H * dim * sizeof(float);
        sizes[B_COUNT] = H * c * sizeof(cl_int);
        sizes[B_CTERM] = H * c * sizeof(float);
        sizes[B_CHANGED] = sizes[B_DONE] = sizes[B_ITERS] = H * sizeof(cl_int);
        sizes[B_INERTIA] = H * (d->kmeans_iters + 1) * sizeof(float);
        break;
    }
    for (int i = first; i <= last; i++) {
        st = i == K_KM_ASSIGN /* a variant per shape */
                 ? ps_kernel_create_shaped(ctx, PS_PROGRAM_SCORE, kernel_names[i],
                                           &s->kernels[i])
                 : ps_kernel_create(ctx, PS_PROGRAM_SCORE, kernel_names[i], &s->kernels[i]);
        if (st != PS_OK)
            return st;
    }
    for (int b = 0; b < B_COUNT_ALL; b++) {
        if (!sizes[b])
            continue;
        char what[40];
        snprintf(what, sizeof what, "score workspace %d", b);
        st = ps_buffer_create(ctx, sizes[b], what, &s->bufs[b]);
        if (st != PS_OK)
            return st;
    }

    /* Reduction work-groups: a power of two the device and every kernel that
     * uses them allow, at most the tuning's cap (and the __local arrays'
     * PS_SCORE_RED). */
    size_t group = ctx->tuning.group_cap < PS_SCORE_RED ? ctx->tuning.group_cap
                                                              : PS_SCORE_RED;
    const int grouped[] = {K_KPP_SCALE, K_KM_CHECK, K_LEV_CHOLESKY, K_LEV_INVERSE,
                           K_KM_ASSIGN};
    for (size_t i = 0; i < sizeof grouped / sizeof grouped[0]; i++) {
        if (!s->kernels[grouped[i]])
            continue;
        st = ps_kernel_fit(ctx, s->kernels[grouped[i]], kernel_names[grouped[i]], group, 0,
                           &group);
        if (st != PS_OK)
            return st;
    }
    s->group = group;
    /* k-means reads K once per iteration (measured 1.5-1.9x the scoring
     * time for [B, T, H, D] at n = 16384, 8 heads, without the copy). */
    st = ps_compaction_setup(plan, PS_TENSOR_K, "compacted keys", &s->k_c);
    if (st != PS_OK)
        return st;
    s->apply_group = 1;
    if (s->kernels[K_LEV_APPLY] && ctx->tuning.shape == PS_SHAPE_GPU)
        st = ps_kernel_fit(ctx, s->kernels[K_LEV_APPLY], kernel_names[K_LEV_APPLY],
                           PS_LEV_APPLY_GROUP_CAP, 0, &s->apply_group);
    return st;
}

void ps_score_release(ps_plan *plan)
{
    ps_score_state *s = plan->score;
    if (!s)
        return;
    for (int i = 0; i < K_COUNT; i++)
        if (s->kernels[i])
            clReleaseKernel(s->kernels[i]);
    for (int b = 0; b < B_COUNT_ALL; b++)
        if (s->bufs[b])
            clReleaseMemObject(s->bufs[b]);
    ps_compaction_release(&s->k_c);
    free(s);
    plan->score = NULL;
}

/* Enqueues kernel `id` over `dims` global sizes (local NULL or `local`). */
static ps_status launch(ps_plan *plan, int id, cl_uint dims, const size_t *global,
                        const size_t *local)
{
    return ps_launch(plan->ctx, plan->score->kernels[id], kernel_names[id], dims, global, local);
}

/* ps_arg's setter for kernel `id`, from its first argument. */
static ps_arg_setter args_of(const ps_score_state *s, int id)
{
    const ps_arg_setter a = {s->kernels[id], 0, CL_SUCCESS};
    return a;
}

/* ps_args_done under kernel `id`'s name. */
static ps_status args_done(ps_context *ctx, const ps_arg_setter *a, int id)
{
    return ps_args_done(ctx, a, kernel_names[id]);
}

/* Enqueues kernel `id` once its arguments `a` are set (see launch). */
static ps_status run(ps_plan *plan, const ps_arg_setter *a, int id, cl_uint dims,
                     const size_t *global, const size_t *local)
{
    const ps_status st = args_done(plan->ctx, a, id);
    return st == PS_OK ? launch(plan, id, dims, global, local) : st;
}

/* k-means++ seeding: the quantised keys, then one pick per round (each
 * needs the last). */
static ps_status enqueue_kpp(ps_plan *plan, const ps_tensor *k)
{
    ps_score_state *s = plan->score;
    cl_mem *b = s->bufs;
    const ps_attention_desc *d = &plan->desc;
    const cl_int n = (cl_int)d->n_k, dim = (cl_int)d->d, c = (cl_int)d->clusters,
                 kpp_nchunk = (cl_int)s->kpp_nchunk, kpp_chunk = PS_KPP_CHUNK;
    const cl_ulong seed = d->seed;
    const size_t H = s->heads;
    const size_t g_n[2] = {d->n_k, H}, g_h[1] = {H}, g_kpp[2] = {s->kpp_nchunk, H};
    const size_t g_red[2] = {s->group, H}, l_red[2] = {s->group, 1};

    ps_arg_setter a = args_of(s, K_KPP_MAXABS);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof b[B_PMAX], &b[B_PMAX]);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof kpp_nchunk, &kpp_nchunk);
    ps_arg(&a, sizeof kpp_chunk, &kpp_chunk);
    ps_status st = run(plan, &a, K_KPP_MAXABS, 2, g_kpp, NULL);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KPP_SCALE);
    ps_arg(&a, sizeof b[B_PMAX], &b[B_PMAX]);
    ps_arg(&a, sizeof b[B_QSCALE], &b[B_QSCALE]);
    ps_arg(&a, sizeof kpp_nchunk, &kpp_nchunk);
    st = run(plan, &a, K_KPP_SCALE, 2, g_red, l_red);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KPP_QUANTIZE);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof b[B_KQ], &b[B_KQ]);
    ps_arg(&a, sizeof b[B_QSCALE], &b[B_QSCALE]);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    st = run(plan, &a, K_KPP_QUANTIZE, 2, g_n, NULL);
    if (st != PS_OK)
        return st;
    for (cl_int j = 0; j < c; j++) {
        if (j > 0) {
            a = args_of(s, K_KPP_UPDATE);
            ps_arg(&a, sizeof b[B_KQ], &b[B_KQ]);
            ps_arg(&a, sizeof b[B_MIND], &b[B_MIND]);
            ps_arg(&a, sizeof b[B_KCSUM], &b[B_KCSUM]);
            ps_arg(&a, sizeof b[B_CENTERS], &b[B_CENTERS]);
            ps_arg(&a, sizeof n, &n);
            ps_arg(&a, sizeof dim, &dim);
            ps_arg(&a, sizeof c, &c);
            ps_arg(&a, sizeof j, &j);
            ps_arg(&a, sizeof kpp_nchunk, &kpp_nchunk);
            ps_arg(&a, sizeof kpp_chunk, &kpp_chunk);
            st = run(plan, &a, K_KPP_UPDATE, 2, g_kpp, NULL);
            if (st != PS_OK)
                return st;
        }
        a = args_of(s, K_KPP_PICK);
        ps_arg(&a, sizeof b[B_MIND], &b[B_MIND]);
        ps_arg(&a, sizeof b[B_KCSUM], &b[B_KCSUM]);
        ps_arg(&a, sizeof b[B_CENTERS], &b[B_CENTERS]);
        ps_arg(&a, sizeof seed, &seed);
        ps_arg(&a, sizeof n, &n);
        ps_arg(&a, sizeof c, &c);
        ps_arg(&a, sizeof j, &j);
        ps_arg(&a, sizeof kpp_nchunk, &kpp_nchunk);
        ps_arg(&a, sizeof kpp_chunk, &kpp_chunk);
        st = run(plan, &a, K_KPP_PICK, 1, g_h, NULL);
        if (st != PS_OK)
            return st;
    }
    return PS_OK;
}

/* Sets the arguments of the kernels each Lloyd iteration runs with the same
 * arguments (km_check's change: enqueue_lloyd sets them per iteration). */
static ps_status set_lloyd_args(ps_plan *plan, const ps_tensor *k)
{
    ps_context *ctx = plan->ctx;
    ps_score_state *s = plan->score;
    cl_mem *b = s->bufs;
    const ps_attention_desc *d = &plan->desc;
    const cl_int n = (cl_int)d->n_k, dim = (cl_int)d->d, c = (cl_int)d->clusters,
                 c_pad = (cl_int)s->c_pad, nchunk = (cl_int)s->nchunk,
                 chunk = (cl_int)s->chunk;
    const int gpu = ctx->tuning.shape == PS_SHAPE_GPU;

    ps_arg_setter a = args_of(s, K_KM_PREP);
    ps_arg(&a, sizeof b[B_CENT], &b[B_CENT]);
    ps_arg(&a, sizeof b[B_CT], &b[B_CT]);
    ps_arg(&a, sizeof b[B_CN], &b[B_CN]);
    ps_arg(&a, sizeof b[B_DONE], &b[B_DONE]);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof c, &c);
    ps_arg(&a, sizeof c_pad, &c_pad);
    ps_status st = args_done(ctx, &a, K_KM_PREP);
    if (st != PS_OK)
        return st;
    /* The GPU shape's km_assign_gpu reads the centroids row-major and takes
     * their count, the CPU shape's km_assign the transposed ones. */
    a = args_of(s, K_KM_ASSIGN);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof(cl_mem), gpu ? &b[B_CENT] : &b[B_CT]);
    ps_arg(&a, sizeof b[B_CN], &b[B_CN]);
    ps_arg(&a, sizeof b[B_ASSIGN], &b[B_ASSIGN]);
    ps_arg(&a, sizeof b[B_KDIST], &b[B_KDIST]);
    ps_arg(&a, sizeof b[B_CHANGED], &b[B_CHANGED]);
    ps_arg(&a, sizeof b[B_DONE], &b[B_DONE]);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof c, &c);
    ps_arg(&a, sizeof c_pad, &c_pad);
    st = args_done(ctx, &a, K_KM_ASSIGN);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KM_ACCUMULATE);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof b[B_ASSIGN], &b[B_ASSIGN]);
    ps_arg(&a, sizeof b[B_CENT], &b[B_CENT]);
    ps_arg(&a, sizeof b[B_PART], &b[B_PART]);
    ps_arg(&a, sizeof b[B_PCOUNT], &b[B_PCOUNT]);
    ps_arg(&a, sizeof b[B_DONE], &b[B_DONE]);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof c, &c);
    ps_arg(&a, sizeof nchunk, &nchunk);
    ps_arg(&a, sizeof chunk, &chunk);
    st = args_done(ctx, &a, K_KM_ACCUMULATE);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KM_FINALIZE);
    ps_arg(&a, sizeof b[B_CENT], &b[B_CENT]);
    ps_arg(&a, sizeof b[B_PART], &b[B_PART]);
    ps_arg(&a, sizeof b[B_PCOUNT], &b[B_PCOUNT]);
    ps_arg(&a, sizeof b[B_COUNT], &b[B_COUNT]);
    ps_arg(&a, sizeof b[B_DONE], &b[B_DONE]);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof c, &c);
    ps_arg(&a, sizeof nchunk, &nchunk);
    st = args_done(ctx, &a, K_KM_FINALIZE);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KM_RESEED);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof b[B_CENT], &b[B_CENT]);
    ps_arg(&a, sizeof b[B_COUNT], &b[B_COUNT]);
    ps_arg(&a, sizeof b[B_KDIST], &b[B_KDIST]);
    ps_arg(&a, sizeof b[B_DONE], &b[B_DONE]);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof c, &c);
    return args_done(ctx, &a, K_KM_RESEED);
}

/* Lloyd: the centroids from the seeds, then iterations until each head
 * converges or runs out of them (km_check). */
static ps_status enqueue_lloyd(ps_plan *plan, const ps_tensor *k)
{
    ps_context *ctx = plan->ctx;
    ps_score_state *s = plan->score;
    cl_mem *b = s->bufs;
    const ps_attention_desc *d = &plan->desc;
    const cl_int n = (cl_int)d->n_k, dim = (cl_int)d->d, c = (cl_int)d->clusters,
                 iters1 = (cl_int)(d->kmeans_iters + 1);
    const size_t H = s->heads, dg = d->d / 16, qb = ctx->tuning.cpu_query_block;
    const size_t g_n[2] = {d->n_k, H}, g_c[2] = {d->clusters, H}, g_cpad[2] = {s->c_pad, H};
    const size_t g_red[2] = {s->group, H}, l_red[2] = {s->group, 1};
    const size_t g_h[1] = {H};

    ps_arg_setter a = args_of(s, K_KM_RESET);
    ps_arg(&a, sizeof b[B_ASSIGN], &b[B_ASSIGN]);
    ps_arg(&a, sizeof b[B_CHANGED], &b[B_CHANGED]);
    ps_arg(&a, sizeof b[B_DONE], &b[B_DONE]);
    ps_arg(&a, sizeof n, &n);
    ps_status st = run(plan, &a, K_KM_RESET, 2, g_n, NULL);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KM_GATHER);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof b[B_CENTERS], &b[B_CENTERS]);
    ps_arg(&a, sizeof b[B_CENT], &b[B_CENT]);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof c, &c);
    st = run(plan, &a, K_KM_GATHER, 2, g_c, NULL);
    if (st == PS_OK)
        st = set_lloyd_args(plan, k);
    if (st != PS_OK)
        return st;
    /* CPU shape: PS_CPU_QB keys per work-item, one work-item per group as in
     * the flash kernel (the work-items already use float16). GPU shape: one
     * key per work-item, groups of s->group sharing centroid tiles. */
    const int gpu = ctx->tuning.shape == PS_SHAPE_GPU;
    const size_t g_assign[2] = {gpu ? ps_round_up(d->n_k, s->group) : ps_div_up(d->n_k, qb), H};
    const size_t l_assign[2] = {gpu ? s->group : 1, 1};
    const size_t g_acc[2] = {s->nchunk * dg, H}, g_fin[2] = {d->clusters * dg, H};
    for (cl_int it = 0; it < iters1; it++) {
        if (it > 0) {
            st = launch(plan, K_KM_ACCUMULATE, 2, g_acc, NULL);
            if (st == PS_OK)
                st = launch(plan, K_KM_FINALIZE, 2, g_fin, NULL);
            if (st == PS_OK)
                st = launch(plan, K_KM_RESEED, 1, g_h, NULL);
        }
        if (st == PS_OK)
            st = launch(plan, K_KM_PREP, 2, g_cpad, NULL);
        if (st == PS_OK)
            st = launch(plan, K_KM_ASSIGN, 2, g_assign, l_assign);
        if (st != PS_OK)
            return st;
        a = args_of(s, K_KM_CHECK);
        ps_arg(&a, sizeof b[B_KDIST], &b[B_KDIST]);
        ps_arg(&a, sizeof b[B_CHANGED], &b[B_CHANGED]);
        ps_arg(&a, sizeof b[B_DONE], &b[B_DONE]);
        ps_arg(&a, sizeof b[B_INERTIA], &b[B_INERTIA]);
        ps_arg(&a, sizeof b[B_ITERS], &b[B_ITERS]);
        ps_arg(&a, sizeof n, &n);
        ps_arg(&a, sizeof it, &it);
        ps_arg(&a, sizeof iters1, &iters1);
        st = run(plan, &a, K_KM_CHECK, 2, g_red, l_red);
        if (st != PS_OK)
            return st;
    }
    return PS_OK;
}

/* The scores ||c(i) - mu||^2 + ||k_i - c(i)||^2 from the converged clusters. */
static ps_status enqueue_kmeans_scores(ps_plan *plan, const ps_tensor *k, cl_mem scores)
{
    ps_score_state *s = plan->score;
    cl_mem *b = s->bufs;
    const ps_attention_desc *d = &plan->desc;
    const cl_int n = (cl_int)d->n_k, dim = (cl_int)d->d, c = (cl_int)d->clusters,
                 nchunk = (cl_int)s->nchunk, chunk = (cl_int)s->chunk;
    const size_t H = s->heads;
    const size_t g_n[2] = {d->n_k, H}, g_c[2] = {d->clusters, H};
    const size_t g_chunks[2] = {s->nchunk, H}, g_d[2] = {d->d, H};

    ps_arg_setter a = args_of(s, K_KM_SCORE_PARTIAL);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof b[B_CENT], &b[B_CENT]);
    ps_arg(&a, sizeof b[B_ASSIGN], &b[B_ASSIGN]);
    ps_arg(&a, sizeof b[B_KDIST], &b[B_KDIST]);
    ps_arg(&a, sizeof b[B_PCOUNT], &b[B_PCOUNT]);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof c, &c);
    ps_arg(&a, sizeof nchunk, &nchunk);
    ps_arg(&a, sizeof chunk, &chunk);
    ps_status st = run(plan, &a, K_KM_SCORE_PARTIAL, 2, g_chunks, NULL);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KM_SCORE_CLUSTER);
    ps_arg(&a, sizeof b[B_PCOUNT], &b[B_PCOUNT]);
    ps_arg(&a, sizeof b[B_COUNT], &b[B_COUNT]);
    ps_arg(&a, sizeof c, &c);
    ps_arg(&a, sizeof nchunk, &nchunk);
    st = run(plan, &a, K_KM_SCORE_CLUSTER, 2, g_c, NULL);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KM_SCORE_MEAN);
    ps_arg(&a, sizeof b[B_CENT], &b[B_CENT]);
    ps_arg(&a, sizeof b[B_COUNT], &b[B_COUNT]);
    ps_arg(&a, sizeof b[B_MU], &b[B_MU]);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof c, &c);
    st = run(plan, &a, K_KM_SCORE_MEAN, 2, g_d, NULL);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KM_SCORE_CTERM);
    ps_arg(&a, sizeof b[B_CENT], &b[B_CENT]);
    ps_arg(&a, sizeof b[B_MU], &b[B_MU]);
    ps_arg(&a, sizeof b[B_CTERM], &b[B_CTERM]);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof c, &c);
    st = run(plan, &a, K_KM_SCORE_CTERM, 2, g_c, NULL);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_KM_SCORE_WRITE);
    ps_arg(&a, sizeof b[B_KDIST], &b[B_KDIST]);
    ps_arg(&a, sizeof b[B_ASSIGN], &b[B_ASSIGN]);
    ps_arg(&a, sizeof b[B_CTERM], &b[B_CTERM]);
    ps_arg(&a, sizeof scores, &scores);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof c, &c);
    return run(plan, &a, K_KM_SCORE_WRITE, 2, g_n, NULL);
}

static ps_status enqueue_kmeans(ps_plan *plan, const ps_tensor *k, cl_mem scores)
{
    ps_status st = enqueue_kpp(plan, k);
    if (st == PS_OK)
        st = enqueue_lloyd(plan, k);
    return st == PS_OK ? enqueue_kmeans_scores(plan, k, scores) : st;
}

static ps_status enqueue_leverage(ps_plan *plan, const ps_tensor *k, cl_mem scores)
{
    ps_context *ctx = plan->ctx;
    ps_score_state *s = plan->score;
    cl_mem *b = s->bufs;
    const ps_attention_desc *d = &plan->desc;
    const cl_int n = (cl_int)d->n_k, dim = (cl_int)d->d, nchunk = (cl_int)s->nchunk,
                 chunk = (cl_int)s->chunk;
    const cl_float lambda_rel = ps_score_lambda_rel(d);
    const size_t H = s->heads, dg = d->d / 16;
    const size_t g_part[3] = {s->nchunk * dg, d->d, H}, g_red3[3] = {dg, d->d, H};
    const size_t g_grp[2] = {s->group, H}, l_grp[2] = {s->group, 1};
    const size_t qb = ctx->tuning.cpu_query_block;
    const size_t g_apply[2] = {ps_round_up(ps_div_up(d->n_k, qb), s->apply_group), H};

    ps_arg_setter a = args_of(s, K_LEV_GRAM_PARTIAL);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof b[B_GPART], &b[B_GPART]);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof nchunk, &nchunk);
    ps_arg(&a, sizeof chunk, &chunk);
    ps_status st = run(plan, &a, K_LEV_GRAM_PARTIAL, 3, g_part, NULL);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_LEV_GRAM_REDUCE);
    ps_arg(&a, sizeof b[B_GPART], &b[B_GPART]);
    ps_arg(&a, sizeof b[B_GRAM], &b[B_GRAM]);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof nchunk, &nchunk);
    st = run(plan, &a, K_LEV_GRAM_REDUCE, 3, g_red3, NULL);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_LEV_CHOLESKY);
    ps_arg(&a, sizeof b[B_GRAM], &b[B_GRAM]);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof lambda_rel, &lambda_rel);
    st = run(plan, &a, K_LEV_CHOLESKY, 2, g_grp, l_grp);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_LEV_INVERSE);
    ps_arg(&a, sizeof b[B_GRAM], &b[B_GRAM]);
    ps_arg(&a, sizeof b[B_MINV], &b[B_MINV]);
    ps_arg(&a, sizeof dim, &dim);
    st = run(plan, &a, K_LEV_INVERSE, 2, g_grp, l_grp);
    if (st != PS_OK)
        return st;
    a = args_of(s, K_LEV_APPLY);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof b[B_MINV], &b[B_MINV]);
    ps_arg(&a, sizeof scores, &scores);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof dim, &dim);
    const size_t l_apply[2] = {s->apply_group, 1};
    return run(plan, &a, K_LEV_APPLY, 2, g_apply, l_apply);
}

ps_status ps_score_enqueue(ps_plan *plan, const ps_tensor *k, cl_mem scores)
{
    ps_score_state *s = plan->score;
    const ps_attention_desc *d = &plan->desc;
    const cl_int n = (cl_int)d->n_k, dim = (cl_int)d->d;
    const size_t g[2] = {d->n_k, s->heads};
    ps_arg_setter a;
    ps_tensor kc; /* the caller's K, or its compact copy */
    const ps_status st = ps_compaction_enqueue(plan, &s->k_c, k, d->n_k, &kc);
    if (st != PS_OK)
        return st;
    k = &kc;

    switch (d->score) {
    case PS_SCORE_NORM:
        a = args_of(s, K_NORM);
        ps_arg_tensor(&a, k);
        ps_arg(&a, sizeof scores, &scores);
        ps_arg(&a, sizeof n, &n);
        ps_arg(&a, sizeof dim, &dim);
        return run(plan, &a, K_NORM, 2, g, NULL);
    case PS_SCORE_NONE:
        a = args_of(s, K_FILL_ONE);
        ps_arg(&a, sizeof scores, &scores);
        ps_arg(&a, sizeof n, &n);
        return run(plan, &a, K_FILL_ONE, 2, g, NULL);
    case PS_SCORE_LEVERAGE:
        return enqueue_leverage(plan, k, scores);
    case PS_SCORE_KMEANS:
    default: {
        const ps_status ks = enqueue_kmeans(plan, k, scores);
        s->clustered = ks == PS_OK;
        return ks;
    }
    }
}

cl_mem ps_score_assignments(const ps_plan *plan)
{
    const ps_score_state *s = plan->score;
    return s && s->clustered ? s->bufs[B_ASSIGN] : NULL;
}

static ps_status score_keys_checked(ps_plan *plan, cl_mem k, cl_mem scores)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    if (plan->path == PS_PATH_VARLEN)
        return ps_fail(ctx, PS_ERR_UNSUPPORTED,
                       "ps_score_keys: not on a variable-length batch (cu_seqlens)");
    if (d->method != PS_METHOD_PRESCORE || !plan->score)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_score_keys: the plan's method must be PS_METHOD_PRESCORE");
    const size_t score_bytes = d->batch * d->kv_heads * d->n_k * sizeof(float);
    st = ps_check_buffer(ctx, k, ps_layout_bytes(d, PS_TENSOR_K), "ps_score_keys: k");
    if (st != PS_OK)
        return st;
    st = ps_check_buffer(ctx, scores, score_bytes, "ps_score_keys: scores");
    if (st != PS_OK)
        return st;
    /* k's bytes only from its offset on: scores may lie in front of it. */
    const ps_buffer_use in = ps_tensor_use(d, PS_TENSOR_K, k);
    const ps_buffer_use out = {"scores", scores, score_bytes, 0};
    st = ps_check_overlaps(ctx, "ps_score_keys", &in, 1, &out, 1);
    if (st != PS_OK)
        return st;
    const ps_tensor tk = ps_plan_tensor(plan, PS_TENSOR_K, k);
    st = ps_score_enqueue(plan, &tk, scores);
    if (st != PS_OK)
        return st;
    return ps_wait_enqueued(ctx, "waiting for ps_score_keys");
}

ps_status ps_score_kmeans_read(ps_plan *plan, uint32_t *seeds, uint32_t *assign,
                               float *centroids, float *inertia, uint32_t *iters_run)
{
    if (!plan)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_score_state *s = plan->score;
    if (!s || d->score != PS_SCORE_KMEANS)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_score_kmeans_read: the plan does not score with KMEANS");
    const size_t H = s->heads;
    struct {
        void *dst;
        int buf;
        size_t bytes;
    } reads[] = {
        {seeds, B_CENTERS, H * d->clusters * sizeof(cl_uint)},
        {assign, B_ASSIGN, H * d->n_k * sizeof(cl_int)},
        {centroids, B_CENT, H * d->clusters * d->d * sizeof(float)},
        {inertia, B_INERTIA, H * (d->kmeans_iters + 1) * sizeof(float)},
        {iters_run, B_ITERS, H * sizeof(cl_int)},
    };
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        if (!reads[i].dst)
            continue;
        const cl_int err = clEnqueueReadBuffer(ctx->queue, s->bufs[reads[i].buf], CL_TRUE, 0,
                                               reads[i].bytes, reads[i].dst, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return ps_fail_cl(ctx, err, "clEnqueueReadBuffer (k-means state)");
    }
    return PS_OK;
}

ps_status ps_score_keys(ps_plan *plan, cl_mem k, cl_mem scores)
{
    if (ps_plan_enter(plan, "ps_score_keys") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_plan_result(plan, score_keys_checked(plan, k, scores));
}

ps_status ps_score_statistics(const ps_plan *plan, cl_mem *centroids, cl_mem *cterm,
                              cl_mem *minv)
{
    const ps_score_state *s = plan->score;
    if (!s)
        return PS_ERR_INTERNAL;
    *centroids = s->bufs[B_CENT];
    *cterm = s->bufs[B_CTERM];
    *minv = s->bufs[B_MINV];
    return PS_OK;
}
