/* Unit suite: the key cache's host twin (ps_ref_kv_cache, lib/ref/kv_cache.c)
 * against properties computed here independently: the kept set of a count
 * budget is the top-m by score whatever the chunking of the appends; a
 * keep_ratio target grows with the length; decode equals exact attention
 * over all keys or over the attended rows alone; a refused append changes
 * nothing, also when memory runs out; a full rescore keeps what scoring
 * and selection run directly keep; fp16 input gives what its widened fp32
 * values give; per-key scores against the statistics equal the full
 * scoring's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/host_alloc.h"
#include "core/desc.h"
#include "prescore/prescore_ref.h"
#include "ref/score_ref.h"
#include "support.h"

#define D 16

/* batch 2 x kv_heads 2 (4 cache rows), 4 query heads (GQA 2:1), d = d_v = 16. */
static ps_attention_desc cache_desc(ps_score score, size_t capacity, size_t budget,
                                    size_t sink, size_t window)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.batch = 2;
    d.heads = 4;
    d.kv_heads = 2;
    d.n_q = 4;
    d.n_k = capacity;
    d.d = d.d_v = D;
    d.method = PS_METHOD_PRESCORE;
    d.score = score;
    d.budget = budget;
    d.sink = sink;
    d.window = window;
    d.clusters = 4;
    d.kmeans_iters = 5;
    d.seed = 7;
    return d;
}

static size_t rows_of(const ps_attention_desc *d) { return d->batch * d->kv_heads; }

/* Dense [rows][n][D] keys or values. */
static float *random_rows(size_t rows, size_t n, uint64_t stream)
{
    float *x = malloc(rows * n * D * sizeof *x);
    assert_non_null(x);
    ts_fill_normal(x, rows * n * D, ts_seed(), stream, 1.0f);
    return x;
}

/* Keys of three norms only (many ties), each along one axis. */
static float *tied_rows(size_t rows, size_t n, uint64_t stream)
{
    float *x = random_rows(rows, n, stream);
    for (size_t i = 0; i < rows * n; i++) {
        const float level = (float)(1 + (size_t)(fabsf(x[i * D]) * 2.0f) % 3);
        memset(x + i * D, 0, D * sizeof *x);
        x[i * D + i % D] = level;
    }
    return x;
}

/* Positions [start, start + len) of every row of dense [rows][n][D]. */
static float *slice(const float *x, size_t rows, size_t n, size_t start, size_t len)
{
    float *s = malloc(rows * len * D * sizeof *s);
    assert_non_null(s);
    for (size_t h = 0; h < rows; h++)
        memcpy(s + h * len * D, x + (h * n + start) * D, len * D * sizeof *s);
    return s;
}

static void append_range(ps_ref_kv_cache *c, const float *k, const float *v, size_t rows,
                         size_t n, size_t start, size_t len)
{
    float *ks = slice(k, rows, n, start, len), *vs = slice(v, rows, n, start, len);
    assert_int_equal(ps_ref_kv_cache_append(c, ks, vs, len), PS_OK);
    free(ks);
    free(vs);
}

/* The kept sets, [rows][kept_capacity] and [rows]. */
static void read_kept(const ps_ref_kv_cache *c, size_t rows, uint32_t **pos, uint32_t **cnt)
{
    const size_t kc = ps_ref_kv_cache_kept_capacity(c);
    *pos = malloc((rows * kc + 1) * sizeof **pos);
    *cnt = malloc(rows * sizeof **cnt);
    assert_true(*pos && *cnt);
    assert_int_equal(ps_ref_kv_cache_kept(c, *pos, *cnt), PS_OK);
}

/* Sinks and window of a cache of length n (lib/core/kv_params.h, restated). */
static void span(size_t sink, size_t window, size_t n, size_t *s, size_t *w0)
{
    *s = sink < n ? sink : n;
    *w0 = n > window && n - window > *s ? n - window : *s;
}

/* Ascending positions of the best m of scores over [lo, hi), higher score
 * first, ties to the lower position; returns how many. */
static size_t top_m(const float *scores, size_t lo, size_t hi, size_t m, uint32_t *out)
{
    unsigned char *taken = calloc(hi + 1, 1);
    assert_non_null(taken);
    size_t got = 0;
    for (; got < m && got < hi - lo; got++) {
        size_t best = hi;
        for (size_t p = lo; p < hi; p++)
            if (!taken[p] && (best == hi || scores[p] > scores[best]))
                best = p;
        taken[best] = 1;
    }
    size_t c = 0;
    for (size_t p = lo; p < hi; p++)
        if (taken[p])
            out[c++] = (uint32_t)p;
    free(taken);
    return c;
}

static float sq_norm(const float *x)
{
    double s = 0.0;
    for (size_t t = 0; t < D; t++)
        s += (double)x[t] * x[t];
    return (float)s;
}

/* Asserts that the kept sets at length n are the top-m by squared norm of
 * the eligible keys of k [rows][n_all][D]. */
static void expect_norm_top(const ps_ref_kv_cache *c, const float *k, size_t rows,
                            size_t n_all, size_t m, size_t sink, size_t window)
{
    const size_t n = ps_ref_kv_cache_length(c), kc = ps_ref_kv_cache_kept_capacity(c);
    uint32_t *pos, *cnt, *want = malloc((m + 1) * sizeof *want);
    float *sc = malloc(n * sizeof *sc);
    assert_true(want && sc);
    read_kept(c, rows, &pos, &cnt);
    size_t s, w0;
    span(sink, window, n, &s, &w0);
    for (size_t h = 0; h < rows; h++) {
        for (size_t p = 0; p < n; p++)
            sc[p] = sq_norm(k + (h * n_all + p) * D);
        const size_t got = top_m(sc, s, w0, m, want);
        assert_int_equal(cnt[h], got);
        assert_memory_equal(pos + h * kc, want, got * sizeof *want);
        for (size_t j = got; j < kc; j++)
            assert_int_equal(pos[h * kc + j], UINT32_MAX);
    }
    free(pos);
    free(cnt);
    free(want);
    free(sc);
}

/* (1) NORM with a count budget: after every append the kept set is the
 * top-m of the eligible keys (ties to the earlier key), whether the rows
 * come in one append or in chunks of 1, 7 or 64 after the same prefill; on
 * keys of distinct norms and on keys of three norms. */
static void test_norm_budget_chunks(void **state)
{
    (void)state;
    const size_t n = 200, m = 12, sink = 3, window = 8, prefill = 30;
    const size_t chunks[] = {0, 1, 7, 64}; /* 0: everything in one append */
    ps_attention_desc d = cache_desc(PS_SCORE_NORM, n, m, sink, window);
    const size_t rows = rows_of(&d);
    float *keys[2] = {random_rows(rows, n, 1), tied_rows(rows, n, 1)};
    float *v = random_rows(rows, n, 2);
    for (size_t t = 0; t < 2 * sizeof chunks / sizeof chunks[0]; t++) {
        const float *k = keys[t % 2];
        const size_t chunk = chunks[t / 2], first = chunk ? prefill : n;
        ps_ref_kv_cache *c = NULL;
        assert_int_equal(ps_ref_kv_cache_create(&d, &c), PS_OK);
        append_range(c, k, v, rows, n, 0, first);
        expect_norm_top(c, k, rows, n, m, sink, window);
        for (size_t at = first; at < n; at += chunk) {
            const size_t len = n - at < chunk ? n - at : chunk;
            append_range(c, k, v, rows, n, at, len);
            expect_norm_top(c, k, rows, n, m, sink, window);
        }
        assert_int_equal(ps_ref_kv_cache_length(c), n);
        ps_ref_kv_cache_destroy(c);
    }
    free(keys[0]);
    free(keys[1]);
    free(v);
}

/* Asserts that every kept set of c holds min(eligible, ceil(ratio * n))
 * keys; returns that count. */
static size_t expect_ratio_count(const ps_ref_kv_cache *c, size_t rows, float ratio,
                                 size_t sink, size_t window)
{
    const size_t n = ps_ref_kv_cache_length(c);
    size_t s, w0;
    span(sink, window, n, &s, &w0);
    const size_t target = ps_keep_ratio_count(ratio, n); /* ceil(ratio * n), core/desc.h */
    const size_t want = w0 - s < target ? w0 - s : target;
    uint32_t *pos, *cnt;
    read_kept(c, rows, &pos, &cnt);
    for (size_t h = 0; h < rows; h++)
        assert_int_equal(cnt[h], want);
    free(pos);
    free(cnt);
    return want;
}

/* (2) keep_ratio: the kept set holds min(eligible, ceil(ratio * n)) keys at
 * every length, so it grows with the cache. Each key competes under the
 * target of the length at which it left the window, so with no rescore
 * after the prefill's, rows one at a time and in chunks of 7 keep the same
 * sets. */
static void test_keep_ratio_grows(void **state)
{
    (void)state;
    const size_t n = 150, sink = 2, window = 8, prefill = 40, step = 7;
    const float ratio = 0.3f, growth[] = {0.0f, 1e6f};
    ps_attention_desc d = cache_desc(PS_SCORE_NORM, n, 0, sink, window);
    d.keep_ratio = ratio;
    const size_t rows = rows_of(&d);
    float *k = random_rows(rows, n, 3), *v = random_rows(rows, n, 4);
    for (size_t g = 0; g < 2; g++) {
        d.rescore_growth = growth[g];
        ps_ref_kv_cache *c1 = NULL, *c7 = NULL;
        assert_int_equal(ps_ref_kv_cache_create(&d, &c1), PS_OK);
        assert_int_equal(ps_ref_kv_cache_create(&d, &c7), PS_OK);
        assert_int_equal(ps_ref_kv_cache_kept_capacity(c1), (size_t)45 /* 0.3 of 150 */);
        append_range(c1, k, v, rows, n, 0, prefill);
        append_range(c7, k, v, rows, n, 0, prefill);
        const size_t first = expect_ratio_count(c1, rows, ratio, sink, window);
        size_t last = first;
        for (size_t at = prefill; at < n; at += step) {
            const size_t len = n - at < step ? n - at : step;
            for (size_t i = 0; i < len; i++) {
                append_range(c1, k, v, rows, n, at + i, 1);
                last = expect_ratio_count(c1, rows, ratio, sink, window);
            }
            append_range(c7, k, v, rows, n, at, len);
            expect_ratio_count(c7, rows, ratio, sink, window);
            if (growth[g] > 1.0f) {
                uint32_t *p1, *n1, *p7, *n7;
                read_kept(c1, rows, &p1, &n1);
                read_kept(c7, rows, &p7, &n7);
                assert_memory_equal(p1, p7,
                                    rows * ps_ref_kv_cache_kept_capacity(c1) * sizeof *p1);
                free(p1);
                free(n1);
                free(p7);
                free(n7);
            }
        }
        assert_true(last > first);
        ps_ref_kv_cache_destroy(c1);
        ps_ref_kv_cache_destroy(c7);
    }
    free(k);
    free(v);
}

/* Exact causal attention of n_q queries on dense k, v [rows][n][D]. */
static void exact_ref(const ps_attention_desc *cd, const float *q, size_t n_q, const float *k,
                      const float *v, size_t n, float *o, float *lse)
{
    ps_attention_desc e;
    ps_attention_desc_default(&e);
    e.batch = cd->batch;
    e.heads = cd->heads;
    e.kv_heads = cd->kv_heads;
    e.n_q = n_q;
    e.n_k = n;
    e.d = e.d_v = D;
    e.causal = 1;
    assert_int_equal(ps_ref_exact_attention(&e, q, k, v, o, lse), PS_OK);
}

static void expect_close(const float *a, const float *b, size_t count)
{
    const double diff = ts_max_abs_diff(a, b, count);
    if (!(diff <= 1e-6))
        fail_msg("outputs differ by %g", diff);
}

/* (3) decode: EXACT mode is exact causal attention over every cached key;
 * the cache's mode is exact attention over the sinks, kept keys and window
 * alone (gathered here; window >= n_q keeps the causal alignment). */
static void test_decode(void **state)
{
    (void)state;
    const size_t cap = 160, n = 108, n_q = 3, sink = 4, window = 8;
    ps_attention_desc d = cache_desc(PS_SCORE_KMEANS, cap, 16, sink, window);
    const size_t rows = rows_of(&d), qrows = d.batch * d.heads;
    float *k = random_rows(rows, n, 5), *v = random_rows(rows, n, 6);
    float *q = random_rows(qrows, n_q, 7);
    float *o = malloc(qrows * n_q * D * sizeof *o), *o_ref = malloc(qrows * n_q * D * sizeof *o);
    float *lse = malloc(qrows * n_q * sizeof *lse), *lse_ref = malloc(qrows * n_q * sizeof *lse);
    assert_true(o && o_ref && lse && lse_ref);
    ps_ref_kv_cache *c = NULL;
    assert_int_equal(ps_ref_kv_cache_create(&d, &c), PS_OK);
    append_range(c, k, v, rows, n, 0, 100);
    append_range(c, k, v, rows, n, 100, 7);
    append_range(c, k, v, rows, n, 107, 1);

    assert_int_equal(ps_ref_kv_cache_decode(c, q, n_q, o, lse, PS_DECODE_EXACT), PS_OK);
    exact_ref(&d, q, n_q, k, v, n, o_ref, lse_ref);
    expect_close(o, o_ref, qrows * n_q * D);
    expect_close(lse, lse_ref, qrows * n_q);

    uint32_t *pos, *cnt;
    read_kept(c, rows, &pos, &cnt);
    const size_t kc = ps_ref_kv_cache_kept_capacity(c), m = cnt[0];
    assert_true(m > 0);
    const size_t used = sink + m + window;
    float *kg = malloc(rows * used * D * sizeof *kg), *vg = malloc(rows * used * D * sizeof *vg);
    assert_true(kg && vg);
    for (size_t h = 0; h < rows; h++) {
        assert_int_equal(cnt[h], m);
        size_t j = 0;
        for (size_t p = 0; p < n; p++) {
            int take = p < sink || p >= n - window;
            for (size_t i = 0; i < m; i++)
                take |= pos[h * kc + i] == p;
            if (!take)
                continue;
            memcpy(kg + (h * used + j) * D, k + (h * n + p) * D, D * sizeof *kg);
            memcpy(vg + (h * used + j) * D, v + (h * n + p) * D, D * sizeof *vg);
            j++;
        }
        assert_int_equal(j, used);
    }
    assert_int_equal(ps_ref_kv_cache_decode(c, q, n_q, o, lse, PS_DECODE_CACHE), PS_OK);
    exact_ref(&d, q, n_q, kg, vg, used, o_ref, lse_ref);
    expect_close(o, o_ref, qrows * n_q * D);
    expect_close(lse, lse_ref, qrows * n_q);
    ps_ref_kv_cache_destroy(c);

    /* An EXACT cache attends every key in its own mode too. */
    d.method = PS_METHOD_EXACT;
    d.budget = 0;
    assert_int_equal(ps_ref_kv_cache_create(&d, &c), PS_OK);
    assert_int_equal(ps_ref_kv_cache_kept_capacity(c), 0);
    append_range(c, k, v, rows, n, 0, n);
    assert_int_equal(ps_ref_kv_cache_decode(c, q, n_q, o, NULL, PS_DECODE_CACHE), PS_OK);
    exact_ref(&d, q, n_q, k, v, n, o_ref, lse_ref);
    expect_close(o, o_ref, qrows * n_q * D);
    ps_ref_kv_cache_destroy(c);
    free(pos);
    free(cnt);
    free(kg);
    free(vg);
    free(k);
    free(v);
    free(q);
    free(o);
    free(o_ref);
    free(lse);
    free(lse_ref);
}

/* (4) refusals: past the capacity, n_new == 0, bad decode and set_kept
 * arguments; each leaves the cache as it was. */
static void test_refusals(void **state)
{
    (void)state;
    const size_t cap = 64, n_q = 2;
    ps_attention_desc d = cache_desc(PS_SCORE_NORM, cap, 6, 2, 4);
    const size_t rows = rows_of(&d), qrows = d.batch * d.heads, out = qrows * n_q * D;
    float *k = random_rows(rows, cap + 5, 8), *v = random_rows(rows, cap + 5, 9);
    float *q = random_rows(qrows, d.n_q + 1, 10);
    float *o1 = malloc(out * sizeof *o1), *o2 = malloc(out * sizeof *o2);
    assert_true(o1 && o2);
    ps_ref_kv_cache *c = NULL;
    d.method = PS_METHOD_HYPER;
    assert_int_equal(ps_ref_kv_cache_create(&d, &c), PS_ERR_UNSUPPORTED);
    assert_null(c);
    d.method = PS_METHOD_PRESCORE;
    d.selection = PS_SELECTION_WEIGHTED; /* a cache keeps its top-scored keys */
    assert_int_equal(ps_ref_kv_cache_create(&d, &c), PS_ERR_UNSUPPORTED);
    assert_null(c);
    d.selection = PS_SELECTION_TOP;
    assert_int_equal(ps_ref_kv_cache_create(NULL, &c), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_kv_cache_create(&d, &c), PS_OK);
    assert_int_equal(ps_ref_kv_cache_decode(c, q, 1, o1, NULL, PS_DECODE_CACHE),
                     PS_ERR_INVALID_ARGUMENT); /* empty */
    append_range(c, k, v, rows, cap + 5, 0, 60);
    uint32_t *pos1, *cnt1, *pos2, *cnt2;
    read_kept(c, rows, &pos1, &cnt1);
    assert_int_equal(ps_ref_kv_cache_decode(c, q, n_q, o1, NULL, PS_DECODE_CACHE), PS_OK);

    assert_int_equal(ps_ref_kv_cache_append(c, k, v, 5), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_kv_cache_append(c, k, v, 0), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_kv_cache_append(c, NULL, v, 1), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_kv_cache_length(c), 60);
    assert_int_equal(ps_ref_kv_cache_decode(c, q, 0, o2, NULL, PS_DECODE_CACHE),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_kv_cache_decode(c, q, d.n_q + 1, o2, NULL, PS_DECODE_CACHE),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_kv_cache_decode(c, q, 1, o2, NULL, (ps_decode_mode)7),
                     PS_ERR_INVALID_ARGUMENT);

    /* set_kept: a window position, a descending pair, too many keys */
    const size_t kc = ps_ref_kv_cache_kept_capacity(c);
    uint32_t *bad = malloc(rows * kc * sizeof *bad), *bad_cnt = malloc(rows * sizeof *bad_cnt);
    assert_true(bad && bad_cnt);
    memcpy(bad, pos1, rows * kc * sizeof *bad);
    memcpy(bad_cnt, cnt1, rows * sizeof *bad_cnt);
    bad[kc * (rows - 1)] = 57; /* the window is [56, 60) */
    assert_int_equal(ps_ref_kv_cache_set_kept(c, bad, bad_cnt), PS_ERR_INVALID_ARGUMENT);
    bad[kc * (rows - 1)] = pos1[kc * (rows - 1) + 1];
    assert_int_equal(ps_ref_kv_cache_set_kept(c, bad, bad_cnt), PS_ERR_INVALID_ARGUMENT);
    memcpy(bad, pos1, rows * kc * sizeof *bad);
    bad_cnt[0] = (uint32_t)kc + 1;
    assert_int_equal(ps_ref_kv_cache_set_kept(c, bad, bad_cnt), PS_ERR_INVALID_ARGUMENT);

    read_kept(c, rows, &pos2, &cnt2);
    assert_memory_equal(pos1, pos2, rows * kc * sizeof *pos1);
    assert_memory_equal(cnt1, cnt2, rows * sizeof *cnt1);
    assert_int_equal(ps_ref_kv_cache_decode(c, q, n_q, o2, NULL, PS_DECODE_CACHE), PS_OK);
    assert_memory_equal(o1, o2, out * sizeof *o1);

    /* set_kept takes a valid set and kept hands it back. */
    bad_cnt[0] = 2;
    bad[0] = 2;
    bad[1] = 55;
    assert_int_equal(ps_ref_kv_cache_set_kept(c, bad, bad_cnt), PS_OK);
    free(pos2);
    free(cnt2);
    read_kept(c, rows, &pos2, &cnt2);
    assert_int_equal(cnt2[0], 2);
    assert_int_equal(pos2[0], 2);
    assert_int_equal(pos2[1], 55);
    assert_int_equal(pos2[2], UINT32_MAX);

    append_range(c, k, v, rows, cap + 5, 60, 4); /* exactly full */
    assert_int_equal(ps_ref_kv_cache_append(c, k, v, 1), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_kv_cache_length(c), cap);
    ps_ref_kv_cache_destroy(c);
    ps_ref_kv_cache_destroy(NULL);
    free(pos1);
    free(cnt1);
    free(pos2);
    free(cnt2);
    free(bad);
    free(bad_cnt);
    free(k);
    free(v);
    free(q);
    free(o1);
    free(o2);
}

/* Out of host memory in create, in an append that rescores, and in decode:
 * each failure answers PS_ERR_OUT_OF_HOST_MEMORY and leaves the cache as it
 * was, and the call then succeeds with the fault-free result. */
static void test_out_of_memory(void **state)
{
    (void)state;
    const size_t cap = 80, n_q = 2;
    ps_attention_desc d = cache_desc(PS_SCORE_KMEANS, cap, 20, 4, 16);
    const size_t rows = rows_of(&d), out = d.batch * d.heads * n_q * D;
    float *k = random_rows(rows, cap, 70), *v = random_rows(rows, cap, 71);
    float *q = random_rows(d.batch * d.heads, n_q, 72);
    float *o = malloc(out * sizeof *o), *o_ref = malloc(out * sizeof *o_ref);
    assert_true(o && o_ref);
    ps_ref_kv_cache *ref = NULL, *c = NULL;
    assert_int_equal(ps_ref_kv_cache_create(&d, &ref), PS_OK);
    append_range(ref, k, v, rows, cap, 0, 30);
    append_range(ref, k, v, rows, cap, 30, 40); /* eligible 50 > 20: the first scoring */
    assert_int_equal(ps_ref_kv_cache_decode(ref, q, n_q, o_ref, NULL, PS_DECODE_CACHE), PS_OK);

    ps_status st = PS_ERR_OUT_OF_HOST_MEMORY;
    for (long i = 0; st != PS_OK; i++) {
        ps_host_alloc_fail_after(i);
        st = ps_ref_kv_cache_create(&d, &c);
        ps_host_alloc_fail_after(-1);
        if (st != PS_OK) {
            assert_int_equal(st, PS_ERR_OUT_OF_HOST_MEMORY);
            assert_null(c);
        }
    }
    append_range(c, k, v, rows, cap, 0, 30);
    uint32_t *pos0, *cnt0, *pos, *cnt;
    read_kept(c, rows, &pos0, &cnt0);
    float *ks = slice(k, rows, cap, 30, 40), *vs = slice(v, rows, cap, 30, 40);
    st = PS_ERR_OUT_OF_HOST_MEMORY;
    for (long i = 0; st != PS_OK; i++) {
        ps_host_alloc_fail_after(i);
        st = ps_ref_kv_cache_append(c, ks, vs, 40);
        ps_host_alloc_fail_after(-1);
        if (st != PS_OK) {
            assert_int_equal(st, PS_ERR_OUT_OF_HOST_MEMORY);
            assert_int_equal(ps_ref_kv_cache_length(c), 30);
            read_kept(c, rows, &pos, &cnt);
            assert_memory_equal(pos, pos0, rows * ps_ref_kv_cache_kept_capacity(c) * 4);
            assert_memory_equal(cnt, cnt0, rows * sizeof *cnt);
            free(pos);
            free(cnt);
        }
    }
    st = PS_ERR_OUT_OF_HOST_MEMORY;
    for (long i = 0; st != PS_OK; i++) {
        ps_host_alloc_fail_after(i);
        st = ps_ref_kv_cache_decode(c, q, n_q, o, NULL, PS_DECODE_CACHE);
        ps_host_alloc_fail_after(-1);
        assert_true(st == PS_OK || st == PS_ERR_OUT_OF_HOST_MEMORY);
    }
    assert_memory_equal(o, o_ref, out * sizeof *o);
    ps_ref_kv_cache_destroy(ref);
    ps_ref_kv_cache_destroy(c);
    free(pos0);
    free(cnt0);
    free(ks);
    free(vs);
    free(k);
    free(v);
    free(q);
    free(o);
    free(o_ref);
}

/* The kept sets ps_ref_score_keys + ps_ref_select_keys give for the first n
 * keys of k [rows][n_all][D] under d with a budget of m scored keys. */
static void expect_fresh_top(const ps_ref_kv_cache *c, const ps_attention_desc *cd,
                             const float *k, size_t n_all, size_t m)
{
    const size_t rows = rows_of(cd), n = ps_ref_kv_cache_length(c);
    const size_t kc = ps_ref_kv_cache_kept_capacity(c), forced = cd->sink + cd->window;
    ps_attention_desc s = *cd;
    s.n_k = n;
    s.budget = m + forced;
    float *kd = slice(k, rows, n_all, 0, n), *sc = malloc(rows * n * sizeof *sc);
    uint32_t *idx = malloc(rows * (m + forced) * sizeof *idx), *counts = malloc(rows * 4);
    assert_true(sc && idx && counts);
    assert_int_equal(ps_ref_score_keys(&s, kd, sc), PS_OK);
    assert_int_equal(ps_ref_select_keys(&s, sc, idx, counts), PS_OK);
    uint32_t *pos, *cnt;
    read_kept(c, rows, &pos, &cnt);
    for (size_t h = 0; h < rows; h++) {
        assert_int_equal(counts[h], m + forced);
        assert_int_equal(cnt[h], m);
        size_t j = 0;
        for (size_t i = 0; i < counts[h]; i++) {
            const uint32_t p = idx[h * (m + forced) + i];
            if (p >= cd->sink && p < n - cd->window)
                assert_int_equal(pos[h * kc + j++], p);
        }
        assert_int_equal(j, m);
    }
    free(pos);
    free(cnt);
    free(kd);
    free(sc);
    free(idx);
    free(counts);
}

/* (5) a full rescore, forced after incremental appends or due by the drift
 * criterion, keeps what scoring and selection run directly on the cached
 * keys keep. */
static void test_rescore(void **state)
{
    (void)state;
    const size_t cap = 256, m = 20, sink = 4, window = 16;
    const ps_score scores[] = {PS_SCORE_KMEANS, PS_SCORE_LEVERAGE, PS_SCORE_NORM};
    for (size_t t = 0; t < 3; t++) {
        ps_attention_desc d = cache_desc(scores[t], cap, m, sink, window);
        const size_t rows = rows_of(&d);
        float *k = random_rows(rows, cap, 11 + t), *v = random_rows(rows, cap, 21 + t);
        ps_ref_kv_cache *c = NULL;

        d.rescore_growth = 100.0f; /* one scoring (at 64), then only incremental */
        assert_int_equal(ps_ref_kv_cache_create(&d, &c), PS_OK);
        append_range(c, k, v, rows, cap, 0, 64);
        expect_fresh_top(c, &d, k, cap, m);
        for (size_t at = 64; at < 150; at += 43)
            append_range(c, k, v, rows, cap, at, 43);
        assert_int_equal(ps_ref_kv_cache_rescore(c), PS_OK);
        expect_fresh_top(c, &d, k, cap, m);
        ps_ref_kv_cache_destroy(c);

        d.rescore_growth = 0.0f; /* default: again once doubled */
        assert_int_equal(ps_ref_kv_cache_create(&d, &c), PS_OK);
        append_range(c, k, v, rows, cap, 0, 50);
        append_range(c, k, v, rows, cap, 50, 30);
        append_range(c, k, v, rows, cap, 80, 20); /* 100 = 2 * 50: scored afresh */
        expect_fresh_top(c, &d, k, cap, m);
        ps_ref_kv_cache_destroy(c);
        free(k);
        free(v);
    }
}

/* (6) fp16 input in [batch, token, head, dim]: the same kept sets as its
 * widened fp32 values in dense fp32, and that cache's O rounded to fp16. */
static void test_fp16_round_trip(void **state)
{
    (void)state;
    const size_t cap = 96, n_q = 2, parts[] = {40, 13, 1};
    ps_attention_desc d32 = cache_desc(PS_SCORE_KMEANS, cap, 10, 2, 6);
    d32.batch = 1;
    ps_attention_desc d16 = d32;
    d16.q_layout.dtype = d16.k_layout.dtype = PS_DTYPE_F16;
    d16.v_layout.dtype = d16.o_layout.dtype = PS_DTYPE_F16;
    assert_int_equal(ps_attention_desc_set_layout(&d16, PS_LAYOUT_BTHD), PS_OK);
    const size_t rows = rows_of(&d32), qrows = d32.heads;
    ps_ref_kv_cache *c16 = NULL, *c32 = NULL;
    assert_int_equal(ps_ref_kv_cache_create(&d16, &c16), PS_OK);
    assert_int_equal(ps_ref_kv_cache_create(&d32, &c32), PS_OK);
    for (size_t i = 0; i < 3; i++) {
        ps_attention_desc a = d16;
        a.n_k = parts[i];
        float *k = random_rows(rows, parts[i], 30 + i), *v = random_rows(rows, parts[i], 40 + i);
        void *kh = malloc(ps_tensor_bytes(&a, PS_TENSOR_K));
        void *vh = malloc(ps_tensor_bytes(&a, PS_TENSOR_V));
        assert_true(kh && vh);
        assert_int_equal(ps_tensor_pack(&a, PS_TENSOR_K, k, kh), PS_OK);
        assert_int_equal(ps_tensor_pack(&a, PS_TENSOR_V, v, vh), PS_OK);
        assert_int_equal(ps_tensor_unpack(&a, PS_TENSOR_K, kh, k), PS_OK); /* widened */
        assert_int_equal(ps_tensor_unpack(&a, PS_TENSOR_V, vh, v), PS_OK);
        assert_int_equal(ps_ref_kv_cache_append(c16, kh, vh, parts[i]), PS_OK);
        assert_int_equal(ps_ref_kv_cache_append(c32, k, v, parts[i]), PS_OK);
        free(k);
        free(v);
        free(kh);
        free(vh);
    }
    uint32_t *p16, *n16, *p32, *n32;
    read_kept(c16, rows, &p16, &n16);
    read_kept(c32, rows, &p32, &n32);
    const size_t kc = ps_ref_kv_cache_kept_capacity(c32);
    assert_memory_equal(p16, p32, rows * kc * sizeof *p16);
    assert_memory_equal(n16, n32, rows * sizeof *n16);

    ps_attention_desc a = d16;
    a.n_q = n_q;
    const size_t out = qrows * n_q * D;
    float *q = random_rows(qrows, n_q, 50), *o32 = malloc(out * sizeof *o32);
    float *o16 = malloc(out * sizeof *o16), *lse16 = malloc(qrows * n_q * sizeof *lse16);
    float *lse32 = malloc(qrows * n_q * sizeof *lse32);
    void *qh = malloc(ps_tensor_bytes(&a, PS_TENSOR_Q));
    void *oh = malloc(ps_tensor_bytes(&a, PS_TENSOR_O));
    void *oh32 = malloc(ps_tensor_bytes(&a, PS_TENSOR_O));
    assert_true(o32 && o16 && lse16 && lse32 && qh && oh && oh32);
    assert_int_equal(ps_tensor_pack(&a, PS_TENSOR_Q, q, qh), PS_OK);
    assert_int_equal(ps_tensor_unpack(&a, PS_TENSOR_Q, qh, q), PS_OK);
    assert_int_equal(ps_ref_kv_cache_decode(c16, qh, n_q, oh, lse16, PS_DECODE_CACHE), PS_OK);
    assert_int_equal(ps_ref_kv_cache_decode(c32, q, n_q, o32, lse32, PS_DECODE_CACHE), PS_OK);
    assert_int_equal(ps_tensor_pack(&a, PS_TENSOR_O, o32, oh32), PS_OK); /* fp16, BTHD */
    assert_int_equal(ps_tensor_unpack(&a, PS_TENSOR_O, oh, o16), PS_OK);
    assert_int_equal(ps_tensor_unpack(&a, PS_TENSOR_O, oh32, o32), PS_OK);
    assert_memory_equal(o16, o32, out * sizeof *o16);
    assert_memory_equal(lse16, lse32, qrows * n_q * sizeof *lse16);
    ps_ref_kv_cache_destroy(c16);
    ps_ref_kv_cache_destroy(c32);
    free(p16);
    free(n16);
    free(p32);
    free(n32);
    free(q);
    free(o32);
    free(o16);
    free(lse16);
    free(lse32);
    free(qh);
    free(oh);
    free(oh32);
}

/* (7) a key scored against the statistics of a full scoring gets the score
 * that scoring gave it (so a cache's incremental scores continue it). */
static void test_score_key_matches_full(void **state)
{
    (void)state;
    const size_t n = 90;
    const ps_score scores[] = {PS_SCORE_KMEANS, PS_SCORE_LEVERAGE, PS_SCORE_NORM};
    for (size_t t = 0; t < 3; t++) {
        ps_attention_desc d = cache_desc(scores[t], n, 20, 0, 0);
        const size_t rows = rows_of(&d);
        float *k = random_rows(rows, n, 60 + t), *sc = malloc(rows * n * sizeof *sc);
        double *cent = malloc(rows * d.clusters * D * sizeof *cent);
        double *cterm = malloc(rows * d.clusters * sizeof *cterm);
        double *chol = malloc(rows * D * D * sizeof *chol);
        assert_true(sc && cent && cterm && chol);
        ps_ref_score_stats st = {0, cent, cterm, chol};
        assert_int_equal(ps_ref_score_keys_stats(&d, k, sc, &st), PS_OK);
        for (size_t h = 0; h < rows; h++)
            for (size_t i = 0; i < n; i++) {
                const float one = ps_ref_score_key(&st, d.score, h, k + (h * n + i) * D, D);
                assert_memory_equal(&one, &sc[h * n + i], sizeof one);
            }
        free(k);
        free(sc);
        free(cent);
        free(cterm);
        free(chol);
    }
}

int main(void)
{
    ts_report_seed("kv_cache_ref");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norm_budget_chunks), cmocka_unit_test(test_keep_ratio_grows),
        cmocka_unit_test(test_decode),             cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_out_of_memory),      cmocka_unit_test(test_rescore),
        cmocka_unit_test(test_fp16_round_trip),    cmocka_unit_test(test_score_key_matches_full),
    };
    return cmocka_run_group_tests_name("kv_cache_ref", tests, NULL, NULL);
}
