/* Unit suite (host only) for lib/sha256.c: SHA-256 against the FIPS 180-4 /
 * NIST example messages, HMAC-SHA-256 against RFC 4231 test cases 1-7, the
 * padding boundaries (every length 0..200), incremental updates split at
 * every offset, the wipe after final, and ps_equal_constant_time. Expected
 * values were checked against Python's hashlib and hmac. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sha256.h"

static void to_hex(const unsigned char *d, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[2 * n] = '\0';
}

/* Compares the first n bytes of d with the hex string expected (2n digits). */
static void check_hex(const char *what, const unsigned char *d, size_t n, const char *expected)
{
    char hex[2 * PS_SHA256_SIZE + 1];
    assert_true(n <= PS_SHA256_SIZE);
    assert_int_equal(strlen(expected), 2 * n);
    to_hex(d, n, hex);
    if (strcmp(hex, expected) != 0)
        fail_msg("%s: got %s, expected %s", what, hex, expected);
}

static void sha256(const void *data, size_t size, unsigned char out[PS_SHA256_SIZE])
{
    ps_sha256 s;
    ps_sha256_init(&s);
    ps_sha256_update(&s, data, size);
    ps_sha256_final(&s, out);
}

static void hmac(const void *key, size_t key_size, const void *data, size_t size,
                 unsigned char out[PS_SHA256_SIZE])
{
    ps_hmac_sha256 h;
    ps_hmac_sha256_init(&h, key, key_size);
    ps_hmac_sha256_update(&h, data, size);
    ps_hmac_sha256_final(&h, out);
}

/* 200 bytes of a fixed pattern: byte i is (7 i + 3) mod 256. */
static void pattern(unsigned char *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        m[i] = (unsigned char)((i * 7u + 3u) & 0xffu);
}

static void test_nist_examples(void **state)
{
    (void)state;
    static const struct {
        const char *msg;
        const char *digest;
    } cases[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
         "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    unsigned char d[PS_SHA256_SIZE];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sha256(cases[i].msg, strlen(cases[i].msg), d);
        check_hex(cases[i].msg, d, sizeof d, cases[i].digest);
    }
    /* Empty input given as NULL. */
    sha256(NULL, 0, d);
    check_hex("NULL, 0", d, sizeof d,
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_million_a(void **state)
{
    (void)state;
    /* One million 'a' fed in uneven chunks (1, 2, ..., 150 bytes, repeating),
     * which cross block boundaries at every phase. */
    unsigned char chunk[150];
    memset(chunk, 'a', sizeof chunk);
    ps_sha256 s;
    ps_sha256_init(&s);
    size_t left = 1000000, n = 1;
    while (left > 0) {
        size_t take = n < left ? n : left;
        ps_sha256_update(&s, chunk, take);
        left -= take;
        n = n % sizeof chunk + 1;
    }
    unsigned char d[PS_SHA256_SIZE];
    ps_sha256_final(&s, d);
    check_hex("one million 'a'", d, sizeof d,
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_every_length(void **state)
{
    (void)state;
    /* SHA-256 of the concatenated digests of the first L pattern bytes for
     * L = 0..200: covers the padding cases around 55, 56, 63 and 64 bytes
     * (mod 64) against an independent implementation. */
    unsigned char m[200], d[PS_SHA256_SIZE], out[PS_SHA256_SIZE];
    pattern(m, sizeof m);
    ps_sha256 chain;
    ps_sha256_init(&chain);
    for (size_t len = 0; len <= sizeof m; len++) {
        sha256(m, len, d);
        ps_sha256_update(&chain, d, sizeof d);
    }
    ps_sha256_final(&chain, out);
    check_hex("digests of every prefix", out, sizeof out,
              "3275febb4612d86d586eb9f11cd21e648a9fc7d95e0f6b8d362786e28c9c5b79");
}

static void test_split_updates(void **state)
{
    (void)state;
    unsigned char m[200], whole[PS_SHA256_SIZE], part[PS_SHA256_SIZE];
    pattern(m, sizeof m);
    sha256(m, sizeof m, whole);
    for (size_t cut = 0; cut <= sizeof m; cut++) {
        ps_sha256 s;
        ps_sha256_init(&s);
        ps_sha256_update(&s, m, cut);
        ps_sha256_update(&s, m + cut, sizeof m - cut);
        ps_sha256_final(&s, part);
        if (memcmp(part, whole, sizeof whole) != 0)
            fail_msg("SHA-256 split at %zu differs from one-shot", cut);

        ps_hmac_sha256 h;
        unsigned char mac_whole[PS_SHA256_SIZE], mac_part[PS_SHA256_SIZE];
        hmac("key", 3, m, sizeof m, mac_whole);
        ps_hmac_sha256_init(&h, "key", 3);
        ps_hmac_sha256_update(&h, m, cut);
        ps_hmac_sha256_update(&h, m + cut, sizeof m - cut);
        ps_hmac_sha256_final(&h, mac_part);
        if (memcmp(mac_part, mac_whole, sizeof mac_whole) != 0)
            fail_msg("HMAC split at %zu differs from one-shot", cut);
    }
}

static void test_rfc4231(void **state)
{
    (void)state;
    unsigned char key4[25];
    for (size_t i = 0; i < sizeof key4; i++)
        key4[i] = (unsigned char)(i + 1);
    unsigned char k0b[20], kaa20[20], k0c[20], kaa131[131], dd[50], cd[50];
    memset(k0b, 0x0b, sizeof k0b);
    memset(kaa20, 0xaa, sizeof kaa20);
    memset(k0c, 0x0c, sizeof k0c);
    memset(kaa131, 0xaa, sizeof kaa131);
    memset(dd, 0xdd, sizeof dd);
    memset(cd, 0xcd, sizeof cd);
    static const char msg6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char msg7[] =
        "This is a test using a larger than block-size key and a larger than block-size data. "
        "The key needs to be hashed before being used by the HMAC algorithm.";

    const struct {
        const char *name;
        const void *key;
        size_t key_size;
        const void *msg;
        size_t msg_size;
        size_t compare; /* bytes of the tag compared */
        const char *tag;
    } cases[] = {
        {"RFC 4231 case 1", k0b, sizeof k0b, "Hi There", 8, 32,
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"RFC 4231 case 2", "Jefe", 4, "what do ya want for nothing?", 28, 32,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"RFC 4231 case 3", kaa20, sizeof kaa20, dd, sizeof dd, 32,
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {"RFC 4231 case 4", key4, sizeof key4, cd, sizeof cd, 32,
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        /* Case 5 specifies a tag truncated to 128 bits. */
        {"RFC 4231 case 5", k0c, sizeof k0c, "Test With Truncation", 20, 16,
         "a3b6167473100ee06e0c796c2955552b"},
        {"RFC 4231 case 6", kaa131, sizeof kaa131, msg6, sizeof msg6 - 1, 32,
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {"RFC 4231 case 7", kaa131, sizeof kaa131, msg7, sizeof msg7 - 1, 32,
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    assert_int_equal(sizeof msg6 - 1, 54);
    assert_int_equal(sizeof msg7 - 1, 152);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char tag[PS_SHA256_SIZE];
        hmac(cases[i].key, cases[i].key_size, cases[i].msg, cases[i].msg_size, tag);
        check_hex(cases[i].name, tag, cases[i].compare, cases[i].tag);
    }
}

static void test_hmac_key_sizes(void **state)
{
    (void)state;
    /* A key of exactly one block is used as is, one byte more is hashed
     * first; an empty key (NULL) is a block of zeros. */
    unsigned char key[65], m[200], tag[PS_SHA256_SIZE];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)i;
    pattern(m, sizeof m);
    hmac(key, 64, m, sizeof m, tag);
    check_hex("64-byte key", tag, sizeof tag,
              "6757df8bfd98aab9f6654a12a66c650020a4f64c7707c9e34805af2c53e1fd74");
    hmac(key, 65, m, sizeof m, tag);
    check_hex("65-byte key", tag, sizeof tag,
              "004f30cde8f9b939d40762ed4fc9fa9742843f5465c9b90f212dafe9e3e213db");
    hmac(NULL, 0, NULL, 0, tag);
    check_hex("empty key and message", tag, sizeof tag,
              "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

static void test_final_wipes(void **state)
{
    (void)state;
    unsigned char out[PS_SHA256_SIZE];
    ps_sha256 s;
    ps_sha256_init(&s);
    ps_sha256_update(&s, "abc", 3);
    ps_sha256_final(&s, out);
    assert_true(all_zero(&s, sizeof s));

    ps_hmac_sha256 h;
    ps_hmac_sha256_init(&h, "secret", 6);
    ps_hmac_sha256_update(&h, "abc", 3);
    ps_hmac_sha256_final(&h, out);
    assert_true(all_zero(&h, sizeof h));
}

static void test_equal_constant_time(void **state)
{
    (void)state;
    unsigned char a[PS_SHA256_SIZE], b[PS_SHA256_SIZE];
    sha256("abc", 3, a);
    memcpy(b, a, sizeof b);
    assert_int_equal(ps_equal_constant_time(a, b, sizeof a), 1);
    assert_int_equal(ps_equal_constant_time(a, a, sizeof a), 1);
    assert_int_equal(ps_equal_constant_time(a, b, 0), 1);
    for (size_t i = 0; i < sizeof a; i++)
        for (unsigned bit = 0; bit < 8; bit++) {
            b[i] = (unsigned char)(a[i] ^ (1u << bit));
            if (ps_equal_constant_time(a, b, sizeof a) != 0)
                fail_msg("flipped bit %u of byte %zu compared equal", bit, i);
            /* The differing byte outside the compared prefix is not seen. */
            assert_int_equal(ps_equal_constant_time(a, b, i), 1);
            b[i] = a[i];
        }
    memset(a, 0x00, sizeof a);
    memset(b, 0xff, sizeof b);
    assert_int_equal(ps_equal_constant_time(a, b, sizeof a), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nist_examples),  cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_every_length),   cmocka_unit_test(test_split_updates),
        cmocka_unit_test(test_rfc4231),        cmocka_unit_test(test_hmac_key_sizes),
        cmocka_unit_test(test_final_wipes),    cmocka_unit_test(test_equal_constant_time),
    };
    return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
