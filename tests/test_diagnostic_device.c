/* Device suite: the diagnostic switch PS_DIAG_UNIT_RESIDUAL_WEIGHT
 * (prescore.h, "diagnostics"), which prescore-bench uses for heavy_recall.
 * With one block covering every key the unit-weight LSE is the exact LSE;
 * with smaller blocks exp(LSE_unit - LSE_exact) is the share of the exact
 * mass reached, in (0, 1] and well below the weighted estimate; switching
 * it off again gives the normal result bit for bit; the dropped-key draws
 * count once each, also on prepared keys; bad arguments are refused. */
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
#include "support.h"

static ps_context *ctx;

static ps_attention_desc base_desc(ps_method method, size_t n, size_t block)
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
    d.block = block;
    d.samples = 64;
    d.seed = 5;
    return d;
}

/* Runs @p plan on t's inputs into (o, lse). */
static void run_plan(ps_plan *plan, const ts_tensors *t, float *o, float *lse)
{
    ps_status st = ps_attention_host(plan, t->q, t->k, t->v, o, lse);
    if (st != PS_OK)
        fail_msg("attention: %s: %s", ps_status_string(st), ps_plan_last_error(plan));
}

static ps_plan *make_plan(const ps_attention_desc *d)
{
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, d, &plan);
    if (st != PS_OK)
        fail_msg("plan: %s: %s", ps_status_string(st), ps_context_last_error(ctx));
    return plan;
}

/* Exact attention of t's inputs into (t->o_ref, t->lse_ref). */
static void run_exact(const ps_attention_desc *d, ts_tensors *t)
{
    ps_attention_desc e = *d;
    e.method = PS_METHOD_EXACT;
    ps_plan *plan = make_plan(&e);
    run_plan(plan, t, t->o_ref, t->lse_ref);
    ps_plan_destroy(plan);
}

/* Unit-weight run of @p d; returns min, mean and max over rows of
 * exp(LSE_unit - LSE_exact). */
static void reached_share(const ps_attention_desc *d, ts_tensors *t, double out[3])
{
    const size_t rows = d->batch * d->heads * d->n_q;
    ps_plan *plan = make_plan(d);
    assert_int_equal(ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 1), PS_OK);
    run_plan(plan, t, t->o, t->lse);
    ps_plan_destroy(plan);
    run_exact(d, t);
    out[0] = INFINITY;
    out[1] = 0.0;
    out[2] = -INFINITY;
    for (size_t i = 0; i < rows; i++) {
        const double r = exp((double)t->lse[i] - (double)t->lse_ref[i]);
        out[0] = r < out[0] ? r : out[0];
        out[2] = r > out[2] ? r : out[2];
        out[1] += r / (double)rows;
    }
}

/* b >= n: one block holds every key, every sample is masked, so the
 * unit-weight LSE is the exact LSE. */
static void test_one_block_unit_weight_is_exact(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 384, 512);
    ts_tensors t;
    double share[3];
    assert_int_equal(ts_tensors_make(&t, &d, 41), 0);
    reached_share(&d, &t, share);
    const size_t rows = d.heads * d.n_q;
    const double lse_diff = ts_max_abs_diff(t.lse, t.lse_ref, rows);
    printf("# one block: max |LSE_unit - LSE_exact| %.2e\n", lse_diff);
    assert_true(lse_diff < 1e-3);
    ts_tensors_free(&t);
}

/* b < n: the reached keys are a subset of all keys (samples are drawn with
 * replacement, so a repeated key could push a row slightly above 1; not
 * with this few samples). The weighted estimator would give about 1 on
 * average, so a mean share well below 1 shows the weight really is 1. */
static void check_partial_share(ps_method method, size_t budget)
{
    ps_attention_desc d = base_desc(method, 1024, 64);
    d.budget = budget;
    ts_tensors t;
    double share[3];
    assert_int_equal(ts_tensors_make(&t, &d, 43), 0);
    reached_share(&d, &t, share);
    printf("# %s: share min %.4f mean %.4f max %.4f\n",
           method == PS_METHOD_HYPER ? "hyper" : "prescore", share[0], share[1], share[2]);
    assert_true(share[0] > 0.0);
    assert_true(share[2] <= 1.0 + 1e-4);
    assert_true(share[1] < 0.6);
    ts_tensors_free(&t);
}

static void test_hyper_partial_share(void **state)
{
    (void)state;
    check_partial_share(PS_METHOD_HYPER, 0);
}

static void test_prescore_partial_share(void **state)
{
    (void)state;
    check_partial_share(PS_METHOD_PRESCORE, 512);
}

/* On, then off again: the normal result comes back bit for bit, and the
 * switch did change the result while on. */
static void test_switch_off_restores(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE, 1024, 64);
    d.budget = 768;
    const size_t no = d.heads * d.n_q * d.d_v, nl = d.heads * d.n_q;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 47), 0);
    float *o_unit = malloc(no * sizeof *o_unit), *lse_unit = malloc(nl * sizeof *lse_unit);
    assert_non_null(o_unit);
    assert_non_null(lse_unit);
    ps_plan *plan = make_plan(&d);
    run_plan(plan, &t, t.o_ref, t.lse_ref); /* normal */
    assert_int_equal(ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 1), PS_OK);
    run_plan(plan, &t, o_unit, lse_unit);
    assert_int_equal(ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 0), PS_OK);
    run_plan(plan, &t, t.o, t.lse);
    ps_plan_destroy(plan);
    assert_memory_equal(t.o, t.o_ref, no * sizeof(float));
    assert_memory_equal(t.lse, t.lse_ref, nl * sizeof(float));
    assert_true(ts_max_abs_diff(lse_unit, t.lse_ref, nl) > 0.1);
    free(o_unit);
    free(lse_unit);
    ts_tensors_free(&t);
}

/* The dropped-key residual (docs/HYPER.md): a top-m plan whose kept keys
 * fit in one block, with as many samples as dropped keys, draws each
 * dropped key once; with unit weights it reaches every key once, so the
 * unit-weight LSE is the exact LSE. And the switch is read by the query
 * half: keys prepared with it off, queries run with it on, give the full
 * diagnostic call's result (the draws are made with the keys). */
static void test_dropped_draws_unit_weight(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE, 600, 128);
    d.budget = 100;
    d.global_keys = 8;
    d.score = PS_SCORE_NORM;
    d.selection = PS_SELECTION_TOP;
    d.sketch_queries = 0;
    d.samples = 500;
    const size_t rows = d.heads * d.n_q, no = rows * d.d_v;
    ts_tensors t;
    double share[3];
    assert_int_equal(ts_tensors_make(&t, &d, 53), 0);
    reached_share(&d, &t, share);
    const double lse_diff = ts_max_abs_diff(t.lse, t.lse_ref, rows);
    printf("# dropped-key draws of every dropped key, unit weight: max |LSE_unit - "
           "LSE_exact| %.2e\n", lse_diff);
    assert_true(lse_diff < 1e-3);

    d.samples = 64; /* 64 of the 500 dropped keys drawn */
    ps_plan *plan = make_plan(&d);
    assert_int_equal(ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 1), PS_OK);
    run_plan(plan, &t, t.o_ref, t.lse_ref); /* the full diagnostic call */
    assert_int_equal(ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 0), PS_OK);
    cl_context cl_ctx;
    ps_context_cl_handles(ctx, &cl_ctx, NULL, NULL);
    cl_int err;
    const size_t nq = d.heads * d.n_q * d.d, nk = d.kv_heads * d.n_k * d.d;
    cl_mem bq = clCreateBuffer(cl_ctx, CL_MEM_COPY_HOST_PTR, nq * 4, t.q, &err);
    cl_mem bk = clCreateBuffer(cl_ctx, CL_MEM_COPY_HOST_PTR, nk * 4, t.k, &err);
    cl_mem bv = clCreateBuffer(cl_ctx, CL_MEM_COPY_HOST_PTR, nk * 4, t.v, &err);
    cl_mem bo = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, no * 4, NULL, &err);
    cl_mem bl = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, rows * 4, NULL, &err);
    assert_true(bq && bk && bv && bo && bl);
    assert_int_equal(ps_attention_prepare_keys(plan, bk, bv), PS_OK);
    assert_int_equal(ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 1), PS_OK);
    assert_int_equal(ps_attention_prepared(plan, bq, bo, bl), PS_OK);
    cl_command_queue queue;
    ps_context_cl_handles(ctx, NULL, NULL, &queue);
    assert_int_equal(clEnqueueReadBuffer(queue, bo, CL_TRUE, 0, no * 4, t.o, 0, NULL, NULL),
                     CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(queue, bl, CL_TRUE, 0, rows * 4, t.lse, 0, NULL, NULL),
                     CL_SUCCESS);
    assert_memory_equal(t.o, t.o_ref, no * sizeof(float));
    assert_memory_equal(t.lse, t.lse_ref, rows * sizeof(float));
    cl_mem all[] = {bq, bk, bv, bo, bl};
    for (size_t i = 0; i < 5; i++)
        clReleaseMemObject(all[i]);
    ps_plan_destroy(plan);
    ts_tensors_free(&t);
}

static void test_refusals(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 256, 64);
    ps_plan *plan = make_plan(&d);
    /* A failed plan creation leaves its message on the context; the plan's
     * refusals below go to the plan only. */
    ps_attention_desc bad = d;
    bad.d = 40;
    ps_plan *none = NULL;
    assert_int_equal(ps_plan_create(ctx, &bad, &none), PS_ERR_UNSUPPORTED);
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));
    assert_int_equal(ps_plan_set_diagnostic(NULL, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 1),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 2),
                     PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "value"));
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));
    assert_int_equal(ps_plan_set_diagnostic(plan, (ps_diagnostic)99, 1),
                     PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "what"));
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));
    /* A success empties the plan's message and leaves the context's. */
    assert_int_equal(ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 0), PS_OK);
    assert_string_equal(ps_plan_last_error(plan), "");
    assert_non_null(strstr(ps_context_last_error(ctx), "d = 40"));
    ps_plan_destroy(plan);
}

static int setup(void **state)
{
    (void)state;
    return ps_context_create(&ctx, NULL) == PS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ps_context_destroy(ctx);
    return 0;
}

int main(void)
{
    if (!ts_have_device("diagnostic_device"))
        return TS_EXIT_SKIP;
    ts_report_seed("diagnostic_device");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_block_unit_weight_is_exact),
        cmocka_unit_test(test_hyper_partial_share),
        cmocka_unit_test(test_prescore_partial_share),
        cmocka_unit_test(test_switch_off_restores),
        cmocka_unit_test(test_dropped_draws_unit_weight),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests_name("diagnostic_device", tests, setup, teardown);
}
