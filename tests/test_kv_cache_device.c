/* Device suite: the key cache and split-K decode (ps_kv_cache, docs/API.md
 * "Decode"). Decode is checked against exact attention computed on the host
 * (ps_ref_exact_attention) over the keys it must attend: every cached key
 * (PS_DECODE_EXACT), or the sinks, the device's kept set and the window; the
 * kept set against brute force (NORM) and against itself under other append
 * chunkings; capacity, mode and handle refusals. GQA, batch 2, odd sizes,
 * several queries per call (causal among themselves), fp16 storage. */
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
#include "core/half.h"
#include "support.h"

static ps_context *ctx;

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

/* The sequence a test appends and decodes: K, V of `total` tokens and the
 * queries of every position, dense fp32 [batch * heads][total][dim]. */
typedef struct seq {
    ps_attention_desc d; /* the cache's descriptor */
    size_t total, kv_rows, q_rows;
    float *k, *v, *q;
} seq;

static void seq_make(seq *s, const ps_attention_desc *d, size_t total, uint64_t stream)
{
    s->d = *d;
    s->total = total;
    s->kv_rows = d->batch * d->kv_heads;
    s->q_rows = d->batch * d->heads;
    s->k = malloc(s->kv_rows * total * d->d * sizeof(float));
    s->v = malloc(s->kv_rows * total * d->d_v * sizeof(float));
    s->q = malloc(s->q_rows * total * d->d * sizeof(float));
    assert_non_null(s->k);
    assert_non_null(s->v);
    assert_non_null(s->q);
    ts_fill_normal(s->k, s->kv_rows * total * d->d, ts_seed(), stream, 1.0f);
    ts_fill_normal(s->v, s->kv_rows * total * d->d_v, ts_seed(), stream + 1, 1.0f);
    ts_fill_normal(s->q, s->q_rows * total * d->d, ts_seed(), stream + 2, 1.0f);
    /* Heavy keys: every 37th key is long, so selections are not a coin toss. */
    for (size_t r = 0; r < s->kv_rows; r++)
        for (size_t t = 5; t < total; t += 37)
            for (size_t c = 0; c < d->d; c++)
                s->k[(r * total + t) * d->d + c] *= 3.0f;
}

static void seq_free(seq *s)
{
    free(s->k);
    free(s->v);
    free(s->q);
}

/* Rows [t0, t0 + n) of x ([rows][total][dim]) as a dense [rows][n][dim]
 * array in the storage type (fp16 bits when half). */
static void *slice(const float *x, size_t rows, size_t total, size_t dim, size_t t0, size_t n,
                   int half)
{
    const size_t count = rows * n * dim;
    void *out = malloc(count * (half ? 2 : 4));
    assert_non_null(out);
    for (size_t r = 0; r < rows; r++)
        for (size_t t = 0; t < n; t++)
            for (size_t c = 0; c < dim; c++) {
                const float v = x[(r * total + t0 + t) * dim + c];
                const size_t i = (r * n + t) * dim + c;
                if (half)
                    ((uint16_t *)out)[i] = ps_float_to_half(v);
                else
                    ((float *)out)[i] = v;
            }
    return out;
}

static void append(ps_kv_cache *c, const seq *s, size_t t0, size_t n)
{
    const int half = s->d.k_layout.dtype == PS_DTYPE_F16;
    void *k = slice(s->k, s->kv_rows, s->total, s->d.d, t0, n, half);
    void *v = slice(s->v, s->kv_rows, s->total, s->d.d_v, t0, n, half);
    const ps_status st = ps_kv_cache_append_host(c, k, v, n);
    free(k);
    free(v);
    if (st != PS_OK)
        fail_msg("append %zu rows at %zu: %s", n, t0, ps_kv_cache_last_error(c));
}

/* Exact attention of the queries at positions [n - n_q, n) over the keys at
 * the ascending positions pos[r][0..count[r]) of each KV head (NULL: all of
 * [0, n)), causal by position, on the host; o [q_rows][n_q][d_v]. */
static void expected(const seq *s, size_t n, size_t n_q, const uint32_t *pos,
                     const size_t *count, size_t pos_stride, float *o, float *lse)
{
    const ps_attention_desc *cd = &s->d;
    const int half = cd->k_layout.dtype == PS_DTYPE_F16;
    const size_t group = cd->heads / cd->kv_heads;
    for (size_t r = 0; r < s->kv_rows; r++) {
        const size_t m = pos ? count[r] : n;
        /* gathered keys of this KV head, in position order */
        float *k = malloc((m ? m : 1) * cd->d * sizeof(float));
        float *v = malloc((m ? m : 1) * cd->d_v * sizeof(float));
        float *q = malloc(group * n_q * cd->d * sizeof(float));
        assert_true(k && v && q);
        for (size_t j = 0; j < m; j++) {
            const size_t p = pos ? pos[r * pos_stride + j] : j;
            for (size_t c = 0; c < cd->d; c++) {
                const float x = s->k[(r * s->total + p) * cd->d + c];
                k[j * cd->d + c] = half ? ps_half_to_float(ps_float_to_half(x)) : x;
            }
            for (size_t c = 0; c < cd->d_v; c++) {
                const float x = s->v[(r * s->total + p) * cd->d_v + c];
                v[j * cd->d_v + c] = half ? ps_half_to_float(ps_float_to_half(x)) : x;
            }
        }
        const size_t b = r / cd->kv_heads, hk = r % cd->kv_heads;
        for (size_t g = 0; g < group; g++)
            memcpy(q + g * n_q * cd->d,
                   s->q + ((b * cd->heads + hk * group + g) * s->total + n - n_q) * cd->d,
                   n_q * cd->d * sizeof(float));
        /* Bottom-right causal over the gathered keys is causal by position
         * when the last n_q positions are all attended (window >= n_q). */
        ps_attention_desc e;
        ps_attention_desc_default(&e);
        e.heads = group;
        e.n_q = n_q;
        e.n_k = m;
        e.d = cd->d;
        e.d_v = cd->d_v;
        e.causal = 1;
        e.scale = cd->scale;
        float *eo = malloc(group * n_q * cd->d_v * sizeof(float));
        float *el = malloc(group * n_q * sizeof(float));
        assert_true(eo && el);
        assert_int_equal(ps_ref_exact_attention(&e, q, k, v, eo, el), PS_OK);
        for (size_t g = 0; g < group; g++) {
            const size_t qh = b * cd->heads + hk * group + g;
            memcpy(o + qh * n_q * cd->d_v, eo + g * n_q * cd->d_v,
                   n_q * cd->d_v * sizeof(float));
            memcpy(lse + qh * n_q, el + g * n_q, n_q * sizeof(float));
        }
        free(k);
        free(v);
        free(q);
        free(eo);
        free(el);
    }
}

/* Decodes the queries at [n - n_q, n) and compares with expected(). */
static void check_decode(ps_kv_cache *c, const seq *s, size_t n, size_t n_q,
                         ps_decode_mode mode, const char *what)
{
    const ps_attention_desc *cd = &s->d;
    const size_t o_count = s->q_rows * n_q * cd->d_v;
    float *q = malloc(s->q_rows * n_q * cd->d * sizeof(float));
    float *o = malloc(o_count * sizeof(float)), *lse = malloc(s->q_rows * n_q * sizeof(float));
    float *eo = malloc(o_count * sizeof(float)), *el = malloc(s->q_rows * n_q * sizeof(float));
    assert_true(q && o && lse && eo && el);
    for (size_t h = 0; h < s->q_rows; h++)
        memcpy(q + h * n_q * cd->d, s->q + (h * s->total + n - n_q) * cd->d,
               n_q * cd->d * sizeof(float));
    const int half_o = cd->o_layout.dtype == PS_DTYPE_F16;
    uint16_t *o16 = half_o ? malloc(o_count * sizeof *o16) : NULL;
    const ps_status st = ps_kv_cache_decode_host(c, q, n_q, half_o ? (void *)o16 : (void *)o,
                                                 lse, mode);
    if (st != PS_OK)
        fail_msg("%s: decode: %s", what, ps_kv_cache_last_error(c));
    for (size_t i = 0; half_o && i < o_count; i++)
        o[i] = ps_half_to_float(o16[i]);
    free(o16);

    ps_kv_cache_info info;
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    assert_int_equal(info.length, n);
    const int all = mode == PS_DECODE_EXACT || cd->method == PS_METHOD_EXACT;
    uint32_t *pos = NULL;
    size_t *count = NULL, stride = 0;
    if (!all) { /* sinks + the device's kept set + window, ascending */
        const size_t kc = info.kept_capacity ? info.kept_capacity : 1;
        uint32_t *kept = malloc(s->kv_rows * kc * sizeof *kept);
        uint32_t *kcount = malloc(s->kv_rows * sizeof *kcount);
        stride = n;
        pos = malloc(s->kv_rows * n * sizeof *pos);
        count = malloc(s->kv_rows * sizeof *count);
        assert_true(kept && kcount && pos && count);
        assert_int_equal(ps_kv_cache_kept(c, kept, kcount), PS_OK);
        const size_t sink = cd->sink < n ? cd->sink : n;
        const size_t w0 = n > cd->window && n - cd->window > sink ? n - cd->window : sink;
        for (size_t r = 0; r < s->kv_rows; r++) {
            size_t m = 0;
            assert_int_equal(kcount[r], info.kept);
            for (size_t p = 0; p < sink; p++)
                pos[r * n + m++] = (uint32_t)p;
            for (size_t j = 0; j < kcount[r]; j++) {
                const uint32_t p = kept[r * kc + j];
                assert_true(p >= sink && p < w0);
                assert_true(j == 0 || p > kept[r * kc + j - 1]);
                pos[r * n + m++] = p;
            }
            for (size_t p = w0; p < n; p++)
                pos[r * n + m++] = (uint32_t)p;
            count[r] = m;
        }
        free(kept);
        free(kcount);
    }
    expected(s, n, n_q, pos, count, stride, eo, el);
    const int half_kv = cd->k_layout.dtype == PS_DTYPE_F16;
    const double tol = half_o ? 2e-3 : half_kv ? 1e-4 : 2e-5;
    const double err = ts_rel_error(o, eo, o_count);
    const double lerr = ts_max_abs_diff(lse, el, s->q_rows * n_q);
    if (!(err < tol) || !(lerr < 1e-4))
        fail_msg("%s: n = %zu, n_q = %zu: rel error %.3g (tol %.1g), lse max diff %.3g", what,
                 n, n_q, err, tol, lerr);
    free(q);
    free(o);
    free(lse);
    free(eo);
    free(el);
    free(pos);
    free(count);
}

static ps_attention_desc cache_desc(ps_method method, ps_score score, size_t capacity)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.batch = 2;
    d.heads = 6;
    d.kv_heads = 2; /* GQA 3 */
    d.n_k = capacity;
    d.n_q = 5;
    d.d = 64;
    d.d_v = 48;
    d.method = method;
    d.score = score;
    if (method == PS_METHOD_PRESCORE) {
        d.budget = 61;
        d.sink = 3;
        d.window = 24;
    }
    return d;
}

/* Exact decode (every key) against host exact attention: after a prefill and
 * after further single and multi-row appends, 1 and several queries. */
static void test_exact_decode(void **state)
{
    (void)state;
    for (int half = 0; half < 2; half++) {
        ps_attention_desc d = cache_desc(PS_METHOD_EXACT, PS_SCORE_KMEANS, 1200);
        if (half)
            d.k_layout.dtype = d.v_layout.dtype = d.o_layout.dtype = PS_DTYPE_F16;
        seq s;
        seq_make(&s, &d, 1200, 10);
        ps_kv_cache *c;
        assert_int_equal(ps_kv_cache_create(ctx, &d, &c), PS_OK);
        append(c, &s, 0, 1000);
        check_decode(c, &s, 1000, 1, PS_DECODE_CACHE, half ? "exact f16" : "exact");
        check_decode(c, &s, 1000, 5, PS_DECODE_EXACT, half ? "exact f16" : "exact");
        append(c, &s, 1000, 1);
        check_decode(c, &s, 1001, 1, PS_DECODE_CACHE, "exact +1");
        append(c, &s, 1001, 198);
        check_decode(c, &s, 1199, 3, PS_DECODE_CACHE, "exact +198");
        ps_kv_cache_info info;
        assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
        assert_int_equal(info.kept, 0);
        assert_true(info.device_bytes >= 2 * 4 * 1200 * (64 + 48) * (half ? 2 : 4) / 4);
        assert_int_equal(ps_kv_cache_destroy(c), PS_OK);
        seq_free(&s);
    }
}

/* Appends rows [t0, t0 + n) to the device cache and to its reference twin. */
static void append_both(ps_kv_cache *c, ps_ref_kv_cache *ref, const seq *s, size_t t0, size_t n)
{
    append(c, s, t0, n);
    void *k = slice(s->k, s->kv_rows, s->total, s->d.d, t0, n, 0);
    void *v = slice(s->v, s->kv_rows, s->total, s->d.d_v, t0, n, 0);
    assert_int_equal(ps_ref_kv_cache_append(ref, k, v, n), PS_OK);
    free(k);
    free(v);
}

/* The device's kept sets against the twin's (lib/ref/kv_cache.c): the same
 * counts; the same positions but for at most `slack` per head (scores of the
 * device and of the double-precision twin can round across a tie), then
 * decode of the twin over the device's kept set equals the device's. */
static void compare_twin(ps_kv_cache *c, ps_ref_kv_cache *ref, const seq *s, size_t slack,
                         const char *what)
{
    ps_kv_cache_info info;
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    const size_t kc = info.kept_capacity, rows = s->kv_rows;
    assert_int_equal(ps_ref_kv_cache_kept_capacity(ref), kc);
    assert_int_equal(ps_ref_kv_cache_length(ref), info.length);
    uint32_t *dk = malloc(rows * kc * 4), *rk = malloc(rows * kc * 4);
    uint32_t *dc = malloc(rows * 4), *rc = malloc(rows * 4);
    assert_true(dk && rk && dc && rc);
    assert_int_equal(ps_kv_cache_kept(c, dk, dc), PS_OK);
    assert_int_equal(ps_ref_kv_cache_kept(ref, rk, rc), PS_OK);
    for (size_t r = 0; r < rows; r++) {
        assert_int_equal(dc[r], rc[r]);
        size_t common = 0;
        for (size_t i = 0, j = 0; i < dc[r] && j < rc[r];) {
            const uint32_t a = dk[r * kc + i], b = rk[r * kc + j];
            common += a == b;
            i += a <= b;
            j += b <= a;
        }
        if (dc[r] - common > slack)
            fail_msg("%s: head %zu keeps %zu of the twin's %u keys (slack %zu)", what, r,
                     common, rc[r], slack);
    }
    /* The twin decodes over the device's kept set: the same outputs. */
    assert_int_equal(ps_ref_kv_cache_set_kept(ref, dk, dc), PS_OK);
    const size_t n = info.length, n_q = 2, o_count = s->q_rows * n_q * s->d.d_v;
    float *q = malloc(s->q_rows * n_q * s->d.d * sizeof(float));
    float *o = malloc(o_count * sizeof(float)), *ro = malloc(o_count * sizeof(float));
    assert_true(q && o && ro);
    for (size_t h = 0; h < s->q_rows; h++)
        memcpy(q + h * n_q * s->d.d, s->q + (h * s->total + n - n_q) * s->d.d,
               n_q * s->d.d * sizeof(float));
    assert_int_equal(ps_kv_cache_decode_host(c, q, n_q, o, NULL, PS_DECODE_CACHE), PS_OK);
    assert_int_equal(ps_ref_kv_cache_decode(ref, q, n_q, ro, NULL, PS_DECODE_CACHE), PS_OK);
    const double err = ts_rel_error(o, ro, o_count);
    if (!(err < 2e-5))
        fail_msg("%s: decode against the twin: rel error %.3g", what, err);
    free(dk);
    free(rk);
    free(dc);
    free(rc);
    free(q);
    free(o);
    free(ro);
}

/* The kept set and approximate decode, for each score: prefill, steps of one
 * token, a chunk, a forced rescore, more steps; decode checked each time. */
static void test_prescore_decode(void **state)
{
    (void)state;
    const ps_score scores[] = {PS_SCORE_NORM, PS_SCORE_KMEANS, PS_SCORE_LEVERAGE};
    for (size_t i = 0; i < sizeof scores / sizeof scores[0]; i++) {
        ps_attention_desc d = cache_desc(PS_METHOD_PRESCORE, scores[i], 900);
        seq s;
        seq_make(&s, &d, 900, 20 + i);
        ps_kv_cache *c;
        ps_ref_kv_cache *ref;
        assert_int_equal(ps_kv_cache_create(ctx, &d, &c), PS_OK);
        assert_int_equal(ps_ref_kv_cache_create(&d, &ref), PS_OK);
        /* NORM scores agree to an ulp; clustering and leverage may round a
         * few of 61 keys across the boundary (seen: 1). */
        const size_t slack = scores[i] == PS_SCORE_NORM ? 0 : 3;
        append_both(c, ref, &s, 0, 700); /* eligible 673 > 61: a full scoring */
        compare_twin(c, ref, &s, slack, "prefill");
        ps_kv_cache_info info;
        assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
        assert_int_equal(info.rescores, 1);
        assert_int_equal(info.scored_length, 700);
        assert_int_equal(info.kept, 61);
        check_decode(c, &s, 700, 1, PS_DECODE_CACHE, "prefill");
        check_decode(c, &s, 700, 5, PS_DECODE_CACHE, "prefill, 5 queries");
        check_decode(c, &s, 700, 2, PS_DECODE_EXACT, "prefill, exact");
        for (size_t t = 700; t < 705; t++) {
            append_both(c, ref, &s, t, 1);
            check_decode(c, &s, t + 1, 1, PS_DECODE_CACHE, "step");
        }
        compare_twin(c, ref, &s, slack, "steps");
        append_both(c, ref, &s, 705, 64);
        check_decode(c, &s, 769, 4, PS_DECODE_CACHE, "chunk of 64");
        compare_twin(c, ref, &s, slack, "chunk of 64");
        assert_int_equal(ps_kv_cache_rescore(c), PS_OK);
        assert_int_equal(ps_ref_kv_cache_rescore(ref), PS_OK);
        assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
        assert_int_equal(info.rescores, 2);
        check_decode(c, &s, 769, 1, PS_DECODE_CACHE, "after rescore");
        compare_twin(c, ref, &s, slack, "after rescore");
        append_both(c, ref, &s, 769, 7);
        check_decode(c, &s, 776, 1, PS_DECODE_CACHE, "append after rescore");
        compare_twin(c, ref, &s, slack, "append after rescore");
        assert_int_equal(ps_kv_cache_destroy(c), PS_OK);
        ps_ref_kv_cache_destroy(ref);
        seq_free(&s);
    }
}

/* Kept positions of every head after appending [0, prefill) and then the
 * rest of [prefill, n) in chunks of `chunk` rows. */
static uint32_t *kept_after(const ps_attention_desc *d, const seq *s, size_t prefill, size_t n,
                            size_t chunk, size_t *kept_capacity)
{
    ps_kv_cache *c;
    assert_int_equal(ps_kv_cache_create(ctx, d, &c), PS_OK);
    append(c, s, 0, prefill);
    for (size_t t = prefill; t < n; t += chunk)
        append(c, s, t, n - t < chunk ? n - t : chunk);
    ps_kv_cache_info info;
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    assert_int_equal(info.rescores, 1); /* no drift rescore in between */
    *kept_capacity = info.kept_capacity;
    uint32_t *kept = malloc(s->kv_rows * info.kept_capacity * sizeof *kept);
    assert_non_null(kept);
    assert_int_equal(ps_kv_cache_kept(c, kept, NULL), PS_OK);
    assert_int_equal(ps_kv_cache_destroy(c), PS_OK);
    return kept;
}

/* Appending in chunks of 1, 7 and 64 keeps the same set as one append of
 * everything after the same prefill; for NORM that set is the top-m by
 * squared norm of the eligible keys, brute-forced here. */
static void test_chunking(void **state)
{
    (void)state;
    const ps_score scores[] = {PS_SCORE_NORM, PS_SCORE_KMEANS};
    for (size_t i = 0; i < 2; i++) {
        ps_attention_desc d = cache_desc(PS_METHOD_PRESCORE, scores[i], 600);
        d.rescore_growth = 10.0f;
        seq s;
        seq_make(&s, &d, 600, 40 + i);
        const size_t prefill = 300, n = 600;
        size_t kc;
        uint32_t *whole = kept_after(&d, &s, prefill, n, n - prefill, &kc);
        const size_t chunks[] = {1, 7, 64};
        for (size_t j = 0; j < 3; j++) {
            size_t kc2;
            uint32_t *parts = kept_after(&d, &s, prefill, n, chunks[j], &kc2);
            assert_int_equal(kc, kc2);
            if (memcmp(whole, parts, s.kv_rows * kc * sizeof *whole) != 0)
                fail_msg("score %d: chunks of %zu keep another set", (int)scores[i], chunks[j]);
            free(parts);
        }
        if (scores[i] == PS_SCORE_NORM) {
            /* One prefill of all 600 rows (a single full scoring) keeps it too. */
            size_t kc1;
            uint32_t *once = kept_after(&d, &s, n, n, 1, &kc1);
            assert_int_equal(kc, kc1);
            if (memcmp(whole, once, s.kv_rows * kc * sizeof *whole) != 0)
                fail_msg("NORM: appends after a prefill keep another set than one prefill");
            free(once);
        }
        if (scores[i] == PS_SCORE_NORM) { /* brute force: top 61 of [3, 576) by norm */
            for (size_t r = 0; r < s.kv_rows; r++) {
                size_t above_weakest = 0;
                double weakest = INFINITY;
                for (size_t j = 0; j < kc; j++) {
                    double nn = 0.0;
                    for (size_t c = 0; c < d.d; c++) {
                        const double x = s.k[(r * s.total + whole[r * kc + j]) * d.d + c];
                        nn += x * x;
                    }
                    weakest = nn < weakest ? nn : weakest;
                }
                for (size_t p = d.sink; p < n - d.window; p++) {
                    double nn = 0.0;
                    for (size_t c = 0; c < d.d; c++) {
                        const double x = s.k[(r * s.total + p) * d.d + c];
                        nn += x * x;
                    }
                    above_weakest += nn >= weakest * (1.0 - 1e-6);
                }
                if (above_weakest != kc)
                    fail_msg("head %zu: %zu eligible keys reach the weakest kept norm, "
                             "want %zu", r, above_weakest, kc);
            }
        }
        free(whole);
        seq_free(&s);
    }
}

/* keep_ratio: the kept set grows with the length; the drift criterion
 * rescores once the cache has grown by rescore_growth. */
static void test_keep_ratio_and_drift(void **state)
{
    (void)state;
    ps_attention_desc d = cache_desc(PS_METHOD_PRESCORE, PS_SCORE_NORM, 1000);
    d.budget = 0;
    d.keep_ratio = 0.1f;
    d.rescore_growth = 0.5f;
    seq s;
    seq_make(&s, &d, 1000, 60);
    ps_kv_cache *c;
    assert_int_equal(ps_kv_cache_create(ctx, &d, &c), PS_OK);
    ps_kv_cache_info info;
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    assert_int_equal(info.kept_capacity, 100);
    append(c, &s, 0, 400);
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    assert_int_equal(info.kept, 40); /* ceil(0.1 * 400) */
    assert_int_equal(info.rescores, 1);
    for (size_t t = 400; t < 580; t += 20)
        append(c, &s, t, 20);
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    assert_int_equal(info.rescores, 1);
    assert_true(info.kept > 40 && info.kept <= 58); /* the targets of the keys that left */
    check_decode(c, &s, 580, 2, PS_DECODE_CACHE, "keep_ratio");
    append(c, &s, 580, 20); /* 600 >= 1.5 * 400: rescored */
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    assert_int_equal(info.rescores, 2);
    assert_int_equal(info.scored_length, 600);
    assert_int_equal(info.kept, 60);
    check_decode(c, &s, 600, 1, PS_DECODE_CACHE, "after drift rescore");
    assert_int_equal(ps_kv_cache_reset(c), PS_OK);
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    assert_int_equal(info.length, 0);
    append(c, &s, 0, 30); /* below the target: kept without scoring */
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    assert_int_equal(info.rescores, 0);
    assert_int_equal(info.kept, 3);
    check_decode(c, &s, 30, 1, PS_DECODE_CACHE, "after reset");
    assert_int_equal(ps_kv_cache_destroy(c), PS_OK);
    seq_free(&s);
}

/* Appended rows and decode queries as a model holds them: [1, T, H, D]
 * (strides independent of the row count when batch is 1), fp16 K and V,
 * fp32 queries and fp16 outputs; checked against the dense path. */
static void test_strided_tensors(void **state)
{
    (void)state;
    ps_attention_desc d = cache_desc(PS_METHOD_PRESCORE, PS_SCORE_KMEANS, 400);
    d.batch = 1;
    const size_t hk = d.kv_heads, h = d.heads;
    seq s;
    seq_make(&s, &d, 400, 80);
    ps_attention_desc sd = d; /* the strided cache */
    sd.k_layout.dtype = sd.v_layout.dtype = sd.o_layout.dtype = PS_DTYPE_F16;
    const size_t ks[4] = {0, d.d, hk * d.d, 1}, vs[4] = {0, d.d_v, hk * d.d_v, 1};
    const size_t qs[4] = {0, d.d, h * d.d, 1}, os[4] = {0, d.d_v + 8, h * (d.d_v + 8), 1};
    memcpy(sd.k_layout.stride, ks, sizeof ks);
    memcpy(sd.v_layout.stride, vs, sizeof vs);
    memcpy(sd.q_layout.stride, qs, sizeof qs);
    memcpy(sd.o_layout.stride, os, sizeof os);
    sd.o_layout.offset = 3;
    ps_attention_desc dd = d; /* the dense cache, fp16 storage too */
    dd.k_layout.dtype = dd.v_layout.dtype = PS_DTYPE_F16;
    s.d = dd; /* append() slices for dd's storage type */
    ps_kv_cache *c, *cd;
    assert_int_equal(ps_kv_cache_create(ctx, &sd, &c), PS_OK);
    assert_int_equal(ps_kv_cache_create(ctx, &dd, &cd), PS_OK);
    const size_t chunks[3][2] = {{0, 300}, {300, 1}, {301, 40}};
    for (size_t i = 0; i < 3; i++) {
        const size_t t0 = chunks[i][0], n = chunks[i][1];
        uint16_t *k = malloc(n * hk * d.d * 2), *v = malloc(n * hk * d.d_v * 2);
        assert_true(k && v);
        for (size_t t = 0; t < n; t++)
            for (size_t r = 0; r < hk; r++) {
                for (size_t c2 = 0; c2 < d.d; c2++)
                    k[(t * hk + r) * d.d + c2] =
                        ps_float_to_half(s.k[(r * s.total + t0 + t) * d.d + c2]);
                for (size_t c2 = 0; c2 < d.d_v; c2++)
                    v[(t * hk + r) * d.d_v + c2] =
                        ps_float_to_half(s.v[(r * s.total + t0 + t) * d.d_v + c2]);
            }
        assert_int_equal(ps_kv_cache_append_host(c, k, v, n), PS_OK);
        append(cd, &s, t0, n);
        free(k);
        free(v);
    }
    const size_t n_q = 3, len = 341;
    float *q = malloc(n_q * h * d.d * sizeof(float)), *qd = malloc(n_q * h * d.d * sizeof(float));
    const size_t o_elems = 3 + (n_q - 1) * h * (d.d_v + 8) + (h - 1) * (d.d_v + 8) + d.d_v;
    uint16_t *o = malloc(o_elems * 2);
    float *od = malloc(h * n_q * d.d_v * sizeof(float));
    assert_true(q && qd && o && od);
    memset(o, 0xA5, o_elems * 2);
    for (size_t t = 0; t < n_q; t++)
        for (size_t r = 0; r < h; r++)
            for (size_t c2 = 0; c2 < d.d; c2++) {
                const float x = s.q[(r * s.total + len - n_q + t) * d.d + c2];
                q[(t * h + r) * d.d + c2] = x;
                qd[(r * n_q + t) * d.d + c2] = x;
            }
    assert_int_equal(ps_kv_cache_decode_host(c, q, n_q, o, NULL, PS_DECODE_CACHE), PS_OK);
    assert_int_equal(ps_kv_cache_decode_host(cd, qd, n_q, od, NULL, PS_DECODE_CACHE), PS_OK);
    double num = 0.0, den = 0.0;
    for (size_t t = 0; t < n_q; t++)
        for (size_t r = 0; r < h; r++) {
            const size_t row = 3 + t * h * (d.d_v + 8) + r * (d.d_v + 8);
            for (size_t c2 = 0; c2 < d.d_v; c2++) {
                const double a = ps_half_to_float(o[row + c2]), b = od[(r * n_q + t) * d.d_v + c2];
                num += (a - b) * (a - b);
                den += b * b;
            }
            for (size_t c2 = d.d_v; c2 < d.d_v + 8 && row + c2 < o_elems; c2++)
                assert_int_equal(o[row + c2], 0xA5A5); /* padding untouched */
        }
    assert_int_equal(o[0], 0xA5A5);
    if (!(sqrt(num / den) < 2e-3))
        fail_msg("strided decode differs from dense: %.3g", sqrt(num / den));
    assert_int_equal(ps_kv_cache_destroy(c), PS_OK);
    assert_int_equal(ps_kv_cache_destroy(cd), PS_OK);
    free(q);
    free(qd);
    free(o);
    free(od);
    seq_free(&s);
}

static void test_refusals(void **state)
{
    (void)state;
    ps_attention_desc d = cache_desc(PS_METHOD_PRESCORE, PS_SCORE_NORM, 100);
    seq s;
    seq_make(&s, &d, 100, 70);
    ps_kv_cache *c = NULL;
    d.method = PS_METHOD_HYPER;
    assert_int_equal(ps_kv_cache_create(ctx, &d, &c), PS_ERR_UNSUPPORTED);
    assert_null(c);
    assert_non_null(strstr(ps_context_last_error(ctx), "HYPER"));
    d.method = PS_METHOD_PRESCORE;
    assert_int_equal(ps_kv_cache_create(ctx, &d, &c), PS_OK);
    append(c, &s, 0, 90);
    float k[2 * 2 * 11 * 64] = {0}, v[2 * 2 * 11 * 48] = {0};
    assert_int_equal(ps_kv_cache_append_host(c, k, v, 11), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_kv_cache_last_error(c), "capacity"));
    ps_kv_cache_info info;
    assert_int_equal(ps_kv_cache_get_info(c, &info), PS_OK);
    assert_int_equal(info.length, 90);
    assert_int_equal(ps_kv_cache_append_host(c, k, v, 0), PS_ERR_INVALID_ARGUMENT);
    float q[2 * 6 * 6 * 64] = {0}, o[2 * 6 * 6 * 48];
    assert_int_equal(ps_kv_cache_decode_host(c, q, 6, o, NULL, PS_DECODE_CACHE),
                     PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_kv_cache_last_error(c), "n_q = 6"));
    assert_int_equal(ps_kv_cache_decode_host(c, q, 1, o, NULL, (ps_decode_mode)7),
                     PS_ERR_INVALID_ARGUMENT);
    /* A cache is not a plan and a plan is not a cache. */
    assert_int_equal(ps_attention((ps_plan *)c, NULL, NULL, NULL, NULL, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    ps_attention_desc pd;
    ps_attention_desc_default(&pd);
    pd.n_q = pd.n_k = 64;
    pd.d = pd.d_v = 64;
    ps_plan *plan;
    assert_int_equal(ps_plan_create(ctx, &pd, &plan), PS_OK);
    assert_int_equal(ps_kv_cache_rescore((ps_kv_cache *)plan), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_context_last_error(NULL), "not a key cache"));
    assert_int_equal(ps_plan_destroy(plan), PS_OK);
    /* The context stays while a cache of it lives. */
    assert_int_equal(ps_context_destroy(ctx), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_kv_cache_destroy(c), PS_OK);
    assert_int_equal(ps_kv_cache_destroy(c), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_kv_cache_destroy(NULL), PS_OK);
    seq_free(&s);
}

int main(void)
{
    ts_report_seed("kv_cache_device");
    if (!ts_have_device("kv_cache_device"))
        return TS_EXIT_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_decode),
        cmocka_unit_test(test_prescore_decode),
        cmocka_unit_test(test_chunking),
        cmocka_unit_test(test_keep_ratio_and_drift),
        cmocka_unit_test(test_strided_tensors),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
