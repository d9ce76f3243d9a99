/* FMA-throughput microbenchmark. Each work-item runs `chains` independent
 * fma(a, m, c) recurrences on a vector type for a run-time trip count, so the
 * compiler can neither fold the loop nor merge chains, and the result is
 * written out so nothing is dead. Vector widths 1, 4, 8 and 16 are tried
 * because CPUs (PoCL) want wide explicit vectors and many chains, GPUs want
 * narrow types and occupancy; the best variant is the device's peak. The
 * kernel text is generated here, one kernel per variant, so one build covers
 * all of them. */
#include "peak.h"

#include "timing.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEAK_UNROLL 2 /* copies of the chain block per loop trip */
#define PEAK_MAX_ITERS (1 << 24)
#define PEAK_RUNS 3

typedef struct peak_variant {
    const char *type; /* OpenCL C type */
    int width;        /* float lanes of the type */
    int chains;       /* independent accumulators per work-item */
} peak_variant;

/* CPUs need wide vectors and about 16 chains to cover FMA latency on every
 * pipe (on this machine's PoCL device float16 went from 290 GFLOP/s with 8
 * chains to 340 with 16, level beyond); float16 x 16 would need 256 registers
 * per work-item on a GPU, hence also float16 x 8 and the narrow types. */
static const peak_variant peak_variants[] = {
    {"float", 1, 16},
    {"float4", 4, 16},
    {"float8", 8, 16},
    {"float16", 16, 8},
    {"float16", 16, 16},
};
#define PEAK_NUM_VARIANTS (sizeof peak_variants / sizeof peak_variants[0])

typedef struct text_buf {
    char *data;
    size_t len, cap;
    int failed;
} text_buf;

static void text_append(text_buf *t, const char *fmt, ...)
{
    va_list ap;
    int need;

    if (t->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        need = vsnprintf(t->data ? t->data + t->len : NULL, t->data ? t->cap - t->len : 0,
                         fmt, ap);
        va_end(ap);
        if (need < 0) {
            t->failed = 1;
            return;
        }
        if (t->data && t->len + (size_t)need < t->cap) {
            t->len += (size_t)need;
            return;
        }
        {
            size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)need;
            char *grown = realloc(t->data, cap);
            if (!grown) {
                t->failed = 1;
                return;
            }
            t->data = grown;
            t->cap = cap;
        }
    }
}

static void peak_variant_name(const peak_variant *v, char *name, size_t size)
{
    snprintf(name, size, "%sx%d", v->type, v->chains);
}

static char *peak_source(void)
{
    text_buf t = {NULL, 0, 0, 0};
    size_t vi;
    int i, u;

    text_append(&t, "float peak_hsum1(float s) { return s; }\n"
                    "float peak_hsum4(float4 s) { return (s.x + s.y) + (s.z + s.w); }\n"
                    "float peak_hsum8(float8 s) { return peak_hsum4(s.lo + s.hi); }\n"
                    "float peak_hsum16(float16 s) { return peak_hsum8(s.lo + s.hi); }\n");
    for (vi = 0; vi < PEAK_NUM_VARIANTS; ++vi) {
        const peak_variant *v = &peak_variants[vi];
        char name[32];

        peak_variant_name(v, name, sizeof name);
        text_append(&t,
                    "__kernel void peak_%s(__global float *out, const int iters, "
                    "const float mul)\n{\n"
                    "    const float base = (float)get_global_id(0) * 1.0e-6f;\n"
                    "    const %s m = (%s)(mul);\n"
                    "    const %s c = (%s)(base);\n",
                    name, v->type, v->type, v->type, v->type);
        /* Distinct start values: chains the compiler could prove equal it
         * could merge. */
        for (i = 0; i < v->chains; ++i)
            text_append(&t, "    %s a%d = c + (%s)(%d.0f * 0.0625f);\n", v->type, i, v->type,
                        i + 1);
        text_append(&t, "    for (int i = 0; i < iters; ++i) {\n");
        for (u = 0; u < PEAK_UNROLL; ++u)
            for (i = 0; i < v->chains; ++i)
                text_append(&t, "        a%d = fma(a%d, m, c);\n", i, i);
        text_append(&t, "    }\n    %s s = a0", v->type);
        for (i = 1; i < v->chains; ++i)
            text_append(&t, " + a%d", i);
        text_append(&t, ";\n    out[get_global_id(0)] = peak_hsum%d(s);\n}\n", v->width);
    }
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    return t.data;
}

static void peak_fail(bench_peak_result *out, cl_int status, const char *fmt, ...)
{
    va_list ap;

    out->status = status;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof out->message, fmt, ap);
    va_end(ap);
}

/* One launch of @p kernel with @p iters trips, timed on the wall clock up to
 * completion. */
static cl_int peak_launch(cl_command_queue queue, cl_kernel kernel, cl_int iters,
                          size_t global, size_t local, double *ms)
{
    cl_int err = clSetKernelArg(kernel, 1, sizeof iters, &iters);
    double t0;

    if (err != CL_SUCCESS)
        return err;
    t0 = bench_now_ms();
    err = clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &global, &local, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clFinish(queue);
    *ms = bench_now_ms() - t0;
    return err;
}

/* Calibrates the trip count to about @p target_ms, then returns the best
 * GFLOP/s of PEAK_RUNS timed launches. */
static cl_int peak_run_variant(cl_command_queue queue, cl_kernel kernel,
                               const peak_variant *v, size_t global, size_t local,
                               double target_ms, double *gflops)
{
    cl_int iters = 16;
    double ms = 0.0, best_ms = 0.0;
    cl_int err;
    int r;

    /* Warm-up: PoCL compiles the kernel for the work-group size here. */
    err = peak_launch(queue, kernel, iters, global, local, &ms);
    if (err != CL_SUCCESS)
        return err;
    for (;;) {
        err = peak_launch(queue, kernel, iters, global, local, &ms);
        if (err != CL_SUCCESS)
            return err;
        if (ms >= target_ms / 8.0 || iters >= PEAK_MAX_ITERS / 16)
            break;
        iters *= 16;
    }
    if (ms > 0.0) {
        double scaled = (double)iters * target_ms / ms;
        if (scaled > PEAK_MAX_ITERS)
            scaled = PEAK_MAX_ITERS;
        if (scaled > (double)iters)
            iters = (cl_int)scaled;
    }
    for (r = 0; r < PEAK_RUNS; ++r) {
        err = peak_launch(queue, kernel, iters, global, local, &ms);
        if (err != CL_SUCCESS)
            return err;
        if (r == 0 || ms < best_ms)
            best_ms = ms;
    }
    {
        double flops = 2.0 * (double)global * (double)iters * PEAK_UNROLL *
                       (double)v->chains * (double)v->width;
        *gflops = best_ms > 0.0 ? flops / (best_ms * 1e6) : 0.0;
    }
    return CL_SUCCESS;
}

cl_int bench_peak_measure(cl_context ctx, cl_device_id device, cl_command_queue queue,
                          double target_ms, int verbose, bench_peak_result *out)
{
    cl_program program = NULL;
    cl_mem out_buf = NULL;
    char *source = NULL;
    cl_device_type type = 0;
    cl_uint units = 1;
    size_t device_wg = 1, global_max;
    cl_int err = CL_SUCCESS, last_err = CL_SUCCESS;
    size_t vi;
    int ran = 0;

    memset(out, 0, sizeof *out);
    err = clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof device_wg,
                              &device_wg, NULL);
    if (err != CL_SUCCESS) {
        peak_fail(out, err, "clGetDeviceInfo failed (%d)", (int)err);
        return err;
    }
    if (units == 0)
        units = 1;
    if (device_wg == 0)
        device_wg = 1;

    source = peak_source();
    if (!source) {
        peak_fail(out, CL_OUT_OF_HOST_MEMORY, "no host memory for the kernel source");
        return CL_OUT_OF_HOST_MEMORY;
    }
    {
        const char *src = source;
        program = clCreateProgramWithSource(ctx, 1, &src, NULL, &err);
    }
    free(source);
    if (err != CL_SUCCESS) {
        peak_fail(out, err, "clCreateProgramWithSource failed (%d)", (int)err);
        return err;
    }
    if (verbose)
        fprintf(stderr, "prescore-bench: peak: building the FMA kernels\n");
    err = clBuildProgram(program, 1, &device, "", NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[400] = "";
        clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log,
                              NULL);
        log[sizeof log - 1] = '\0';
        peak_fail(out, err, "clBuildProgram failed (%d): %s", (int)err, log);
        clReleaseProgram(program);
        return err;
    }

    /* Enough groups to fill every compute unit several times over; GPUs need
     * many resident groups per unit to hide latency. */
    global_max = (size_t)units * ((type & CL_DEVICE_TYPE_GPU) ? 16u * 256u : 16u * 64u);
    out_buf = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, global_max * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) {
        peak_fail(out, err, "clCreateBuffer failed (%d)", (int)err);
        clReleaseProgram(program);
        return err;
    }

    for (vi = 0; vi < PEAK_NUM_VARIANTS; ++vi) {
        const peak_variant *v = &peak_variants[vi];
        char name[32], kname[40];
        size_t local = (type & CL_DEVICE_TYPE_GPU) ? 256 : 64, kernel_wg = 0, global;
        cl_float mul = 0.999f;
        cl_kernel kernel;
        double gflops = 0.0;

        peak_variant_name(v, name, sizeof name);
        snprintf(kname, sizeof kname, "peak_%s", name);
        kernel = clCreateKernel(program, kname, &err);
        if (err != CL_SUCCESS) {
            last_err = err;
            continue;
        }
        if (clGetKernelWorkGroupInfo(kernel, device, CL_KERNEL_WORK_GROUP_SIZE,
                                     sizeof kernel_wg, &kernel_wg, NULL) != CL_SUCCESS)
            kernel_wg = device_wg;
        while (local > 1 && (local > device_wg || (kernel_wg && local > kernel_wg)))
            local /= 2;
        global = global_max / local * local;
        err = clSetKernelArg(kernel, 0, sizeof out_buf, &out_buf);
        if (err == CL_SUCCESS)
            err = clSetKernelArg(kernel, 2, sizeof mul, &mul);
        if (err == CL_SUCCESS)
            err = peak_run_variant(queue, kernel, v, global, local, target_ms, &gflops);
        clReleaseKernel(kernel);
        if (err != CL_SUCCESS) {
            last_err = err;
            if (verbose)
                fprintf(stderr, "prescore-bench: peak: %s failed (OpenCL %d), skipped\n",
                        name, (int)err);
            continue;
        }
        if (verbose)
            fprintf(stderr, "prescore-bench: peak: %-10s %9.1f GFLOP/s (%zu x %zu work-items)\n",
                    name, gflops, global / local, local);
        if (!ran || gflops > out->gflops) {
            out->gflops = gflops;
            snprintf(out->variant, sizeof out->variant, "%s", name);
        }
        ran = 1;
    }
    clReleaseMemObject(out_buf);
    clReleaseProgram(program);
    if (!ran) {
        peak_fail(out, last_err, "every FMA variant failed (last OpenCL code %d)",
                  (int)last_err);
        return last_err != CL_SUCCESS ? last_err : CL_INVALID_KERNEL;
    }
    out->status = CL_SUCCESS;
    return CL_SUCCESS;
}
