/* Unit suite (host only) for lib/device_select.c: parsing every selector form,
 * valid and malformed, and choosing from synthetic device lists (CPU only, GPU
 * and CPU across two platforms, names, vendors, platforms, no match, empty),
 * including messages that are cut to a small buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "device_select.h"

static ps_device_info make_device(unsigned platform, unsigned device, ps_device_type type,
                                  const char *name, const char *vendor, const char *platform_name)
{
    ps_device_info d;
    memset(&d, 0, sizeof d);
    d.platform_index = platform;
    d.device_index = device;
    d.type = type;
    snprintf(d.name, sizeof d.name, "%s", name);
    snprintf(d.vendor, sizeof d.vendor, "%s", vendor);
    snprintf(d.platform_name, sizeof d.platform_name, "%s", platform_name);
    return d;
}

/* One PoCL CPU. */
static ps_device_info cpu_only[1];
/* Platform 0: PoCL with a CPU; platform 1: a vendor driver with two GPUs. */
static ps_device_info mixed[3];

static int setup_lists(void **state)
{
    (void)state;
    cpu_only[0] = make_device(0, 0, PS_DEVICE_CPU, "cpu-znver5-AMD Ryzen 9 9950X", "AuthenticAMD",
                              "Portable Computing Language");
    mixed[0] = make_device(0, 0, PS_DEVICE_CPU, "pthread-skylake-avx512-Intel(R) Xeon(R)",
                           "GenuineIntel", "Portable Computing Language");
    mixed[1] = make_device(1, 0, PS_DEVICE_GPU, "gfx1100", "Advanced Micro Devices, Inc.",
                           "AMD Accelerated Parallel Processing");
    mixed[2] = make_device(1, 1, PS_DEVICE_GPU, "gfx90a:sramecc+:xnack-",
                           "Advanced Micro Devices, Inc.", "AMD Accelerated Parallel Processing");
    return 0;
}

static ps_selector parse_ok(const char *text)
{
    ps_selector sel;
    char msg[128] = "garbage";
    ps_status st = ps_selector_parse(text, &sel, msg, sizeof msg);
    if (st != PS_OK)
        fail_msg("parse(\"%s\"): %s: %s", text ? text : "(null)", ps_status_string(st), msg);
    assert_string_equal(msg, "");
    return sel;
}

static void parse_bad(const char *text)
{
    ps_selector sel;
    char msg[256] = "";
    ps_status st = ps_selector_parse(text, &sel, msg, sizeof msg);
    if (st != PS_ERR_INVALID_ARGUMENT)
        fail_msg("parse(\"%s\") gave %s, expected invalid argument", text, ps_status_string(st));
    assert_true(strlen(msg) > 0);
}

static void test_parse_default(void **state)
{
    (void)state;
    const char *forms[] = {NULL, "", "   ", "\t\n", "default", "DEFAULT", " Default \n"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
        assert_int_equal(parse_ok(forms[i]).kind, PS_SELECT_DEFAULT);
}

static void test_parse_types(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("gpu").kind, PS_SELECT_GPU);
    assert_int_equal(parse_ok("GPU").kind, PS_SELECT_GPU);
    assert_int_equal(parse_ok("  Gpu\n").kind, PS_SELECT_GPU);
    assert_int_equal(parse_ok("cpu").kind, PS_SELECT_CPU);
    assert_int_equal(parse_ok("CpU ").kind, PS_SELECT_CPU);
}

static void test_parse_index(void **state)
{
    (void)state;
    ps_selector sel = parse_ok("1:2");
    assert_int_equal(sel.kind, PS_SELECT_INDEX);
    assert_int_equal(sel.platform, 1);
    assert_int_equal(sel.device, 2);
    sel = parse_ok(" 0:0 ");
    assert_int_equal(sel.kind, PS_SELECT_INDEX);
    assert_int_equal(sel.platform, 0);
    assert_int_equal(sel.device, 0);
    sel = parse_ok("007:10");
    assert_int_equal(sel.platform, 7);
    assert_int_equal(sel.device, 10);

    char max[64];
    snprintf(max, sizeof max, "%u:%u", UINT_MAX, UINT_MAX);
    sel = parse_ok(max);
    assert_int_equal(sel.kind, PS_SELECT_INDEX);
    assert_true(sel.platform == UINT_MAX && sel.device == UINT_MAX);
}

static void test_parse_index_invalid(void **state)
{
    (void)state;
    parse_bad("1:");
    parse_bad(":2");
    parse_bad(":");
    parse_bad("1:2:3");
    parse_bad("-1:0");
    parse_bad("0:-1");
    parse_bad("+1:0");
    parse_bad("1::2");
    parse_bad("99999999999999999999:0");
    char over[64];
    snprintf(over, sizeof over, "0:%llu", (unsigned long long)UINT_MAX + 1u);
    parse_bad(over);
}

static void test_parse_name(void **state)
{
    (void)state;
    ps_selector sel = parse_ok("  Radeon RX\t");
    assert_int_equal(sel.kind, PS_SELECT_NAME);
    assert_string_equal(sel.name, "Radeon RX");
    /* A bare number is a name ("3090"), as is text with a ':' and letters. */
    sel = parse_ok("3090");
    assert_int_equal(sel.kind, PS_SELECT_NAME);
    assert_string_equal(sel.name, "3090");
    sel = parse_ok("gfx90a:sramecc+:xnack-");
    assert_int_equal(sel.kind, PS_SELECT_NAME);
    assert_string_equal(sel.name, "gfx90a:sramecc+:xnack-");
    sel = parse_ok("gpus"); /* only the exact keyword is a type */
    assert_int_equal(sel.kind, PS_SELECT_NAME);
}

static void test_parse_name_length(void **state)
{
    (void)state;
    char text[PS_INFO_STRING_MAX + 8];
    /* The longest name that fits, with spaces around that are trimmed. */
    memset(text, 'x', sizeof text);
    text[0] = ' ';
    text[PS_INFO_STRING_MAX] = ' ';
    text[PS_INFO_STRING_MAX + 1] = '\0';
    ps_selector sel = parse_ok(text);
    assert_int_equal(sel.kind, PS_SELECT_NAME);
    assert_int_equal(strlen(sel.name), PS_INFO_STRING_MAX - 1);

    memset(text, 'x', sizeof text);
    text[PS_INFO_STRING_MAX] = '\0'; /* one character too many */
    parse_bad(text);
}

static void test_parse_null_out(void **state)
{
    (void)state;
    char msg[64];
    assert_int_equal(ps_selector_parse("gpu", NULL, msg, sizeof msg), PS_ERR_INVALID_ARGUMENT);
    assert_true(strlen(msg) > 0);
    assert_int_equal(ps_selector_parse("gpu", NULL, NULL, 0), PS_ERR_INVALID_ARGUMENT);
    ps_selector sel;
    /* msg may be NULL, and a zero size leaves the buffer alone. */
    assert_int_equal(ps_selector_parse("1:", &sel, NULL, 100), PS_ERR_INVALID_ARGUMENT);
    msg[0] = 'q';
    assert_int_equal(ps_selector_parse("1:", &sel, msg, 0), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(msg[0], 'q');
}

static size_t choose_ok(const char *text, const ps_device_info *devices, size_t count)
{
    ps_selector sel = parse_ok(text);
    size_t chosen = 12345;
    char msg[256] = "garbage";
    ps_status st = ps_selector_choose(&sel, devices, count, &chosen, msg, sizeof msg);
    if (st != PS_OK)
        fail_msg("choose(\"%s\"): %s: %s", text ? text : "(null)", ps_status_string(st), msg);
    assert_string_equal(msg, "");
    assert_true(chosen < count);
    return chosen;
}

static void test_choose_cpu_only(void **state)
{
    (void)state;
    assert_int_equal(choose_ok(NULL, cpu_only, 1), 0);
    assert_int_equal(choose_ok("default", cpu_only, 1), 0);
    assert_int_equal(choose_ok("cpu", cpu_only, 1), 0);
    assert_int_equal(choose_ok("0:0", cpu_only, 1), 0);
    assert_int_equal(choose_ok("ryzen", cpu_only, 1), 0);

    ps_selector sel = parse_ok("gpu");
    size_t chosen = 77;
    char msg[512];
    assert_int_equal(ps_selector_choose(&sel, cpu_only, 1, &chosen, msg, sizeof msg),
                     PS_ERR_DEVICE_NOT_FOUND);
    assert_int_equal(chosen, 77); /* untouched on failure */
    assert_non_null(strstr(msg, "gpu"));
    assert_non_null(strstr(msg, "cpu-znver5-AMD Ryzen 9 9950X"));
    assert_non_null(strstr(msg, "0:0"));
}

static void test_choose_mixed(void **state)
{
    (void)state;
    assert_int_equal(choose_ok(NULL, mixed, 3), 1); /* first GPU, not first device */
    assert_int_equal(choose_ok("gpu", mixed, 3), 1);
    assert_int_equal(choose_ok("cpu", mixed, 3), 0);
    assert_int_equal(choose_ok("0:0", mixed, 3), 0);
    assert_int_equal(choose_ok("1:0", mixed, 3), 1);
    assert_int_equal(choose_ok("1:1", mixed, 3), 2);
    assert_int_equal(choose_ok("GFX90A", mixed, 3), 2);
    assert_int_equal(choose_ok("gfx", mixed, 3), 1);
    assert_int_equal(choose_ok("xeon", mixed, 3), 0);
    assert_int_equal(choose_ok("gfx90a:sramecc+:xnack-", mixed, 3), 2);
}

static void test_choose_vendor_platform(void **state)
{
    (void)state;
    /* No device name says "advanced micro"; the vendor does. */
    assert_int_equal(choose_ok("advanced micro", mixed, 3), 1);
    /* Platform names: "amd accelerated" only there, "portable" for PoCL. */
    assert_int_equal(choose_ok("amd accelerated", mixed, 3), 1);
    assert_int_equal(choose_ok("portable computing", mixed, 3), 0);
    /* A device-name match wins over an earlier vendor or platform match:
     * "intel" is in device 0's name; "amd" is in no name, in no vendor, but
     * in platform 1's name. */
    assert_int_equal(choose_ok("intel", mixed, 3), 0);
    assert_int_equal(choose_ok("amd", mixed, 3), 1);
    /* With the PoCL CPU whose name says AMD, the name wins. */
    assert_int_equal(choose_ok("amd", cpu_only, 1), 0);
}

static void test_choose_not_found(void **state)
{
    (void)state;
    const char *texts[] = {"nvidia", "2:0", "0:1", "1:2"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        ps_selector sel = parse_ok(texts[i]);
        size_t chosen = 0;
        char msg[1024];
        assert_int_equal(ps_selector_choose(&sel, mixed, 3, &chosen, msg, sizeof msg),
                         PS_ERR_DEVICE_NOT_FOUND);
        assert_non_null(strstr(msg, texts[i]));
        assert_non_null(strstr(msg, "gfx1100"));
        assert_non_null(strstr(msg, "gfx90a:sramecc+:xnack-"));
        assert_non_null(strstr(msg, "pthread-skylake-avx512"));
        assert_non_null(strstr(msg, "1:1 gpu"));
    }
}

static void test_choose_message_truncated(void **state)
{
    (void)state;
    ps_selector sel = parse_ok("nvidia");
    size_t chosen = 0;
    /* Canaries after a short buffer catch any write past msg_size. */
    char buf[40 + 8];
    for (size_t size = 0; size <= 40; size++) {
        memset(buf, '#', sizeof buf);
        assert_int_equal(ps_selector_choose(&sel, mixed, 3, &chosen, buf, size),
                         PS_ERR_DEVICE_NOT_FOUND);
        for (size_t i = size; i < sizeof buf; i++)
            assert_int_equal(buf[i], '#');
        if (size > 0) {
            assert_non_null(memchr(buf, '\0', size));
            assert_int_equal(strlen(buf), size - 1);
        }
        if (size >= 4)
            assert_string_equal(buf + size - 4, "...");
    }
    assert_int_equal(ps_selector_choose(&sel, mixed, 3, &chosen, NULL, 0),
                     PS_ERR_DEVICE_NOT_FOUND);
    assert_int_equal(ps_selector_choose(&sel, mixed, 3, &chosen, NULL, 64),
                     PS_ERR_DEVICE_NOT_FOUND);
}

static void test_choose_empty_and_invalid(void **state)
{
    (void)state;
    ps_selector sel = parse_ok("gpu");
    size_t chosen = 0;
    char msg[128];
    assert_int_equal(ps_selector_choose(&sel, mixed, 0, &chosen, msg, sizeof msg),
                     PS_ERR_NO_DEVICE);
    assert_true(strlen(msg) > 0);
    assert_int_equal(ps_selector_choose(&sel, NULL, 0, &chosen, msg, sizeof msg),
                     PS_ERR_NO_DEVICE);
    sel = parse_ok(NULL);
    assert_int_equal(ps_selector_choose(&sel, NULL, 0, &chosen, NULL, 0), PS_ERR_NO_DEVICE);

    assert_int_equal(ps_selector_choose(NULL, mixed, 3, &chosen, msg, sizeof msg),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_selector_choose(&sel, mixed, 3, NULL, msg, sizeof msg),
                     PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(ps_selector_choose(&sel, NULL, 3, &chosen, msg, sizeof msg),
                     PS_ERR_INVALID_ARGUMENT);
    assert_true(strlen(msg) > 0);

    ps_selector odd;
    memset(&odd, 0, sizeof odd);
    odd.kind = (ps_select_kind)42;
    assert_int_equal(ps_selector_choose(&odd, mixed, 3, &chosen, msg, sizeof msg),
                     PS_ERR_INVALID_ARGUMENT);
    odd.kind = PS_SELECT_NAME;
    memset(odd.name, 'x', sizeof odd.name); /* no terminator */
    assert_int_equal(ps_selector_choose(&odd, mixed, 3, &chosen, msg, sizeof msg),
                     PS_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_default),
        cmocka_unit_test(test_parse_types),
        cmocka_unit_test(test_parse_index),
        cmocka_unit_test(test_parse_index_invalid),
        cmocka_unit_test(test_parse_name),
        cmocka_unit_test(test_parse_name_length),
        cmocka_unit_test(test_parse_null_out),
        cmocka_unit_test(test_choose_cpu_only),
        cmocka_unit_test(test_choose_mixed),
        cmocka_unit_test(test_choose_vendor_platform),
        cmocka_unit_test(test_choose_not_found),
        cmocka_unit_test(test_choose_message_truncated),
        cmocka_unit_test(test_choose_empty_and_invalid),
    };
    return cmocka_run_group_tests_name("device_select", tests, setup_lists, NULL);
}
