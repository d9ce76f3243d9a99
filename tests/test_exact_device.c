/* Device suite: exact attention on the device against the double-precision
 * reference, in both kernel shapes, over sizes that are not multiples of any
 * tile, head dims 32/64/128, causal and not, GQA, batch, with and without LSE.
 * Outputs are written into buffers with a canary region behind them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prescore/prescore.h"
#include "prescore/prescore_ref.h"
#include "support.h"

#define CANARY 12345.0f
#define CANARY_COUNT 64

typedef struct exact_case {
    size_t n_q, n_k, d, d_v, heads, kv_heads, batch;
    int causal, lse;
    float scale;
} exact_case;

static const exact_case cases[] = {
    {1, 1, 64, 64, 1, 1, 1, 0, 1, 0},
    {17, 17, 32, 32, 1, 1, 1, 1, 1, 0},
    {255, 255, 128, 128, 1, 1, 1, 0, 0, 0},
    {257, 257, 64, 64, 4, 2, 2, 1, 1, 0},
    {1000, 1000, 32, 32, 4, 1, 1, 1, 0, 0},
    {1000, 1000, 128, 128, 1, 1, 1, 1, 1, 0},
    {4097, 4097, 64, 64, 1, 1, 1, 1, 1, 0},
    {4097, 4097, 128, 128, 1, 1, 1, 0, 0, 0},
    {100, 300, 64, 32, 2, 1, 1, 1, 1, 0}, /* n_q < n_k: bottom-right causal, d_v != d */
    {300, 100, 64, 64, 1, 1, 1, 1, 1, 0}, /* n_q > n_k: first rows see no key */
    {129, 200, 32, 32, 2, 2, 1, 0, 1, 0},
    {64, 64, 64, 64, 1, 1, 1, 1, 1, 100.0f}, /* large logits must not overflow */
};

typedef struct shape_state {
    ps_kernel_shape shape;
    ps_context *ctx;
} shape_state;

static int setup_shape(void **state, ps_kernel_shape shape)
{
    shape_state *s = calloc(1, sizeof *s);
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.shape = shape;
    s->shape = shape;
    if (ps_context_create(&s->ctx, &opt) != PS_OK) {
        fprintf(stderr, "context: %s\n", ps_context_last_error(NULL));
        free(s);
        return -1;
    }
    *state = s;
    return 0;
}
static int setup_cpu(void **state) { return setup_shape(state, PS_SHAPE_CPU); }
static int setup_gpu(void **state) { return setup_shape(state, PS_SHAPE_GPU); }
static int teardown(void **state)
{
    shape_state *s = *state;
    ps_context_destroy(s->ctx);
    free(s);
    return 0;
}

static cl_mem upload(cl_context cl_ctx, cl_command_queue queue, const float *data,
                     size_t n, size_t extra)
{
    cl_int err;
    cl_mem m = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, (n + extra) * sizeof(float), NULL,
                              &err);
    assert_int_equal(err, CL_SUCCESS);
    float *tmp = malloc((n + extra) * sizeof(float));
    assert_non_null(tmp);
    if (data)
        memcpy(tmp, data, n * sizeof(float));
    else
        for (size_t i = 0; i < n; i++)
            tmp[i] = NAN; /* outputs start poisoned: every element must be written */
    for (size_t i = 0; i < extra; i++)
        tmp[n + i] = CANARY;
    assert_int_equal(clEnqueueWriteBuffer(queue, m, CL_TRUE, 0, (n + extra) * sizeof(float),
                                          tmp, 0, NULL, NULL),
                     CL_SUCCESS);
    free(tmp);
    return m;
}

static void run_case(ps_context *ctx, const exact_case *c, ps_kernel_shape shape)
{
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.batch = c->batch;
    desc.heads = c->heads;
    desc.kv_heads = c->kv_heads;
    desc.n_q = c->n_q;
    desc.n_k = c->n_k;
    desc.d = c->d;
    desc.d_v = c->d_v;
    desc.causal = c->causal;
    desc.want_lse = c->lse;
    desc.scale = c->scale;

    const size_t nq = c->batch * c->heads * c->n_q * c->d;
    const size_t nk = c->batch * c->kv_heads * c->n_k * c->d;
    const size_t nv = c->batch * c->kv_heads * c->n_k * c->d_v;
    const size_t no = c->batch * c->heads * c->n_q * c->d_v;
    const size_t nl = c->batch * c->heads * c->n_q;
    float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nv * sizeof *v);
    float *o = malloc((no + CANARY_COUNT) * sizeof *o), *o_ref = malloc(no * sizeof *o);
    float *lse = malloc((nl + CANARY_COUNT) * sizeof *lse), *lse_ref = malloc(nl * sizeof *lse);
    assert_true(q && k && v && o && o_ref && lse && lse_ref);
    const uint64_t seed = ts_seed() + c->n_q * 7919 + c->d;
    ts_fill_normal(q, nq, seed, 1, 1.0f);
    ts_fill_normal(k, nk, seed, 2, 1.0f);
    ts_fill_normal(v, nv, seed, 3, 1.0f);

    assert_int_equal(ps_ref_exact_attention(&desc, q, k, v, o_ref, lse_ref), PS_OK);

    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, &desc, &plan);
    if (st != PS_OK)
        fail_msg("plan: %s: %s", ps_status_string(st), ps_context_last_error(ctx));
    cl_context cl_ctx;
    cl_command_queue queue;
    assert_int_equal(ps_context_cl_handles(ctx, &cl_ctx, NULL, &queue), PS_OK);
    cl_mem bq = upload(cl_ctx, queue, q, nq, 0), bk = upload(cl_ctx, queue, k, nk, 0),
           bv = upload(cl_ctx, queue, v, nv, 0);
    cl_mem bo = upload(cl_ctx, queue, NULL, no, CANARY_COUNT);
    cl_mem bl = c->lse ? upload(cl_ctx, queue, NULL, nl, CANARY_COUNT) : NULL;
    st = ps_attention(plan, bq, bk, bv, bo, bl);
    if (st != PS_OK)
        fail_msg("attention: %s: %s", ps_status_string(st), ps_plan_last_error(plan));
    assert_int_equal(clEnqueueReadBuffer(queue, bo, CL_TRUE, 0,
                                         (no + CANARY_COUNT) * sizeof(float), o, 0, NULL,
                                         NULL),
                     CL_SUCCESS);
    if (bl)
        assert_int_equal(clEnqueueReadBuffer(queue, bl, CL_TRUE, 0,
                                             (nl + CANARY_COUNT) * sizeof(float), lse, 0,
                                             NULL, NULL),
                         CL_SUCCESS);

    const double rel = ts_rel_error(o, o_ref, no);
    const double worst = ts_max_abs_diff(o, o_ref, no);
    printf("# shape %s n_q %zu n_k %zu d %zu d_v %zu h %zu/%zu b %zu causal %d: rel %.2e "
           "max %.2e\n",
           shape == PS_SHAPE_CPU ? "cpu" : "gpu", c->n_q, c->n_k, c->d, c->d_v, c->heads,
           c->kv_heads, c->batch, c->causal, rel, worst);
    /* fp32 accumulation against double: a wrong mask, scale or tile edge gives
     * errors of order 1e-2..1; correct kernels stay near 1e-6. */
    if (!(rel < 2e-5 && worst < 2e-4))
        fail_msg("output error rel %.3e max %.3e (seed %llu)", rel, worst,
                 (unsigned long long)ts_seed());
    for (size_t i = 0; i < CANARY_COUNT; i++)
        assert_true(o[no + i] == CANARY);
    if (c->lse) {
        /* Relative to the magnitude: fp32 LSE of logits ~1e3 (scale 100)
         * carries ~1e-4 absolute rounding. */
        double lse_err = 0.0;
        for (size_t i = 0; i < nl; i++) {
            if (isinf(lse_ref[i])) {
                assert_true(isinf(lse[i]) && lse[i] < 0);
                continue;
            }
            const double e = fabs((double)lse[i] - lse_ref[i]) / fmax(1.0, fabs(lse_ref[i]));
            lse_err = isnan(e) ? INFINITY : fmax(lse_err, e);
        }
        if (!(lse_err < 2e-5))
            fail_msg("lse error %.3e (seed %llu)", lse_err, (unsigned long long)ts_seed());
        for (size_t i = 0; i < CANARY_COUNT; i++)
            assert_true(lse[nl + i] == CANARY);
    }

    clReleaseMemObject(bq);
    clReleaseMemObject(bk);
    clReleaseMemObject(bv);
    clReleaseMemObject(bo);
    if (bl)
        clReleaseMemObject(bl);
    ps_plan_destroy(plan);
    free(q);
    free(k);
    free(v);
    free(o);
    free(o_ref);
    free(lse);
    free(lse_ref);
}

static void test_exact_cases(void **state)
{
    shape_state *s = *state;
    assert_int_equal(ps_context_kernel_shape(s->ctx), s->shape);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(s->ctx, &cases[i], s->shape);
}

/* Changing keys and values after position t never changes rows <= t. */
static void test_causal_prefix_invariance(void **state)
{
    shape_state *s = *state;
    const size_t n = 300, d = 64, t = 137;
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = n;
    desc.d = desc.d_v = d;
    desc.causal = 1;
    float *q = malloc(n * d * 4), *k = malloc(n * d * 4), *v = malloc(n * d * 4);
    float *o1 = malloc(n * d * 4), *o2 = malloc(n * d * 4);
    assert_true(q && k && v && o1 && o2);
    ts_fill_normal(q, n * d, ts_seed(), 11, 1.0f);
    ts_fill_normal(k, n * d, ts_seed(), 12, 1.0f);
    ts_fill_normal(v, n * d, ts_seed(), 13, 1.0f);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(s->ctx, &desc, &plan), PS_OK);
    assert_int_equal(ps_attention_host(plan, q, k, v, o1, NULL), PS_OK);
    for (size_t i = (t + 1) * d; i < n * d; i++) {
        k[i] = 50.0f;
        v[i] = -1000.0f;
    }
    assert_int_equal(ps_attention_host(plan, q, k, v, o2, NULL), PS_OK);
    assert_memory_equal(o1, o2, (t + 1) * d * sizeof(float));
    assert_true(memcmp(o1 + (t + 1) * d, o2 + (t + 1) * d, d * sizeof(float)) != 0);
    ps_plan_destroy(plan);
    free(q);
    free(k);
    free(v);
    free(o1);
    free(o2);
}

int main(void)
{
    if (!ts_have_device("exact_device"))
        return TS_EXIT_SKIP;
    ts_report_seed("exact_device");
    const struct CMUnitTest cpu_tests[] = {
        cmocka_unit_test(test_exact_cases),
        cmocka_unit_test(test_causal_prefix_invariance),
    };
    int failed = 0;
    if (ts_shape_wanted(PS_SHAPE_CPU, "exact_device"))
        failed += cmocka_run_group_tests_name("exact_cpu_shape", cpu_tests, setup_cpu, teardown);
    if (ts_shape_wanted(PS_SHAPE_GPU, "exact_device"))
        failed += cmocka_run_group_tests_name("exact_gpu_shape", cpu_tests, setup_gpu, teardown);
    return failed ? 1 : 0;
}
