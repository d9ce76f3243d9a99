/* Memory-bandwidth microbenchmark (bandwidth.h). Two read kernels because
 * devices disagree on the access pattern: GPUs want neighbouring work-items
 * on neighbouring addresses (strided loop), CPUs (PoCL) want each
 * work-item on its own contiguous block; clEnqueueCopyBuffer is the
 * driver's own best effort. Each kernel sums what it reads and writes one
 * float per work-item, so no read is dead. CPU devices skip the strided
 * kernel: on PoCL it reached a tenth of the blocked one (1.8 against
 * 14.5 GB/s, 2-core EPYC) and cost most of the measurement's time. */
#include "bandwidth.h"

#include "timing.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define BW_MAX_BYTES ((size_t)128 << 20)
#define BW_MIN_BYTES ((size_t)1 << 20)
#define BW_RUNS 3
#define BW_MAX_PASSES 1000

static const char bw_source[] =
    "__kernel void bw_read_strided(__global const float4 *src, const uint n4,\n"
    "                              __global float *out)\n"
    "{\n"
    "    float4 acc = (float4)(0.0f);\n"
    "    for (uint i = get_global_id(0); i < n4; i += get_global_size(0))\n"
    "        acc += src[i];\n"
    "    out[get_global_id(0)] = (acc.x + acc.y) + (acc.z + acc.w);\n"
    "}\n"
    "__kernel void bw_read_blocked(__global const float4 *src, const uint n4,\n"
    "                              __global float *out)\n"
    "{\n"
    "    const uint per = (n4 + get_global_size(0) - 1) / get_global_size(0);\n"
    "    const uint start = min((uint)get_global_id(0) * per, n4);\n"
    "    const uint end = min(start + per, n4);\n"
    "    float4 a0 = (float4)(0.0f), a1 = a0, a2 = a0, a3 = a0;\n"
    "    uint i = start;\n"
    "    for (; i + 4 <= end; i += 4) {\n"
    "        a0 += src[i]; a1 += src[i + 1]; a2 += src[i + 2]; a3 += src[i + 3];\n"
    "    }\n"
    "    for (; i < end; ++i)\n"
    "        a0 += src[i];\n"
    "    const float4 s = (a0 + a1) + (a2 + a3);\n"
    "    out[get_global_id(0)] = (s.x + s.y) + (s.z + s.w);\n"
    "}\n";

/* The read kernels: reported name, kernel name. */
static const char *const bw_kernels[2][2] = {{"read-strided", "bw_read_strided"},
                                             {"read-blocked", "bw_read_blocked"}};

static void bw_fail(bench_bandwidth_result *out, cl_int status, const char *fmt, ...)
{
    va_list ap;

    out->status = status;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof out->message, fmt, ap);
    va_end(ap);
}

/* One variant's launches: a kernel over (global, local), or a copy when
 * kernel is NULL. */
typedef struct bw_variant {
    const char *name;
    cl_kernel kernel;
    size_t global, local;
    double bytes; /* moved by one pass */
} bw_variant;

/* @p passes back-to-back passes, timed on the wall clock to completion. */
static cl_int bw_batch(cl_command_queue queue, const bw_variant *v, cl_mem src, cl_mem dst,
                       size_t size, int passes, double *ms)
{
    cl_int err = CL_SUCCESS;
    const double t0 = bench_now_ms();

    for (int p = 0; p < passes && err == CL_SUCCESS; ++p)
        err = v->kernel ? clEnqueueNDRangeKernel(queue, v->kernel, 1, NULL, &v->global,
                                                 &v->local, 0, NULL, NULL)
                        : clEnqueueCopyBuffer(queue, src, dst, 0, 0, size, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clFinish(queue);
    *ms = bench_now_ms() - t0;
    return err;
}

/* Warm-up, calibration to about target_ms per batch, best of BW_RUNS. */
static cl_int bw_run(cl_command_queue queue, const bw_variant *v, cl_mem src, cl_mem dst,
                     size_t size, double target_ms, double *gbs)
{
    double ms = 0.0, best = 0.0;
    int passes = 1;
    cl_int err = bw_batch(queue, v, src, dst, size, 1, &ms); /* warm-up (PoCL compiles) */

    if (err == CL_SUCCESS) /* the calibration */
        err = bw_batch(queue, v, src, dst, size, 1, &ms);
    if (err != CL_SUCCESS)
        return err;
    if (ms > 0.0 && ms < target_ms)
        passes = target_ms / ms < BW_MAX_PASSES ? (int)(target_ms / ms) + 1 : BW_MAX_PASSES;
    for (int r = 0; r < BW_RUNS; ++r) {
        err = bw_batch(queue, v, src, dst, size, passes, &ms);
        if (err != CL_SUCCESS)
            return err;
        if (r == 0 || ms < best)
            best = ms;
    }
    *gbs = best > 0.0 ? v->bytes * passes / (best * 1e6) : 0.0;
    return CL_SUCCESS;
}

/* Buffer size and work sizes from the device. */
static cl_int bw_device(cl_device_id device, cl_device_type *type_out, size_t *size,
                        size_t *global, size_t *local)
{
    cl_device_type type = 0;
    cl_uint units = 1;
    cl_ulong max_alloc = 0;
    size_t wg = 1;
    cl_int err = clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);

    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc,
                              &max_alloc, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    if (err != CL_SUCCESS)
        return err;
    *size = max_alloc / 2 < BW_MAX_BYTES ? (size_t)(max_alloc / 2) : BW_MAX_BYTES;
    *size &= ~(size_t)15; /* whole float4s */
    /* As peak.c: many resident groups per unit on GPUs, a few on CPUs. */
    *local = (type & CL_DEVICE_TYPE_GPU) ? 256 : 64;
    while (*local > 1 && *local > wg)
        *local /= 2;
    *global = (size_t)(units ? units : 1) * ((type & CL_DEVICE_TYPE_GPU) ? 16u * 256u : 16u * 64u);
    *global = *global / *local * *local;
    *type_out = type;
    return *size < BW_MIN_BYTES ? CL_INVALID_BUFFER_SIZE : CL_SUCCESS;
}

cl_int bench_bandwidth_measure(cl_context ctx, cl_device_id device, cl_command_queue queue,
                               double target_ms, int verbose, bench_bandwidth_result *out)
{
    const double start = bench_now_ms();
    const char *src_text = bw_source;
    const cl_float one = 1.0f;
    size_t size = 0, global = 0, local = 1;
    cl_device_type type = 0;
    cl_program program = NULL;
    cl_mem src = NULL, dst = NULL, sums = NULL;
    cl_kernel kernels[2] = {NULL, NULL};
    cl_int err, last = CL_SUCCESS;
    int ran = 0;

    memset(out, 0, sizeof *out);
    err = bw_device(device, &type, &size, &global, &local);
    if (err != CL_SUCCESS) {
        bw_fail(out, err, "device query failed or buffer too small (%d)", (int)err);
        return err;
    }
    out->buffer_mib = (double)size / (1024.0 * 1024.0);
    src = clCreateBuffer(ctx, CL_MEM_READ_ONLY, size, NULL, &err);
    if (err == CL_SUCCESS)
        dst = clCreateBuffer(ctx, CL_MEM_READ_WRITE, size, NULL, &err);
    if (err == CL_SUCCESS)
        sums = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, global * sizeof(float), NULL, &err);
    if (err == CL_SUCCESS) /* touched once, so no first-use page faults are timed */
        err = clEnqueueFillBuffer(queue, src, &one, sizeof one, 0, size, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(queue, dst, &one, sizeof one, 0, size, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clFinish(queue);
    if (err == CL_SUCCESS)
        program = clCreateProgramWithSource(ctx, 1, &src_text, NULL, &err);
    if (err == CL_SUCCESS)
        err = clBuildProgram(program, 1, &device, "", NULL, NULL);
    if (err != CL_SUCCESS) {
        bw_fail(out, err, "buffers or kernels failed (OpenCL %d)", (int)err);
        goto cleanup;
    }

    for (int i = 0; i < 3; ++i) {
        const cl_uint n4 = (cl_uint)(size / 16);
        bw_variant v = {"copy", NULL, global, local, 2.0 * (double)size};
        double gbs = 0.0;

        if (i == 0 && (type & CL_DEVICE_TYPE_CPU))
            continue;
        if (i < 2) {
            v.name = bw_kernels[i][0];
            v.bytes = (double)size;
            kernels[i] = clCreateKernel(program, bw_kernels[i][1], &err);
            if (err == CL_SUCCESS)
                err = clSetKernelArg(kernels[i], 0, sizeof src, &src);
            if (err == CL_SUCCESS)
                err = clSetKernelArg(kernels[i], 1, sizeof n4, &n4);
            if (err == CL_SUCCESS)
                err = clSetKernelArg(kernels[i], 2, sizeof sums, &sums);
            v.kernel = kernels[i];
        }
        if (err == CL_SUCCESS)
            err = bw_run(queue, &v, src, dst, size, target_ms, &gbs);
        if (err != CL_SUCCESS) {
            last = err;
            err = CL_SUCCESS;
            if (verbose)
                fprintf(stderr, "prescore-bench: bandwidth: %s failed (OpenCL %d)\n", v.name,
                        (int)last);
            continue;
        }
        if (verbose)
            fprintf(stderr, "prescore-bench: bandwidth: %-12s %8.1f GB/s\n", v.name, gbs);
        if (!ran || gbs > out->gbs) {
            out->gbs = gbs;
            snprintf(out->variant, sizeof out->variant, "%s", v.name);
        }
        ran = 1;
    }
    if (!ran) {
        bw_fail(out, last, "every variant failed (last OpenCL code %d)", (int)last);
        err = last != CL_SUCCESS ? last : CL_INVALID_KERNEL;
    } else {
        out->status = CL_SUCCESS;
        err = CL_SUCCESS;
    }

cleanup:
    for (int i = 0; i < 2; ++i)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    if (program)
        clReleaseProgram(program);
    if (sums)
        clReleaseMemObject(sums);
    if (dst)
        clReleaseMemObject(dst);
    if (src)
        clReleaseMemObject(src);
    out->seconds = (bench_now_ms() - start) / 1e3;
    return err;
}
