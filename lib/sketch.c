/* The query sketch on the device; see sketch.h. Four plain NDRanges: gather
 * the sampled rows, per-chunk softmax statistics, their merge, the mass per
 * key. */
#include "sketch.h"

#include "buffer_check.h"
#include "kernel_fit.h"
#include "core/host_alloc.h"
#include "core/select_params.h" /* ps_sketch_rows via cl/select_common.h */
#include "core/tensor_layout.h"

#include <stdlib.h>

/* Keys one sketch_partial work-item walks at most: enough work-items to
 * fill a device at long n_k; fewer where the loop budget asks (llvmpipe
 * cuts loops short past 65535 back-edges, docs/DEVICES.md). */
#define PS_SKETCH_CHUNK_KEYS 1024

struct ps_sketch_state {
    size_t rows;       /* sampled rows per query head: ps_sketch_rows */
    size_t chunk_keys; /* keys per sketch_partial work-item */
    size_t chunks;     /* key chunks of sketch_partial */
    size_t part_rows;  /* sampled rows per sketch_mass work-item */
    size_t parts;      /* row parts of sketch_mass */
    cl_kernel gather, partial, lse, mass, sum;
    cl_mem pmass;    /* [batch * kv_heads][parts][n_k] float */
    cl_mem qs;       /* [batch * heads][rows][d] float, pre-scaled */
    cl_mem part;     /* [batch * heads][rows][chunks] float2 */
    cl_mem lse2;     /* [batch * heads][rows] float */
    cl_mem own_mass; /* [batch * kv_heads][n_k] float */
};

ps_status ps_sketch_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    ps_sketch_state *s = ps_calloc(1, sizeof *s);
    if (!s)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->sketch = s;
    s->rows = ps_sketch_rows((ps_u32)d->n_q, d->sketch_queries);
    /* Back-edges per key of sketch_partial and per row of sketch_mass: the
     * dot product's d / 4 and the loop's own. */
    const size_t group = d->heads / d->kv_heads, per_item = d->d / 4 + 2;
    s->chunk_keys = ps_loop_items(ctx, per_item, PS_SKETCH_CHUNK_KEYS);
    s->chunks = d->n_k ? (d->n_k + s->chunk_keys - 1) / s->chunk_keys : 1;
    const size_t all_rows = group * (s->rows ? s->rows : 1);
    s->part_rows = ps_loop_items(ctx, per_item, all_rows);
    s->parts = (all_rows + s->part_rows - 1) / s->part_rows;
    const size_t qrows = d->batch * d->heads * (s->rows ? s->rows : 1);
    s->qs = ps_workspace_buffer(ctx, qrows * d->d * sizeof(float), "query sketch rows", &st);
    s->part = ps_workspace_buffer(ctx, qrows * (s->chunks ? s->chunks : 1) * 2 * sizeof(float),
                                  "query sketch partials", &st);
    s->lse2 = ps_workspace_buffer(ctx, qrows * sizeof(float), "query sketch LSE", &st);
    s->own_mass = ps_workspace_buffer(ctx, d->batch * d->kv_heads * d->n_k * sizeof(float),
                                      "query sketch mass", &st);
    s->pmass = ps_workspace_buffer(ctx,
                                   d->batch * d->kv_heads * s->parts * d->n_k * sizeof(float),
                                   "query sketch partial mass", &st);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "sketch_gather", &s->gather);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "sketch_partial", &s->partial);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "sketch_lse", &s->lse);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "sketch_mass", &s->mass);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "sketch_sum", &s->sum);
    return st; /* on failure ps_plan_create calls ps_sketch_release */
}

void ps_sketch_release(ps_plan *plan)
{
    ps_sketch_state *s = plan->sketch;
    if (!s)
        return;
    cl_kernel kernels[] = {s->gather, s->partial, s->lse, s->mass, s->sum};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    cl_mem mems[] = {s->qs, s->part, s->lse2, s->own_mass, s->pmass};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    free(s);
    plan->sketch = NULL;
}

ps_status ps_sketch_enqueue(ps_plan *plan, const ps_tensor *q, const ps_tensor *k, cl_mem mass,
                            cl_mem *out)
{
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_sketch_state *s = plan->sketch;
    const cl_int dim = (cl_int)d->d, n_q = (cl_int)d->n_q, n_k = (cl_int)d->n_k,
                 sq = (cl_int)d->sketch_queries, rows = (cl_int)s->rows,
                 chunks = (cl_int)s->chunks, group = (cl_int)(d->heads / d->kv_heads),
                 chunk_keys = (cl_int)s->chunk_keys, part_rows = (cl_int)s->part_rows,
                 parts = (cl_int)s->parts;
    const cl_uint seed_lo = (cl_uint)d->seed, seed_hi = (cl_uint)(d->seed >> 32);
    const cl_float scale_log2 = (cl_float)(d->scale * 1.4426950408889634);
    const size_t qheads = d->batch * d->heads, kvheads = d->batch * d->kv_heads;
    ps_status st = PS_OK;

    *out = mass ? mass : s->own_mass;
    if (d->n_k == 0)
        return PS_OK;
    if (s->rows == 0) { /* no query: no mass anywhere */
        const cl_float zero = 0.0f;
        const cl_int err = clEnqueueFillBuffer(ctx->queue, *out, &zero, sizeof zero, 0,
                                               kvheads * d->n_k * sizeof(float), 0, NULL, NULL);
        return err == CL_SUCCESS ? PS_OK
                                 : ps_fail_cl(ctx, err, "clEnqueueFillBuffer (query sketch mass)");
    }

    ps_arg_setter a = {s->gather, 0, CL_SUCCESS};
    ps_arg_tensor(&a, q);
    ps_arg(&a, sizeof s->qs, &s->qs);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof n_q, &n_q);
    ps_arg(&a, sizeof sq, &sq);
    ps_arg(&a, sizeof seed_lo, &seed_lo);
    ps_arg(&a, sizeof seed_hi, &seed_hi);
    ps_arg(&a, sizeof scale_log2, &scale_log2);
    st = ps_args_done(ctx, &a, "sketch_gather");
    const size_t g_rows[2] = {s->rows, qheads};
    if (st == PS_OK)
        st = ps_launch(ctx, s->gather, "sketch_gather", 2, g_rows, NULL);

    a = (ps_arg_setter){s->partial, 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->qs, &s->qs);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof s->part, &s->part);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof n_k, &n_k);
    ps_arg(&a, sizeof rows, &rows);
    ps_arg(&a, sizeof group, &group);
    ps_arg(&a, sizeof chunk_keys, &chunk_keys);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "sketch_partial");
    const size_t g_part[3] = {s->rows, qheads, s->chunks};
    if (st == PS_OK)
        st = ps_launch(ctx, s->partial, "sketch_partial", 3, g_part, NULL);

    a = (ps_arg_setter){s->lse, 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->part, &s->part);
    ps_arg(&a, sizeof s->lse2, &s->lse2);
    ps_arg(&a, sizeof rows, &rows);
    ps_arg(&a, sizeof chunks, &chunks);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "sketch_lse");
    if (st == PS_OK)
        st = ps_launch(ctx, s->lse, "sketch_lse", 2, g_rows, NULL);

    a = (ps_arg_setter){s->mass, 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->qs, &s->qs);
    ps_arg(&a, sizeof s->lse2, &s->lse2);
    ps_arg_tensor(&a, k);
    ps_arg(&a, sizeof s->pmass, &s->pmass);
    ps_arg(&a, sizeof dim, &dim);
    ps_arg(&a, sizeof n_k, &n_k);
    ps_arg(&a, sizeof rows, &rows);
    ps_arg(&a, sizeof group, &group);
    ps_arg(&a, sizeof part_rows, &part_rows);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "sketch_mass");
    const size_t g_parts[3] = {d->n_k, kvheads, s->parts};
    if (st == PS_OK)
        st = ps_launch(ctx, s->mass, "sketch_mass", 3, g_parts, NULL);

    a = (ps_arg_setter){s->sum, 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->pmass, &s->pmass);
    ps_arg(&a, sizeof *out, out);
    ps_arg(&a, sizeof n_k, &n_k);
    ps_arg(&a, sizeof parts, &parts);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "sketch_sum");
    const size_t g_keys[2] = {d->n_k, kvheads};
    if (st == PS_OK)
        st = ps_launch(ctx, s->sum, "sketch_sum", 2, g_keys, NULL);
    return st;
}

ps_status ps_sketch_keys(ps_plan *plan, cl_mem q, cl_mem k, cl_mem mass)
{
    if (ps_plan_enter(plan, "ps_sketch_keys") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    ps_context *ctx = plan->ctx;
    const ps_attention_desc *d = &plan->desc;
    ps_status st = PS_OK;
    if (plan->path == PS_PATH_VARLEN)
        st = ps_fail(ctx, PS_ERR_UNSUPPORTED,
                     "ps_sketch_keys: not on a variable-length batch (cu_seqlens)");
    else if (!plan->sketch)
        st = ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                     "ps_sketch_keys: the plan has no query sketch (sketch_queries is 0)");
    const size_t mass_bytes = d->batch * d->kv_heads * d->n_k * sizeof(float);
    if (st == PS_OK)
        st = ps_check_buffer(ctx, q, ps_layout_bytes(d, PS_TENSOR_Q), "ps_sketch_keys: q");
    if (st == PS_OK)
        st = ps_check_buffer(ctx, k, ps_layout_bytes(d, PS_TENSOR_K), "ps_sketch_keys: k");
    if (st == PS_OK)
        st = ps_check_buffer(ctx, mass, mass_bytes, "ps_sketch_keys: mass");
    if (st == PS_OK) {
        const ps_buffer_use in[2] = {ps_tensor_use(d, PS_TENSOR_Q, q),
                                     ps_tensor_use(d, PS_TENSOR_K, k)};
        const ps_buffer_use out = {"mass", mass, mass_bytes, 0};
        st = ps_check_overlaps(ctx, "ps_sketch_keys", in, 2, &out, 1);
    }
    if (st == PS_OK) {
        const ps_tensor tq = ps_plan_tensor(plan, PS_TENSOR_Q, q),
                        tk = ps_plan_tensor(plan, PS_TENSOR_K, k);
        cl_mem written;
        st = ps_sketch_enqueue(plan, &tq, &tk, mass, &written);
    }
    if (st == PS_OK)
        st = ps_wait_enqueued(ctx, "waiting for ps_sketch_keys");
    return ps_plan_result(plan, st);
}
