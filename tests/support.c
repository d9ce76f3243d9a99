/* Shared test helpers (see support.h). */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TS_DEFAULT_SEED 20261129u
#define TS_TWO_PI 6.283185307179586

uint64_t ts_seed(void)
{
    const char *s = getenv("PRESCORE_TEST_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    return TS_DEFAULT_SEED;
}

void ts_report_seed(const char *suite)
{
    printf("# %s: seed %llu (set PRESCORE_TEST_SEED to change)\n", suite,
           (unsigned long long)ts_seed());
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ts_fill_normal(float *x, size_t n, uint64_t seed, uint64_t stream, float sigma)
{
    uint64_t state = seed * 0x100000001b3ull ^ (stream + 1) * 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i += 2) {
        const double u1 = ((double)(splitmix64(&state) >> 11) + 1.0) * 0x1.0p-53;
        const double u2 = (double)(splitmix64(&state) >> 11) * 0x1.0p-53;
        const double r = sqrt(-2.0 * log(u1));
        x[i] = (float)(sigma * r * cos(TS_TWO_PI * u2));
        if (i + 1 < n)
            x[i + 1] = (float)(sigma * r * sin(TS_TWO_PI * u2));
    }
}

double ts_rel_error(const float *a, const float *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double e = (double)a[i] - (double)ref[i];
        num += e * e;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

double ts_max_abs_diff(const float *a, const float *ref, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(a[i]) && isinf(ref[i]) && signbit(a[i]) == signbit(ref[i]))
            continue;
        double e = fabs((double)a[i] - (double)ref[i]);
        if (isnan(e))
            return INFINITY;
        if (e > worst)
            worst = e;
    }
    return worst;
}

int ts_have_device(const char *suite)
{
    size_t count = 0;
    ps_status st = ps_device_list(NULL, 0, &count);
    if (st == PS_OK && count > 0)
        return 1;
    printf("1..0 # SKIP %s: no OpenCL device (%s); install pocl-opencl-icd to run it\n",
           suite, st == PS_OK ? "zero devices" : ps_status_string(st));
    fprintf(stderr, "SKIP: %s needs an OpenCL device and found none\n", suite);
    return 0;
}

int ts_tensors_make(ts_tensors *t, const ps_attention_desc *d, uint64_t stream)
{
    const size_t nq = d->batch * d->heads * d->n_q * d->d;
    const size_t nk = d->batch * d->kv_heads * d->n_k * d->d;
    const size_t nv = d->batch * d->kv_heads * d->n_k * d->d_v;
    const size_t no = d->batch * d->heads * d->n_q * d->d_v;
    const size_t nl = d->batch * d->heads * d->n_q;
    t->q = malloc(nq * sizeof(float));
    t->k = malloc(nk * sizeof(float));
    t->v = malloc(nv * sizeof(float));
    t->o = malloc(no * sizeof(float));
    t->o_ref = malloc(no * sizeof(float));
    t->lse = malloc(nl * sizeof(float));
    t->lse_ref = malloc(nl * sizeof(float));
    if (!t->q || !t->k || !t->v || !t->o || !t->o_ref || !t->lse || !t->lse_ref) {
        ts_tensors_free(t);
        return -1;
    }
    ts_fill_normal(t->q, nq, ts_seed(), stream, 0.5f);
    ts_fill_normal(t->k, nk, ts_seed(), stream + 1, 0.5f);
    ts_fill_normal(t->v, nv, ts_seed(), stream + 2, 1.0f);
    return 0;
}

void ts_tensors_free(ts_tensors *t)
{
    free(t->q);
    free(t->k);
    free(t->v);
    free(t->o);
    free(t->o_ref);
    free(t->lse);
    free(t->lse_ref);
    t->q = t->k = t->v = t->o = t->o_ref = t->lse = t->lse_ref = NULL;
}

int ts_shape_wanted(ps_kernel_shape shape, const char *suite)
{
    const char *want = getenv("PRESCORE_TEST_SHAPES");
    const char *name = shape == PS_SHAPE_CPU ? "cpu" : "gpu";
    if (!want || !*want || strstr(want, name))
        return 1;
    printf("# %s: %s shape not run (PRESCORE_TEST_SHAPES=%s)\n", suite, name, want);
    return 0;
}

ps_kernel_shape ts_first_shape(void)
{
    const char *want = getenv("PRESCORE_TEST_SHAPES");
    return !want || !*want || strstr(want, "cpu") ? PS_SHAPE_CPU : PS_SHAPE_GPU;
}

int ts_skip_by_name(const char *test)
{
    const char *list = getenv("PRESCORE_TEST_SKIP");
    const size_t len = strlen(test);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        const size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, test, len) == 0) {
            printf("# %s skipped by name (PRESCORE_TEST_SKIP, docs/DEVICES.md)\n", test);
            return 1;
        }
        p = end ? end + 1 : p + n;
    }
    return 0;
}
