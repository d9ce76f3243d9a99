/* The weighted selection on the device (cl/select.cl wsel_*, lib/select.c's
 * radix select, run twice); see select_weighted.h. */
#include "select_weighted.h"

#include "score.h"
#include "select.h"
#include "core/host_alloc.h"
#include "core/select_params.h"

#include <stdlib.h>

struct ps_weighted_state {
    ps_select_params p;
    size_t heavy;       /* heavy keys per head: ps_select_heavy_count */
    cl_kernel priority, weights;
    cl_mem hsel, hcount; /* [heads][forced + heavy], [heads]: the heavy keys' select */
    cl_mem prio;         /* [heads][n] draw priorities */
    cl_mem own_weights;  /* [heads][capacity]: where weights go when the caller wants none */
    /* Selection STRATIFIED (cl/select.cl ssel_*): clusters, tiles of
     * PS_STRATA_TILE positions, and the draw shared out over the clusters. */
    size_t clusters, tile, tiles;
    cl_kernel s_count, s_scan, s_alloc, s_priority, s_weights;
    cl_mem tcount, toff;                /* [heads][tiles][clusters] uint */
    cl_mem pool, alloc, phase, cweight; /* [heads][clusters] uint, uint, uint, float */
    cl_mem sprio;                       /* [heads][n] float: what the select keeps */
};

/* The stratified draw's kernels and workspace. */
static ps_status strata_setup(ps_plan *plan, ps_weighted_state *w)
{
    ps_context *ctx = plan->ctx;
    ps_status st = PS_OK;
    const size_t heads = w->p.heads;
    w->clusters = plan->desc.clusters ? plan->desc.clusters : 1;
    /* Tiles of at least PS_STRATA_TILE positions, at most 32768 of them: the
     * scan walks the tiles, a key its tile, both within llvmpipe's 65535
     * back-edges up to n = 2^30. */
    w->tile = (w->p.n + 32767) / 32768;
    w->tile = w->tile < PS_STRATA_TILE ? PS_STRATA_TILE : w->tile;
    w->tiles = w->p.n ? (w->p.n + w->tile - 1) / w->tile : 1;
    const size_t cells = heads * w->tiles * w->clusters, hc = heads * w->clusters;
    w->tcount = ps_workspace_buffer(ctx, cells * sizeof(cl_uint), "strata tile counts", &st);
    w->toff = ps_workspace_buffer(ctx, cells * sizeof(cl_uint), "strata tile offsets", &st);
    w->pool = ps_workspace_buffer(ctx, hc * sizeof(cl_uint), "strata pool sizes", &st);
    w->alloc = ps_workspace_buffer(ctx, hc * sizeof(cl_uint), "strata allocation", &st);
    w->phase = ps_workspace_buffer(ctx, hc * sizeof(cl_uint), "strata phases", &st);
    w->cweight = ps_workspace_buffer(ctx, hc * sizeof(float), "strata log-weights", &st);
    w->sprio = ps_workspace_buffer(ctx, heads * (w->p.n ? w->p.n : 1) * sizeof(float),
                                   "strata priorities", &st);
    const char *names[5] = {"ssel_count", "ssel_scan", "ssel_alloc", "ssel_priority",
                            "ssel_weights"};
    cl_kernel *kernels[5] = {&w->s_count, &w->s_scan, &w->s_alloc, &w->s_priority,
                             &w->s_weights};
    for (int i = 0; i < 5 && st == PS_OK; i++)
        st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, names[i], kernels[i]);
    return st;
}

ps_status ps_select_weighted_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    ps_status st = PS_OK;
    ps_weighted_state *w = ps_calloc(1, sizeof *w);
    if (!w)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    plan->weighted = w;
    ps_select_params_from_desc(&plan->desc, &w->p);
    w->heavy = ps_select_heavy_count(&w->p, plan->desc.global_keys);
    const size_t heads = w->p.heads, hcap = w->p.forced + w->heavy;
    /* At least one element: a plan without heavy or forced keys still binds it. */
    w->hsel = ps_workspace_buffer(ctx, heads * (hcap ? hcap : 1) * sizeof(cl_uint),
                                  "weighted selection heavy keys", &st);
    w->hcount = ps_workspace_buffer(ctx, heads * sizeof(cl_uint),
                                    "weighted selection heavy counts", &st);
    w->prio = ps_workspace_buffer(ctx, heads * w->p.n * sizeof(float),
                                  "weighted selection priorities", &st);
    w->own_weights = ps_workspace_buffer(ctx, heads * w->p.capacity * sizeof(float),
                                         "weighted selection log-weights", &st);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "wsel_priority", &w->priority);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_SELECT, "wsel_weights", &w->weights);
    if (st == PS_OK && plan->desc.selection == PS_SELECTION_STRATIFIED)
        st = strata_setup(plan, w);
    return st; /* on failure ps_plan_create calls ps_select_weighted_release */
}

void ps_select_weighted_release(ps_plan *plan)
{
    ps_weighted_state *w = plan->weighted;
    if (!w)
        return;
    cl_kernel kernels[] = {w->priority, w->weights,    w->s_count, w->s_scan,
                           w->s_alloc,  w->s_priority, w->s_weights};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    cl_mem mems[] = {w->hsel, w->hcount, w->prio,  w->own_weights, w->tcount, w->toff,
                     w->pool, w->alloc,  w->phase, w->cweight,     w->sprio};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    free(w);
    plan->weighted = NULL;
}

/* The stratified draw after wsel_priority marked the heavy keys in w->prio:
 * counts, scan, allocation, the drawn keys' priorities, the radix select
 * on them, the weights (cl/select.cl ssel_*). */
static ps_status strata_enqueue(ps_plan *plan, ps_weighted_state *w, cl_mem indices,
                                cl_mem counts, cl_mem weights)
{
    ps_context *ctx = plan->ctx;
    const ps_select_params *p = &w->p;
    cl_mem assign = ps_score_assignments(plan);
    if (!assign)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "selection STRATIFIED draws per k-means cluster: score the keys first "
                       "(ps_score_keys) on this plan");
    const cl_int n = (cl_int)p->n, lo = (cl_int)p->sink, hi = (cl_int)p->window_start,
                 clusters = (cl_int)w->clusters, tiles = (cl_int)w->tiles,
                 tile = (cl_int)w->tile,
                 capacity = (cl_int)p->capacity;
    const cl_uint drawn = (cl_uint)(p->extra - w->heavy), seed_lo = (cl_uint)plan->desc.seed,
                  seed_hi = (cl_uint)(plan->desc.seed >> 32);
    const size_t g_keys[2] = {p->n, p->heads}, g_clusters[2] = {w->clusters, p->heads},
                 g_slots[2] = {p->capacity, p->heads};
    const cl_uint zero = 0;
    cl_int err = clEnqueueFillBuffer(ctx->queue, w->tcount, &zero, sizeof zero, 0,
                                     p->heads * w->tiles * w->clusters * sizeof(cl_uint), 0,
                                     NULL, NULL);
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clEnqueueFillBuffer (strata tile counts)");

    ps_arg_setter a = {w->s_count, 0, CL_SUCCESS};
    ps_arg(&a, sizeof w->prio, &w->prio);
    ps_arg(&a, sizeof assign, &assign);
    ps_arg(&a, sizeof w->tcount, &w->tcount);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof lo, &lo);
    ps_arg(&a, sizeof hi, &hi);
    ps_arg(&a, sizeof clusters, &clusters);
    ps_arg(&a, sizeof tiles, &tiles);
    ps_arg(&a, sizeof tile, &tile);
    ps_status st = ps_args_done(ctx, &a, "ssel_count");
    if (st == PS_OK)
        st = ps_launch(ctx, w->s_count, "ssel_count", 2, g_keys, NULL);

    a = (ps_arg_setter){w->s_scan, 0, CL_SUCCESS};
    ps_arg(&a, sizeof w->tcount, &w->tcount);
    ps_arg(&a, sizeof w->toff, &w->toff);
    ps_arg(&a, sizeof w->pool, &w->pool);
    ps_arg(&a, sizeof tiles, &tiles);
    ps_arg(&a, sizeof clusters, &clusters);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "ssel_scan");
    if (st == PS_OK)
        st = ps_launch(ctx, w->s_scan, "ssel_scan", 2, g_clusters, NULL);

    a = (ps_arg_setter){w->s_alloc, 0, CL_SUCCESS};
    ps_arg(&a, sizeof w->pool, &w->pool);
    ps_arg(&a, sizeof w->alloc, &w->alloc);
    ps_arg(&a, sizeof w->phase, &w->phase);
    ps_arg(&a, sizeof w->cweight, &w->cweight);
    ps_arg(&a, sizeof clusters, &clusters);
    ps_arg(&a, sizeof drawn, &drawn);
    ps_arg(&a, sizeof seed_lo, &seed_lo);
    ps_arg(&a, sizeof seed_hi, &seed_hi);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "ssel_alloc");
    if (st == PS_OK)
        st = ps_launch(ctx, w->s_alloc, "ssel_alloc", 2, g_clusters, NULL);

    a = (ps_arg_setter){w->s_priority, 0, CL_SUCCESS};
    ps_arg(&a, sizeof w->prio, &w->prio);
    ps_arg(&a, sizeof assign, &assign);
    ps_arg(&a, sizeof w->toff, &w->toff);
    ps_arg(&a, sizeof w->pool, &w->pool);
    ps_arg(&a, sizeof w->alloc, &w->alloc);
    ps_arg(&a, sizeof w->phase, &w->phase);
    ps_arg(&a, sizeof w->sprio, &w->sprio);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof lo, &lo);
    ps_arg(&a, sizeof hi, &hi);
    ps_arg(&a, sizeof clusters, &clusters);
    ps_arg(&a, sizeof tiles, &tiles);
    ps_arg(&a, sizeof tile, &tile);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "ssel_priority");
    if (st == PS_OK)
        st = ps_launch(ctx, w->s_priority, "ssel_priority", 2, g_keys, NULL);
    if (st == PS_OK)
        st = ps_select_enqueue(plan, w->sprio, indices, counts);

    a = (ps_arg_setter){w->s_weights, 0, CL_SUCCESS};
    ps_arg(&a, sizeof indices, &indices);
    ps_arg(&a, sizeof counts, &counts);
    ps_arg(&a, sizeof w->sprio, &w->sprio);
    ps_arg(&a, sizeof assign, &assign);
    ps_arg(&a, sizeof w->cweight, &w->cweight);
    ps_arg(&a, sizeof weights, &weights);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof capacity, &capacity);
    ps_arg(&a, sizeof clusters, &clusters);
    if (st == PS_OK)
        st = ps_args_done(ctx, &a, "ssel_weights");
    if (st == PS_OK)
        st = ps_launch(ctx, w->s_weights, "ssel_weights", 2, g_slots, NULL);
    return st;
}

ps_status ps_select_weighted_enqueue(ps_plan *plan, cl_mem rank, cl_mem indices,
                                     cl_mem counts, cl_mem weights)
{
    ps_context *ctx = plan->ctx;
    ps_weighted_state *w = plan->weighted;
    const ps_select_params *p = &w->p;
    const cl_int n = (cl_int)p->n, lo = (cl_int)p->sink, hi = (cl_int)p->window_start,
                 hcap = (cl_int)(p->forced + w->heavy), capacity = (cl_int)p->capacity;
    const cl_uint seed_lo = (cl_uint)plan->desc.seed, seed_hi = (cl_uint)(plan->desc.seed >> 32);
    const cl_float drawn_log_weight = (cl_float)ps_select_drawn_log_weight(p, w->heavy);
    ps_status st = PS_OK;

    if (!weights)
        weights = w->own_weights;
    /* The heavy keys: the radix select for `heavy` ranked keys (forced ones
     * listed too), so no work-item walks all keys. */
    st = ps_select_enqueue_top(plan, rank, w->heavy, w->hsel, w->hcount);
    if (st != PS_OK)
        return st;
    ps_arg_setter a = {w->priority, 0, CL_SUCCESS};
    ps_arg(&a, sizeof w->hsel, &w->hsel);
    ps_arg(&a, sizeof w->prio, &w->prio);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof lo, &lo);
    ps_arg(&a, sizeof hi, &hi);
    ps_arg(&a, sizeof hcap, &hcap);
    ps_arg(&a, sizeof seed_lo, &seed_lo);
    ps_arg(&a, sizeof seed_hi, &seed_hi);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (wsel_priority)");
    const size_t g_keys[2] = {p->n, p->heads};
    st = ps_launch(ctx, w->priority, "wsel_priority", 2, g_keys, NULL);
    if (st == PS_OK && w->sprio)
        return strata_enqueue(plan, w, indices, counts, weights);
    if (st == PS_OK)
        st = ps_select_enqueue(plan, w->prio, indices, counts);
    if (st != PS_OK)
        return st;
    a = (ps_arg_setter){w->weights, 0, CL_SUCCESS};
    ps_arg(&a, sizeof indices, &indices);
    ps_arg(&a, sizeof counts, &counts);
    ps_arg(&a, sizeof w->prio, &w->prio);
    ps_arg(&a, sizeof weights, &weights);
    ps_arg(&a, sizeof n, &n);
    ps_arg(&a, sizeof capacity, &capacity);
    ps_arg(&a, sizeof lo, &lo);
    ps_arg(&a, sizeof hi, &hi);
    ps_arg(&a, sizeof drawn_log_weight, &drawn_log_weight);
    if (a.err != CL_SUCCESS)
        return ps_fail_cl(ctx, a.err, "clSetKernelArg (wsel_weights)");
    const size_t g_slots[2] = {p->capacity, p->heads};
    return ps_launch(ctx, w->weights, "wsel_weights", 2, g_slots, NULL);
}
