/* Unit: the host's binary16 conversions (lib/core/half.c), which the
 * reference twins use to read and round what the kernels read and round:
 * every half widens and narrows back to itself, ties round to even, the
 * range ends go to infinity or zero as IEEE 754 says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "core/half.h"

static void test_round_trip_every_half(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = ps_half_to_float((uint16_t)h);
        const int nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
        if (nan) {
            assert_true(isnan(f));
            assert_true(isnan(ps_half_to_float(ps_float_to_half(f))));
        } else {
            assert_int_equal(ps_float_to_half(f), h);
        }
    }
}

static void test_known_values(void **state)
{
    (void)state;
    assert_true(ps_half_to_float(0x3c00) == 1.0f);
    assert_true(ps_half_to_float(0xc000) == -2.0f);
    assert_true(ps_half_to_float(0x7bff) == 65504.0f);
    assert_true(ps_half_to_float(0x0001) == ldexpf(1.0f, -24));
    assert_true(isinf(ps_half_to_float(0x7c00)));
    /* Ties to even, normal and subnormal. */
    assert_int_equal(ps_float_to_half(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    assert_int_equal(ps_float_to_half(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    assert_int_equal(ps_float_to_half(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)), 0x3c01);
    assert_int_equal(ps_float_to_half(ldexpf(1.0f, -25)), 0x0000);
    assert_int_equal(ps_float_to_half(3 * ldexpf(1.0f, -26)), 0x0001);
    assert_int_equal(ps_float_to_half(-ldexpf(1.0f, -26)), 0x8000);
    /* The top of the range: 65519.99 rounds down, 65520 up to Inf. */
    assert_int_equal(ps_float_to_half(65519.0f), 0x7bff);
    assert_int_equal(ps_float_to_half(65520.0f), 0x7c00);
    assert_int_equal(ps_float_to_half(-1e30f), 0xfc00);
    /* A subnormal that rounds up into the smallest normal. */
    assert_int_equal(ps_float_to_half(ldexpf(1.0f, -14) - ldexpf(1.0f, -26)), 0x0400);
    assert_true(ps_float_to_half(NAN) != 0x7c00 && (ps_float_to_half(NAN) & 0x7c00) == 0x7c00);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_half),
        cmocka_unit_test(test_known_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
