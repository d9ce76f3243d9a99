/* Device suite: global keys (docs/GLOBAL.md) through the
 * public ps_attention call. Device against the host twin
 * (ps_ref_global_attention) for HYPER and PRESCORE; one block with global
 * keys equal to exact attention over the same key set (a key counted twice,
 * in the blocks and in the global part, fails; PRESCORE: with every dropped
 * key drawn by the residual); planted heavy keys, where
 * making them global must cut the error; and the refusals. */
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
#include "ref/global_ref.h"
#include "support.h"

static ps_context *ctx;

static ps_attention_desc base_desc(ps_method method, size_t n)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.method = method;
    d.heads = 2;
    d.kv_heads = 1;
    d.n_q = d.n_k = n;
    d.d = d.d_v = 32;
    d.want_lse = 1;
    d.min_seq_len = 64;
    d.seed = 11;
    return d;
}

static void run(const ps_attention_desc *d, ts_tensors *t)
{
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, d, &plan);
    if (st != PS_OK)
        fail_msg("plan: %s: %s", ps_status_string(st), ps_context_last_error(ctx));
    st = ps_attention_host(plan, t->q, t->k, t->v, t->o, t->lse);
    if (st != PS_OK)
        fail_msg("attention: %s: %s", ps_status_string(st), ps_plan_last_error(plan));
    ps_plan_destroy(plan);
}

static void norms(const float *k, size_t rows, size_t d, float *out)
{
    for (size_t i = 0; i < rows; i++) {
        double s = 0.0;
        for (size_t c = 0; c < d; c++)
            s += (double)k[i * d + c] * k[i * d + c];
        out[i] = (float)s;
    }
}

static void check_close(const char *what, const ps_attention_desc *d, const ts_tensors *t,
                        double rel_max)
{
    const size_t no = d->batch * d->heads * d->n_q * d->d_v, nl = d->batch * d->heads * d->n_q;
    const double rel = ts_rel_error(t->o, t->o_ref, no);
    const double lse = ts_max_abs_diff(t->lse, t->lse_ref, nl);
    printf("# %s: rel %.2e, max |lse diff| %.2e\n", what, rel, lse);
    assert_true(rel < rel_max && lse < 1e-3);
}

/* HYPER with g global keys (picked by key norm) against the host twin. */
static void test_hyper_global_vs_reference(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 1000);
    d.batch = 2;
    d.heads = 4;
    d.kv_heads = 2;
    d.block = 128;
    d.samples = 64;
    d.global_keys = 16;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 500), 0);
    run(&d, &t);
    const size_t kh = d.batch * d.kv_heads;
    float *gs = malloc(kh * d.n_k * 4);
    norms(t.k, kh * d.n_k, d.d, gs);
    assert_int_equal(
        ps_ref_global_attention(&d, t.q, t.k, t.v, NULL, d.n_k, gs, NULL, t.o_ref, t.lse_ref), PS_OK);
    check_close("hyper, g = 16, device vs reference", &d, &t, 1e-4);
    free(gs);
    ts_tensors_free(&t);
}

/* Reference of the kept keys of a PRESCORE plan: their rows and scores. */
static size_t kept_rows(const ps_attention_desc *d, const ts_tensors *t, float **ks, float **vs,
                        float **gs)
{
    const size_t kh = d->batch * d->kv_heads;
    ps_attention_desc r;
    char msg[128];
    assert_int_equal(ps_attention_desc_validate(d, msg, sizeof msg), PS_OK);
    r = *d;
    const size_t cap = d->budget < d->n_k ? d->budget : d->n_k;
    float *scores = malloc(kh * d->n_k * 4);
    uint32_t *idx = malloc(kh * cap * 4), *counts = malloc(kh * 4);
    *ks = malloc(kh * cap * d->d * 4);
    *vs = malloc(kh * cap * d->d_v * 4);
    *gs = malloc(kh * cap * 4);
    assert_int_equal(ps_ref_score_keys(&r, t->k, scores), PS_OK);
    assert_int_equal(ps_ref_select_keys(&r, scores, idx, counts), PS_OK);
    for (size_t h = 0; h < kh; h++) {
        assert_int_equal(counts[h], cap);
        for (size_t i = 0; i < cap; i++) {
            const size_t j = idx[h * cap + i];
            memcpy(*ks + (h * cap + i) * d->d, t->k + (h * d->n_k + j) * d->d, d->d * 4);
            memcpy(*vs + (h * cap + i) * d->d_v, t->v + (h * d->n_k + j) * d->d_v, d->d_v * 4);
            (*gs)[h * cap + i] = scores[h * d->n_k + j];
        }
    }
    free(scores);
    free(idx);
    free(counts);
    return cap;
}

/* PRESCORE (norm score): the global keys are the best g of the kept keys. */
static void test_prescore_global_vs_reference(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE, 900);
    d.score = PS_SCORE_NORM;
    d.budget = 400;
    d.block = 64;
    d.samples = 32;
    d.global_keys = 24;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 600), 0);
    run(&d, &t);
    float *ks, *vs, *gs;
    const size_t cap = kept_rows(&d, &t, &ks, &vs, &gs);
    assert_int_equal(ps_ref_global_attention(&d, t.q, ks, vs, NULL, cap, gs, NULL, t.o_ref,
                                             t.lse_ref),
                     PS_OK);
    check_close("prescore (norm, m = 400), g = 24, device vs reference", &d, &t, 1e-4);
    free(ks);
    free(vs);
    free(gs);
    ts_tensors_free(&t);
}

/* One block holding every non-global key: blocks are exact and the residual
 * fully masked, so the result is exact attention over the key set; a global
 * key also counted by the blocks would shift it. */
static void test_hyper_global_one_block_is_exact(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 777);
    d.block = 1024;
    d.global_keys = 40;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 700), 0);
    run(&d, &t);
    ps_attention_desc e = d;
    e.method = PS_METHOD_EXACT;
    assert_int_equal(ps_ref_exact_attention(&e, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    check_close("hyper, g = 40, one block vs exact", &d, &t, 2e-5);
    ts_tensors_free(&t);
}

/* PRESCORE with global keys whose other kept keys fit in one block: the
 * residual draws the dropped keys (docs/HYPER.md "Dropped-key residual").
 * Against the host twin with 128 draws of 600, and, with as many samples as
 * dropped keys, against exact attention over all keys (each dropped key
 * drawn once, the global keys exact and left out of the block). */
static void test_prescore_global_one_block_draws_dropped_keys(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE, 900);
    d.score = PS_SCORE_NORM;
    d.budget = 300;
    d.block = 1024;
    d.samples = 128;
    d.global_keys = 32;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 800), 0);
    run(&d, &t);
    assert_int_equal(ps_ref_attention(&d, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    check_close("prescore (norm, m = 300 of 900), g = 32, one block, 128 draws, device vs "
                "reference", &d, &t, 1e-4);
    d.samples = 600;
    run(&d, &t);
    ps_attention_desc e = d;
    e.method = PS_METHOD_EXACT;
    assert_int_equal(ps_ref_exact_attention(&e, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    check_close("prescore (norm, m = 300 of 900), g = 32, one block, every dropped key drawn, "
                "vs exact", &d, &t, 2e-5);
    ts_tensors_free(&t);
}

/* Planted heavy keys: `heavy` keys of large norm aligned with a direction
 * every query shares carry most of each query's attention mass (logit about
 * 40 / sqrt(32) = 7 each: some two thirds of the mass over 8 keys). Reached only
 * through blocks and weighted samples they cost HyperAttention a large error;
 * as global keys they are exact. */
static double planted_error(ps_method method, size_t g, double *lse_err)
{
    const size_t n = 4096, heavy = 8;
    ps_attention_desc d = base_desc(method, n);
    d.heads = d.kv_heads = 1;
    d.block = 128;
    d.samples = 64;
    d.score = PS_SCORE_NORM;
    d.budget = 1024;
    d.global_keys = g;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 900), 0);
    float u[32];
    ts_fill_normal(u, d.d, ts_seed(), 950, 1.0f);
    double un = 0.0;
    for (size_t c = 0; c < d.d; c++)
        un += (double)u[c] * u[c];
    for (size_t c = 0; c < d.d; c++)
        u[c] = (float)(u[c] / sqrt(un));
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < d.d; c++)
            t.q[i * d.d + c] += 4.0f * u[c];
    for (size_t h = 0; h < heavy; h++) {
        const size_t pos = (h * 977 + 131) % n;
        for (size_t c = 0; c < d.d; c++)
            t.k[pos * d.d + c] = 10.0f * u[c] + 0.1f * t.k[pos * d.d + c];
    }
    run(&d, &t);
    ps_attention_desc e = d;
    e.method = PS_METHOD_EXACT;
    e.global_keys = 0;
    assert_int_equal(ps_ref_exact_attention(&e, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    const double rel = ts_rel_error(t.o, t.o_ref, n * d.d_v);
    double l = 0.0;
    for (size_t i = 0; i < n; i++)
        l += fabs((double)t.lse[i] - t.lse_ref[i]);
    *lse_err = l / (double)n;
    ts_tensors_free(&t);
    return rel;
}

static void test_planted_heavy_keys(void **state)
{
    (void)state;
    const ps_method methods[2] = {PS_METHOD_HYPER, PS_METHOD_PRESCORE};
    const char *names[2] = {"hyper", "prescore (norm, m = 1024)"};
    for (int m = 0; m < 2; m++) {
        double l0, l8, l32;
        const double e0 = planted_error(methods[m], 0, &l0);
        const double e8 = planted_error(methods[m], 8, &l8);
        const double e32 = planted_error(methods[m], 32, &l32);
        printf("# planted heavy keys, %s, n = 4096, b = 128, s = 64: rel_error g=0 %.3f, "
               "g=8 %.3f, g=32 %.3f; lse_error %.3f, %.3f, %.3f\n",
               names[m], e0, e8, e32, l0, l8, l32);
        assert_true(e8 < 0.5 * e0);
        assert_true(e32 < 0.5 * e0);
        assert_true(l8 < 0.5 * l0);
    }
}

static void expect_plan_status(const ps_attention_desc *d, ps_status want)
{
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, d, &plan);
    printf("# %s: %s\n", ps_status_string(st), ps_context_last_error(ctx));
    assert_int_equal(st, want);
    assert_null(plan);
}

static void test_refusals(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 512);
    d.global_keys = 512; /* causal plans clamp g per node instead (docs/GLOBAL.md) */
    expect_plan_status(&d, PS_ERR_INVALID_ARGUMENT);
    d.global_keys = 8;
    d.global_score = PS_SCORE_LEVERAGE;
    expect_plan_status(&d, PS_ERR_NOT_IMPLEMENTED);
    d.global_score = (ps_score)7;
    expect_plan_status(&d, PS_ERR_INVALID_ARGUMENT);
    /* The exact path ignores global keys (exact attention sees every key). */
    d.global_score = PS_SCORE_AUTO;
    d.min_seq_len = 4096;
    d.causal = 1;
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    ps_attention_desc r;
    assert_int_equal(ps_plan_desc(plan, &r), PS_OK);
    assert_int_equal(r.global_score, PS_SCORE_NORM);
    ps_plan_destroy(plan);
}

/* Causal plans: every node of the recursion picks the top g' = min(g, C' - 1)
 * of its own candidates (all earlier than its queries); device against
 * ps_ref_attention, HYPER and PRESCORE (norm), n_q = n_k and n_q < n_k (a
 * prefix node); and g >= every node's candidates is clamped, not refused. */
static void check_causal_vs_ref(const ps_attention_desc *d, uint64_t stream, const char *what)
{
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, d, stream), 0);
    run(d, &t);
    assert_int_equal(ps_ref_attention(d, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    check_close(what, d, &t, 1e-4);
    ts_tensors_free(&t);
}

static void test_causal_global_vs_reference(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 900);
    d.causal = 1;
    d.heads = 4;
    d.kv_heads = 2;
    d.d = d.d_v = 16;
    d.min_seq_len = 200;
    d.block = 64;
    d.samples = 32;
    d.global_keys = 16;
    check_causal_vs_ref(&d, 1400, "causal hyper, g = 16, device vs ps_ref_attention");
    d.method = PS_METHOD_PRESCORE;
    d.score = PS_SCORE_NORM;
    d.budget = 150;
    d.n_q = 700;
    check_causal_vs_ref(&d, 1410, "causal prescore norm, g = 16, n_q 700 < n_k 900");
    d.global_keys = 5000; /* above every node's kept keys: g' = C' - 1 */
    check_causal_vs_ref(&d, 1420, "causal prescore norm, g clamped per node");
}

/* g = 0 leaves the pipeline as it was: global_score is then ignored. */
static void test_zero_global_keys_unchanged(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 600);
    d.block = 64;
    d.samples = 32;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 1000), 0);
    run(&d, &t);
    const size_t no = d.heads * d.n_q * d.d_v;
    memcpy(t.o_ref, t.o, no * 4);
    d.global_score = PS_SCORE_NORM;
    run(&d, &t);
    assert_memory_equal(t.o, t.o_ref, no * 4);
    ts_tensors_free(&t);
}

static int setup(void **state)
{
    (void)state;
    return ps_context_create(&ctx, NULL) == PS_OK ? 0 : -1;
}

static int setup_gpu_shape(void **state)
{
    (void)state;
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.shape = PS_SHAPE_GPU;
    return ps_context_create(&ctx, &opt) == PS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ps_context_destroy(ctx);
    return 0;
}

int main(void)
{
    if (!ts_have_device("global_device"))
        return TS_EXIT_SKIP;
    ts_report_seed("global_device");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hyper_global_vs_reference),
        cmocka_unit_test(test_prescore_global_vs_reference),
        cmocka_unit_test(test_hyper_global_one_block_is_exact),
        cmocka_unit_test(test_prescore_global_one_block_draws_dropped_keys),
        cmocka_unit_test(test_planted_heavy_keys),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_zero_global_keys_unchanged),
        cmocka_unit_test(test_causal_global_vs_reference),
    };
    const struct CMUnitTest gpu_shape_tests[] = {
        cmocka_unit_test(test_hyper_global_vs_reference),
        cmocka_unit_test(test_prescore_global_vs_reference),
        cmocka_unit_test(test_hyper_global_one_block_is_exact),
        cmocka_unit_test(test_prescore_global_one_block_draws_dropped_keys),
        cmocka_unit_test(test_causal_global_vs_reference),
    };
    int failed = cmocka_run_group_tests_name("global_device", tests, setup, teardown);
    /* With PRESCORE_TEST_SHAPES=gpu (CI sets PRESCORE_SHAPE=gpu beside it)
     * the default context already runs the GPU shape. */
    if (ts_shape_wanted(PS_SHAPE_CPU, "global_device"))
        failed += cmocka_run_group_tests_name("global_device_gpu_shape", gpu_shape_tests,
                                              setup_gpu_shape, teardown);
    return failed;
}
