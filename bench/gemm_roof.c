/* CLBlast SGEMM roof for the score product of exact attention. Both layouts
 * are timed because CLBlast picks different kernels for them, and on PoCL the
 * column-major call was the faster one (docs/PERFORMANCE.md); the roof is the faster. */
#include "gemm_roof.h"

#include "timing.h"
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PS_HAVE_CLBLAST
#include <clblast_c.h>
#endif

/* C may be large (n×n floats): keep it under this many bytes and under a
 * quarter of the device's allocation limit by computing a block of rows when
 * n is large; the rate of a row block is the rate of the whole product. The
 * headroom matters: CLBlast 1.5.3 pads C into temporary buffers, and when
 * those exceed the allocation limit it calls std::terminate instead of
 * returning a status (seen on PoCL with C at exactly the limit). */
#define ROOF_MAX_C_BYTES ((cl_ulong)256 << 20)
#define ROOF_ALLOC_SHARE 4

int bench_gemm_roof_compiled(void)
{
#ifdef PS_HAVE_CLBLAST
    return 1;
#else
    return 0;
#endif
}

#ifdef PS_HAVE_CLBLAST

/* One SGEMM of rows×n output. Row-major: C = Q·Kᵀ with Q rows×d (ld d), K
 * n×d (ld d, transposed). Column-major: the same memory holds Cᵀ (n×rows,
 * ld n) = K·Qᵀ, where K and Q read column-major are d×n and d×rows. */
static CLBlastStatusCode roof_call(int col_major, cl_command_queue *queue, size_t rows,
                                   size_t n, size_t d, cl_mem q, cl_mem k, cl_mem c)
{
    cl_event event = NULL;
    CLBlastStatusCode st;

    if (!col_major)
        st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                          rows, n, d, 1.0f, q, 0, d, k, 0, d, 0.0f, c, 0, n, queue, &event);
    else
        st = CLBlastSgemm(CLBlastLayoutColMajor, CLBlastTransposeYes, CLBlastTransposeNo,
                          n, rows, d, 1.0f, k, 0, d, q, 0, d, 0.0f, c, 0, n, queue, &event);
    if (st == CLBlastSuccess) {
        cl_int err = event ? clWaitForEvents(1, &event) : clFinish(*queue);
        if (err != CL_SUCCESS)
            st = (CLBlastStatusCode)err;
    }
    if (event)
        clReleaseEvent(event);
    return st;
}

/* Warm-up (CLBlast compiles its kernels here) and @p repeat timed calls.
 * @return CLBlastSuccess and the median GFLOP/s, or the failing status. */
static CLBlastStatusCode roof_time(int col_major, cl_command_queue queue, size_t rows,
                                   size_t n, size_t d, int repeat, cl_mem q, cl_mem k,
                                   cl_mem c, double *gflops)
{
    double *samples = malloc((size_t)repeat * sizeof *samples);
    CLBlastStatusCode st;
    int r;

    *gflops = 0.0;
    if (!samples)
        return CLBlastInsufficientMemoryTemp;
    st = roof_call(col_major, &queue, rows, n, d, q, k, c);
    for (r = 0; r < repeat && st == CLBlastSuccess; ++r) {
        double t0 = bench_now_ms();
        st = roof_call(col_major, &queue, rows, n, d, q, k, c);
        samples[r] = bench_now_ms() - t0;
    }
    if (st == CLBlastSuccess) {
        bench_stats s = bench_stats_of(samples, (size_t)repeat);
        if (s.median_ms > 0.0)
            *gflops = 2.0 * (double)rows * (double)n * (double)d / (s.median_ms * 1e6);
    }
    free(samples);
    return st;
}

#endif /* PS_HAVE_CLBLAST */

void bench_gemm_roof_measure(cl_context ctx, cl_device_id device, cl_command_queue queue,
                             size_t n, size_t d, int repeat, uint64_t seed, int verbose,
                             bench_roof_result *out)
{
    memset(out, 0, sizeof *out);
    out->layout = "";
#ifndef PS_HAVE_CLBLAST
    (void)ctx;
    (void)device;
    (void)queue;
    (void)n;
    (void)d;
    (void)repeat;
    (void)seed;
    (void)verbose;
    snprintf(out->message, sizeof out->message, "built without CLBlast");
#else
    cl_mem q = NULL, k = NULL, c = NULL;
    cl_ulong max_alloc = 0, c_limit;
    cl_int err;
    size_t rows = n;
    CLBlastStatusCode st_row, st_col;

    if (n == 0 || d == 0 || repeat < 1) {
        snprintf(out->message, sizeof out->message, "empty shape");
        return;
    }
    err = clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc,
                          NULL);
    if (err != CL_SUCCESS) {
        snprintf(out->message, sizeof out->message, "clGetDeviceInfo failed (%d)", (int)err);
        return;
    }
    c_limit = max_alloc / ROOF_ALLOC_SHARE;
    if (c_limit > ROOF_MAX_C_BYTES)
        c_limit = ROOF_MAX_C_BYTES;
    if ((cl_ulong)n * n * sizeof(float) > c_limit)
        rows = (size_t)(c_limit / ((cl_ulong)n * sizeof(float)));
    if (rows == 0) {
        snprintf(out->message, sizeof out->message,
                 "one row of C (%zu floats) exceeds the allocation limit", n);
        return;
    }
    out->rows = rows;

    err = bench_random_buffer(ctx, queue, rows * d, seed, BENCH_STREAM_Q, NULL, &q);
    if (err == CL_SUCCESS)
        err = bench_random_buffer(ctx, queue, n * d, seed, BENCH_STREAM_K, NULL, &k);
    if (err == CL_SUCCESS)
        c = clCreateBuffer(ctx, CL_MEM_READ_WRITE, rows * n * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) {
        snprintf(out->message, sizeof out->message,
                 "could not create the GEMM buffers (OpenCL %d)", (int)err);
        goto cleanup;
    }

    if (verbose)
        fprintf(stderr, "prescore-bench: roof: CLBlast SGEMM %zu x %zu x %zu, row-major\n",
                rows, n, d);
    st_row = roof_time(0, queue, rows, n, d, repeat, q, k, c, &out->row_major_gflops);
    if (verbose)
        fprintf(stderr, "prescore-bench: roof: CLBlast SGEMM %zu x %zu x %zu, column-major\n",
                rows, n, d);
    st_col = roof_time(1, queue, rows, n, d, repeat, q, k, c, &out->col_major_gflops);
    if (verbose)
        fprintf(stderr,
                "prescore-bench: roof: row-major %.1f GFLOP/s (status %d), "
                "column-major %.1f GFLOP/s (status %d)\n",
                out->row_major_gflops, (int)st_row, out->col_major_gflops, (int)st_col);

    if (st_row != CLBlastSuccess && st_col != CLBlastSuccess) {
        out->clblast_status = (int)st_row;
        snprintf(out->message, sizeof out->message,
                 "CLBlastSgemm failed: status %d (row-major), %d (column-major)", (int)st_row,
                 (int)st_col);
        goto cleanup;
    }
    out->available = 1;
    if (st_col == CLBlastSuccess &&
        (st_row != CLBlastSuccess || out->col_major_gflops > out->row_major_gflops)) {
        out->gflops = out->col_major_gflops;
        out->layout = "column-major";
    } else {
        out->gflops = out->row_major_gflops;
        out->layout = "row-major";
    }
    /* One layout failing is worth knowing even when the other ran. */
    if (st_row != CLBlastSuccess || st_col != CLBlastSuccess) {
        out->clblast_status = (int)(st_row != CLBlastSuccess ? st_row : st_col);
        snprintf(out->message, sizeof out->message, "CLBlastSgemm %s failed: status %d",
                 st_row != CLBlastSuccess ? "row-major" : "column-major",
                 out->clblast_status);
    }

cleanup:
    if (c)
        clReleaseMemObject(c);
    if (k)
        clReleaseMemObject(k);
    if (q)
        clReleaseMemObject(q);
#endif
}
