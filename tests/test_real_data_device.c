/* Device suite on real data: Q, K, V recorded from all-MiniLM-L6-v2 on real
 * English text (the data/ .psqkv files, docs/DATA.md), found through
 * PRESCORE_DATA_DIR.
 * - exact attention on the device matches ps_ref_exact_attention on the
 *   512-token GPL-3 window for a few (layer, head) pairs;
 * - on the first 4096 tokens of the 16384-token Valgrind-manual file,
 *   HyperAttention and the pre-scored pipeline agree with their host twins
 *   (same discrete choices, rounding only), and non-causal HyperAttention
 *   (min_seq_len 128, b = s = 128) stays within per-head bounds set from
 *   measured values with margin;
 * - the pre-scored pipeline's error, split into its floor (exact attention
 *   over the kept keys) and its HyperAttention part, and its error at
 *   n = 16384, stay within bounds measured with margin;
 * - causal HyperAttention on 4096 tokens agrees with its host twin.
 * A missing data directory is a failure, not a skip: the files are part of
 * the repository. */
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
#include "../bench/qkv_file.h"
#include "ref/causal_ref.h"
#include "support.h"

#define FILE_512 "minilm-l6-gpl-3-512.psqkv"
#define FILE_LONG "minilm-l6-valgrind-core-16384.psqkv"

static ps_context *ctx;

typedef struct head_data {
    size_t n, d;
    float *q, *k, *v;
} head_data;

static qkv_file *open_data(const char *name)
{
    const char *dir = getenv("PRESCORE_DATA_DIR");
    char path[1024], msg[512];
    qkv_file *f = NULL;
    qkv_status st;

    if (!dir || !*dir)
        fail_msg("PRESCORE_DATA_DIR is not set (tests/meson.build sets it to data/)");
    snprintf(path, sizeof path, "%s/%s", dir, name);
    st = qkv_file_open(path, &f, msg, sizeof msg);
    if (st != QKV_OK)
        fail_msg("%s: %s", qkv_status_string(st), msg);
    return f;
}

/* Loads model layer/head from the file (fails when the file lacks it) and
 * keeps its first `prefix` tokens (0: all): rows are tokens, so the first
 * prefix * d floats of Q, K and V are the shorter sequence. */
static void load(qkv_file *f, unsigned layer, unsigned head, size_t prefix, head_data *h)
{
    const size_t li = qkv_file_find_layer(f, layer), hi = qkv_file_find_head(f, head);
    qkv_status st;

    if (li == (size_t)-1 || hi == (size_t)-1)
        fail_msg("file lacks layer %u head %u", layer, head);
    h->n = f->n;
    h->d = f->d;
    h->q = malloc(h->n * h->d * 4);
    h->k = malloc(h->n * h->d * 4);
    h->v = malloc(h->n * h->d * 4);
    assert_true(h->q && h->k && h->v);
    st = qkv_file_read_head(f, li, hi, h->q, h->k, h->v);
    if (st != QKV_OK)
        fail_msg("%s: %s", qkv_status_string(st), f->message);
    if (prefix && prefix < h->n)
        h->n = prefix;
}

static void unload(head_data *h)
{
    free(h->q);
    free(h->k);
    free(h->v);
}

static ps_attention_desc desc_for(const head_data *h, ps_method method)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.method = method;
    d.n_q = d.n_k = h->n;
    d.d = d.d_v = h->d;
    d.want_lse = 1;
    d.seed = 11;
    return d;
}

static void device_run(const ps_attention_desc *d, const head_data *h, float *o, float *lse)
{
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, d, &plan);
    if (st != PS_OK)
        fail_msg("plan: %s: %s", ps_status_string(st), ps_context_last_error(ctx));
    st = ps_attention_host(plan, h->q, h->k, h->v, o, lse);
    if (st != PS_OK)
        fail_msg("attention: %s: %s", ps_status_string(st), ps_plan_last_error(plan));
    ps_plan_destroy(plan);
}

static double mean_abs_diff(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += fabs((double)a[i] - (double)b[i]);
    return s / (double)n;
}

static void test_exact_matches_reference_512(void **state)
{
    static const unsigned pairs[][2] = {{0, 0}, {2, 5}, {5, 11}};
    qkv_file *f = open_data(FILE_512);
    (void)state;
    printf("# %s: %s\n", FILE_512, f->provenance);
    assert_int_equal(f->n, 512);
    assert_int_equal(f->d, 32);
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        head_data h;
        load(f, pairs[p][0], pairs[p][1], 0, &h);
        ps_attention_desc d = desc_for(&h, PS_METHOD_EXACT);
        const size_t no = h.n * h.d;
        float *o = malloc(no * 4), *o_ref = malloc(no * 4);
        float *lse = malloc(h.n * 4), *lse_ref = malloc(h.n * 4);
        assert_true(o && o_ref && lse && lse_ref);
        device_run(&d, &h, o, lse);
        assert_int_equal(ps_ref_exact_attention(&d, h.q, h.k, h.v, o_ref, lse_ref), PS_OK);
        const double rel = ts_rel_error(o, o_ref, no), dl = ts_max_abs_diff(lse, lse_ref, h.n);
        printf("# exact, layer %u head %u, n = 512: device vs reference rel %.2e, max lse %.2e\n",
               pairs[p][0], pairs[p][1], rel, dl);
        assert_true(rel < 2e-5 && dl < 1e-4);
        free(o);
        free(o_ref);
        free(lse);
        free(lse_ref);
        unload(&h);
    }
    qkv_file_close(f);
}

/* Every row the mean of V: the query-blind stand-in a broken hash, sort,
 * block or merge drifts towards. */
static double mean_of_v_rel(const head_data *h, const float *o_ex)
{
    const size_t no = h->n * h->d;
    float *o_mean = malloc(no * 4);
    assert_non_null(o_mean);
    for (size_t c = 0; c < h->d; c++) {
        double s = 0.0;
        for (size_t i = 0; i < h->n; i++)
            s += h->v[i * h->d + c];
        for (size_t i = 0; i < h->n; i++)
            o_mean[i * h->d + c] = (float)(s / (double)h->n);
    }
    const double rel = ts_rel_error(o_mean, o_ex, no);
    free(o_mean);
    return rel;
}

/* The approximate path at b = s = 128 with min_seq_len lowered to 128. */
static ps_attention_desc approx_desc(const head_data *h, ps_method method, size_t budget)
{
    ps_attention_desc d = desc_for(h, method);
    d.min_seq_len = 128;
    d.block = 128;
    d.samples = 128;
    d.budget = budget;
    /* The bounds below were measured with these (the defaults before the
     * default configuration of docs/QUALITY.md): keep them fixed. */
    d.global_keys = 0;
    d.clusters = budget / 4 < 256 ? (budget / 4 ? budget / 4 : 1) : 256;
    d.selection = PS_SELECTION_TOP;
    return d;
}

static void test_long_file_layout(void **state)
{
    qkv_file *f = open_data(FILE_LONG);
    (void)state;
    printf("# %s: %s\n", FILE_LONG, f->provenance);
    assert_int_equal(f->n, 16384);
    assert_int_equal(f->d, 32);
    assert_int_equal(f->layers, 3);
    assert_int_equal(f->heads, 1);
    assert_true(qkv_file_find_layer(f, 0) == 0 && qkv_file_find_layer(f, 5) == 2);
    assert_true(qkv_file_find_head(f, 0) == 0);
    assert_non_null(strstr(f->provenance, "valgrind"));
    qkv_file_close(f);
}

static void test_hyper_error_4096(void **state)
{
    /* layer, head, and bounds from the values measured on PoCL (2026-11-29,
     * seed 11, first 4096 tokens of the Valgrind file: rel 0.473 / 1.764 /
     * 0.845, mean |lse gap| 0.121 / 0.738 / 0.112) with about 30% margin.
     * The discrete choices (projections, samples) are seeded, so other
     * devices differ only by rounding. On none of these heads is
     * HyperAttention at b = s = 128 clearly better than the query-blind
     * stand-in (printed); that is a finding about the method at these
     * budgets (docs/QUALITY.md), not a bug, so it is not asserted. */
    static const struct {
        unsigned layer;
        double rel_bound, lse_bound;
    } heads[] = {{0, 0.62, 0.16}, {2, 2.3, 0.96}, {5, 1.10, 0.15}};
    qkv_file *f = open_data(FILE_LONG);
    (void)state;
    for (size_t p = 0; p < sizeof heads / sizeof heads[0]; p++) {
        head_data h;
        load(f, heads[p].layer, 0, 4096, &h);
        const size_t no = h.n * h.d;
        float *o = malloc(no * 4), *o_ex = malloc(no * 4);
        float *lse = malloc(h.n * 4), *lse_ex = malloc(h.n * 4);
        assert_true(o && o_ex && lse && lse_ex);

        ps_attention_desc e = desc_for(&h, PS_METHOD_EXACT);
        device_run(&e, &h, o_ex, lse_ex); /* device exact: checked above against the reference */
        ps_attention_desc d = approx_desc(&h, PS_METHOD_HYPER, 0);
        device_run(&d, &h, o, lse);

        const double rel = ts_rel_error(o, o_ex, no);
        const double lse_gap = mean_abs_diff(lse, lse_ex, h.n);
        const double rel_mean = mean_of_v_rel(&h, o_ex);
        printf("# hyper, layer %u head 0, n = 4096, b = s = 128: rel %.4f, mean |lse gap| "
               "%.4f; mean-of-V stand-in rel %.4f (bounds %.2f, %.2f)\n",
               heads[p].layer, rel, lse_gap, rel_mean, heads[p].rel_bound, heads[p].lse_bound);
        assert_true(rel < heads[p].rel_bound);
        assert_true(lse_gap < heads[p].lse_bound);
        free(o);
        free(o_ex);
        free(lse);
        free(lse_ex);
        unload(&h);
    }
    qkv_file_close(f);
}

/* Device vs ps_ref_attention on real data: same selections, LSH buckets and
 * samples, so only rounding differs. */
static void check_vs_reference(const head_data *h, const ps_attention_desc *d, const char *what)
{
    const size_t no = h->n * h->d;
    float *o = malloc(no * 4), *o_ref = malloc(no * 4);
    float *lse = malloc(h->n * 4), *lse_ref = malloc(h->n * 4);
    assert_true(o && o_ref && lse && lse_ref);
    device_run(d, h, o, lse);
    assert_int_equal(ps_ref_attention(d, h->q, h->k, h->v, o_ref, lse_ref), PS_OK);
    const double rel = ts_rel_error(o, o_ref, no), dl = ts_max_abs_diff(lse, lse_ref, h->n);
    printf("# %s: device vs reference rel %.2e, max lse %.2e\n", what, rel, dl);
    assert_true(rel < 1e-4 && dl < 1e-3);
    free(o);
    free(o_ref);
    free(lse);
    free(lse_ref);
}

static void test_pipeline_vs_reference_4096(void **state)
{
    qkv_file *f = open_data(FILE_LONG);
    head_data h;
    (void)state;
    load(f, 2, 0, 4096, &h);
    qkv_file_close(f);
    ps_attention_desc d = approx_desc(&h, PS_METHOD_HYPER, 0);
    check_vs_reference(&h, &d, "hyper, layer 2 head 0, n = 4096, b = s = 128");
    d = approx_desc(&h, PS_METHOD_PRESCORE, 1024);
    d.score = PS_SCORE_KMEANS;
    check_vs_reference(&h, &d, "prescore kmeans, layer 2 head 0, n = 4096, m = 1024");
    d.score = PS_SCORE_NORM;
    check_vs_reference(&h, &d, "prescore norm, layer 2 head 0, n = 4096, m = 1024");
    unload(&h);
}

/* Exact attention of all queries over the keys idx[0..m) only, into o. */
static void subset_exact(const head_data *h, const uint32_t *idx, size_t m, float *o)
{
    head_data s = {m, h->d, h->q, malloc(m * h->d * 4), malloc(m * h->d * 4)};
    assert_true(s.k && s.v);
    for (size_t i = 0; i < m; i++) {
        memcpy(s.k + i * h->d, h->k + (size_t)idx[i] * h->d, h->d * 4);
        memcpy(s.v + i * h->d, h->v + (size_t)idx[i] * h->d, h->d * 4);
    }
    ps_attention_desc d = desc_for(h, PS_METHOD_EXACT);
    d.n_k = m;
    d.want_lse = 0;
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(ctx, &d, &plan);
    if (st == PS_OK)
        st = ps_attention_host(plan, s.q, s.k, s.v, o, NULL);
    if (st != PS_OK)
        fail_msg("subset exact: %s: %s", ps_status_string(st),
                 plan ? ps_plan_last_error(plan) : ps_context_last_error(ctx));
    ps_plan_destroy(plan);
    free(s.k);
    free(s.v);
}

/* m distinct positions of [0, n), ascending like a selection: a seeded
 * partial Fisher-Yates shuffle, then a pass over marks. */
static void random_subset(size_t n, size_t m, uint64_t seed, uint32_t *idx)
{
    uint32_t *perm = malloc(n * sizeof *perm);
    unsigned char *mark = calloc(n, 1);
    assert_true(perm && mark);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = 0; i < m; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        const size_t j = i + (size_t)((seed >> 33) % (n - i));
        const uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        mark[perm[i]] = 1;
    }
    for (size_t i = 0, c = 0; i < n; i++)
        if (mark[i])
            idx[c++] = (uint32_t)i;
    free(mark);
    free(perm);
}

static void test_selection_floor_4096(void **state)
{
    /* Pre-scored pipeline (k-means, m = n/4 = 1024, b = s = 128) on the first
     * 4096 tokens. Its error splits into the floor (exact attention over the
     * kept keys vs over all keys: what the selection loses) and the
     * HyperAttention part (pipeline vs exact over the kept keys: what the
     * blocks and samples lose). Both are bounded by the values measured on
     * PoCL (2026-11-29, seed 11, k-means score of commit f7a1c38: floor
     * 1.288 / 0.902 / 1.158, HyperAttention part 0.399 / 1.315 / 0.406) with
     * about 30% margin (a change of the score formula moves the floor:
     * remeasure from the printed lines); a broken score or selection moves the
     * first, a broken hash, sort, sampling or merge the second. The floor of
     * m random keys is printed for scale: on these heads it is LOWER than
     * the kept keys' (the query-blind scores keep outlier keys, not the keys
     * the queries attend to; docs/QUALITY.md), so it is not asserted. */
    static const struct {
        unsigned layer;
        double floor_bound, hyper_bound;
    } heads[] = {{0, 1.67, 0.52}, {2, 1.17, 1.71}, {5, 1.51, 0.53}};
    const size_t m = 1024;
    qkv_file *f = open_data(FILE_LONG);
    (void)state;
    for (size_t c = 0; c < sizeof heads / sizeof heads[0]; c++) {
        head_data h;
        load(f, heads[c].layer, 0, 4096, &h);
        const size_t no = h.n * h.d;
        float *o_ex = malloc(no * 4), *o_kept = malloc(no * 4), *o_rnd = malloc(no * 4);
        float *o = malloc(no * 4), *lse = malloc(h.n * 4), *scores = malloc(h.n * 4);
        uint32_t *idx = malloc(m * sizeof *idx), *rnd = malloc(m * sizeof *rnd), count = 0;
        assert_true(o_ex && o_kept && o_rnd && o && lse && scores && idx && rnd);
        ps_attention_desc e = desc_for(&h, PS_METHOD_EXACT);
        e.want_lse = 0;
        device_run(&e, &h, o_ex, NULL);
        ps_attention_desc d = approx_desc(&h, PS_METHOD_PRESCORE, m);
        d.score = PS_SCORE_KMEANS;
        device_run(&d, &h, o, lse);
        assert_int_equal(ps_ref_score_keys(&d, h.k, scores), PS_OK);
        assert_int_equal(ps_ref_select_keys(&d, scores, idx, &count), PS_OK);
        assert_int_equal(count, m);
        random_subset(h.n, m, 1234 + c, rnd);
        subset_exact(&h, idx, m, o_kept);
        subset_exact(&h, rnd, m, o_rnd);
        const double floor_kept = ts_rel_error(o_kept, o_ex, no);
        const double floor_rnd = ts_rel_error(o_rnd, o_ex, no);
        const double hyper_part = ts_rel_error(o, o_kept, no);
        printf("# prescore kmeans, layer %u head 0, n = 4096, m = %zu: rel %.4f; floor %.4f "
               "(random keys: %.4f); vs exact over the kept keys %.4f (bounds %.2f, %.2f)\n",
               heads[c].layer, m, ts_rel_error(o, o_ex, no), floor_kept, floor_rnd, hyper_part,
               heads[c].floor_bound, heads[c].hyper_bound);
        assert_true(floor_kept < heads[c].floor_bound);
        assert_true(hyper_part < heads[c].hyper_bound);
        free(o_ex);
        free(o_kept);
        free(o_rnd);
        free(o);
        free(lse);
        free(scores);
        free(idx);
        free(rnd);
        unload(&h);
    }
    qkv_file_close(f);
}

/* The library's default selection (PS_SELECTION_AUTO: stratified k-means
 * draw with a 32-row query sketch and the automatic global keys) against
 * top-m with everything else equal, on the first 4096 tokens at m = n/4,
 * b = s = 128: the default is the device twin's on layer 2, and its error
 * is below `ratio` times top-m's (measured on PoCL 2026-12-03, seed 11:
 * 0.441 / 1.473 / 0.430 against top-m's 1.428 / 1.437 / 1.038 on layers
 * 0 / 2 / 5; on layer 2 the error is HyperAttention's over the kept keys,
 * not the selection's, and the default loses by 2.5%: docs/QUALITY.md). */
static void test_default_selection_4096(void **state)
{
    static const struct {
        unsigned layer;
        double ratio;
    } layers[] = {{0, 0.5}, {2, 1.1}, {5, 0.6}};
    qkv_file *f = open_data(FILE_LONG);
    (void)state;
    for (size_t c = 0; c < sizeof layers / sizeof layers[0]; c++) {
        head_data h;
        load(f, layers[c].layer, 0, 4096, &h);
        const size_t no = h.n * h.d;
        float *o_ex = malloc(no * 4), *o = malloc(no * 4), *lse = malloc(h.n * 4);
        assert_true(o_ex && o && lse);
        ps_attention_desc e = desc_for(&h, PS_METHOD_EXACT);
        e.want_lse = 0;
        device_run(&e, &h, o_ex, NULL);
        ps_attention_desc d = desc_for(&h, PS_METHOD_PRESCORE);
        d.min_seq_len = 128;
        d.block = d.samples = 128;
        d.budget = 1024;
        ps_plan *plan = NULL;
        ps_attention_desc r;
        assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
        assert_int_equal(ps_plan_desc(plan, &r), PS_OK);
        ps_plan_destroy(plan);
        assert_int_equal(r.selection, PS_SELECTION_STRATIFIED);
        assert_int_equal(r.sketch_queries, PS_SKETCH_AUTO_QUERIES);
        if (layers[c].layer == 2)
            check_vs_reference(&h, &d, "prescore default selection, layer 2, n = 4096, m = 1024");
        device_run(&d, &h, o, lse);
        const double rel_default = ts_rel_error(o, o_ex, no);
        d.selection = PS_SELECTION_TOP;
        device_run(&d, &h, o, lse);
        const double rel_top = ts_rel_error(o, o_ex, no);
        printf("# layer %u head 0, n = 4096, m = 1024: default selection rel %.4f, top-m %.4f\n",
               layers[c].layer, rel_default, rel_top);
        assert_true(rel_default < layers[c].ratio * rel_top);
        free(o_ex);
        free(o);
        free(lse);
        unload(&h);
    }
    qkv_file_close(f);
}

static void test_prescore_error_16384(void **state)
{
    /* The whole pipeline at the file's full length, one head, against device
     * exact: bound from the measured value (rel 1.001; PoCL, 2026-11-29,
     * seed 11, k-means score of commit f7a1c38) with about 30% margin. An
     * accuracy bound, not a device check (the device = twin checks run at
     * 4096 above): the rusticl run skips it by name for time (exact
     * attention at n = 16384 takes 4 minutes on llvmpipe). */
    if (ts_skip_by_name("test_prescore_error_16384"))
        return;
    const double bound = 1.30;
    qkv_file *f = open_data(FILE_LONG);
    head_data h;
    (void)state;
    load(f, 5, 0, 0, &h);
    qkv_file_close(f);
    const size_t no = h.n * h.d;
    float *o = malloc(no * 4), *o_ex = malloc(no * 4);
    float *lse = malloc(h.n * 4), *lse_ex = malloc(h.n * 4);
    assert_true(o && o_ex && lse && lse_ex);
    ps_attention_desc e = desc_for(&h, PS_METHOD_EXACT);
    device_run(&e, &h, o_ex, lse_ex);
    ps_attention_desc d = approx_desc(&h, PS_METHOD_PRESCORE, 4096);
    device_run(&d, &h, o, lse);
    const double rel = ts_rel_error(o, o_ex, no), gap = mean_abs_diff(lse, lse_ex, h.n);
    const double rel_mean = mean_of_v_rel(&h, o_ex);
    printf("# prescore kmeans, layer 5 head 0, n = 16384, m = 4096, b = s = 128: rel %.4f, "
           "mean |lse gap| %.4f; mean-of-V rel %.4f (bound %.2f)\n",
           rel, gap, rel_mean, bound);
    assert_true(rel < bound);
    free(o);
    free(o_ex);
    free(lse);
    free(lse_ex);
    unload(&h);
}

static void test_causal_hyper_vs_reference_4096(void **state)
{
    qkv_file *f = open_data(FILE_LONG);
    head_data h;
    (void)state;
    load(f, 2, 0, 4096, &h);
    qkv_file_close(f);
    const size_t no = h.n * h.d;
    float *o = malloc(no * 4), *o_ref = malloc(no * 4);
    float *lse = malloc(h.n * 4), *lse_ref = malloc(h.n * 4);
    assert_true(o && o_ref && lse && lse_ref);
    ps_attention_desc d = desc_for(&h, PS_METHOD_HYPER);
    d.causal = 1;
    d.min_seq_len = 512;
    d.block = 128;
    d.samples = 128;
    device_run(&d, &h, o, lse);
    assert_int_equal(ps_ref_causal(&d, h.q, h.k, h.v, o_ref, lse_ref), PS_OK);
    const double rel = ts_rel_error(o, o_ref, no), dl = ts_max_abs_diff(lse, lse_ref, h.n);
    printf("# causal hyper, layer 2 head 0, n = 4096, min_seq_len 512: device vs reference "
           "rel %.2e, max lse %.2e\n",
           rel, dl);
    assert_true(rel < 1e-4 && dl < 1e-3);
    free(o);
    free(o_ref);
    free(lse);
    free(lse_ref);
    unload(&h);
}

static int setup(void **state)
{
    (void)state;
    ps_status st = ps_context_create(&ctx, NULL);
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

int main(void)
{
    if (!ts_have_device("real_data_device"))
        return TS_EXIT_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_matches_reference_512),
        cmocka_unit_test(test_long_file_layout),
        cmocka_unit_test(test_hyper_error_4096),
        cmocka_unit_test(test_pipeline_vs_reference_4096),
        cmocka_unit_test(test_selection_floor_4096),
        cmocka_unit_test(test_default_selection_4096),
        cmocka_unit_test(test_prescore_error_16384),
        cmocka_unit_test(test_causal_hyper_vs_reference_4096),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
