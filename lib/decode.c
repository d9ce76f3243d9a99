/* Split-K decode against a key cache (cl/decode.cl decode_partial_*,
 * decode_merge): launch geometry, the split of the keys, partial buffers. */
#include "kv_cache.h"

#include "attention_params.h" /* cl/: ps_decode_params, shared with the kernels */
#include "tiles.h"            /* cl/: PS_KTILE_CPU, PS_DEC_* */
#include "kernel_fit.h"
#include "core/size_math.h"

/* Partials per query row the buffers hold: enough for 4 work-groups per
 * compute unit when a single KV head's row block is all the parallelism,
 * at least 16, at most 512 (the merge reads every one). */
static size_t max_splits_of(const ps_context *ctx)
{
    const size_t want = 4 * (size_t)ctx->info.compute_units;
    return want < 16 ? 16 : (want > 512 ? 512 : want);
}

/* Keys one launch of the partial kernel may walk within the loop budget
 * (Mesa llvmpipe cuts longer loops short, docs/DEVICES.md): back-edges per
 * key as counted from cl/decode.cl, half the budget as lib/exact.c does; 0:
 * no limit. */
static size_t split_keys_cap(const ps_plan *plan)
{
    const ps_context *ctx = plan->ctx;
    const ps_kv_state *s = plan->kv;
    const unsigned budget = ctx->tuning.loop_budget;
    if (!budget)
        return 0;
    const double d = (double)plan->desc.d, dv = (double)plan->desc.d_v;
    const double per_key = ctx->tuning.shape == PS_SHAPE_CPU
                               ? (d + dv) / 16.0 + 4.0
                               : d / (4.0 * (double)s->partial_group) + 3.0 + PS_DEC_OUT;
    const double keys = ((double)budget - 4.0 * PS_MAX_HEAD_DIM) / (2.0 * per_key);
    const size_t tile = ctx->tuning.shape == PS_SHAPE_CPU ? PS_KTILE_CPU : s->partial_group;
    const size_t k = keys > 0 ? (size_t)keys / tile * tile : 0;
    return k < tile ? tile : k;
}

ps_status ps_decode_setup(ps_plan *plan)
{
    ps_context *ctx = plan->ctx;
    ps_kv_state *s = plan->kv;
    const ps_attention_desc *d = &plan->desc;
    char name[PS_KERNEL_NAME_MAX];
    ps_status st = ps_kernel_create_shaped(ctx, PS_PROGRAM_DECODE, "decode_partial",
                                           &s->partial[0]);
    if (st == PS_OK)
        st = ps_kernel_create(ctx, PS_PROGRAM_DECODE, "decode_merge", &s->merge);
    if (st != PS_OK)
        return st;
    s->max_rows = d->heads / d->kv_heads * d->n_q;
    if (ctx->tuning.shape == PS_SHAPE_CPU) {
        static const char *const variants[3] = {"decode_partial_r1_cpu", "decode_partial_r2_cpu",
                                                "decode_partial_r4_cpu"};
        const size_t qb = ctx->tuning.cpu_query_block;
        s->partial_group = 1;
        s->partial_rows[0] = qb;
        for (int i = 0; i < 3 && st == PS_OK; i++) {
            s->partial_rows[i + 1] = (size_t)1 << i < qb ? (size_t)1 << i : qb;
            st = ps_kernel_create(ctx, PS_PROGRAM_DECODE, variants[i], &s->partial[i + 1]);
        }
        if (st != PS_OK)
            return st;
    } else {
        st = ps_kernel_fit(ctx, s->partial[0],
                           ps_kernel_shaped_name(ctx, "decode_partial", name, sizeof name),
                           ctx->tuning.group_cap < PS_DEC_TILE ? ctx->tuning.group_cap : PS_DEC_TILE,
                           0, &s->partial_group);
        if (st != PS_OK)
            return st;
        /* Every work-item accumulates at most PS_DEC_OUT of the block's outputs. */
        size_t rb = s->partial_group * PS_DEC_OUT / d->d_v;
        s->partial_rows[0] = rb < 1 ? 1 : (rb > PS_DEC_ROWS ? PS_DEC_ROWS : rb);
        if (s->partial_group * PS_DEC_OUT < d->d_v)
            return ps_fail(ctx, PS_ERR_UNSUPPORTED,
                           "ps_kv_cache_create: d_v = %zu needs work-groups of %zu "
                           "work-items for decode_partial_gpu; the device allows %zu",
                           d->d_v, ps_div_up(d->d_v, PS_DEC_OUT), s->partial_group);
    }
    s->max_splits = max_splits_of(ctx);
    const size_t cap = split_keys_cap(plan);
    if (cap && ps_div_up(d->n_k, cap) > s->max_splits) /* a long cache under a loop budget */
        s->max_splits = ps_div_up(d->n_k, cap);
    const size_t partials = d->batch * d->kv_heads * s->max_rows * s->max_splits;
    s->part_o = ps_workspace_buffer(ctx, partials * d->d_v * sizeof(float),
                                    "decode partial outputs", &st);
    s->part_ml = ps_workspace_buffer(ctx, partials * 2 * sizeof(float),
                                     "decode partial maxima and sums", &st);
    return st;
}

/* The split of `total` virtual keys: enough ranges that the work-groups
 * cover the device (but ranges of at least 256 keys, so the partials stay
 * few), within the loop budget and the partial buffers. */
static void choose_split(const ps_plan *plan, size_t total, size_t parallel,
                         ps_decode_params *p)
{
    const ps_context *ctx = plan->ctx;
    const ps_kv_state *s = plan->kv;
    const size_t tile = ctx->tuning.shape == PS_SHAPE_CPU ? PS_KTILE_CPU : s->partial_group;
    const size_t want_groups = 4 * (size_t)ctx->info.compute_units;
    const size_t want_splits = parallel >= want_groups ? 1 : ps_div_up(want_groups, parallel);
    size_t keys = ps_round_up(ps_div_up(total, want_splits), tile);
    const size_t floor_keys = ps_round_up(total < 256 ? total : 256, tile);
    if (keys < floor_keys)
        keys = floor_keys;
    const size_t cap = split_keys_cap(plan);
    if (cap && keys > cap)
        keys = cap;
    if (ps_div_up(total, keys) > s->max_splits)
        keys = ps_round_up(ps_div_up(total, s->max_splits), tile);
    p->split_keys = (ps_i32)keys;
    p->splits = (ps_i32)ps_div_up(total, keys);
}

ps_status ps_decode_enqueue(ps_plan *plan, const ps_tensor *q, size_t n_q, const ps_tensor *o,
                            cl_mem lse, int exact)
{
    ps_context *ctx = plan->ctx;
    ps_kv_state *s = plan->kv;
    const ps_attention_desc *d = &plan->desc;
    const size_t n = s->length;
    ps_decode_params p;
    p.n_q = (ps_i32)n_q;
    p.group = (ps_i32)(d->heads / d->kv_heads);
    p.rows = (ps_i32)(p.group * n_q);
    p.heads = (ps_i32)d->heads;
    p.d = (ps_i32)d->d;
    p.dv = (ps_i32)d->d_v;
    p.length = (ps_i32)n;
    if (exact || !s->p.scored) {
        p.sink_len = (ps_i32)n;
        p.kept = 0;
        p.win_start = (ps_i32)n;
    } else {
        const ps_kv_span span = ps_kv_span_at(&s->p, n);
        p.sink_len = (ps_i32)span.sink_len;
        p.kept = (ps_i32)s->kept;
        p.win_start = (ps_i32)span.win_start;
    }
    const size_t total = (size_t)p.sink_len + (size_t)p.kept + (n - (size_t)p.win_start);
    p.total = (ps_i32)total;
    /* The CPU shape's smallest row-block variant that holds the rows. */
    int variant = 0;
    for (int i = 1; i < 4 && s->partial[i]; i++)
        if (s->partial_rows[i] >= (size_t)p.rows) {
            variant = i;
            break;
        }
    const size_t row_block = s->partial_rows[variant];
    cl_kernel partial = s->partial[variant];
    p.cache_rows = (ps_i32)d->n_k;
    p.kept_rows = (ps_i32)s->kept_rows;
    p.row_block = (ps_i32)row_block;
    p.scale_log2 = (float)(d->scale * 1.4426950408889634);
    const size_t kv_rows = d->batch * d->kv_heads;
    const size_t blocks = ps_div_up((size_t)p.rows, row_block);
    choose_split(plan, total, blocks * kv_rows, &p);

    const ps_tensor kc = ps_kv_cache_tensor(s, s->k, d->d), vc = ps_kv_cache_tensor(s, s->v, d->d_v);
    const ps_tensor kk = ps_kv_kept_tensor(s, s->kept_k, d->d);
    const ps_tensor vk = ps_kv_kept_tensor(s, s->kept_v, d->d_v);
    const char *name = "decode_partial";
    ps_arg_setter a = {partial, 0, CL_SUCCESS};
    ps_arg_tensor(&a, q);
    ps_arg_tensor(&a, &kc);
    ps_arg_tensor(&a, &vc);
    ps_arg_tensor(&a, &kk);
    ps_arg_tensor(&a, &vk);
    ps_arg(&a, sizeof s->kept_pos, &s->kept_pos);
    ps_arg(&a, sizeof s->part_o, &s->part_o);
    ps_arg(&a, sizeof s->part_ml, &s->part_ml);
    ps_arg(&a, sizeof p, &p);
    ps_status st = ps_args_done(ctx, &a, name);
    if (st != PS_OK)
        return st;
    const size_t g = s->partial_group;
    const size_t global[3] = {(size_t)p.splits * g, blocks, kv_rows};
    const size_t local[3] = {g, 1, 1};
    st = ps_launch(ctx, partial, name, 3, global, local);
    if (st != PS_OK)
        return st;

    a = (ps_arg_setter){s->merge, 0, CL_SUCCESS};
    ps_arg(&a, sizeof s->part_o, &s->part_o);
    ps_arg(&a, sizeof s->part_ml, &s->part_ml);
    ps_arg_tensor(&a, o);
    ps_arg(&a, sizeof lse, &lse); /* a NULL cl_mem is a NULL pointer in the kernel */
    ps_arg(&a, sizeof p, &p);
    st = ps_args_done(ctx, &a, "decode_merge");
    if (st != PS_OK)
        return st;
    const size_t mg[2] = {(size_t)p.rows, kv_rows};
    return ps_launch(ctx, s->merge, "decode_merge", 2, mg, NULL);
}
