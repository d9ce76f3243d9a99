/* Seeded random inputs: a SplitMix64 counter hash turned into N(0,1)-like
 * floats, uploaded through a bounded staging array so host memory does not
 * have to hold a whole tensor. */
#include "workload.h"

#include <math.h>
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

size_t bench_heavy_positions(uint64_t seed, uint64_t kv_head, size_t n,
                             size_t out[BENCH_HEAVY_KEYS])
{
    const uint64_t base = splitmix64(seed ^ splitmix64(BENCH_STREAM_HEAVY_POS));
    const size_t want = n < BENCH_HEAVY_KEYS ? n : BENCH_HEAVY_KEYS;
    size_t found = 0;

    /* Draw t of head h is hash(base + h * 2^20 + t); repeats are redrawn. */
    for (uint64_t t = 0; found < want; ++t) {
        size_t pos = (size_t)(splitmix64(base + (kv_head << 20) + t) % n), j;
        for (j = 0; j < found && out[j] != pos; ++j)
            ;
        if (j == found)
            out[found++] = pos;
    }
    return found;
}

double bench_heavy_beta(size_t d) { return 2.0 * sqrt((double)d); }

/* Mean over queries of the heavy keys' share of the exact softmax mass, at
 * scale 1/sqrt(d), in the model of bench/README.md: a query is x + alpha u
 * with x ~ N(0, I); g = x.u ~ N(0, 1) moves all its heavy logits together. */
static double heavy_mass_model(double alpha, size_t n, size_t d)
{
    const double h = (double)(n < BENCH_HEAVY_KEYS ? n : BENCH_HEAVY_KEYS);
    const double rd = sqrt((double)d), beta = bench_heavy_beta(d);
    const double noise2 = BENCH_HEAVY_NOISE * BENCH_HEAVY_NOISE;
    double sum = 0.0, wsum = 0.0;

    if ((double)n <= h)
        return 1.0;
    for (int i = -800; i <= 800; ++i) { /* g on [-8, 8], normal weights */
        const double g = i * 0.01, w = exp(-0.5 * g * g);
        const double q2 = (double)d + 2.0 * alpha * g + alpha * alpha; /* |q|^2 */
        const double log_heavy = log(h) + (alpha + g) * beta / rd + 0.5 * noise2 * q2 / d;
        const double log_bulk = log((double)n - h) + 0.5 * q2 / d;
        sum += w / (1.0 + exp(log_bulk - log_heavy));
        wsum += w;
    }
    return sum / wsum;
}

double bench_heavy_alpha(size_t n, size_t d)
{
    /* The share rises with alpha on [0, d] (the |q|^2 growth of the bulk
     * only wins past alpha ~ 2d): bisection. */
    double lo = 0.0, hi = (double)d;
    for (int it = 0; it < 60; ++it) {
        const double mid = 0.5 * (lo + hi);
        if (heavy_mass_model(mid, n, d) < BENCH_HEAVY_MASS)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* Heavy workload on dst (already the bulk N(0,1) values): + alpha u on Q
 * rows, beta u + 0.1 * bulk on the planted K rows. */
static void heavy_apply(float *dst, size_t count, uint64_t seed, uint64_t stream,
                        uint64_t first, const bench_tensor_shape *shape)
{
    const size_t d = shape->dim, rows = shape->rows;
    const size_t group = shape->group ? shape->group : 1;
    const int is_q = stream == BENCH_STREAM_Q;
    const double alpha = is_q ? bench_heavy_alpha(shape->keys ? shape->keys : rows, d) : 0.0;
    const double beta = bench_heavy_beta(d);
    float u[BENCH_HEAVY_MAX_DIM];
    size_t pos[BENCH_HEAVY_KEYS], npos = 0;
    uint64_t cur_head = UINT64_MAX, cur_row = UINT64_MAX;
    int heavy_row = 0;

    if (d == 0 || d > BENCH_HEAVY_MAX_DIM || rows == 0)
        return;
    for (size_t i = 0; i < count; ++i) {
        const uint64_t flat = first + i, row = flat / d, c = flat % d;
        const uint64_t kvh = row / rows / group;
        if (kvh != cur_head) { /* u and the positions of this KV head */
            double norm = 0.0;
            bench_fill_normal(u, d, seed, BENCH_STREAM_HEAVY_DIR, kvh * d);
            for (size_t j = 0; j < d; ++j)
                norm += (double)u[j] * u[j];
            norm = norm > 0.0 ? sqrt(norm) : 1.0;
            for (size_t j = 0; j < d; ++j)
                u[j] = (float)(u[j] / norm);
            if (!is_q)
                npos = bench_heavy_positions(seed, kvh, rows, pos);
            cur_head = kvh;
            cur_row = UINT64_MAX;
        }
        if (is_q) {
            dst[i] += (float)(alpha * u[c]);
            continue;
        }
        if (row != cur_row) {
            heavy_row = 0;
            for (size_t j = 0; j < npos; ++j)
                heavy_row |= pos[j] == row % rows;
            cur_row = row;
        }
        if (heavy_row)
            dst[i] = (float)(beta * u[c] + BENCH_HEAVY_NOISE * dst[i]);
    }
}

void bench_fill_workload(float *dst, size_t count, uint64_t seed, uint64_t stream,
                         uint64_t first, const bench_tensor_shape *shape)
{
    size_t i;

    bench_fill_normal(dst, count, seed, stream, first);
    if (!shape || stream == BENCH_STREAM_V)
        return;
    if (shape->workload == BENCH_WORKLOAD_HEAVY) {
        heavy_apply(dst, count, seed, stream, first, shape);
        return;
    }
    if (shape->workload != BENCH_WORKLOAD_CLUSTERS)
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
