/* The select stage on the device (cl/select.cl): workspace, launch geometry
 * and the enqueue of the radix select, the compaction and the gather.
 * Semantics and NaN policy: lib/select.h. */
#include "select.h"
#include "select_weighted.h"
#include "buffer_check.h"
#include "handles.h"
#include "core/host_alloc.h"
#include "kernel_fit.h"

#include <stdio.h>
#include <stdlib.h>

struct ps_select_state {
    ps_select_params p;
    int gpu;           /* GPU-shaped tile kernels */
    size_t group;      /* work-group size of the tile kernels (1 in the CPU shape) */
    size_t scan_group; /* work-group size of the per-head scan kernels */
    size_t lo, hi;     /* candidate range [lo, hi) of every head */
    size_t tile;       /* candidates per tile */
    size_t tiles;      /* tiles per head (>= 1) */
    cl_mem hist;       /* [heads][tiles][PS_SEL_BINS] uint */
    cl_mem state;      /* [heads][2] uint: {prefix / threshold, keys still needed} */
    cl_mem fpos, fkey; /* [heads][tiles][tile] uint: compacted candidates per tile */
    cl_mem flen;       /* [heads][tiles] uint: their number */
    cl_mem tilecnt;    /* [heads][tiles][2] uint: {> T, == T} */
    cl_mem tileinfo;   /* [heads][tiles][2] uint: {first slot, ties to keep} */
    cl_kernel k_hist, k_scan, k_filter, k_count, k_offsets, k_write, k_gather;
};

/* Largest work-group size (power of two, <= cap) that every kernel accepts
 * (lib/kernel_fit.c). */
static ps_status kernel_group(ps_context *ctx, const cl_kernel *kernels, size_t count,
                              size_t cap, size_t *group)
{
    *group = cap;
    for (size_t i = 0; i < count; i++) {
        const ps_status st = ps_kernel_fit(ctx, kernels[i], "select kernels", *group, 0, group);
        if (st != PS_OK)
            return st;
    }
    return PS_OK;
}

ps_status ps_select_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    ps_status st = PS_OK;
    ps_select_state *s = ps_calloc(1, sizeof *s);
    if (!s)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_select_setup: no host memory");
    plan->select = s;
    ps_select_params_from_desc(&plan->desc, &s->p);
    s->gpu = ctx->tuning.shape == PS_SHAPE_GPU;
    s->lo = s->p.sink;
    s->hi = s->p.window_start > s->lo ? s->p.window_start : s->lo;

    st = ps_kernel_create_shaped(ctx, PS_PROGRAM_SELECT, "select_hist", &s->k_hist);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_kernel_create_shaped(ctx, PS_PROGRAM_SELECT, "select_filter", &s->k_filter);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_kernel_create_shaped(ctx, PS_PROGRAM_SELECT, "select_count", &s->k_count);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_kernel_create_shaped(ctx, PS_PROGRAM_SELECT, "select_write", &s->k_write);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "select_radix_scan", &s->k_scan);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "select_offsets", &s->k_offsets);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "select_gather", &s->k_gather);
    PS_GOTO_IF(st != PS_OK, st);

    /* Launch geometry from the kernels' own limits (lib/kernel_fit.c). */
    const size_t n_cand = s->hi - s->lo;
    if (s->gpu) {
        const cl_kernel tile_kernels[4] = {s->k_hist, s->k_filter, s->k_count, s->k_write};
        const cl_kernel scan_kernels[2] = {s->k_scan, s->k_offsets};
        st = kernel_group(ctx, tile_kernels, 4, ctx->tuning.select_group, &s->group);
        PS_GOTO_IF(st != PS_OK, st);
        st = kernel_group(ctx, scan_kernels, 2, ctx->tuning.select_group, &s->scan_group);
        PS_GOTO_IF(st != PS_OK, st);
        /* __local arguments: the filter's and the writer's 2 * group counters. */
        const uint64_t counters = 2 * s->group * sizeof(cl_uint);
        char name[PS_KERNEL_NAME_MAX];
        st = ps_kernel_fit(ctx, s->k_filter,
                           ps_kernel_shaped_name(ctx, "select_filter", name, sizeof name), 0,
                           counters, NULL);
        PS_GOTO_IF(st != PS_OK, st);
        st = ps_kernel_fit(ctx, s->k_write,
                           ps_kernel_shaped_name(ctx, "select_write", name, sizeof name), 0,
                           counters, NULL);
        PS_GOTO_IF(st != PS_OK, st);
        s->tile = s->group * ctx->tuning.select_gpu_items;
    } else {
        /* One item per tile; the per-head scans get a group all the same: one
         * item would loop PS_SEL_BINS * (tiles + 1) times, past llvmpipe's
         * loop budget (docs/DEVICES.md), and PoCL times it alike. */
        const cl_kernel scan_kernels[2] = {s->k_scan, s->k_offsets};
        s->group = 1;
        st = kernel_group(ctx, scan_kernels, 2, ctx->tuning.select_group, &s->scan_group);
        PS_GOTO_IF(st != PS_OK, st);
        s->tile = ctx->tuning.select_cpu_tile;
    }
    /* The scan's __local argument: the histogram bins. */
    st = ps_kernel_fit(ctx, s->k_scan, "select_radix_scan", 0,
                       PS_SEL_BINS * sizeof(cl_uint), NULL);
    PS_GOTO_IF(st != PS_OK, st);
    /* At most tuning.select_max_tiles tiles per head (GPU: multiples of the
     * group); the kernels take any tile length. */
    const size_t max_tiles = ctx->tuning.select_max_tiles;
    const size_t min_tile = (n_cand + max_tiles - 1) / max_tiles;
    if (s->tile < min_tile)
        s->tile = (min_tile + s->group - 1) / s->group * s->group;
    if (s->tile > n_cand) /* one short tile: keep the workspace small */
        s->tile = n_cand ? n_cand : 1;
    s->tiles = n_cand ? (n_cand + s->tile - 1) / s->tile : 1;

    const size_t heads = s->p.heads;
    st = ps_buffer_create(ctx, heads * s->tiles * PS_SEL_BINS * sizeof(cl_uint), "select histograms", &s->hist);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_buffer_create(ctx, heads * 2 * sizeof(cl_uint), "select state", &s->state);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_buffer_create(ctx, heads * s->tiles * s->tile * sizeof(cl_uint), "select candidate positions", &s->fpos);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_buffer_create(ctx, heads * s->tiles * s->tile * sizeof(cl_uint), "select candidate keys", &s->fkey);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_buffer_create(ctx, heads * s->tiles * sizeof(cl_uint), "select candidate counts", &s->flen);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_buffer_create(ctx, heads * s->tiles * 2 * sizeof(cl_uint), "select tile counts", &s->tilecnt);
    PS_GOTO_IF(st != PS_OK, st);
    st = ps_buffer_create(ctx, heads * s->tiles * 2 * sizeof(cl_uint), "select tile offsets", &s->tileinfo);
    PS_GOTO_IF(st != PS_OK, st);
    return PS_OK;
cleanup:
    return st; /* ps_plan_create calls ps_select_release */
}

void ps_select_release(ps_plan *plan)
{
    ps_select_state *s = plan->select;
    if (!s)
        return;
    const cl_kernel kernels[7] = {s->k_hist,  s->k_scan,    s->k_filter, s->k_count,
                                  s->k_offsets, s->k_write, s->k_gather};
    for (size_t i = 0; i < 7; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    const cl_mem mems[7] = {s->hist, s->state,   s->fpos,    s->fkey,
                            s->flen, s->tilecnt, s->tileinfo};
    for (size_t i = 0; i < 7; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    free(s);
    plan->select = NULL;
}

size_t ps_plan_selected_capacity(const ps_plan *plan)
{
    if (ps_plan_check(plan, "ps_plan_selected_capacity") != PS_OK)
        return 0;
    ps_select_params p;
    ps_select_params_from_desc(&plan->desc, &p);
    return p.capacity;
}

/* The compaction of the candidates with key >= state[0] into the tiles'
 * regions of fpos/fkey. */
static ps_status enqueue_filter(ps_plan *plan, cl_mem scores, const size_t *global,
                                const size_t *local)
{
    ps_context *ctx = plan->ctx;
    ps_select_state *s = plan->select;
    const cl_int n = (cl_int)s->p.n, lo = (cl_int)s->lo, hi = (cl_int)s->hi,
                 tile = (cl_int)s->tile, tiles = (cl_int)s->tiles;
    ps_arg_setter f = {s->k_filter, 0, CL_SUCCESS};
    ps_arg(&f, sizeof scores, &scores);
    ps_arg(&f, sizeof s->fpos, &s->fpos);
    ps_arg(&f, sizeof s->fkey, &s->fkey);
    ps_arg(&f, sizeof s->flen, &s->flen);
    ps_arg(&f, sizeof s->state, &s->state);
    if (s->gpu)
        ps_arg(&f, 2 * s->group * sizeof(cl_uint), NULL);
    ps_arg(&f, sizeof n, &n);
    ps_arg(&f, sizeof lo, &lo);
    ps_arg(&f, sizeof hi, &hi);
    ps_arg(&f, sizeof tile, &tile);
    ps_arg(&f, sizeof tiles, &tiles);
    if (f.err != CL_SUCCESS)
        return ps_fail_cl(ctx, f.err, "clSetKernelArg (select_filter)");
    return ps_launch(ctx, s->k_filter, "select_filter", 2, global, local);
}

/* The radix passes: histogram and scan per digit, and after the first digit
 * the compaction of the candidates at or above its bin. */
static ps_status enqueue_radix(ps_plan *plan, cl_mem scores, size_t ranked, const size_t *tg,
                               const size_t *tl, const size_t *hg, const size_t *hl)
{
    ps_context *ctx = plan->ctx;
    ps_select_state *s = plan->select;
    const cl_int n = (cl_int)s->p.n, lo = (cl_int)s->lo, hi = (cl_int)s->hi,
                 tile = (cl_int)s->tile, tiles = (cl_int)s->tiles;
    const cl_uint extra = (cl_uint)ranked;
    ps_status st = PS_OK;
    for (cl_int pass = 0; pass < PS_SEL_PASSES; pass++) {
        ps_arg_setter a = {s->k_hist, 0, CL_SUCCESS};
        ps_arg(&a, sizeof scores, &scores);
        ps_arg(&a, sizeof s->fkey, &s->fkey);
        ps_arg(&a, sizeof s->flen, &s->flen);
        ps_arg(&a, sizeof s->hist, &s->hist);
        ps_arg(&a, sizeof s->state, &s->state);
        ps_arg(&a, sizeof n, &n);
        ps_arg(&a, sizeof lo, &lo);
        ps_arg(&a, sizeof hi, &hi);
        ps_arg(&a, sizeof tile, &tile);
        ps_arg(&a, sizeof tiles, &tiles);
        ps_arg(&a, sizeof pass, &pass);
        if (a.err != CL_SUCCESS)
            return ps_fail_cl(ctx, a.err, "clSetKernelArg (select_hist)");
        st = ps_launch(ctx, s->k_hist, "select_hist", 2, tg, tl);
        if (st != PS_OK)
            return st;

        ps_arg_setter b = {s->k_scan, 0, CL_SUCCESS};
        ps_arg(&b, sizeof s->hist, &s->hist);
        ps_arg(&b, sizeof s->state, &s->state);
        ps_arg(&b, PS_SEL_BINS * sizeof(cl_uint), NULL);
        ps_arg(&b, sizeof tiles, &tiles);
        ps_arg(&b, sizeof pass, &pass);
        ps_arg(&b, sizeof extra, &extra);
        if (b.err != CL_SUCCESS)
            return ps_fail_cl(ctx, b.err, "clSetKernelArg (select_radix_scan)");
        st = ps_launch(ctx, s->k_scan, "select_radix_scan", 2, hg, hl);
        if (st != PS_OK)
            return st;
        /* After the first digit: compact the candidates at or above its bin. */
        if (pass == 0 && (st = enqueue_filter(plan, scores, tg, tl)) != PS_OK)
            return st;
    }
    return PS_OK;
}

/* The select for parameters p: the plan's, or fewer ranked keys (p->extra,
 * p->capacity smaller; the workspace does not depend on them). */
static ps_status select_enqueue_params(ps_plan *plan, const ps_select_params *p, cl_mem scores,
                                       cl_mem indices, cl_mem counts)
{
    ps_context *ctx = plan->ctx;
    ps_select_state *s = plan->select;
    const cl_int n = (cl_int)p->n, lo = (cl_int)s->lo, hi = (cl_int)s->hi,
                 tile = (cl_int)s->tile, tiles = (cl_int)s->tiles,
                 capacity = (cl_int)p->capacity;
    const size_t n_cand = s->hi - s->lo;
    /* Tile kernels: one item (CPU) or one group (GPU) per tile; per-head
     * kernels: one group per head. */
    const size_t tg[2] = {s->tiles * s->group, p->heads}, tl[2] = {s->group, 1};
    const size_t hg[2] = {s->scan_group, p->heads}, hl[2] = {s->scan_group, 1};
    ps_status st = PS_OK;

    if (p->extra == 0 || p->extra == n_cand) {
        /* Nothing to rank: no candidate kept (T above every key), or all of
         * them (T = 0, the lowest key, with unlimited ties). */
        const cl_uint pattern[2] = {p->extra == 0 ? 0xffffffffu : 0u,
                                    p->extra == 0 ? 0u : (cl_uint)n_cand};
        cl_int err = clEnqueueFillBuffer(ctx->queue, s->state, pattern, sizeof pattern, 0,
                                         p->heads * sizeof pattern, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return ps_fail_cl(ctx, err, "clEnqueueFillBuffer (select state)");
        st = enqueue_filter(plan, scores, tg, tl);
        if (st != PS_OK)
            return st;
    } else {
        st = enqueue_radix(plan, scores, p->extra, tg, tl, hg, hl);
        if (st != PS_OK)
            return st;
    }

    ps_arg_setter c = {s->k_count, 0, CL_SUCCESS};
    ps_arg(&c, sizeof s->fkey, &s->fkey);
    ps_arg(&c, sizeof s->flen, &s->flen);
    ps_arg(&c, sizeof s->tilecnt, &s->tilecnt);
    ps_arg(&c, sizeof s->state, &s->state);
    ps_arg(&c, sizeof tile, &tile);
    ps_arg(&c, sizeof tiles, &tiles);
    if (c.err != CL_SUCCESS)
        return ps_fail_cl(ctx, c.err, "clSetKernelArg (select_count)");
    st = ps_launch(ctx, s->k_count, "select_count", 2, tg, tl);
    if (st != PS_OK)
        return st;

    ps_arg_setter o = {s->k_offsets, 0, CL_SUCCESS};
    ps_arg(&o, sizeof s->tilecnt, &s->tilecnt);
    ps_arg(&o, sizeof s->state, &s->state);
    ps_arg(&o, sizeof s->tileinfo, &s->tileinfo);
    ps_arg(&o, sizeof indices, &indices);
    ps_arg(&o, sizeof counts, &counts);
    ps_arg(&o, sizeof n, &n);
    ps_arg(&o, sizeof lo, &lo);
    ps_arg(&o, sizeof hi, &hi);
    ps_arg(&o, sizeof capacity, &capacity);
    ps_arg(&o, sizeof tiles, &tiles);
    if (o.err != CL_SUCCESS)
        return ps_fail_cl(ctx, o.err, "clSetKernelArg (select_offsets)");
    st = ps_launch(ctx, s->k_offsets, "select_offsets", 2, hg, hl);
    if (st != PS_OK)
        return st;

    ps_arg_setter w = {s->k_write, 0, CL_SUCCESS};
    ps_arg(&w, sizeof s->fpos, &s->fpos);
    ps_arg(&w, sizeof s->fkey, &s->fkey);
    ps_arg(&w, sizeof s->flen, &s->flen);
    ps_arg(&w, sizeof s->tileinfo, &s->tileinfo);
    ps_arg(&w, sizeof s->state, &s->state);
    ps_arg(&w, sizeof indices, &indices);
    if (s->gpu)
        ps_arg(&w, 2 * s->group * sizeof(cl_uint), NULL);
    ps_arg(&w, sizeof tile, &tile);
    ps_arg(&w, sizeof tiles, &tiles);
    ps_arg(&w, sizeof capacity, &capacity);
    if (w.err != CL_SUCCESS)
        return ps_fail_cl(ctx, w.err, "clSetKernelArg (select_write)");
    return ps_launch(ctx, s->k_write, "select_write", 2, tg, tl);
}

ps_status ps_select_enqueue(ps_plan *plan, cl_mem scores, cl_mem indices, cl_mem counts)
{
    return select_enqueue_params(plan, &plan->select->p, scores, indices, counts);
}

ps_status ps_select_enqueue_top(ps_plan *plan, cl_mem scores, size_t ranked, cl_mem indices,
                                cl_mem counts)
{
    ps_select_params p = plan->select->p;
    if (ranked < p.extra) {
        p.extra = ranked;
        p.capacity = p.forced + ranked;
    }
    return select_enqueue_params(plan, &p, scores, indices, counts);
}

/* ps_select_keys and ps_select_keys_weighted: weights NULL or the kept keys'
 * log-weights ([heads][capacity]; zeros for a top-m plan). */
static ps_status select_keys_checked(ps_plan *plan, const char *who, cl_mem scores,
                                     cl_mem indices, cl_mem counts, cl_mem weights)
{
    ps_context *ctx = plan->ctx;
    ps_status st = PS_OK;
    if (plan->path == PS_PATH_VARLEN)
        return ps_fail(ctx, PS_ERR_UNSUPPORTED, "%s: not on a variable-length batch (cu_seqlens)",
                       who);
    if (plan->desc.method != PS_METHOD_PRESCORE || !plan->select)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "%s: the plan's method is not PS_METHOD_PRESCORE", who);
    const ps_select_params *p = &plan->select->p;
    const size_t slots = p->heads * p->capacity;
    const ps_buffer_use in = {"scores", scores, p->heads * p->n * sizeof(float), 0};
    const ps_buffer_use out[3] = {{"indices", indices, slots * sizeof(cl_uint), 0},
                                  {"counts", counts, p->heads * sizeof(cl_uint), 0},
                                  {"weights", weights, slots * sizeof(float), 0}};
    const size_t n_out = weights ? 3 : 2;
    char what[96];
    snprintf(what, sizeof what, "%s: scores", who);
    st = ps_check_buffer(ctx, scores, in.bytes, what);
    for (size_t i = 0; i < n_out && st == PS_OK; i++) {
        snprintf(what, sizeof what, "%s: %s", who, out[i].name);
        st = ps_check_buffer(ctx, out[i].mem, out[i].bytes, what);
    }
    if (st == PS_OK)
        st = ps_check_overlaps(ctx, who, &in, 1, out, n_out);
    if (st != PS_OK)
        return st;
    if (plan->weighted) {
        st = ps_select_weighted_enqueue(plan, scores, indices, counts, weights);
    } else {
        st = ps_select_enqueue(plan, scores, indices, counts);
        const cl_float zero = 0.0f;
        if (st == PS_OK && weights) {
            const cl_int err = clEnqueueFillBuffer(ctx->queue, weights, &zero, sizeof zero, 0,
                                                   slots * sizeof(float), 0, NULL, NULL);
            if (err != CL_SUCCESS)
                st = ps_fail_cl(ctx, err, "clEnqueueFillBuffer (ps_select_keys_weighted)");
        }
    }
    if (st != PS_OK)
        return st;
    snprintf(what, sizeof what, "waiting for %s", who);
    return ps_wait_enqueued(ctx, what);
}

ps_status ps_select_gather_enqueue(ps_plan *plan, const ps_tensor *k, const ps_tensor *v,
                                   cl_mem indices, cl_mem counts, cl_mem k_sel, cl_mem v_sel)
{
    ps_context *ctx = plan->ctx;
    ps_select_state *s = plan->select;
    const ps_attention_desc *d = &plan->desc;
    const ps_select_params *p = &s->p;

    /* d and d_v are multiples of PS_HEAD_DIM_MULTIPLE (16): whole vectors of 4. */
    const cl_int n = (cl_int)p->n, d4 = (cl_int)(d->d / 4), dv4 = (cl_int)(d->d_v / 4),
                 capacity = (cl_int)p->capacity;
    ps_arg_setter a = {s->k_gather, 0, CL_SUCCESS};
    ps_arg_tensor(&a, k);
    ps_arg_tensor(&a, v);
    ps_arg(&a, sizeof indices, &indices);
    ps_arg(&a, sizeof counts, &counts);
    ps_arg(&a, sizeof k_sel, &k_sel);
    ps_arg(&a, sizeof v_sel, &v_sel);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof d4, &d4);
    ps_arg(&a, sizeof dv4, &dv4);
    ps_arg(&a, sizeof capacity, &capacity);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (select_gather)");
    const size_t g[3] = {(size_t)(d4 > dv4 ? d4 : dv4), p->capacity, p->heads};
    return ps_launch(ctx, s->k_gather, "select_gather", 3, g, NULL);
}

ps_status ps_select_keys(ps_plan *plan, cl_mem scores, cl_mem indices, cl_mem counts)
{
    if (ps_plan_enter(plan, "ps_select_keys") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_plan_result(
        plan, select_keys_checked(plan, "ps_select_keys", scores, indices, counts, NULL));
}

ps_status ps_select_keys_weighted(ps_plan *plan, cl_mem scores, cl_mem indices, cl_mem counts,
                                  cl_mem log_weights)
{
    if (ps_plan_enter(plan, "ps_select_keys_weighted") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_plan_result(plan, select_keys_checked(plan, "ps_select_keys_weighted", scores,
                                                    indices, counts, log_weights));
}
