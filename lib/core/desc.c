/* The attention descriptor: defaults, validation and resolution of the
 * automatic fields. Shared by the device plan and the host reference, so both
 * accept exactly the same inputs and run exactly the same parameters. */
#include "desc.h"
#include "select_params.h"
#include "tensor_layout.h"
#include "varlen.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void ps_attention_desc_default(ps_attention_desc *desc)
{
    if (!desc)
        return;
    memset(desc, 0, sizeof *desc);
    desc->batch = desc->heads = desc->kv_heads = 1;
    desc->method = PS_METHOD_EXACT;
    desc->score = PS_SCORE_KMEANS;
    desc->global_keys = PS_GLOBAL_KEYS_AUTO;
    desc->global_score = PS_SCORE_AUTO;
    desc->selection = PS_SELECTION_AUTO;
    desc->sketch_queries = PS_SKETCH_AUTO;
}

/* a * b * c * d elements of `elem` bytes without overflowing size_t. */
static int product_fits(size_t a, size_t b, size_t c, size_t d)
{
    const size_t limit = SIZE_MAX / sizeof(float);
    size_t p = a;
    if (b && p > limit / b)
        return 0;
    p *= b;
    if (c && p > limit / c)
        return 0;
    p *= c;
    if (d && p > limit / d)
        return 0;
    return 1;
}

ps_status ps_say(char *message, size_t size, ps_status st, const char *fmt, ...)
{
    if (message && size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, size, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* The selection a descriptor runs: PS_SELECTION_AUTO is the stratified
 * selection wherever its checks pass (it needs the k-means clusters and
 * keeps the global keys by the plan's score), top-m elsewhere. On the
 * caller's fields, so validation and resolution agree. */
ps_selection ps_desc_selection(const ps_attention_desc *d)
{
    if (d->selection != PS_SELECTION_AUTO)
        return d->selection;
    if (d->method == PS_METHOD_PRESCORE && d->score == PS_SCORE_KMEANS &&
        (d->global_score == PS_SCORE_AUTO || d->global_score == PS_SCORE_KMEANS) &&
        d->clusters <= PS_STRATA_MAX_CLUSTERS)
        return PS_SELECTION_STRATIFIED;
    return PS_SELECTION_TOP;
}

ps_status ps_attention_desc_validate(const ps_attention_desc *desc, char *message,
                                     size_t message_size)
{
    if (message && message_size > 0)
        message[0] = '\0';
    if (!desc)
        return ps_say(message, message_size, PS_ERR_INVALID_ARGUMENT, "desc is NULL");
#define PS_REQUIRE_(cond, st, ...)                                             \
    do {                                                                       \
        if (!(cond))                                                           \
            return ps_say(message, message_size, st, __VA_ARGS__);                \
    } while (0)
    PS_REQUIRE_(desc->batch >= 1, PS_ERR_INVALID_ARGUMENT, "batch must be >= 1");
    PS_REQUIRE_(desc->heads >= 1, PS_ERR_INVALID_ARGUMENT, "heads must be >= 1");
    PS_REQUIRE_(desc->kv_heads >= 1, PS_ERR_INVALID_ARGUMENT, "kv_heads must be >= 1");
    PS_REQUIRE_(desc->heads % desc->kv_heads == 0, PS_ERR_INVALID_ARGUMENT,
                "heads (%zu) must be a multiple of kv_heads (%zu)", desc->heads,
                desc->kv_heads);
    PS_REQUIRE_(desc->n_q >= 1, PS_ERR_INVALID_ARGUMENT, "n_q must be >= 1");
    PS_REQUIRE_(desc->n_k >= 1, PS_ERR_INVALID_ARGUMENT, "n_k must be >= 1");
    PS_REQUIRE_(desc->n_q <= PS_MAX_TOKENS && desc->n_k <= PS_MAX_TOKENS,
                PS_ERR_UNSUPPORTED, "n_q (%zu) and n_k (%zu) must be <= %d", desc->n_q,
                desc->n_k, PS_MAX_TOKENS);
    /* Divided, not multiplied: the product itself may wrap size_t. */
    PS_REQUIRE_(desc->heads <= PS_MAX_TOKENS / desc->batch, PS_ERR_UNSUPPORTED,
                "batch * heads must be <= %d", PS_MAX_TOKENS);
    PS_REQUIRE_(desc->d >= 1 && desc->d_v >= 1, PS_ERR_INVALID_ARGUMENT,
                "d and d_v must be >= 1");
    PS_REQUIRE_(desc->d <= PS_MAX_HEAD_DIM && desc->d % PS_HEAD_DIM_MULTIPLE == 0,
                PS_ERR_UNSUPPORTED, "d = %zu: head dims must be a multiple of %d up to %d",
                desc->d, PS_HEAD_DIM_MULTIPLE, PS_MAX_HEAD_DIM);
    PS_REQUIRE_(desc->d_v <= PS_MAX_HEAD_DIM && desc->d_v % PS_HEAD_DIM_MULTIPLE == 0,
                PS_ERR_UNSUPPORTED,
                "d_v = %zu: head dims must be a multiple of %d up to %d", desc->d_v,
                PS_HEAD_DIM_MULTIPLE, PS_MAX_HEAD_DIM);
    PS_REQUIRE_(product_fits(ps_desc_batch_dim(desc), desc->heads, desc->n_q,
                             desc->d > desc->d_v ? desc->d : desc->d_v) &&
                    product_fits(ps_desc_batch_dim(desc), desc->kv_heads, desc->n_k,
                                 desc->d > desc->d_v ? desc->d : desc->d_v),
                PS_ERR_INVALID_ARGUMENT, "tensor sizes overflow size_t");
    PS_REQUIRE_(desc->causal == 0 || desc->causal == 1, PS_ERR_INVALID_ARGUMENT,
                "causal must be 0 or 1");
    PS_REQUIRE_(desc->check_finite == 0 || desc->check_finite == 1, PS_ERR_INVALID_ARGUMENT,
                "check_finite must be 0 or 1");
    PS_REQUIRE_(desc->want_lse == 0 || desc->want_lse == 1, PS_ERR_INVALID_ARGUMENT,
                "want_lse must be 0 or 1");
    PS_REQUIRE_(isfinite(desc->scale), PS_ERR_INVALID_ARGUMENT, "scale must be finite");
    /* The kernels use scale * log2(e) in fp32: it must stay finite (the fuzzer
     * found 3.4e38 giving NaN outputs where the double reference did not). */
    PS_REQUIRE_(fabsf(desc->scale) <= PS_MAX_SCALE, PS_ERR_INVALID_ARGUMENT,
                "scale = %g: |scale| must be <= %g", (double)desc->scale, PS_MAX_SCALE);
    PS_REQUIRE_(desc->method >= PS_METHOD_EXACT && desc->method <= PS_METHOD_PRESCORE,
                PS_ERR_INVALID_ARGUMENT, "method %d is not a ps_method", (int)desc->method);
    PS_REQUIRE_(desc->score >= PS_SCORE_KMEANS && desc->score <= PS_SCORE_NONE,
                PS_ERR_INVALID_ARGUMENT, "score %d is not a ps_score", (int)desc->score);
    PS_REQUIRE_(desc->global_score >= PS_SCORE_AUTO && desc->global_score <= PS_SCORE_NONE,
                PS_ERR_INVALID_ARGUMENT, "global_score %d is not a ps_score",
                (int)desc->global_score);
    PS_REQUIRE_(isfinite(desc->keep_ratio) && desc->keep_ratio >= 0.0f &&
                    desc->keep_ratio <= 1.0f,
                PS_ERR_INVALID_ARGUMENT, "keep_ratio = %g: must be in [0, 1]",
                (double)desc->keep_ratio);
    PS_REQUIRE_(desc->budget == 0 || desc->keep_ratio == 0.0f, PS_ERR_INVALID_ARGUMENT,
                "budget (%zu keys) and keep_ratio (%g) are both set: set one",
                desc->budget, (double)desc->keep_ratio);
    PS_REQUIRE_(isfinite(desc->rescore_growth) && desc->rescore_growth >= 0.0f,
                PS_ERR_INVALID_ARGUMENT, "rescore_growth must be finite and >= 0");
    PS_REQUIRE_(desc->selection == PS_SELECTION_AUTO || desc->selection == PS_SELECTION_TOP ||
                    desc->selection == PS_SELECTION_WEIGHTED ||
                    desc->selection == PS_SELECTION_STRATIFIED,
                PS_ERR_INVALID_ARGUMENT, "selection %d is not a ps_selection",
                (int)desc->selection);
    const int weighted = ps_selection_weighted(ps_desc_selection(desc));
    PS_REQUIRE_(!weighted || desc->method == PS_METHOD_PRESCORE, PS_ERR_INVALID_ARGUMENT,
                "selection WEIGHTED or STRATIFIED needs method PRESCORE");
    PS_REQUIRE_(!weighted || desc->score != PS_SCORE_NONE, PS_ERR_UNSUPPORTED,
                "selection WEIGHTED needs a score (with score NONE the global keys would be "
                "picked by norm, not by the score that chose the heavy keys)");
    PS_REQUIRE_(desc->selection != PS_SELECTION_STRATIFIED || desc->score == PS_SCORE_KMEANS,
                PS_ERR_INVALID_ARGUMENT,
                "selection STRATIFIED shares its draw over the k-means clusters: it needs score "
                "KMEANS");
    PS_REQUIRE_(desc->selection != PS_SELECTION_STRATIFIED ||
                    desc->clusters <= PS_STRATA_MAX_CLUSTERS,
                PS_ERR_UNSUPPORTED, "selection STRATIFIED: clusters = %zu: at most %d",
                desc->clusters, PS_STRATA_MAX_CLUSTERS);
    PS_REQUIRE_(!weighted || desc->global_score == PS_SCORE_AUTO ||
                    desc->global_score == desc->score,
                PS_ERR_UNSUPPORTED,
                "selection WEIGHTED keeps the global keys by the plan's score: global_score "
                "must be AUTO or the plan's score");
    /* An automatic sketch resolves to what the plan can take: only an
     * explicit one is refused where it cannot run. */
    const int sketch = desc->sketch_queries != 0 && desc->sketch_queries != PS_SKETCH_AUTO;
    PS_REQUIRE_(desc->sketch_queries <= PS_SKETCH_MAX_QUERIES || !sketch, PS_ERR_UNSUPPORTED,
                "sketch_queries = %u: at most %d", (unsigned)desc->sketch_queries,
                PS_SKETCH_MAX_QUERIES);
    PS_REQUIRE_(!sketch || weighted, PS_ERR_INVALID_ARGUMENT,
                "sketch_queries ranks a weighted selection's heavy keys: it needs selection "
                "WEIGHTED or STRATIFIED");
    PS_REQUIRE_(!sketch || desc->global_keys != 0, PS_ERR_INVALID_ARGUMENT,
                "sketch_queries ranks the heavy keys, min(global_keys, budget) of them: "
                "with global_keys 0 there are none");
    PS_REQUIRE_(desc->error_probes <= PS_ERROR_MAX_PROBES, PS_ERR_UNSUPPORTED,
                "error_probes = %u: at most %d", (unsigned)desc->error_probes,
                PS_ERROR_MAX_PROBES);
    PS_REQUIRE_(isfinite(desc->error_tolerance) && desc->error_tolerance >= 0.0f,
                PS_ERR_INVALID_ARGUMENT, "error_tolerance must be finite and >= 0");
    PS_REQUIRE_(desc->error_tolerance == 0.0f || desc->error_probes > 0, PS_ERR_INVALID_ARGUMENT,
                "error_tolerance needs error_probes (the estimate it is compared with)");
    PS_REQUIRE_(desc->error_probes == 0 || !ps_desc_is_varlen(desc), PS_ERR_UNSUPPORTED,
                "error_probes: not available for a variable-length batch (cu_seqlens)");
    /* The kernels take these as 32-bit int arguments: refuse, never wrap
     * (block = 2^32 would become 0, a division by zero on the device). */
    PS_REQUIRE_(desc->block <= PS_MAX_TOKENS, PS_ERR_UNSUPPORTED, "block = %zu: at most %d",
                desc->block, PS_MAX_TOKENS);
    PS_REQUIRE_(desc->samples <= PS_MAX_TOKENS, PS_ERR_UNSUPPORTED,
                "samples = %zu: at most %d", desc->samples, PS_MAX_TOKENS);
    PS_REQUIRE_(desc->kmeans_iters <= PS_MAX_KMEANS_ITERS, PS_ERR_UNSUPPORTED,
                "kmeans_iters = %zu: at most %d", desc->kmeans_iters, PS_MAX_KMEANS_ITERS);
    PS_REQUIRE_(desc->lsh_bits <= PS_MAX_LSH_BITS, PS_ERR_UNSUPPORTED,
                "lsh_bits = %u: at most %d", desc->lsh_bits, PS_MAX_LSH_BITS);
    PS_REQUIRE_(isfinite(desc->leverage_lambda) && desc->leverage_lambda >= 0.0f,
                PS_ERR_INVALID_ARGUMENT, "leverage_lambda must be finite and >= 0");
    if (ps_desc_is_varlen(desc)) {
        const ps_status st = ps_varlen_check(desc, message, message_size);
        if (st != PS_OK)
            return st;
    }
    for (int id = PS_TENSOR_Q; id <= PS_TENSOR_O; id++) {
        const ps_status st = ps_layout_check(desc, (ps_tensor_id)id, message, message_size);
        if (st != PS_OK)
            return st;
    }
    for (size_t i = 0; i < sizeof desc->reserved / sizeof desc->reserved[0]; i++)
        PS_REQUIRE_(desc->reserved[i] == 0, PS_ERR_INVALID_ARGUMENT,
                    "reserved[%zu] must be zero (initialise with "
                    "ps_attention_desc_default)",
                    i);
#undef PS_REQUIRE_
    return PS_OK;
}

ps_status ps_attention_desc_resolve(const ps_attention_desc *desc, ps_attention_desc *out,
                                    char *message, size_t message_size)
{
    ps_status st = ps_attention_desc_validate(desc, message, message_size);
    if (st != PS_OK)
        return st;
    *out = *desc;
    if (out->scale == 0.0f)
        out->scale = (float)(1.0 / sqrt((double)out->d));
    if (out->block == 0)
        out->block = 256;
    if (out->samples == 0)
        out->samples = 256;
    if (out->lsh_bits == 0)
        out->lsh_bits = 7;
    if (out->min_seq_len == 0)
        out->min_seq_len = 4096;
    if (out->kmeans_iters == 0)
        out->kmeans_iters = 10;
    /* A share of the keys becomes a count here (nodes and sequences of the
     * plan inherit the count); budgets beyond the key count keep every key
     * (documented clamp); other methods ignore the budget, 0 there means all
     * keys. */
    if (out->method == PS_METHOD_PRESCORE && out->budget == 0)
        out->budget = ps_keep_ratio_count(out->keep_ratio, out->n_k);
    out->keep_ratio = 0.0f;
    if (out->rescore_growth == 0.0f)
        out->rescore_growth = 1.0f;
    if (out->budget == 0 || out->budget > out->n_k)
        out->budget = out->n_k;
    /* 16 clusters: as good as 64 or 256 on the heavy-key and real data, 4x
     * cheaper than 256 (docs/QUALITY.md "Default configuration"). */
    if (out->clusters == 0) {
        size_t c = out->budget / 4;
        out->clusters = c < 1 ? 1 : (c > 16 ? 16 : c);
    }
    if (out->clusters > out->n_k)
        out->clusters = out->n_k;
    /* Automatic global keys: min(64, C / 8) of the C candidates (so g < C). */
    if (out->global_keys == PS_GLOBAL_KEYS_AUTO) {
        size_t cand = out->n_k;
        if (out->method == PS_METHOD_PRESCORE) { /* the selection's capacity */
            ps_select_params sp;
            ps_select_params_from_desc(out, &sp);
            cand = sp.capacity;
        }
        out->global_keys = out->method == PS_METHOD_EXACT ? 0 : (cand / 8 < 64 ? cand / 8 : 64);
    }
    /* Global keys: the plan's own scores where it has them, else NORM. */
    if (out->global_score == PS_SCORE_AUTO)
        out->global_score = out->method == PS_METHOD_PRESCORE && out->score != PS_SCORE_NONE
                                ? out->score
                                : PS_SCORE_NORM;
    /* The default selection (docs/DECISIONS.md "The default selection"). */
    out->selection = ps_desc_selection(desc);
    if (out->sketch_queries == PS_SKETCH_AUTO)
        out->sketch_queries = ps_selection_weighted(out->selection) && out->global_keys > 0
                                  ? PS_SKETCH_AUTO_QUERIES
                                  : 0;
    return PS_OK;
}

ps_status ps_attention_desc_set_layout(ps_attention_desc *desc, ps_layout layout)
{
    if (!desc || (layout != PS_LAYOUT_BHTD && layout != PS_LAYOUT_BTHD))
        return PS_ERR_INVALID_ARGUMENT;
    for (int id = PS_TENSOR_Q; id <= PS_TENSOR_O; id++) {
        ps_tensor_layout *l = (ps_tensor_layout *)ps_desc_layout(desc, (ps_tensor_id)id);
        size_t dims[4];
        ps_desc_dims(desc, (ps_tensor_id)id, dims);
        l->stride[3] = 1;
        if (layout == PS_LAYOUT_BHTD) {
            l->stride[2] = dims[3];
            l->stride[1] = dims[2] * dims[3];
        } else {
            l->stride[1] = dims[3];
            l->stride[2] = dims[1] * dims[3];
        }
        l->stride[0] = dims[1] * dims[2] * dims[3];
    }
    return PS_OK;
}

int ps_all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* 1 when no element is NaN or +Inf: an LSE may be -Inf (a row with no key). */
static int lse_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i]) || x[i] == INFINITY)
            return 0;
    return 1;
}

ps_status ps_outputs_finite(const ps_attention_desc *d, const float *o, const float *lse)
{
    if (!ps_all_finite(o, ps_desc_o_elems(d)) ||
        (lse && !lse_finite(lse, ps_desc_lse_elems(d))))
        return PS_ERR_NON_FINITE;
    return PS_OK;
}

size_t ps_desc_q_elems(const ps_attention_desc *d)
{
    return ps_desc_batch_dim(d) * d->heads * d->n_q * d->d;
}
size_t ps_desc_k_elems(const ps_attention_desc *d)
{
    return ps_desc_batch_dim(d) * d->kv_heads * d->n_k * d->d;
}
size_t ps_desc_v_elems(const ps_attention_desc *d)
{
    return ps_desc_batch_dim(d) * d->kv_heads * d->n_k * d->d_v;
}
size_t ps_desc_o_elems(const ps_attention_desc *d)
{
    return ps_desc_batch_dim(d) * d->heads * d->n_q * d->d_v;
}
size_t ps_desc_lse_elems(const ps_attention_desc *d)
{
    return ps_desc_batch_dim(d) * d->heads * d->n_q;
}
