/* Reference key scores on the host (docs/SCORING.md): the same definitions,
 * parameters and Philox draws as cl/score.cl, accumulated in double. The
 * k-means++ picks are bit-identical to the device's (integer D^2 weights);
 * Lloyd iterations agree with the device wherever no key is within rounding
 * of a tie between two centroids. */
#include "prescore/prescore_ref.h"

#include "core/desc.h"
#include "core/host_alloc.h"
#include "core/tensor_layout.h"
#include "layout_ref.h"
#include "philox.h"
#include "score_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float norm_score(const float *row, size_t d)
{
    double s = 0.0;
    for (size_t t = 0; t < d; t++)
        s += (double)row[t] * row[t];
    return (float)s;
}

/* k-means++ seeds: integer D^2 weights on quantised keys, exact 64-bit
 * prefix sums, u from Philox, first key whose inclusive prefix exceeds u. */
static ps_status kpp_seeds(const ps_attention_desc *desc, const float *k, uint32_t bh,
                           uint32_t *seeds)
{
    const size_t n = desc->n_k, d = desc->d, c = desc->clusters;
    signed char *kq = ps_malloc(n * d);
    uint32_t *mind = ps_malloc(n * sizeof *mind);
    uint64_t *prefix = ps_malloc(n * sizeof *prefix);
    if (!kq || !mind || !prefix) {
        free(kq);
        free(mind);
        free(prefix);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    float maxabs = 0.0f;
    for (size_t i = 0; i < n * d; i++)
        maxabs = fmaxf(maxabs, fabsf(k[i]));
    const float scale = ps_kpp_scale(maxabs);
    for (size_t i = 0; i < n * d; i++) {
        long q = lrintf(k[i] * scale); /* power-of-two scale: exact product */
        kq[i] = (signed char)(q < -127 ? -127 : (q > 127 ? 127 : q));
    }
    for (size_t j = 0; j < c; j++) {
        const ps_philox_u4 r =
            ps_philox_draw(desc->seed, PS_RNG_STAGE_KMEANS_INIT, bh, (uint32_t)j);
        uint64_t total = 0;
        if (j > 0) {
            const signed char *cr = kq + (size_t)seeds[j - 1] * d;
            for (size_t i = 0; i < n; i++) {
                uint32_t d2 = 0;
                for (size_t t = 0; t < d; t++) {
                    const int32_t a = (int32_t)kq[i * d + t] - cr[t];
                    d2 += (uint32_t)(a * a);
                }
                mind[i] = j == 1 || d2 < mind[i] ? d2 : mind[i];
                total += mind[i];
                prefix[i] = total;
            }
        }
        if (total == 0) {
            seeds[j] = ps_philox_uniform_int(r.v[2], (uint32_t)n);
        } else {
            const uint64_t u = (((uint64_t)r.v[0] << 32) | r.v[1]) % total;
            size_t lo = 0, hi = n - 1; /* first i with prefix[i] > u */
            while (lo < hi) {
                const size_t mid = lo + (hi - lo) / 2;
                if (prefix[mid] > u)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            seeds[j] = (uint32_t)lo;
        }
    }
    free(kq);
    free(mind);
    free(prefix);
    return PS_OK;
}

/* The nearest of c centroids [c][d] to a key (lowest index on ties), and
 * the squared distance to it in *dist: the assignment step, and how a key
 * cache scores a new key against frozen centroids. */
static size_t nearest_centroid(const float *key, const double *cent, size_t c, size_t d,
                               double *dist)
{
    double best = 0.0;
    size_t bj = 0;
    for (size_t j = 0; j < c; j++) {
        double e = 0.0;
        for (size_t t = 0; t < d; t++) {
            const double v = (double)key[t] - cent[j * d + t];
            e += v * v;
        }
        if (j == 0 || e < best) {
            best = e;
            bj = j;
        }
    }
    *dist = best;
    return bj;
}

/* A key's k-means score from its cluster's ||c - mu||^2 and its own offset. */
static float kmeans_key_score(double cterm, double dist)
{
    return ps_score_round((float)(cterm + dist), PS_KMEANS_SCORE_BITS);
}

/* score_i = ||c(i) - mu||^2 + ||k_i - c(i)||^2 with mu the count-weighted
 * mean of the final centroids (docs/SCORING.md); kdist holds the squared
 * offsets of the last assignment step. mu and cterm are scratch ([d], [c]). */
static void kmeans_scores(size_t n, size_t d, size_t c, const int64_t *assign,
                          const double *cent, const double *kdist, size_t *count, double *mu,
                          double *cterm, float *scores)
{
    memset(count, 0, c * sizeof *count);
    for (size_t i = 0; i < n; i++)
        count[assign[i]]++;
    for (size_t t = 0; t < d; t++) {
        double s = 0.0;
        for (size_t j = 0; j < c; j++)
            s += (double)count[j] * cent[j * d + t];
        mu[t] = s / (double)n;
    }
    for (size_t j = 0; j < c; j++) {
        double s = 0.0;
        for (size_t t = 0; t < d; t++) {
            const double v = cent[j * d + t] - mu[t];
            s += v * v;
        }
        cterm[j] = s;
    }
    for (size_t i = 0; i < n; i++)
        scores[i] = kmeans_key_score(cterm[assign[i]], kdist[i]);
}

/* ps_ref_kmeans, also keeping head bh's centroids and cluster terms in
 * stats (when not NULL; scores then required). */
static ps_status kmeans_head(const ps_attention_desc *desc, const float *k, uint32_t bh,
                             uint32_t *seeds_out, uint32_t *assign_out, float *centroids_out,
                             double *inertia, size_t *iters_run, float *scores,
                             ps_ref_score_stats *stats)
{
    const size_t n = desc->n_k, d = desc->d, c = desc->clusters, iters = desc->kmeans_iters;
    ps_status st = PS_OK;
    uint32_t *seeds = ps_malloc(c * sizeof *seeds);
    int64_t *assign = ps_malloc(n * sizeof *assign);
    double *cent = ps_malloc(c * d * sizeof *cent), *sum = ps_malloc(c * d * sizeof *sum);
    double *kdist = ps_malloc(n * sizeof *kdist), *csum = ps_malloc(c * sizeof *csum);
    size_t *count = ps_malloc(c * sizeof *count);
    size_t last = 0;
    if (!seeds || !assign || !cent || !sum || !kdist || !csum || !count) {
        st = PS_ERR_OUT_OF_HOST_MEMORY;
        goto cleanup;
    }
    st = kpp_seeds(desc, k, bh, seeds);
    if (st != PS_OK)
        goto cleanup;
    for (size_t j = 0; j < c; j++)
        for (size_t t = 0; t < d; t++)
            cent[j * d + t] = k[(size_t)seeds[j] * d + t];
    for (size_t i = 0; i < n; i++)
        assign[i] = -1;

    for (size_t it = 0; it <= iters; it++) {
        if (it > 0) { /* update: old centroid + mean offset of the members */
            memset(sum, 0, c * d * sizeof *sum);
            memset(count, 0, c * sizeof *count);
            for (size_t i = 0; i < n; i++) {
                const size_t a = (size_t)assign[i];
                count[a]++;
                for (size_t t = 0; t < d; t++)
                    sum[a * d + t] += (double)k[i * d + t] - cent[a * d + t];
            }
            for (size_t j = 0; j < c; j++)
                if (count[j] > 0)
                    for (size_t t = 0; t < d; t++)
                        cent[j * d + t] += sum[j * d + t] / (double)count[j];
            for (size_t j = 0; j < c; j++) { /* empty: farthest key, lowest index */
                if (count[j] != 0)
                    continue;
                double best = -1.0;
                size_t bi = 0;
                for (size_t i = 0; i < n; i++)
                    if (kdist[i] > best) {
                        best = kdist[i];
                        bi = i;
                    }
                kdist[bi] = -1.0;
                for (size_t t = 0; t < d; t++)
                    cent[j * d + t] = k[bi * d + t];
            }
        }
        int changed = 0;
        double total = 0.0;
        for (size_t i = 0; i < n; i++) {
            const int64_t bj = (int64_t)nearest_centroid(k + i * d, cent, c, d, &kdist[i]);
            changed |= assign[i] != bj;
            assign[i] = bj;
            total += kdist[i];
        }
        if (inertia)
            inertia[it] = total;
        last = it;
        if (!changed)
            break;
    }
    if (inertia)
        for (size_t it = last + 1; it <= iters; it++)
            inertia[it] = inertia[last];
    if (iters_run)
        *iters_run = last;

    if (scores)
        kmeans_scores(n, d, c, assign, cent, kdist, count, sum, csum, scores);
    if (stats) {
        memcpy(stats->centroids + (size_t)bh * c * d, cent, c * d * sizeof *cent);
        memcpy(stats->cterm + (size_t)bh * c, csum, c * sizeof *csum);
    }
    if (seeds_out)
        memcpy(seeds_out, seeds, c * sizeof *seeds);
    if (assign_out)
        for (size_t i = 0; i < n; i++)
            assign_out[i] = (uint32_t)assign[i];
    if (centroids_out)
        for (size_t i = 0; i < c * d; i++)
            centroids_out[i] = (float)cent[i];
cleanup:
    free(seeds);
    free(assign);
    free(cent);
    free(sum);
    free(kdist);
    free(csum);
    free(count);
    return st;
}

ps_status ps_ref_kmeans(const ps_attention_desc *desc, const float *k, uint32_t bh,
                        uint32_t *seeds_out, uint32_t *assign_out, float *centroids_out,
                        double *inertia, size_t *iters_run, float *scores)
{
    return kmeans_head(desc, k, bh, seeds_out, assign_out, centroids_out, inertia, iters_run,
                       scores, NULL);
}

/* A key's ridge leverage from the lower Cholesky factor L [d][d] of
 * K^T K + lambda I: ||L^-1 k||^2 by forward substitution, rounded. */
static float leverage_key_score(const double *L, size_t d, const float *key)
{
    double y[PS_MAX_HEAD_DIM];
    double s = 0.0;
    for (size_t j = 0; j < d; j++) {
        double v = key[j];
        for (size_t t = 0; t < j; t++)
            v -= L[j * d + t] * y[t];
        y[j] = v / L[j * d + j];
        s += y[j] * y[j];
    }
    return ps_score_round((float)s, PS_LEVERAGE_SCORE_BITS);
}

/* Ridge leverage of one head in double: Gram, Cholesky of Gram + lambda I
 * (pivot clamp as on the device), forward substitution per key. The factor
 * goes to chol [d][d] when not NULL. */
static ps_status leverage_head(const ps_attention_desc *desc, const float *k, float *scores,
                               double *chol)
{
    const size_t n = desc->n_k, d = desc->d;
    double *A = ps_calloc(d * d, sizeof *A);
    if (!A)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    for (size_t i = 0; i < n; i++)
        for (size_t a = 0; a < d; a++)
            for (size_t b = 0; b <= a; b++)
                A[a * d + b] += (double)k[i * d + a] * k[i * d + b];
    double trace = 0.0;
    for (size_t t = 0; t < d; t++)
        trace += A[t * d + t];
    double lambda = (double)ps_score_lambda_rel(desc) * trace / (double)d;
    if (!(lambda > 0.0))
        lambda = 1.0;
    for (size_t j = 0; j < d; j++) {
        for (size_t i = j; i < d; i++) {
            double s = A[i * d + j] + (i == j ? lambda : 0.0);
            for (size_t t = 0; t < j; t++)
                s -= A[i * d + t] * A[j * d + t];
            A[i * d + j] = s;
        }
        const double ljj = sqrt(fmax(A[j * d + j], 0.5 * lambda));
        for (size_t i = j + 1; i < d; i++)
            A[i * d + j] /= ljj;
        A[j * d + j] = ljj;
    }
    for (size_t i = 0; i < n; i++)
        scores[i] = leverage_key_score(A, d, k + i * d);
    if (chol)
        memcpy(chol, A, d * d * sizeof *A);
    free(A);
    return PS_OK;
}

/* The scores of dense fp32 keys k [heads][n][d] (r resolved), and their
 * statistics in stats when not NULL. */
static ps_status score_dense(const ps_attention_desc *r, const float *k, float *scores,
                             ps_ref_score_stats *stats)
{
    ps_status st = PS_OK;
    const size_t heads = r->batch * r->kv_heads, n = r->n_k, d = r->d;
    if (stats)
        stats->clusters = r->clusters;
    for (size_t h = 0; h < heads && st == PS_OK; h++) {
        const float *kh = k + h * n * d;
        float *sh = scores + h * n;
        switch (r->score) {
        case PS_SCORE_LEVERAGE:
            st = leverage_head(r, kh, sh, stats ? stats->chol + h * d * d : NULL);
            break;
        case PS_SCORE_KMEANS:
            st = kmeans_head(r, kh, (uint32_t)h, NULL, NULL, NULL, NULL, NULL, sh, stats);
            break;
        default: /* NORM, NONE: no statistics, one key at a time */
            for (size_t i = 0; i < n; i++)
                sh[i] = ps_ref_score_key(stats, r->score, h, kh + i * d, d);
            break;
        }
    }
    return st;
}

float ps_ref_score_key(const ps_ref_score_stats *stats, ps_score score, size_t head,
                       const float *key, size_t d)
{
    switch (score) {
    case PS_SCORE_NORM:
        return norm_score(key, d);
    case PS_SCORE_NONE:
        return 1.0f;
    case PS_SCORE_LEVERAGE:
        return leverage_key_score(stats->chol + head * d * d, d, key);
    case PS_SCORE_KMEANS:
    default: {
        const size_t c = stats->clusters;
        double dist;
        const size_t j = nearest_centroid(key, stats->centroids + head * c * d, c, d, &dist);
        return kmeans_key_score(stats->cterm[head * c + j], dist);
    }
    }
}

ps_status ps_ref_score_keys(const ps_attention_desc *desc, const void *k, float *scores)
{
    return ps_ref_score_keys_stats(desc, k, scores, NULL);
}

ps_status ps_ref_score_keys_stats(const ps_attention_desc *desc, const void *k, float *scores,
                                  ps_ref_score_stats *stats)
{
    ps_attention_desc r;
    ps_status st = ps_attention_desc_resolve(desc, &r, NULL, 0);
    if (st != PS_OK)
        return st;
    if (!k || !scores)
        return PS_ERR_INVALID_ARGUMENT;
    if (ps_layout_is_default(&r, PS_TENSOR_K))
        return score_dense(&r, k, scores, stats);
    /* The device widens fp16 exactly: a dense fp32 copy holds its numbers. */
    float *dense = ps_malloc(ps_desc_k_elems(&r) * sizeof *dense);
    if (!dense)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    ps_layout_to_f32(&r, PS_TENSOR_K, k, dense);
    ps_ref_plain_layouts(&r);
    st = score_dense(&r, dense, scores, stats);
    free(dense);
    return st;
}
