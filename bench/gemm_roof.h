/* --gemm-roof: CLBlast SGEMM throughput for the attention score product
 * C = Q·Kᵀ (n×d times d×n) on the same device and queue, the figure a
 * GEMM-based exact attention could at best reach. */
#ifndef PRESCORE_BENCH_GEMM_ROOF_H
#define PRESCORE_BENCH_GEMM_ROOF_H

#include <stddef.h>
#include <stdint.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/cl.h>
#else
#include <CL/cl.h>
#endif

typedef struct bench_roof_result {
    int available;        /* 1: gflops holds a measurement */
    double gflops;        /* the faster layout's median GFLOP/s */
    const char *layout;   /* "row-major" or "column-major" (the faster one) */
    double row_major_gflops, col_major_gflops; /* 0 where that call failed */
    size_t rows;          /* rows of C computed per call (n, or fewer when n×n
                             floats exceed the device's allocation limit) */
    int clblast_status;   /* CLBlast status of the failure, 0 if none */
    char message[256];    /* why it is unavailable */
} bench_roof_result;

/** @return 1 when the bench was built with CLBlast. */
int bench_gemm_roof_compiled(void);

/** Times SGEMM C = Q·Kᵀ with Q, K random n×d (row-major) and C n×n, as a
 * row-major call and as the equivalent column-major call (Cᵀ = K·Qᵀ), each a
 * warm-up and @p repeat timed runs, median on the wall clock. Never fails
 * hard: problems are reported in @p out (available = 0). */
void bench_gemm_roof_measure(cl_context ctx, cl_device_id device, cl_command_queue queue,
                             size_t n, size_t d, int repeat, uint64_t seed, int verbose,
                             bench_roof_result *out);

#endif
