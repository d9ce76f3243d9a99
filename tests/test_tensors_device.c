/* Device suite: tensors as engines hold them (ps_tensor_layout). Each case
 * runs ps_attention on device buffers laid out by the descriptor (fp32 or
 * fp16 per tensor, [B,H,T,D] or [B,T,H,D], offsets, a K/V-cache view of a
 * larger capacity, padded O rows) and compares with the reference twin on the
 * same buffers' bytes (ps_ref_attention converts on the host). Every buffer
 * is filled with a canary pattern first: bytes the layout does not address
 * must come back unchanged, inputs entirely. Sizes are odd; GQA, batch 2 and
 * causal (bottom-right, n_q != n_k) are in the cases. Also: the descriptor
 * refusals of bad layouts and ps_attention_host on a padded fp16 O. */
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
#include "core/desc.h"
#include "core/half.h"
#include "core/tensor_layout.h"
#include "support.h"

#define CANARY_BYTE 0xA5
#define PAD_ELEMS 37 /* behind every tensor's extent */

static ps_context *ctx;

#define EXPECT_DESC(d, want, needle)                                           \
    do {                                                                       \
        char msg_[256];                                                        \
        const ps_status st_ = ps_attention_desc_validate(&(d), msg_, sizeof msg_); \
        if (st_ != (want) || !strstr(msg_, (needle)))                          \
            fail_msg("got %s (\"%s\"), want %s naming \"%s\"",                  \
                     ps_status_string(st_), msg_, ps_status_string(want), (needle)); \
    } while (0)


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

/* Layout families of the cases. */
typedef enum family {
    BHTD,     /* dense default strides */
    BTHD,     /* [batch, token, head, dim] for all four */
    KV_CACHE, /* K/V: the first n_k rows of a cache of n_k + 19 rows per head;
                 Q at an odd offset; O rows padded by 16 elements */
    BHTD_STRIDES, /* the dense default with its strides written out (as
                     the Python module passes them) */
} family;

typedef enum dtypes {
    ALL_F32,
    ALL_F16,
    F16_KV,   /* fp32 Q and O, fp16 K and V (llama.cpp's mixed case) */
    F16_IN    /* fp16 Q, K, V and fp32 O */
} dtypes;

static const char *family_name(family f)
{
    return f == BHTD ? "bhtd" : f == BTHD ? "bthd" : f == KV_CACHE ? "kv-cache" : "bhtd-strides";
}

static const char *dtypes_name(dtypes t)
{
    return t == ALL_F32 ? "f32" : t == ALL_F16 ? "f16" : t == F16_KV ? "f16kv" : "f16in";
}

static void set_layouts(ps_attention_desc *d, family f, dtypes t)
{
    if (f == BTHD)
        assert_int_equal(ps_attention_desc_set_layout(d, PS_LAYOUT_BTHD), PS_OK);
    if (f == BHTD_STRIDES)
        assert_int_equal(ps_attention_desc_set_layout(d, PS_LAYOUT_BHTD), PS_OK);
    if (f == KV_CACHE) {
        const size_t cap = d->n_k + 19;
        ps_tensor_layout *kv[2] = {&d->k_layout, &d->v_layout};
        const size_t dims[2] = {d->d, d->d_v};
        for (int i = 0; i < 2; i++) {
            kv[i]->stride[0] = d->kv_heads * cap * dims[i];
            kv[i]->stride[1] = cap * dims[i];
            kv[i]->stride[2] = dims[i];
            kv[i]->stride[3] = 1;
        }
        d->q_layout.offset = 5;
        const size_t row = d->d_v + 16;
        d->o_layout.stride[0] = d->heads * d->n_q * row;
        d->o_layout.stride[1] = d->n_q * row;
        d->o_layout.stride[2] = row;
        d->o_layout.stride[3] = 1;
        d->o_layout.offset = 3;
    }
    const int f16[4] = {t == ALL_F16 || t == F16_IN, t != ALL_F32, t != ALL_F32,
                        t == ALL_F16};
    ps_tensor_layout *l[4] = {&d->q_layout, &d->k_layout, &d->v_layout, &d->o_layout};
    for (int i = 0; i < 4; i++)
        l[i]->dtype = f16[i] ? PS_DTYPE_F16 : PS_DTYPE_F32;
}

/* One tensor: the host image of its whole buffer (canaries around the
 * elements), and which bytes the layout addresses. */
typedef struct image {
    unsigned char *bytes, *addressed;
    size_t size;
} image;

static void image_make(image *im, const ps_attention_desc *d, ps_tensor_id id, uint64_t stream,
                       float sigma)
{
    size_t dims[4];
    ps_desc_dims(d, id, dims);
    const size_t es = ps_dtype_size(ps_desc_layout(d, id)->dtype);
    im->size = (ps_layout_extent(d, id) + PAD_ELEMS) * es;
    im->bytes = malloc(im->size);
    im->addressed = calloc(im->size, 1);
    const size_t n = dims[0] * dims[1] * dims[2] * dims[3];
    float *dense = malloc(n * sizeof(float));
    assert_non_null(im->bytes);
    assert_non_null(im->addressed);
    assert_non_null(dense);
    memset(im->bytes, CANARY_BYTE, im->size);
    ts_fill_normal(dense, n, ts_seed(), stream, sigma);
    ps_layout_from_f32(d, id, dense, im->bytes);
    /* The addressed bytes: write 1.0 through the layout into a scratch image. */
    unsigned char *probe = calloc(im->size, 1);
    assert_non_null(probe);
    for (size_t i = 0; i < n; i++)
        dense[i] = 1.0f;
    ps_layout_from_f32(d, id, dense, probe);
    for (size_t i = 0; i + es <= im->size; i += es) {
        int any = 0;
        for (size_t b = 0; b < es; b++)
            any |= probe[i + b] != 0;
        memset(im->addressed + i, any, es);
    }
    free(probe);
    free(dense);
}

static void image_free(image *im)
{
    free(im->bytes);
    free(im->addressed);
}

static cl_mem upload(const image *im)
{
    cl_context cl_ctx;
    cl_device_id dev;
    cl_command_queue queue;
    assert_int_equal(ps_context_cl_handles(ctx, &cl_ctx, &dev, &queue), PS_OK);
    cl_int err;
    cl_mem m = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, im->size,
                              im->bytes, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

static void download(cl_mem m, void *dst, size_t size)
{
    cl_context cl_ctx;
    cl_device_id dev;
    cl_command_queue queue;
    assert_int_equal(ps_context_cl_handles(ctx, &cl_ctx, &dev, &queue), PS_OK);
    assert_int_equal(clEnqueueReadBuffer(queue, m, CL_TRUE, 0, size, dst, 0, NULL, NULL),
                     CL_SUCCESS);
}

/* O as dense fp32 from an image. */
static float *o_dense(const ps_attention_desc *d, const void *bytes)
{
    float *o = malloc(ps_desc_o_elems(d) * sizeof(float));
    assert_non_null(o);
    ps_layout_to_f32(d, PS_TENSOR_O, bytes, o);
    return o;
}

/* Runs one case on the device and the reference, compares, checks canaries. */
static void run_case(const ps_attention_desc *base, family f, dtypes t)
{
    ps_attention_desc d = *base;
    set_layouts(&d, f, t);
    char what[160];
    snprintf(what, sizeof what, "%s %s %s n_q=%zu n_k=%zu H=%zu/%zu B=%zu causal=%d%s",
             d.method == PS_METHOD_EXACT ? "exact" : "approx", family_name(f), dtypes_name(t),
             d.n_q, d.n_k, d.heads, d.kv_heads, d.batch, d.causal,
             d.cu_seqlens_q ? " varlen" : "");
    image im[4];
    const float sigma[4] = {0.5f, 0.5f, 1.0f, 1.0f};
    for (int id = 0; id < 4; id++)
        image_make(&im[id], &d, (ps_tensor_id)id, 7100 + 10 * (uint64_t)id, sigma[id]);
    const size_t nl = ps_desc_lse_elems(&d);
    float *lse = malloc(nl * sizeof(float)), *lse_ref = malloc(nl * sizeof(float));
    unsigned char *o_ref_bytes = malloc(im[3].size), *back = malloc(im[3].size);
    assert_true(lse && lse_ref && o_ref_bytes && back);
    memcpy(o_ref_bytes, im[3].bytes, im[3].size);

    cl_mem mem[4];
    for (int id = 0; id < 4; id++)
        mem[id] = upload(&im[id]);
    cl_context cl_ctx;
    cl_device_id dev;
    cl_command_queue queue;
    assert_int_equal(ps_context_cl_handles(ctx, &cl_ctx, &dev, &queue), PS_OK);
    cl_int err;
    cl_mem lse_mem = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, nl * sizeof(float), NULL, &err);
    assert_int_equal(err, CL_SUCCESS);

    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, &d, &plan);
    if (st != PS_OK)
        fail_msg("%s: plan: %s", what, ps_context_last_error(ctx));
    st = ps_attention(plan, mem[0], mem[1], mem[2], mem[3], lse_mem);
    if (st != PS_OK)
        fail_msg("%s: %s", what, ps_plan_last_error(plan));
    download(mem[3], back, im[3].size);
    download(lse_mem, lse, nl * sizeof(float));
    assert_int_equal(ps_ref_attention(&d, im[0].bytes, im[1].bytes, im[2].bytes, o_ref_bytes,
                                      lse_ref),
                     PS_OK);

    /* Inputs untouched, O's canaries untouched. */
    for (int id = 0; id < 3; id++) {
        unsigned char *in = malloc(im[id].size);
        assert_non_null(in);
        download(mem[id], in, im[id].size);
        if (memcmp(in, im[id].bytes, im[id].size) != 0)
            fail_msg("%s: input %s changed", what, ps_tensor_name((ps_tensor_id)id));
        free(in);
    }
    for (size_t i = 0; i < im[3].size; i++)
        if (!im[3].addressed[i] && back[i] != CANARY_BYTE)
            fail_msg("%s: O byte %zu outside the layout written", what, i);

    float *o = o_dense(&d, back), *o_ref = o_dense(&d, o_ref_bytes);
    const size_t no = ps_desc_o_elems(&d);
    const double rel = ts_rel_error(o, o_ref, no), dl = ts_max_abs_diff(lse, lse_ref, nl);
    /* fp16 O: both round to nearest even, so they differ where fp32 and
     * double land on two sides of a rounding boundary: one half ulp. */
    const double rel_max = d.o_layout.dtype == PS_DTYPE_F16 ? 1e-3 : 1e-4;
    printf("# %s: rel %.2e, max |lse diff| %.2e\n", what, rel, dl);
    if (!(rel < rel_max && dl < 1e-3))
        fail_msg("%s: rel %.3e (max %.0e), lse %.3e", what, rel, rel_max, dl);

    free(o);
    free(o_ref);
    ps_plan_destroy(plan);
    for (int id = 0; id < 4; id++) {
        clReleaseMemObject(mem[id]);
        image_free(&im[id]);
    }
    clReleaseMemObject(lse_mem);
    free(lse);
    free(lse_ref);
    free(o_ref_bytes);
    free(back);
}

static ps_attention_desc case_desc(ps_method method, size_t n_q, size_t n_k, size_t heads,
                                   size_t kv_heads, size_t batch, int causal)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.method = method;
    d.n_q = n_q;
    d.n_k = n_k;
    d.d = 64;
    d.d_v = 32;
    d.heads = heads;
    d.kv_heads = kv_heads;
    d.batch = batch;
    d.causal = causal;
    d.want_lse = 1;
    return d;
}

/* Every family x dtypes x causal on exact attention, GQA and batch 2. */
static void test_exact_layouts(void **state)
{
    (void)state;
    for (int f = BHTD; f <= KV_CACHE; f++)
        for (int t = ALL_F32; t <= F16_IN; t++)
            for (int causal = 0; causal <= 1; causal++) {
                const ps_attention_desc d =
                    case_desc(PS_METHOD_EXACT, 37 + 20 * causal, 53, 4, 2, 2, causal);
                run_case(&d, (family)f, (dtypes)t);
            }
    /* n_q > n_k: the first rows see no key (O = 0, LSE = -inf). */
    const ps_attention_desc d = case_desc(PS_METHOD_EXACT, 70, 29, 2, 1, 1, 1);
    run_case(&d, KV_CACHE, ALL_F16);
}

/* The approximate pipelines on every layout: HyperAttention over all keys
 * and over the pre-scored keys (k-means scores, selection and gather, global
 * keys, the LSH sort, blocks and residual reading the views), causal too (the recursion copies rows out of the views and merges into
 * O's view). The reference makes the same discrete choices on the same
 * values, so the tolerance is the dense suites'. */
/* (bhtd-strides: the reference once passed explicit dense strides on to the
 * descriptors its stages derive for other shapes and read the wrong rows.) */
static void test_approximate_layouts(void **state)
{
    (void)state;
    for (int method = PS_METHOD_HYPER; method <= PS_METHOD_PRESCORE; method++)
        for (int f = BHTD; f <= BHTD_STRIDES; f++)
            for (int t = ALL_F32; t <= F16_IN; t++)
                for (int causal = 0; causal <= 1; causal++) {
                    ps_attention_desc d = case_desc((ps_method)method, 301 - 40 * causal, 301,
                                                    4, 2, 2, causal);
                    d.block = 64;
                    d.samples = 32;
                    d.budget = 150;
                    d.min_seq_len = causal ? 64 : 1;
                    run_case(&d, (family)f, (dtypes)t);
                    /* One block of kept keys: the dropped-key residual reads
                     * the caller's K and V through their views (HYPER.md);
                     * fp16 storage, non-causal (causal nodes: pipeline_device). */
                    d.block = 256;
                    if (method == PS_METHOD_PRESCORE && t != ALL_F32 && !causal)
                        run_case(&d, (family)f, (dtypes)t);
                }
}

/* Variable-length batches: sequences of different lengths packed along the
 * tokens (an empty one among them), each on its own path by its own length
 * (here the long one on the approximate path, the short ones exact), causal
 * per sequence (bottom-right within each), in every layout family and dtype
 * mix; [B, T, H, D] packed is FlashAttention's varlen layout. */
static void test_varlen(void **state)
{
    (void)state;
    static const uint32_t cu_q[5] = {0, 5, 5, 38, 338}, cu_k[5] = {0, 9, 9, 42, 342};
    for (int method = PS_METHOD_EXACT; method <= PS_METHOD_PRESCORE; method++)
        for (int f = BHTD; f <= KV_CACHE; f++)
            for (int t = ALL_F32; t <= F16_IN; t += 2)
                for (int causal = 0; causal <= 1; causal++) {
                    ps_attention_desc d = case_desc((ps_method)method, cu_q[4], cu_k[4], 4, 2,
                                                    4, causal);
                    d.cu_seqlens_q = cu_q;
                    d.cu_seqlens_k = cu_k;
                    d.block = 64;
                    d.samples = 32;
                    d.budget = 150;
                    d.min_seq_len = 64;
                    run_case(&d, (family)f, (dtypes)t);
                    d.block = 256; /* one block of kept keys: dropped-key draws */
                    if (method == PS_METHOD_PRESCORE && !causal)
                        run_case(&d, (family)f, (dtypes)t);
                }
}

/* The packing itself, checked without ps_varlen_seq_desc: exact varlen on
 * the device against each sequence sliced out by hand ([heads][rows][dim]
 * per sequence) and run through the batch-1 reference; LSE rows likewise. */
static void test_varlen_packing(void **state)
{
    (void)state;
    static const uint32_t cu_q[4] = {0, 7, 20, 61}, cu_k[4] = {0, 3, 30, 61};
    const size_t H = 2, D = 32, nq = cu_q[3], nk = cu_k[3];
    ps_attention_desc d = case_desc(PS_METHOD_EXACT, nq, nk, H, H, 3, 1);
    d.d = d.d_v = D;
    d.cu_seqlens_q = cu_q;
    d.cu_seqlens_k = cu_k;
    float *q = malloc(H * nq * D * 4), *k = malloc(H * nk * D * 4), *v = malloc(H * nk * D * 4);
    float *o = malloc(H * nq * D * 4), *lse = malloc(H * nq * 4);
    assert_true(q && k && v && o && lse);
    ts_fill_normal(q, H * nq * D, ts_seed(), 7400, 0.5f);
    ts_fill_normal(k, H * nk * D, ts_seed(), 7401, 0.5f);
    ts_fill_normal(v, H * nk * D, ts_seed(), 7402, 1.0f);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_attention_host(plan, q, k, v, o, lse), PS_OK);
    ps_plan_destroy(plan);
    for (size_t b = 0; b < 3; b++) {
        const size_t lq = cu_q[b + 1] - cu_q[b], lk = cu_k[b + 1] - cu_k[b];
        float *sq = malloc(H * lq * D * 4), *sk = malloc(H * lk * D * 4),
              *sv = malloc(H * lk * D * 4), *so = malloc(H * lq * D * 4),
              *sl = malloc(H * lq * 4);
        assert_true(sq && sk && sv && so && sl);
        for (size_t h = 0; h < H; h++) {
            memcpy(sq + h * lq * D, q + (h * nq + cu_q[b]) * D, lq * D * 4);
            memcpy(sk + h * lk * D, k + (h * nk + cu_k[b]) * D, lk * D * 4);
            memcpy(sv + h * lk * D, v + (h * nk + cu_k[b]) * D, lk * D * 4);
        }
        ps_attention_desc sd = case_desc(PS_METHOD_EXACT, lq, lk, H, H, 1, 1);
        sd.d = sd.d_v = D;
        assert_int_equal(ps_ref_exact_attention(&sd, sq, sk, sv, so, sl), PS_OK);
        for (size_t h = 0; h < H; h++) {
            const double rel = ts_rel_error(o + (h * nq + cu_q[b]) * D, so + h * lq * D, lq * D);
            const double dl = ts_max_abs_diff(lse + h * nq + cu_q[b], sl + h * lq, lq);
            if (!(rel < 1e-5 && dl < 1e-4))
                fail_msg("sequence %zu head %zu: rel %.2e, lse %.2e", b, h, rel, dl);
        }
        free(sq);
        free(sk);
        free(sv);
        free(so);
        free(sl);
    }
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
}

/* Key reuse on a variable-length batch: every sequence keeps its key half,
 * and the query half gives what ps_attention gives; the stage calls refuse. */
static void test_varlen_prepared(void **state)
{
    (void)state;
    static const uint32_t cu_q[3] = {0, 40, 300}, cu_k[3] = {0, 50, 310};
    ps_attention_desc d = case_desc(PS_METHOD_HYPER, 300, 310, 2, 1, 2, 0);
    d.cu_seqlens_q = cu_q;
    d.cu_seqlens_k = cu_k;
    d.block = 64;
    d.samples = 32;
    d.min_seq_len = 64;
    cl_context cl_ctx;
    cl_device_id dev;
    cl_command_queue queue;
    assert_int_equal(ps_context_cl_handles(ctx, &cl_ctx, &dev, &queue), PS_OK);
    image im[3];
    for (int id = 0; id < 3; id++)
        image_make(&im[id], &d, (ps_tensor_id)id, 7500 + (uint64_t)id, 0.5f);
    cl_mem in[3], o[2], lse[2];
    for (int id = 0; id < 3; id++)
        in[id] = upload(&im[id]);
    cl_int err;
    const size_t ob = ps_tensor_bytes(&d, PS_TENSOR_O), lb = ps_desc_lse_elems(&d) * 4;
    for (int i = 0; i < 2; i++) {
        o[i] = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, ob, NULL, &err);
        lse[i] = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, lb, NULL, &err);
    }
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_attention(plan, in[0], in[1], in[2], o[0], lse[0]), PS_OK);
    assert_int_equal(ps_attention_prepare_keys(plan, in[1], in[2]), PS_OK);
    assert_int_equal(ps_attention_prepared(plan, in[0], o[1], lse[1]), PS_OK);
    unsigned char *a = malloc(ob), *b = malloc(ob), *la = malloc(lb), *lb2 = malloc(lb);
    assert_true(a && b && la && lb2);
    download(o[0], a, ob);
    download(o[1], b, ob);
    download(lse[0], la, lb);
    download(lse[1], lb2, lb);
    assert_memory_equal(a, b, ob);
    assert_memory_equal(la, lb2, lb);
    assert_int_equal(ps_score_keys(plan, in[1], lse[0]), PS_ERR_UNSUPPORTED);
    ps_plan_destroy(plan);
    for (int i = 0; i < 3; i++) {
        clReleaseMemObject(in[i]);
        image_free(&im[i]);
    }
    for (int i = 0; i < 2; i++) {
        clReleaseMemObject(o[i]);
        clReleaseMemObject(lse[i]);
    }
    free(a);
    free(b);
    free(la);
    free(lb2);
}

/* desc.check_finite scans the elements a layout addresses, in their storage
 * type: an fp16 Inf inside K is found, a NaN in the rows of a KV cache past
 * n_k (not part of the tensor) is not. */
static void test_finite_views(void **state)
{
    (void)state;
    ps_attention_desc d = case_desc(PS_METHOD_EXACT, 20, 30, 2, 2, 1, 0);
    d.check_finite = 1;
    d.want_lse = 0;
    set_layouts(&d, KV_CACHE, ALL_F16);
    image im[4];
    for (int id = 0; id < 4; id++)
        image_make(&im[id], &d, (ps_tensor_id)id, 7600 + (uint64_t)id, 0.5f);
    const uint16_t nan16 = 0x7e00, inf16 = 0x7c00;
    /* Row n_k of KV head 0 lies in the cache's spare rows, between head 0's
     * rows and head 1's: inside k's extent, outside k. */
    const size_t spare = d.n_k * d.k_layout.stride[2];
    memcpy(im[1].bytes + spare * 2, &nan16, 2);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    const ps_status first = ps_attention_host(plan, im[0].bytes, im[1].bytes, im[2].bytes,
                                              im[3].bytes, NULL);
    if (first != PS_OK)
        fail_msg("finite inputs: %s", ps_plan_last_error(plan));
    /* Element [0][1][29][7] of k: inside. */
    const size_t inside = d.k_layout.stride[1] + 29 * d.k_layout.stride[2] + 7;
    memcpy(im[1].bytes + inside * 2, &inf16, 2);
    assert_int_equal(ps_attention_host(plan, im[0].bytes, im[1].bytes, im[2].bytes,
                                       im[3].bytes, NULL),
                     PS_ERR_NON_FINITE);
    assert_non_null(strstr(ps_plan_last_error(plan), "k holds Inf or NaN"));
    ps_plan_destroy(plan);
    for (int id = 0; id < 4; id++)
        image_free(&im[id]);
}

/* Offsets the descriptor refuses. */
static void test_varlen_refusals(void **state)
{
    (void)state;
    uint32_t cu_q[3] = {0, 4, 10}, cu_k[3] = {0, 6, 12};
    ps_attention_desc d = case_desc(PS_METHOD_EXACT, 10, 12, 2, 2, 2, 0);
    d.cu_seqlens_q = cu_q;
    EXPECT_DESC(d, PS_ERR_INVALID_ARGUMENT, "both");
    d.cu_seqlens_k = cu_k;
    EXPECT_DESC(d, PS_OK, "");
    cu_q[2] = 11;
    EXPECT_DESC(d, PS_ERR_INVALID_ARGUMENT, "n_q");
    cu_q[2] = 10;
    cu_k[1] = 13;
    EXPECT_DESC(d, PS_ERR_INVALID_ARGUMENT, "ascend");
    cu_k[1] = 0;
    EXPECT_DESC(d, PS_ERR_INVALID_ARGUMENT, "no key");
    cu_k[1] = 6;
    cu_q[0] = 1;
    EXPECT_DESC(d, PS_ERR_INVALID_ARGUMENT, "[0]");
    cu_q[0] = 0;
    /* The plan keeps its own copy: changing the caller's arrays later is harmless. */
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    cu_q[1] = 99;
    ps_attention_desc got;
    assert_int_equal(ps_plan_desc(plan, &got), PS_OK);
    assert_int_equal(got.cu_seqlens_q[1], 4);
    assert_true(got.cu_seqlens_q != cu_q);
    ps_plan_destroy(plan);
}

/* ps_attention_host on a padded fp16 O: the elements between rows stay. */
static void test_host_padded_f16(void **state)
{
    (void)state;
    ps_attention_desc d = case_desc(PS_METHOD_EXACT, 33, 41, 2, 2, 1, 0);
    set_layouts(&d, KV_CACHE, ALL_F16);
    image im[4];
    for (int id = 0; id < 4; id++)
        image_make(&im[id], &d, (ps_tensor_id)id, 7200 + 10 * (uint64_t)id, 0.5f);
    unsigned char *o_ref_bytes = malloc(im[3].size);
    const size_t nl = d.batch * d.heads * d.n_q;
    float *lse = malloc(nl * sizeof(float)), *lse_ref = malloc(nl * sizeof(float));
    assert_true(o_ref_bytes && lse && lse_ref);
    memcpy(o_ref_bytes, im[3].bytes, im[3].size);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_attention_host(plan, im[0].bytes, im[1].bytes, im[2].bytes, im[3].bytes,
                                       lse),
                     PS_OK);
    assert_int_equal(ps_ref_attention(&d, im[0].bytes, im[1].bytes, im[2].bytes, o_ref_bytes,
                                      lse_ref),
                     PS_OK);
    for (size_t i = 0; i < im[3].size; i++)
        if (!im[3].addressed[i])
            assert_int_equal(im[3].bytes[i], CANARY_BYTE);
    float *o = o_dense(&d, im[3].bytes), *o_ref = o_dense(&d, o_ref_bytes);
    const double rel = ts_rel_error(o, o_ref, d.batch * d.heads * d.n_q * d.d_v);
    printf("# host, padded fp16 O: rel %.2e\n", rel);
    assert_true(rel < 1e-3);
    assert_true(ts_max_abs_diff(lse, lse_ref, nl) < 1e-3);
    free(o);
    free(o_ref);
    ps_plan_destroy(plan);
    for (int id = 0; id < 4; id++)
        image_free(&im[id]);
    free(o_ref_bytes);
    free(lse);
    free(lse_ref);
}

/* The plan's workspace follows K's and V's storage type (sorted, sampled,
 * split and transposed copies), and ps_plan_device_bytes counts it, the
 * causal recursion's nodes included. */
static void test_device_bytes(void **state)
{
    (void)state;
    for (int causal = 0; causal <= 1; causal++) {
        size_t bytes[2];
        for (int f16 = 0; f16 <= 1; f16++) {
            ps_attention_desc d = case_desc(PS_METHOD_HYPER, 301, 301, 4, 2, 2, causal);
            d.block = 64;
            d.samples = 32;
            d.min_seq_len = causal ? 64 : 1;
            if (f16)
                d.k_layout.dtype = d.v_layout.dtype = PS_DTYPE_F16;
            ps_plan *plan = NULL;
            assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
            bytes[f16] = ps_plan_device_bytes(plan);
            ps_plan_destroy(plan);
        }
        printf("# device bytes, HYPER causal=%d: fp32 K/V %zu, fp16 K/V %zu\n", causal,
               bytes[0], bytes[1]);
        assert_true(bytes[1] > 0 && bytes[1] < bytes[0]);
    }
    assert_int_equal(ps_plan_device_bytes(NULL), 0);
}

/* The public host conversions: sizes, a round trip through fp16 BTHD, refusals. */
static void test_pack_unpack(void **state)
{
    (void)state;
    ps_attention_desc d = case_desc(PS_METHOD_EXACT, 7, 9, 2, 2, 2, 0);
    assert_int_equal(ps_attention_desc_set_layout(&d, PS_LAYOUT_BTHD), PS_OK);
    d.k_layout.dtype = PS_DTYPE_F16;
    d.k_layout.offset = 3;
    const size_t n = 2 * 2 * 9 * 64;
    assert_int_equal(ps_tensor_bytes(&d, PS_TENSOR_K), (3 + n) * 2);
    assert_int_equal(ps_tensor_bytes(&d, PS_TENSOR_Q), 2 * 2 * 7 * 64 * 4);
    assert_int_equal(ps_tensor_bytes(&d, (ps_tensor_kind)4), 0);
    float *dense = malloc(n * sizeof *dense), *back = malloc(n * sizeof *back);
    unsigned char *buf = malloc(ps_tensor_bytes(&d, PS_TENSOR_K));
    assert_true(dense && back && buf);
    ts_fill_normal(dense, n, ts_seed(), 7300, 1.0f);
    assert_int_equal(ps_tensor_pack(&d, PS_TENSOR_K, dense, buf), PS_OK);
    assert_int_equal(ps_tensor_unpack(&d, PS_TENSOR_K, buf, back), PS_OK);
    for (size_t i = 0; i < n; i++) /* within half an fp16 ulp */
        assert_true(fabsf(back[i] - dense[i]) <= fabsf(dense[i]) * (1.0f / 2048.0f) + 3e-8f);
    /* [B, T, H, D]: element [b][h][t][c] of k at 3 + ((b * 9 + t) * 2 + h) * 64 + c. */
    uint16_t bits;
    memcpy(&bits, buf + (3 + ((1 * 9 + 4) * 2 + 1) * 64 + 5) * 2, sizeof bits);
    assert_true(ps_half_to_float(bits) == back[((1 * 2 + 1) * 9 + 4) * 64 + 5]);
    assert_int_equal(ps_tensor_pack(&d, PS_TENSOR_K, NULL, buf), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_tensor_unpack(&d, (ps_tensor_kind)-1, buf, back),
                     PS_ERR_INVALID_ARGUMENT);
    d.n_q = 0;
    assert_int_equal(ps_tensor_pack(&d, PS_TENSOR_K, dense, buf), PS_ERR_INVALID_ARGUMENT);
    free(dense);
    free(back);
    free(buf);
}

/* Layouts the descriptor refuses, and buffers too small for a layout. */
static void test_layout_refusals(void **state)
{
    (void)state;
    ps_attention_desc d = case_desc(PS_METHOD_EXACT, 16, 16, 2, 2, 2, 0);
    d.k_layout.dtype = (ps_dtype)7;
    EXPECT_DESC(d, PS_ERR_INVALID_ARGUMENT, "k_layout.dtype");
    d = case_desc(PS_METHOD_EXACT, 16, 16, 2, 2, 2, 0);
    assert_int_equal(ps_attention_desc_set_layout(&d, PS_LAYOUT_BTHD), PS_OK);
    d.v_layout.stride[3] = 2;
    EXPECT_DESC(d, PS_ERR_UNSUPPORTED, "v_layout.stride[3]");
    d = case_desc(PS_METHOD_EXACT, 16, 16, 2, 2, 2, 0);
    assert_int_equal(ps_attention_desc_set_layout(&d, PS_LAYOUT_BTHD), PS_OK);
    d.q_layout.stride[1] = 0; /* two heads on one address */
    EXPECT_DESC(d, PS_ERR_INVALID_ARGUMENT, "q_layout.stride[1]");
    d = case_desc(PS_METHOD_EXACT, 16, 16, 2, 2, 2, 0);
    assert_int_equal(ps_attention_desc_set_layout(&d, PS_LAYOUT_BTHD), PS_OK);
    d.o_layout.stride[2] = d.d_v; /* tokens overlap the other head's rows */
    EXPECT_DESC(d, PS_ERR_INVALID_ARGUMENT, "twice");
    d = case_desc(PS_METHOD_EXACT, 16, 16, 2, 2, 2, 0);
    d.k_layout.offset = (size_t)1 << 32;
    EXPECT_DESC(d, PS_ERR_UNSUPPORTED, "2^32");
    assert_int_equal(ps_attention_desc_set_layout(NULL, PS_LAYOUT_BTHD),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_attention_desc_set_layout(&d, (ps_layout)9), PS_ERR_INVALID_ARGUMENT);

    /* A buffer of the dense fp32 size is too small for an offset view; an O
     * inside Q's bytes is refused; an O in the same buffer after Q is fine. */
    d = case_desc(PS_METHOD_EXACT, 16, 16, 2, 2, 1, 0);
    d.d_v = 64;
    d.want_lse = 0;
    d.q_layout.dtype = d.k_layout.dtype = d.v_layout.dtype = d.o_layout.dtype = PS_DTYPE_F16;
    const size_t elems = ps_desc_o_elems(&d);
    cl_context cl_ctx;
    cl_device_id dev;
    cl_command_queue queue;
    assert_int_equal(ps_context_cl_handles(ctx, &cl_ctx, &dev, &queue), PS_OK);
    cl_int err;
    cl_mem a = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, 2 * elems * 2, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    cl_mem kv = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, elems * 2, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(clEnqueueFillBuffer(queue, a, (const cl_uchar[]){0}, 1, 0, 2 * elems * 2, 0,
                                         NULL, NULL),
                     CL_SUCCESS);
    assert_int_equal(clEnqueueFillBuffer(queue, kv, (const cl_uchar[]){0}, 1, 0, elems * 2, 0,
                                         NULL, NULL),
                     CL_SUCCESS);
    ps_plan *plan = NULL;
    d.q_layout.offset = elems + 1; /* q past the buffer's end by one element */
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_attention(plan, a, kv, kv, a, NULL), PS_ERR_BUFFER_TOO_SMALL);
    assert_non_null(strstr(ps_plan_last_error(plan), "q"));
    ps_plan_destroy(plan);
    d.q_layout.offset = 0;
    d.o_layout.offset = elems / 2; /* o over the second half of q */
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_attention(plan, a, kv, kv, a, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "o and q are the same buffer"));
    ps_plan_destroy(plan);
    d.o_layout.offset = elems; /* o right after q: disjoint */
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_attention(plan, a, kv, kv, a, NULL), PS_OK);
    ps_plan_destroy(plan);
    clReleaseMemObject(a);
    clReleaseMemObject(kv);
}

int main(void)
{
    ts_report_seed("tensors_device");
    if (!ts_have_device("tensors_device"))
        return TS_EXIT_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_layouts),
        cmocka_unit_test(test_approximate_layouts),
        cmocka_unit_test(test_host_padded_f16),
        cmocka_unit_test(test_layout_refusals),
        cmocka_unit_test(test_device_bytes),
        cmocka_unit_test(test_varlen),
        cmocka_unit_test(test_varlen_packing),
        cmocka_unit_test(test_varlen_prepared),
        cmocka_unit_test(test_varlen_refusals),
        cmocka_unit_test(test_finite_views),
        cmocka_unit_test(test_pack_unpack),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
