/* Unit suite: descriptor defaults, validation (one check per invalid field,
 * each with its status and a message naming the field), resolution of the
 * automatic fields, status strings, and the reference's argument checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cl_sources.h"
#include "core/desc.h"
#include "core/dropped_params.h"
#include "prescore/prescore.h"
#include "prescore/prescore_ref.h"
#include "sha256.h"

static ps_attention_desc valid_desc(void)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.n_q = d.n_k = 128;
    d.d = d.d_v = 64;
    return d;
}

static void test_defaults(void **state)
{
    (void)state;
    ps_attention_desc d;
    memset(&d, 0xff, sizeof d);
    ps_attention_desc_default(&d);
    assert_int_equal(d.batch, 1);
    assert_int_equal(d.heads, 1);
    assert_int_equal(d.kv_heads, 1);
    assert_int_equal(d.method, PS_METHOD_EXACT);
    assert_int_equal(d.score, PS_SCORE_KMEANS);
    assert_int_equal(d.n_q, 0);
    ps_attention_desc_default(NULL); /* must not crash */
    ps_attention_desc v = valid_desc();
    assert_int_equal(ps_attention_desc_validate(&v, NULL, 0), PS_OK);
}

typedef struct bad_case {
    const char *field;
    void (*mutate)(ps_attention_desc *d);
    ps_status expected;
} bad_case;

static void m_batch(ps_attention_desc *d) { d->batch = 0; }
static void m_heads(ps_attention_desc *d) { d->heads = 0; }
static void m_kv_heads(ps_attention_desc *d) { d->kv_heads = 0; }
static void m_gqa(ps_attention_desc *d) { d->heads = 6; d->kv_heads = 4; }
static void m_nq(ps_attention_desc *d) { d->n_q = 0; }
static void m_nk(ps_attention_desc *d) { d->n_k = 0; }
static void m_nk_huge(ps_attention_desc *d) { d->n_k = (size_t)1 << 40; }
static void m_d0(ps_attention_desc *d) { d->d = 0; }
static void m_d_odd(ps_attention_desc *d) { d->d = 40; }
static void m_d_big(ps_attention_desc *d) { d->d = 512; }
static void m_dv_odd(ps_attention_desc *d) { d->d_v = 24; }
static void m_causal(ps_attention_desc *d) { d->causal = 2; }
static void m_lse(ps_attention_desc *d) { d->want_lse = -1; }
static void m_scale_nan(ps_attention_desc *d) { d->scale = NAN; }
static void m_scale_inf(ps_attention_desc *d) { d->scale = INFINITY; }
static void m_method(ps_attention_desc *d) { d->method = (ps_method)7; }
static void m_score(ps_attention_desc *d) { d->score = (ps_score)-1; }
static void m_bits(ps_attention_desc *d) { d->lsh_bits = 40; }
static void m_lambda(ps_attention_desc *d) { d->leverage_lambda = -1.0f; }
static void m_reserved(ps_attention_desc *d) { d->reserved[3] = 1; }
static void m_budget_and_ratio(ps_attention_desc *d)
{
    d->method = PS_METHOD_PRESCORE;
    d->budget = 8;
    d->keep_ratio = 0.5f;
}
static void m_ratio_above_one(ps_attention_desc *d) { d->keep_ratio = 1.5f; }
static void m_ratio_nan(ps_attention_desc *d) { d->keep_ratio = NAN; }
static void m_growth_negative(ps_attention_desc *d) { d->rescore_growth = -1.0f; }
static void m_selection(ps_attention_desc *d) { d->selection = (ps_selection)5; }
static void m_weighted_hyper(ps_attention_desc *d)
{
    d->method = PS_METHOD_HYPER;
    d->selection = PS_SELECTION_WEIGHTED;
}
static void m_weighted_score_none(ps_attention_desc *d)
{
    d->method = PS_METHOD_PRESCORE;
    d->score = PS_SCORE_NONE;
    d->selection = PS_SELECTION_WEIGHTED;
}
static void m_weighted_global_score(ps_attention_desc *d)
{
    d->method = PS_METHOD_PRESCORE;
    d->score = PS_SCORE_KMEANS;
    d->global_score = PS_SCORE_NORM;
    d->selection = PS_SELECTION_WEIGHTED;
}
static void m_strata_norm(ps_attention_desc *d)
{
    d->method = PS_METHOD_PRESCORE;
    d->score = PS_SCORE_NORM;
    d->selection = PS_SELECTION_STRATIFIED;
}
static void m_strata_clusters(ps_attention_desc *d)
{
    d->method = PS_METHOD_PRESCORE;
    d->selection = PS_SELECTION_STRATIFIED;
    d->clusters = PS_STRATA_MAX_CLUSTERS + 1;
}
static void m_probes_too_many(ps_attention_desc *d) { d->error_probes = PS_ERROR_MAX_PROBES + 1; }
static void m_tolerance_alone(ps_attention_desc *d) { d->error_tolerance = 0.1f; }
static void m_tolerance_nan(ps_attention_desc *d)
{
    d->error_probes = 8;
    d->error_tolerance = NAN;
}
static void m_sketch_top(ps_attention_desc *d)
{
    d->method = PS_METHOD_PRESCORE;
    d->selection = PS_SELECTION_TOP;
    d->sketch_queries = 32;
}
static void m_sketch_too_many(ps_attention_desc *d)
{
    d->method = PS_METHOD_PRESCORE;
    d->selection = PS_SELECTION_WEIGHTED;
    d->sketch_queries = PS_SKETCH_MAX_QUERIES + 1;
}
static void m_sketch_no_global(ps_attention_desc *d)
{
    d->method = PS_METHOD_PRESCORE;
    d->selection = PS_SELECTION_WEIGHTED;
    d->global_keys = 0;
    d->sketch_queries = 32;
}
/* Issue 7 audit: negative sizes (wrapped size_t), 32-bit kernel arguments,
 * flags and enums out of range. */
static void m_nq_negative(ps_attention_desc *d) { d->n_q = (size_t)-1; }
static void m_dv0(ps_attention_desc *d) { d->d_v = 0; }
static void m_bh_huge(ps_attention_desc *d)
{
    d->batch = (size_t)1 << 16;
    d->heads = d->kv_heads = (size_t)1 << 15;
}
static void m_bh_wraps(ps_attention_desc *d) /* batch * heads wraps to 0 */
{
    d->batch = (size_t)1 << 33;
    d->heads = d->kv_heads = (size_t)1 << 31;
}
static void m_block_huge(ps_attention_desc *d) { d->block = ((size_t)1 << 32) + 0; }
static void m_samples_neg(ps_attention_desc *d) { d->samples = (size_t)-16; }
static void m_iters_huge(ps_attention_desc *d) { d->kmeans_iters = (size_t)-1; }
static void m_check_finite(ps_attention_desc *d) { d->check_finite = -1; }
static void m_global_score(ps_attention_desc *d) { d->global_score = (ps_score)9; }
static void m_scale_huge(ps_attention_desc *d) { d->scale = -3.4e38f; } /* fuzz find */
static void m_lambda_nan(ps_attention_desc *d) { d->leverage_lambda = NAN; }
static void m_overflow(ps_attention_desc *d)
{
    d->batch = (size_t)1 << 29;
    d->heads = 2;
    d->kv_heads = 1;
    d->n_q = d->n_k = (size_t)1 << 30;
}

static const bad_case bad_cases[] = {
    {"batch", m_batch, PS_ERR_INVALID_ARGUMENT},
    {"heads", m_heads, PS_ERR_INVALID_ARGUMENT},
    {"kv_heads", m_kv_heads, PS_ERR_INVALID_ARGUMENT},
    {"kv_heads", m_gqa, PS_ERR_INVALID_ARGUMENT},
    {"n_q", m_nq, PS_ERR_INVALID_ARGUMENT},
    {"n_k", m_nk, PS_ERR_INVALID_ARGUMENT},
    {"n_k", m_nk_huge, PS_ERR_UNSUPPORTED},
    {"d and d_v", m_d0, PS_ERR_INVALID_ARGUMENT},
    {"d = 40", m_d_odd, PS_ERR_UNSUPPORTED},
    {"d = 512", m_d_big, PS_ERR_UNSUPPORTED},
    {"d_v = 24", m_dv_odd, PS_ERR_UNSUPPORTED},
    {"causal", m_causal, PS_ERR_INVALID_ARGUMENT},
    {"want_lse", m_lse, PS_ERR_INVALID_ARGUMENT},
    {"scale", m_scale_nan, PS_ERR_INVALID_ARGUMENT},
    {"scale", m_scale_inf, PS_ERR_INVALID_ARGUMENT},
    {"method", m_method, PS_ERR_INVALID_ARGUMENT},
    {"score", m_score, PS_ERR_INVALID_ARGUMENT},
    {"lsh_bits", m_bits, PS_ERR_UNSUPPORTED},
    {"leverage_lambda", m_lambda, PS_ERR_INVALID_ARGUMENT},
    {"reserved", m_reserved, PS_ERR_INVALID_ARGUMENT},
    {"overflow", m_overflow, PS_ERR_INVALID_ARGUMENT},
    {"are both set", m_budget_and_ratio, PS_ERR_INVALID_ARGUMENT},
    {"keep_ratio = 1.5", m_ratio_above_one, PS_ERR_INVALID_ARGUMENT},
    {"keep_ratio = nan", m_ratio_nan, PS_ERR_INVALID_ARGUMENT},
    {"rescore_growth must be", m_growth_negative, PS_ERR_INVALID_ARGUMENT},
    {"selection 5 is not", m_selection, PS_ERR_INVALID_ARGUMENT},
    {"needs method PRESCORE", m_weighted_hyper, PS_ERR_INVALID_ARGUMENT},
    {"global_score must be AUTO", m_weighted_global_score, PS_ERR_UNSUPPORTED},
    {"WEIGHTED needs a score", m_weighted_score_none, PS_ERR_UNSUPPORTED},
    {"it needs selection WEIGHTED", m_sketch_top, PS_ERR_INVALID_ARGUMENT},
    {"it needs score KMEANS", m_strata_norm, PS_ERR_INVALID_ARGUMENT},
    {"error_probes = 257: at most 256", m_probes_too_many, PS_ERR_UNSUPPORTED},
    {"error_tolerance needs error_probes", m_tolerance_alone, PS_ERR_INVALID_ARGUMENT},
    {"error_tolerance must be finite", m_tolerance_nan, PS_ERR_INVALID_ARGUMENT},
    {"clusters = 257: at most 256", m_strata_clusters, PS_ERR_UNSUPPORTED},
    {"sketch_queries = 257: at most 256", m_sketch_too_many, PS_ERR_UNSUPPORTED},
    {"with global_keys 0 there are none", m_sketch_no_global, PS_ERR_INVALID_ARGUMENT},
    {"n_q (18446744073709551615)", m_nq_negative, PS_ERR_UNSUPPORTED},
    {"d and d_v", m_dv0, PS_ERR_INVALID_ARGUMENT},
    {"batch * heads", m_bh_huge, PS_ERR_UNSUPPORTED},
    {"batch * heads", m_bh_wraps, PS_ERR_UNSUPPORTED},
    {"block = 4294967296", m_block_huge, PS_ERR_UNSUPPORTED},
    {"samples", m_samples_neg, PS_ERR_UNSUPPORTED},
    {"kmeans_iters", m_iters_huge, PS_ERR_UNSUPPORTED},
    {"check_finite", m_check_finite, PS_ERR_INVALID_ARGUMENT},
    {"global_score 9", m_global_score, PS_ERR_INVALID_ARGUMENT},
    {"leverage_lambda", m_lambda_nan, PS_ERR_INVALID_ARGUMENT},
    {"|scale| must be", m_scale_huge, PS_ERR_INVALID_ARGUMENT},
};

static void test_invalid_fields(void **state)
{
    (void)state;
    char msg[256];
    assert_int_equal(ps_attention_desc_validate(NULL, msg, sizeof msg),
                     PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg, "desc"));
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        ps_attention_desc d = valid_desc();
        bad_cases[i].mutate(&d);
        ps_status st = ps_attention_desc_validate(&d, msg, sizeof msg);
        if (st != bad_cases[i].expected || !strstr(msg, bad_cases[i].field))
            fail_msg("case %zu (%s): status %d, message \"%s\"", i, bad_cases[i].field,
                     (int)st, msg);
        /* The reference refuses the same descriptor with the same status. */
        float x = 0.0f;
        assert_int_equal(ps_ref_exact_attention(&d, &x, &x, &x, &x, NULL),
                         bad_cases[i].expected);
    }
    /* Tiny message buffers are truncated safely. */
    ps_attention_desc d = valid_desc();
    d.batch = 0;
    char tiny[4];
    assert_int_equal(ps_attention_desc_validate(&d, tiny, sizeof tiny),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(strlen(tiny), 3);
}

static void test_resolve(void **state)
{
    (void)state;
    ps_attention_desc d = valid_desc(), r;
    d.n_k = 1000;
    d.budget = 5000; /* larger than n_k: clamped to keep every key */
    assert_int_equal(ps_attention_desc_resolve(&d, &r, NULL, 0), PS_OK);
    assert_true(fabsf(r.scale - 0.125f) < 1e-7f);
    assert_int_equal(r.budget, 1000);
    assert_int_equal(r.clusters, 16);
    assert_int_equal(r.block, 256);
    assert_int_equal(r.samples, 256);
    assert_int_equal(r.lsh_bits, 7);
    assert_int_equal(r.min_seq_len, 4096);
    assert_int_equal(r.kmeans_iters, 10);
    d.n_k = 100000;
    d.budget = 4096;
    assert_int_equal(ps_attention_desc_resolve(&d, &r, NULL, 0), PS_OK);
    assert_int_equal(r.clusters, 16);
    d.budget = 40; /* few kept keys: m / 4 clusters */
    assert_int_equal(ps_attention_desc_resolve(&d, &r, NULL, 0), PS_OK);
    assert_int_equal(r.clusters, 10);
    /* A share of the keys becomes a count, rounded up; none set: the default. */
    d.method = PS_METHOD_PRESCORE;
    d.budget = 0;
    d.keep_ratio = 0.1f;
    d.n_k = 1001;
    assert_int_equal(ps_attention_desc_resolve(&d, &r, NULL, 0), PS_OK);
    assert_int_equal(r.budget, 101);
    assert_true(r.keep_ratio == 0.0f && r.rescore_growth == 1.0f);
    d.keep_ratio = 0.0f;
    assert_int_equal(ps_attention_desc_resolve(&d, &r, NULL, 0), PS_OK);
    assert_int_equal(r.budget, 251); /* PS_KEEP_RATIO_DEFAULT = 0.25 */
    d.n_k = 2;
    d.keep_ratio = 1e-6f;
    assert_int_equal(ps_attention_desc_resolve(&d, &r, NULL, 0), PS_OK);
    assert_int_equal(r.budget, 1);
    /* Automatic global keys: min(64, C / 8) of the candidates, none for EXACT. */
    ps_attention_desc a;
    ps_attention_desc_default(&a);
    assert_true(a.global_keys == PS_GLOBAL_KEYS_AUTO);
    a.n_q = a.n_k = 100000;
    a.d = a.d_v = 64;
    assert_int_equal(ps_attention_desc_resolve(&a, &r, NULL, 0), PS_OK);
    assert_int_equal(r.global_keys, 0);
    a.method = PS_METHOD_HYPER;
    assert_int_equal(ps_attention_desc_resolve(&a, &r, NULL, 0), PS_OK);
    assert_int_equal(r.global_keys, 64);
    a.method = PS_METHOD_PRESCORE;
    a.budget = 200;
    assert_int_equal(ps_attention_desc_resolve(&a, &r, NULL, 0), PS_OK);
    assert_int_equal(r.global_keys, 25);
    a.sink = 300; /* forced keys raise the candidates */
    assert_int_equal(ps_attention_desc_resolve(&a, &r, NULL, 0), PS_OK);
    assert_int_equal(r.global_keys, 37);
    a.global_keys = 5; /* explicit values stay */
    assert_int_equal(ps_attention_desc_resolve(&a, &r, NULL, 0), PS_OK);
    assert_int_equal(r.global_keys, 5);
    d.scale = 0.5f;
    assert_int_equal(ps_attention_desc_resolve(&d, &r, NULL, 0), PS_OK);
    assert_true(r.scale == 0.5f);
}

/* The automatic selection and sketch resolve per plan: stratified with a
 * sketch where the plan can take both, top-m or no sketch elsewhere; an
 * explicit sketch needs a weighted resolved selection. */
static void test_resolve_selection(void **state)
{
    (void)state;
    ps_attention_desc a = valid_desc(), r;
    assert_true(a.selection == PS_SELECTION_AUTO && a.sketch_queries == PS_SKETCH_AUTO);
    a.n_q = a.n_k = 10000;
    assert_int_equal(ps_attention_desc_resolve(&a, &r, NULL, 0), PS_OK); /* EXACT */
    assert_true(r.selection == PS_SELECTION_TOP && r.sketch_queries == 0);
    a.method = PS_METHOD_HYPER;
    assert_int_equal(ps_attention_desc_resolve(&a, &r, NULL, 0), PS_OK);
    assert_true(r.selection == PS_SELECTION_TOP && r.sketch_queries == 0);
    a.method = PS_METHOD_PRESCORE;
    assert_int_equal(ps_attention_desc_resolve(&a, &r, NULL, 0), PS_OK);
    assert_true(r.selection == PS_SELECTION_STRATIFIED);
    assert_true(r.sketch_queries == PS_SKETCH_AUTO_QUERIES && r.global_keys > 0);
    assert_true(ps_desc_selection(&a) == PS_SELECTION_STRATIFIED);
    ps_attention_desc b = a;
    b.causal = 1; /* causal plans sketch in every node */
    assert_int_equal(ps_attention_desc_resolve(&b, &r, NULL, 0), PS_OK);
    assert_true(r.selection == PS_SELECTION_STRATIFIED &&
                r.sketch_queries == PS_SKETCH_AUTO_QUERIES);
    b.sketch_queries = 16;
    assert_int_equal(ps_attention_desc_validate(&b, NULL, 0), PS_OK);
    b = a;
    b.global_keys = 0; /* a sketch ranks the heavy keys: none without global keys */
    assert_int_equal(ps_attention_desc_resolve(&b, &r, NULL, 0), PS_OK);
    assert_true(r.selection == PS_SELECTION_STRATIFIED && r.sketch_queries == 0);
    const ps_score others[] = {PS_SCORE_LEVERAGE, PS_SCORE_NORM, PS_SCORE_NONE};
    for (size_t i = 0; i < 3; i++) { /* the stratified draw needs the clusters */
        b = a;
        b.score = others[i];
        assert_int_equal(ps_attention_desc_resolve(&b, &r, NULL, 0), PS_OK);
        assert_true(r.selection == PS_SELECTION_TOP && r.sketch_queries == 0);
    }
    b = a;
    b.global_score = PS_SCORE_NORM; /* global keys by another score */
    assert_int_equal(ps_attention_desc_resolve(&b, &r, NULL, 0), PS_OK);
    assert_true(r.selection == PS_SELECTION_TOP);
    b.global_score = PS_SCORE_KMEANS;
    assert_int_equal(ps_attention_desc_resolve(&b, &r, NULL, 0), PS_OK);
    assert_true(r.selection == PS_SELECTION_STRATIFIED);
    b = a;
    b.clusters = PS_STRATA_MAX_CLUSTERS + 1;
    assert_int_equal(ps_attention_desc_resolve(&b, &r, NULL, 0), PS_OK);
    assert_true(r.selection == PS_SELECTION_TOP);
    b = a;
    b.sketch_queries = 0; /* explicit values stay */
    assert_int_equal(ps_attention_desc_resolve(&b, &r, NULL, 0), PS_OK);
    assert_true(r.selection == PS_SELECTION_STRATIFIED && r.sketch_queries == 0);
    b.sketch_queries = 8;
    assert_int_equal(ps_attention_desc_resolve(&b, &r, NULL, 0), PS_OK);
    assert_true(r.sketch_queries == 8);
    b.score = PS_SCORE_NORM; /* an explicit sketch with AUTO resolving to top-m */
    assert_int_equal(ps_attention_desc_validate(&b, NULL, 0), PS_ERR_INVALID_ARGUMENT);
    b.score = PS_SCORE_KMEANS;
    b.sketch_queries = PS_SKETCH_MAX_QUERIES + 1;
    assert_int_equal(ps_attention_desc_validate(&b, NULL, 0), PS_ERR_UNSUPPORTED);
    b = a;
    b.selection = PS_SELECTION_TOP;
    assert_int_equal(ps_attention_desc_resolve(&b, &r, NULL, 0), PS_OK);
    assert_true(r.selection == PS_SELECTION_TOP && r.sketch_queries == 0);
    b.selection = (ps_selection)-2;
    assert_int_equal(ps_attention_desc_validate(&b, NULL, 0), PS_ERR_INVALID_ARGUMENT);
}

static void test_status_strings(void **state)
{
    (void)state;
    assert_string_equal(ps_status_string(PS_OK), "success");
    assert_string_equal(ps_status_string((ps_status)12345), "unknown status");
    for (int s = 0; s >= PS_ERR_INTERNAL; s--) {
        const char *text = ps_status_string((ps_status)s);
        assert_non_null(text);
        assert_string_not_equal(text, "unknown status");
    }
    assert_string_equal(ps_version_string(), PS_VERSION_STRING);
}

/* The kernel-source hash is the SHA-256 of what is embedded (each file's name,
 * NUL, decimal length, NUL, bytes), recomputed here with the library's own
 * SHA-256: a stale or mistyped hash would trace results to other kernels. */
static void test_kernel_source_hash(void **state)
{
    (void)state;
    ps_sha256 h;
    unsigned char digest[PS_SHA256_SIZE];
    char hex[2 * PS_SHA256_SIZE + 1], head[300];
    ps_sha256_init(&h);
    assert_true(ps_cl_source_count > 5);
    for (size_t i = 0; i < ps_cl_source_count; i++) {
        int len = snprintf(head, sizeof head, "%s%c%zu%c", ps_cl_sources[i].name, 0,
                           ps_cl_sources[i].length, 0);
        assert_true(len > 0 && (size_t)len < sizeof head);
        ps_sha256_update(&h, head, (size_t)len);
        ps_sha256_update(&h, ps_cl_sources[i].bytes, ps_cl_sources[i].length);
    }
    ps_sha256_final(&h, digest);
    for (size_t i = 0; i < PS_SHA256_SIZE; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    assert_string_equal(ps_kernel_source_hash(), hex);
}

static void test_ref_null_pointers(void **state)
{
    (void)state;
    ps_attention_desc d = valid_desc();
    d.n_q = d.n_k = 2;
    d.d = d.d_v = 16;
    float buf[64] = {0};
    assert_int_equal(ps_ref_exact_attention(&d, NULL, buf, buf, buf, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_exact_attention(&d, buf, NULL, buf, buf, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_exact_attention(&d, buf, buf, NULL, buf, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_exact_attention(&d, buf, buf, buf, NULL, NULL),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_exact_attention(NULL, buf, buf, buf, buf, NULL),
                     PS_ERR_INVALID_ARGUMENT);
}

/* The reference itself on a case small enough to do by hand: one query, two
 * keys with logits 0 and log 3 -> weights 1/4, 3/4. */
/* The reference's exact attention takes any valid descriptor: a
 * variable-length one with a stratified selection and a query sketch
 * (fields of the approximate method it drops) gives what the same
 * descriptor without them gives. */
static void test_ref_exact_any_selection(void **state)
{
    (void)state;
    static const uint32_t cu[3] = {0, 3, 5};
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.batch = 2;
    d.n_q = d.n_k = 5;
    d.d = d.d_v = 16;
    d.cu_seqlens_q = d.cu_seqlens_k = cu;
    float q[80], k[80], v[80], o1[80], o2[80];
    for (int i = 0; i < 80; i++) {
        q[i] = (float)((i * 7) % 11) / 11.0f;
        k[i] = (float)((i * 5) % 13) / 13.0f;
        v[i] = (float)((i * 3) % 17) / 17.0f;
    }
    assert_int_equal(ps_ref_exact_attention(&d, q, k, v, o1, NULL), PS_OK);
    d.method = PS_METHOD_PRESCORE;
    d.selection = PS_SELECTION_STRATIFIED;
    d.sketch_queries = 4;
    assert_int_equal(ps_ref_exact_attention(&d, q, k, v, o2, NULL), PS_OK);
    assert_memory_equal(o1, o2, sizeof o1);
}

static void test_ref_by_hand(void **state)
{
    (void)state;
    ps_attention_desc d = valid_desc();
    d.n_q = 1;
    d.n_k = 2;
    d.d = d.d_v = 16;
    d.scale = 1.0f;
    float q[16] = {0}, k[32] = {0}, v[32] = {0}, o[16], lse;
    q[0] = 1.0f;
    k[16] = logf(3.0f);
    for (int c = 0; c < 16; c++) {
        v[c] = 4.0f;
        v[16 + c] = 8.0f;
    }
    d.want_lse = 1;
    assert_int_equal(ps_ref_exact_attention(&d, q, k, v, o, &lse), PS_OK);
    for (int c = 0; c < 16; c++)
        assert_true(fabsf(o[c] - 7.0f) < 1e-5f);
    assert_true(fabsf(lse - logf(4.0f)) < 1e-6f);
    /* Causal with n_q > n_k: row 0 of 3 sees no key. */
    d.n_q = 3;
    d.causal = 1;
    float q3[48] = {0}, o3[48], lse3[3];
    assert_int_equal(ps_ref_exact_attention(&d, q3, k, v, o3, lse3), PS_OK);
    assert_true(o3[0] == 0.0f && isinf(lse3[0]) && lse3[0] < 0);
    assert_true(fabsf(o3[16] - 4.0f) < 1e-6f); /* row 1 sees key 0 only */
}

/* The dropped-key residual's choices (core/dropped_params.h): when it
 * applies, its mixing weight, and its draws (cl/select_common.h). */
static void test_dropped_params(void **state)
{
    (void)state;
    ps_attention_desc in, d;
    ps_attention_desc_default(&in);
    in.method = PS_METHOD_PRESCORE;
    in.n_q = in.n_k = 512;
    in.d = in.d_v = 32;
    in.budget = 128;
    in.block = 128;
    in.samples = 128;
    in.global_keys = 16;
    in.selection = PS_SELECTION_TOP;
    ps_dropped_params p;
    assert_int_equal(ps_attention_desc_resolve(&in, &d, NULL, 0), PS_OK);
    ps_dropped_params_from_desc(&d, &p);
    assert_true(p.active && p.kept == 128 && p.dropped == 384 && p.draws == 128);
    assert_true(p.keep_mix == 0.0); /* top-m keys stand for themselves */
    assert_true(fabs(p.log_weight - log(3.0)) < 1e-12);
    assert_true(ps_dropped_kept_log_weight(&p, 2.0) == 0.0);

    in.selection = PS_SELECTION_WEIGHTED; /* 112 drawn kept keys, 16 heavy */
    assert_int_equal(ps_attention_desc_resolve(&in, &d, NULL, 0), PS_OK);
    ps_dropped_params_from_desc(&d, &p);
    assert_true(p.active && fabs(p.keep_mix - 112.0 / 240.0) < 1e-12);
    assert_true(fabs(p.log_weight - log(384.0 * (128.0 / 240.0) / 128.0)) < 1e-12);
    assert_true(ps_dropped_kept_log_weight(&p, 0.0) == 0.0); /* heavy keys stay 1 */
    const double w = log(4.0);
    assert_true(fabs(ps_dropped_kept_log_weight(&p, w) - log(1.0 + 3.0 * 112.0 / 240.0)) < 1e-12);

    in.samples = 1000; /* more samples than dropped keys: each drawn once */
    assert_int_equal(ps_attention_desc_resolve(&in, &d, NULL, 0), PS_OK);
    ps_dropped_params_from_desc(&d, &p);
    assert_true(p.active && p.draws == 384);

    const struct {
        ps_method method;
        size_t budget, block, g;
    } off[] = {
        {PS_METHOD_PRESCORE, 128, 111, 16}, /* 112 keys past the g, blocks of 111 */
        {PS_METHOD_PRESCORE, 512, 1024, 16}, /* nothing dropped */
        {PS_METHOD_HYPER, 128, 1024, 16},    /* no selection */
    };
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
        in.method = off[i].method;
        in.selection = off[i].method == PS_METHOD_PRESCORE ? PS_SELECTION_WEIGHTED
                                                           : PS_SELECTION_TOP;
        in.budget = off[i].budget;
        in.block = off[i].block;
        in.global_keys = off[i].g;
        char msg[200];
        if (ps_attention_desc_resolve(&in, &d, msg, sizeof msg) != PS_OK)
            fail_msg("case %zu: %s", i, msg);
        ps_dropped_params_from_desc(&d, &p);
        assert_false(p.active);
    }
    in.method = PS_METHOD_PRESCORE;
    in.block = 112; /* exactly the 112 keys past the global ones */
    assert_int_equal(ps_attention_desc_resolve(&in, &d, NULL, 0), PS_OK);
    ps_dropped_params_from_desc(&d, &p);
    assert_true(p.active);
}

/* ps_dropped_row against counting by hand, and ps_dropped_rank: a
 * systematic sample (increasing, in range, distinct) with every dropped key
 * drawn with probability draws / nd over seeds. */
static void test_dropped_draws(void **state)
{
    (void)state;
    enum { N = 97 };
    uint32_t kept[N], dropped[N];
    for (uint32_t trial = 0; trial < 200; trial++) {
        uint32_t c = 0, nd = 0;
        for (uint32_t i = 0; i < N; i++) {
            const ps_philox_u4 r = ps_philox_draw(trial, PS_RNG_STAGE_TEST, 0u, i);
            if (r.v[0] % 3u == 0u || (trial % 7u == 0u && i < 10u))
                kept[c++] = i;
            else
                dropped[nd++] = i;
        }
        for (uint32_t r = 0; r < nd; r++)
            assert_int_equal(ps_dropped_row(kept, c, r), dropped[r]);
    }
    const uint32_t nd = 50, draws = 7, seeds = 20000;
    uint32_t hits[50] = {0};
    for (uint32_t seed = 0; seed < seeds; seed++)
        for (uint32_t j = 0; j < draws; j++) {
            const uint32_t r = ps_dropped_rank(seed, 3u, j, nd, draws);
            assert_true(r < nd);
            if (j > 0)
                assert_true(r > ps_dropped_rank(seed, 3u, j - 1u, nd, draws));
            hits[r]++;
        }
    const double expect = (double)seeds * draws / nd; /* 2800, sd about 49 */
    for (uint32_t r = 0; r < nd; r++)
        assert_true(fabs(hits[r] - expect) < 250.0);
    for (uint32_t j = 0; j < 5; j++) /* draws = nd: every key, in order */
        assert_int_equal(ps_dropped_rank(9u, 1u, j, 5u, 5u), j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),        cmocka_unit_test(test_invalid_fields),
        cmocka_unit_test(test_resolve),         cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_kernel_source_hash),
        cmocka_unit_test(test_ref_null_pointers), cmocka_unit_test(test_ref_by_hand),
        cmocka_unit_test(test_ref_exact_any_selection),
        cmocka_unit_test(test_resolve_selection),
        cmocka_unit_test(test_dropped_params),  cmocka_unit_test(test_dropped_draws),
    };
    return cmocka_run_group_tests_name("desc", tests, NULL, NULL);
}
