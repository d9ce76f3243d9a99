/* The Hamming-sort LSH stage on the device (see lsh.h, cl/lsh.cl):
 * kernels, projections and sort workspace created at plan time, launch
 * geometry from each kernel's CL_KERNEL_WORK_GROUP_SIZE.
 * Environment: PRESCORE_LSH_ORDER = gray-rank | gray-code | binary (code
 * ordering, docs/LSH.md); the work-group cap comes from lib/tuning.c. */
#include "lsh.h"
#include "settings.h"
#include "core/size_math.h"

#include "kernel_fit.h"

#include "core/desc.h"
#include "core/host_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Most chunks of a head's histogram scan (pass 2 scans them serially). */
#define PS_LSH_MAX_CHUNKS 4096u
/* Smallest chunk of the scan. */
#define PS_LSH_MIN_CHUNK 256u

enum { K_PROJ, K_HASH, K_HIST, K_SUMS, K_TOP, K_CHUNKS, K_SCATTER, K_COUNT };
static const char *const kernel_names[K_COUNT] = {
    "lsh_projections", "lsh_hash",        "lsh_histogram", "lsh_scan_sums",
    "lsh_scan_top",    "lsh_scan_chunks", "lsh_scatter"};

struct ps_lsh_state {
    cl_kernel kernels[K_COUNT];
    size_t local[K_COUNT]; /* work-group size of dimension 0 */
    cl_mem proj;           /* [batch * kv_heads][r][d] */
    cl_mem hist;           /* histogram / offsets workspace */
    cl_mem sums;           /* chunk sums workspace */
    size_t hist_elems, sums_elems;
    int order;
};

/* Sort geometry of one call: tiles per head, histogram length per head, scan
 * chunk size and chunks per head. */
typedef struct sort_geom {
    size_t tile, tiles, buckets, length, chunk, chunks;
} sort_geom;

static sort_geom geometry(unsigned r, size_t n)
{
    sort_geom g;
    g.tile = ps_lsh_sort_tile(r);
    g.tiles = n ? ps_div_up(n, g.tile) : 0;
    g.buckets = (size_t)1 << r;
    g.length = g.buckets * g.tiles;
    g.chunk = ps_div_up(g.length, PS_LSH_MAX_CHUNKS);
    if (g.chunk < PS_LSH_MIN_CHUNK)
        g.chunk = PS_LSH_MIN_CHUNK;
    g.chunks = g.length ? ps_div_up(g.length, g.chunk) : 0;
    return g;
}

/* Enqueues kernel k over (g0 rounded up to the group size, g1). */
static ps_status launch(ps_plan *plan, int k, size_t g0, size_t g1)
{
    ps_context *ctx = plan->ctx;
    const ps_lsh_state *s = plan->lsh;
    const size_t l = s->local[k];
    const size_t global[2] = {ps_div_up(g0, l) * l, g1};
    const size_t local[2] = {l, 1};
    return ps_launch(ctx, s->kernels[k], kernel_names[k], 2, global, local);
}

static int order_from_env(void)
{
    const char *s = ps_setting_string(PS_SET_LSH_ORDER);
    if (s && strcasecmp(s, "gray-code") == 0)
        return PS_LSH_ORDER_GRAY_CODE;
    if (s && strcasecmp(s, "binary") == 0)
        return PS_LSH_ORDER_BINARY;
    return PS_LSH_ORDER_GRAY_RANK;
}

ps_status ps_lsh_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    ps_lsh_state *s = ps_calloc(1, sizeof *s);
    if (!s)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_lsh_setup: no host memory");
    plan->lsh = s;
    s->order = order_from_env();

    for (int k = 0; k < K_COUNT; k++) {
        st = ps_kernel_create(ctx, PS_PROGRAM_LSH, kernel_names[k], &s->kernels[k]);
        if (st != PS_OK)
            return st;
        st = ps_kernel_fit(ctx, s->kernels[k], kernel_names[k], ctx->tuning.lsh_group, 0,
                           &s->local[k]);
        if (st != PS_OK)
            return st;
    }

    const size_t r = d->lsh_bits, heads = d->batch * d->heads;
    const size_t n = d->n_q > d->n_k ? d->n_q : d->n_k;
    const sort_geom g = geometry((unsigned)r, n);
    s->hist_elems = heads * (g.length ? g.length : 1);
    s->sums_elems = heads * PS_LSH_MAX_CHUNKS;
    const size_t per_head = r * d->d, kv = d->batch * d->kv_heads;
    st = ps_buffer_create(ctx, kv * per_head * sizeof(float), "LSH projections", &s->proj);
    if (st == PS_OK)
        st = ps_buffer_create(ctx, s->hist_elems * sizeof(cl_uint), "LSH histogram", &s->hist);
    if (st == PS_OK)
        st = ps_buffer_create(ctx, s->sums_elems * sizeof(cl_uint), "LSH scan sums", &s->sums);
    if (st != PS_OK)
        return st;

    const cl_ulong seed = d->seed;
    const cl_uint ph = (cl_uint)per_head;
    ps_arg_setter a = {s->kernels[K_PROJ], 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->proj, &s->proj);
    ps_arg(&a, sizeof seed, &seed);
    ps_arg(&a, sizeof ph, &ph);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (lsh_projections)");
    st = launch(plan, K_PROJ, per_head, kv);
    if (st != PS_OK)
        return st;
    return ps_wait_enqueued(ctx, "waiting for the LSH projections");
}

void ps_lsh_release(ps_plan *plan)
{
    ps_lsh_state *s = plan->lsh;
    if (!s)
        return;
    for (int k = 0; k < K_COUNT; k++)
        if (s->kernels[k])
            clReleaseKernel(s->kernels[k]);
    if (s->proj)
        clReleaseMemObject(s->proj);
    if (s->hist)
        clReleaseMemObject(s->hist);
    if (s->sums)
        clReleaseMemObject(s->sums);
    free(s);
    plan->lsh = NULL;
}

ps_status ps_lsh_set_order(ps_plan *plan, int order)
{
    if (!plan || !plan->lsh)
        return PS_ERR_INVALID_ARGUMENT;
    if (order != PS_LSH_ORDER_GRAY_RANK && order != PS_LSH_ORDER_GRAY_CODE &&
        order != PS_LSH_ORDER_BINARY)
        return ps_fail(plan->ctx, PS_ERR_INVALID_ARGUMENT, "LSH order %d is not known", order);
    plan->lsh->order = order;
    return PS_OK;
}

int ps_lsh_order(const ps_plan *plan)
{
    return plan && plan->lsh ? plan->lsh->order : PS_LSH_ORDER_GRAY_RANK;
}

cl_mem ps_lsh_projections(const ps_plan *plan)
{
    return plan && plan->lsh ? plan->lsh->proj : NULL;
}

/* Whether `heads` flat heads of n slots fit the plan's workspace. */
static int fits(const ps_plan *plan, size_t heads, size_t n)
{
    const sort_geom g = geometry(plan->desc.lsh_bits, n);
    return heads * g.length <= plan->lsh->hist_elems &&
           heads * g.chunks <= plan->lsh->sums_elems;
}

size_t ps_lsh_max_slots(const ps_plan *plan, size_t heads)
{
    if (!plan || !plan->lsh || heads == 0)
        return 0;
    const unsigned r = plan->desc.lsh_bits;
    const size_t tile = ps_lsh_sort_tile(r), buckets = (size_t)1 << r;
    size_t n = plan->lsh->hist_elems / heads / buckets * tile;
    if (n > PS_MAX_TOKENS)
        n = PS_MAX_TOKENS;
    while (n > 0 && !fits(plan, heads, n))
        n /= 2; /* only when the chunk sums, not the histogram, are the limit */
    return n;
}

/* lsh_hash's scalar arguments for a layout. */
static ps_lsh_hash_params hash_params(const ps_plan *plan, const ps_lsh_rows *layout)
{
    ps_lsh_hash_params p;
    p.n = (ps_u32)layout->n;
    p.x_rows = (ps_u32)layout->x_rows;
    p.row0 = (ps_u32)layout->row0;
    p.group = (ps_u32)(layout->heads / plan->desc.kv_heads);
    p.d = (ps_i32)plan->desc.d;
    p.r = (ps_i32)plan->desc.lsh_bits;
    p.order = plan->lsh->order;
    return p;
}

ps_status ps_lsh_enqueue_hash(ps_plan *plan, const ps_lsh_rows *layout, const ps_tensor *x,
                              cl_mem rows, cl_mem counts, cl_mem codes)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_lsh_state *s = plan->lsh;
    if (layout->n == 0)
        return PS_OK;
    const size_t total = d->batch * layout->heads;

    const ps_lsh_hash_params params = hash_params(plan, layout);
    ps_arg_setter a = {s->kernels[K_HASH], 0, CL_SUCCESS};
    ps_arg_tensor(&a, x);
    ps_arg(&a, sizeof rows, &rows); /* a NULL cl_mem is a NULL pointer in the kernel */
    ps_arg(&a, sizeof counts, &counts);
    ps_arg(&a, sizeof s->proj, &s->proj);
    ps_arg(&a, sizeof codes, &codes);
    ps_arg(&a, sizeof params, &params);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (lsh_hash)");
    return launch(plan, K_HASH, layout->n, total);
}

ps_status ps_lsh_enqueue_sort(ps_plan *plan, const ps_lsh_rows *layout, cl_mem codes,
                              cl_mem counts, cl_mem perm, cl_mem perm_inv)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_lsh_state *s = plan->lsh;
    ps_status st = PS_OK;
    if (layout->n == 0)
        return PS_OK;
    const size_t total = d->batch * layout->heads;

    const sort_geom g = geometry(d->lsh_bits, layout->n);
    const cl_uint n = (cl_uint)layout->n, tile = (cl_uint)g.tile, tiles = (cl_uint)g.tiles,
                  buckets = (cl_uint)g.buckets, length = (cl_uint)g.length,
                  chunk = (cl_uint)g.chunk, chunks = (cl_uint)g.chunks,
                  heads = (cl_uint)total;

    /* The histogram starts at zero: a fill rather than a loop over 2^r
     * buckets in each work-item (65536 at r = 16, past llvmpipe's loop
     * budget, docs/DEVICES.md). */
    const cl_uint zero = 0;
    PS_CL_GOTO(ctx,
               clEnqueueFillBuffer(ctx->queue, s->hist, &zero, sizeof zero, 0,
                                   (size_t)heads * length * sizeof(cl_uint), 0, NULL, NULL),
               "clEnqueueFillBuffer (LSH histogram)");

    ps_arg_setter a = {s->kernels[K_HIST], 0, CL_SUCCESS};
    ps_arg(&a, sizeof codes, &codes);
    ps_arg(&a, sizeof counts, &counts);
    ps_arg(&a, sizeof s->hist, &s->hist);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof tile, &tile);
    ps_arg(&a, sizeof tiles, &tiles);
    ps_arg(&a, sizeof buckets, &buckets);
    PS_GOTO_IF(a.err != CL_SUCCESS, ps_fail_cl(ctx, a.err, "clSetKernelArg (lsh_histogram)"));
    st = launch(plan, K_HIST, g.tiles, total);
    PS_GOTO_IF(st != PS_OK, st);

    a = (ps_arg_setter){s->kernels[K_SUMS], 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->hist, &s->hist);
    ps_arg(&a, sizeof s->sums, &s->sums);
    ps_arg(&a, sizeof length, &length);
    ps_arg(&a, sizeof chunk, &chunk);
    ps_arg(&a, sizeof chunks, &chunks);
    PS_GOTO_IF(a.err != CL_SUCCESS, ps_fail_cl(ctx, a.err, "clSetKernelArg (lsh_scan_sums)"));
    st = launch(plan, K_SUMS, g.chunks, total);
    PS_GOTO_IF(st != PS_OK, st);

    a = (ps_arg_setter){s->kernels[K_TOP], 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->sums, &s->sums);
    ps_arg(&a, sizeof chunks, &chunks);
    ps_arg(&a, sizeof heads, &heads);
    PS_GOTO_IF(a.err != CL_SUCCESS, ps_fail_cl(ctx, a.err, "clSetKernelArg (lsh_scan_top)"));
    st = launch(plan, K_TOP, total, 1);
    PS_GOTO_IF(st != PS_OK, st);

    a = (ps_arg_setter){s->kernels[K_CHUNKS], 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->hist, &s->hist);
    ps_arg(&a, sizeof s->sums, &s->sums);
    ps_arg(&a, sizeof length, &length);
    ps_arg(&a, sizeof chunk, &chunk);
    ps_arg(&a, sizeof chunks, &chunks);
    PS_GOTO_IF(a.err != CL_SUCCESS,
               ps_fail_cl(ctx, a.err, "clSetKernelArg (lsh_scan_chunks)"));
    st = launch(plan, K_CHUNKS, g.chunks, total);
    PS_GOTO_IF(st != PS_OK, st);

    a = (ps_arg_setter){s->kernels[K_SCATTER], 0, CL_SUCCESS};
    ps_arg(&a, sizeof codes, &codes);
    ps_arg(&a, sizeof counts, &counts);
    ps_arg(&a, sizeof s->hist, &s->hist);
    ps_arg(&a, sizeof perm, &perm);
    ps_arg(&a, sizeof perm_inv, &perm_inv);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof tile, &tile);
    ps_arg(&a, sizeof tiles, &tiles);
    ps_arg(&a, sizeof buckets, &buckets);
    PS_GOTO_IF(a.err != CL_SUCCESS, ps_fail_cl(ctx, a.err, "clSetKernelArg (lsh_scatter)"));
    st = launch(plan, K_SCATTER, g.tiles, total);
    PS_GOTO_IF(st != PS_OK, st);

cleanup:
    return st;
}

ps_status ps_lsh_enqueue(ps_plan *plan, const ps_lsh_rows *layout, const ps_tensor *x,
                         cl_mem rows, cl_mem counts, cl_mem codes, cl_mem perm,
                         cl_mem perm_inv)
{
    ps_status st = ps_lsh_enqueue_hash(plan, layout, x, rows, counts, codes);
    if (st == PS_OK)
        st = ps_lsh_enqueue_sort(plan, layout, codes, counts, perm, perm_inv);
    return st;
}
