/* The device's measured memory bandwidth (--decode): a short microbenchmark
 * of reading and copying a large buffer, so that a decode step, which
 * reads the whole key cache once, can be read against what the memory
 * delivers at all (as --peak does for FMA throughput). */
#ifndef PRESCORE_BENCH_BANDWIDTH_H
#define PRESCORE_BENCH_BANDWIDTH_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/cl.h>
#else
#include <CL/cl.h>
#endif

typedef struct bench_bandwidth_result {
    double gbs;         /* best variant, 1e9 bytes per second; 0 when none ran */
    char variant[32];   /* "read-strided", "read-blocked" or "copy" */
    double buffer_mib;  /* size of the buffer read */
    double seconds;     /* wall time the whole measurement took */
    cl_int status;      /* CL_SUCCESS, or the OpenCL code that stopped it */
    char message[512];  /* on failure: what failed */
} bench_bandwidth_result;

/** Reads a buffer of up to 128 MiB (at most half the device's largest
 * allocation) with two kernels (each work-item striding over the buffer,
 * not on CPU devices, or reading one contiguous block) and copies it with clEnqueueCopyBuffer
 * (counted as the bytes read plus the bytes written); each variant is one
 * warm-up, a calibration to about @p target_ms per timed batch, and the best
 * of three batches. The fastest variant is the device's bandwidth.
 * @return CL_SUCCESS when at least one variant ran, the failing code
 *         otherwise (also in @p out->status with a message) */
cl_int bench_bandwidth_measure(cl_context ctx, cl_device_id device, cl_command_queue queue,
                               double target_ms, int verbose, bench_bandwidth_result *out);

#endif
