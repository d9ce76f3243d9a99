/* The built-in workload of prescore-bench: seeded random Q, K, V tensors with
 * roughly N(0,1) entries, generated on the host and uploaded once. */
#ifndef PRESCORE_BENCH_WORKLOAD_H
#define PRESCORE_BENCH_WORKLOAD_H

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

/* Streams, so that Q, K and V of one seed are independent of each other. */
enum { BENCH_STREAM_Q = 1, BENCH_STREAM_K = 2, BENCH_STREAM_V = 3 };

/** Fills @p dst[0..count) with values of mean 0 and variance 1 (a scaled sum of
 * four uniforms), a pure function of (@p seed, @p stream, @p first + i). */
void bench_fill_normal(float *dst, size_t count, uint64_t seed, uint64_t stream,
                       uint64_t first);

/** Creates a buffer of @p count floats on @p ctx holding bench_fill_normal
 * values, uploaded in chunks through @p queue (blocking).
 * @return CL_SUCCESS or the failing OpenCL code (CL_OUT_OF_HOST_MEMORY when the
 * staging array cannot be allocated); *out is NULL on failure. */
cl_int bench_random_buffer(cl_context ctx, cl_command_queue queue, size_t count,
                           uint64_t seed, uint64_t stream, cl_mem *out);

#endif
