/* --decode (decode.h): builds the inputs of n + steps tokens, prefills a
 * ps_kv_cache, runs the decode steps with their timings and --check errors,
 * and reports one bench_decode_row. Every input row goes to the device in a
 * buffer of its own before anything is timed: an appended tensor is dense
 * [batch, kv_heads, rows, d] (the cache's layout fixes strides and offset
 * at creation, so one buffer of all rows cannot be appended slice by
 * slice), so the prefill is one buffer and every step has its own small K,
 * V and Q buffers. */
#include "decode.h"

#include "timing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the rows come from: the seeded workload of `total` tokens, or the
 * --data arrays of `total` rows per head. */
typedef struct decode_source {
    const bench_run *run;
    size_t total, d, group; /* group: query heads per KV head */
} decode_source;

/* Rows [first, first + count) of flat head @p head of tensor @p stream, as
 * count * d floats. */
static void source_rows(const decode_source *src, uint64_t stream, size_t head, size_t first,
                        size_t count, float *dst)
{
    const bench_run *run = src->run;
    const size_t at = (head * src->total + first) * src->d;

    if (run->data_q) {
        const float *from = stream == BENCH_STREAM_Q   ? run->data_q
                            : stream == BENCH_STREAM_K ? run->data_k
                                                       : run->data_v;
        memcpy(dst, from + at, count * src->d * sizeof *dst);
        return;
    }
    const bench_tensor_shape shape = {run->opt->workload, src->total, src->d,
                                      stream == BENCH_STREAM_Q ? src->group : 1, src->total};
    bench_fill_workload(dst, count * src->d, run->opt->data_seed, stream, at,
                        stream == BENCH_STREAM_V ? NULL : &shape);
}

/* fp32 rows to fp16 with the library's rounding (a [1, 1, count, d] tensor). */
static ps_status pack_f16(size_t count, size_t d, const float *from, void *to)
{
    ps_attention_desc pd;

    ps_attention_desc_default(&pd);
    pd.n_q = pd.n_k = count;
    pd.d = pd.d_v = d;
    pd.k_layout.dtype = PS_DTYPE_F16;
    return ps_tensor_pack(&pd, PS_TENSOR_K, from, to);
}

/* A device buffer holding rows [first, first + count) of @p heads flat
 * heads of tensor @p stream, dense [heads][count][d] in @p dtype, written
 * one head at a time (the prefill of a long context is large). */
static cl_int upload_rows(const decode_source *src, uint64_t stream, size_t heads,
                          size_t first, size_t count, ps_dtype dtype, cl_mem *out)
{
    const bench_run *run = src->run;
    const size_t elems = count * src->d, elem = dtype == PS_DTYPE_F16 ? 2 : 4;
    float *rows = malloc(elems * sizeof *rows);
    void *packed = dtype == PS_DTYPE_F16 ? malloc(elems * elem) : rows;
    cl_int err = rows && packed ? CL_SUCCESS : CL_OUT_OF_HOST_MEMORY;

    *out = NULL;
    if (err == CL_SUCCESS)
        *out = clCreateBuffer(run->cl_ctx, CL_MEM_READ_ONLY, heads * elems * elem, NULL, &err);
    for (size_t h = 0; h < heads && err == CL_SUCCESS; ++h) {
        source_rows(src, stream, h, first, count, rows);
        if (dtype == PS_DTYPE_F16 && pack_f16(count, src->d, rows, packed) != PS_OK)
            err = CL_INVALID_VALUE;
        if (err == CL_SUCCESS)
            err = clEnqueueWriteBuffer(run->cl_queue, *out, CL_TRUE, h * elems * elem,
                                       elems * elem, packed, 0, NULL, NULL);
    }
    if (packed != rows)
        free(packed);
    free(rows);
    if (err != CL_SUCCESS && *out) {
        clReleaseMemObject(*out);
        *out = NULL;
    }
    return err;
}

/* The device buffers of one row. */
typedef struct decode_buffers {
    cl_mem k_pre, v_pre;              /* prefill rows [B, Hkv, n, d] */
    cl_mem *k_step, *v_step, *q_step; /* per step: [B, Hkv, 1, d], [B, H, Q, d] */
    cl_mem o_cache, o_exact, lse_cache, lse_exact;
    size_t steps;
} decode_buffers;

static void release_mem(cl_mem *m)
{
    if (*m)
        clReleaseMemObject(*m);
    *m = NULL;
}

static void buffers_release(decode_buffers *b)
{
    for (size_t t = 0; t < b->steps; ++t) {
        if (b->k_step)
            release_mem(&b->k_step[t]);
        if (b->v_step)
            release_mem(&b->v_step[t]);
        if (b->q_step)
            release_mem(&b->q_step[t]);
    }
    free(b->k_step);
    free(b->v_step);
    free(b->q_step);
    release_mem(&b->k_pre);
    release_mem(&b->v_pre);
    release_mem(&b->o_cache);
    release_mem(&b->o_exact);
    release_mem(&b->lse_cache);
    release_mem(&b->lse_exact);
    memset(b, 0, sizeof *b);
}

/* Uploads the prefill, every step's K/V row and queries, and makes the
 * outputs. Query i of step t is position n + t + 1 - Q + i: the last Q
 * positions once step t's key is appended (ps_kv_cache_decode). */
static int buffers_make(const decode_source *src, const ps_attention_desc *desc, size_t n,
                        decode_buffers *b)
{
    const bench_run *run = src->run;
    const size_t steps = run->opt->steps, queries = desc->n_q;
    const size_t kv = desc->batch * desc->kv_heads, qh = desc->batch * desc->heads;
    const size_t lse_bytes = qh * queries * sizeof(float);
    cl_int err = CL_SUCCESS;

    memset(b, 0, sizeof *b);
    b->steps = steps;
    b->k_step = calloc(steps, sizeof *b->k_step);
    b->v_step = calloc(steps, sizeof *b->v_step);
    b->q_step = calloc(steps, sizeof *b->q_step);
    if (!b->k_step || !b->v_step || !b->q_step)
        err = CL_OUT_OF_HOST_MEMORY;
    fprintf(stderr, "prescore-bench: decode: uploading %zu prefill rows and %zu steps\n", n,
            steps);
    if (err == CL_SUCCESS)
        err = upload_rows(src, BENCH_STREAM_K, kv, 0, n, desc->k_layout.dtype, &b->k_pre);
    if (err == CL_SUCCESS)
        err = upload_rows(src, BENCH_STREAM_V, kv, 0, n, desc->v_layout.dtype, &b->v_pre);
    for (size_t t = 0; t < steps && err == CL_SUCCESS; ++t) {
        err = upload_rows(src, BENCH_STREAM_K, kv, n + t, 1, desc->k_layout.dtype,
                          &b->k_step[t]);
        if (err == CL_SUCCESS)
            err = upload_rows(src, BENCH_STREAM_V, kv, n + t, 1, desc->v_layout.dtype,
                              &b->v_step[t]);
        if (err == CL_SUCCESS)
            err = upload_rows(src, BENCH_STREAM_Q, qh, n + t + 1 - queries, queries,
                              desc->q_layout.dtype, &b->q_step[t]);
    }
    const size_t o_bytes = ps_tensor_bytes(desc, PS_TENSOR_O);
    if (err == CL_SUCCESS)
        b->o_cache = clCreateBuffer(run->cl_ctx, CL_MEM_READ_WRITE, o_bytes, NULL, &err);
    if (err == CL_SUCCESS)
        b->o_exact = clCreateBuffer(run->cl_ctx, CL_MEM_READ_WRITE, o_bytes, NULL, &err);
    if (err == CL_SUCCESS)
        b->lse_cache = clCreateBuffer(run->cl_ctx, CL_MEM_READ_WRITE, lse_bytes, NULL, &err);
    if (err == CL_SUCCESS)
        b->lse_exact = clCreateBuffer(run->cl_ctx, CL_MEM_READ_WRITE, lse_bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "prescore-bench: decode: creating the input buffers failed (OpenCL %d)\n",
                (int)err);
        buffers_release(b);
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

static int cache_failure(const char *what, ps_status st, const bench_run *run,
                         const ps_kv_cache *cache)
{
    const char *detail = cache ? ps_kv_cache_last_error(cache) : "";

    if (!detail || !*detail)
        detail = ps_context_last_error(run->ctx);
    fprintf(stderr, "prescore-bench: %s: %s%s%s\n", what, ps_status_string(st),
            detail && *detail ? ": " : "", detail ? detail : "");
    return bench_exit_code(st);
}

/* --check of one step: ||O_cache - O_exact||_F / ||O_exact||_F, and the sum
 * of |LSE_cache - LSE_exact| over the rows (with their count). */
typedef struct decode_check {
    float *o_cache, *o_exact, *lse_cache, *lse_exact; /* host copies, dense fp32 */
    void *raw;                                        /* O as stored */
    double lse_sum;
    size_t lse_rows;
} decode_check;

static cl_int read_o(const bench_run *run, const ps_attention_desc *desc, cl_mem o, void *raw,
                     float *dense)
{
    cl_int err = clEnqueueReadBuffer(run->cl_queue, o, CL_TRUE, 0,
                                     ps_tensor_bytes(desc, PS_TENSOR_O), raw, 0, NULL, NULL);
    if (err == CL_SUCCESS && ps_tensor_unpack(desc, PS_TENSOR_O, raw, dense) != PS_OK)
        err = CL_INVALID_VALUE;
    return err;
}

static cl_int check_step(const bench_run *run, const ps_attention_desc *desc,
                         const decode_buffers *b, decode_check *c, double *rel_error)
{
    const size_t rows = desc->batch * desc->heads * desc->n_q, elems = rows * desc->d_v;
    cl_int err = read_o(run, desc, b->o_cache, c->raw, c->o_cache);
    double diff = 0.0, norm = 0.0;

    if (err == CL_SUCCESS)
        err = read_o(run, desc, b->o_exact, c->raw, c->o_exact);
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(run->cl_queue, b->lse_cache, CL_TRUE, 0,
                                  rows * sizeof(float), c->lse_cache, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(run->cl_queue, b->lse_exact, CL_TRUE, 0,
                                  rows * sizeof(float), c->lse_exact, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return err;
    for (size_t i = 0; i < elems; ++i) {
        const double e = c->o_exact[i], x = (double)c->o_cache[i] - e;
        diff += x * x;
        norm += e * e;
    }
    /* NaN outputs (overflowing inputs) must not read as 0 below. */
    if (!isfinite(diff) || !isfinite(norm))
        *rel_error = NAN;
    else
        *rel_error = norm > 0.0 ? sqrt(diff / norm) : (diff > 0.0 ? INFINITY : 0.0);
    for (size_t r = 0; r < rows; ++r) {
        c->lse_sum += fabs((double)c->lse_cache[r] - (double)c->lse_exact[r]);
        c->lse_rows++;
    }
    return CL_SUCCESS;
}

static void check_free(decode_check *c)
{
    free(c->o_cache);
    free(c->o_exact);
    free(c->lse_cache);
    free(c->lse_exact);
    free(c->raw);
}

/* Per-step samples (ms) of the three timed calls and --check's errors. */
typedef struct decode_samples {
    double *append, *cache, *exact, *rel;
} decode_samples;

/* One append, the cache's decode and exact decode of step @p t; with
 * @p samples (NULL: the warm-up) their times and --check's error. */
static int decode_step(const bench_run *run, ps_kv_cache *cache, const ps_attention_desc *desc,
                       decode_buffers *b, size_t t, decode_samples *samples, decode_check *c)
{
    const int check = run->opt->check && samples;
    double t0 = bench_now_ms(), t1, t2, t3;
    ps_status st = ps_kv_cache_append(cache, b->k_step[t], b->v_step[t], 1);

    t1 = bench_now_ms();
    if (st != PS_OK)
        return cache_failure("ps_kv_cache_append", st, run, cache);
    st = ps_kv_cache_decode(cache, b->q_step[t], desc->n_q, b->o_cache,
                            check ? b->lse_cache : NULL, PS_DECODE_CACHE);
    t2 = bench_now_ms();
    if (st != PS_OK)
        return cache_failure("ps_kv_cache_decode", st, run, cache);
    st = ps_kv_cache_decode(cache, b->q_step[t], desc->n_q, b->o_exact,
                            check ? b->lse_exact : NULL, PS_DECODE_EXACT);
    t3 = bench_now_ms();
    if (st != PS_OK)
        return cache_failure("ps_kv_cache_decode (exact)", st, run, cache);
    if (!samples)
        return EXIT_OK;
    samples->append[t] = t1 - t0;
    samples->cache[t] = t2 - t1;
    samples->exact[t] = t3 - t2;
    if (check && check_step(run, desc, b, c, &samples->rel[t]) != CL_SUCCESS) {
        fprintf(stderr, "prescore-bench: --check: reading the decode outputs failed\n");
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

/* Keys a decode through the cache attends at length @p len: the sinks, the
 * kept keys and the window (kv_params.h's spans). */
static size_t attended_keys(const ps_attention_desc *desc, size_t len, size_t kept)
{
    const size_t sink = desc->sink < len ? desc->sink : len;
    size_t start = desc->window < len ? len - desc->window : 0;

    if (desc->method != PS_METHOD_PRESCORE)
        return len;
    start = start > sink ? start : sink;
    return sink + kept + (len - start);
}

static const char *score_name(const ps_attention_desc *desc)
{
    if (desc->method != PS_METHOD_PRESCORE)
        return "none";
    switch (desc->score) {
    case PS_SCORE_LEVERAGE:
        return "leverage";
    case PS_SCORE_NORM:
        return "norm";
    case PS_SCORE_NONE:
        return "none";
    default:
        return "kmeans";
    }
}

/* The timings, the cache's state, the bandwidth figures and --check's
 * errors into @p row. */
static void fill_row(const bench_run *run, const ps_attention_desc *desc, size_t n,
                     const ps_kv_cache_info *info, size_t rescores, decode_samples *s,
                     const decode_check *c, bench_decode_row *row)
{
    const bench_options *opt = run->opt;
    const size_t steps = opt->steps;
    bench_stats st;

    row->method = opt->method_name;
    row->score = score_name(desc);
    row->workload = run->data_q ? "data" : opt->workload_name;
    row->data = run->data_q ? run->data_name : NULL;
    row->layer = run->data_q ? run->data_layer : -1;
    row->data_heads = run->data_heads;
    row->device = run->device_name;
    row->shape = run->shape_name;
    row->dtype = opt->dtype_name;
    row->n = n;
    row->steps = steps;
    row->decode_queries = desc->n_q;
    row->capacity = desc->n_k;
    row->d = desc->d;
    row->heads = desc->heads;
    row->kv_heads = desc->kv_heads;
    row->batch = desc->batch;
    row->seed = opt->seed;
    row->data_seed = opt->data_seed;
    row->budget = desc->budget;
    row->keep_ratio = desc->keep_ratio;
    row->rescore_growth = desc->rescore_growth > 0.0f ? desc->rescore_growth : 1.0;
    row->sink = desc->sink;
    row->window = desc->window;

    st = bench_stats_of(s->append, steps);
    row->append_ms = st.median_ms;
    row->append_ms_p90 = bench_quantile(s->append, steps, 0.9);
    row->append_ms_max = st.max_ms;
    st = bench_stats_of(s->cache, steps);
    row->decode_ms = st.median_ms;
    row->decode_ms_p90 = bench_quantile(s->cache, steps, 0.9);
    row->decode_ms_max = st.max_ms;
    st = bench_stats_of(s->exact, steps);
    row->exact_decode_ms = st.median_ms;
    row->exact_decode_ms_p90 = bench_quantile(s->exact, steps, 0.9);
    row->exact_decode_ms_max = st.max_ms;
    row->tokens_per_s = 1000.0 / (row->append_ms + row->decode_ms);
    row->exact_tokens_per_s = 1000.0 / (row->append_ms + row->exact_decode_ms);
    row->speedup = row->decode_ms > 0.0 ? row->exact_decode_ms / row->decode_ms : NAN;

    row->device_bytes = info->device_bytes;
    row->length = info->length;
    row->kept = info->kept;
    row->attended = attended_keys(desc, info->length, info->kept);
    row->rescores = rescores;

    /* Exact decode reads every cached K and V row once: at the steps' mean
     * length n + (steps + 1) / 2. */
    {
        const size_t elem = desc->k_layout.dtype == PS_DTYPE_F16 ? 2 : 4;
        const double len = (double)n + 0.5 * (double)(steps + 1);
        row->exact_bytes = len * (double)(desc->kv_heads * desc->batch) *
                           (double)(desc->d + desc->d_v) * (double)elem;
    }
    row->bandwidth_gbs = row->exact_decode_ms > 0.0
                             ? row->exact_bytes / (row->exact_decode_ms * 1e6)
                             : NAN;
    if (run->bandwidth) {
        const bench_bandwidth_result *bw = run->bandwidth;
        row->bandwidth_measured = 1;
        row->peak_bandwidth_gbs = bw->status == CL_SUCCESS ? bw->gbs : NAN;
        row->peak_bandwidth_variant = bw->status == CL_SUCCESS ? bw->variant : "";
        row->bandwidth_error = bw->message;
        /* Time of exact decode over the time to read K and V once at the
         * measured bandwidth: 1 is the memory's limit. */
        row->exact_decode_bandwidth_ratio = row->peak_bandwidth_gbs / row->bandwidth_gbs;
    }
    if (opt->check) {
        st = bench_stats_of(s->rel, steps);
        row->check_measured = 1;
        row->rel_error = st.median_ms;
        row->rel_error_max = st.max_ms;
        row->lse_error = c->lse_rows ? c->lse_sum / (double)c->lse_rows : NAN;
        /* A NaN step sorts anywhere: the row's rel_error is then null. */
        for (size_t t = 0; t < steps && !row->non_finite; ++t)
            if (!isfinite(s->rel[t]))
                row->non_finite = "rel_error";
        if (row->non_finite)
            row->rel_error = row->rel_error_max = NAN;
        if (!row->non_finite && !isfinite(row->lse_error))
            row->non_finite = "lse_error";
    }
    if (run->peak) {
        row->peak_measured = 1;
        row->peak_available = run->peak->status == CL_SUCCESS;
        row->peak_gflops = run->peak->gflops;
        row->peak_variant = run->peak->variant;
        row->peak_error = run->peak->message;
    }
}

/* The cache's descriptor: capacity n + steps, decode_queries queries per
 * call; the budget default is the bench's min(n, 4096) of the prefill. */
static void decode_desc(const bench_options *opt, size_t n, ps_attention_desc *desc)
{
    bench_options_to_desc(opt, n, desc);
    desc->n_k = n + opt->steps;
    desc->n_q = opt->decode_queries;
}

/* Warm-up (prefill, step 0, both decodes; then reset) and the timed run. */
static int decode_timed(const bench_run *run, ps_kv_cache *cache, const ps_attention_desc *desc,
                        size_t n, decode_buffers *b, bench_decode_row *row)
{
    const size_t steps = run->opt->steps;
    const size_t rows = desc->batch * desc->heads * desc->n_q;
    decode_samples s = {NULL, NULL, NULL, NULL};
    decode_check c;
    ps_kv_cache_info info;
    size_t rescores_base = 0;
    ps_status st;
    double t0;
    int code;

    memset(&c, 0, sizeof c);
    s.append = calloc(steps, sizeof(double));
    s.cache = calloc(steps, sizeof(double));
    s.exact = calloc(steps, sizeof(double));
    s.rel = calloc(steps, sizeof(double));
    if (run->opt->check) {
        c.o_cache = malloc(rows * desc->d_v * sizeof(float));
        c.o_exact = malloc(rows * desc->d_v * sizeof(float));
        c.lse_cache = malloc(rows * sizeof(float));
        c.lse_exact = malloc(rows * sizeof(float));
        c.raw = malloc(ps_tensor_bytes(desc, PS_TENSOR_O));
    }
    if (!s.append || !s.cache || !s.exact || !s.rel ||
        (run->opt->check && (!c.o_cache || !c.o_exact || !c.lse_cache || !c.lse_exact || !c.raw))) {
        fprintf(stderr, "prescore-bench: out of host memory\n");
        code = EXIT_ERROR;
        goto cleanup;
    }

    fprintf(stderr, "prescore-bench: decode: warm-up (prefill, one step), then reset\n");
    st = ps_kv_cache_append(cache, b->k_pre, b->v_pre, n);
    if (st != PS_OK) {
        code = cache_failure("ps_kv_cache_append (prefill)", st, run, cache);
        goto cleanup;
    }
    code = decode_step(run, cache, desc, b, 0, NULL, &c);
    if (code != EXIT_OK)
        goto cleanup;
    st = ps_kv_cache_reset(cache);
    if (st == PS_OK)
        st = ps_kv_cache_get_info(cache, &info);
    if (st != PS_OK) {
        code = cache_failure("ps_kv_cache_reset", st, run, cache);
        goto cleanup;
    }
    rescores_base = info.rescores; /* reset may keep counting */

    fprintf(stderr, "prescore-bench: decode: prefill of %zu rows, %zu steps\n", n, steps);
    t0 = bench_now_ms();
    st = ps_kv_cache_append(cache, b->k_pre, b->v_pre, n);
    row->prefill_ms = bench_now_ms() - t0;
    if (st != PS_OK) {
        code = cache_failure("ps_kv_cache_append (prefill)", st, run, cache);
        goto cleanup;
    }
    release_mem(&b->k_pre); /* not read again: give its memory back */
    release_mem(&b->v_pre);
    for (size_t t = 0; t < steps && code == EXIT_OK; ++t)
        code = decode_step(run, cache, desc, b, t, &s, &c);
    if (code != EXIT_OK)
        goto cleanup;
    st = ps_kv_cache_get_info(cache, &info);
    if (st != PS_OK) {
        code = cache_failure("ps_kv_cache_get_info", st, run, cache);
        goto cleanup;
    }
    fill_row(run, desc, n, &info, info.rescores - rescores_base, &s, &c, row);

cleanup:
    check_free(&c);
    free(s.append);
    free(s.cache);
    free(s.exact);
    free(s.rel);
    return code;
}

int bench_decode_run(const bench_run *run, size_t n)
{
    const bench_options *opt = run->opt;
    const size_t steps = opt->steps;
    ps_attention_desc desc;
    char message[256] = "";
    decode_buffers b;
    ps_kv_cache *cache = NULL;
    bench_decode_row row;
    ps_status st;
    int code;

    if (run->data_q && n == 0) /* the file's last rows are the steps */
        n = run->data_rows > steps ? run->data_rows - steps : 0;
    if (n == 0 || (run->data_q && n + steps > run->data_rows)) {
        fprintf(stderr, "prescore-bench: --decode: n = %zu prefill rows and %zu steps need "
                        "n >= 1 and n + steps <= %zu rows of --data\n",
                n, steps, run->data_rows);
        return EXIT_ERROR;
    }
    if (opt->decode_queries > n + 1) {
        fprintf(stderr, "prescore-bench: --decode-queries %zu: at most n + 1 = %zu\n",
                opt->decode_queries, n + 1);
        return EXIT_ERROR;
    }
    decode_desc(opt, n, &desc);
    st = ps_attention_desc_validate(&desc, message, sizeof message);
    if (st != PS_OK) {
        fprintf(stderr, "prescore-bench: --decode n=%zu: %s%s%s\n", n, ps_status_string(st),
                *message ? ": " : "", message);
        return bench_exit_code(st);
    }
    fprintf(stderr, "prescore-bench: decode %s n=%zu steps=%zu queries=%zu heads=%zu/%zu d=%zu\n",
            opt->method_name, n, steps, desc.n_q, desc.heads, desc.kv_heads, desc.d);
    st = ps_kv_cache_create(run->ctx, &desc, &cache);
    if (st != PS_OK)
        return cache_failure("ps_kv_cache_create", st, run, NULL);

    const decode_source src = {run, run->data_q ? run->data_rows : n + steps, desc.d,
                               desc.heads / desc.kv_heads};
    code = buffers_make(&src, &desc, n, &b);
    memset(&row, 0, sizeof row);
    if (code == EXIT_OK)
        code = decode_timed(run, cache, &desc, n, &b, &row);
    buffers_release(&b);
    ps_kv_cache_destroy(cache);
    if (code != EXIT_OK)
        return code;
    bench_report_decode_row(run->report, &row);
    if (row.non_finite) {
        fprintf(stderr, "prescore-bench: --check: %s is not finite in the decode row n=%zu",
                row.non_finite, n);
        if (run->data_q)
            fprintf(stderr, ", --data %s layer %ld", run->data_name, run->data_layer);
        fprintf(stderr, " (exit %d)\n", EXIT_NON_FINITE);
        return EXIT_NON_FINITE;
    }
    return EXIT_OK;
}
