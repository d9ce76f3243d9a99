/* Device suite: the approximate pipelines through the public ps_attention
 * call. Properties a broken join would fail: the automatic exact path below
 * min_seq_len, HYPER with one block equal to exact attention, PRESCORE with
 * one block equal to exact attention over the reference's selected keys
 * (the floor of the selection), and the not-yet-available causal recursion
 * answered with a status. */
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

typedef struct tensors {
    float *q, *k, *v, *o, *o_ref, *lse, *lse_ref;
} tensors;

static void make_tensors(tensors *t, const ps_attention_desc *d, uint64_t stream)
{
    const size_t nq = d->batch * d->heads * d->n_q * d->d;
    const size_t nk = d->batch * d->kv_heads * d->n_k * d->d;
    const size_t nv = d->batch * d->kv_heads * d->n_k * d->d_v;
    const size_t no = d->batch * d->heads * d->n_q * d->d_v;
    const size_t nl = d->batch * d->heads * d->n_q;
    t->q = malloc(nq * 4);
    t->k = malloc(nk * 4);
    t->v = malloc(nv * 4);
    t->o = malloc(no * 4);
    t->o_ref = malloc(no * 4);
    t->lse = malloc(nl * 4);
    t->lse_ref = malloc(nl * 4);
    assert_true(t->q && t->k && t->v && t->o && t->o_ref && t->lse && t->lse_ref);
    ts_fill_normal(t->q, nq, ts_seed(), stream, 0.5f);
    ts_fill_normal(t->k, nk, ts_seed(), stream + 1, 0.5f);
    ts_fill_normal(t->v, nv, ts_seed(), stream + 2, 1.0f);
}

static void free_tensors(tensors *t)
{
    free(t->q);
    free(t->k);
    free(t->v);
    free(t->o);
    free(t->o_ref);
    free(t->lse);
    free(t->lse_ref);
}

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
    d.min_seq_len = 64; /* exercise the approximation at test sizes */
    d.seed = 7;
    return d;
}

static void run(const ps_attention_desc *d, tensors *t)
{
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, d, &plan);
    if (st != PS_OK)
        fail_msg("plan: %s: %s", ps_status_string(st), ps_context_last_error(ctx));
    st = ps_attention_host(plan, t->q, t->k, t->v, t->o, t->lse);
    if (st != PS_OK)
        fail_msg("attention: %s: %s", ps_status_string(st), ps_context_last_error(ctx));
    ps_plan_destroy(plan);
}

static void test_exact_path_below_min_seq_len(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 300);
    d.min_seq_len = 301;
    d.block = 16; /* would be a poor approximation: must not be used */
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_plan_path(plan), PS_METHOD_EXACT);
    ps_plan_destroy(plan);
    tensors t;
    make_tensors(&t, &d, 100);
    run(&d, &t);
    ps_attention_desc e = d;
    e.method = PS_METHOD_EXACT;
    assert_int_equal(ps_ref_exact_attention(&e, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    const size_t no = d.heads * d.n_q * d.d_v;
    assert_true(ts_rel_error(t.o, t.o_ref, no) < 2e-5);
    free_tensors(&t);
}

static void test_hyper_one_block_is_exact(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 777);
    d.block = 1024; /* one block holds every key: the residual is fully masked */
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_plan_path(plan), PS_METHOD_HYPER);
    ps_plan_destroy(plan);
    tensors t;
    make_tensors(&t, &d, 200);
    run(&d, &t);
    ps_attention_desc e = d;
    e.method = PS_METHOD_EXACT;
    assert_int_equal(ps_ref_exact_attention(&e, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    const size_t no = d.heads * d.n_q * d.d_v, nl = d.heads * d.n_q;
    const double rel = ts_rel_error(t.o, t.o_ref, no), lse = ts_max_abs_diff(t.lse, t.lse_ref, nl);
    printf("# hyper, one block: rel %.2e, lse %.2e\n", rel, lse);
    assert_true(rel < 2e-5 && lse < 1e-4);
    free_tensors(&t);
}

/* Small blocks on data whose queries equal their keys: LSH puts each query
 * next to its own key, so the approximation must stay far closer to exact
 * than on unrelated inputs. A hash or sort that lost the pairing fails. */
static void test_hyper_small_blocks_planted(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 1024);
    d.kv_heads = d.heads = 1;
    d.block = 64;
    d.samples = 64;
    d.scale = 4.0f; /* peaked attention: each query's mass sits on its own key */
    tensors t;
    make_tensors(&t, &d, 300);
    memcpy(t.q, t.k, d.n_q * d.d * 4);
    run(&d, &t);
    ps_attention_desc e = d;
    e.method = PS_METHOD_EXACT;
    assert_int_equal(ps_ref_exact_attention(&e, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    const double rel = ts_rel_error(t.o, t.o_ref, d.n_q * d.d_v);
    printf("# hyper, planted self-matches, b = 64: rel %.3f\n", rel);
    assert_true(rel < 0.2);
    free_tensors(&t);
}

static void test_prescore_one_block_is_the_floor(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE, 900);
    d.score = PS_SCORE_NORM;
    d.budget = 300;
    d.block = 1024;
    tensors t;
    make_tensors(&t, &d, 400);
    run(&d, &t);

    /* Reference: score, select, then exact attention over the kept keys. */
    const size_t kheads = d.batch * d.kv_heads, cap = 300;
    float *scores = malloc(kheads * d.n_k * 4);
    uint32_t *idx = malloc(kheads * cap * 4), counts[1];
    assert_int_equal(ps_ref_score_keys(&d, t.k, scores), PS_OK);
    assert_int_equal(ps_ref_select_keys(&d, scores, idx, counts), PS_OK);
    assert_int_equal(counts[0], cap);
    float *ks = malloc(cap * d.d * 4), *vs = malloc(cap * d.d_v * 4);
    for (size_t i = 0; i < cap; i++) {
        memcpy(ks + i * d.d, t.k + (size_t)idx[i] * d.d, d.d * 4);
        memcpy(vs + i * d.d_v, t.v + (size_t)idx[i] * d.d_v, d.d_v * 4);
    }
    ps_attention_desc e = d;
    e.method = PS_METHOD_EXACT;
    e.n_k = cap;
    assert_int_equal(ps_ref_exact_attention(&e, t.q, ks, vs, t.o_ref, t.lse_ref), PS_OK);
    const size_t no = d.heads * d.n_q * d.d_v;
    const double rel = ts_rel_error(t.o, t.o_ref, no);
    printf("# prescore (norm, m = 300), one block vs exact over kept keys: rel %.2e\n", rel);
    assert_true(rel < 2e-5);
    free(scores);
    free(idx);
    free(ks);
    free(vs);
    free_tensors(&t);
}

static void test_causal_recursion_status(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER, 200);
    d.causal = 1;
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    tensors t;
    make_tensors(&t, &d, 500);
    assert_int_equal(ps_attention_host(plan, t.q, t.k, t.v, t.o, t.lse),
                     PS_ERR_NOT_IMPLEMENTED);
    assert_non_null(strstr(ps_context_last_error(ctx), "causal"));
    ps_plan_destroy(plan);
    free_tensors(&t);
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
    if (!ts_have_device("pipeline_device"))
        return TS_EXIT_SKIP;
    ts_report_seed("pipeline_device");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_path_below_min_seq_len),
        cmocka_unit_test(test_hyper_one_block_is_exact),
        cmocka_unit_test(test_hyper_small_blocks_planted),
        cmocka_unit_test(test_prescore_one_block_is_the_floor),
        cmocka_unit_test(test_causal_recursion_status),
    };
    return cmocka_run_group_tests_name("pipeline_device", tests, setup, teardown);
}
