/* Device suite: the threading rule of docs/API.md. Two threads with their own
 * plans on one context, and two contexts on one device, give exactly the
 * single-threaded results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "prescore/prescore.h"
#include "support.h"

#define N 700
#define D 64
#define ROUNDS 5

typedef struct job {
    ps_context *ctx;
    int causal;
    const float *q, *k, *v;
    float *o;
    ps_status status;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = N;
    desc.d = desc.d_v = D;
    desc.causal = j->causal;
    ps_plan *plan = NULL;
    j->status = ps_plan_create(j->ctx, &desc, &plan);
    for (int r = 0; r < ROUNDS && j->status == PS_OK; r++)
        j->status = ps_attention_host(plan, j->q, j->k, j->v, j->o, NULL);
    ps_plan_destroy(plan);
    return NULL;
}

static void run_pair(ps_context *a, ps_context *b)
{
    float *q = malloc(N * D * 4), *k = malloc(N * D * 4), *v = malloc(N * D * 4);
    float *ref[2], *out[2];
    assert_true(q && k && v);
    ts_fill_normal(q, N * D, ts_seed(), 21, 1.0f);
    ts_fill_normal(k, N * D, ts_seed(), 22, 1.0f);
    ts_fill_normal(v, N * D, ts_seed(), 23, 1.0f);
    job jobs[2];
    for (int i = 0; i < 2; i++) {
        ref[i] = malloc(N * D * 4);
        out[i] = malloc(N * D * 4);
        jobs[i] = (job){a, i, q, k, v, ref[i], PS_OK};
        run_job(&jobs[i]); /* single-threaded results */
        assert_int_equal(jobs[i].status, PS_OK);
    }
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        jobs[i] = (job){i ? b : a, i, q, k, v, out[i], PS_OK};
        assert_int_equal(pthread_create(&threads[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(jobs[i].status, PS_OK);
        assert_memory_equal(out[i], ref[i], N * D * 4);
        free(ref[i]);
        free(out[i]);
    }
    free(q);
    free(k);
    free(v);
}

static void test_two_threads_one_context(void **state)
{
    (void)state;
    ps_context *ctx = NULL;
    assert_int_equal(ps_context_create(&ctx, NULL), PS_OK);
    run_pair(ctx, ctx);
    ps_context_destroy(ctx);
}

static void test_two_contexts_one_device(void **state)
{
    (void)state;
    ps_context *a = NULL, *b = NULL;
    assert_int_equal(ps_context_create(&a, NULL), PS_OK);
    assert_int_equal(ps_context_create(&b, NULL), PS_OK);
    run_pair(a, b);
    ps_context_destroy(a);
    ps_context_destroy(b);
}

int main(void)
{
    if (!ts_have_device("concurrency_device"))
        return TS_EXIT_SKIP;
    ts_report_seed("concurrency_device");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_threads_one_context),
        cmocka_unit_test(test_two_contexts_one_device),
    };
    return cmocka_run_group_tests_name("concurrency_device", tests, NULL, NULL);
}
