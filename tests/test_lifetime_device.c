/* Device suite: handle lifetimes and error messages. A context refuses to be
 * destroyed while plans of it live (and stays usable); a plan or context
 * destroyed twice, used after its destroy, or never created is refused with a
 * message instead of touching freed memory (ASan builds would report the
 * touch); a plan's calls keep their messages on the plan (ps_plan_last_error)
 * and the context's message, per thread, holds context-level failures only,
 * so threads sharing a context read exactly their own message, never a torn
 * or foreign one; plans created and destroyed from several threads at once
 * keep the live-plan count right. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prescore/prescore.h"
#include "support.h"

static ps_context *ctx;

static void small_desc(ps_attention_desc *d)
{
    ps_attention_desc_default(d);
    d->batch = 1;
    d->heads = d->kv_heads = 1;
    d->n_q = d->n_k = 64;
    d->d = d->d_v = 16;
    d->method = PS_METHOD_EXACT;
}

static void run_once(ps_plan *plan)
{
    float x[64 * 16], o[64 * 16];
    ts_fill_normal(x, 64 * 16, ts_seed(), 1, 1.0f);
    assert_int_equal(ps_attention_host(plan, x, x, x, o, NULL), PS_OK);
}

static void test_context_outlives_its_plans(void **state)
{
    (void)state;
    ps_context *c = NULL;
    assert_int_equal(ps_context_create(&c, NULL), PS_OK);
    ps_attention_desc d;
    small_desc(&d);
    ps_plan *a = NULL, *b = NULL;
    assert_int_equal(ps_plan_create(c, &d, &a), PS_OK);
    assert_int_equal(ps_plan_create(c, &d, &b), PS_OK);

    assert_int_equal(ps_context_destroy(c), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(c), "2 plan(s) of this context are still live"));
    run_once(a); /* kept, and still usable */
    assert_int_equal(ps_plan_destroy(a), PS_OK);
    assert_int_equal(ps_context_destroy(c), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(c), "1 plan(s)"));
    run_once(b);
    assert_int_equal(ps_plan_destroy(b), PS_OK);
    assert_int_equal(ps_context_destroy(c), PS_OK);
    assert_int_equal(ps_context_destroy(NULL), PS_OK);
    assert_int_equal(ps_plan_destroy(NULL), PS_OK);
}

static void test_dead_handles_refused(void **state)
{
    (void)state;
    ps_attention_desc d;
    small_desc(&d);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    run_once(plan);
    assert_int_equal(ps_plan_destroy(plan), PS_OK);

    /* Every use of the destroyed plan is refused, not run on freed memory. */
    float x[64 * 16] = {0}, o[64 * 16];
    ps_attention_desc got;
    assert_int_equal(ps_plan_destroy(plan), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "ps_plan_destroy: plan"));
    assert_non_null(strstr(ps_context_last_error(NULL), "not a live plan"));
    assert_int_equal(ps_attention_host(plan, x, x, x, o, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "ps_attention_host: plan"));
    assert_int_equal(ps_attention(plan, NULL, NULL, NULL, NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention_prepare_keys(plan, NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention_prepared(plan, NULL, NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_plan_desc(plan, &got), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_score_keys(plan, NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_select_keys(plan, NULL, NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_plan_set_diagnostic(plan, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 1),
                     PS_ERR_INVALID_ARGUMENT);
    assert_true(ps_plan_last_time_ms(plan) < 0.0);
    assert_int_equal(ps_plan_selected_capacity(plan), 0);
    ps_stage_times times;
    assert_int_equal(ps_plan_stage_times(plan, &times), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "ps_plan_stage_times: plan"));
    assert_int_equal(ps_plan_path(plan), PS_METHOD_EXACT);
    assert_non_null(strstr(ps_context_last_error(NULL), "ps_plan_path: plan"));

    /* A pointer that never was a plan or a context. */
    int not_a_handle = 0;
    assert_int_equal(ps_plan_destroy((ps_plan *)&not_a_handle), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_destroy((ps_context *)&not_a_handle), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "not a live context"));

    /* A destroyed context: destroy again, create a plan on it, query it. */
    ps_context *c = NULL;
    assert_int_equal(ps_context_create(&c, NULL), PS_OK);
    assert_int_equal(ps_context_destroy(c), PS_OK);
    assert_int_equal(ps_context_destroy(c), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "ps_context_destroy: context"));
    assert_int_equal(ps_plan_create(c, &d, &plan), PS_ERR_INVALID_ARGUMENT);
    assert_null(plan);
    assert_non_null(strstr(ps_context_last_error(NULL), "ps_plan_create: context"));
    ps_device_info info;
    ps_cache_stats stats;
    cl_context cl_ctx;
    assert_int_equal(ps_context_device_info(c, &info), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_cache_stats(c, &stats), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_cl_handles(c, &cl_ctx, NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_programs_from_cache(c), 0);
    assert_int_equal(ps_context_kernel_shape(c), PS_SHAPE_AUTO);
    assert_non_null(strstr(ps_context_last_error(NULL), "ps_context_kernel_shape: context"));
    assert_string_equal(ps_context_last_error(c), ""); /* never dereferenced */
}

/* Each thread fails its own way on its own plan, over and over, and must
 * read back exactly its own message on that plan every time; the thread's
 * context message (left by its own failed ps_plan_create) is never touched
 * by the plan's calls, failing or not. */
#define CALLS_PER_THREAD 100000
#define SUCCESS_EVERY 1000

typedef struct worker {
    ps_plan *plan;
    cl_mem buf, out;
    int null_arg; /* which argument this thread passes as NULL: 0 q, 1 k */
    long wrong;
    char first_wrong[320];
} worker;

static void note_wrong(worker *w, int call, const char *what, const char *msg, ps_status st)
{
    if (w->wrong++ == 0)
        snprintf(w->first_wrong, sizeof w->first_wrong, "call %d: %s \"%s\" (status %d)", call,
                 what, msg, st);
}

static void *fail_repeatedly(void *arg)
{
    worker *w = arg;
    const char *want = w->null_arg == 0 ? "ps_attention: q is NULL" : "ps_attention: k is NULL";
    /* This thread's own context-level failure: thread 0 a descriptor the
     * plan refuses, thread 1 a NULL descriptor. */
    ps_attention_desc bad;
    small_desc(&bad);
    bad.d = 40;
    ps_plan *none = NULL;
    const ps_status create = w->null_arg == 0 ? ps_plan_create(ctx, &bad, &none)
                                              : ps_plan_create(ctx, NULL, &none);
    const char *want_ctx = w->null_arg == 0 ? "d = 40" : "desc is NULL";
    if (create == PS_OK || !strstr(ps_context_last_error(ctx), want_ctx))
        note_wrong(w, -1, "context", ps_context_last_error(ctx), create);
    for (int i = 0; i < CALLS_PER_THREAD; i++) {
        ps_status st;
        if (i % SUCCESS_EVERY == SUCCESS_EVERY / 2) {
            /* A success empties the plan's message, not the context's. */
            st = ps_attention(w->plan, w->buf, w->buf, w->buf, w->out, NULL);
            if (st != PS_OK || ps_plan_last_error(w->plan)[0] != '\0')
                note_wrong(w, i, "success, plan", ps_plan_last_error(w->plan), st);
        } else {
            st = w->null_arg == 0 ? ps_attention(w->plan, NULL, w->buf, w->buf, w->out, NULL)
                                  : ps_attention(w->plan, w->buf, NULL, w->buf, w->out, NULL);
            const char *msg = ps_plan_last_error(w->plan);
            if (st != PS_ERR_INVALID_ARGUMENT || strcmp(msg, want) != 0)
                note_wrong(w, i, "plan", msg, st);
        }
        if (!strstr(ps_context_last_error(ctx), want_ctx))
            note_wrong(w, i, "context", ps_context_last_error(ctx), st);
    }
    return NULL;
}

static void test_messages_per_thread(void **state)
{
    (void)state;
    ps_attention_desc d;
    small_desc(&d);
    cl_context cl_ctx = NULL;
    assert_int_equal(ps_context_cl_handles(ctx, &cl_ctx, NULL, NULL), PS_OK);
    static float zeros[64 * 16];
    worker w[2];
    pthread_t threads[2];
    for (int t = 0; t < 2; t++) {
        memset(&w[t], 0, sizeof w[t]);
        w[t].null_arg = t;
        assert_int_equal(ps_plan_create(ctx, &d, &w[t].plan), PS_OK);
        cl_int err = CL_SUCCESS;
        w[t].buf = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                  sizeof zeros, zeros, &err);
        assert_int_equal(err, CL_SUCCESS);
        w[t].out = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, sizeof zeros, NULL, &err);
        assert_int_equal(err, CL_SUCCESS);
    }
    for (int t = 0; t < 2; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, fail_repeatedly, &w[t]), 0);
    for (int t = 0; t < 2; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (int t = 0; t < 2; t++) {
        clReleaseMemObject(w[t].buf);
        clReleaseMemObject(w[t].out);
    }
    /* The plans kept their threads' last failures (the last call of each
     * thread failed), and this thread reads each plan's own. */
    const char *last_0 = ps_plan_last_error(w[0].plan), *last_1 = ps_plan_last_error(w[1].plan);
    const int kept = strcmp(last_0, "ps_attention: q is NULL") == 0 &&
                     strcmp(last_1, "ps_attention: k is NULL") == 0;
    char last[256];
    snprintf(last, sizeof last, "\"%s\" / \"%s\"", last_0, last_1);
    for (int t = 0; t < 2; t++)
        assert_int_equal(ps_plan_destroy(w[t].plan), PS_OK);
    for (int t = 0; t < 2; t++)
        if (w[t].wrong)
            fail_msg("thread %d read %ld wrong messages, first: %s", t, w[t].wrong,
                     w[t].first_wrong);
    if (!kept)
        fail_msg("the plans' last messages read from another thread: %s", last);
    /* This thread made no failing call: nothing to read, neither the workers'
     * context failures nor their plans'. */
    assert_string_equal(ps_context_last_error(ctx), "");
}

/* Threads creating and destroying plans on one context while others use
 * theirs: the registry's count stays right (the context is destroyable at
 * the end, not before) and every plan works. */
#define CHURN_ROUNDS 150

static void *churn(void *arg)
{
    long *failures = arg;
    ps_attention_desc d;
    small_desc(&d);
    float x[64 * 16], o[64 * 16];
    ts_fill_normal(x, 64 * 16, 5, 2, 1.0f);
    for (int r = 0; r < CHURN_ROUNDS; r++) {
        ps_plan *plan = NULL;
        if (ps_plan_create(ctx, &d, &plan) != PS_OK ||
            (r % 10 == 0 && ps_attention_host(plan, x, x, x, o, NULL) != PS_OK) ||
            ps_plan_destroy(plan) != PS_OK || ps_plan_destroy(plan) != PS_ERR_INVALID_ARGUMENT)
            (*failures)++;
    }
    return NULL;
}

static void test_concurrent_create_destroy(void **state)
{
    (void)state;
    pthread_t threads[3];
    long failures[3] = {0, 0, 0};
    for (int t = 0; t < 3; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, churn, &failures[t]), 0);
    for (int t = 0; t < 3; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (int t = 0; t < 3; t++)
        assert_int_equal(failures[t], 0);
    /* No plan left counted: a probe context-destroy would succeed. Check on
     * the shared context by creating one plan and seeing exactly one live. */
    ps_plan *plan = NULL;
    ps_attention_desc d;
    small_desc(&d);
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_context_destroy(ctx), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(ctx), ": 1 plan(s)"));
    assert_int_equal(ps_plan_destroy(plan), PS_OK);
}

/* The plan's own message: set by its failing call, cleared by its next
 * successful one, untouched by other plans' calls; none of it reaches the
 * context's message, which keeps the last context-level failure. */
static void test_plan_messages(void **state)
{
    (void)state;
    ps_attention_desc d;
    small_desc(&d);
    ps_plan *a = NULL, *b = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &a), PS_OK);
    assert_int_equal(ps_plan_create(ctx, &d, &b), PS_OK);
    assert_string_equal(ps_plan_last_error(a), "");
    assert_string_equal(ps_context_last_error(ctx), "");
    /* A context-level failure, kept through the plans' calls below. */
    ps_attention_desc bad = d;
    bad.d = 40;
    ps_plan *none = NULL;
    assert_int_equal(ps_plan_create(ctx, &bad, &none), PS_ERR_UNSUPPORTED);
    assert_null(none);
    char ctx_msg[512];
    snprintf(ctx_msg, sizeof ctx_msg, "%s", ps_context_last_error(ctx));
    assert_non_null(strstr(ctx_msg, "d = 40"));
    assert_string_equal(ps_plan_last_error(a), ""); /* not on the plans */
    assert_string_equal(ps_plan_last_error(b), "");

    float x[64 * 16] = {0}, o[64 * 16];
    assert_int_equal(ps_attention_host(a, NULL, x, x, o, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_string_equal(ps_plan_last_error(a), "ps_attention_host: q is NULL");
    assert_string_equal(ps_plan_last_error(b), "");
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);
    assert_int_equal(ps_attention(b, NULL, NULL, NULL, NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_string_equal(ps_plan_last_error(b), "ps_attention: k is NULL");
    assert_string_equal(ps_plan_last_error(a), "ps_attention_host: q is NULL");
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);
    assert_int_equal(ps_plan_set_diagnostic(b, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 7),
                     PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(b), "ps_plan_set_diagnostic"));
    assert_string_equal(ps_plan_last_error(a), "ps_attention_host: q is NULL");
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);
    run_once(a);
    assert_string_equal(ps_plan_last_error(a), "");
    assert_non_null(strstr(ps_plan_last_error(b), "ps_plan_set_diagnostic"));
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);
    assert_int_equal(ps_plan_set_diagnostic(b, PS_DIAG_UNIT_RESIDUAL_WEIGHT, 0), PS_OK);
    assert_string_equal(ps_plan_last_error(b), "");
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);

    /* Nested: ps_attention_host runs ps_attention on the same plan. Its own
     * refusal (o NULL) stays on the plan when it returns ... */
    assert_int_equal(ps_attention_host(a, x, x, x, NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_string_equal(ps_plan_last_error(a), "ps_attention_host: o is NULL");
    assert_string_equal(ps_plan_last_error(b), "");
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);
    /* ... and so does the inner call's failure (Inf in q, check_finite). */
    ps_attention_desc checked = d;
    checked.check_finite = 1;
    ps_plan *c = NULL;
    assert_int_equal(ps_plan_create(ctx, &checked, &c), PS_OK);
    assert_string_equal(ps_context_last_error(ctx), ""); /* ps_plan_create succeeded */
    assert_int_equal(ps_plan_create(ctx, &bad, &none), PS_ERR_UNSUPPORTED);
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);
    x[5] = INFINITY;
    assert_int_equal(ps_attention_host(c, x, x, x, o, NULL), PS_ERR_NON_FINITE);
    assert_non_null(strstr(ps_plan_last_error(c), "ps_attention: q holds Inf or NaN"));
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);
    assert_string_equal(ps_plan_last_error(a), "ps_attention_host: o is NULL");
    x[5] = 0.0f;
    assert_int_equal(ps_attention_host(c, x, x, x, o, NULL), PS_OK);
    assert_string_equal(ps_plan_last_error(c), "");
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);
    assert_int_equal(ps_plan_destroy(c), PS_OK);

    assert_int_equal(ps_plan_destroy(a), PS_OK);
    assert_string_equal(ps_plan_last_error(a), ""); /* not a live plan: never read */
    /* A call on the destroyed plan is refused before it is entered: the
     * message is the refused handle's; b's and the context's stay. */
    assert_int_equal(ps_attention_host(a, x, x, x, o, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "ps_attention_host: plan"));
    assert_string_equal(ps_context_last_error(ctx), ctx_msg);
    assert_string_equal(ps_plan_last_error(b), "");
    assert_int_equal(ps_plan_destroy(b), PS_OK);
}

static int setup(void **state)
{
    (void)state;
    return ps_context_create(&ctx, NULL) == PS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return ps_context_destroy(ctx) == PS_OK ? 0 : -1;
}

int main(void)
{
    if (!ts_have_device("lifetime_device"))
        return 77;
    ts_report_seed("lifetime_device");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_outlives_its_plans),
        cmocka_unit_test(test_dead_handles_refused),
        cmocka_unit_test(test_messages_per_thread),
        cmocka_unit_test(test_concurrent_create_destroy),
        cmocka_unit_test(test_plan_messages),
    };
    return cmocka_run_group_tests_name("lifetime_device", tests, setup, teardown);
}
