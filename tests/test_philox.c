/* Unit suite (host only) for cl/philox.h: Philox4x32-10 against the published
 * Random123 known-answer vectors, the ranges and rough distributions of the
 * uniform, integer and normal conversions, and the stream convention of
 * ps_philox_draw (deterministic, laid out as documented, distinct across
 * stages, heads, indices, sub-streams and seeds). The device side of the same
 * header is checked against this host code in test_runtime_device.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"

typedef struct kat {
    uint32_t ctr[4];
    uint32_t key[2];
    uint32_t expected[4];
} kat;

/* "philox4x32 10" lines of Random123's examples/kat_vectors (D. E. Shaw
 * Research): the zero, all-ones and digits-of-pi cases, followed by two lines
 * of the larger table that Random123's gentests.py generates (one-bit counter
 * and key, pi counter with the top key bit). Columns: CTR, KEY, EXPECTED. */
static const kat kats[] = {
    {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u},
     {0x00000000u, 0x00000000u},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    {{0x00000001u, 0x00000000u, 0x00000000u, 0x00000000u},
     {0x00000001u, 0x00000000u},
     {0xac08141bu, 0xdfc5ccbeu, 0x79c07a47u, 0xa7f66093u}},
    {{0x452821e6u, 0x38d01377u, 0xbe5466cfu, 0x34e90c6cu},
     {0x00000000u, 0x80000000u},
     {0x94ca5566u, 0x14924b2fu, 0x28214292u, 0x59faeaeeu}},
};

static ps_philox_u4 make_u4(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    ps_philox_u4 x;
    x.v[0] = a;
    x.v[1] = b;
    x.v[2] = c;
    x.v[3] = d;
    return x;
}

static int u4_equal(ps_philox_u4 a, ps_philox_u4 b)
{
    return memcmp(a.v, b.v, sizeof a.v) == 0;
}

static void test_known_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof kats / sizeof kats[0]; i++) {
        const kat *t = &kats[i];
        ps_philox_u4 out = ps_philox4x32_10(make_u4(t->ctr[0], t->ctr[1], t->ctr[2], t->ctr[3]),
                                            t->key[0], t->key[1]);
        for (int w = 0; w < 4; w++)
            if (out.v[w] != t->expected[w])
                fail_msg("KAT %zu word %d: got %08lx, expected %08lx", i, w,
                         (unsigned long)out.v[w], (unsigned long)t->expected[w]);
    }
}

static void test_uniform_float(void **state)
{
    (void)state;
    /* The ends of the range and the resolution are exact. */
    assert_true(ps_philox_uniform(0u) == 0.0f);
    assert_true(ps_philox_uniform(0xffu) == 0.0f);
    assert_true(ps_philox_uniform(0x100u) == ldexpf(1.0f, -24));
    assert_true(ps_philox_uniform(0xffffffffu) == 1.0f - ldexpf(1.0f, -24));
    assert_true(ps_philox_uniform(0xffffffffu) < 1.0f);
    assert_true(ps_philox_uniform(0x80000000u) == 0.5f);

    double sum = 0.0;
    const uint32_t draws = 50000;
    for (uint32_t i = 0; i < draws; i++) {
        ps_philox_u4 r = ps_philox_draw(42u, PS_RNG_STAGE_TEST, 0u, i);
        for (int w = 0; w < 4; w++) {
            float u = ps_philox_uniform(r.v[w]);
            if (!(u >= 0.0f && u < 1.0f))
                fail_msg("uniform(%08lx) = %.9g outside [0, 1)", (unsigned long)r.v[w],
                         (double)u);
            /* Exactly the top 24 bits, scaled: nothing is rounded. */
            if ((uint32_t)(u * 16777216.0f) != r.v[w] >> 8)
                fail_msg("uniform(%08lx) is not (w >> 8) * 2^-24", (unsigned long)r.v[w]);
            sum += u;
        }
    }
    /* Mean of 200000 U[0,1): standard error 0.00065; 0.005 is > 7 sigma. */
    const double mean = sum / (4.0 * draws);
    if (fabs(mean - 0.5) > 0.005)
        fail_msg("uniform mean %.5f", mean);
}

static void test_uniform_int(void **state)
{
    (void)state;
    const uint32_t ns[] = {1u, 2u, 3u, 7u, 1000u, 0x7fffffffu, 0xffffffffu};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        const uint32_t n = ns[k];
        assert_int_equal(ps_philox_uniform_int(0u, n), 0);
        assert_int_equal(ps_philox_uniform_int(0xffffffffu, n), n - 1u);
        for (uint32_t i = 0; i < 2000; i++) {
            ps_philox_u4 r = ps_philox_draw(7u, PS_RNG_STAGE_TEST, 1u, i);
            for (int w = 0; w < 4; w++)
                if (ps_philox_uniform_int(r.v[w], n) >= n)
                    fail_msg("uniform_int(%08lx, %lu) out of range", (unsigned long)r.v[w],
                             (unsigned long)n);
        }
    }
    assert_int_equal(ps_philox_uniform_int(0xffffffffu, 0u), 0);

    /* Every bucket of a small n is hit about equally: chi-square with 6
     * degrees of freedom; 30 is beyond the 0.9999 quantile (~27.9). */
    enum { N = 7 };
    unsigned long hist[N] = {0};
    const uint32_t draws = 20000;
    for (uint32_t i = 0; i < draws; i++) {
        ps_philox_u4 r = ps_philox_draw(99u, PS_RNG_STAGE_TEST, 2u, i);
        for (int w = 0; w < 4; w++)
            hist[ps_philox_uniform_int(r.v[w], N)]++;
    }
    const double expect = 4.0 * draws / N;
    double chi2 = 0.0;
    for (int b = 0; b < N; b++)
        chi2 += ((double)hist[b] - expect) * ((double)hist[b] - expect) / expect;
    if (chi2 > 30.0)
        fail_msg("uniform_int chi-square %.2f over %d buckets", chi2, N);
}

static void test_normal(void **state)
{
    (void)state;
    /* a = all ones gives u1 = 1, radius 0; a = 0 gives the largest radius. */
    ps_philox_f2 z = ps_philox_normal2(0xffffffffu, 0x12345678u);
    assert_true(fabsf(z.v[0]) == 0.0f && fabsf(z.v[1]) == 0.0f);
    z = ps_philox_normal2(0u, 0u); /* theta = 0: (r, 0) */
    assert_true(z.v[0] > 5.76f && z.v[0] < 5.78f);
    assert_true(fabsf(z.v[1]) < 1e-6f);
    assert_true(ps_philox_normal(0u, 0u) == z.v[0]);

    double sum = 0.0, sum2 = 0.0, cross = 0.0;
    const uint32_t draws = 50000;
    for (uint32_t i = 0; i < draws; i++) {
        ps_philox_u4 r = ps_philox_draw(2024u, PS_RNG_STAGE_LSH_PROJ, 3u, i);
        ps_philox_f2 p = ps_philox_normal2(r.v[0], r.v[1]);
        ps_philox_f2 q = ps_philox_normal2(r.v[2], r.v[3]);
        const float all[4] = {p.v[0], p.v[1], q.v[0], q.v[1]};
        for (int w = 0; w < 4; w++) {
            if (!isfinite(all[w]) || fabsf(all[w]) > 5.78f)
                fail_msg("normal %g out of range", (double)all[w]);
            sum += all[w];
            sum2 += (double)all[w] * all[w];
        }
        cross += (double)p.v[0] * p.v[1];
    }
    /* 200000 values: the mean's standard error is 0.0022, the variance's
     * 0.0032; the bounds are about 7 sigma. The pair's correlation (50000
     * products, standard error 0.0045) must vanish too. */
    const double n = 4.0 * draws;
    const double mean = sum / n, var = sum2 / n - mean * mean;
    if (fabs(mean) > 0.015 || fabs(var - 1.0) > 0.025 || fabs(cross / draws) > 0.03)
        fail_msg("normal mean %.4f variance %.4f pair correlation %.4f", mean, var,
                 cross / draws);
}

static void test_draw_layout(void **state)
{
    (void)state;
    const uint64_t seed = 0x0123456789abcdefull;
    /* key = (low word, high word) of the seed; counter = (index, batch_head,
     * stage, sub), as documented in philox.h. */
    ps_philox_u4 direct = ps_philox4x32_10(make_u4(7u, 5u, PS_RNG_STAGE_LSH_PROJ, 0u),
                                           0x89abcdefu, 0x01234567u);
    assert_true(u4_equal(ps_philox_draw(seed, PS_RNG_STAGE_LSH_PROJ, 5u, 7u), direct));
    assert_true(u4_equal(ps_philox_draw_sub(seed, PS_RNG_STAGE_LSH_PROJ, 5u, 7u, 0u), direct));
    direct = ps_philox4x32_10(make_u4(7u, 5u, PS_RNG_STAGE_RESIDUAL, 9u), 0x89abcdefu,
                              0x01234567u);
    assert_true(u4_equal(ps_philox_draw_sub(seed, PS_RNG_STAGE_RESIDUAL, 5u, 7u, 9u), direct));
}

static void test_draw_deterministic(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 100; i++) {
        ps_philox_u4 a = ps_philox_draw(123456789u, PS_RNG_STAGE_KMEANS_INIT, i % 3u, i);
        ps_philox_u4 b = ps_philox_draw(123456789u, PS_RNG_STAGE_KMEANS_INIT, i % 3u, i);
        assert_true(u4_equal(a, b));
    }
}

static int cmp_u4(const void *pa, const void *pb)
{
    const ps_philox_u4 *a = pa, *b = pb;
    for (int w = 0; w < 4; w++)
        if (a->v[w] != b->v[w])
            return a->v[w] < b->v[w] ? -1 : 1;
    return 0;
}

static void test_draw_streams_differ(void **state)
{
    (void)state;
    /* Every combination of 4 stages x 8 heads x 64 indices x 2 sub-streams
     * x 2 seeds gives a different 128-bit value. */
    enum { STAGES = 4, HEADS = 8, INDICES = 64, SUBS = 2, SEEDS = 2 };
    const size_t total = (size_t)STAGES * HEADS * INDICES * SUBS * SEEDS;
    const uint64_t seeds[SEEDS] = {1u, 1u | (1ull << 32)}; /* differ in the high word only */
    ps_philox_u4 *all = malloc(total * sizeof *all);
    assert_non_null(all);
    size_t k = 0;
    for (int e = 0; e < SEEDS; e++)
        for (uint32_t s = 0; s < STAGES; s++)
            for (uint32_t h = 0; h < HEADS; h++)
                for (uint32_t i = 0; i < INDICES; i++)
                    for (uint32_t u = 0; u < SUBS; u++)
                        all[k++] = ps_philox_draw_sub(seeds[e], s, h, i, u);
    qsort(all, total, sizeof *all, cmp_u4);
    for (k = 1; k < total; k++)
        if (u4_equal(all[k - 1], all[k])) {
            free(all);
            fail_msg("two streams gave the same value");
        }
    free(all);

    /* Changing any single coordinate changes every word: after 10 rounds
     * each output word depends on every input bit, so a word staying equal
     * would be a 2^-32 coincidence (and the inputs here are fixed). */
    const ps_philox_u4 base = ps_philox_draw(77u, PS_RNG_STAGE_RESIDUAL, 3u, 11u);
    const ps_philox_u4 other[5] = {
        ps_philox_draw(78u, PS_RNG_STAGE_RESIDUAL, 3u, 11u),
        ps_philox_draw(77u, PS_RNG_STAGE_LSH_PROJ, 3u, 11u),
        ps_philox_draw(77u, PS_RNG_STAGE_RESIDUAL, 4u, 11u),
        ps_philox_draw(77u, PS_RNG_STAGE_RESIDUAL, 3u, 12u),
        ps_philox_draw_sub(77u, PS_RNG_STAGE_RESIDUAL, 3u, 11u, 1u),
    };
    for (int j = 0; j < 5; j++)
        for (int w = 0; w < 4; w++)
            if (other[j].v[w] == base.v[w])
                fail_msg("changing coordinate %d left word %d unchanged", j, w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_uniform_float),
        cmocka_unit_test(test_uniform_int),
        cmocka_unit_test(test_normal),
        cmocka_unit_test(test_draw_layout),
        cmocka_unit_test(test_draw_deterministic),
        cmocka_unit_test(test_draw_streams_differ),
    };
    return cmocka_run_group_tests_name("philox", tests, NULL, NULL);
}
