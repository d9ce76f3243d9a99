/* --peak: the device's fp32 FMA throughput from a short microbenchmark, so
 * that attention GFLOP/s can be read against what the device can do at all. */
#ifndef PRESCORE_BENCH_PEAK_H
#define PRESCORE_BENCH_PEAK_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/cl.h>
#else
#include <CL/cl.h>
#endif

typedef struct bench_peak_result {
    double gflops;       /* best variant; 0 when none ran */
    char variant[32];    /* e.g. "float8x8": vector type x independent chains */
    cl_int status;       /* CL_SUCCESS, or the OpenCL code that stopped it */
    char message[512];   /* on failure: what failed (with the build log head) */
} bench_peak_result;

/** Builds an FMA-throughput program on (@p ctx, @p device), runs every vector
 * width variant for about @p target_ms per timed run (best of three after a
 * warm-up and a calibration) on @p queue, and keeps the fastest. Progress goes
 * to stderr when @p verbose.
 * @return CL_SUCCESS when at least one variant ran; the failing code otherwise
 * (also stored in @p out->status with a message). */
cl_int bench_peak_measure(cl_context ctx, cl_device_id device, cl_command_queue queue,
                          double target_ms, int verbose, bench_peak_result *out);

#endif
