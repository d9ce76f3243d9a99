/* ps_plan: a validated descriptor bound to a context, with its kernels and all
 * device workspace created up front, so ps_attention neither allocates nor
 * builds. Kernel objects belong to the plan (not the context) because
 * clSetKernelArg state is not thread safe: two threads with their own plans
 * can share one context. */
#include "plan.h"

#include "causal.h"
#include "core/desc.h"
#include "exact.h"
#include "finite.h"
#include "handles.h"
#include "kv_cache.h"
#include "hyper.h"
#include "lsh.h"
#include "pipeline.h"
#include "stage_times.h"
#include "varlen.h"
#include "core/varlen.h"
#include "score.h"
#include "select.h"
#include "select_weighted.h"
#include "sketch.h"
#include "estimate.h"
#include "core/host_alloc.h"
#include "core/tensor_layout.h"

#include <stdlib.h>
#include <string.h>

/* Every tensor of the call must fit one cl_mem: refuse, naming the limit,
 * shapes no buffer of this device can hold (kernels index one buffer each). */
static ps_status check_tensor_sizes(ps_context *ctx, const ps_attention_desc *d)
{
    for (int id = PS_TENSOR_Q; id <= PS_TENSOR_O; id++) {
        const size_t bytes = ps_layout_bytes(d, (ps_tensor_id)id);
        if (bytes > ctx->info.max_mem_alloc_size)
            return ps_fail(ctx, PS_ERR_OUT_OF_DEVICE_MEMORY,
                           "ps_plan_create: %s takes %zu bytes, above the device's "
                           "CL_DEVICE_MAX_MEM_ALLOC_SIZE of %llu%s",
                           ps_tensor_name((ps_tensor_id)id), bytes,
                           (unsigned long long)ctx->info.max_mem_alloc_size,
                           ctx->tuning.limits_narrowed ? " (narrowed by PRESCORE_LIMITS)"
                                                       : "");
    }
    return PS_OK;
}

/* The path of every call of a resolved descriptor: the one place that
 * decides it. Short sequences: exact attention is both faster and exact. */
static ps_path path_of(const ps_attention_desc *d)
{
    if (ps_desc_is_varlen(d))
        return PS_PATH_VARLEN;
    if (d->method == PS_METHOD_EXACT || d->n_k < d->min_seq_len)
        return PS_PATH_EXACT;
    return d->causal ? PS_PATH_CAUSAL : PS_PATH_PIPELINE;
}

/* What a plan is created for (see plan.h). */
typedef enum plan_kind { PLAN_CALLS, PLAN_NODE, PLAN_SCORING, PLAN_KV_CACHE } plan_kind;

/* PLAN_NODE: an internal non-causal node of a causal plan (lib/causal.c),
 * which runs exact attention only for its global keys. */
static ps_status plan_create(ps_context *ctx, const ps_attention_desc *desc, ps_plan **out,
                             plan_kind kind)
{
    const int node = kind == PLAN_NODE;
    char msg[512];
    ps_plan *plan = NULL;
    ps_status st = PS_OK;

    if (out)
        *out = NULL;
    st = ps_context_check(ctx, "ps_plan_create");
    if (st != PS_OK)
        return st;
    if (!out)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "ps_plan_create: out is NULL");
    ps_clear_error(ctx);
    plan = ps_calloc(1, sizeof *plan);
    if (!plan)
        return ps_fail(ctx, PS_ERR_OUT_OF_HOST_MEMORY, "ps_plan_create: no host memory");
    st = ps_handles_add_plan(plan, ctx);
    if (st != PS_OK) {
        free(plan);
        return st == PS_ERR_OUT_OF_HOST_MEMORY
                   ? ps_fail(ctx, st, "ps_plan_create: no host memory")
                   : ps_context_check(ctx, "ps_plan_create"); /* destroyed meanwhile */
    }
    plan->ctx = ctx;
    plan->last_time_ms = -1.0;
    /* Everything created from here on is the plan's (a causal node's bytes
     * are added to its parent's when it is done). */
    size_t *outer_count = ps_buffer_bytes_count_into(&plan->device_bytes);
    ps_attention_desc top;
    if (desc && (kind == PLAN_KV_CACHE || kind == PLAN_SCORING)) {
        top = *desc;
        ps_desc_auto_selection_top(&top);
        desc = &top;
    }
    /* Prepared keys have no queries: an automatic sketch steps aside there. */
    plan->sketch_optional = desc && desc->sketch_queries == PS_SKETCH_AUTO;
    st = ps_attention_desc_resolve(desc, &plan->desc, msg, sizeof msg);
    PS_GOTO_IF(st != PS_OK, ps_fail(ctx, st, "ps_plan_create: %s", msg));
    st = check_tensor_sizes(ctx, &plan->desc);
    PS_GOTO_IF(st != PS_OK, st);
    plan->path = path_of(&plan->desc);
    if (kind == PLAN_KV_CACHE) { /* holds its own kernels and buffers */
        plan->path = PS_PATH_EXACT;
        st = ps_kv_setup(plan, desc);
        PS_GOTO_IF(st != PS_OK, st);
        goto done;
    }
    if (kind == PLAN_SCORING) { /* steps 1 and 2 only */
        st = ps_score_setup(plan);
        if (st == PS_OK)
            st = ps_select_setup(plan);
        PS_GOTO_IF(st != PS_OK, st);
        goto done;
    }
    if (plan->path == PS_PATH_VARLEN) { /* the sequences' plans hold the stages */
        st = ps_finite_setup(plan);
        if (st == PS_OK)
            st = ps_varlen_setup(plan, desc);
        PS_GOTO_IF(st != PS_OK, st);
        goto done;
    }
    /* Exact attention is every method's short-sequence path (and the global
     * keys' pass); a node without global keys never runs it. */
    if (!node || plan->desc.global_keys > 0) {
        st = ps_exact_setup(plan);
        PS_GOTO_IF(st != PS_OK, st);
    }
    st = ps_finite_setup(plan);
    PS_GOTO_IF(st != PS_OK, st);
    /* The stages of the plan's method, whatever its path: the stage calls
     * (ps_score_keys, ps_select_keys; the stage suites' ps_lsh_enqueue and
     * ps_hyper_enqueue) take plans of any size. A causal plan's nodes hold
     * their own LSH and hyper stages. */
    if (plan->desc.method == PS_METHOD_PRESCORE) {
        st = ps_score_setup(plan);
        PS_GOTO_IF(st != PS_OK, st);
        st = ps_select_setup(plan);
        PS_GOTO_IF(st != PS_OK, st);
        if (ps_selection_weighted(plan->desc.selection)) {
            st = ps_select_weighted_setup(plan);
            PS_GOTO_IF(st != PS_OK, st);
        }
        if (plan->desc.sketch_queries > 0) {
            st = ps_sketch_setup(plan);
            PS_GOTO_IF(st != PS_OK, st);
        }
    }
    if (plan->desc.method != PS_METHOD_EXACT && !plan->desc.causal) {
        st = ps_lsh_setup(plan);
        PS_GOTO_IF(st != PS_OK, st);
        st = ps_hyper_setup(plan);
        PS_GOTO_IF(st != PS_OK, st);
    }
    /* The workspace of the path. */
    if (plan->path == PS_PATH_PIPELINE)
        st = ps_pipeline_setup(plan);
    else if (plan->path == PS_PATH_CAUSAL)
        st = ps_causal_setup(plan);
    PS_GOTO_IF(st != PS_OK, st);
    if (plan->desc.error_probes > 0) {
        st = ps_estimate_setup(plan);
        PS_GOTO_IF(st != PS_OK, st);
    }
done:
    ps_buffer_bytes_count_into(outer_count);
    if (outer_count)
        *outer_count += plan->device_bytes;
    *out = plan;
    return PS_OK;
cleanup:
    ps_buffer_bytes_count_into(outer_count);
    ps_plan_destroy(plan);
    return st;
}

ps_status ps_plan_create(ps_context *ctx, const ps_attention_desc *desc, ps_plan **out)
{
    return plan_create(ctx, desc, out, PLAN_CALLS);
}

ps_status ps_plan_create_node(ps_context *ctx, const ps_attention_desc *desc, ps_plan **out)
{
    return plan_create(ctx, desc, out, PLAN_NODE);
}

ps_status ps_plan_create_scoring(ps_context *ctx, const ps_attention_desc *desc, ps_plan **out)
{
    return plan_create(ctx, desc, out, PLAN_SCORING);
}

ps_status ps_kv_cache_create(ps_context *ctx, const ps_attention_desc *desc, ps_kv_cache **out)
{
    ps_plan *plan = NULL;
    if (out)
        *out = NULL;
    if (!desc && ps_context_check(ctx, "ps_kv_cache_create") == PS_OK)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "ps_kv_cache_create: desc is NULL");
    const ps_status st = plan_create(ctx, desc, out ? &plan : NULL, PLAN_KV_CACHE);
    if (st == PS_OK)
        *out = (ps_kv_cache *)plan;
    return st;
}

ps_status ps_plan_destroy(ps_plan *plan)
{
    if (!plan)
        return PS_OK;
    if (!ps_handles_remove_plan(plan))
        return ps_plan_check(plan, "ps_plan_destroy");
    ps_marks_reset(plan);
    if (plan->prepared_k)
        clReleaseMemObject(plan->prepared_k);
    if (plan->prepared_v)
        clReleaseMemObject(plan->prepared_v);
    ps_kv_release(plan);
    ps_varlen_release(plan);
    ps_causal_release(plan);
    ps_pipeline_release(plan);
    ps_hyper_release(plan);
    ps_lsh_release(plan);
    ps_estimate_release(plan);
    ps_sketch_release(plan);
    ps_select_weighted_release(plan);
    ps_select_release(plan);
    ps_score_release(plan);
    ps_finite_release(plan);
    ps_exact_release(plan);
    free(plan);
    return PS_OK;
}

ps_tensor ps_plan_tensor(const ps_plan *plan, int id, cl_mem mem)
{
    return ps_tensor_make(mem, ps_layout_view(&plan->desc, (ps_tensor_id)id));
}

ps_tensor ps_dense_tensor(cl_mem mem, size_t rows_per_head, size_t dim, int half)
{
    return ps_tensor_make(mem, ps_view_dense(rows_per_head, dim, half));
}

ps_method ps_plan_path(const ps_plan *plan)
{
    if (ps_plan_check(plan, "ps_plan_path") != PS_OK)
        return PS_METHOD_EXACT;
    return plan->path == PS_PATH_EXACT ? PS_METHOD_EXACT : plan->desc.method;
}

size_t ps_plan_device_bytes(const ps_plan *plan)
{
    if (ps_plan_check(plan, "ps_plan_device_bytes") != PS_OK)
        return 0;
    return plan->device_bytes;
}

ps_status ps_plan_desc(const ps_plan *plan, ps_attention_desc *desc)
{
    const ps_status st = ps_plan_check(plan, "ps_plan_desc");
    if (st != PS_OK || !desc)
        return PS_ERR_INVALID_ARGUMENT;
    *desc = plan->desc;
    return PS_OK;
}

double ps_plan_last_time_ms(const ps_plan *plan)
{
    if (ps_plan_check(plan, "ps_plan_last_time_ms") != PS_OK)
        return -1.0;
    ps_times_collect((ps_plan *)plan); /* plans are used by one thread at a time */
    return plan->last_time_ms;
}
