/* Device suite: the threading rule of docs/API.md. Two threads with their own
 * plans on one context, and two contexts on one device, give exactly the
 * single-threaded results; the threads' messages stay apart (each plan's on
 * the plan, each thread's context-level one per thread). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
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
    char message[256]; /* of a failure: the context's (plan creation) or the plan's */
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
    j->message[0] = '\0';
    j->status = ps_plan_create(j->ctx, &desc, &plan);
    if (j->status != PS_OK)
        snprintf(j->message, sizeof j->message, "ps_plan_create: %s",
                 ps_context_last_error(j->ctx));
    for (int r = 0; r < ROUNDS && j->status == PS_OK; r++) {
        j->status = ps_attention_host(plan, j->q, j->k, j->v, j->o, NULL);
        if (j->status != PS_OK)
            snprintf(j->message, sizeof j->message, "%s", ps_plan_last_error(plan));
    }
    ps_plan_destroy(plan);
    return NULL;
}

static void expect_ok(const job *j)
{
    if (j->status != PS_OK)
        fail_msg("%s: %s", ps_status_string(j->status), j->message);
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
        jobs[i] = (job){a, i, q, k, v, ref[i], PS_OK, ""};
        run_job(&jobs[i]); /* single-threaded results */
        expect_ok(&jobs[i]);
    }
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        jobs[i] = (job){i ? b : a, i, q, k, v, out[i], PS_OK, ""};
        assert_int_equal(pthread_create(&threads[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        expect_ok(&jobs[i]);
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

/* Messages under concurrency: on one context, one thread computes on its
 * plan while another fails over and over on its own (ps_attention_host with
 * a NULL output, refused inside the nested call's frame). Each plan keeps its
 * own message (the computing plan's stays "" through the other's failures),
 * each thread's context message stays what its own context-level calls left,
 * and the results equal the single-threaded ones. */
#define FAILURES 20000

typedef struct failer {
    ps_context *ctx;
    const float *q;
    ps_plan *plan; /* out: kept for the caller to read after the join */
    long wrong;
    char first_wrong[320];
} failer;

static void *fail_on_own_plan(void *arg)
{
    failer *f = arg;
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = N;
    desc.d = desc.d_v = D;
    /* This thread's context-level failure first. */
    ps_attention_desc bad = desc;
    bad.d = 40;
    ps_plan *none = NULL;
    if (ps_plan_create(f->ctx, &bad, &none) != PS_ERR_UNSUPPORTED ||
        !strstr(ps_context_last_error(f->ctx), "d = 40")) {
        f->wrong++;
        snprintf(f->first_wrong, sizeof f->first_wrong, "create: \"%s\"",
                 ps_context_last_error(f->ctx));
        return NULL;
    }
    if (ps_plan_create(f->ctx, &desc, &f->plan) != PS_OK) {
        f->wrong++;
        snprintf(f->first_wrong, sizeof f->first_wrong, "plan: \"%s\"",
                 ps_context_last_error(f->ctx));
        return NULL;
    }
    /* The successful ps_plan_create emptied this thread's context message;
     * set it again, then only plan calls follow. */
    ps_plan_create(f->ctx, &bad, &none);
    for (int i = 0; i < FAILURES; i++) {
        const ps_status st = ps_attention_host(f->plan, f->q, f->q, f->q, NULL, NULL);
        const char *msg = ps_plan_last_error(f->plan);
        const char *ctx_msg = ps_context_last_error(f->ctx);
        if ((st != PS_ERR_INVALID_ARGUMENT || strcmp(msg, "ps_attention_host: o is NULL") != 0 ||
             !strstr(ctx_msg, "d = 40")) &&
            f->wrong++ == 0)
            snprintf(f->first_wrong, sizeof f->first_wrong,
                     "call %d: status %d, plan \"%s\", context \"%s\"", i, st, msg, ctx_msg);
    }
    return NULL;
}

typedef struct computer {
    ps_context *ctx;
    const float *q, *k, *v;
    float *o;
    ps_status status;
    long wrong;
    char first_wrong[320];
} computer;

static void *compute_on_own_plan(void *arg)
{
    computer *c = arg;
    ps_attention_desc desc;
    ps_attention_desc_default(&desc);
    desc.n_q = desc.n_k = N;
    desc.d = desc.d_v = D;
    ps_plan *plan = NULL;
    c->status = ps_plan_create(c->ctx, &desc, &plan);
    for (int r = 0; r < ROUNDS && c->status == PS_OK; r++) {
        c->status = ps_attention_host(plan, c->q, c->k, c->v, c->o, NULL);
        const char *msg = ps_plan_last_error(plan), *ctx_msg = ps_context_last_error(c->ctx);
        if ((msg[0] || ctx_msg[0]) && c->wrong++ == 0)
            snprintf(c->first_wrong, sizeof c->first_wrong,
                     "round %d: status %d, plan \"%s\", context \"%s\"", r, c->status, msg,
                     ctx_msg);
    }
    ps_plan_destroy(plan);
    return NULL;
}

static void test_messages_two_threads_one_context(void **state)
{
    (void)state;
    ps_context *ctx = NULL;
    assert_int_equal(ps_context_create(&ctx, NULL), PS_OK);
    float *q = malloc(N * D * 4), *k = malloc(N * D * 4), *v = malloc(N * D * 4);
    float *ref = malloc(N * D * 4), *out = malloc(N * D * 4);
    assert_true(q && k && v && ref && out);
    ts_fill_normal(q, N * D, ts_seed(), 24, 1.0f);
    ts_fill_normal(k, N * D, ts_seed(), 25, 1.0f);
    ts_fill_normal(v, N * D, ts_seed(), 26, 1.0f);
    job single = {ctx, 0, q, k, v, ref, PS_OK, ""};
    run_job(&single);
    expect_ok(&single);

    failer f = {ctx, q, NULL, 0, ""};
    computer c = {ctx, q, k, v, out, PS_OK, 0, ""};
    pthread_t threads[2];
    assert_int_equal(pthread_create(&threads[0], NULL, fail_on_own_plan, &f), 0);
    assert_int_equal(pthread_create(&threads[1], NULL, compute_on_own_plan, &c), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    /* Read from this thread: the failing plan kept its message; this
     * thread's context message is its own (none). */
    char kept[256] = "";
    if (f.plan) {
        snprintf(kept, sizeof kept, "%s", ps_plan_last_error(f.plan));
        assert_int_equal(ps_plan_destroy(f.plan), PS_OK);
    }
    if (f.wrong)
        fail_msg("failing thread: %ld wrong, first: %s", f.wrong, f.first_wrong);
    if (c.wrong)
        fail_msg("computing thread: %ld wrong, first: %s", c.wrong, c.first_wrong);
    assert_int_equal(c.status, PS_OK);
    assert_memory_equal(out, ref, N * D * 4);
    assert_string_equal(kept, "ps_attention_host: o is NULL");
    assert_string_equal(ps_context_last_error(ctx), "");
    free(q);
    free(k);
    free(v);
    free(ref);
    free(out);
    assert_int_equal(ps_context_destroy(ctx), PS_OK);
}

int main(void)
{
    if (!ts_have_device("concurrency_device"))
        return TS_EXIT_SKIP;
    ts_report_seed("concurrency_device");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_threads_one_context),
        cmocka_unit_test(test_two_contexts_one_device),
        cmocka_unit_test(test_messages_two_threads_one_context),
    };
    return cmocka_run_group_tests_name("concurrency_device", tests, NULL, NULL);
}
