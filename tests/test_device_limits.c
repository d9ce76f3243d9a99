/* Unit suite (host only) for the device-limit logic: PRESCORE_LIMITS parsing
 * and narrowing (lib/device_limits.c), the tile sizes lib/tuning.c derives
 * from limits (every kernel's __local fits, down to the 16 KiB floor), and
 * the recorded kernel-shape choice's strict parser (lib/shape_choice.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "device_limits.h"
#include "internal.h"
#include "shape_choice.h"

static void test_parse_valid(void **state)
{
    (void)state;
    ps_limits l;
    char msg[256];
    assert_int_equal(ps_limits_parse(NULL, &l, msg, sizeof msg), PS_OK);
    assert_int_equal(l.local_mem, 0);
    assert_int_equal(l.fp16, -1);
    assert_int_equal(ps_limits_parse("  ", &l, msg, sizeof msg), PS_OK);
    assert_int_equal(ps_limits_parse("local_mem=16384,max_work_group=128,"
                                     "max_alloc=268435456,fp16=0",
                                     &l, msg, sizeof msg),
                     PS_OK);
    assert_int_equal(l.local_mem, 16384);
    assert_int_equal(l.max_work_group, 128);
    assert_int_equal(l.max_alloc, 268435456u);
    assert_int_equal(l.fp16, 0);
    assert_int_equal(l.fp64, -1);
    assert_int_equal(ps_limits_parse(" local_mem = 32k , max_alloc=1G,global_mem=2m,fp64=1 ",
                                     &l, msg, sizeof msg),
                     PS_OK);
    assert_int_equal(l.local_mem, 32768);
    assert_int_equal(l.max_alloc, 1ull << 30);
    assert_int_equal(l.global_mem, 2u << 20);
    assert_int_equal(l.fp64, 1);
}

static void test_parse_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "local_mem",            "local_mem=",         "local_mem=-1",
        "local_mem=0",          "local_mem=12q",      "local_mem=1kb",
        "local_mem=1,",         ",local_mem=1",       "local=1",
        "LOCAL_MEM=1",          "local_mem=1,local_mem=2",
        "fp16=2",               "max_work_group=0",   "max_alloc=99999999999999999999",
        "max_alloc=18014398509481984g",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ps_limits l;
        char msg[256] = "";
        if (ps_limits_parse(bad[i], &l, msg, sizeof msg) != PS_ERR_INVALID_ARGUMENT)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(strstr(msg, "PRESCORE_LIMITS"));
    }
}

static ps_device_info big_device(void)
{
    ps_device_info d;
    memset(&d, 0, sizeof d);
    d.type = PS_DEVICE_GPU;
    d.local_mem_size = 65536;
    d.max_work_group_size = 1024;
    d.max_mem_alloc_size = 4ull << 30;
    d.global_mem_size = 16ull << 30;
    d.has_fp16 = d.has_fp64 = 1;
    return d;
}

static void test_apply_only_narrows(void **state)
{
    (void)state;
    ps_device_info d = big_device();
    ps_limits l;
    assert_int_equal(ps_limits_parse("local_mem=16k,max_work_group=4096,max_alloc=256m,fp16=0,"
                                     "fp64=1",
                                     &l, NULL, 0),
                     PS_OK);
    ps_limits_apply(&l, &d);
    assert_int_equal(d.local_mem_size, 16384);
    assert_int_equal(d.max_work_group_size, 1024); /* above the device's: ignored */
    assert_int_equal(d.max_mem_alloc_size, 256u << 20);
    assert_int_equal(d.global_mem_size, 16ull << 30);
    assert_int_equal(d.has_fp16, 0);
    assert_int_equal(d.has_fp64, 1);
    d.has_fp64 = 0;
    ps_limits_apply(&l, &d);
    assert_int_equal(d.has_fp64, 0); /* fp64=1 never adds the extension */
}

/* On every device at or above the promised floor the GPU shape keeps its
 * tiles inside local memory (at most half of it from 16 KiB up) and the work-
 * group caps inside the device's. */
static void test_tiles_fit_limits(void **state)
{
    (void)state;
    unsetenv("PRESCORE_SHAPE");
    unsetenv("PRESCORE_GPU_KTILE");
    unsetenv("PRESCORE_GPU_GROUP");
    static const uint64_t locals[] = {16384, 24576, 32768, 49152, 65536, 1 << 20};
    static const size_t groups[] = {64, 128, 256, 1024};
    for (size_t i = 0; i < sizeof locals / sizeof locals[0]; i++) {
        for (size_t j = 0; j < sizeof groups / sizeof groups[0]; j++) {
            ps_device_info d = big_device();
            d.local_mem_size = locals[i];
            d.max_work_group_size = groups[j];
            ps_tuning t;
            ps_tuning_from_device(&d, PS_SHAPE_AUTO, &t);
            assert_int_equal(t.shape, PS_SHAPE_GPU);
            assert_true(ps_gpu_tile_local_bytes(t.gpu_key_tile) <= locals[i] / 2);
            assert_true(t.gpu_key_tile >= 8 && t.gpu_key_tile <= 64);
            assert_true(t.gpu_group >= 1 && t.gpu_group <= groups[j]);
            assert_true(t.group_cap <= groups[j] && t.group_cap <= 64);
        }
    }
    /* 32 KiB (most mobile GPUs): 16-row tiles, 16 KiB of K and V. */
    ps_device_info d = big_device();
    d.local_mem_size = 32768;
    ps_tuning t;
    ps_tuning_from_device(&d, PS_SHAPE_AUTO, &t);
    assert_int_equal(t.gpu_key_tile, 16);
    /* A tile override never exceeds the device. */
    setenv("PRESCORE_GPU_KTILE", "256", 1);
    ps_tuning_from_device(&d, PS_SHAPE_GPU, &t);
    assert_true(ps_gpu_tile_local_bytes(t.gpu_key_tile) <= 32768);
    unsetenv("PRESCORE_GPU_KTILE");
    /* Too little local memory for any tile: the CPU shape, even if asked. */
    d.local_mem_size = 2048;
    ps_tuning_from_device(&d, PS_SHAPE_GPU, &t);
    assert_int_equal(t.shape, PS_SHAPE_CPU);
    /* A CPU-typed device is measured (the shape stays open here). */
    d = big_device();
    d.type = PS_DEVICE_CPU;
    ps_tuning_from_device(&d, PS_SHAPE_AUTO, &t);
    assert_int_equal(t.shape, PS_SHAPE_AUTO);
}

static void test_shape_record(void **state)
{
    (void)state;
    ps_kernel_shape s = PS_SHAPE_AUTO;
    const char *ok_gpu = "prescore-shape 1 gpu 310778 34574\n";
    assert_int_equal(ps_shape_record_parse((const unsigned char *)ok_gpu, strlen(ok_gpu), &s), 1);
    assert_int_equal(s, PS_SHAPE_GPU);
    const char *ok_cpu = "prescore-shape 1 cpu 270 3221\n";
    assert_int_equal(ps_shape_record_parse((const unsigned char *)ok_cpu, strlen(ok_cpu), &s), 1);
    assert_int_equal(s, PS_SHAPE_CPU);
    static const char *const bad[] = {
        "",
        "prescore-shape 1 gpu 1 2",
        "prescore-shape 2 gpu 1 2\n",
        "prescore-shape 1 npu 1 2\n",
        "prescore-shape 1 gpu 1 2\nx",
        "prescore-shape 1 gpu 1 2 3\n",
        "prescore-shape 1 gpu\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (ps_shape_record_parse((const unsigned char *)bad[i], strlen(bad[i]), &s))
            fail_msg("accepted \"%s\"", bad[i]);
    const unsigned char nul[] = "prescore-shape 1 gpu 1 2\n\0";
    assert_int_equal(ps_shape_record_parse(nul, sizeof nul - 1, &s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_apply_only_narrows),
        cmocka_unit_test(test_tiles_fit_limits),
        cmocka_unit_test(test_shape_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
