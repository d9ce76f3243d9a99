/* Device suite: the per-call error estimate (desc.error_probes,
 * ps_plan_error_estimate) and the exact recomputation above a tolerance
 * (desc.error_tolerance). With a probe for every row the estimate is the
 * measured error itself (checked against the host's exact attention, per
 * head); with fewer probes it ranks heads by their measured error; the exact
 * path reports 0; a tolerance recomputes exactly the heads above it and no
 * other; refusals. */
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

static ps_context *ctx;

static ps_attention_desc base_desc(ps_method method, size_t n)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.method = method;
    d.batch = 2;
    d.heads = 4;
    d.kv_heads = 2;
    d.n_q = d.n_k = n;
    d.d = d.d_v = 32;
    d.want_lse = 1;
    d.min_seq_len = 64;
    d.block = 64;
    d.samples = 32;
    d.budget = n / 4;
    d.global_keys = 0;
    d.seed = 11;
    return d;
}

/* The measured per-head errors of t.o / t.lse against exact attention. */
static void measured(const ps_attention_desc *d, ts_tensors *t, double *rel, double *lse)
{
    ps_attention_desc e = *d;
    e.method = PS_METHOD_EXACT;
    e.selection = PS_SELECTION_TOP;
    e.sketch_queries = 0;
    e.error_probes = 0;
    e.error_tolerance = 0.0f;
    assert_int_equal(ps_ref_exact_attention(&e, t->q, t->k, t->v, t->o_ref, t->lse_ref), PS_OK);
    for (size_t h = 0; h < d->batch * d->heads; h++) {
        double num = 0.0, den = 0.0, l = 0.0;
        size_t rows = 0;
        for (size_t i = 0; i < d->n_q; i++) {
            for (size_t c = 0; c < d->d_v; c++) {
                const size_t at = (h * d->n_q + i) * d->d_v + c;
                const double diff = (double)t->o[at] - t->o_ref[at];
                num += diff * diff;
                den += (double)t->o_ref[at] * t->o_ref[at];
            }
            if (t->lse_ref[h * d->n_q + i] != -INFINITY) {
                l += fabs((double)t->lse[h * d->n_q + i] - t->lse_ref[h * d->n_q + i]);
                rows++;
            }
        }
        rel[h] = den > 0.0 ? sqrt(num / den) : 0.0;
        lse[h] = rows ? l / (double)rows : 0.0;
    }
}

/* Runs d on t; returns the plan's estimate (est_rel, est_lse, recomputed). */
static void run_estimate(const ps_attention_desc *d, ts_tensors *t, float *est_rel,
                         float *est_lse, int *recomputed)
{
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, d, &plan);
    if (st != PS_OK)
        fail_msg("plan: %s: %s", ps_status_string(st), ps_context_last_error(ctx));
    const size_t qh = d->batch * d->heads;
    float dummy[1];
    assert_int_equal(ps_plan_error_estimate(plan, dummy, NULL, NULL, qh),
                     PS_ERR_INVALID_ARGUMENT); /* no call yet */
    st = ps_attention_host(plan, t->q, t->k, t->v, t->o, d->want_lse ? t->lse : NULL);
    if (st != PS_OK)
        fail_msg("attention: %s: %s", ps_status_string(st), ps_plan_last_error(plan));
    assert_int_equal(ps_plan_error_estimate(plan, est_rel, est_lse, recomputed, qh - 1),
                     PS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(ps_plan_error_estimate(plan, est_rel, est_lse, recomputed, qh), PS_OK);
    ps_plan_destroy(plan);
}

/* Every row a probe: the estimate is the measured error of each head. */
static void check_all_rows(ps_attention_desc d, uint64_t stream, const char *what)
{
    d.error_probes = (uint32_t)d.n_q;
    const size_t qh = d.batch * d.heads;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, stream), 0);
    float est_rel[16], est_lse[16];
    int rec[16];
    double rel[16], lse[16];
    run_estimate(&d, &t, est_rel, est_lse, rec);
    measured(&d, &t, rel, lse);
    for (size_t h = 0; h < qh; h++) {
        printf("# %s head %zu: estimate rel %.4f lse %.4f, measured %.4f %.4f\n", what, h,
               est_rel[h], est_lse[h], rel[h], lse[h]);
        assert_int_equal(rec[h], 0);
        if (fabs(est_rel[h] - rel[h]) > 1e-3 * rel[h] + 1e-5 ||
            fabs(est_lse[h] - lse[h]) > 1e-3 * lse[h] + 1e-5)
            fail_msg("%s head %zu: estimate %.6f / %.6f, measured %.6f / %.6f", what, h,
                     est_rel[h], est_lse[h], rel[h], lse[h]);
    }
    ts_tensors_free(&t);
}

static void test_estimate_all_rows(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 250);
    check_all_rows(d, 100, "hyper");
    /* Without an LSE asked for the plan keeps its own for the probes: the
     * same estimate. */
    d.error_probes = 16;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 105), 0);
    float rel_a[8], lse_a[8], rel_b[8], lse_b[8];
    run_estimate(&d, &t, rel_a, lse_a, NULL);
    d.want_lse = 0;
    run_estimate(&d, &t, rel_b, lse_b, NULL);
    assert_memory_equal(rel_a, rel_b, sizeof rel_a);
    assert_memory_equal(lse_a, lse_b, sizeof lse_a);
    assert_true(lse_b[0] > 0.0f);
    ts_tensors_free(&t);
    d.want_lse = 1;
    d = base_desc(PS_METHOD_PRESCORE, 250);
    d.selection = PS_SELECTION_STRATIFIED;
    d.global_keys = 8;
    check_all_rows(d, 120, "stratified prescore, g = 8");
    d = base_desc(PS_METHOD_HYPER, 700);
    d.causal = 1;
    d.min_seq_len = 100;
    d.n_q = 250; /* bottom-right: the probes see their causal keys only */
    check_all_rows(d, 130, "causal hyper, n_q 250 < n_k 700");
    d = base_desc(PS_METHOD_HYPER, 2048);
    d.batch = 1;
    d.n_q = 250;
    d.d = d.d_v = 128; /* 1024 keys of d = d_v = 128 pass llvmpipe's loop budget */
    check_all_rows(d, 135, "hyper, d = 128, n_k 2048");
    d = base_desc(PS_METHOD_HYPER, 200);
    d.min_seq_len = 201; /* the exact path: 0 */
    check_all_rows(d, 140, "exact path");
}

/* Spearman rank correlation of two series without ties. */
static double spearman(const double *a, const float *b, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        size_t ra = 0, rb = 0;
        for (size_t j = 0; j < n; j++) {
            ra += a[j] < a[i];
            rb += b[j] < b[i];
        }
        sum += ((double)ra - (double)rb) * ((double)ra - (double)rb);
    }
    return 1.0 - 6.0 * sum / ((double)n * ((double)n * n - 1.0));
}

/* Hyper at n = 2000 with 64 probes on 8 heads made unequally hard: a
 * per-head key scale (sharper attention, larger error). */
static void unequal_heads(ps_attention_desc *d, ts_tensors *t, uint64_t stream)
{
    *d = base_desc(PS_METHOD_HYPER, 2000);
    d->batch = 1;
    d->heads = d->kv_heads = 8;
    d->error_probes = 64;
    assert_int_equal(ts_tensors_make(t, d, stream), 0);
    for (size_t h = 0; h < 8; h++)
        for (size_t i = 0; i < d->n_k * d->d; i++)
            t->k[h * d->n_k * d->d + i] *= 0.5f + 0.6f * (float)((h * 5) % 8);
}

/* 64 probes of 2000 rows, 8 heads made unequally hard (a per-head key
 * scale: sharper attention, larger error): the estimate ranks the heads as
 * their measured errors do. */
static void test_estimate_ranks_heads(void **state)
{
    (void)state;
    ps_attention_desc d;
    ts_tensors t;
    unequal_heads(&d, &t, 200);
    float est_rel[8], est_lse[8];
    int rec[8];
    double rel[8], lse[8];
    run_estimate(&d, &t, est_rel, est_lse, rec);
    measured(&d, &t, rel, lse);
    for (size_t h = 0; h < 8; h++)
        printf("# 64 probes, head %zu: estimate rel %.4f lse %.4f, measured %.4f %.4f\n", h,
               est_rel[h], est_lse[h], rel[h], lse[h]);
    const double r_rel = spearman(rel, est_rel, 8), r_lse = spearman(lse, est_lse, 8);
    printf("# rank correlation over 8 heads: rel_error %.3f, lse_error %.3f\n", r_rel, r_lse);
    assert_true(r_rel >= 0.8 && r_lse >= 0.8);
    ts_tensors_free(&t);
}

/* A tolerance recomputes exactly the heads whose estimate is above it: their
 * output is exact attention, every other head's is the approximation's. */
static void test_tolerance_recomputes(void **state)
{
    (void)state;
    ps_attention_desc d;
    ts_tensors t;
    unequal_heads(&d, &t, 300);
    const size_t per_head = d.n_q * d.d_v, no = 8 * per_head;
    float est_rel[8], est_lse[8], tol_rel[8];
    int rec[8];
    double rel[8], lse[8];
    run_estimate(&d, &t, est_rel, est_lse, rec);
    float *o_plain = malloc(no * 4);
    assert_non_null(o_plain);
    memcpy(o_plain, t.o, no * 4);
    float sorted[8];
    memcpy(sorted, est_rel, sizeof sorted);
    for (int i = 1; i < 8; i++) /* insertion sort: the median splits the heads */
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            const float x = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = x;
        }
    d.error_tolerance = 0.5f * (sorted[3] + sorted[4]);
    run_estimate(&d, &t, tol_rel, est_lse, rec);
    measured(&d, &t, rel, lse);
    size_t redone = 0;
    for (size_t h = 0; h < 8; h++) {
        assert_true(tol_rel[h] == est_rel[h]); /* the approximation's estimate */
        assert_int_equal(rec[h], est_rel[h] > d.error_tolerance);
        redone += (size_t)rec[h];
        if (rec[h]) {
            if (!(rel[h] < 2e-5 && lse[h] < 1e-4))
                fail_msg("head %zu recomputed: rel %.3e lse %.3e", h, rel[h], lse[h]);
        } else {
            assert_memory_equal(t.o + h * per_head, o_plain + h * per_head, per_head * 4);
        }
    }
    printf("# tolerance %.4f: %zu of 8 heads recomputed exactly\n", d.error_tolerance, redone);
    assert_int_equal(redone, 4);
    free(o_plain);
    ts_tensors_free(&t);
}

static void test_estimate_refusals(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 700);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    float x[8];
    assert_int_equal(ps_plan_error_estimate(plan, x, x, NULL, 8), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "error_probes"));
    ps_plan_destroy(plan);
    assert_int_equal(ps_plan_error_estimate(NULL, x, x, NULL, 8), PS_ERR_INVALID_ARGUMENT);
    d.error_probes = 16;
    d.error_tolerance = 0.1f;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    cl_context cl_ctx;
    ps_context_cl_handles(ctx, &cl_ctx, NULL, NULL);
    cl_int err;
    cl_mem b = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, 4 * 2 * 700 * 32 * 4, NULL, &err);
    cl_mem o = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, 4 * 2 * 700 * 32 * 4, NULL, &err);
    cl_event done = NULL;
    assert_int_equal(ps_attention_enqueue(plan, b, b, b, o, NULL, 0, NULL, &done),
                     PS_ERR_UNSUPPORTED);
    assert_non_null(strstr(ps_plan_last_error(plan), "error_tolerance"));
    clReleaseMemObject(b);
    clReleaseMemObject(o);
    ps_plan_destroy(plan);
}

static int setup(void **state)
{
    (void)state;
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.shape = ts_first_shape();
    if (ps_context_create(&ctx, &opt) != PS_OK) {
        fprintf(stderr, "context: %s\n", ps_context_last_error(NULL));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ps_context_destroy(ctx);
    return 0;
}

int main(void)
{
    if (!ts_have_device("estimate_device"))
        return TS_EXIT_SKIP;
    ts_report_seed("estimate_device");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_estimate_all_rows),
        cmocka_unit_test(test_estimate_ranks_heads),
        cmocka_unit_test(test_tolerance_recomputes),
        cmocka_unit_test(test_estimate_refusals),
    };
    return cmocka_run_group_tests_name("estimate_device", tests, setup, teardown);
}
