/* prescore-bench: times attention on one OpenCL device through the public
 * API and reports it as a table, JSON lines or CSV (bench/README.md, the
 * benchmark contract). Inputs are seeded random Q, K, V, or with --data one layer of
 * a recorded PSQKV file (qkv_file.c, docs/DATA.md), uploaded once; each row is a
 * warm-up and --repeat timed ps_attention calls on the wall clock (for the
 * score-* methods: ps_score_keys + ps_select_keys). Optional: the device's
 * FMA peak (peak.c) and a CLBlast SGEMM roof (gemm_roof.c). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "prescore/prescore.h"

#include "bandwidth.h"
#include "check.h"
#include "decode.h"
#include "gemm_roof.h"
#include "options.h"
#include "peak.h"
#include "qkv_file.h"
#include "report.h"
#include "run.h"
#include "table.h"
#include "timing.h"
#include "workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_exit_code(ps_status st)
{
    if (st == PS_OK)
        return EXIT_OK;
    return (st == PS_ERR_NOT_IMPLEMENTED || st == PS_ERR_UNSUPPORTED) ? EXIT_UNSUPPORTED
                                                                       : EXIT_ERROR;
}

int bench_library_failure(const char *what, ps_status st, const ps_context *ctx,
                          const ps_plan *plan)
{
    /* A plan's calls keep their message on the plan, context-level calls on
     * the context (NULL: failed constructors). */
    const char *detail = plan && *ps_plan_last_error(plan) ? ps_plan_last_error(plan)
                                                           : ps_context_last_error(ctx);

    fprintf(stderr, "prescore-bench: %s: %s%s%s\n", what, ps_status_string(st),
            detail && *detail ? ": " : "", detail ? detail : "");
    return bench_exit_code(st);
}

/* --version: the device is the one a run with the same --device and --shape
 * would use, so its context is created (kernels compile on a cold cache). */
static int print_version(const bench_options *opt)
{
    ps_context_options ctx_opt;
    ps_context *ctx = NULL;
    ps_device_info info;

    ps_context_options_default(&ctx_opt);
    ctx_opt.device = opt->device;
    ctx_opt.shape = opt->shape;
    ctx_opt.verbose = opt->verbose;
    ps_status st = ps_context_create(&ctx, &ctx_opt);
    if (st == PS_OK)
        st = ps_context_device_info(ctx, &info);
    if (st == PS_OK) {
        bench_report_version(stdout, opt->format, &info,
                             bench_shape_name(ps_context_kernel_shape(ctx)), NULL);
    } else {
        char reason[512];
        const char *detail = ctx ? ps_context_last_error(ctx) : ps_context_last_error(NULL);
        snprintf(reason, sizeof reason, "%s%s%s", ps_status_string(st),
                 detail && *detail ? ": " : "", detail ? detail : "");
        bench_report_version(stdout, opt->format, NULL, NULL, reason);
    }
    if (ctx)
        ps_context_destroy(ctx);
    return EXIT_OK;
}

static int list_devices(bench_format format)
{
    ps_device_info *infos = NULL;
    size_t count = 0, capacity;
    ps_status st = ps_device_list(NULL, 0, &count);

    if (st != PS_OK)
        return bench_library_failure("ps_device_list", st, NULL, NULL);
    capacity = count;
    if (capacity) {
        infos = calloc(capacity, sizeof *infos);
        if (!infos) {
            fprintf(stderr, "prescore-bench: out of host memory\n");
            return EXIT_ERROR;
        }
        st = ps_device_list(infos, capacity, &count);
        if (st != PS_OK) {
            free(infos);
            return bench_library_failure("ps_device_list", st, NULL, NULL);
        }
        if (count > capacity) /* a device appeared in between */
            count = capacity;
    }
    bench_report_devices(stdout, format, infos, count);
    free(infos);
    return EXIT_OK;
}

/* a * b * c * d elements, or 0 on size_t overflow. */
static size_t tensor_elems(size_t a, size_t b, size_t c, size_t d)
{
    size_t dims[4], total = 1;
    int i;

    dims[0] = a;
    dims[1] = b;
    dims[2] = c;
    dims[3] = d;
    for (i = 0; i < 4; ++i) {
        if (dims[i] != 0 && total > (size_t)-1 / sizeof(float) / dims[i])
            return 0;
        total *= dims[i];
    }
    return total;
}

/* Exact-equivalent attention work (bench/README.md): two n×n×d products per head,
 * halved when causal, whatever the method actually computes. */
static double exact_flops(const ps_attention_desc *desc)
{
    double pairs = (double)desc->n_q * (double)desc->n_k * (double)desc->batch;
    if (desc->cu_seqlens_q) { /* --varlen: each sequence's own square */
        pairs = 0.0;
        for (size_t b = 0; b < desc->batch; b++)
            pairs += (double)(desc->cu_seqlens_q[b + 1] - desc->cu_seqlens_q[b]) *
                     (double)(desc->cu_seqlens_k[b + 1] - desc->cu_seqlens_k[b]);
    }
    const double f = 4.0 * pairs * (double)desc->d * (double)desc->heads;
    return desc->causal ? f / 2.0 : f;
}

/* A read-only buffer holding @p count floats of @p host, or the seeded
 * workload when @p host is NULL. */
static cl_int input_buffer(const bench_run *run, const float *host, size_t count,
                           uint64_t stream, const bench_tensor_shape *shape, cl_mem *out)
{
    cl_int err = CL_SUCCESS;
    if (!host)
        return bench_random_buffer(run->cl_ctx, run->cl_queue, count, run->opt->data_seed,
                                   stream, shape, out);
    *out = clCreateBuffer(run->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                          count * sizeof(float), (void *)host, &err);
    if (err != CL_SUCCESS)
        *out = NULL;
    return err;
}

static void release_mem(cl_mem *m)
{
    if (*m)
        clReleaseMemObject(*m);
    *m = NULL;
}

void bench_inputs_release(bench_inputs *in)
{
    release_mem(&in->v);
    release_mem(&in->k);
    release_mem(&in->q);
}

/* 1 when tensor t of desc is dense fp32 [batch, head, token, dim]: the
 * buffers the workload and --data make. */
static int dense_f32(const ps_attention_desc *desc, ps_tensor_kind t)
{
    const ps_tensor_layout *l = t == PS_TENSOR_Q   ? &desc->q_layout
                                : t == PS_TENSOR_K ? &desc->k_layout
                                : t == PS_TENSOR_V ? &desc->v_layout
                                                   : &desc->o_layout;
    return l->dtype == PS_DTYPE_F32 && l->offset == 0 && !l->stride[0] && !l->stride[1] &&
           !l->stride[2] && !l->stride[3];
}

/* Replaces the dense fp32 buffer *m of tensor t by one laid out as desc says
 * (--dtype, --layout): read back, ps_tensor_pack on the host, upload. */
static cl_int lay_out(const bench_run *run, const ps_attention_desc *desc, ps_tensor_kind t,
                      size_t count, cl_mem *m)
{
    if (dense_f32(desc, t))
        return CL_SUCCESS;
    const size_t bytes = ps_tensor_bytes(desc, t);
    float *dense = malloc(count * sizeof *dense);
    void *packed = calloc(bytes ? bytes : 1, 1);
    cl_int err = dense && packed ? CL_SUCCESS : CL_OUT_OF_HOST_MEMORY;
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(run->cl_queue, *m, CL_TRUE, 0, count * sizeof *dense, dense,
                                  0, NULL, NULL);
    if (err == CL_SUCCESS && ps_tensor_pack(desc, t, dense, packed) != PS_OK)
        err = CL_INVALID_VALUE;
    cl_mem out = NULL;
    if (err == CL_SUCCESS)
        out = clCreateBuffer(run->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes,
                             packed, &err);
    if (err == CL_SUCCESS) {
        clReleaseMemObject(*m);
        *m = out;
    }
    free(dense);
    free(packed);
    return err;
}

int bench_inputs_upload(const bench_run *run, const ps_attention_desc *desc,
                        bench_workload workload, bench_inputs *in)
{
    const size_t batch = bench_batch_dim(desc);
    size_t q_elems = tensor_elems(batch, desc->heads, desc->n_q, desc->d);
    size_t kv_elems = tensor_elems(batch, desc->kv_heads, desc->n_k, desc->d);
    size_t v_elems = tensor_elems(batch, desc->kv_heads, desc->n_k, desc->d_v);
    const bench_tensor_shape q_shape = {workload, desc->n_q, desc->d,
                                        desc->heads / desc->kv_heads, desc->n_k};
    const bench_tensor_shape k_shape = {workload, desc->n_k, desc->d, 1, desc->n_k};
    cl_int err;

    memset(in, 0, sizeof *in);
    if (q_elems == 0 || kv_elems == 0 || v_elems == 0) {
        fprintf(stderr, "prescore-bench: tensors too large for this host\n");
        return EXIT_ERROR;
    }
    if (!run->quiet)
        fprintf(stderr, "prescore-bench: uploading Q, K, V (%.1f MiB)\n",
                (double)(q_elems + kv_elems + v_elems) * sizeof(float) / (1024.0 * 1024.0));
    err = input_buffer(run, run->data_q, q_elems, BENCH_STREAM_Q, &q_shape, &in->q);
    if (err == CL_SUCCESS)
        err = input_buffer(run, run->data_k, kv_elems, BENCH_STREAM_K, &k_shape, &in->k);
    if (err == CL_SUCCESS)
        err = input_buffer(run, run->data_v, v_elems, BENCH_STREAM_V, NULL, &in->v);
    if (err == CL_SUCCESS)
        err = lay_out(run, desc, PS_TENSOR_Q, q_elems, &in->q);
    if (err == CL_SUCCESS)
        err = lay_out(run, desc, PS_TENSOR_K, kv_elems, &in->k);
    if (err == CL_SUCCESS)
        err = lay_out(run, desc, PS_TENSOR_V, v_elems, &in->v);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "prescore-bench: creating the input buffers failed (OpenCL %d)\n",
                (int)err);
        bench_inputs_release(in);
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

int bench_time_attention(const bench_run *run, ps_plan *plan, const ps_attention_desc *desc,
                         const bench_inputs *in, int repeat, int warmup, bench_row *row)
{
    cl_mem o = NULL;
    double *samples = NULL, *stage_samples = NULL;
    size_t o_elems = tensor_elems(bench_batch_dim(desc), desc->heads, desc->n_q, desc->d_v);
    ps_stage_times times = {0};
    cl_int err = CL_SUCCESS;
    ps_status st;
    int code = EXIT_OK, r;

    if (o_elems == 0) {
        fprintf(stderr, "prescore-bench: tensors too large for this host\n");
        return EXIT_ERROR;
    }
    o = clCreateBuffer(run->cl_ctx, CL_MEM_READ_WRITE, ps_tensor_bytes(desc, PS_TENSOR_O), NULL,
                       &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "prescore-bench: creating the output buffer failed (OpenCL %d)\n",
                (int)err);
        return EXIT_ERROR;
    }
    samples = malloc((size_t)repeat * sizeof *samples);
    /* Per-stage device times (profiled markers), median over the runs. */
    stage_samples = calloc((size_t)repeat * BENCH_MAX_STAGES, sizeof(double));
    if (!samples || !stage_samples) {
        fprintf(stderr, "prescore-bench: out of host memory\n");
        code = EXIT_ERROR;
        goto cleanup;
    }

    if (!run->quiet)
        fprintf(stderr, "prescore-bench: warm-up, then %d timed runs\n", repeat);
    st = warmup ? ps_attention(plan, in->q, in->k, in->v, o, NULL) : PS_OK;
    for (r = 0; r < repeat && st == PS_OK; ++r) {
        double t0 = bench_now_ms();
        st = ps_attention(plan, in->q, in->k, in->v, o, NULL);
        samples[r] = bench_now_ms() - t0;
        if (st == PS_OK && ps_plan_stage_times(plan, &times) == PS_OK)
            for (size_t i = 0; i < times.count && i < BENCH_MAX_STAGES; i++)
                stage_samples[i * (size_t)repeat + (size_t)r] = times.ms[i];
    }
    if (st != PS_OK) {
        code = bench_library_failure("ps_attention", st, run->ctx, plan);
        goto cleanup;
    }
    if (times.count > 0) {
        row->stage_count = times.count < BENCH_MAX_STAGES ? times.count : BENCH_MAX_STAGES;
        for (size_t i = 0; i < row->stage_count; i++) {
            row->stage_names[i] = times.names[i];
            row->stage_ms[i] =
                bench_stats_of(stage_samples + i * (size_t)repeat, (size_t)repeat).median_ms;
        }
    }
    /* Device memory of the call: the plan's workspace and the four tensors. */
    row->device_bytes = ps_plan_device_bytes(plan);
    for (int t = PS_TENSOR_Q; t <= PS_TENSOR_O; t++)
        row->device_bytes += ps_tensor_bytes(desc, (ps_tensor_kind)t);
    {
        bench_stats s = bench_stats_of(samples, (size_t)repeat);
        row->time_ms = s.median_ms;
        row->time_min_ms = s.min_ms;
        row->time_max_ms = s.max_ms;
    }

cleanup:
    free(stage_samples);
    free(samples);
    release_mem(&o);
    return code;
}

int bench_equal_budget(const bench_run *run, ps_attention_desc *desc)
{
    ps_attention_desc pd;
    ps_plan *plan = NULL;
    ps_status st;

    if (desc->method != PS_METHOD_HYPER && desc->method != PS_METHOD_PRESCORE)
        return EXIT_OK;
    ps_attention_desc_default(&pd);
    pd.batch = desc->batch;
    pd.heads = desc->heads;
    pd.kv_heads = desc->kv_heads;
    pd.n_q = desc->n_q;
    pd.n_k = desc->n_k;
    pd.d = desc->d;
    pd.d_v = desc->d_v;
    pd.causal = desc->causal;
    pd.method = PS_METHOD_PRESCORE;
    pd.budget = desc->n_k < BENCH_DEFAULT_BUDGET ? desc->n_k : BENCH_DEFAULT_BUDGET;
    st = ps_plan_create(run->ctx, &pd, &plan);
    if (st == PS_OK)
        st = ps_plan_desc(plan, &pd);
    ps_plan_destroy(plan);
    if (st != PS_OK)
        return bench_library_failure("the default prescore plan (equal budget)", st, run->ctx,
                                     NULL);
    /* Explicit options (non-zero fields) win. */
    desc->block = desc->block ? desc->block : pd.block;
    desc->samples = desc->samples ? desc->samples : pd.samples;
    desc->global_keys = desc->global_keys == PS_GLOBAL_KEYS_AUTO ? pd.global_keys
                                                                 : desc->global_keys;
    desc->lsh_bits = desc->lsh_bits ? desc->lsh_bits : pd.lsh_bits;
    return EXIT_OK;
}

/* Fills the --check metrics of @p row from @p plan's run on @p in. */
static int check_row(const bench_run *run, ps_plan *plan, const ps_attention_desc *desc,
                     const bench_inputs *in, bench_workload workload, bench_row *row)
{
    bench_reference ref;
    bench_check_result c;
    ps_status st;

    fprintf(stderr, "prescore-bench: --check: exact attention on the device\n");
    st = bench_reference_make(run->ctx, desc, in->q, in->k, in->v, workload,
                              run->opt->data_seed, &ref);
    if (st == PS_OK) {
        st = bench_check(run->ctx, plan, desc, in->q, in->k, in->v, &ref, &c);
        bench_reference_free(&ref);
    }
    if (st != PS_OK)
        return bench_library_failure("--check", st, run->ctx, plan);
    row->check_measured = 1;
    row->rel_error = c.rel_error;
    row->lse_error = c.lse_error;
    row->heavy_recall = c.heavy_recall;
    row->floor_error = c.floor_error;
    row->oracle_floor_error = c.oracle_floor_error;
    row->random_floor_error = c.random_floor_error;
    row->heavy_mass = ref.heavy_mass;
    if (c.measured & BENCH_METRIC_KEYS_KEPT) {
        row->keys_kept_measured = 1;
        row->keys_kept = c.keys_kept;
    }
    row->est_heads = c.est_heads;
    for (size_t h = 0; h < c.est_heads; h++) {
        row->head_rel_error[h] = c.head_rel[h];
        row->head_lse_error[h] = c.head_lse[h];
        row->est_rel_error[h] = c.est_rel[h];
        row->est_lse_error[h] = c.est_lse[h];
    }
    row->non_finite = bench_check_non_finite(&c);
    if (!row->non_finite && ref.heavy_mass_measured && !isfinite(ref.heavy_mass))
        row->non_finite = "heavy_mass";
    if (isfinite(ref.heavy_mass))
        fprintf(stderr, "prescore-bench: heavy workload: measured mean share of the exact "
                        "softmax mass on the planted keys %.4f (target %.2f)\n",
                ref.heavy_mass, BENCH_HEAVY_MASS);
    return EXIT_OK;
}

/* Uploads the inputs, times @p plan and checks it (--check). */
static int time_attention(const bench_run *run, ps_plan *plan, const ps_attention_desc *desc,
                          bench_row *row)
{
    const bench_workload workload = run->data_q ? BENCH_WORKLOAD_GAUSSIAN : run->opt->workload;
    bench_inputs in;
    int code = bench_inputs_upload(run, desc, workload, &in);

    if (code == EXIT_OK)
        code = bench_time_attention(run, plan, desc, &in, run->opt->repeat, 1, row);
    if (code == EXIT_OK && run->opt->check)
        code = check_row(run, plan, desc, &in, workload, row);
    bench_inputs_release(&in); /* before the roof, which may need the memory */
    return code;
}

/* score-* methods: warm-up and --repeat timed ps_score_keys + ps_select_keys
 * on seeded keys; fills the timing, the per-stage medians and keys_kept of
 * @p row. @return an exit code. */
static int time_scoring(const bench_run *run, ps_plan *plan, const ps_attention_desc *desc,
                        bench_row *row)
{
    const bench_options *opt = run->opt;
    cl_mem k = NULL, scores = NULL, indices = NULL, counts = NULL;
    double *samples = NULL;
    cl_uint *kept = NULL;
    size_t heads = desc->batch * desc->kv_heads;
    size_t kv_elems = tensor_elems(desc->batch, desc->kv_heads, desc->n_k, desc->d);
    size_t score_elems = tensor_elems(1, desc->batch, desc->kv_heads, desc->n_k);
    size_t capacity = ps_plan_selected_capacity(plan);
    size_t index_elems = tensor_elems(1, desc->batch, desc->kv_heads, capacity ? capacity : 1);
    cl_int err = CL_SUCCESS;
    ps_status st = PS_OK;
    const char *failed = "";
    int code = EXIT_OK, r;
    size_t i;

    if (kv_elems == 0 || score_elems == 0 || index_elems == 0) {
        fprintf(stderr, "prescore-bench: tensors too large for this host\n");
        return EXIT_ERROR;
    }
    fprintf(stderr, "prescore-bench: uploading K (%.1f MiB)\n",
            (double)kv_elems * sizeof(float) / (1024.0 * 1024.0));
    const bench_tensor_shape k_shape = {opt->workload, desc->n_k, desc->d, 1, desc->n_k};
    err = input_buffer(run, run->data_k, kv_elems, BENCH_STREAM_K, &k_shape, &k);
    if (err == CL_SUCCESS)
        scores = clCreateBuffer(run->cl_ctx, CL_MEM_READ_WRITE, score_elems * sizeof(float),
                                NULL, &err);
    if (err == CL_SUCCESS)
        indices = clCreateBuffer(run->cl_ctx, CL_MEM_READ_WRITE, index_elems * sizeof(cl_uint),
                                 NULL, &err);
    if (err == CL_SUCCESS)
        counts = clCreateBuffer(run->cl_ctx, CL_MEM_READ_WRITE, heads * sizeof(cl_uint), NULL,
                                &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "prescore-bench: creating the buffers failed (OpenCL %d)\n", (int)err);
        code = EXIT_ERROR;
        goto cleanup;
    }
    /* Three sample rows: score, select, total. */
    samples = malloc(3 * (size_t)opt->repeat * sizeof *samples);
    kept = malloc(heads * sizeof *kept);
    if (!samples || !kept) {
        fprintf(stderr, "prescore-bench: out of host memory\n");
        code = EXIT_ERROR;
        goto cleanup;
    }

    fprintf(stderr, "prescore-bench: warm-up, then %d timed runs of scoring and selection\n",
            opt->repeat);
    for (r = -1; r < opt->repeat; ++r) {
        double t0 = bench_now_ms(), t1, t2;
        st = ps_score_keys(plan, k, scores);
        t1 = bench_now_ms();
        if (st != PS_OK) {
            failed = "ps_score_keys";
            break;
        }
        st = ps_select_keys(plan, scores, indices, counts);
        t2 = bench_now_ms();
        if (st != PS_OK) {
            failed = "ps_select_keys";
            break;
        }
        if (r >= 0) {
            samples[r] = t1 - t0;
            samples[opt->repeat + r] = t2 - t1;
            samples[2 * opt->repeat + r] = t2 - t0;
        }
    }
    if (st != PS_OK) {
        code = bench_library_failure(failed, st, run->ctx, plan);
        goto cleanup;
    }
    err = clEnqueueReadBuffer(run->cl_queue, counts, CL_TRUE, 0, heads * sizeof(cl_uint), kept,
                              0, NULL, NULL);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "prescore-bench: reading the kept-key counts failed (OpenCL %d)\n",
                (int)err);
        code = EXIT_ERROR;
        goto cleanup;
    }
    {
        bench_stats score = bench_stats_of(samples, (size_t)opt->repeat);
        bench_stats sel = bench_stats_of(samples + opt->repeat, (size_t)opt->repeat);
        bench_stats total = bench_stats_of(samples + 2 * opt->repeat, (size_t)opt->repeat);
        double sum = 0.0;

        row->time_ms = total.median_ms;
        row->time_min_ms = total.min_ms;
        row->time_max_ms = total.max_ms;
        row->stage_count = 2;
        row->stage_names[0] = "score";
        row->stage_ms[0] = score.median_ms;
        row->stage_names[1] = "select";
        row->stage_ms[1] = sel.median_ms;
        for (i = 0; i < heads; ++i)
            sum += (double)kept[i];
        row->keys_kept_measured = 1;
        row->keys_kept = sum / (double)heads;
    }

cleanup:
    free(kept);
    free(samples);
    release_mem(&counts);
    release_mem(&indices);
    release_mem(&scores);
    release_mem(&k);
    return code;
}

/* The --check metric @p name of @p row (bench_check_non_finite's names). */
static double row_metric(const bench_row *row, const char *name)
{
    if (strcmp(name, "rel_error") == 0)
        return row->rel_error;
    if (strcmp(name, "lse_error") == 0)
        return row->lse_error;
    if (strcmp(name, "heavy_recall") == 0)
        return row->heavy_recall;
    if (strcmp(name, "floor_error") == 0)
        return row->floor_error;
    if (strcmp(name, "keys_kept") == 0)
        return row->keys_kept;
    if (strcmp(name, "oracle_floor_error") == 0)
        return row->oracle_floor_error;
    if (strcmp(name, "random_floor_error") == 0)
        return row->random_floor_error;
    return row->heavy_mass;
}

/* "NaN", "+inf" or "-inf" (printf's spelling of NaN varies: "-nan"). */
static const char *non_finite_name(double v)
{
    return isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf";
}

/* Creates the plan for one n, times it, adds the roof and the peak, reports
 * a row. @return an exit code. */
static int run_one(const bench_run *run, size_t n)
{
    const bench_options *opt = run->opt;
    ps_attention_desc desc;
    ps_plan *plan = NULL;
    bench_roof_result roof;
    bench_row row;
    ps_status st;
    int code;

    bench_options_to_desc(opt, n, &desc);
    if (opt->equal_budget) {
        code = bench_equal_budget(run, &desc);
        if (code != EXIT_OK)
            return code;
    }
    fprintf(stderr, "prescore-bench: %s n=%zu d=%zu heads=%zu kv_heads=%zu batch=%zu%s: plan\n",
            opt->method_name, n, desc.d, desc.heads, desc.kv_heads, desc.batch,
            desc.causal ? " causal" : "");
    st = ps_plan_create(run->ctx, &desc, &plan);
    if (st != PS_OK)
        return bench_library_failure("ps_plan_create", st, run->ctx, NULL);
    st = ps_plan_desc(plan, &desc);
    if (st != PS_OK) {
        code = bench_library_failure("ps_plan_desc", st, run->ctx, NULL);
        ps_plan_destroy(plan);
        return code;
    }
    if (desc.cu_seqlens_q) /* the plan's copies go with it: keep pointing at ours */
        desc.cu_seqlens_q = desc.cu_seqlens_k = opt->varlen_cu;

    memset(&row, 0, sizeof row);
    if (opt->score_only)
        code = time_scoring(run, plan, &desc, &row);
    else
        code = time_attention(run, plan, &desc, &row);
    ps_plan_destroy(plan);
    if (code != EXIT_OK)
        return code;

    row.gflops = row.time_ms > 0.0 ? exact_flops(&desc) / (row.time_ms * 1e6) : 0.0;
    row.method = opt->method_name;
    row.workload = run->data_q ? "data" : opt->workload_name;
    row.layer = -1;
    if (run->data_q) {
        row.data = run->data_name;
        row.layer = run->data_layer;
        row.data_heads = run->data_heads;
    }
    row.device = run->device_name;
    row.shape = run->shape_name;
    row.dtype = opt->dtype_name;
    row.layout = opt->layout_name;
    row.varlen_count = opt->varlen_count;
    row.varlen_cu = opt->varlen_cu;
    row.n = n;
    row.d = desc.d;
    row.heads = desc.heads;
    row.kv_heads = desc.kv_heads;
    row.batch = desc.batch;
    row.causal = desc.causal;
    row.seed = opt->seed;
    row.data_seed = opt->data_seed;
    if (desc.method != PS_METHOD_EXACT) {
        row.params_known = 1;
        row.budget = desc.method == PS_METHOD_PRESCORE ? desc.budget : 0;
        row.selection = desc.selection == PS_SELECTION_STRATIFIED ? "stratified"
                        : desc.selection == PS_SELECTION_WEIGHTED ? "weighted"
                                                                  : "top";
        row.sketch_queries = desc.sketch_queries;
        row.block = desc.block;
        row.samples = desc.samples;
        row.global_keys = desc.global_keys;
        row.lsh_bits = desc.lsh_bits;
    }
    row.repeat = opt->repeat;

    if (opt->gemm_roof) {
        bench_gemm_roof_measure(run->cl_ctx, run->cl_dev, run->cl_queue, n, desc.d,
                                opt->repeat, opt->seed, 1, &roof);
        if (!roof.available || roof.message[0])
            fprintf(stderr, "prescore-bench: roof: %s\n", roof.message);
        row.roof_measured = 1;
        row.roof_available = roof.available;
        row.roof_gflops = roof.gflops;
        row.roof_layout = roof.layout;
        row.roof_error = roof.message;
    }
    if (run->peak) {
        row.peak_measured = 1;
        row.peak_available = run->peak->status == CL_SUCCESS;
        row.peak_gflops = run->peak->gflops;
        row.peak_variant = run->peak->variant;
        row.peak_error = run->peak->message;
    }
    bench_report_row(run->report, &row);
    if (row.non_finite) {
        const char *shown = non_finite_name(row_metric(&row, row.non_finite));
        if (run->data_q)
            fprintf(stderr,
                    "prescore-bench: --check: %s is %s in the row of %s n=%zu, --data %s "
                    "layer %ld heads %s: non-finite error metric (exit %d)\n",
                    row.non_finite, shown, opt->method_name, n, run->data_name,
                    run->data_layer, run->data_heads, EXIT_NON_FINITE);
        else
            fprintf(stderr,
                    "prescore-bench: --check: %s is %s in the row of %s n=%zu, workload %s: "
                    "non-finite error metric (exit %d)\n",
                    row.non_finite, shown, opt->method_name, n, opt->workload_name,
                    EXIT_NON_FINITE);
        return EXIT_NON_FINITE;
    }
    return EXIT_OK;
}

/* Checks every row's descriptor with the library's own validation
 * (ps_attention_desc_validate: head dims, token and head counts, overflow)
 * before touching a device or allocating from the shapes, so that a bad
 * shape fails in milliseconds. @p what names the source of the shapes in the
 * message ("--data FILE"), or NULL: "n=N". */
static int validate_all(const bench_options *opt, const char *what)
{
    size_t i;

    for (i = 0; i < opt->n_count; ++i) {
        ps_attention_desc desc;
        char message[256] = "";
        ps_status st;

        bench_options_to_desc(opt, opt->n[i], &desc);
        st = ps_attention_desc_validate(&desc, message, sizeof message);
        if (st != PS_OK) {
            if (what)
                fprintf(stderr, "prescore-bench: %s: %s%s%s\n", what, ps_status_string(st),
                        *message ? ": " : "", message);
            else
                fprintf(stderr, "prescore-bench: n=%zu: %s%s%s\n", opt->n[i],
                        ps_status_string(st), *message ? ": " : "", message);
            return bench_exit_code(st);
        }
    }
    return EXIT_OK;
}

/* --data: the open file, the selected stored heads and one layer's inputs. */
typedef struct bench_data {
    qkv_file *file;
    size_t *heads;   /* stored head indices run as the row's heads */
    size_t head_count;
    float *q, *k, *v; /* [head_count][n][d] of the current layer */
    char head_list[512];
    const char *name;
} bench_data;

static void data_free(bench_data *data)
{
    qkv_file_close(data->file);
    free(data->heads);
    free(data->q);
    free(data->k);
    free(data->v);
    memset(data, 0, sizeof *data);
}

/* Opens --data, checks --layer/--head against it, sets the shape options
 * from the file (n, d, heads; batch 1) and checks them with the library's
 * validation. Allocates nothing from the shapes (data_alloc does, once the
 * device is known): a header with a shape the library does not support
 * fails here, whatever size it claims. @return an exit code. */
static int data_open(bench_options *opt, bench_data *data)
{
    char message[512], what[600];
    qkv_status qs = qkv_file_open(opt->data_file, &data->file, message, sizeof message);
    qkv_file *f;
    size_t i, selected = 0, used = 0;
    const char *slash;
    int code;

    if (qs != QKV_OK) {
        fprintf(stderr, "prescore-bench: --data: %s: %s\n", qkv_status_string(qs), message);
        return EXIT_ERROR;
    }
    f = data->file;
    slash = strrchr(opt->data_file, '/');
    data->name = slash ? slash + 1 : opt->data_file;
    fprintf(stderr, "prescore-bench: --data %s: %zu layers, %zu heads, n = %zu, d = %zu, %s\n",
            data->name, f->layers, f->heads, f->n, f->d,
            f->dtype == QKV_DTYPE_FP16 ? "fp16" : "fp32");
    if (opt->data_layer >= 0 && qkv_file_find_layer(f, (uint32_t)opt->data_layer) == (size_t)-1) {
        fprintf(stderr, "prescore-bench: --layer %ld: %s holds no such layer\n", opt->data_layer,
                data->name);
        data_free(data);
        return EXIT_ERROR;
    }
    for (i = 0; i < f->heads; ++i)
        if (opt->data_head < 0 || (long)f->head_ids[i] == opt->data_head)
            ++selected;
    if (selected == 0) {
        fprintf(stderr, "prescore-bench: --head %ld: %s holds no such head\n", opt->data_head,
                data->name);
        data_free(data);
        return EXIT_ERROR;
    }
    /* Every shape field of the header, against what the library supports. */
    opt->n[0] = f->n;
    opt->n_count = 1;
    opt->d = f->d;
    opt->heads = selected;
    opt->kv_heads = selected;
    opt->batch = 1;
    snprintf(what, sizeof what, "--data %s", data->name);
    code = validate_all(opt, what);
    if (code != EXIT_OK) {
        data_free(data);
        return code;
    }

    data->heads = malloc(selected * sizeof *data->heads);
    if (!data->heads) {
        fprintf(stderr, "prescore-bench: out of host memory\n");
        data_free(data);
        return EXIT_ERROR;
    }
    for (i = 0; i < f->heads; ++i) {
        if (opt->data_head >= 0 && (long)f->head_ids[i] != opt->data_head)
            continue;
        data->heads[data->head_count++] = i;
        used += (size_t)snprintf(data->head_list + used,
                                 used < sizeof data->head_list ? sizeof data->head_list - used : 0,
                                 "%s%u", data->head_count > 1 ? "," : "", f->head_ids[i]);
        if (used >= sizeof data->head_list)
            used = sizeof data->head_list - 1;
    }
    fprintf(stderr, "prescore-bench: provenance: %s\n", f->provenance);
    return EXIT_OK;
}

/* The host arrays of one layer's Q, K, V ([head_count][n][d] floats each),
 * after data_open validated the shapes; each must also fit one buffer of
 * @p info's device (it is uploaded as one). @return an exit code. */
static int data_alloc(bench_data *data, const ps_device_info *info)
{
    const qkv_file *f = data->file;
    size_t elems = tensor_elems(1, data->head_count, f->n, f->d);

    if (elems == 0) {
        fprintf(stderr, "prescore-bench: --data: tensors too large for this host\n");
        return EXIT_ERROR;
    }
    if ((uint64_t)elems * sizeof(float) > info->max_mem_alloc_size) {
        fprintf(stderr,
                "prescore-bench: --data %s: one layer's Q of %zu heads x n = %zu x d = %zu "
                "needs %llu bytes, the device's largest buffer is %llu bytes\n",
                data->name, data->head_count, f->n, f->d,
                (unsigned long long)elems * sizeof(float),
                (unsigned long long)info->max_mem_alloc_size);
        return EXIT_ERROR;
    }
    data->q = malloc(elems * sizeof(float));
    data->k = malloc(elems * sizeof(float));
    data->v = malloc(elems * sizeof(float));
    if (!data->q || !data->k || !data->v) {
        fprintf(stderr, "prescore-bench: out of host memory\n");
        return EXIT_ERROR;
    }
    return EXIT_OK;
}

/* Reads stored layer @p layer's selected heads and points @p run at them. */
static int data_load_layer(bench_data *data, size_t layer, bench_run *run)
{
    qkv_file *f = data->file;
    const size_t per = f->n * f->d;
    size_t i;

    for (i = 0; i < data->head_count; ++i) {
        qkv_status qs = qkv_file_read_head(f, layer, data->heads[i], data->q + i * per,
                                           data->k + i * per, data->v + i * per);
        if (qs != QKV_OK) {
            fprintf(stderr, "prescore-bench: --data %s: %s: %s\n", data->name,
                    qkv_status_string(qs), f->message);
            return EXIT_ERROR;
        }
    }
    run->data_q = data->q;
    run->data_k = data->k;
    run->data_v = data->v;
    run->data_rows = f->n;
    run->data_name = data->name;
    run->data_layer = (long)f->layer_ids[layer];
    run->data_heads = data->head_list;
    fprintf(stderr, "prescore-bench: layer %u, heads %s\n", f->layer_ids[layer],
            data->head_list);
    return EXIT_OK;
}

/* The exit code after one more row: an error ends the run; a non-finite
 * metric lets the remaining rows run and report, and is the final code. */
static int keep_non_finite(int so_far, int row)
{
    return row == EXIT_OK ? so_far : row;
}

int main(int argc, char **argv)
{
    bench_options opt;
    ps_context_options ctx_opt;
    ps_context *ctx = NULL;
    ps_device_info info;
    bench_peak_result peak;
    bench_bandwidth_result bandwidth;
    bench_report report;
    bench_run run;
    bench_data data;
    ps_status st;
    size_t i;
    int code;

    memset(&data, 0, sizeof data);
    if (bench_options_parse(argc, argv, &opt) != 0)
        return EXIT_ERROR;
    /* --decode --data --n: the prefill length (data_open sets n from the file). */
    const size_t decode_n = opt.decode && opt.data_file && opt.n_given ? opt.n[0] : 0;
    if (opt.help) {
        bench_options_usage(stdout, argv[0]);
        return EXIT_OK;
    }
    if (opt.list_devices)
        return list_devices(opt.format);
    if (opt.version)
        return print_version(&opt);
    if (opt.data_file) {
        code = data_open(&opt, &data);
        if (code != EXIT_OK)
            return code;
    }
    code = opt.data_file ? EXIT_OK : validate_all(&opt, NULL); /* --data: in data_open */
    if (code != EXIT_OK) {
        data_free(&data);
        return code;
    }

    ps_context_options_default(&ctx_opt);
    ctx_opt.device = opt.device;
    ctx_opt.shape = opt.shape;
    ctx_opt.verbose = opt.verbose;
    ctx_opt.profiling = 1; /* per-stage times (stages_ms) */
    fprintf(stderr, "prescore-bench: creating the context (compiles kernels on a cold cache)\n");
    st = ps_context_create(&ctx, &ctx_opt);
    if (st != PS_OK) {
        data_free(&data);
        return bench_library_failure("ps_context_create", st, NULL, NULL);
    }

    memset(&run, 0, sizeof run);
    run.ctx = ctx;
    run.opt = &opt;
    run.report = &report;
    st = ps_context_device_info(ctx, &info);
    if (st != PS_OK) {
        code = bench_library_failure("ps_context_device_info", st, ctx, NULL);
        ps_context_destroy(ctx);
        data_free(&data);
        return code;
    }
    if (data.file) {
        code = data_alloc(&data, &info);
        if (code != EXIT_OK) {
            ps_context_destroy(ctx);
            data_free(&data);
            return code;
        }
    }
    st = ps_context_cl_handles(ctx, &run.cl_ctx, &run.cl_dev, &run.cl_queue);
    if (st != PS_OK) {
        code = bench_library_failure("ps_context_cl_handles", st, ctx, NULL);
        ps_context_destroy(ctx);
        data_free(&data);
        return code;
    }
    run.device_name = info.name;
    run.shape_name = bench_shape_name(ps_context_kernel_shape(ctx));
    fprintf(stderr, "prescore-bench: device %u:%u %s, %s kernels\n", info.platform_index,
            info.device_index, info.name, run.shape_name);

    if (opt.peak) {
        fprintf(stderr, "prescore-bench: measuring the fp32 FMA peak\n");
        if (bench_peak_measure(run.cl_ctx, run.cl_dev, run.cl_queue, 100.0, 1, &peak) !=
            CL_SUCCESS)
            fprintf(stderr, "prescore-bench: peak: %s\n", peak.message);
        else
            fprintf(stderr, "prescore-bench: peak %.1f GFLOP/s (%s)\n", peak.gflops,
                    peak.variant);
        run.peak = &peak;
    }

    if (opt.decode) {
        /* What a decode step, which reads the whole cache, can reach. */
        fprintf(stderr, "prescore-bench: measuring the memory bandwidth\n");
        if (bench_bandwidth_measure(run.cl_ctx, run.cl_dev, run.cl_queue, 20.0, opt.verbose,
                                    &bandwidth) != CL_SUCCESS)
            fprintf(stderr, "prescore-bench: bandwidth: %s\n", bandwidth.message);
        else
            fprintf(stderr, "prescore-bench: bandwidth %.2f GB/s (%s, %.0f MiB, %.2f s)\n",
                    bandwidth.gbs, bandwidth.variant, bandwidth.buffer_mib, bandwidth.seconds);
        run.bandwidth = &bandwidth;
    }

    bench_report_begin(&report, stdout, opt.format, opt.gemm_roof, opt.peak, &info,
                       run.shape_name);
    if (opt.table) {
        code = bench_table_run(&run);
    } else if (data.file) {
        for (i = 0; i < data.file->layers && (code == EXIT_OK || code == EXIT_NON_FINITE);
             ++i) {
            if (opt.data_layer >= 0 && (long)data.file->layer_ids[i] != opt.data_layer)
                continue;
            if (data_load_layer(&data, i, &run) != EXIT_OK) {
                code = EXIT_ERROR;
                break;
            }
            code = keep_non_finite(code, opt.decode ? bench_decode_run(&run, decode_n)
                                                    : run_one(&run, opt.n[0]));
        }
    } else {
        for (i = 0; i < opt.n_count && (code == EXIT_OK || code == EXIT_NON_FINITE); ++i)
            code = keep_non_finite(code, opt.decode ? bench_decode_run(&run, opt.n[i])
                                                    : run_one(&run, opt.n[i]));
    }
    bench_report_end(&report);
    ps_context_destroy(ctx);
    data_free(&data);
    return code;
}
