/* Oracle and random key sets for the floors of --check (floors.h). */
#include "floors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* qsort context: the masses the key indices are ordered by (qsort has none). */
static const double *sort_mass;

/* Larger mass first; equal masses by index, so the order is total. */
static int by_mass_desc(const void *a, const void *b)
{
    const uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (sort_mass[i] != sort_mass[j])
        return sort_mass[i] > sort_mass[j] ? -1 : 1;
    return (i > j) - (i < j);
}

static int ascending(const void *a, const void *b)
{
    const uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    return (i > j) - (i < j);
}

/* Adds query row qi's softmax mass on every key of kh [n_k][d] to mass. */
static void add_row_mass(const float *qi, const float *kh, size_t n_k, size_t d, double scale,
                         double lse, double *mass)
{
    for (size_t j = 0; j < n_k; j++) {
        const float *kj = kh + j * d;
        float dot = 0.0f; /* float: vectorises; the mass needs no more */
        for (size_t c = 0; c < d; c++)
            dot += qi[c] * kj[c];
        mass[j] += exp((double)dot * scale - lse);
    }
}

ps_status bench_oracle_keys(const ps_attention_desc *desc, const float *q, const float *k,
                            const float *lse, size_t m, uint32_t *idx)
{
    const size_t n_q = desc->n_q, n_k = desc->n_k, d = desc->d;
    const size_t group = desc->heads / desc->kv_heads, kvh = desc->batch * desc->kv_heads;
    const size_t stride = (n_q + BENCH_ORACLE_MAX_QUERIES - 1) / BENCH_ORACLE_MAX_QUERIES;
    const double scale = desc->scale > 0.0f ? (double)desc->scale : 1.0 / sqrt((double)d);
    double *mass = malloc(n_k * sizeof *mass);
    uint32_t *order = malloc(n_k * sizeof *order);

    if (!mass || !order) {
        free(mass);
        free(order);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    for (size_t hk = 0; hk < kvh; hk++) {
        const float *kh = k + hk * n_k * d;
        memset(mass, 0, n_k * sizeof *mass);
        for (size_t g = 0; g < group; g++) {
            const size_t h = hk * group + g; /* batch-major: b * heads + h */
            for (size_t i = 0; i < n_q; i += stride)
                if (isfinite(lse[h * n_q + i]))
                    add_row_mass(q + (h * n_q + i) * d, kh, n_k, d, scale, lse[h * n_q + i],
                                 mass);
        }
        for (size_t j = 0; j < n_k; j++)
            order[j] = (uint32_t)j;
        sort_mass = mass;
        qsort(order, n_k, sizeof *order, by_mass_desc);
        qsort(order, m, sizeof *order, ascending);
        memcpy(idx + hk * m, order, m * sizeof *order);
    }
    free(mass);
    free(order);
    return PS_OK;
}

/* splitmix64: a small seeded generator; these draws need no Philox stream. */
static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

ps_status bench_random_keys(const ps_attention_desc *desc, size_t m, uint64_t seed,
                            uint32_t *idx)
{
    const size_t n_k = desc->n_k, kvh = desc->batch * desc->kv_heads;
    uint32_t *pool = malloc(n_k * sizeof *pool);
    uint64_t state = seed;

    if (!pool)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    for (size_t hk = 0; hk < kvh; hk++) {
        for (size_t j = 0; j < n_k; j++)
            pool[j] = (uint32_t)j;
        for (size_t j = 0; j < m; j++) { /* the first m of a Fisher-Yates shuffle */
            const size_t r = j + (size_t)(splitmix(&state) % (n_k - j));
            const uint32_t t = pool[j];
            pool[j] = pool[r];
            pool[r] = t;
        }
        qsort(pool, m, sizeof *pool, ascending);
        memcpy(idx + hk * m, pool, m * sizeof *pool);
    }
    free(pool);
    return PS_OK;
}

ps_status bench_weighted_floor(const ps_attention_desc *desc, const float *q, const float *k,
                               const float *v, const uint32_t *idx, const float *w, size_t cap,
                               size_t cnt, const float *o_ref, double *err)
{
    const size_t d = desc->d, dv = desc->d_v, n_q = desc->n_q, n_k = desc->n_k;
    const size_t group = desc->heads / desc->kv_heads, qh = desc->batch * desc->heads;
    const double scale = desc->scale > 0.0f ? (double)desc->scale : 1.0 / sqrt((double)d);
    double *x = malloc(cnt * sizeof *x), *acc = malloc(dv * sizeof *acc);
    double num = 0.0, den = 0.0;

    if (!x || !acc) {
        free(x);
        free(acc);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    for (size_t h = 0; h < qh; h++) {
        const size_t hk = h / group;
        const uint32_t *ih = idx + hk * cap;
        const float *wh = w + hk * cap, *kh = k + hk * n_k * d, *vh = v + hk * n_k * dv;
        for (size_t i = 0; i < n_q; i++) {
            const float *qi = q + (h * n_q + i) * d;
            double top = -INFINITY, sum = 0.0;
            for (size_t j = 0; j < cnt; j++) {
                const float *kj = kh + (size_t)ih[j] * d;
                float dot = 0.0f;
                for (size_t c = 0; c < d; c++)
                    dot += qi[c] * kj[c];
                x[j] = (double)dot * scale + wh[j];
                top = x[j] > top ? x[j] : top;
            }
            memset(acc, 0, dv * sizeof *acc);
            for (size_t j = 0; j < cnt; j++) {
                const double e = exp(x[j] - top);
                const float *vj = vh + (size_t)ih[j] * dv;
                sum += e;
                for (size_t c = 0; c < dv; c++)
                    acc[c] += e * vj[c];
            }
            const float *ri = o_ref + (h * n_q + i) * dv;
            for (size_t c = 0; c < dv; c++) {
                const double diff = acc[c] / sum - ri[c];
                num += diff * diff;
                den += (double)ri[c] * ri[c];
            }
        }
    }
    free(x);
    free(acc);
    *err = den > 0.0 ? sqrt(num / den) : sqrt(num);
    return PS_OK;
}
