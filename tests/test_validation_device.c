/* Device suite: the validation audit of issue 7. Every public entry point
 * with NULL handles and buffers, buffers too small or of another context,
 * outputs aliasing inputs (also through sub-buffers and host memory), LSE wanted without a buffer, descriptor problems
 * that only a plan sees (n_q/n_k a method cannot take, global keys, shapes
 * beyond the device), and the budget clamp. Each refusal must carry the
 * expected status and a message naming the argument. (Descriptor fields on
 * their own: tests/test_desc.c; the core ps_attention argument checks:
 * test_runtime_device.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>

#include "fuzz/fuzz_desc.h"
#include "prescore/prescore.h"
#include "prescore/prescore_ref.h"
#include "support.h"

static ps_context *ctx, *other;

static int setup(void **state)
{
    (void)state;
    if (ps_context_create(&ctx, NULL) != PS_OK || ps_context_create(&other, NULL) != PS_OK) {
        fprintf(stderr, "context: %s\n", ps_context_last_error(NULL));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ps_context_destroy(ctx);
    ps_context_destroy(other);
    return 0;
}

/* A context-level call (ps_plan_create): status must be `want` and the
 * context's message must contain `needle`. */
#define EXPECT(call, want, needle)                                             \
    do {                                                                       \
        const ps_status got_ = (call);                                         \
        const char *msg_ = ps_context_last_error(ctx);                         \
        if (got_ != (want) || !strstr(msg_, (needle)))                         \
            fail_msg("%s: got %s (\"%s\"), want %s naming \"%s\"", #call,      \
                     ps_status_string(got_), msg_, ps_status_string(want),     \
                     (needle));                                                \
    } while (0)

/* A call on plan `p`: status must be `want` and the plan's message must
 * contain `needle` ("" after a success); the context's message is left as
 * it was (a plan's calls record their failures on the plan only). */
#define EXPECT_PLAN(p, call, want, needle)                                     \
    do {                                                                       \
        char before_[8192]; /* the library keeps at most 8192 bytes */       \
        snprintf(before_, sizeof before_, "%s", ps_context_last_error(ctx));   \
        const ps_status got_ = (call);                                         \
        const char *msg_ = ps_plan_last_error(p);                              \
        if (got_ != (want) || !strstr(msg_, (needle)))                         \
            fail_msg("%s: got %s (\"%s\"), want %s naming \"%s\"", #call,      \
                     ps_status_string(got_), msg_, ps_status_string(want),     \
                     (needle));                                                \
        if (got_ == PS_OK && msg_[0] != '\0')                                  \
            fail_msg("%s: succeeded but the plan's message is \"%s\"", #call,   \
                     msg_);                                                    \
        if (strcmp(ps_context_last_error(ctx), before_) != 0)                  \
            fail_msg("%s: the context's message changed from \"%s\" to \"%s\"", \
                     #call, before_, ps_context_last_error(ctx));              \
    } while (0)

static cl_mem buffer(ps_context *c, size_t bytes)
{
    cl_context cl_ctx;
    cl_command_queue queue;
    cl_int err;
    ps_context_cl_handles(c, &cl_ctx, NULL, &queue);
    cl_mem m = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    const float zero = 0.0f;
    assert_int_equal(clEnqueueFillBuffer(queue, m, &zero, sizeof zero, 0, bytes, 0, NULL, NULL),
                     CL_SUCCESS);
    assert_int_equal(clFinish(queue), CL_SUCCESS);
    return m;
}

static ps_attention_desc base_desc(ps_method method)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.n_q = d.n_k = 64;
    d.d = d.d_v = 16;
    d.method = method;
    d.score = PS_SCORE_NORM;
    d.budget = 32;
    d.block = 16;
    d.samples = 16;
    d.min_seq_len = 16;
    return d;
}

static ps_plan *plan_of(const ps_attention_desc *d)
{
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, d, &plan);
    if (st != PS_OK)
        fail_msg("plan: %s: %s", ps_status_string(st), ps_context_last_error(ctx));
    return plan;
}

static void test_context_entry_points(void **state)
{
    (void)state;
    assert_int_equal(ps_context_create(NULL, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "out"));
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.shape = (ps_kernel_shape)7;
    ps_context *c = (ps_context *)&opt; /* must be overwritten with NULL */
    assert_int_equal(ps_context_create(&c, &opt), PS_ERR_INVALID_ARGUMENT);
    assert_null(c);
    assert_non_null(strstr(ps_context_last_error(NULL), "options->shape"));
    ps_context_options_default(&opt);
    opt.device = "no-such-device-xyz";
    assert_int_equal(ps_context_create(&c, &opt), PS_ERR_DEVICE_NOT_FOUND);
    assert_null(c);
    assert_true(ps_context_last_error(NULL)[0] != '\0');

    cl_context cl_ctx;
    cl_device_id dev;
    cl_command_queue queue;
    assert_int_equal(ps_context_cl_handles(ctx, &cl_ctx, &dev, &queue), PS_OK);
    assert_int_equal(ps_context_create_from_cl(&c, NULL, dev, queue, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "cl_ctx"));
    assert_int_equal(ps_context_create_from_cl(&c, cl_ctx, dev, NULL, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_create_from_cl(NULL, cl_ctx, dev, queue, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    /* A queue of another context: refused, not adopted. */
    cl_command_queue other_queue;
    ps_context_cl_handles(other, NULL, NULL, &other_queue);
    assert_int_equal(ps_context_create_from_cl(&c, cl_ctx, dev, other_queue, NULL),
                     PS_ERR_CONTEXT_MISMATCH);
    assert_null(c);

    size_t count = 0;
    assert_int_equal(ps_device_list(NULL, 1, &count), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_context_programs_from_cache(NULL), 0);
    assert_int_equal(ps_context_kernel_shape(NULL), PS_SHAPE_AUTO);
    assert_string_equal(ps_status_string((ps_status)-99), "unknown status");
}

static void test_plan_entry_points(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE);
    ps_plan *plan = (ps_plan *)&d; /* must be overwritten with NULL */
    assert_int_equal(ps_plan_create(NULL, &d, &plan), PS_ERR_INVALID_ARGUMENT);
    assert_null(plan);
    EXPECT(ps_plan_create(ctx, NULL, &plan), PS_ERR_INVALID_ARGUMENT, "desc is NULL");
    EXPECT(ps_plan_create(ctx, &d, NULL), PS_ERR_INVALID_ARGUMENT, "out is NULL");
    ps_stage_times times;
    assert_int_equal(ps_plan_stage_times(NULL, &times), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_plan_path(NULL), PS_METHOD_EXACT);
    assert_int_equal(ps_plan_selected_capacity(NULL), 0);
    assert_true(ps_plan_last_time_ms(NULL) < 0.0);
    plan = plan_of(&d);
    assert_int_equal(ps_plan_stage_times(plan, NULL), PS_ERR_INVALID_ARGUMENT);
    ps_plan_destroy(plan);
}

/* Descriptor problems that only a plan sees, each with its status. */
static void test_plan_refusals(void **state)
{
    (void)state;
    ps_plan *plan = NULL;
    ps_attention_desc d = base_desc(PS_METHOD_HYPER);
    d.heads = 6;
    d.kv_heads = 4;
    EXPECT(ps_plan_create(ctx, &d, &plan), PS_ERR_INVALID_ARGUMENT, "kv_heads");
    assert_null(plan);

    d = base_desc(PS_METHOD_HYPER);
    d.block = (size_t)1 << 32; /* was passed to the kernels as int 0 */
    EXPECT(ps_plan_create(ctx, &d, &plan), PS_ERR_UNSUPPORTED, "block");
    d = base_desc(PS_METHOD_HYPER);
    d.samples = (size_t)-1;
    EXPECT(ps_plan_create(ctx, &d, &plan), PS_ERR_UNSUPPORTED, "samples");
    d = base_desc(PS_METHOD_PRESCORE);
    d.score = PS_SCORE_KMEANS;
    d.kmeans_iters = (size_t)1 << 40;
    EXPECT(ps_plan_create(ctx, &d, &plan), PS_ERR_UNSUPPORTED, "kmeans_iters");

    d = base_desc(PS_METHOD_PRESCORE);
    d.global_keys = 32; /* all of the budget */
    EXPECT(ps_plan_create(ctx, &d, &plan), PS_ERR_INVALID_ARGUMENT, "global_keys");

    /* Products: size_t overflow, and a shape no device buffer can hold. */
    d = base_desc(PS_METHOD_EXACT);
    d.batch = (size_t)1 << 29;
    d.heads = d.kv_heads = 2;
    d.n_q = d.n_k = (size_t)1 << 30;
    EXPECT(ps_plan_create(ctx, &d, &plan), PS_ERR_INVALID_ARGUMENT, "overflow");
    /* Views address below element 2^32 of a buffer (32-bit view members). */
    d = base_desc(PS_METHOD_HYPER);
    d.heads = d.kv_heads = 1024;
    d.n_q = d.n_k = (size_t)1 << 30;
    d.d = d.d_v = 128;
    EXPECT(ps_plan_create(ctx, &d, &plan), PS_ERR_UNSUPPORTED, "2^32");
    assert_null(plan);
    /* Below that, a tensor above the device's largest buffer. */
    ps_device_info info;
    assert_int_equal(ps_context_device_info(ctx, &info), PS_OK);
    d = base_desc(PS_METHOD_HYPER);
    d.d = d.d_v = 128;
    d.n_q = d.n_k = (size_t)(info.max_mem_alloc_size / (128 * sizeof(float))) + 1;
    if (d.n_q * 128 < ((size_t)1 << 32)) {
        EXPECT(ps_plan_create(ctx, &d, &plan), PS_ERR_OUT_OF_DEVICE_MEMORY,
               "CL_DEVICE_MAX_MEM_ALLOC_SIZE");
        assert_null(plan);
    } else {
        printf("# max_mem_alloc_size %llu: no tensor below 2^32 elements exceeds it\n",
               (unsigned long long)info.max_mem_alloc_size);
    }
}

/* budget > n_k keeps every key: the same plan and output as budget = n_k. */
static void test_budget_clamped(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE), e = d;
    d.budget = (size_t)-1;
    e.budget = e.n_k;
    ps_plan *pd = plan_of(&d), *pe = plan_of(&e);
    ps_attention_desc r;
    assert_int_equal(ps_plan_desc(pd, &r), PS_OK);
    assert_int_equal(r.budget, d.n_k);
    assert_int_equal(ps_plan_selected_capacity(pd), d.n_k);
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 81), 0);
    assert_int_equal(ps_attention_host(pd, t.q, t.k, t.v, t.o, NULL), PS_OK);
    assert_int_equal(ps_attention_host(pe, t.q, t.k, t.v, t.o_ref, NULL), PS_OK);
    assert_memory_equal(t.o, t.o_ref, d.n_q * d.d_v * sizeof(float));
    ps_plan_destroy(pd);
    ps_plan_destroy(pe);
    ts_tensors_free(&t);
}

static void test_key_reuse_arguments(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE);
    d.want_lse = 1;
    ps_plan *plan = plan_of(&d);
    const size_t bytes = 64 * 16 * sizeof(float);
    cl_mem q = buffer(ctx, bytes), k = buffer(ctx, bytes), v = buffer(ctx, bytes);
    cl_mem o = buffer(ctx, bytes), lse = buffer(ctx, 64 * sizeof(float));
    cl_mem small = buffer(ctx, bytes - 4), foreign = buffer(other, bytes);

    assert_int_equal(ps_attention_prepare_keys(NULL, k, v), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention_prepared(NULL, q, o, lse), PS_ERR_INVALID_ARGUMENT);
    EXPECT_PLAN(plan, ps_attention_prepared(plan, q, o, lse), PS_ERR_INVALID_ARGUMENT,
           "no prepared keys");
    EXPECT_PLAN(plan, ps_attention_prepare_keys(plan, NULL, v), PS_ERR_INVALID_ARGUMENT,
                "k is NULL");
    EXPECT_PLAN(plan, ps_attention_prepare_keys(plan, k, small), PS_ERR_BUFFER_TOO_SMALL,
                "v holds");
    EXPECT_PLAN(plan, ps_attention_prepare_keys(plan, foreign, v), PS_ERR_CONTEXT_MISMATCH, "k");
    EXPECT_PLAN(plan, ps_attention_prepared(plan, q, o, lse), PS_ERR_INVALID_ARGUMENT,
           "no prepared keys"); /* a failed prepare leaves none */
    EXPECT_PLAN(plan, ps_attention_prepare_keys(plan, k, v), PS_OK, "");
    EXPECT_PLAN(plan, ps_attention_prepared(plan, q, o, NULL), PS_ERR_INVALID_ARGUMENT, "lse");
    EXPECT_PLAN(plan, ps_attention_prepared(plan, NULL, o, lse), PS_ERR_INVALID_ARGUMENT,
                "q is NULL");
    EXPECT_PLAN(plan, ps_attention_prepared(plan, q, small, lse), PS_ERR_BUFFER_TOO_SMALL,
                "o holds");
    EXPECT_PLAN(plan, ps_attention_prepared(plan, q, foreign, lse), PS_ERR_CONTEXT_MISMATCH, "o");
    EXPECT_PLAN(plan, ps_attention_prepared(plan, q, k, lse), PS_ERR_INVALID_ARGUMENT, "alias");
    EXPECT_PLAN(plan, ps_attention_prepared(plan, q, o, lse), PS_OK, "");
    ps_plan_destroy(plan);
    cl_mem all[] = {q, k, v, o, lse, small, foreign};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        clReleaseMemObject(all[i]);
}

static void test_stage_arguments(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE);
    ps_plan *plan = plan_of(&d), *hyper = NULL;
    ps_attention_desc h = base_desc(PS_METHOD_HYPER);
    hyper = plan_of(&h);
    const size_t cap = ps_plan_selected_capacity(plan);
    assert_int_equal(cap, 32);
    cl_mem k = buffer(ctx, 64 * 16 * sizeof(float)), scores = buffer(ctx, 64 * sizeof(float));
    cl_mem idx = buffer(ctx, cap * sizeof(cl_uint)), cnt = buffer(ctx, sizeof(cl_uint));
    cl_mem small = buffer(ctx, 8), foreign = buffer(other, 64 * sizeof(float));

    assert_int_equal(ps_score_keys(NULL, k, scores), PS_ERR_INVALID_ARGUMENT);
    EXPECT_PLAN(hyper, ps_score_keys(hyper, k, scores), PS_ERR_INVALID_ARGUMENT,
                "PS_METHOD_PRESCORE");
    EXPECT_PLAN(plan, ps_score_keys(plan, NULL, scores), PS_ERR_INVALID_ARGUMENT, "k is NULL");
    EXPECT_PLAN(plan, ps_score_keys(plan, k, small), PS_ERR_BUFFER_TOO_SMALL, "scores holds");
    EXPECT_PLAN(plan, ps_score_keys(plan, k, foreign), PS_ERR_CONTEXT_MISMATCH, "scores");
    EXPECT_PLAN(plan, ps_score_keys(plan, k, k), PS_ERR_INVALID_ARGUMENT, "alias");
    EXPECT_PLAN(plan, ps_score_keys(plan, k, scores), PS_OK, "");
    /* Another plan's failures and success left hyper's own message. */
    assert_non_null(strstr(ps_plan_last_error(hyper), "ps_score_keys"));
    assert_non_null(strstr(ps_plan_last_error(hyper), "PS_METHOD_PRESCORE"));

    assert_int_equal(ps_select_keys(NULL, scores, idx, cnt), PS_ERR_INVALID_ARGUMENT);
    EXPECT_PLAN(hyper, ps_select_keys(hyper, scores, idx, cnt), PS_ERR_INVALID_ARGUMENT,
           "PS_METHOD_PRESCORE");
    EXPECT_PLAN(plan, ps_select_keys(plan, scores, idx, NULL), PS_ERR_INVALID_ARGUMENT,
                "counts is NULL");
    EXPECT_PLAN(plan, ps_select_keys(plan, scores, small, cnt), PS_ERR_BUFFER_TOO_SMALL,
                "indices holds");
    EXPECT_PLAN(plan, ps_select_keys(plan, foreign, idx, cnt), PS_ERR_CONTEXT_MISMATCH, "scores");
    EXPECT_PLAN(plan, ps_select_keys(plan, scores, idx, idx), PS_ERR_INVALID_ARGUMENT,
                "same buffer");
    EXPECT_PLAN(plan, ps_select_keys(plan, scores, idx, cnt), PS_OK, "");
    ps_plan_destroy(plan);
    ps_plan_destroy(hyper);
    cl_mem all[] = {k, scores, idx, cnt, small, foreign};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        clReleaseMemObject(all[i]);
}

/* The host reference takes the same descriptor and refuses the same way. */
static void test_reference_arguments(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE);
    d.want_lse = 1;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 82), 0);
    assert_int_equal(ps_ref_attention(NULL, t.q, t.k, t.v, t.o, t.lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_attention(&d, NULL, t.k, t.v, t.o, t.lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_attention(&d, t.q, NULL, t.v, t.o, t.lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_attention(&d, t.q, t.k, NULL, t.o, t.lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_attention(&d, t.q, t.k, t.v, NULL, t.lse), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_attention(&d, t.q, t.k, t.v, t.o, NULL), PS_ERR_INVALID_ARGUMENT);
    float scores[64];
    uint32_t idx[64], cnt[1];
    assert_int_equal(ps_ref_score_keys(&d, NULL, scores), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_score_keys(&d, t.k, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_select_keys(&d, NULL, idx, cnt), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_select_keys(&d, scores, NULL, cnt), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_select_keys(&d, scores, idx, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_exact_attention(&d, t.q, t.k, t.v, NULL, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    /* Plan-level answers match: causal n_q > n_k on the approximate path. */
    ps_attention_desc c = base_desc(PS_METHOD_HYPER);
    c.causal = 1;
    c.n_q = 96;
    ps_plan *plan = NULL;
    ps_status dev = ps_plan_create(ctx, &c, &plan);
    ts_tensors tc;
    assert_int_equal(ts_tensors_make(&tc, &c, 83), 0);
    if (dev == PS_OK)
        dev = ps_attention_host(plan, tc.q, tc.k, tc.v, tc.o, NULL);
    ps_plan_destroy(plan);
    assert_int_equal(ps_ref_attention(&c, tc.q, tc.k, tc.v, tc.o_ref, NULL), dev);
    ts_tensors_free(&tc);
    ts_tensors_free(&t);
}

/* ------------------------------------------------- overlapping buffer views
 * Outputs may share no byte with an input or with another output, whatever
 * handles reach them: two sub-buffers of one parent are compared by their
 * byte ranges in the parent (lib/buffer_check.c). Sub-buffer origins must be
 * multiples of CL_DEVICE_MEM_BASE_ADDR_ALIGN, which the device gives in bits. */

static size_t base_align_bytes(void)
{
    cl_device_id dev;
    cl_uint bits = 0;
    assert_int_equal(ps_context_cl_handles(ctx, NULL, &dev, NULL), PS_OK);
    assert_int_equal(
        clGetDeviceInfo(dev, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, NULL),
        CL_SUCCESS);
    assert_true(bits >= 8);
    return bits / 8;
}

static size_t round_up_to(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* The last aligned origin strictly inside [0, len) (0 when the alignment is
 * len or more): a view from there overlaps the tail of one from 0. */
static size_t inner_origin(size_t len, size_t align)
{
    return len > align ? (len - 1) / align * align : 0;
}

static cl_mem view(cl_mem parent, size_t origin, size_t size)
{
    cl_int err;
    const cl_buffer_region r = {origin, size};
    cl_mem m = clCreateSubBuffer(parent, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r,
                                 &err);
    if (err != CL_SUCCESS)
        fail_msg("clCreateSubBuffer(origin %zu, size %zu): %d", origin, size, (int)err);
    return m;
}

static void write_floats(cl_mem m, const void *src, size_t bytes)
{
    cl_command_queue queue;
    ps_context_cl_handles(ctx, NULL, NULL, &queue);
    assert_int_equal(clEnqueueWriteBuffer(queue, m, CL_TRUE, 0, bytes, src, 0, NULL, NULL),
                     CL_SUCCESS);
}

static void read_floats(cl_mem m, void *dst, size_t bytes)
{
    cl_command_queue queue;
    ps_context_cl_handles(ctx, NULL, NULL, &queue);
    assert_int_equal(clEnqueueReadBuffer(queue, m, CL_TRUE, 0, bytes, dst, 0, NULL, NULL),
                     CL_SUCCESS);
}

/* The refusal must name both tensors and the shared bytes of the parent. */
#define EXPECT_OVERLAP(p, call, fn, out, other, lo, hi)                        \
    do {                                                                       \
        char want_[160];                                                       \
        snprintf(want_, sizeof want_,                                          \
                 "%s: %s overlaps %s (bytes [%zu, %zu) of the same buffer)",  \
                 (fn), (out), (other), (size_t)(lo), (size_t)(hi));           \
        EXPECT_PLAN(p, call, PS_ERR_INVALID_ARGUMENT, want_);                  \
    } while (0)

static void release_all(cl_mem *mems, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
}

static void test_overlapping_views_refused(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_EXACT);
    d.want_lse = 1;
    ps_plan *plan = plan_of(&d);
    const size_t T = 64 * 16 * sizeof(float), L = 64 * sizeof(float);
    const size_t A = base_align_bytes(), slot = round_up_to(T, A), in = inner_origin(T, A);
    cl_mem q = buffer(ctx, T), k = buffer(ctx, T), v = buffer(ctx, T), o = buffer(ctx, T),
           lse = buffer(ctx, L), parent = buffer(ctx, 4 * slot);
    cl_mem a = view(parent, 0, T), a2 = view(parent, 0, T), tail = view(parent, in, T),
           tail_l = view(parent, in, L), b = view(parent, slot, T);
    printf("# base address alignment %zu bytes; partial views from byte %zu\n", A, in);

    EXPECT_OVERLAP(plan, ps_attention(plan, q, k, a, a2, lse), "ps_attention", "o", "v", 0, T);
    EXPECT_OVERLAP(plan, ps_attention(plan, a, k, v, a2, lse), "ps_attention", "o", "q", 0, T);
    EXPECT_OVERLAP(plan, ps_attention(plan, q, a, v, tail, lse), "ps_attention", "o", "k", in, T);
    EXPECT_OVERLAP(plan, ps_attention(plan, q, k, v, a, tail_l), "ps_attention", "o", "lse", in,
                   in + L < T ? in + L : T);
    /* Only the bytes a call touches count: lse reads the first L of its view. */
    EXPECT_OVERLAP(plan, ps_attention(plan, q, k, v, a, a2), "ps_attention", "o", "lse", 0, L);
    EXPECT_PLAN(plan, ps_attention(plan, q, k, v, tail, a), PS_OK, "");
    /* The same handle twice is still refused, and named. */
    EXPECT_PLAN(plan, ps_attention(plan, q, k, v, o, o), PS_ERR_INVALID_ARGUMENT,
           "ps_attention: o and lse are the same buffer");
    EXPECT_PLAN(plan, ps_attention(plan, q, k, v, a, a), PS_ERR_INVALID_ARGUMENT,
                "the same buffer");
    /* Inputs may share bytes; disjoint views of one parent are separate. */
    EXPECT_PLAN(plan, ps_attention(plan, a, a2, a, o, lse), PS_OK, "");
    EXPECT_PLAN(plan, ps_attention(plan, q, k, a, b, lse), PS_OK, "");

    /* Key reuse: q, o and lse against the prepared k and v, which may be one
     * set of bytes. */
    EXPECT_PLAN(plan, ps_attention_prepare_keys(plan, a, a2), PS_OK, "");
    EXPECT_OVERLAP(plan, ps_attention_prepared(plan, q, tail, lse), "ps_attention_prepared", "o",
                   "k", in, T);
    EXPECT_PLAN(plan, ps_attention_prepare_keys(plan, k, a), PS_OK, "");
    EXPECT_OVERLAP(plan, ps_attention_prepared(plan, q, o, tail_l), "ps_attention_prepared", "lse",
                   "v", in, in + L < T ? in + L : T);
    EXPECT_PLAN(plan, ps_attention_prepared(plan, q, b, lse), PS_OK, "");
    ps_plan_destroy(plan);
    cl_mem all[] = {a, a2, tail, tail_l, b, q, k, v, o, lse, parent};
    release_all(all, sizeof all / sizeof all[0]);
}

/* Buffers over the caller's host memory (CL_MEM_USE_HOST_PTR) are compared
 * by address: two such buffers over shared bytes are one memory too. */
static void test_overlapping_host_memory_refused(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_EXACT);
    ps_plan *plan = plan_of(&d);
    const size_t T = 64 * 16 * sizeof(float);
    cl_context cl_ctx;
    ps_context_cl_handles(ctx, &cl_ctx, NULL, NULL);
    void *host = NULL;
    assert_int_equal(posix_memalign(&host, 4096, 3 * T), 0);
    memset(host, 0, 3 * T);
    cl_int err;
    cl_mem hq = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, T, host, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem ho = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, T,
                               (char *)host + T / 2, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem ho2 = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, T,
                                (char *)host + 2 * T, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem k = buffer(ctx, T), v = buffer(ctx, T);
    char want[128];
    snprintf(want, sizeof want, "ps_attention: o overlaps q (%zu bytes of the same host memory",
             T / 2);
    EXPECT_PLAN(plan, ps_attention(plan, hq, k, v, ho, NULL), PS_ERR_INVALID_ARGUMENT, want);
    EXPECT_PLAN(plan, ps_attention(plan, hq, k, v, ho2, NULL), PS_OK, "");
    ps_plan_destroy(plan);
    cl_mem all[] = {hq, ho, ho2, k, v};
    release_all(all, sizeof all / sizeof all[0]);
    free(host);
}

/* Every tensor of one call in its own view of a single parent: accepted,
 * with the output of separate buffers, bit for bit. */
static void disjoint_views_match(ps_attention_desc d)
{
    d.want_lse = 1;
    ps_plan *plan = plan_of(&d);
    const size_t T = 64 * 16 * sizeof(float), L = 64 * sizeof(float);
    const size_t A = base_align_bytes(), slot = round_up_to(T, A);
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 85), 0);
    assert_int_equal(ps_attention_host(plan, t.q, t.k, t.v, t.o_ref, t.lse_ref), PS_OK);
    cl_mem parent = buffer(ctx, 5 * slot);
    cl_mem q = view(parent, 0, T), k = view(parent, slot, T), v = view(parent, 2 * slot, T),
           o = view(parent, 3 * slot, T), lse = view(parent, 4 * slot, L);
    write_floats(q, t.q, T);
    write_floats(k, t.k, T);
    write_floats(v, t.v, T);
    EXPECT_PLAN(plan, ps_attention(plan, q, k, v, o, lse), PS_OK, "");
    read_floats(o, t.o, T);
    read_floats(lse, t.lse, L);
    assert_memory_equal(t.o, t.o_ref, T);
    assert_memory_equal(t.lse, t.lse_ref, L);
    /* Adjacent views, no gap beyond the alignment: still disjoint. */
    EXPECT_PLAN(plan, ps_attention_prepare_keys(plan, k, v), PS_OK, "");
    EXPECT_PLAN(plan, ps_attention_prepared(plan, q, o, lse), PS_OK, "");
    read_floats(o, t.o, T);
    assert_memory_equal(t.o, t.o_ref, T);
    ps_plan_destroy(plan);
    cl_mem all[] = {q, k, v, o, lse, parent};
    release_all(all, sizeof all / sizeof all[0]);
    ts_tensors_free(&t);
}

static void test_disjoint_views_accepted(void **state)
{
    (void)state;
    disjoint_views_match(base_desc(PS_METHOD_EXACT));
    disjoint_views_match(base_desc(PS_METHOD_HYPER));
    disjoint_views_match(base_desc(PS_METHOD_PRESCORE));
}

/* ps_score_keys (k -> scores) and ps_select_keys (scores -> indices, counts)
 * through views of one parent: overlaps refused, disjoint views accepted with
 * the results of separate buffers. */
static void test_stage_views(void **state)
{
    (void)state;
    ps_attention_desc d = base_desc(PS_METHOD_PRESCORE);
    ps_plan *plan = plan_of(&d);
    const size_t cap = ps_plan_selected_capacity(plan);
    const size_t K = 64 * 16 * sizeof(float), S = 64 * sizeof(float), I = cap * sizeof(cl_uint),
                 C = sizeof(cl_uint);
    const size_t A = base_align_bytes(), slot = round_up_to(K, A);
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 86), 0);

    /* Separate buffers: the expected results. */
    cl_mem k = buffer(ctx, K), scores = buffer(ctx, S), idx = buffer(ctx, I),
           cnt = buffer(ctx, C);
    write_floats(k, t.k, K);
    float want_scores[64], got_scores[64];
    cl_uint want_idx[64], got_idx[64], want_cnt, got_cnt;
    EXPECT_PLAN(plan, ps_score_keys(plan, k, scores), PS_OK, "");
    EXPECT_PLAN(plan, ps_select_keys(plan, scores, idx, cnt), PS_OK, "");
    read_floats(scores, want_scores, S);
    read_floats(idx, want_idx, I);
    read_floats(cnt, &want_cnt, C);

    cl_mem parent = buffer(ctx, 4 * slot);
    cl_mem vk = view(parent, 0, K), vk_tail = view(parent, inner_origin(K, A), S);
    const size_t ks = inner_origin(K, A);
    EXPECT_OVERLAP(plan, ps_score_keys(plan, vk, vk_tail), "ps_score_keys", "scores", "k", ks,
                   ks + S < K ? ks + S : K);
    cl_mem vs = view(parent, slot, S), vi = view(parent, 2 * slot, I),
           vc = view(parent, 3 * slot, C);
    write_floats(vk, t.k, K);
    EXPECT_PLAN(plan, ps_score_keys(plan, vk, vs), PS_OK, "");
    EXPECT_PLAN(plan, ps_select_keys(plan, vs, vi, vc), PS_OK, "");
    read_floats(vs, got_scores, S);
    read_floats(vi, got_idx, I);
    read_floats(vc, &got_cnt, C);
    assert_memory_equal(got_scores, want_scores, S);
    assert_memory_equal(got_idx, want_idx, I);
    assert_int_equal(got_cnt, want_cnt);

    /* Select: indices over scores, counts inside indices. */
    const size_t si = inner_origin(S, A), ic = inner_origin(I, A);
    cl_mem vs_tail = view(parent, slot + si, I), vi_in = view(parent, 2 * slot + ic, C);
    EXPECT_OVERLAP(plan, ps_select_keys(plan, vs, vs_tail, vc), "ps_select_keys", "indices",
                   "scores", slot + si, slot + (si + I < S ? si + I : S));
    EXPECT_OVERLAP(plan, ps_select_keys(plan, vs, vi, vi_in), "ps_select_keys", "indices",
                   "counts", 2 * slot + ic, 2 * slot + ic + C);
    EXPECT_PLAN(plan, ps_select_keys(plan, vs, vi, vi), PS_ERR_INVALID_ARGUMENT, "same buffer");
    ps_plan_destroy(plan);
    cl_mem all[] = {k, scores, idx, cnt, vk, vk_tail, vs, vi, vc, vs_tail, vi_in, parent};
    release_all(all, sizeof all / sizeof all[0]);
    ts_tensors_free(&t);
}

/* The fuzzer's seed corpus and regressions on the device: every valid tiny
 * descriptor must get the same status from ps_plan_create +
 * ps_attention_host as from ps_ref_attention and, when both run, an output
 * within 1e-3 (relative) of the reference's. Inputs named
 * known-device-mismatch-* are open bugs (docs/RELIABILITY.md): reported, not
 * failed. */
static const char *corpus_dirs[4];

static int read_input(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    *len = fread(buf, 1, cap, f);
    fclose(f);
    return 0;
}

/* @return relative error of the device output (0 when both refused). */
static double device_vs_reference(const char *name, ps_attention_desc d)
{
    d.check_finite = 0; /* the inputs below are finite */
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 84), 0);
    float *lse = d.want_lse ? t.lse : NULL, *lse_ref = d.want_lse ? t.lse_ref : NULL;
    const ps_status ref = ps_ref_attention(&d, t.q, t.k, t.v, t.o_ref, lse_ref);
    ps_plan *plan = NULL;
    ps_status dev = ps_plan_create(ctx, &d, &plan);
    char why[512]; /* the failed call's message: the context's or the plan's */
    snprintf(why, sizeof why, "%s", ps_context_last_error(ctx));
    if (dev == PS_OK) {
        dev = ps_attention_host(plan, t.q, t.k, t.v, t.o, lse);
        snprintf(why, sizeof why, "%s", ps_plan_last_error(plan));
    }
    ps_plan_destroy(plan);
    if (dev != ref)
        fail_msg("%s: device %s (%s), reference %s", name, ps_status_string(dev), why,
                 ps_status_string(ref));
    const double rel =
        dev == PS_OK ? ts_rel_error(t.o, t.o_ref, d.batch * d.heads * d.n_q * d.d_v) : 0.0;
    ts_tensors_free(&t);
    return rel;
}

static void test_corpus_device_matches_reference(void **state)
{
    (void)state;
    if (!corpus_dirs[0])
        skip();
    size_t ran = 0;
    double worst = 0.0;
    for (int i = 0; corpus_dirs[i]; i++) {
        DIR *dir = opendir(corpus_dirs[i]);
        assert_non_null(dir);
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            char path[4096];
            uint8_t buf[4096];
            size_t len = 0;
            ps_attention_desc d;
            snprintf(path, sizeof path, "%s/%s", corpus_dirs[i], e->d_name);
            if (e->d_name[0] == '.' || strstr(e->d_name, ".md") ||
                read_input(path, buf, sizeof buf, &len) != 0)
                continue;
            ps_fuzz_desc_decode(buf, len, &d);
            if (ps_attention_desc_validate(&d, NULL, 0) != PS_OK || !ps_fuzz_desc_tiny(&d))
                continue;
            const double rel = device_vs_reference(e->d_name, d);
            const int known = strncmp(e->d_name, "known-device-mismatch-", 22) == 0;
            if (known) {
                printf("# SKIP known failure %s: device vs reference %.2e\n", e->d_name, rel);
                continue;
            }
            if (rel > 1e-3 && getenv("PS_CORPUS_REPORT")) /* survey mode: list all */
                printf("# MISMATCH %s: %.2e (method %d score %d causal %d n_q %zu n_k %zu "
                       "budget %zu min_seq_len %zu g %zu)\n",
                       e->d_name, rel, d.method, d.score, d.causal, d.n_q, d.n_k, d.budget,
                       d.min_seq_len, d.global_keys);
            else if (rel > 1e-3)
                fail_msg("%s: device output %.2e from the reference", e->d_name, rel);
            worst = rel > worst ? rel : worst;
            ran++;
        }
        closedir(dir);
    }
    printf("# corpus: %zu descriptors run on device and reference, worst relative error "
           "%.2e\n",
           ran, worst);
    assert_true(ran > 0);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc && i < 4; i++)
        corpus_dirs[i - 1] = argv[i];
    ts_report_seed("validation_device");
    if (!ts_have_device("validation_device"))
        return TS_EXIT_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_entry_points),
        cmocka_unit_test(test_plan_entry_points),
        cmocka_unit_test(test_plan_refusals),
        cmocka_unit_test(test_budget_clamped),
        cmocka_unit_test(test_key_reuse_arguments),
        cmocka_unit_test(test_stage_arguments),
        cmocka_unit_test(test_reference_arguments),
        cmocka_unit_test(test_overlapping_views_refused),
        cmocka_unit_test(test_overlapping_host_memory_refused),
        cmocka_unit_test(test_disjoint_views_accepted),
        cmocka_unit_test(test_stage_views),
        cmocka_unit_test(test_corpus_device_matches_reference),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
