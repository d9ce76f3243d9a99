/* Device suite on real data: Q, K, V recorded from all-MiniLM-L6-v2 on the
 * GPL-3 text (the data/ .psqkv files, docs/DATA.md), found through PRESCORE_DATA_DIR.
 * - exact attention on the device matches ps_ref_exact_attention on the
 *   512-token windows of a few (layer, head) pairs;
 * - non-causal HyperAttention (min_seq_len lowered to 128, b = s = 128) on
 *   the 4096-token concatenated windows stays within per-head bounds set
 *   from measured values with margin, and on two heads well below the error
 *   of a query-blind stand-in (every row = the mean of V), which a broken
 *   hash, sort, block or merge drifts towards;
 * - causal HyperAttention on those 4096 tokens agrees with its host twin.
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
#include "../lib/ref/causal_ref.h"
#include "support.h"

#define FILE_512 "minilm-l6-gpl-3-512.psqkv"
#define FILE_4096 "minilm-l6-gpl-3-4096.psqkv"


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

/* Loads model layer/head from the file (fails when the file lacks it). */
static void load(qkv_file *f, unsigned layer, unsigned head, head_data *h)
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
        fail_msg("attention: %s: %s", ps_status_string(st), ps_context_last_error(ctx));
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
        load(f, pairs[p][0], pairs[p][1], &h);
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

static void test_hyper_error_4096(void **state)
{
    /* layer, head, and bounds from the values measured on PoCL (2026-11-29,
     * seed 11: rel 0.306 / 0.477 / 1.290, mean |lse gap| 0.092 / 0.103 /
     * 0.766) with about 30% margin. The discrete choices (projections,
     * samples) are seeded, so other devices differ only by rounding. The
     * first two heads are ones where HyperAttention beats the query-blind
     * stand-in; on the third (and on 5 of the 9 stored heads) it does not,
     * which is a finding about the method at b = s = 128, not a bug. */
    static const struct {
        unsigned layer, head;
        double rel_bound, lse_bound;
        int beats_mean;
    } pairs[] = {{0, 1, 0.40, 0.15, 1}, {5, 0, 0.62, 0.15, 1}, {2, 1, 1.65, 1.0, 0}};
    qkv_file *f = open_data(FILE_4096);
    (void)state;
    printf("# %s: %s\n", FILE_4096, f->provenance);
    assert_int_equal(f->n, 4096);
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        head_data h;
        load(f, pairs[p].layer, pairs[p].head, &h);
        const size_t no = h.n * h.d;
        float *o = malloc(no * 4), *o_ex = malloc(no * 4), *o_mean = malloc(no * 4);
        float *lse = malloc(h.n * 4), *lse_ex = malloc(h.n * 4);
        assert_true(o && o_ex && o_mean && lse && lse_ex);

        ps_attention_desc e = desc_for(&h, PS_METHOD_EXACT);
        device_run(&e, &h, o_ex, lse_ex); /* device exact: checked above against the reference */

        ps_attention_desc d = desc_for(&h, PS_METHOD_HYPER);
        d.min_seq_len = 128;
        d.block = 128;
        d.samples = 128;
        device_run(&d, &h, o, lse);

        /* Query-blind stand-in: every row the mean of V. */
        for (size_t c = 0; c < h.d; c++) {
            double s = 0.0;
            for (size_t i = 0; i < h.n; i++)
                s += h.v[i * h.d + c];
            for (size_t i = 0; i < h.n; i++)
                o_mean[i * h.d + c] = (float)(s / (double)h.n);
        }
        const double rel = ts_rel_error(o, o_ex, no);
        const double lse_gap = mean_abs_diff(lse, lse_ex, h.n);
        const double rel_mean = ts_rel_error(o_mean, o_ex, no);
        printf("# hyper, layer %u head %u, n = 4096, b = s = 128: rel %.4f, mean |lse gap| "
               "%.4f; mean-of-V stand-in rel %.4f (bounds %.2f, %.2f)\n",
               pairs[p].layer, pairs[p].head, rel, lse_gap, rel_mean, pairs[p].rel_bound,
               pairs[p].lse_bound);
        assert_true(rel < pairs[p].rel_bound);
        assert_true(lse_gap < pairs[p].lse_bound);
        if (pairs[p].beats_mean)
            assert_true(rel < 0.7 * rel_mean); /* the bound means something on this head */
        free(o);
        free(o_ex);
        free(o_mean);
        free(lse);
        free(lse_ex);
        unload(&h);
    }
    qkv_file_close(f);
}

static void test_causal_hyper_vs_reference_4096(void **state)
{
    qkv_file *f = open_data(FILE_4096);
    head_data h;
    (void)state;
    load(f, 2, 1, &h);
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
    assert_int_equal(ps_ref_hyper_causal(&d, h.q, h.k, h.v, o_ref, lse_ref), PS_OK);
    const double rel = ts_rel_error(o, o_ref, no), dl = ts_max_abs_diff(lse, lse_ref, h.n);
    printf("# causal hyper, layer 2 head 1, n = 4096, min_seq_len 512: device vs reference "
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
        cmocka_unit_test(test_hyper_error_4096),
        cmocka_unit_test(test_causal_hyper_vs_reference_4096),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
