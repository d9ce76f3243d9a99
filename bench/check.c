/* --check: exact attention once per set of inputs (the reference), then per
 * method run: rel_error and lse_error of its output, heavy_recall from a
 * unit-weight run of the same plan (ps_plan_set_diagnostic), floor_error from
 * exact attention over the keys pre-scoring keeps, and beside it the same for
 * as many oracle and random keys (floors.h; bench/README.md, "Metrics").
 * None of this is timed. */
#include "check.h"
#include "floors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Reads @p count floats (or uint32) of @p mem into a new host array. */
static void *read_back(ps_context *ctx, cl_mem mem, size_t bytes, ps_status *st)
{
    cl_command_queue queue;
    void *host;

    if (*st != PS_OK)
        return NULL;
    ps_context_cl_handles(ctx, NULL, NULL, &queue);
    host = malloc(bytes ? bytes : 1);
    if (!host) {
        *st = PS_ERR_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    if (clEnqueueReadBuffer(queue, mem, CL_TRUE, 0, bytes, host, 0, NULL, NULL) != CL_SUCCESS) {
        free(host);
        *st = PS_ERR_OPENCL;
        return NULL;
    }
    return host;
}

/* Tensor t of d in buffer mem as a new dense fp32 [batch, head, token, dim]
 * host array (layouts and fp16 undone). */
static float *read_dense(ps_context *ctx, const ps_attention_desc *d, ps_tensor_kind t,
                         cl_mem mem, size_t elems, ps_status *st)
{
    void *raw = read_back(ctx, mem, ps_tensor_bytes(d, t), st);
    float *dense = *st == PS_OK ? malloc(elems * sizeof *dense) : NULL;
    if (*st == PS_OK && !dense)
        *st = PS_ERR_OUT_OF_HOST_MEMORY;
    if (*st == PS_OK)
        *st = ps_tensor_unpack(d, t, raw, dense);
    free(raw);
    if (*st != PS_OK) {
        free(dense);
        dense = NULL;
    }
    return dense;
}

static cl_mem device_buffer(ps_context *ctx, size_t bytes, const void *host, ps_status *st)
{
    cl_context cl_ctx;
    cl_int err = CL_SUCCESS;
    cl_mem m;

    if (*st != PS_OK)
        return NULL;
    ps_context_cl_handles(ctx, &cl_ctx, NULL, NULL);
    m = clCreateBuffer(cl_ctx, host ? CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR : CL_MEM_READ_WRITE,
                       bytes, (void *)host, &err);
    if (err != CL_SUCCESS) {
        *st = err == CL_OUT_OF_HOST_MEMORY ? PS_ERR_OUT_OF_HOST_MEMORY
                                            : PS_ERR_OUT_OF_DEVICE_MEMORY;
        return NULL;
    }
    return m;
}

static void release(cl_mem m)
{
    if (m)
        clReleaseMemObject(m);
}

/* Runs @p plan with LSE and reads O (as dense fp32, whatever d's o_layout)
 * and LSE back into o and lse. */
static ps_status run_into(ps_context *ctx, ps_plan *plan, const ps_attention_desc *d, cl_mem q,
                          cl_mem k, cl_mem v, float *o, float *lse)
{
    cl_command_queue queue;
    const size_t nl = bench_batch_dim(d) * d->heads * d->n_q, no = nl * d->d_v;
    ps_status st = PS_OK;
    cl_mem bo = device_buffer(ctx, ps_tensor_bytes(d, PS_TENSOR_O), NULL, &st);
    cl_mem bl = device_buffer(ctx, nl * sizeof(float), NULL, &st);
    float *od = NULL;

    ps_context_cl_handles(ctx, NULL, NULL, &queue);
    if (st == PS_OK)
        st = ps_attention(plan, q, k, v, bo, bl);
    od = read_dense(ctx, d, PS_TENSOR_O, bo, no, &st);
    if (st == PS_OK)
        memcpy(o, od, no * sizeof *o);
    if (st == PS_OK && lse &&
        clEnqueueReadBuffer(queue, bl, CL_TRUE, 0, nl * sizeof(float), lse, 0, NULL, NULL) !=
            CL_SUCCESS)
        st = PS_ERR_OPENCL;
    free(od);
    release(bo);
    release(bl);
    return st;
}

static double rel_error(const float *o, const float *ref, size_t count)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < count; i++) {
        const double e = (double)o[i] - (double)ref[i];
        num += e * e;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Mean over the rows that see a key of f(lse, lse_exact): mode 0
 * |lse - lse_exact|, mode 1 exp(lse - lse_exact). A row that sees no key has
 * an exact LSE of -inf (ps_attention) and is skipped; a NaN or +inf exact
 * LSE (overflowing inputs) is not skipped and makes the mean NaN or inf,
 * instead of a mean over no row that would read as a perfect 0. */
static double lse_mean(const float *lse, const float *ref, size_t rows, int mode)
{
    double sum = 0.0;
    size_t used = 0;
    for (size_t i = 0; i < rows; i++) {
        if (ref[i] == -INFINITY)
            continue;
        const double diff = (double)lse[i] - (double)ref[i];
        sum += mode ? exp(diff) : fabs(diff);
        used++;
    }
    return used ? sum / (double)used : (mode ? 1.0 : 0.0);
}

/* Measured mean share of the exact softmax mass on the planted keys. */
static ps_status heavy_mass(ps_context *ctx, const ps_attention_desc *d, cl_mem q, cl_mem k,
                            uint64_t data_seed, bench_reference *ref)
{
    ps_status st = PS_OK;
    const size_t qh = d->batch * d->heads, group = d->heads / d->kv_heads;
    float *hq = read_dense(ctx, d, PS_TENSOR_Q, q, qh * d->n_q * d->d, &st);
    float *hk = read_dense(ctx, d, PS_TENSOR_K, k, d->batch * d->kv_heads * d->n_k * d->d, &st);
    const double scale = d->scale > 0.0f ? (double)d->scale : 1.0 / sqrt((double)d->d);
    double sum = 0.0;
    size_t rows = 0;

    for (size_t h = 0; st == PS_OK && h < qh; h++) {
        size_t pos[BENCH_HEAVY_KEYS];
        const size_t kvh = h / group;
        const size_t np = bench_heavy_positions(data_seed, kvh, d->n_k, pos);
        for (size_t i = 0; i < d->n_q; i++) {
            const float *qi = hq + (h * d->n_q + i) * d->d;
            const double lse = ref->lse[h * d->n_q + i];
            double share = 0.0;
            if (!isfinite(lse))
                continue;
            for (size_t j = 0; j < np; j++) {
                const float *kj = hk + (kvh * d->n_k + pos[j]) * d->d;
                double dot = 0.0;
                for (size_t c = 0; c < d->d; c++)
                    dot += (double)qi[c] * kj[c];
                share += exp(dot * scale - lse);
            }
            sum += share;
            rows++;
        }
    }
    ref->heavy_mass = rows ? sum / (double)rows : NAN;
    ref->heavy_mass_measured = 1;
    free(hq);
    free(hk);
    return st;
}

ps_status bench_reference_make(ps_context *ctx, const ps_attention_desc *desc, cl_mem q,
                               cl_mem k, cl_mem v, bench_workload workload,
                               uint64_t data_seed, bench_reference *ref)
{
    ps_attention_desc ed;
    ps_plan *exact = NULL;
    ps_status st;

    memset(ref, 0, sizeof *ref);
    ref->heavy_mass = NAN;
    ref->nl = bench_batch_dim(desc) * desc->heads * desc->n_q;
    ref->no = ref->nl * desc->d_v;
    ref->o = malloc(ref->no * sizeof(float));
    ref->lse = malloc(ref->nl * sizeof(float));
    if (!ref->o || !ref->lse) {
        bench_reference_free(ref);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    ed = *desc;
    ed.method = PS_METHOD_EXACT;
    ed.selection = PS_SELECTION_TOP;
    ed.sketch_queries = 0;
    ed.error_probes = 0;
    ed.error_tolerance = 0.0f;
    ed.want_lse = 1;
    ed.global_keys = 0;
    /* fp32 exact attention on the same (rounded, laid-out) inputs, into a
     * dense fp32 O. */
    memset(&ed.o_layout, 0, sizeof ed.o_layout);
    st = ps_plan_create(ctx, &ed, &exact);
    if (st == PS_OK)
        st = run_into(ctx, exact, &ed, q, k, v, ref->o, ref->lse);
    ps_plan_destroy(exact);
    /* The planted share is defined over every key: causal rows see fewer. */
    if (st == PS_OK && workload == BENCH_WORKLOAD_HEAVY && !desc->causal && !desc->cu_seqlens_q)
        st = heavy_mass(ctx, desc, q, k, data_seed, ref);
    if (st != PS_OK)
        bench_reference_free(ref);
    return st;
}

void bench_reference_free(bench_reference *ref)
{
    free(ref->o);
    free(ref->lse);
    ref->o = ref->lse = NULL;
}

/* Copies the kept rows (ascending indices, @p cnt per head) of src
 * [heads][n][dim] into dst [heads][cnt][dim]. */
static void gather_rows(const float *src, const cl_uint *idx, size_t cap, size_t heads,
                        size_t n, size_t cnt, size_t dim, float *dst)
{
    for (size_t h = 0; h < heads; h++)
        for (size_t j = 0; j < cnt; j++)
            memcpy(dst + (h * cnt + j) * dim, src + (h * n + idx[h * cap + j]) * dim,
                   dim * sizeof(float));
}

/* rel_error against the reference of exact attention of the same queries
 * over the keys idx ([kv head][cap], the first cnt of each) of hk, hv. */
static ps_status subset_error(ps_context *ctx, const ps_attention_desc *d, cl_mem q,
                              const float *hk, const float *hv, const cl_uint *idx, size_t cap,
                              size_t cnt, const bench_reference *ref, double *err)
{
    const size_t kvh = d->batch * d->kv_heads;
    float *kc = malloc(kvh * cnt * d->d * sizeof(float));
    float *vc = malloc(kvh * cnt * d->d_v * sizeof(float));
    float *o = malloc(ref->no * sizeof(float));
    ps_status st = kc && vc && o ? PS_OK : PS_ERR_OUT_OF_HOST_MEMORY;
    cl_mem bk = NULL, bv = NULL;
    ps_plan *exact = NULL;
    ps_attention_desc ed;

    if (st == PS_OK) {
        gather_rows(hk, idx, cap, kvh, d->n_k, cnt, d->d, kc);
        gather_rows(hv, idx, cap, kvh, d->n_k, cnt, d->d_v, vc);
    }
    bk = device_buffer(ctx, kvh * cnt * d->d * sizeof(float), kc, &st);
    bv = device_buffer(ctx, kvh * cnt * d->d_v * sizeof(float), vc, &st);
    ps_attention_desc_default(&ed);
    ed.batch = d->batch;
    ed.heads = d->heads;
    ed.kv_heads = d->kv_heads;
    ed.n_q = d->n_q;
    ed.n_k = cnt;
    ed.d = d->d;
    ed.d_v = d->d_v;
    ed.scale = d->scale;
    ed.q_layout = d->q_layout; /* the call's own Q buffer */
    if (st == PS_OK)
        st = ps_plan_create(ctx, &ed, &exact);
    if (st == PS_OK)
        st = run_into(ctx, exact, &ed, q, bk, bv, o, NULL);
    if (st == PS_OK)
        *err = rel_error(o, ref->o, ref->no);
    ps_plan_destroy(exact);
    release(bk);
    release(bv);
    free(kc);
    free(vc);
    free(o);
    return st;
}

/* oracle_floor_error and random_floor_error for cnt keys per KV head (hq:
 * dense Q), once per reference and key count (every method and seed of a
 * table row shares them; the caller skips a cached count). The random keys' seed is fixed, so the cached value is a function
 * of the inputs and cnt. */
static ps_status reference_floors(ps_context *ctx, const ps_attention_desc *d, cl_mem q,
                                  const float *hq, const float *hk, const float *hv, size_t cnt,
                                  bench_reference *ref)
{
    const size_t kvh = d->batch * d->kv_heads;
    uint32_t *idx = NULL;
    ps_status st = PS_OK;

    ref->floors_keys = 0;
    idx = malloc(kvh * cnt * sizeof *idx);
    if (!idx)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    st = bench_oracle_keys(d, hq, hk, ref->lse, cnt, idx);
    if (st == PS_OK)
        st = subset_error(ctx, d, q, hk, hv, idx, cnt, cnt, ref, &ref->oracle_floor);
    if (st == PS_OK)
        st = bench_random_keys(d, cnt, 0x5eedf100ULL + cnt, idx);
    if (st == PS_OK)
        st = subset_error(ctx, d, q, hk, hv, idx, cnt, cnt, ref, &ref->random_floor);
    if (st == PS_OK)
        ref->floors_keys = cnt;
    free(idx);
    return st;
}

/* floor_error: exact attention of the same queries over the keys that
 * ps_score_keys (or ps_sketch_keys) + ps_select_keys_weighted keep for this plan (with their
 * log-weights for a weighted selection), against the reference;
 * beside it the oracle and random floors for as many keys. All NaN when
 * the heads keep different numbers of keys (one exact plan needs one n_k). */
static ps_status floor_errors(ps_context *ctx, ps_plan *plan, const ps_attention_desc *d,
                              cl_mem q, cl_mem k, cl_mem v, bench_reference *ref,
                              bench_check_result *res)
{
    const size_t kvh = d->batch * d->kv_heads, cap = ps_plan_selected_capacity(plan);
    ps_status st = PS_OK;
    cl_mem scores = device_buffer(ctx, kvh * d->n_k * sizeof(float), NULL, &st);
    cl_mem idx = device_buffer(ctx, kvh * cap * sizeof(cl_uint), NULL, &st);
    cl_mem counts = device_buffer(ctx, kvh * sizeof(cl_uint), NULL, &st);
    cl_mem weights = device_buffer(ctx, kvh * cap * sizeof(float), NULL, &st);
    cl_uint *hidx = NULL, *hcounts = NULL;
    float *hk = NULL, *hv = NULL, *hw = NULL, *hq = NULL;
    size_t cnt = 0, h;
    double sum = 0.0;
    const int weighted = d->selection != PS_SELECTION_TOP;

    if (st == PS_OK)
        st = ps_score_keys(plan, k, scores);
    if (st == PS_OK && d->sketch_queries > 0) /* the sketch ranks the heavy keys */
        st = ps_sketch_keys(plan, q, k, scores);
    if (st == PS_OK)
        st = ps_select_keys_weighted(plan, scores, idx, counts, weights);
    hidx = read_back(ctx, idx, kvh * cap * sizeof(cl_uint), &st);
    hcounts = read_back(ctx, counts, kvh * sizeof(cl_uint), &st);
    hw = read_back(ctx, weights, kvh * cap * sizeof(float), &st);
    if (st != PS_OK)
        goto cleanup;
    cnt = hcounts[0];
    for (h = 0; h < kvh; h++) {
        sum += hcounts[h];
        if (hcounts[h] != cnt)
            cnt = 0;
    }
    res->keys_kept = sum / (double)kvh;
    res->measured |= BENCH_METRIC_KEYS_KEPT;
    if (cnt == 0)
        goto cleanup; /* the floors stay NaN */
    hk = read_dense(ctx, d, PS_TENSOR_K, k, kvh * d->n_k * d->d, &st);
    hv = read_dense(ctx, d, PS_TENSOR_V, v, kvh * d->n_k * d->d_v, &st);
    /* Dense Q on the host: for a weighted floor and for floors not yet cached. */
    if (st == PS_OK && (weighted || ref->floors_keys != cnt))
        hq = read_dense(ctx, d, PS_TENSOR_Q, q, d->batch * d->heads * d->n_q * d->d, &st);
    if (st == PS_OK && weighted) /* the kept keys with their log-weights */
        st = bench_weighted_floor(d, hq, hk, hv, hidx, hw, cap, cnt, ref->o,
                                  &res->floor_error);
    else if (st == PS_OK)
        st = subset_error(ctx, d, q, hk, hv, hidx, cap, cnt, ref, &res->floor_error);
    if (st == PS_OK && ref->floors_keys != cnt)
        st = reference_floors(ctx, d, q, hq, hk, hv, cnt, ref);
    if (st == PS_OK) {
        res->oracle_floor_error = ref->oracle_floor;
        res->random_floor_error = ref->random_floor;
        res->measured |= BENCH_METRIC_FLOOR_ERROR | BENCH_METRIC_ORACLE_FLOOR |
                         BENCH_METRIC_RANDOM_FLOOR;
    }

cleanup:
    release(scores);
    release(idx);
    release(counts);
    release(weights);
    free(hidx);
    free(hcounts);
    free(hk);
    free(hv);
    free(hw);
    free(hq);
    return st;
}

/* The plan's error estimate of the run just made, beside the errors
 * measured per query head. */
static ps_status estimate_per_head(ps_plan *plan, const ps_attention_desc *d, const float *o,
                                   const float *lse, const bench_reference *ref,
                                   bench_check_result *res)
{
    const size_t qh = d->batch * d->heads, rows = d->n_q, dv = d->d_v;
    if (qh > BENCH_MAX_EST_HEADS)
        return PS_OK; /* reported as not measured */
    float est_rel[BENCH_MAX_EST_HEADS], est_lse[BENCH_MAX_EST_HEADS];
    const ps_status st = ps_plan_error_estimate(plan, est_rel, est_lse, NULL, qh);
    if (st != PS_OK)
        return st;
    for (size_t h = 0; h < qh; h++) {
        res->head_rel[h] = rel_error(o + h * rows * dv, ref->o + h * rows * dv, rows * dv);
        res->head_lse[h] = lse_mean(lse + h * rows, ref->lse + h * rows, rows, 0);
        res->est_rel[h] = est_rel[h];
        res->est_lse[h] = est_lse[h];
    }
    res->est_heads = qh;
    return PS_OK;
}

ps_status bench_check(ps_context *ctx, ps_plan *plan, const ps_attention_desc *desc,
                      cl_mem q, cl_mem k, cl_mem v, bench_reference *ref,
                      bench_check_result *result)
{
    float *o = malloc(ref->no * sizeof *o), *lse = malloc(ref->nl * sizeof *lse);
    const int exact_path = ps_plan_path(plan) == PS_METHOD_EXACT;
    ps_status st = o && lse ? PS_OK : PS_ERR_OUT_OF_HOST_MEMORY;

    result->heavy_recall = result->floor_error = result->keys_kept = NAN;
    result->oracle_floor_error = result->random_floor_error = NAN;
    result->rel_error = result->lse_error = NAN;
    result->measured = 0;
    if (st == PS_OK)
        st = run_into(ctx, plan, desc, q, k, v, o, lse);
    if (st == PS_OK) {
        result->rel_error = rel_error(o, ref->o, ref->no);
        result->lse_error = lse_mean(lse, ref->lse, ref->nl, 0);
        result->measured |= BENCH_METRIC_REL_ERROR | BENCH_METRIC_LSE_ERROR;
    }
    result->est_heads = 0;
    if (st == PS_OK && desc->error_probes > 0)
        st = estimate_per_head(plan, desc, o, lse, ref, result);
    if (st == PS_OK && exact_path) { /* every key, exactly */
        result->heavy_recall = 1.0;
        result->floor_error = 0.0;
        result->keys_kept = (double)desc->n_k;
        result->measured |= BENCH_METRIC_HEAVY_RECALL | BENCH_METRIC_FLOOR_ERROR |
                            BENCH_METRIC_KEYS_KEPT;
    } else if (st == PS_OK && desc->error_tolerance > 0.0f) {
        /* A tolerance would recompute heads exactly in the unit-weight run
         * too: heavy_recall and the floors are left unmeasured. */
    } else if (st == PS_OK) {
        /* The same plan (same seed: same blocks and samples) with weight 1. */
        st = ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 1);
        if (st == PS_OK)
            st = run_into(ctx, plan, desc, q, k, v, o, lse);
        ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 0);
        if (st == PS_OK) {
            result->heavy_recall = lse_mean(lse, ref->lse, ref->nl, 1);
            result->measured |= BENCH_METRIC_HEAVY_RECALL;
        }
        if (st == PS_OK && desc->method == PS_METHOD_HYPER) {
            result->floor_error = 0.0; /* every key is kept */
            result->keys_kept = (double)desc->n_k;
            result->measured |= BENCH_METRIC_FLOOR_ERROR | BENCH_METRIC_KEYS_KEPT;
        } else if (st == PS_OK && desc->method == PS_METHOD_PRESCORE && !desc->causal &&
                   !desc->cu_seqlens_q) { /* the stage calls take no varlen plan */
            st = floor_errors(ctx, plan, desc, q, k, v, ref, result);
        }
    }
    free(o);
    free(lse);
    return st;
}

const char *bench_check_non_finite(const bench_check_result *r)
{
    static const char *const names[] = {"rel_error",          "lse_error", "heavy_recall",
                                        "floor_error",        "keys_kept", "oracle_floor_error",
                                        "random_floor_error"};
    const double values[] = {r->rel_error,          r->lse_error, r->heavy_recall,
                             r->floor_error,        r->keys_kept, r->oracle_floor_error,
                             r->random_floor_error};
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((r->measured & (1u << i)) && !isfinite(values[i]))
            return names[i];
    return NULL;
}
