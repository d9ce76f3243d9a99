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

cl_int bench_random_buffer(cl_context ctx, cl_command_queue queue, size_t count,
                           uint64_t seed, uint64_t stream, cl_mem *out)
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
        bench_fill_normal(staging, len, seed, stream, (uint64_t)done);
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
