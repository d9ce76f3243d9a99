/* Measured kernel-shape choice (see shape_choice.h). PoCL runs a group's
 * work-items one after another, so the CPU shape's register blocks win there;
 * llvmpipe (rusticl) runs them as SIMD lanes and the CPU shape's one
 * work-item per group idles all lanes but one. Both report
 * CL_DEVICE_TYPE_CPU with local memory in global memory, so only a
 * measurement tells them apart. A forged record can only pick the slower of
 * two correct shapes. */
#include "shape_choice.h"

#include "program_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

/* Best of two timed exact-attention calls after a warm-up (which also pays
 * the driver's first-launch compile) in the shape of ctx->tuning.shape. The
 * default descriptor's plan (EXACT) uses no other program with a variant
 * per shape. */
static ps_status time_shape(ps_context *ctx, cl_mem buf, cl_mem out, double *best_us)
{
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = PS_SHAPE_PROBE_N;
    desc.d = desc.d_v = 64;
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, &desc, &plan);
    *best_us = 1e30;
    for (int run = 0; run < 3 && st == PS_OK; run++) {
        const double t0 = now_us();
        st = ps_attention(plan, buf, buf, buf, out, NULL);
        const double t = now_us() - t0;
        if (run > 0 && t < *best_us)
            *best_us = t;
    }
    if (st != PS_OK && plan) /* the plan kept the message: the context creation reports it */
        ps_fail(ctx, st, "%s", ps_plan_last_error(plan));
    ps_plan_destroy(plan);
    return st;
}

/* Builds exact attention's program in @p shape and times it; the program
 * leaves the context for *program (NULL where its build failed). */
static ps_status probe_shape(ps_context *ctx, const ps_context_options *options,
                             ps_cache *cache, ps_kernel_shape shape, cl_mem buf, cl_mem out,
                             cl_program *program, double *us)
{
    ctx->tuning.shape = shape;
    ps_status st = ps_program_build(ctx, options, cache, PS_PROGRAM_EXACT);
    if (st == PS_OK)
        st = time_shape(ctx, buf, out, us);
    *program = ctx->programs[PS_PROGRAM_EXACT];
    ctx->programs[PS_PROGRAM_EXACT] = NULL;
    return st;
}

/* Times both shapes (us[0] CPU, us[1] GPU) and leaves the faster one's
 * attention program on the context, so that it is not built again. */
static ps_status measure(ps_context *ctx, const ps_context_options *options, ps_cache *cache,
                         double us[2])
{
    static const ps_kernel_shape shapes[2] = {PS_SHAPE_CPU, PS_SHAPE_GPU};
    cl_program built[2] = {NULL, NULL};
    cl_int err = CL_SUCCESS;
    const size_t bytes = (size_t)PS_SHAPE_PROBE_N * 64 * sizeof(float);
    cl_mem buf = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return ps_fail_cl(ctx, err, "clCreateBuffer (shape probe)");
    cl_mem out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(buf);
        return ps_fail_cl(ctx, err, "clCreateBuffer (shape probe)");
    }
    const float zero = 0.0f;
    err = clEnqueueFillBuffer(ctx->queue, buf, &zero, sizeof zero, 0, bytes, 0, NULL, NULL);
    ps_status st = err == CL_SUCCESS ? PS_OK : ps_fail_cl(ctx, err, "clEnqueueFillBuffer");
    for (int i = 0; i < 2 && st == PS_OK; i++)
        st = probe_shape(ctx, options, cache, shapes[i], buf, out, &built[i], &us[i]);
    clReleaseMemObject(buf);
    clReleaseMemObject(out);
    if (st == PS_OK) {
        const int faster = us[1] < us[0];
        ctx->tuning.shape = shapes[faster];
        ctx->programs[PS_PROGRAM_EXACT] = built[faster];
        built[faster] = NULL;
    }
    for (int i = 0; i < 2; i++)
        if (built[i])
            clReleaseProgram(built[i]);
    return st;
}

int ps_shape_record_parse(const unsigned char *text, size_t size, ps_kernel_shape *shape)
{
    char buf[96], name[8], tail;
    unsigned version = 0;
    double cpu_us = 0, gpu_us = 0;
    if (size == 0 || size >= sizeof buf || memchr(text, '\0', size))
        return 0;
    memcpy(buf, text, size);
    buf[size] = '\0';
    if (sscanf(buf, "prescore-shape %u %7s %lf %lf%c", &version, name, &cpu_us, &gpu_us,
               &tail) != 5 ||
        version != 1 || tail != '\n' || strchr(buf, '\n') != buf + size - 1)
        return 0;
    if (strcmp(name, "cpu") == 0)
        *shape = PS_SHAPE_CPU;
    else if (strcmp(name, "gpu") == 0)
        *shape = PS_SHAPE_GPU;
    else
        return 0;
    return 1;
}

static ps_cache_key record_key(const ps_context *ctx)
{
    char tiles[160];
    const ps_device_info *i = &ctx->info;
    snprintf(tiles, sizeof tiles, "qb %u group %u ktile %u local %llu wg %zu",
             ctx->tuning.cpu_query_block, ctx->tuning.gpu_group, ctx->tuning.gpu_key_tile,
             (unsigned long long)i->local_mem_size, i->max_work_group_size);
    const char *parts[] = {"prescore-shape-choice", ps_version_string(), tiles, i->name,
                           i->vendor, i->device_version, i->driver_version,
                           i->platform_name};
    size_t lengths[sizeof parts / sizeof parts[0]];
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        lengths[k] = strlen(parts[k]);
    return ps_cache_key_make(parts, lengths, sizeof parts / sizeof parts[0]);
}

ps_status ps_shape_choose(ps_context *ctx, const ps_context_options *options, ps_cache *cache)
{
    if (ctx->tuning.shape != PS_SHAPE_AUTO)
        return PS_OK;
    const int verbose = ps_programs_verbose(options);
    const ps_cache_key key = record_key(ctx);
    unsigned char *record = NULL;
    size_t size = 0;
    ps_kernel_shape shape = PS_SHAPE_CPU;
    const int loaded = ps_cache_load(cache, key, &record, &size) == PS_OK;
    if (loaded && !ps_shape_record_parse(record, size, &shape)) {
        ps_cache_discard(cache, key, PS_CACHE_REFUSED_FORMAT, "not a shape record");
    } else if (loaded) {
        free(record);
        ctx->tuning.shape = shape;
        if (verbose)
            fprintf(stderr, "prescore: kernel shape %s (recorded)\n",
                    shape == PS_SHAPE_GPU ? "gpu" : "cpu");
        return PS_OK;
    }
    free(record);

    double us[2] = {0, 0};
    const ps_status st = measure(ctx, options, cache, us);
    if (st != PS_OK) {
        ctx->tuning.shape = PS_SHAPE_AUTO;
        return st;
    }
    shape = ctx->tuning.shape;
    const double cpu_us = us[0], gpu_us = us[1];
    char text[96];
    const int n = snprintf(text, sizeof text, "prescore-shape 1 %s %.0f %.0f\n",
                           shape == PS_SHAPE_GPU ? "gpu" : "cpu", cpu_us, gpu_us);
    if (n > 0 && (size_t)n < sizeof text &&
        ps_cache_store(cache, key, (const unsigned char *)text, (size_t)n) != PS_OK &&
        verbose && cache->dir_fd >= 0)
        fprintf(stderr, "prescore: could not record the kernel shape in %s\n", cache->dir);
    if (verbose)
        fprintf(stderr, "prescore: kernel shape %s measured (exact n = %d: cpu %.0f us, "
                        "gpu %.0f us)\n",
                shape == PS_SHAPE_GPU ? "gpu" : "cpu", PS_SHAPE_PROBE_N, cpu_us, gpu_us);
    return PS_OK;
}
