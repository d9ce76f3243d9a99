/* Device suite: injected faults. An OpenCL interposer (tests/fault_cl.c) makes
 * the N-th wrapped OpenCL call of ps_plan_create + ps_attention fail, for N
 * over every call of EXACT, HYPER, PRESCORE (KMEANS, LEVERAGE), global keys
 * and causal plans and of a key cache; the host-allocation hook (lib/host_alloc.h) makes the
 * N-th host allocation of ps_context_create, ps_plan_create and
 * ps_attention_host fail. Each failure must give a non-OK status with a
 * message (a plan call's on the plan, leaving the context's alone; a plan
 * creation's on the context; a context creation's in
 * ps_context_last_error(NULL)), no crash, no leaked cl_mem / cl_kernel / cl_event, and leave the
 * context working: a fresh plan gives the same result as before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_cl.h"
#include "core/host_alloc.h"
#include "prescore/prescore.h"
#include "prescore/prescore_ref.h"
#include "support.h"

static ps_context *ctx;

static int setup(void **state)
{
    (void)state;
    ps_context_options opt;
    ps_context_options_default(&opt);
    ps_status st = ps_context_create(&ctx, &opt);
    if (st != PS_OK) {
        fprintf(stderr, "context: %s: %s\n", ps_status_string(st), ps_context_last_error(NULL));
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

/* Device copies of one case's inputs and outputs. */
typedef struct bufs {
    cl_mem q, k, v, o, lse;
    size_t no, nl;
} bufs;

static cl_mem upload(const float *x, size_t n)
{
    cl_context cl_ctx;
    cl_int err;
    ps_context_cl_handles(ctx, &cl_ctx, NULL, NULL);
    cl_mem m = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE | (x ? CL_MEM_COPY_HOST_PTR : 0),
                              n * sizeof(float), (void *)x, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

static void bufs_make(bufs *b, const ps_attention_desc *d, const ts_tensors *t)
{
    const size_t nq = d->batch * d->heads * d->n_q * d->d;
    const size_t nk = d->batch * d->kv_heads * d->n_k * d->d;
    const size_t nv = d->batch * d->kv_heads * d->n_k * d->d_v;
    b->no = d->batch * d->heads * d->n_q * d->d_v;
    b->nl = d->batch * d->heads * d->n_q;
    b->q = upload(t->q, nq);
    b->k = upload(t->k, nk);
    b->v = upload(t->v, nv);
    b->o = upload(NULL, b->no);
    b->lse = upload(NULL, b->nl);
}

static void bufs_free(bufs *b)
{
    clReleaseMemObject(b->q);
    clReleaseMemObject(b->k);
    clReleaseMemObject(b->v);
    clReleaseMemObject(b->o);
    clReleaseMemObject(b->lse);
}

static void read_out(const bufs *b, float *o, float *lse)
{
    cl_command_queue queue;
    ps_context_cl_handles(ctx, NULL, NULL, &queue);
    assert_int_equal(clEnqueueReadBuffer(queue, b->o, CL_TRUE, 0, b->no * sizeof(float), o, 0,
                                         NULL, NULL),
                     CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(queue, b->lse, CL_TRUE, 0, b->nl * sizeof(float), lse,
                                         0, NULL, NULL),
                     CL_SUCCESS);
}

/* plan_create + ps_attention (or, with key reuse, prepare_keys + prepared)
 * + destroy; the status of the first failure. Its message goes to `why`: a
 * failed ps_plan_create's is the context's, a failed call's on the plan is
 * the plan's (read before the destroy). The calls on the plan must leave the
 * context's message as the plan's creation left it (""). */
static int key_reuse;
/* 1: the sweep runs a key cache instead (run_cache_once). */
static int key_cache;

/* A key cache's calls: create, a prefill of 80 rows (a full scoring), one
 * more row (scored and admitted), a forced rescore and a decode of the
 * descriptor's n_q queries; destroy. Messages as run_once's. */
static ps_status run_cache_once(const ps_attention_desc *d, const bufs *b, char *why,
                                size_t size)
{
    ps_kv_cache *c = NULL;
    ps_status st = ps_kv_cache_create(ctx, d, &c);
    if (st != PS_OK) {
        snprintf(why, size, "%s", ps_context_last_error(ctx));
        return st;
    }
    st = ps_kv_cache_append(c, b->k, b->v, 80);
    if (st == PS_OK)
        st = ps_kv_cache_append(c, b->k, b->v, 1);
    if (st == PS_OK)
        st = ps_kv_cache_rescore(c);
    if (st == PS_OK)
        st = ps_kv_cache_decode(c, b->q, d->n_q, b->o, b->lse, PS_DECODE_CACHE);
    if (st != PS_OK)
        snprintf(why, size, "%s", ps_kv_cache_last_error(c));
    if (ps_context_last_error(ctx)[0] != '\0')
        fail_msg("a call on the cache (%s) set the context's message: %s",
                 ps_status_string(st), ps_context_last_error(ctx));
    ps_kv_cache_destroy(c);
    return st;
}

static ps_status run_once(const ps_attention_desc *d, const bufs *b, char *why, size_t size)
{
    why[0] = '\0';
    if (key_cache)
        return run_cache_once(d, b, why, size);
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, d, &plan);
    if (st != PS_OK) {
        snprintf(why, size, "%s", ps_context_last_error(ctx));
        return st;
    }
    if (key_reuse) {
        st = ps_attention_prepare_keys(plan, b->k, b->v);
        if (st == PS_OK)
            st = ps_attention_prepared(plan, b->q, b->o, b->lse);
    } else {
        st = ps_attention(plan, b->q, b->k, b->v, b->o, b->lse);
    }
    if (st != PS_OK)
        snprintf(why, size, "%s", ps_plan_last_error(plan));
    if (ps_context_last_error(ctx)[0] != '\0')
        fail_msg("a call on the plan (%s) set the context's message: %s", ps_status_string(st),
                 ps_context_last_error(ctx));
    ps_plan_destroy(plan);
    return st;
}

/* A failure's message: there, and more than the bare status string that a
 * plan falls back to when the failing code recorded none. */
static int detailed(const char *message, ps_status st)
{
    return message[0] != '\0' && strcmp(message, ps_status_string(st)) != 0;
}

static void assert_no_live_objects(const char *when)
{
    const long mem = fault_cl_live(FAULT_MEM), kern = fault_cl_live(FAULT_KERNEL),
               ev = fault_cl_live(FAULT_EVENT);
    if (mem || kern || ev)
        fail_msg("%s: leaked %ld cl_mem, %ld cl_kernel, %ld cl_event", when, mem, kern, ev);
}

/* Indices to fail: all calls when few, else the first call of every distinct
 * (function, call site) pair plus every stride-th call. */
static int seen_before(long i)
{
    for (long j = 0; j < i; j++)
        if (fault_cl_call_site(j) == fault_cl_call_site(i) &&
            fault_cl_call_name(j) == fault_cl_call_name(i))
            return 1;
    return 0;
}

/* Most calls failed per plan: 600, or PRESCORE_TEST_FAULT_CAP (at least 10)
 * where every launch is slow (rusticl in .ci/run). pick_indices takes, in
 * call order, every site's first call and every stride-th call until the
 * cap: a small cap covers the sites of the plan's first calls. */
static size_t fault_cap(void)
{
    const char *s = getenv("PRESCORE_TEST_FAULT_CAP");
    const long v = s ? strtol(s, NULL, 10) : 0;
    return v >= 10 && v <= 600 ? (size_t)v : 600;
}

static size_t pick_indices(long total, long *out, size_t cap)
{
    const long stride = total <= (long)cap / 2 ? 1 : (2 * total) / (long)cap + 1;
    size_t n = 0;
    for (long i = 0; i < total && n < cap; i++)
        if (i % stride == 0 || !seen_before(i))
            out[n++] = i;
    return n;
}

static void sweep_opencl_faults(const char *label, const ps_attention_desc *d)
{
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, d, 71), 0);
    bufs b;
    bufs_make(&b, d, &t);
    float *o_base = calloc(b.no, sizeof(float)), *lse_base = calloc(b.nl, sizeof(float));
    assert_non_null(o_base);
    assert_non_null(lse_base);

    /* Reference run: counts the calls and records their sites. */
    fault_cl_arm(-1);
    char why[512];
    ps_status st = run_once(d, &b, why, sizeof why);
    if (st != PS_OK)
        fail_msg("%s: %s: %s", label, ps_status_string(st), why);
    const long total = fault_cl_calls();
    assert_no_live_objects(label);
    assert_true(total > 0 && total <= FAULT_CL_LOG);
    read_out(&b, o_base, lse_base);

    static long idx[FAULT_CL_LOG];
    const size_t n_idx = pick_indices(total, idx, fault_cap());
    const char *seen[16] = {0};
    size_t n_seen = 0;
    for (size_t s = 0; s < n_idx; s++) {
        const long n = idx[s];
        fault_cl_arm(n);
        st = run_once(d, &b, why, sizeof why);
        fault_cl_disarm();
        if (!fault_cl_fired())
            fail_msg("%s: call %ld of %ld never came", label, n, total);
        /* Markers only date the run (timing is best effort, lib/pipeline.c):
         * their failure may pass if the result is unchanged (checked below). */
        const int timing_only = strcmp(fault_cl_fired_name(), "clEnqueueMarkerWithWaitList") == 0;
        if (st == PS_OK && !timing_only)
            fail_msg("%s: %s failing (call %ld) went unnoticed", label, fault_cl_fired_name(),
                     n);
        if (st != PS_OK && !detailed(why, st))
            fail_msg("%s: no message after %s failed (\"%s\")", label, fault_cl_fired_name(),
                     why);
        char when[128];
        snprintf(when, sizeof when, "%s, %s failing (call %ld)", label, fault_cl_fired_name(), n);
        assert_no_live_objects(when);
        size_t k = 0;
        while (k < n_seen && seen[k] != fault_cl_fired_name())
            k++;
        if (k == n_seen && n_seen < 16)
            seen[n_seen++] = fault_cl_fired_name();

        /* The same context still works: a fresh plan gives the same result. */
        fault_cl_arm(-1);
        st = run_once(d, &b, why, sizeof why);
        if (st != PS_OK)
            fail_msg("%s: then %s: %s", when, ps_status_string(st), why);
        float *o = calloc(b.no, sizeof(float)), *lse = calloc(b.nl, sizeof(float));
        assert_non_null(o);
        assert_non_null(lse);
        read_out(&b, o, lse);
        if (memcmp(o, o_base, b.no * sizeof(float)) != 0 ||
            memcmp(lse, lse_base, b.nl * sizeof(float)) != 0)
            fail_msg("%s: result changed after the failure of call %ld", when, n);
        free(o);
        free(lse);
    }
    printf("# %s: %ld OpenCL calls, %zu failed one at a time (", label, total, n_idx);
    for (size_t k = 0; k < n_seen; k++)
        printf("%s%s", k ? ", " : "", seen[k]);
    printf(")\n");
    free(o_base);
    free(lse_base);
    bufs_free(&b);
    ts_tensors_free(&t);
}

static ps_attention_desc small_desc(ps_method method, ps_score score)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.batch = 1;
    d.heads = 2;
    d.kv_heads = 1;
    d.n_q = d.n_k = 96;
    d.d = d.d_v = 16;
    d.want_lse = 1;
    d.method = method;
    d.score = score;
    d.budget = 64;
    d.block = 16;
    d.samples = 16;
    d.min_seq_len = 32;
    d.kmeans_iters = 3;
    d.seed = 5;
    return d;
}

static void test_cl_faults_exact(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_EXACT, PS_SCORE_KMEANS);
    d.check_finite = 1; /* the scan's calls too */
    sweep_opencl_faults("exact", &d);
}

static void test_cl_faults_hyper(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_HYPER, PS_SCORE_NONE);
    sweep_opencl_faults("hyper", &d);
}

static void test_cl_faults_prescore_kmeans(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_PRESCORE, PS_SCORE_KMEANS);
    sweep_opencl_faults("prescore kmeans", &d);
}

static void test_cl_faults_prescore_leverage(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_PRESCORE, PS_SCORE_LEVERAGE);
    sweep_opencl_faults("prescore leverage", &d);
}

static void test_cl_faults_global_keys(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_PRESCORE, PS_SCORE_NORM);
    d.global_keys = 4;
    sweep_opencl_faults("prescore global keys", &d);
}

static void test_cl_faults_weighted_sketch(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_PRESCORE, PS_SCORE_NORM);
    d.global_keys = 4;
    d.selection = PS_SELECTION_WEIGHTED;
    d.sketch_queries = 8;
    sweep_opencl_faults("prescore weighted, query sketch", &d);
}

static void test_cl_faults_error_estimate(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_HYPER, PS_SCORE_NONE);
    d.error_probes = 8;
    d.error_tolerance = 1e-6f; /* every head recomputed: the one-head plan's calls too */
    sweep_opencl_faults("hyper with error estimate and tolerance", &d);
}

static void test_cl_faults_stratified(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_PRESCORE, PS_SCORE_KMEANS);
    d.global_keys = 4;
    d.selection = PS_SELECTION_STRATIFIED;
    sweep_opencl_faults("prescore stratified", &d);
}

static void test_cl_faults_causal(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_HYPER, PS_SCORE_NONE);
    d.causal = 1;
    sweep_opencl_faults("hyper causal", &d);
}

static void test_cl_faults_causal_prescore_global(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_PRESCORE, PS_SCORE_KMEANS);
    d.causal = 1;
    d.global_keys = 4;
    sweep_opencl_faults("prescore causal global keys", &d);
}

/* Key reuse: the key half kept in the plan, then the query half. */
static void test_cl_faults_key_reuse(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_PRESCORE, PS_SCORE_LEVERAGE);
    d.global_keys = 4;
    key_reuse = 1;
    sweep_opencl_faults("prescore key reuse", &d);
    d = small_desc(PS_METHOD_HYPER, PS_SCORE_NONE);
    d.causal = 1;
    sweep_opencl_faults("hyper causal key reuse", &d);
    key_reuse = 0;
}

/* The key cache: full scoring, incremental scoring and admission, split-K
 * decode (the descriptor's n_q is its most queries per decode). */
static void test_cl_faults_key_cache(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_PRESCORE, PS_SCORE_KMEANS);
    d.budget = 20;
    d.sink = 2;
    d.window = 8;
    d.want_lse = 0;
    key_cache = 1;
    sweep_opencl_faults("key cache", &d);
    key_cache = 0;
}

/* ps_attention_host adds its transfer buffers and reads. */
static void test_cl_faults_host_call(void **state)
{
    (void)state;
    ps_attention_desc d = small_desc(PS_METHOD_HYPER, PS_SCORE_NONE);
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 72), 0);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    fault_cl_arm(-1);
    assert_int_equal(ps_attention_host(plan, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    const long total = fault_cl_calls();
    assert_no_live_objects("ps_attention_host");
    const size_t no = d.heads * d.n_q * d.d_v, nl = d.heads * d.n_q;
    for (long n = 0; n < total; n++) {
        fault_cl_arm(n);
        ps_status st = ps_attention_host(plan, t.q, t.k, t.v, t.o, t.lse);
        fault_cl_disarm();
        assert_true(fault_cl_fired());
        if (st == PS_OK)
            fail_msg("ps_attention_host: %s failing (call %ld) went unnoticed",
                     fault_cl_fired_name(), n);
        if (!detailed(ps_plan_last_error(plan), st))
            fail_msg("ps_attention_host: no message after %s failed (\"%s\")",
                     fault_cl_fired_name(), ps_plan_last_error(plan));
        assert_string_equal(ps_context_last_error(ctx), ""); /* the plan's only */
        assert_no_live_objects("ps_attention_host under a fault");
        /* The same plan still works afterwards. */
        assert_int_equal(ps_attention_host(plan, t.q, t.k, t.v, t.o, t.lse), PS_OK);
        assert_string_equal(ps_plan_last_error(plan), "");
        assert_memory_equal(t.o, t.o_ref, no * sizeof(float));
        assert_memory_equal(t.lse, t.lse_ref, nl * sizeof(float));
    }
    printf("# ps_attention_host: %ld OpenCL calls, each failed once\n", total);
    ps_plan_destroy(plan);
    ts_tensors_free(&t);
}

/* Fails host allocation N = 0, 1, ... of `call` until it succeeds: every
 * failure must be PS_ERR_OUT_OF_HOST_MEMORY with a message (or a fallback
 * that still succeeds) and leave no OpenCL object behind. */
typedef ps_status (*host_call)(void *arg, const char **message);

static long sweep_host_faults(const char *label, host_call call, void *arg)
{
    long recovered = 0; /* failures the library worked around */
    for (long n = 0;; n++) {
        const char *message = NULL;
        fault_cl_arm(-1);
        ps_host_alloc_fail_after(n);
        ps_status st = call(arg, &message);
        const long made = ps_host_alloc_count();
        ps_host_alloc_fail_after(-1);
        assert_no_live_objects(label);
        if (st == PS_OK && made <= n) {
            printf("# %s: %ld host allocations, each failed once (%ld worked around)\n",
                   label, made, recovered);
            return made;
        }
        recovered += st == PS_OK;
        if (st != PS_OK) {
            if (st != PS_ERR_OUT_OF_HOST_MEMORY)
                fail_msg("%s: allocation %ld failing gave %s (%s)", label, n,
                         ps_status_string(st), message ? message : "");
            if (!message || !message[0])
                fail_msg("%s: allocation %ld failing left no message", label, n);
        }
        if (n > 10000)
            fail_msg("%s: allocation count does not converge", label);
    }
}

static ps_status call_context_create(void *arg, const char **message)
{
    (void)arg;
    ps_context *c = NULL;
    ps_status st = ps_context_create(&c, NULL);
    *message = ps_context_last_error(NULL);
    if (st == PS_OK) {
        assert_non_null(c);
        ps_context_destroy(c);
    } else {
        assert_null(c);
    }
    return st;
}

static ps_status call_plan_create(void *arg, const char **message)
{
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, (const ps_attention_desc *)arg, &plan);
    *message = ps_context_last_error(ctx);
    if (st == PS_OK)
        ps_plan_destroy(plan);
    else
        assert_null(plan);
    return st;
}

typedef struct host_case {
    ps_plan *plan;
    ts_tensors *t;
} host_case;

static ps_status call_attention_host(void *arg, const char **message)
{
    host_case *c = arg;
    ps_status st = ps_attention_host(c->plan, c->t->q, c->t->k, c->t->v, c->t->o, c->t->lse);
    /* A plan call: the plan's message; its fallback, the bare status string,
     * is no message. */
    *message = detailed(ps_plan_last_error(c->plan), st) ? ps_plan_last_error(c->plan) : "";
    if (ps_context_last_error(ctx)[0] != '\0')
        fail_msg("ps_attention_host: the context's message was set: %s",
                 ps_context_last_error(ctx));
    return st;
}

/* The kernel-shape measurement inside ps_context_create (non-GPU devices,
 * PS_SHAPE_AUTO, no shape record: disable_cache) runs exact attention on a
 * probe plan; a launch failing there fails the creation with a message that
 * names the launch, in ps_context_last_error(NULL), and leaks nothing. */
static void test_cl_faults_shape_measurement(void **state)
{
    (void)state;
    ps_device_info info;
    assert_int_equal(ps_context_device_info(ctx, &info), PS_OK);
    if (info.type == PS_DEVICE_GPU || getenv("PRESCORE_SHAPE")) {
        printf("# shape measurement: none here (GPU device or PRESCORE_SHAPE set)\n");
        return;
    }
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.disable_cache = 1; /* no shape record: the creation measures */
    ps_context *c = NULL;
    fault_cl_arm(-1);
    assert_int_equal(ps_context_create(&c, &opt), PS_OK);
    const long total = fault_cl_calls();
    ps_context_destroy(c);
    assert_true(total > 0 && total <= FAULT_CL_LOG);

    /* The measurement's launches are the creation's only ps_launch calls
     * (the driver probes launch from lib/kernel_fit.c, another site). */
    static long launches[FAULT_CL_LOG];
    size_t n_launch = 0;
    void *launch_site = NULL;
    for (long i = 0; i < total; i++) {
        if (strcmp(fault_cl_call_name(i), "clEnqueueNDRangeKernel") != 0)
            continue;
        if (!launch_site)
            launch_site = fault_cl_call_site(i); /* the probes come first */
        if (fault_cl_call_site(i) != launch_site)
            launches[n_launch++] = i;
    }
    if (n_launch == 0)
        fail_msg("shape measurement: no attention launch among %ld calls", total);
    for (size_t j = 0; j < n_launch && j < 4; j++) {
        fault_cl_arm(launches[j]);
        c = NULL;
        const ps_status st = ps_context_create(&c, &opt);
        fault_cl_disarm();
        assert_true(fault_cl_fired());
        if (st == PS_OK)
            fail_msg("shape measurement: launch %ld failing went unnoticed", launches[j]);
        assert_null(c);
        const char *msg = ps_context_last_error(NULL);
        if (!strstr(msg, "clEnqueueNDRangeKernel"))
            fail_msg("shape measurement: launch %ld failing gave \"%s\"", launches[j], msg);
        assert_no_live_objects("shape measurement");
    }
    printf("# shape measurement: %zu of %zu launches failed one at a time\n",
           n_launch < 4 ? n_launch : (size_t)4, n_launch);
}

static void test_host_alloc_faults(void **state)
{
    (void)state;
    sweep_host_faults("ps_context_create", call_context_create, NULL);
    const ps_method methods[3] = {PS_METHOD_EXACT, PS_METHOD_HYPER, PS_METHOD_PRESCORE};
    for (int i = 0; i < 3; i++) {
        ps_attention_desc d = small_desc(methods[i], PS_SCORE_KMEANS);
        d.global_keys = methods[i] == PS_METHOD_EXACT ? 0 : 4;
        sweep_host_faults("ps_plan_create", call_plan_create, &d);
    }
    ps_attention_desc d = small_desc(PS_METHOD_PRESCORE, PS_SCORE_KMEANS);
    d.causal = 1; /* the recursion's child plans */
    d.global_keys = 4;
    sweep_host_faults("ps_plan_create (causal)", call_plan_create, &d);
    d.causal = 0;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 73), 0);
    host_case c = {NULL, &t};
    assert_int_equal(ps_plan_create(ctx, &d, &c.plan), PS_OK);
    sweep_host_faults("ps_attention_host", call_attention_host, &c);
    ps_plan_destroy(c.plan);
    ts_tensors_free(&t);
}

int main(void)
{
    ts_report_seed("fault_device");
    if (!ts_have_device("fault_device"))
        return TS_EXIT_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cl_faults_exact),
        cmocka_unit_test(test_cl_faults_hyper),
        cmocka_unit_test(test_cl_faults_prescore_kmeans),
        cmocka_unit_test(test_cl_faults_prescore_leverage),
        cmocka_unit_test(test_cl_faults_global_keys),
        cmocka_unit_test(test_cl_faults_weighted_sketch),
        cmocka_unit_test(test_cl_faults_stratified),
        cmocka_unit_test(test_cl_faults_error_estimate),
        cmocka_unit_test(test_cl_faults_causal),
        cmocka_unit_test(test_cl_faults_causal_prescore_global),
        cmocka_unit_test(test_cl_faults_key_reuse),
        cmocka_unit_test(test_cl_faults_key_cache),
        cmocka_unit_test(test_cl_faults_host_call),
        cmocka_unit_test(test_cl_faults_shape_measurement),
        cmocka_unit_test(test_host_alloc_faults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
