/* The built-in workload of prescore-bench: seeded random Q, K, V tensors with
 * roughly N(0,1) entries, generated on the host and uploaded once. */
#ifndef PRESCORE_BENCH_WORKLOAD_H
#define PRESCORE_BENCH_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>
#include "prescore/types.h"

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

/* Built-in input families (--workload). */
typedef enum bench_workload {
    BENCH_WORKLOAD_GAUSSIAN = 0, /* iid N(0,1) Q, K, V */
    BENCH_WORKLOAD_CLUSTERS = 1, /* Q and K rows near shared cluster centres */
    BENCH_WORKLOAD_HEAVY = 2     /* planted heavy keys (bench/README.md) */
} bench_workload;

/* Heavy workload: planted keys per KV head, their share of each query's
 * exact softmax mass that alpha is solved for, their noise. */
#define BENCH_HEAVY_KEYS 16
#define BENCH_HEAVY_MASS 0.65
#define BENCH_HEAVY_NOISE 0.1
/* Streams of the heavy workload's positions and directions. */
enum { BENCH_STREAM_HEAVY_POS = 0x4EA1, BENCH_STREAM_HEAVY_DIR = 0x4EA2 };

/* Rows per cluster of the clusters workload; its noise around a centre. */
#define BENCH_CLUSTER_ROWS 64
#define BENCH_CLUSTER_NOISE 0.1

/* Layout of one tensor [heads][rows][dim], for workloads with structure. */
typedef struct bench_tensor_shape {
    bench_workload workload;
    size_t rows, dim;
    size_t group; /* query heads per KV head (Q); 1 for K */
    size_t keys;  /* n_k, for the heavy workload's alpha */
} bench_tensor_shape;

/** Heavy workload, KV head @p kv_head (flat batch * kv_heads index): the
 * min(16, n) distinct planted positions in [0, @p n), in draw order.
 * @return their number */
size_t bench_heavy_positions(uint64_t seed, uint64_t kv_head, size_t n,
                             size_t out[BENCH_HEAVY_KEYS]);

/** Heavy workload: the heavy keys' length beta = 2 sqrt(d). */
double bench_heavy_beta(size_t d);

/** Heavy workload: the query offset alpha along u for @p n keys of dim @p d,
 * solved so that the model's mean heavy mass share is BENCH_HEAVY_MASS
 * (bench/README.md, "Workloads"). */
double bench_heavy_alpha(size_t n, size_t d);

#define BENCH_HEAVY_MAX_DIM 1024

/** The workload's value of element @p first + i of a tensor: iid for
 * GAUSSIAN (and for V of every workload); for CLUSTERS, row r of a Q or K head
 * is centre[c(r)] + BENCH_CLUSTER_NOISE * noise, with rows / 64 centres shared
 * by Q and K and a random centre per row (its own draw for Q and for K); for
 * HEAVY, K rows at the planted positions are beta u + 0.1 noise and every Q
 * row gets + alpha u (u: the KV head's seeded unit direction). Head dims
 * above BENCH_HEAVY_MAX_DIM stay gaussian (the library refuses them anyway). */
void bench_fill_workload(float *dst, size_t count, uint64_t seed, uint64_t stream,
                         uint64_t first, const bench_tensor_shape *shape);

/** Creates a buffer of @p count floats on @p ctx holding workload values
 * (@p shape NULL: bench_fill_normal), uploaded in chunks through @p queue
 * (blocking).
 * @return CL_SUCCESS or the failing OpenCL code (CL_OUT_OF_HOST_MEMORY when the
 * staging array cannot be allocated); *out is NULL on failure. */
cl_int bench_random_buffer(cl_context ctx, cl_command_queue queue, size_t count,
                           uint64_t seed, uint64_t stream, const bench_tensor_shape *shape,
                           cl_mem *out);

/** The batch dimension of the tensors of @p desc: 1 for a variable-length
 * batch (--varlen: the sequences are packed along the tokens), else batch. */
static inline size_t bench_batch_dim(const ps_attention_desc *desc)
{
    return desc->cu_seqlens_q ? 1 : desc->batch;
}

#endif
