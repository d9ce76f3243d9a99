/* Device suite: the enqueue API (ps_attention_enqueue and the prepared-keys
 * pair). Each call returns while its wait list is still blocked (a user
 * event the test holds back: a call that waited would hang, and a 20 s alarm
 * turns that into a failure), its done event completes only after the user
 * event, and the outputs equal the waiting call's bit for bit, for every
 * method, causal too, and for inputs written by a command the call waits
 * for. Misuse is refused: a wait count without a list, check_finite plans
 * (the check must wait), bad buffers (done left NULL). Times of an enqueued
 * call are collected when asked for. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "prescore/prescore.h"
#include "support.h"

static ps_context *ctx;
static cl_context cl_ctx;
static cl_command_queue queue;

static cl_mem device_copy(const float *x, size_t n)
{
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              n * sizeof(float), (void *)x, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

static cl_mem device_empty(size_t n)
{
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

static void read_back(cl_mem m, float *x, size_t n)
{
    assert_int_equal(clEnqueueReadBuffer(queue, m, CL_TRUE, 0, n * sizeof(float), x, 0, NULL,
                                         NULL),
                     CL_SUCCESS);
}

static void pause_ms(long ms)
{
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, NULL);
}

static cl_int status_of(cl_event ev)
{
    cl_int s = CL_COMPLETE;
    assert_int_equal(clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof s, &s, NULL),
                     CL_SUCCESS);
    return s;
}

static ps_attention_desc desc_of(ps_method method, int causal)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.batch = 1;
    d.heads = 2;
    d.kv_heads = 1;
    d.n_q = d.n_k = 600;
    d.d = d.d_v = 64;
    d.method = method;
    d.causal = causal;
    d.want_lse = 1;
    d.min_seq_len = 256;
    d.block = 64;
    d.samples = 64;
    d.budget = 300;
    d.sketch_queries = 0; /* prepared and full calls compare bit for bit */
    return d;
}

typedef struct io {
    size_t nq, nk, no, nl;
    ts_tensors t;
    cl_mem q, k, v, o, lse;
} io;

static void io_make(io *b, const ps_attention_desc *d, uint64_t stream)
{
    b->nq = d->batch * d->heads * d->n_q * d->d;
    b->nk = d->batch * d->kv_heads * d->n_k * d->d;
    b->no = d->batch * d->heads * d->n_q * d->d_v;
    b->nl = d->batch * d->heads * d->n_q;
    assert_int_equal(ts_tensors_make(&b->t, d, stream), 0);
    b->q = device_copy(b->t.q, b->nq);
    b->k = device_copy(b->t.k, b->nk);
    b->v = device_copy(b->t.v, b->nk);
    b->o = device_empty(b->no);
    b->lse = device_empty(b->nl);
}

static void io_free(io *b)
{
    clReleaseMemObject(b->q);
    clReleaseMemObject(b->k);
    clReleaseMemObject(b->v);
    clReleaseMemObject(b->o);
    clReleaseMemObject(b->lse);
    ts_tensors_free(&b->t);
}

/* A user event holds the call back; the call must return and its done event
 * must not complete before the user event does. */
static void enqueue_matches_waiting(ps_method method, int causal)
{
    ps_attention_desc d = desc_of(method, causal);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    io b;
    io_make(&b, &d, 40 + (uint64_t)method * 2 + (uint64_t)causal);

    assert_int_equal(ps_attention(plan, b.q, b.k, b.v, b.o, b.lse), PS_OK);
    float *o_ref = malloc(b.no * sizeof(float)), *lse_ref = malloc(b.nl * sizeof(float));
    float *o = malloc(b.no * sizeof(float)), *lse = malloc(b.nl * sizeof(float));
    assert_true(o_ref && lse_ref && o && lse);
    read_back(b.o, o_ref, b.no);
    read_back(b.lse, lse_ref, b.nl);
    const float nan = 0.0f / 0.0f;
    assert_int_equal(clEnqueueFillBuffer(queue, b.o, &nan, sizeof nan, 0, b.no * sizeof(float),
                                         0, NULL, NULL),
                     CL_SUCCESS);

    cl_int err = CL_SUCCESS;
    cl_event gate = clCreateUserEvent(cl_ctx, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_event done = NULL;
    alarm(20);
    assert_int_equal(ps_attention_enqueue(plan, b.q, b.k, b.v, b.o, b.lse, 1, &gate, &done),
                     PS_OK);
    alarm(0);
    assert_non_null(done);
    pause_ms(20);
    assert_true(status_of(done) != CL_COMPLETE); /* still held back by the gate */
    assert_int_equal(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    read_back(b.o, o, b.no);
    read_back(b.lse, lse, b.nl);
    assert_memory_equal(o, o_ref, b.no * sizeof(float));
    assert_memory_equal(lse, lse_ref, b.nl * sizeof(float));
    clReleaseEvent(done);
    clReleaseEvent(gate);

    /* Inputs written by a command of the caller's that the call waits for. */
    cl_mem q2 = device_empty(b.nq);
    cl_event written = NULL;
    assert_int_equal(clEnqueueWriteBuffer(queue, q2, CL_FALSE, 0, b.nq * sizeof(float), b.t.q, 0,
                                          NULL, &written),
                     CL_SUCCESS);
    assert_int_equal(ps_attention_enqueue(plan, q2, b.k, b.v, b.o, b.lse, 1, &written, NULL),
                     PS_OK);
    read_back(b.o, o, b.no); /* in-order queue: after the call */
    assert_memory_equal(o, o_ref, b.no * sizeof(float));
    clReleaseEvent(written);
    clReleaseMemObject(q2);

    /* The prepared pair, chained through their events. */
    cl_event keys_done = NULL, queries_done = NULL;
    gate = clCreateUserEvent(cl_ctx, &err);
    alarm(20);
    assert_int_equal(ps_attention_prepare_keys_enqueue(plan, b.k, b.v, 1, &gate, &keys_done),
                     PS_OK);
    assert_int_equal(ps_attention_prepared_enqueue(plan, b.q, b.o, b.lse, 1, &keys_done,
                                                   &queries_done),
                     PS_OK);
    alarm(0);
    pause_ms(20);
    assert_true(status_of(queries_done) != CL_COMPLETE);
    assert_int_equal(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);
    assert_int_equal(clWaitForEvents(1, &queries_done), CL_SUCCESS);
    read_back(b.o, o, b.no);
    read_back(b.lse, lse, b.nl);
    assert_memory_equal(o, o_ref, b.no * sizeof(float));
    assert_memory_equal(lse, lse_ref, b.nl * sizeof(float));
    clReleaseEvent(keys_done);
    clReleaseEvent(queries_done);
    clReleaseEvent(gate);

    free(o_ref);
    free(lse_ref);
    free(o);
    free(lse);
    io_free(&b);
    assert_int_equal(ps_plan_destroy(plan), PS_OK);
}

static void test_exact(void **state)
{
    (void)state;
    enqueue_matches_waiting(PS_METHOD_EXACT, 0);
    enqueue_matches_waiting(PS_METHOD_EXACT, 1);
}

static void test_hyper(void **state)
{
    (void)state;
    enqueue_matches_waiting(PS_METHOD_HYPER, 0);
    enqueue_matches_waiting(PS_METHOD_HYPER, 1);
}

static void test_prescore(void **state)
{
    (void)state;
    enqueue_matches_waiting(PS_METHOD_PRESCORE, 0);
    enqueue_matches_waiting(PS_METHOD_PRESCORE, 1);
}

static void test_misuse(void **state)
{
    (void)state;
    ps_attention_desc d = desc_of(PS_METHOD_PRESCORE, 0);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    io b;
    io_make(&b, &d, 77);
    cl_event done = (cl_event)&d; /* must be overwritten with NULL */
    assert_int_equal(ps_attention_enqueue(plan, b.q, b.k, b.v, b.o, b.lse, 2, NULL, &done),
                     PS_ERR_INVALID_ARGUMENT);
    assert_null(done);
    assert_non_null(strstr(ps_plan_last_error(plan), "num_wait = 2 with a NULL wait_list"));
    assert_string_equal(ps_context_last_error(ctx), ""); /* the plan's only */
    cl_event list[1] = {NULL};
    assert_int_equal(ps_attention_enqueue(plan, b.q, b.k, b.v, b.o, b.lse, 0, list, &done),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention_enqueue(plan, NULL, b.k, b.v, b.o, b.lse, 0, NULL, &done),
                     PS_ERR_INVALID_ARGUMENT);
    assert_null(done);
    assert_non_null(strstr(ps_plan_last_error(plan), "ps_attention: q is NULL"));
    assert_int_equal(ps_attention_enqueue(plan, b.q, b.k, b.v, b.q, b.lse, 0, NULL, &done),
                     PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "o and q are the same buffer"));
    assert_int_equal(ps_attention_prepared_enqueue(plan, b.q, b.o, b.lse, 0, NULL, &done),
                     PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "no prepared keys"));
    assert_int_equal(ps_plan_destroy(plan), PS_OK);

    d.check_finite = 1;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_attention_enqueue(plan, b.q, b.k, b.v, b.o, b.lse, 0, NULL, &done),
                     PS_ERR_UNSUPPORTED);
    assert_non_null(strstr(ps_plan_last_error(plan), "check_finite"));
    assert_int_equal(ps_attention(plan, b.q, b.k, b.v, b.o, b.lse), PS_OK);
    assert_string_equal(ps_plan_last_error(plan), "");
    assert_string_equal(ps_context_last_error(ctx), "");
    assert_int_equal(ps_plan_destroy(plan), PS_OK);
    io_free(&b);
}

/* Times of an enqueued call are there once asked for, on a profiling queue;
 * a later call replaces them. */
static void test_times_collected_when_asked(void **state)
{
    (void)state;
    if (ts_skip_by_name("test_times_collected_when_asked"))
        return; /* a driver with fake event timestamps (docs/DEVICES.md) */
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.profiling = 1;
    ps_context *prof = NULL;
    assert_int_equal(ps_context_create(&prof, &opt), PS_OK);
    cl_context saved_ctx = cl_ctx;
    cl_command_queue saved_queue = queue;
    assert_int_equal(ps_context_cl_handles(prof, &cl_ctx, NULL, &queue), PS_OK);
    ps_attention_desc d = desc_of(PS_METHOD_PRESCORE, 0);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(prof, &d, &plan), PS_OK);
    io b;
    io_make(&b, &d, 91);
    cl_event done = NULL;
    assert_int_equal(ps_attention_enqueue(plan, b.q, b.k, b.v, b.o, b.lse, 0, NULL, &done),
                     PS_OK);
    const double ms = ps_plan_last_time_ms(plan);
    assert_true(ms > 0.0);
    ps_stage_times times;
    assert_int_equal(ps_plan_stage_times(plan, &times), PS_OK);
    assert_true(times.count >= 3);
    double sum = 0;
    for (size_t i = 0; i < times.count; i++)
        sum += times.ms[i];
    assert_true(sum > 0.0 && sum <= ms * 1.5 + 1.0);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clReleaseEvent(done);
    io_free(&b);
    assert_int_equal(ps_plan_destroy(plan), PS_OK);
    assert_int_equal(ps_context_destroy(prof), PS_OK);
    cl_ctx = saved_ctx;
    queue = saved_queue;
}

static int setup(void **state)
{
    (void)state;
    if (ps_context_create(&ctx, NULL) != PS_OK)
        return -1;
    return ps_context_cl_handles(ctx, &cl_ctx, NULL, &queue) == PS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return ps_context_destroy(ctx) == PS_OK ? 0 : -1;
}

int main(void)
{
    if (!ts_have_device("enqueue_device"))
        return 77;
    ts_report_seed("enqueue_device");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_hyper),
        cmocka_unit_test(test_prescore),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_times_collected_when_asked),
    };
    return cmocka_run_group_tests_name("enqueue_device", tests, setup, teardown);
}
