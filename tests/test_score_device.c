/* Device suite of the score stage (docs/SCORING.md): every score method on the
 * device against the host reference; k-means seeds and assignments compared
 * exactly, inertia monotone; leverage against a brute-force double solve and
 * its sum against rank(K); the planted-subspace model; K in callers' layouts
 * (fp16, [B, T, H, D], a cache view); edge cases and every invalid argument
 * of ps_score_keys. Outputs have a canary region behind them. */
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
#include "core/tensor_layout.h"
#include "ref/score_ref.h"
#include "score.h"
#include "support.h"

#define CANARY 12345.0f
#define CANARY_COUNT 64

typedef struct suite_state {
    ps_kernel_shape shape;
    ps_context *ctx;
    cl_context cl_ctx;
    cl_command_queue queue;
} suite_state;

static int setup_shape(void **state, ps_kernel_shape shape)
{
    suite_state *s = calloc(1, sizeof *s);
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.shape = shape;
    s->shape = shape;
    if (ps_context_create(&s->ctx, &opt) != PS_OK) {
        fprintf(stderr, "context: %s\n", ps_context_last_error(NULL));
        free(s);
        return -1;
    }
    ps_context_cl_handles(s->ctx, &s->cl_ctx, NULL, &s->queue);
    *state = s;
    return 0;
}
static int setup_cpu(void **state) { return setup_shape(state, PS_SHAPE_CPU); }
static int setup_gpu(void **state) { return setup_shape(state, PS_SHAPE_GPU); }
static int teardown(void **state)
{
    suite_state *s = *state;
    ps_context_destroy(s->ctx);
    free(s);
    return 0;
}

static void base_desc(ps_attention_desc *desc, size_t n, size_t d, ps_score score)
{
    ps_attention_desc_default(desc);
    desc->n_q = desc->n_k = n;
    desc->d = desc->d_v = d;
    desc->method = PS_METHOD_PRESCORE;
    desc->budget = n; /* keep all: clusters default to min(256, n / 4) */
    desc->score = score;
    desc->seed = ts_seed();
}

static cl_mem upload(suite_state *s, const float *data, size_t n, size_t extra)
{
    cl_int err;
    cl_mem m = clCreateBuffer(s->cl_ctx, CL_MEM_READ_WRITE, (n + extra) * sizeof(float), NULL,
                              &err);
    assert_int_equal(err, CL_SUCCESS);
    float *tmp = malloc((n + extra) * sizeof(float));
    assert_non_null(tmp);
    for (size_t i = 0; i < n; i++)
        tmp[i] = data ? data[i] : NAN; /* outputs start poisoned */
    for (size_t i = 0; i < extra; i++)
        tmp[n + i] = CANARY;
    assert_int_equal(clEnqueueWriteBuffer(s->queue, m, CL_TRUE, 0, (n + extra) * sizeof(float),
                                          tmp, 0, NULL, NULL),
                     CL_SUCCESS);
    free(tmp);
    return m;
}

/* A read-only copy of `bytes` bytes of data. */
static cl_mem upload_bytes(suite_state *s, const void *data, size_t bytes)
{
    cl_int err;
    cl_mem m = clCreateBuffer(s->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes,
                              (void *)data, &err);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

/* Scores k (laid out as desc->k_layout says) on the device with a fresh
 * plan; leaves the plan for inspection when `keep` is non-NULL. Checks the
 * canary. */
static void device_scores(suite_state *s, const ps_attention_desc *desc, const void *k,
                          float *scores, ps_plan **keep)
{
    const size_t ns = desc->batch * desc->kv_heads * desc->n_k;
    ps_plan *plan = NULL;
    ps_status st = ps_plan_create(s->ctx, desc, &plan);
    if (st != PS_OK)
        fail_msg("plan: %s: %s", ps_status_string(st), ps_context_last_error(s->ctx));
    cl_mem bk = upload_bytes(s, k, ps_layout_bytes(desc, PS_TENSOR_K));
    cl_mem bs = upload(s, NULL, ns, CANARY_COUNT);
    st = ps_score_keys(plan, bk, bs);
    if (st != PS_OK)
        fail_msg("ps_score_keys: %s: %s", ps_status_string(st), ps_plan_last_error(plan));
    float *out = malloc((ns + CANARY_COUNT) * sizeof *out);
    assert_non_null(out);
    assert_int_equal(clEnqueueReadBuffer(s->queue, bs, CL_TRUE, 0,
                                         (ns + CANARY_COUNT) * sizeof(float), out, 0, NULL,
                                         NULL),
                     CL_SUCCESS);
    for (size_t i = 0; i < CANARY_COUNT; i++)
        assert_true(out[ns + i] == CANARY);
    memcpy(scores, out, ns * sizeof(float));
    /* The host-array form gives the same scores, bit for bit. */
    st = ps_score_keys_host(plan, k, out);
    if (st != PS_OK)
        fail_msg("ps_score_keys_host: %s: %s", ps_status_string(st), ps_plan_last_error(plan));
    assert_memory_equal(out, scores, ns * sizeof(float));
    free(out);
    clReleaseMemObject(bk);
    clReleaseMemObject(bs);
    if (keep)
        *keep = plan;
    else
        ps_plan_destroy(plan);
}

/* max over i of |a - b| / (rel * |b| + abs). <= 1 passes. */
static double tol_ratio(const float *a, const float *b, size_t n, double rel, double abs_tol)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - b[i]) / (rel * fabs((double)b[i]) + abs_tol);
        worst = isnan(e) ? INFINITY : fmax(worst, e);
    }
    return worst;
}

/* Well-separated blobs: cluster memberships have no near ties. */
static void fill_blobs(float *k, size_t heads, size_t n, size_t d, size_t blobs, uint64_t seed)
{
    float *centers = malloc(blobs * d * sizeof *centers);
    assert_non_null(centers);
    for (size_t h = 0; h < heads; h++) {
        ts_fill_normal(centers, blobs * d, seed, 100 + h, 6.0f);
        ts_fill_normal(k + h * n * d, n * d, seed, 200 + h, 0.4f);
        for (size_t i = 0; i < n; i++) {
            const size_t b = (i * 7 + i / 13) % blobs;
            for (size_t t = 0; t < d; t++)
                k[(h * n + i) * d + t] += centers[b * d + t];
        }
    }
    free(centers);
}

/* k-means scores of one head against the reference's: relative 1e-3, and
 * as they are sums of squares, an absolute floor scaled by their mean. */
#define KMEANS_REL 1e-3
static double kmeans_floor(const float *ref, size_t n)
{
    double mean = 0.0;
    for (size_t i = 0; i < n; i++)
        mean += ref[i] / (double)n;
    return 1e-5 * mean + 1e-12;
}

/* Device vs reference k-means: identical seeds and assignments, scores within
 * tolerance, inertia non-increasing on both, same iteration count. k is laid
 * out as desc->k_layout says. Returns the fraction of assignments that differ
 * (0 required when `exact`). The scores are copied to dev_out / ref_out when
 * they are not NULL. */
static double compare_kmeans(suite_state *s, const ps_attention_desc *desc, const void *k,
                             int exact, float *dev_out, float *ref_out)
{
    const size_t H = desc->batch * desc->kv_heads, n = desc->n_k, d = desc->d;
    ps_attention_desc r;
    ps_plan *plan = NULL;
    float *scores = malloc(H * n * sizeof *scores), *ref = malloc(H * n * sizeof *ref);
    float *dense = malloc(H * n * d * sizeof *dense); /* the reference's keys */
    assert_true(scores && ref && dense);
    ps_layout_to_f32(desc, PS_TENSOR_K, k, dense);
    device_scores(s, desc, k, scores, &plan);
    assert_int_equal(ps_plan_desc(plan, &r), PS_OK);
    const size_t c = r.clusters, iters1 = r.kmeans_iters + 1;
    uint32_t *seeds = malloc(H * c * 4), *assign = malloc(H * n * 4), *iters = malloc(H * 4);
    uint32_t *rseeds = malloc(c * 4), *rassign = malloc(n * 4);
    float *inertia = malloc(H * iters1 * sizeof(float));
    double *rinertia = malloc(iters1 * sizeof(double));
    assert_true(seeds && assign && iters && rseeds && rassign && inertia && rinertia);
    assert_int_equal(ps_score_kmeans_read(plan, seeds, assign, NULL, inertia, iters), PS_OK);
    size_t differ = 0;
    double worst = 0.0; /* score tolerance ratio over keys with the same cluster */
    for (size_t h = 0; h < H; h++) {
        size_t riters = 0;
        assert_int_equal(ps_ref_kmeans(&r, dense + h * n * d, (uint32_t)h, rseeds, rassign,
                                       NULL, rinertia, &riters, ref + h * n),
                         PS_OK);
        assert_memory_equal(seeds + h * c, rseeds, c * 4); /* integer D^2: bit-exact */
        const double floor_h = kmeans_floor(ref + h * n, n);
        for (size_t i = 0; i < n; i++) {
            differ += assign[h * n + i] != rassign[i];
            if (assign[h * n + i] == rassign[i])
                worst = fmax(worst, tol_ratio(scores + h * n + i, ref + h * n + i, 1,
                                              KMEANS_REL, floor_h));
        }
        for (size_t t = 1; t < iters1; t++) {
            const float *in = inertia + h * iters1;
            if (!(in[t] <= in[t - 1] * (1.0 + 1e-5) + 1e-6))
                fail_msg("device inertia rose at step %zu: %.9g -> %.9g", t, in[t - 1], in[t]);
            if (!(rinertia[t] <= rinertia[t - 1] * (1.0 + 1e-12)))
                fail_msg("reference inertia rose at step %zu: %.17g -> %.17g", t,
                         rinertia[t - 1], rinertia[t]);
        }
        if (exact) {
            assert_int_equal(iters[h], riters);
            for (size_t t = 0; t < iters1; t++)
                if (!(fabs(inertia[h * iters1 + t] - rinertia[t]) <=
                      1e-4 * rinertia[t] + 1e-3))
                    fail_msg("inertia step %zu: device %.9g reference %.9g", t,
                             inertia[h * iters1 + t], rinertia[t]);
        }
    }
    const double frac = (double)differ / (double)(H * n);
    printf("# kmeans n %zu d %zu c %zu heads %zu: iters %u, assignments differing %zu, "
           "inertia %.6g -> %.6g, score tolerance ratio %.3g\n",
           n, d, c, H, iters[0], differ, inertia[0], inertia[iters1 - 1], worst);
    if (exact)
        assert_int_equal(differ, 0);
    /* A key of a near tie changes mu and one cluster's term by ~1/n only. */
    if (!(worst <= 1.0))
        fail_msg("k-means scores differ from the reference (ratio %.3g, seed %llu)", worst,
                 (unsigned long long)ts_seed());
    if (dev_out)
        memcpy(dev_out, scores, H * n * sizeof *scores);
    if (ref_out)
        memcpy(ref_out, ref, H * n * sizeof *ref);
    ps_plan_destroy(plan);
    free(scores);
    free(ref);
    free(dense);
    free(seeds);
    free(assign);
    free(iters);
    free(rseeds);
    free(rassign);
    free(inertia);
    free(rinertia);
    return frac;
}

static void test_kmeans_blobs(void **state)
{
    suite_state *s = *state;
    const size_t n = 1500, d = 64;
    ps_attention_desc desc;
    base_desc(&desc, n, d, PS_SCORE_KMEANS);
    desc.batch = 2;
    desc.heads = 4;
    desc.kv_heads = 2;
    desc.clusters = 20;
    float *k = malloc(4 * n * d * sizeof *k);
    assert_non_null(k);
    fill_blobs(k, 4, n, d, 20, ts_seed());
    compare_kmeans(s, &desc, k, 1, NULL, NULL);
    /* fewer clusters than blobs, more iterations, d = 128 and odd n */
    ps_attention_desc d2;
    base_desc(&d2, 777, 128, PS_SCORE_KMEANS);
    d2.clusters = 8;
    d2.kmeans_iters = 25;
    fill_blobs(k, 1, 777, 128, 8, ts_seed() + 1);
    compare_kmeans(s, &d2, k, 1, NULL, NULL);
    free(k);
}

/* Gaussian keys: near ties are possible, so assignments may differ in a few
 * keys; seeds must still be identical and inertia monotone. */
static void test_kmeans_gaussian(void **state)
{
    suite_state *s = *state;
    const size_t n = 4096, d = 64;
    ps_attention_desc desc;
    base_desc(&desc, n, d, PS_SCORE_KMEANS);
    desc.budget = 256; /* c = 64 */
    float *k = malloc(n * d * sizeof *k);
    assert_non_null(k);
    ts_fill_normal(k, n * d, ts_seed(), 3, 1.0f);
    const double frac = compare_kmeans(s, &desc, k, 0, NULL, NULL);
    if (!(frac < 0.02))
        fail_msg("%.2f%% of assignments differ from the reference", 100.0 * frac);
    free(k);
}

static void test_norm_none(void **state)
{
    suite_state *s = *state;
    const size_t n = 1001, d = 96;
    ps_attention_desc desc;
    base_desc(&desc, n, d, PS_SCORE_NORM);
    desc.batch = 2;
    float *k = malloc(2 * n * d * sizeof *k), *a = malloc(2 * n * 4), *b = malloc(2 * n * 4);
    assert_true(k && a && b);
    ts_fill_normal(k, 2 * n * d, ts_seed(), 4, 2.0f);
    device_scores(s, &desc, k, a, NULL);
    assert_int_equal(ps_ref_score_keys(&desc, k, b), PS_OK);
    assert_true(tol_ratio(a, b, 2 * n, 1e-5, 1e-6) <= 1.0);
    desc.score = PS_SCORE_NONE;
    device_scores(s, &desc, k, a, NULL);
    assert_int_equal(ps_ref_score_keys(&desc, k, b), PS_OK);
    for (size_t i = 0; i < 2 * n; i++) {
        assert_true(a[i] == 1.0f);
        assert_true(b[i] == 1.0f);
    }
    free(k);
    free(a);
    free(b);
}

/* Brute force: (K^T K + lambda I) x = k_i by Gaussian elimination with
 * partial pivoting in double, score k_i . x. Independent of the library's
 * Cholesky. */
static void brute_leverage(const float *k, size_t n, size_t d, double lambda_rel,
                           double *out)
{
    double *A = calloc(d * d, sizeof *A), *M = malloc(d * d * sizeof *M), *x = malloc(d * 8);
    assert_true(A && M && x);
    for (size_t i = 0; i < n; i++)
        for (size_t a = 0; a < d; a++)
            for (size_t b = 0; b < d; b++)
                A[a * d + b] += (double)k[i * d + a] * k[i * d + b];
    double trace = 0.0;
    for (size_t t = 0; t < d; t++)
        trace += A[t * d + t];
    const double lambda = lambda_rel * trace / (double)d;
    for (size_t t = 0; t < d; t++)
        A[t * d + t] += lambda;
    for (size_t i = 0; i < n; i++) {
        memcpy(M, A, d * d * sizeof *M);
        for (size_t t = 0; t < d; t++)
            x[t] = k[i * d + t];
        for (size_t col = 0; col < d; col++) {
            size_t piv = col;
            for (size_t r = col + 1; r < d; r++)
                if (fabs(M[r * d + col]) > fabs(M[piv * d + col]))
                    piv = r;
            for (size_t t = 0; t < d; t++) {
                const double tmp = M[col * d + t];
                M[col * d + t] = M[piv * d + t];
                M[piv * d + t] = tmp;
            }
            const double tx = x[col];
            x[col] = x[piv];
            x[piv] = tx;
            for (size_t r = col + 1; r < d; r++) {
                const double f = M[r * d + col] / M[col * d + col];
                for (size_t t = col; t < d; t++)
                    M[r * d + t] -= f * M[col * d + t];
                x[r] -= f * x[col];
            }
        }
        for (size_t col = d; col-- > 0;) {
            double v = x[col];
            for (size_t t = col + 1; t < d; t++)
                v -= M[col * d + t] * x[t];
            x[col] = v / M[col * d + col];
        }
        double sc = 0.0;
        for (size_t t = 0; t < d; t++)
            sc += x[t] * k[i * d + t];
        out[i] = sc;
    }
    free(A);
    free(M);
    free(x);
}

static void leverage_case(suite_state *s, size_t n, size_t d, size_t batch)
{
    ps_attention_desc desc;
    base_desc(&desc, n, d, PS_SCORE_LEVERAGE);
    desc.batch = batch;
    const size_t total = batch * n;
    float *k = malloc(total * d * sizeof *k), *a = malloc(total * 4), *b = malloc(total * 4);
    float *bf = malloc(total * sizeof *bf);
    double *brute = malloc(n * sizeof *brute);
    assert_true(k && a && b && bf && brute);
    ts_fill_normal(k, total * d, ts_seed(), 5 + d, 1.0f);
    for (size_t i = 0; i < total; i++) /* anisotropic columns and a few heavy rows */
        for (size_t t = 0; t < d; t++)
            k[i * d + t] *= (float)(0.2 + t * 0.1) * (i % 97 == 0 ? 8.0f : 1.0f);
    for (size_t h = 0; h < batch; h++) {
        brute_leverage(k + h * n * d, n, d, PS_LEVERAGE_LAMBDA_DEFAULT, brute);
        for (size_t i = 0; i < n; i++)
            bf[h * n + i] = (float)brute[i];
    }
    device_scores(s, &desc, k, a, NULL);
    assert_int_equal(ps_ref_score_keys(&desc, k, b), PS_OK);
    const double rd = tol_ratio(a, bf, total, 2e-3, 1e-5);
    const double rr = tol_ratio(b, bf, total, 3e-4, 1e-9); /* 12 significant bits */
    printf("# leverage n %zu d %zu batch %zu: device/brute ratio %.3g, reference/brute %.3g\n",
           n, d, batch, rd, rr);
    assert_true(rd <= 1.0);
    assert_true(rr <= 1.0);
    free(k);
    free(a);
    free(b);
    free(bf);
    free(brute);
}

static void test_leverage_brute(void **state)
{
    leverage_case(*state, 700, 32, 1);
    leverage_case(*state, 301, 128, 2);
    /* 32768 keys: PoCL once packed lev_apply's work-items into groups of
     * 2048 and overflowed its stack (a crash, from n = 32768 on). */
    leverage_case(*state, 32768, 64, 1);
}

/* Tiny ridge: leverage scores sum to rank(K), for full-rank and for
 * rank-deficient K = A B (A n x r, B r x d). */
static void test_leverage_rank(void **state)
{
    suite_state *s = *state;
    const size_t n = 2000, d = 64, ranks[] = {64, 8, 24};
    float *k = malloc(n * d * sizeof *k), *a = malloc(n * 4), *b = malloc(n * 4);
    float *A = malloc(n * d * sizeof *A), *B = malloc(d * d * sizeof *B);
    assert_true(k && a && b && A && B);
    for (size_t q = 0; q < sizeof ranks / sizeof ranks[0]; q++) {
        const size_t r = ranks[q];
        ts_fill_normal(A, n * r, ts_seed(), 6 + q, 1.0f);
        ts_fill_normal(B, r * d, ts_seed(), 16 + q, 1.0f);
        for (size_t i = 0; i < n; i++)
            for (size_t t = 0; t < d; t++) {
                double v = 0.0;
                for (size_t u = 0; u < r; u++)
                    v += (double)A[i * r + u] * B[u * d + t];
                k[i * d + t] = (float)v;
            }
        ps_attention_desc desc;
        base_desc(&desc, n, d, PS_SCORE_LEVERAGE);
        desc.leverage_lambda = 1e-5f;
        device_scores(s, &desc, k, a, NULL);
        assert_int_equal(ps_ref_score_keys(&desc, k, b), PS_OK);
        double sa = 0.0, sb = 0.0;
        for (size_t i = 0; i < n; i++) {
            sa += a[i];
            sb += b[i];
        }
        printf("# leverage rank %zu: device sum %.4f, reference sum %.4f\n", r, sa, sb);
        if (!(fabs(sb - (double)r) < 0.01 * r && fabs(sa - (double)r) < 0.05 * r))
            fail_msg("leverage sums %.4f (device) %.4f (reference) for rank %zu", sa, sb, r);
    }
    free(k);
    free(a);
    free(b);
    free(A);
    free(B);
}

/* The paper's planted-subspace model: the bulk (N(0,1)) spans the first 48
 * dims, `heavy` keys at random positions point into the other 16 with
 * per-dim sigma `sigma_h` (their part in the bulk's span shrunk to 0.1).
 * Strong model (sigma_h = 6, norm ~24 against the bulk's ~7): KMEANS and
 * LEVERAGE keep them all in the top m, keeping by position (NONE) does not.
 * Subtle model (sigma_h = 1.5, norm ~ the bulk's, so NORM cannot see them):
 * LEVERAGE still does; KMEANS recall is reported only (docs/SCORING.md: its
 * score measures distance from the keys' mean, and these keys are not
 * farther out than the bulk). */
static void planted(suite_state *s, float sigma_h, int strong)
{
    const size_t n = 8192, d = 64, span = 48, heavy = 24, m = 256;
    float *k = malloc(n * d * sizeof *k), *sc = malloc(n * 4);
    size_t *pos = malloc(heavy * sizeof *pos);
    char *is_heavy = calloc(n, 1);
    assert_true(k && sc && pos && is_heavy);
    ts_fill_normal(k, n * d, ts_seed(), 7, 1.0f);
    for (size_t i = 0; i < n; i++)
        for (size_t t = span; t < d; t++)
            k[i * d + t] *= 0.01f;
    uint64_t x = ts_seed() | 1;
    for (size_t h = 0; h < heavy; h++) {
        size_t p;
        do {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            p = (size_t)(x >> 33) % n;
        } while (is_heavy[p]);
        is_heavy[p] = 1;
        pos[h] = p;
        for (size_t t = 0; t < d; t++) /* off-span part was 0.01 N(0,1) */
            k[p * d + t] *= t < span ? 0.1f : 100.0f * sigma_h;
    }
    const ps_score methods[] = {PS_SCORE_KMEANS, PS_SCORE_LEVERAGE, PS_SCORE_NORM,
                                PS_SCORE_NONE};
    const char *names[] = {"kmeans", "leverage", "norm", "none"};
    for (size_t q = 0; q < 4; q++) {
        ps_attention_desc desc;
        base_desc(&desc, n, d, methods[q]);
        desc.budget = m;
        device_scores(s, &desc, k, sc, NULL);
        /* rank of each heavy key: keys scoring higher, ties to lower position */
        size_t found = 0;
        for (size_t h = 0; h < heavy; h++) {
            const size_t p = pos[h];
            size_t above = 0;
            for (size_t i = 0; i < n; i++)
                above += sc[i] > sc[p] || (sc[i] == sc[p] && i < p);
            found += above < m;
        }
        const double recall = (double)found / heavy;
        printf("# planted subspace (sigma_h %.1f): %s recall %.3f at m = %zu\n", sigma_h,
               names[q], recall, m);
        const int must = methods[q] == PS_SCORE_LEVERAGE ||
                         (strong && methods[q] == PS_SCORE_KMEANS);
        if (methods[q] == PS_SCORE_NONE)
            assert_true(recall < 0.5);
        else if (must && !(recall >= 0.95))
            fail_msg("%s recall %.3f < 0.95 (seed %llu)", names[q], recall,
                     (unsigned long long)ts_seed());
    }
    free(k);
    free(sc);
    free(pos);
    free(is_heavy);
}

static void test_planted_subspace(void **state)
{
    planted(*state, 6.0f, 1);
    planted(*state, 1.5f, 0);
}

/* Worst (largest) rank of the keys at `pos` by score, ties to the lower
 * position as in selection; 0 is the top. */
static size_t worst_rank(const float *sc, size_t n, const size_t *pos, size_t count)
{
    size_t worst = 0;
    for (size_t h = 0; h < count; h++) {
        const size_t p = pos[h];
        size_t above = 0;
        for (size_t i = 0; i < n; i++)
            above += sc[i] > sc[p] || (sc[i] == sc[p] && i < p);
        worst = above > worst ? above : worst;
    }
    return worst;
}

/* The heavy-key workload of prescore-bench --workload heavy: N(0,1) bulk keys
 * and 16 keys beta u + 0.1 N(0,1) with beta = 2 sqrt(d) (about twice the bulk
 * norm, a tight cluster) along a seeded unit direction u. The ratio
 * dist / cluster-sum score ranked them as low as 512th (they are close to
 * their own centroid); the cluster term ||c - mu||^2 must put all of them in
 * the top 64, on the device and in the reference, which must agree. */
static void test_heavy_keys(void **state)
{
    suite_state *s = *state;
    const size_t n = 8192, d = 64, heavy = 16, top = 64;
    float *k = malloc(n * d * sizeof *k), *u = malloc(d * sizeof *u);
    float *noise = malloc(heavy * d * sizeof *noise);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    size_t pos[16];
    char *is_heavy = calloc(n, 1);
    assert_true(k && u && noise && a && b && is_heavy);
    ts_fill_normal(k, n * d, ts_seed(), 21, 1.0f);
    ts_fill_normal(u, d, ts_seed(), 22, 1.0f);
    ts_fill_normal(noise, heavy * d, ts_seed(), 23, 0.1f);
    double un = 0.0;
    for (size_t t = 0; t < d; t++)
        un += (double)u[t] * u[t];
    const double beta = 2.0 * sqrt((double)d) / sqrt(un);
    uint64_t x = ts_seed() ^ 0x9e3779b97f4a7c15ull;
    for (size_t h = 0; h < heavy; h++) {
        size_t p;
        do {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            p = (size_t)(x >> 33) % n;
        } while (is_heavy[p]);
        is_heavy[p] = 1;
        pos[h] = p;
        for (size_t t = 0; t < d; t++)
            k[p * d + t] = (float)(beta * u[t]) + noise[h * d + t];
    }
    ps_attention_desc desc;
    base_desc(&desc, n, d, PS_SCORE_KMEANS);
    desc.budget = 4096; /* c = 256 */
    const double frac = compare_kmeans(s, &desc, k, 0, a, b);
    const size_t rd = worst_rank(a, n, pos, heavy), rr = worst_rank(b, n, pos, heavy);
    desc.score = PS_SCORE_LEVERAGE;
    device_scores(s, &desc, k, b, NULL);
    const size_t rl = worst_rank(b, n, pos, heavy);
    printf("# heavy keys n %zu: worst rank kmeans device %zu reference %zu, leverage %zu; "
           "%.3f%% assignments differ\n",
           n, rd, rr, rl, 100.0 * frac);
    if (!(rd < top && rr < top && frac < 0.02))
        fail_msg("heavy keys: worst rank %zu (device) %zu (reference), %.3f%% assignments "
                 "differ (seed %llu)",
                 rd, rr, 100.0 * frac, (unsigned long long)ts_seed());
    free(k);
    free(u);
    free(noise);
    free(a);
    free(b);
    free(is_heavy);
}

/* Keys that tie in exact arithmetic must tie on the device too (scores
 * rounded to fewer bits, ps_score_round), so that selection keeps the same
 * keys as the reference: the two keys of a one-cluster KMEANS (centroid at
 * their midpoint), and LEVERAGE of fewer keys than d, where every score is
 * 1 - O(lambda) (also with a ridge below the floor, which once gave NaN). */
static void test_exact_ties(void **state)
{
    suite_state *s = *state;
    float k[30 * 128], a[30], b[30];
    /* A tie still splits when a rounding boundary falls between the two
     * float values (~1 in 130-260); unrounded, half of them split. */
    size_t split = 0;
    for (uint64_t q = 0; q < 16; q++) {
        ps_attention_desc desc;
        base_desc(&desc, 2, 32, PS_SCORE_KMEANS);
        desc.budget = 1; /* one cluster */
        desc.seed = ts_seed() + q;
        ts_fill_normal(k, 2 * 32, ts_seed(), 30 + q, 1.0f);
        device_scores(s, &desc, k, a, NULL);
        assert_int_equal(ps_ref_score_keys(&desc, k, b), PS_OK);
        if (!(b[0] == b[1]))
            fail_msg("two-key cluster: reference %.9g %.9g", b[0], b[1]);
        split += a[0] != a[1];
    }
    if (!(split <= 1))
        fail_msg("two-key clusters: %zu of 16 device ties split (seed %llu)", split,
                 (unsigned long long)ts_seed());
    const float lambdas[] = {1e-5f, 1e-30f};
    for (size_t l = 0; l < 2; l++)
        for (uint64_t q = 0; q < 4; q++) {
            ps_attention_desc desc;
            base_desc(&desc, 30, 128, PS_SCORE_LEVERAGE);
            desc.leverage_lambda = lambdas[l];
            ts_fill_normal(k, 30 * 128, ts_seed(), 40 + q, 1.0f);
            device_scores(s, &desc, k, a, NULL);
            assert_int_equal(ps_ref_score_keys(&desc, k, b), PS_OK);
            for (size_t i = 0; i < 30; i++) /* all 1 - O(lambda): one value */
                if (!(a[i] == b[i] && a[i] == b[0]))
                    fail_msg("rank-deficient leverage (lambda %g) key %zu: device %.9g "
                             "reference %.9g, key 0 %.9g",
                             lambdas[l], i, a[i], b[i], b[0]);
        }
}

/* Device scores a against reference scores b of H heads of n keys, as each
 * method's own tests compare them: the tolerance ratio, <= 1 passes. */
static double score_ratio(ps_score score, const float *a, const float *b, size_t H, size_t n)
{
    if (score == PS_SCORE_NORM)
        return tol_ratio(a, b, H * n, 1e-5, 1e-6); /* test_norm_none */
    if (score == PS_SCORE_LEVERAGE)
        return tol_ratio(a, b, H * n, 2e-3, 1e-5); /* leverage_case's device bound */
    double worst = 0.0; /* compare_kmeans, every key (same assignments) */
    for (size_t h = 0; h < H; h++)
        worst = fmax(worst, tol_ratio(a + h * n, b + h * n, n, KMEANS_REL,
                                      kmeans_floor(b + h * n, n)));
    return worst;
}

/* The K layouts of test_k_layouts. */
typedef enum k_form { FORM_F16, FORM_BTHD, FORM_CACHE, FORM_COUNT } k_form;
static const char *const form_names[FORM_COUNT] = {"fp16 dense", "fp32 [B, T, H, D]",
                                                   "fp16 cache view"};

static void set_k_form(ps_attention_desc *desc, k_form form)
{
    ps_tensor_layout *l = &desc->k_layout;
    if (form == FORM_BTHD) {
        assert_int_equal(ps_attention_desc_set_layout(desc, PS_LAYOUT_BTHD), PS_OK);
    } else if (form == FORM_CACHE) { /* the first n_k rows of n_k + 19 per head */
        const size_t rows = desc->n_k + 19;
        l->offset = 3;
        l->stride[0] = desc->kv_heads * rows * desc->d;
        l->stride[1] = rows * desc->d;
        l->stride[2] = desc->d;
        l->stride[3] = 1;
    }
    l->dtype = form == FORM_BTHD ? PS_DTYPE_F32 : PS_DTYPE_F16;
}

/* The keys k (dense fp32) laid out as desc->k_layout says, in a buffer of
 * its extent whose other elements hold a poison value that would change
 * any score it entered. */
static void *lay_out(const ps_attention_desc *desc, const float *k)
{
    const size_t elems = ps_layout_extent(desc, PS_TENSOR_K);
    const int f16 = desc->k_layout.dtype == PS_DTYPE_F16;
    void *buf = malloc(elems * ps_dtype_size(desc->k_layout.dtype));
    assert_non_null(buf);
    for (size_t i = 0; i < elems; i++) {
        if (f16)
            ((uint16_t *)buf)[i] = ps_float_to_half(1000.0f);
        else
            ((float *)buf)[i] = 1000.0f;
    }
    ps_layout_from_f32(desc, PS_TENSOR_K, k, buf);
    return buf;
}

/* K as callers lay it out, for KMEANS, LEVERAGE and NORM: fp16 dense, fp32
 * [B, T, H, D] and an fp16 view into a longer cache at an element offset
 * (batch 2, 2 KV heads, odd n_k). ps_score_keys must agree with
 * ps_ref_score_keys on the same bytes as the dense tests do, read nothing
 * outside the view, and, since fp16 is widened exactly, give the scores of
 * a dense fp32 K holding the same values. n_k < min_seq_len: the plans are
 * on the exact path, whose plans take any layout. */
static void test_k_layouts(void **state)
{
    suite_state *s = *state;
    const size_t n = 301, d = 64, H = 4;
    float *k = malloc(H * n * d * sizeof *k);
    float *dev = malloc(H * n * 4), *ref = malloc(H * n * 4);
    float *plain = malloc(H * n * 4), *plain_ref = malloc(H * n * 4);
    assert_true(k && dev && ref && plain && plain_ref);
    fill_blobs(k, H, n, d, 20, ts_seed()); /* no near ties: same assignments */
    for (size_t i = 0; i < H * n * d; i++) /* values every form holds exactly */
        k[i] = ps_half_to_float(ps_float_to_half(k[i]));
    const ps_score methods[] = {PS_SCORE_KMEANS, PS_SCORE_LEVERAGE, PS_SCORE_NORM};
    const char *names[] = {"kmeans", "leverage", "norm"};
    for (size_t q = 0; q < 3; q++) {
        ps_attention_desc base;
        base_desc(&base, n, d, methods[q]);
        base.batch = 2;
        base.heads = 4;
        base.kv_heads = 2;
        base.clusters = 20;
        device_scores(s, &base, k, plain, NULL);
        assert_int_equal(ps_ref_score_keys(&base, k, plain_ref), PS_OK);
        for (int form = 0; form < FORM_COUNT; form++) {
            ps_attention_desc desc = base;
            set_k_form(&desc, (k_form)form);
            void *bytes = lay_out(&desc, k);
            /* The reference widens on the host: exactly the dense run. */
            assert_int_equal(ps_ref_score_keys(&desc, bytes, ref), PS_OK);
            assert_memory_equal(ref, plain_ref, H * n * 4);
            if (methods[q] == PS_SCORE_KMEANS)
                compare_kmeans(s, &desc, bytes, 1, dev, NULL);
            else
                device_scores(s, &desc, bytes, dev, NULL);
            const double to_ref = score_ratio(methods[q], dev, ref, H, n);
            const double to_plain = score_ratio(methods[q], dev, plain, H, n);
            size_t differ = 0;
            for (size_t i = 0; i < H * n; i++)
                differ += dev[i] != plain[i];
            printf("# %s, K %s: tolerance ratio %.3g to the reference, %.3g to dense fp32 "
                   "(%zu of %zu scores not bit-identical)\n",
                   names[q], form_names[form], to_ref, to_plain, differ, H * n);
            if (!(to_ref <= 1.0 && to_plain <= 1.0))
                fail_msg("%s, K %s: ratio %.3g to the reference, %.3g to dense fp32 (seed "
                         "%llu)",
                         names[q], form_names[form], to_ref, to_plain,
                         (unsigned long long)ts_seed());
            free(bytes);
        }
    }
    free(k);
    free(dev);
    free(ref);
    free(plain);
    free(plain_ref);
}

/* No float atomics, fixed reduction orders: the same plan on the same keys
 * gives bit-identical scores, call after call, for every method. */
static void test_repeatable(void **state)
{
    suite_state *s = *state;
    const size_t n = 3000, d = 64;
    float *k = malloc(n * d * sizeof *k), *a = malloc(n * 4), *b = malloc(n * 4);
    assert_true(k && a && b);
    ts_fill_normal(k, n * d, ts_seed(), 9, 1.0f);
    const ps_score methods[] = {PS_SCORE_KMEANS, PS_SCORE_LEVERAGE, PS_SCORE_NORM};
    for (size_t q = 0; q < 3; q++) {
        ps_attention_desc desc;
        base_desc(&desc, n, d, methods[q]);
        desc.budget = 400;
        ps_plan *plan = NULL;
        assert_int_equal(ps_plan_create(s->ctx, &desc, &plan), PS_OK);
        cl_mem bk = upload(s, k, n * d, 0), bs = upload(s, NULL, n, 0);
        for (int r = 0; r < 2; r++) {
            assert_int_equal(ps_score_keys(plan, bk, bs), PS_OK);
            assert_int_equal(clEnqueueReadBuffer(s->queue, bs, CL_TRUE, 0, n * 4, r ? b : a,
                                                 0, NULL, NULL),
                             CL_SUCCESS);
        }
        assert_memory_equal(a, b, n * 4);
        clReleaseMemObject(bk);
        clReleaseMemObject(bs);
        ps_plan_destroy(plan);
    }
    free(k);
    free(a);
    free(b);
}

static void test_edge_cases(void **state)
{
    suite_state *s = *state;
    const size_t d = 32;
    float *k = malloc(300 * d * sizeof *k), *a = malloc(300 * 4), *b = malloc(300 * 4);
    assert_true(k && a && b);
    /* n < c: clusters clamp to n, every key a singleton scoring ||k_i - mean||^2 */
    ps_attention_desc desc;
    base_desc(&desc, 20, d, PS_SCORE_KMEANS);
    desc.clusters = 50;
    ts_fill_normal(k, 20 * d, ts_seed(), 8, 1.0f);
    device_scores(s, &desc, k, a, NULL);
    assert_int_equal(ps_ref_score_keys(&desc, k, b), PS_OK);
    double mean[32] = {0};
    for (size_t i = 0; i < 20; i++)
        for (size_t t = 0; t < d; t++)
            mean[t] += k[i * d + t] / 20.0;
    for (size_t i = 0; i < 20; i++) {
        double want = 0.0;
        for (size_t t = 0; t < d; t++)
            want += (k[i * d + t] - mean[t]) * (k[i * d + t] - mean[t]);
        assert_float_equal(a[i], want, 1e-4 * want + 1e-5);
        assert_float_equal(b[i], want, 2e-5 * want + 1e-9); /* 16 significant bits */
    }
    /* all keys equal: every distance 0, scores 0 up to the mean's rounding */
    base_desc(&desc, 300, d, PS_SCORE_KMEANS);
    desc.clusters = 16;
    for (size_t i = 0; i < 300; i++)
        for (size_t t = 0; t < d; t++)
            k[i * d + t] = 0.3f + (float)t;
    device_scores(s, &desc, k, a, NULL);
    assert_int_equal(ps_ref_score_keys(&desc, k, b), PS_OK);
    for (size_t i = 0; i < 300; i++) { /* ||k||^2 ~ 1e4: rounding of mu is ~1e-6 per dim */
        assert_float_equal(a[i], 0.0f, 1e-6);
        assert_float_equal(b[i], 0.0f, 1e-9);
    }
    /* leverage of all-zero keys: 0, no NaN */
    memset(k, 0, 300 * d * sizeof *k);
    desc.score = PS_SCORE_LEVERAGE;
    device_scores(s, &desc, k, a, NULL);
    for (size_t i = 0; i < 300; i++)
        assert_true(a[i] == 0.0f);
    /* one key, one cluster: it is the mean */
    base_desc(&desc, 1, d, PS_SCORE_KMEANS);
    device_scores(s, &desc, k, a, NULL);
    assert_true(a[0] == 0.0f);
    /* unsupported head dim */
    base_desc(&desc, 100, 24, PS_SCORE_KMEANS);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(s->ctx, &desc, &plan), PS_ERR_UNSUPPORTED);
    assert_null(plan);
    assert_int_equal(ps_ref_score_keys(&desc, k, b), PS_ERR_UNSUPPORTED);
    free(k);
    free(a);
    free(b);
}

/* Keys that are not finite, or whose squared distances overflow, give
 * unspecified scores (without check_finite) but never a crash: before, a
 * key whose distances were all NaN got a cluster index past the last
 * cluster, and the accumulation wrote outside its buffers. Scores of the
 * finite keys' heads stay finite where a poisoned key does not enter. */
static void test_nonfinite_keys(void **state)
{
    suite_state *s = *state;
    const size_t n = 600, d = 64;
    const float poison[3] = {NAN, INFINITY, 3e38f};
    const ps_score scores[3] = {PS_SCORE_KMEANS, PS_SCORE_LEVERAGE, PS_SCORE_NORM};
    float *k = malloc(2 * n * d * sizeof *k), *a = malloc(2 * n * sizeof *a);
    uint32_t *assign = malloc(2 * n * sizeof *assign);
    assert_true(k && a && assign);
    for (size_t p = 0; p < 3; p++)
        for (size_t m = 0; m < 3; m++) {
            ps_attention_desc desc;
            base_desc(&desc, n, d, scores[m]);
            desc.kv_heads = desc.heads = 2;
            desc.budget = 100;
            ts_fill_normal(k, 2 * n * d, ts_seed(), 90 + p, 1.0f);
            for (size_t i = 0; i < n * d; i += 7) /* head 0 only */
                k[i] = poison[p];
            ps_plan *plan = NULL;
            device_scores(s, &desc, k, a, &plan);
            for (size_t i = n; i < 2 * n; i++) /* head 1 never sees them */
                assert_true(isfinite(a[i]));
            if (scores[m] == PS_SCORE_KMEANS) { /* every key in a real cluster */
                ps_attention_desc r;
                assert_int_equal(ps_plan_desc(plan, &r), PS_OK);
                assert_int_equal(ps_score_kmeans_read(plan, NULL, assign, NULL, NULL, NULL),
                                 PS_OK);
                for (size_t i = 0; i < 2 * n; i++)
                    if (assign[i] >= r.clusters)
                        fail_msg("poison %g: key %zu in cluster %u of %zu", (double)poison[p],
                                 i, assign[i], r.clusters);
            }
            ps_plan_destroy(plan);
        }
    free(k);
    free(a);
    free(assign);
}

static void test_invalid_arguments(void **state)
{
    suite_state *s = *state;
    const size_t n = 64, d = 32;
    ps_attention_desc desc;
    base_desc(&desc, n, d, PS_SCORE_NORM);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(s->ctx, &desc, &plan), PS_OK);
    cl_mem k = upload(s, NULL, n * d, 0), sc = upload(s, NULL, n, 0);
    cl_mem small = upload(s, NULL, n - 1, 0);
    assert_int_equal(ps_score_keys(NULL, k, sc), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_score_keys(plan, NULL, sc), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "ps_score_keys: k"));
    assert_int_equal(ps_score_keys(plan, k, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "ps_score_keys: scores"));
    /* The plan's failures stay off the context's message. */
    assert_string_equal(ps_context_last_error(s->ctx), "");
    assert_int_equal(ps_score_keys(plan, small, sc), PS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(ps_score_keys(plan, k, small), PS_ERR_BUFFER_TOO_SMALL);
    float one = 0.0f;
    assert_int_equal(ps_score_keys_host(NULL, &one, &one), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_score_keys_host(plan, NULL, &one), PS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(ps_plan_last_error(plan), "ps_score_keys_host: k is NULL"));
    assert_int_equal(ps_score_keys_host(plan, &one, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_score_keys(plan, k, k), PS_ERR_INVALID_ARGUMENT);
    /* a buffer of another cl_context */
    ps_context *other = NULL;
    assert_int_equal(ps_context_create(&other, NULL), PS_OK);
    cl_context other_cl;
    assert_int_equal(ps_context_cl_handles(other, &other_cl, NULL, NULL), PS_OK);
    cl_int err;
    cl_mem foreign = clCreateBuffer(other_cl, CL_MEM_READ_WRITE, n * d * 4, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    assert_int_equal(ps_score_keys(plan, foreign, sc), PS_ERR_CONTEXT_MISMATCH);
    clReleaseMemObject(foreign);
    ps_context_destroy(other);
    assert_int_equal(ps_score_keys(plan, k, sc), PS_OK);
    assert_string_equal(ps_plan_last_error(plan), "");
    assert_int_equal(ps_score_kmeans_read(plan, NULL, NULL, NULL, NULL, NULL),
                     PS_ERR_INVALID_ARGUMENT); /* not a KMEANS plan */
    ps_plan_destroy(plan);
    /* a plan of another method */
    desc.method = PS_METHOD_EXACT;
    assert_int_equal(ps_plan_create(s->ctx, &desc, &plan), PS_OK);
    assert_int_equal(ps_score_keys(plan, k, sc), PS_ERR_INVALID_ARGUMENT);
    ps_plan_destroy(plan);
    /* the reference */
    float hk[4] = {0}, hs[1];
    assert_int_equal(ps_ref_score_keys(NULL, hk, hs), PS_ERR_INVALID_ARGUMENT);
    base_desc(&desc, n, d, PS_SCORE_NORM);
    assert_int_equal(ps_ref_score_keys(&desc, NULL, hs), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_ref_score_keys(&desc, hk, NULL), PS_ERR_INVALID_ARGUMENT);
    clReleaseMemObject(k);
    clReleaseMemObject(sc);
    clReleaseMemObject(small);
}

int main(void)
{
    if (!ts_have_device("score_device"))
        return TS_EXIT_SKIP;
    ts_report_seed("score_device");
    const struct CMUnitTest cpu_tests[] = {
        cmocka_unit_test(test_kmeans_blobs),     cmocka_unit_test(test_kmeans_gaussian),
        cmocka_unit_test(test_norm_none),        cmocka_unit_test(test_leverage_brute),
        cmocka_unit_test(test_leverage_rank),    cmocka_unit_test(test_planted_subspace),
        cmocka_unit_test(test_heavy_keys),       cmocka_unit_test(test_exact_ties),
        cmocka_unit_test(test_k_layouts),        cmocka_unit_test(test_repeatable),
        cmocka_unit_test(test_edge_cases),       cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_nonfinite_keys),
    };
    /* The GPU shape swaps the assignment kernel (km_assign_gpu, centroid
     * tiles in __local) and the launch geometry; the k-means tests cover it,
     * test_k_layouts its reads of K through views. */
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_kmeans_blobs),     cmocka_unit_test(test_kmeans_gaussian),
        cmocka_unit_test(test_leverage_brute),   cmocka_unit_test(test_k_layouts),
        cmocka_unit_test(test_heavy_keys),       cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_nonfinite_keys),
    };
    int failed = 0;
    if (ts_shape_wanted(PS_SHAPE_CPU, "score_device"))
        failed += cmocka_run_group_tests_name("score_cpu_shape", cpu_tests, setup_cpu, teardown);
    if (ts_shape_wanted(PS_SHAPE_GPU, "score_device"))
        failed += cmocka_run_group_tests_name("score_gpu_shape", gpu_tests, setup_gpu, teardown);
    return failed ? 1 : 0;
}
