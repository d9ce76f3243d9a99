/* Seeded random inputs: a SplitMix64 counter hash turned into N(0,1)-like
 * floats, uploaded through a bounded staging array so host memory does not
 * have to hold a whole tensor. */
#include "workload.h"

#include <stdlib.h>

#define BENCH_STAGING_FLOATS ((size_t)1 << 20)

static uint64_t splitmix64(uint64_t x)
{
    x += UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

void bench_fill_normal(float *dst, size_t count, uint64_t seed, uint64_t stream,
                       uint64_t first)
{
    /* Four 16-bit uniforms per hash: their sum has variance 4/12, and
     * sqrt(3) scales it to 1. Bounded (|x| < 3.47) and free of libm. */
    const uint64_t base = splitmix64(seed ^ splitmix64(stream));
    size_t i;

    for (i = 0; i < count; ++i) {
        uint64_t h = splitmix64(base + first + (uint64_t)i);
        double sum = 0.0;
        int j;
        for (j = 0; j < 4; ++j) {
            sum += ((double)(h & 0xFFFFu) + 0.5) * (1.0 / 65536.0);
            h >>= 16;
        }
        dst[i] = (float)((sum - 2.0) * 1.7320508075688772);
    }
}

void bench_fill_workload(float *dst, size_t count, uint64_t seed, uint64_t stream,
                         uint64_t first, const bench_tensor_shape *shape)
{
    size_t i;

    bench_fill_normal(dst, count, seed, stream, first);
    if (!shape || shape->workload != BENCH_WORKLOAD_CLUSTERS || stream == BENCH_STREAM_V)
        return;
    const uint64_t clusters = shape->rows / BENCH_CLUSTER_ROWS ? shape->rows / BENCH_CLUSTER_ROWS : 1;
    for (i = 0; i < count; ++i) {
        const uint64_t flat = first + i;
        const uint64_t row = flat / shape->dim, c = flat % shape->dim; /* head-major rows */
        const uint64_t centre = splitmix64(seed ^ splitmix64(stream * 977 + row)) % clusters;
        float centre_value;
        bench_fill_normal(&centre_value, 1, seed, 0xC1u, centre * shape->dim + c);
        dst[i] = centre_value + (float)BENCH_CLUSTER_NOISE * dst[i];
    }
}

cl_int bench_random_buffer(cl_context ctx, cl_command_queue queue, size_t count,
                           uint64_t seed, uint64_t stream, const bench_tensor_shape *shape,
                           cl_mem *out)
{
    cl_int err = CL_SUCCESS;
    cl_mem buf = NULL;
    float *staging = NULL;
    size_t chunk = count < BENCH_STAGING_FLOATS ? count : BENCH_STAGING_FLOATS;
    size_t done;

    *out = NULL;
    if (count == 0 || count > (size_t)-1 / sizeof(float))
        return CL_INVALID_BUFFER_SIZE;
    buf = clCreateBuffer(ctx, CL_MEM_READ_ONLY, count * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS)
        return err;
    staging = malloc(chunk * sizeof(float));
    if (!staging) {
        clReleaseMemObject(buf);
        return CL_OUT_OF_HOST_MEMORY;
    }
    for (done = 0; done < count; done += chunk) {
        size_t len = count - done < chunk ? count - done : chunk;
        bench_fill_workload(staging, len, seed, stream, (uint64_t)done, shape);
        err = clEnqueueWriteBuffer(queue, buf, CL_TRUE, done * sizeof(float),
                                   len * sizeof(float), staging, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            break;
    }
    free(staging);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(buf);
        return err;
    }
    *out = buf;
    return CL_SUCCESS;
}
