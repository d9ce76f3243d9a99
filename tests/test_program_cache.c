/* Unit suite for the on-disk program-binary cache (lib/program_cache.c): key
 * hashing and file names, the environment switches, store/load round trips,
 * every kind of damaged entry (each must be a clean PS_ERR_IO miss), the trust
 * rules (entries under another secret, unsafe directories, secret files and
 * entries, FIFOs and links: each refused and counted, nothing blocks),
 * directory creation, failing stores leaving no temporary file behind, and
 * concurrent writers of one key. Each test works in its own mkdtemp
 * directories: one for entries, one for the secret. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "program_cache.h"
#include "settings.h"
#include "sha256.h"

#include <signal.h>

#define PATH_CAP 4096

typedef struct fixture {
    char root[64];   /* entries */
    char secret[64]; /* the secret's directory */
} fixture;

/* The secret directory every helper below opens caches with. */
static char g_secret[64];

/* ------------------------------------------------------------------ helpers */

static int remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(sb.st_mode)) {
        (void)chmod(path, 0700); /* undo tests that made it read-only */
        DIR *d = opendir(path);
        if (!d)
            return -1;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[PATH_CAP];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->root, "/tmp/ps_cache_test_XXXXXX");
    strcpy(f->secret, "/tmp/ps_cache_secret_XXXXXX");
    if (!mkdtemp(f->root)) {
        free(f);
        return -1;
    }
    if (!mkdtemp(f->secret)) {
        rmdir(f->root);
        free(f);
        return -1;
    }
    strcpy(g_secret, f->secret);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    const int rc = remove_tree(f->root) | remove_tree(f->secret);
    free(f);
    return rc;
}

static const char *root_of(void **state)
{
    return ((fixture *)*state)->root;
}

/* "<a>/<b>" into the caller's PATH_CAP buffer. */
static void join(char *out, const char *a, const char *b)
{
    const int n = snprintf(out, PATH_CAP, "%s/%s", a, b);
    assert_true(n > 0 && n < PATH_CAP);
}

static void entry_path(char *out, const char *dir, ps_cache_key key)
{
    char name[40];
    ps_cache_file_name(key, name);
    join(out, dir, name);
}

static ps_cache_key key_of(const char *text)
{
    const char *parts[1] = {text};
    const size_t lengths[1] = {strlen(text)};
    return ps_cache_key_make(parts, lengths, 1);
}

static ps_cache_key key_of2(const char *a, const char *b)
{
    const char *parts[2] = {a, b};
    const size_t lengths[2] = {strlen(a), strlen(b)};
    return ps_cache_key_make(parts, lengths, 2);
}

static int key_equal(ps_cache_key a, ps_cache_key b)
{
    return a.h1 == b.h1 && a.h2 == b.h2;
}

/* Deterministic bytes, zeros included. */
static unsigned char *make_payload(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n);
    assert_non_null(p);
    uint64_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        p[i] = (unsigned char)(x >> 56);
    }
    if (n > 3)
        p[3] = 0;
    return p;
}

static unsigned char *read_whole(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    const long n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

static void write_whole(const char *path, const unsigned char *data, size_t size)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (size)
        assert_int_equal(fwrite(data, 1, size, fp), size);
    assert_int_equal(fclose(fp), 0);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* One-shot cache operations on @p dir under the fixture's secret. */
static ps_status store_in(const char *dir, ps_cache_key key, const unsigned char *data,
                          size_t size)
{
    ps_cache c;
    ps_status st = ps_cache_open(&c, dir, g_secret, 0);
    if (st == PS_OK || st == PS_ERR_IO)
        st = ps_cache_store(&c, key, data, size);
    ps_cache_close(&c);
    return st;
}

/* @p refused (may be NULL) receives the cache's refusal counters. */
static ps_status load_counted(const char *dir, ps_cache_key key, unsigned char **bin,
                              size_t *size, unsigned refused[PS_CACHE_REFUSAL_COUNT])
{
    ps_cache c;
    ps_status st = ps_cache_open(&c, dir, g_secret, 0);
    if (st == PS_OK || st == PS_ERR_IO)
        st = ps_cache_load(&c, key, bin, size);
    if (refused)
        memcpy(refused, c.refused, sizeof c.refused);
    ps_cache_close(&c);
    return st;
}

static ps_status load_in(const char *dir, ps_cache_key key, unsigned char **bin,
                         size_t *size)
{
    return load_counted(dir, key, bin, size, NULL);
}

/* A miss with exactly one refusal, of kind @p why. */
static void expect_refused(const char *dir, ps_cache_key key, ps_cache_refusal why)
{
    unsigned char *bin = NULL;
    size_t size = 0;
    unsigned refused[PS_CACHE_REFUSAL_COUNT];
    assert_int_equal(load_counted(dir, key, &bin, &size, refused), PS_ERR_IO);
    assert_null(bin);
    for (int r = 0; r < PS_CACHE_REFUSAL_COUNT; r++)
        assert_int_equal(refused[r], r == (int)why ? 1u : 0u);
}

static void expect_hit(const char *dir, ps_cache_key key, const unsigned char *data,
                       size_t size)
{
    unsigned char *bin = NULL;
    size_t got = 0;
    assert_int_equal(load_in(dir, key, &bin, &got), PS_OK);
    assert_non_null(bin);
    assert_int_equal(got, size);
    assert_memory_equal(bin, data, size);
    free(bin);
}

static void expect_miss(const char *dir, ps_cache_key key)
{
    unsigned char *bin = (unsigned char *)"sentinel";
    size_t got = 12345;
    assert_int_equal(load_in(dir, key, &bin, &got), PS_ERR_IO);
    assert_null(bin);
    assert_int_equal(got, 0);
}

/* Saves and restores one environment variable around a test. */
typedef struct saved_env {
    const char *name;
    char *value; /* NULL: was unset */
} saved_env;

static saved_env env_save(const char *name)
{
    saved_env s;
    const char *v = getenv(name);
    s.name = name;
    s.value = v ? strdup(v) : NULL;
    return s;
}

static void env_restore(saved_env *s)
{
    if (s->value)
        setenv(s->name, s->value, 1);
    else
        unsetenv(s->name);
    free(s->value);
    s->value = NULL;
}

/* -------------------------------------------------------------------- keys */

static void test_key_deterministic(void **state)
{
    (void)state;
    assert_true(key_equal(key_of("kernel source"), key_of("kernel source")));
    assert_false(key_equal(key_of("kernel source"), key_of("kernel sourcf")));
    ps_cache_key k = key_of("x");
    assert_true(k.h1 != k.h2);
    /* One flipped bit changes both halves. */
    ps_cache_key a = key_of("-DTILE=64"), b = key_of("-DTILE=65");
    assert_true(a.h1 != b.h1);
    assert_true(a.h2 != b.h2);
}

static void test_key_part_boundaries(void **state)
{
    (void)state;
    assert_false(key_equal(key_of2("ab", "c"), key_of2("a", "bc")));
    assert_false(key_equal(key_of("abc"), key_of2("ab", "c")));
    assert_false(key_equal(key_of("a"), key_of2("a", "")));
    assert_false(key_equal(key_of2("", "a"), key_of2("a", "")));
    assert_false(key_equal(key_of2("ab", "c"), key_of2("c", "ab")));

    /* Only the given lengths count, embedded NULs included. */
    const char *p1[2] = {"a\0b", "tail"}, *p2[2] = {"a\0c", "tail"}, *p3[2] = {"a\0bZZ", "tail"};
    const size_t l3[2] = {3, 4};
    ps_cache_key k1 = ps_cache_key_make(p1, l3, 2);
    ps_cache_key k2 = ps_cache_key_make(p2, l3, 2);
    ps_cache_key k3 = ps_cache_key_make(p3, l3, 2);
    assert_false(key_equal(k1, k2));
    assert_true(key_equal(k1, k3));

    /* A NULL part counts as empty; no parts at all is a valid key. */
    const char *pn[2] = {NULL, "b"}, *pe[2] = {"", "b"};
    const size_t ln[2] = {7, 1}, le[2] = {0, 1};
    assert_true(key_equal(ps_cache_key_make(pn, ln, 2), ps_cache_key_make(pe, le, 2)));
    assert_true(key_equal(ps_cache_key_make(NULL, NULL, 0), ps_cache_key_make(pe, le, 0)));
    assert_false(key_equal(ps_cache_key_make(NULL, NULL, 0), ps_cache_key_make(pe, le, 1)));
}

static void test_file_name(void **state)
{
    (void)state;
    char name[40];
    memset(name, '#', sizeof name);
    ps_cache_key k;
    k.h1 = UINT64_C(0x0123456789abcdef);
    k.h2 = UINT64_C(0xfedcba9876543210);
    ps_cache_file_name(k, name);
    assert_string_equal(name, "0123456789abcdeffedcba9876543210.bin");
    assert_int_equal(strlen(name) + 1, PS_CACHE_FILE_NAME_SIZE);
    k.h1 = 0;
    k.h2 = 1;
    ps_cache_file_name(k, name);
    assert_string_equal(name, "00000000000000000000000000000001.bin");
}

static void test_different_keys_different_files(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key a = key_of("program A"), b = key_of("program B");
    char na[40], nb[40];
    ps_cache_file_name(a, na);
    ps_cache_file_name(b, nb);
    assert_string_not_equal(na, nb);

    unsigned char *pa = make_payload(300, 1), *pb = make_payload(500, 2);
    assert_int_equal(store_in(dir, a, pa, 300), PS_OK);
    assert_int_equal(store_in(dir, b, pb, 500), PS_OK);
    assert_int_equal(count_entries(dir), 2);
    expect_hit(dir, a, pa, 300);
    expect_hit(dir, b, pb, 500);
    free(pa);
    free(pb);
}

/* ------------------------------------------------------------- environment */

static void test_env_switch(void **state)
{
    (void)state;
    saved_env saved = env_save("PRESCORE_CACHE");
    static const char *const off[] = {"0", "off", "OFF", "Off", "no", "NO", "false", "FaLsE"};
    static const char *const on[] = {"1", "on", "yes", "true", "", "offf", "of", "0 "};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
        setenv("PRESCORE_CACHE", off[i], 1);
        assert_int_equal(ps_cache_enabled_by_env(), 0);
    }
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
        setenv("PRESCORE_CACHE", on[i], 1);
        assert_int_equal(ps_cache_enabled_by_env(), 1);
    }
    unsetenv("PRESCORE_CACHE");
    assert_int_equal(ps_cache_enabled_by_env(), 1);
    env_restore(&saved);
}

static void expect_dir(const char *want)
{
    char *got = ps_cache_dir_default();
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_dir_default(void **state)
{
    (void)state;
    saved_env s1 = env_save("PRESCORE_CACHE_DIR"), s2 = env_save("XDG_CACHE_HOME"),
              s3 = env_save("HOME");

    setenv("PRESCORE_CACHE_DIR", "/some/where/cache", 1);
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    setenv("HOME", "/home/u", 1);
    expect_dir("/some/where/cache");
    setenv("PRESCORE_CACHE_DIR", "relative/dir", 1);
    expect_dir("relative/dir");

    setenv("PRESCORE_CACHE_DIR", "", 1); /* empty: ignored */
    expect_dir("/xdg/prescore-cl");
    unsetenv("PRESCORE_CACHE_DIR");
    expect_dir("/xdg/prescore-cl");

    setenv("XDG_CACHE_HOME", "not/absolute", 1); /* XDG: relative paths are invalid */
    expect_dir("/home/u/.cache/prescore-cl");
    setenv("XDG_CACHE_HOME", "", 1);
    expect_dir("/home/u/.cache/prescore-cl");
    unsetenv("XDG_CACHE_HOME");
    expect_dir("/home/u/.cache/prescore-cl");

    setenv("HOME", "", 1);
    expect_dir(NULL);
    unsetenv("HOME");
    expect_dir(NULL);

    env_restore(&s1);
    env_restore(&s2);
    env_restore(&s3);
}

static void expect_secret_dir(const char *want)
{
    char *got = ps_cache_secret_dir_default();
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void test_secret_dir_default(void **state)
{
    (void)state;
    saved_env s1 = env_save("PRESCORE_SECRET_DIR"), s2 = env_save("XDG_STATE_HOME"),
              s3 = env_save("HOME"), s4 = env_save("PRESCORE_CACHE_DIR"),
              s5 = env_save("XDG_CACHE_HOME");
    /* Never where the entries go. */
    setenv("PRESCORE_CACHE_DIR", "/some/where/cache", 1);
    setenv("XDG_CACHE_HOME", "/xdg-cache", 1);
    setenv("PRESCORE_SECRET_DIR", "/run/app/secret", 1);
    setenv("XDG_STATE_HOME", "/xdg-state", 1);
    setenv("HOME", "/home/u", 1);
    expect_secret_dir("/run/app/secret");
    setenv("PRESCORE_SECRET_DIR", "", 1);
    expect_secret_dir("/xdg-state/prescore-cl");
    unsetenv("PRESCORE_SECRET_DIR");
    expect_secret_dir("/xdg-state/prescore-cl");
    setenv("XDG_STATE_HOME", "relative", 1);
    expect_secret_dir("/home/u/.local/state/prescore-cl");
    unsetenv("XDG_STATE_HOME");
    expect_secret_dir("/home/u/.local/state/prescore-cl");
    unsetenv("HOME");
    expect_secret_dir(NULL);
    env_restore(&s1);
    env_restore(&s2);
    env_restore(&s3);
    env_restore(&s4);
    env_restore(&s5);
}

/* The default layout: ~/.cache/prescore-cl for entries, the secret in
 * ~/.local/state/prescore-cl. A cache tree copied from another home (a CI
 * cache restore, an unpacked archive) arrives without its secret: every entry
 * is refused. */
static void test_restored_cache_tree_refused(void **state)
{
    const char *root = root_of(state);
    saved_env s1 = env_save("HOME"), s2 = env_save("XDG_CACHE_HOME"),
              s3 = env_save("XDG_STATE_HOME"), s4 = env_save("PRESCORE_CACHE_DIR"),
              s5 = env_save("PRESCORE_SECRET_DIR");
    unsetenv("XDG_CACHE_HOME");
    unsetenv("XDG_STATE_HOME");
    unsetenv("PRESCORE_CACHE_DIR");
    unsetenv("PRESCORE_SECRET_DIR");
    char home_a[PATH_CAP], home_b[PATH_CAP], cmd[4 * PATH_CAP];
    join(home_a, root, "home-a");
    join(home_b, root, "home-b");
    ps_cache_key key = key_of("restored");
    const unsigned char payload[5] = {1, 2, 3, 4, 5};
    unsigned char *bin = NULL;
    size_t size = 0;

    for (int user = 0; user < 2; user++) {
        setenv("HOME", user == 0 ? home_a : home_b, 1);
        char *dir = ps_cache_dir_default(), *secret = ps_cache_secret_dir_default();
        ps_cache c;
        assert_int_equal(ps_cache_open(&c, dir, secret, 0), PS_OK);
        if (user == 0) {
            assert_int_equal(ps_cache_store(&c, key, payload, sizeof payload), PS_OK);
            ps_cache_close(&c);
            /* Ship A's whole cache tree into B's home. */
            snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp -a '%s/.cache' '%s/'", home_b,
                     home_a, home_b);
            assert_int_equal(system(cmd), 0);
        } else {
            assert_int_equal(ps_cache_load(&c, key, &bin, &size), PS_ERR_IO);
            assert_int_equal(c.refused[PS_CACHE_REFUSED_MAC], 1);
            ps_cache_close(&c);
        }
        free(dir);
        free(secret);
    }
    env_restore(&s1);
    env_restore(&s2);
    env_restore(&s3);
    env_restore(&s4);
    env_restore(&s5);
}

/* -------------------------------------------------------------- round trip */

static void test_round_trip(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key = key_of("round trip");
    const size_t sizes[] = {1, 7, 8, 9, 1000, (size_t)3 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = make_payload(sizes[i], 100 + i);
        assert_int_equal(store_in(dir, key, p, sizes[i]), PS_OK);
        expect_hit(dir, key, p, sizes[i]);

        /* Exact size on disk, one file only (no temporary left behind). */
        char path[PATH_CAP];
        entry_path(path, dir, key);
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal((size_t)sb.st_size,
                         PS_CACHE_HEADER_SIZE + sizes[i] + PS_CACHE_TRAILER_SIZE);
        assert_int_equal(sb.st_mode & 077, 0);
        assert_int_equal(count_entries(dir), 1);
        free(p);
    }
}

static void test_layout_is_little_endian(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key;
    key.h1 = UINT64_C(0x1122334455667788);
    key.h2 = UINT64_C(0x99aabbccddeeff00);
    const unsigned char payload[3] = {0xde, 0xad, 0x00};
    assert_int_equal(store_in(dir, key, payload, 3), PS_OK);
    char path[PATH_CAP];
    entry_path(path, dir, key);
    size_t n = 0;
    unsigned char *f = read_whole(path, &n);
    assert_int_equal(n, 36 + 3 + 32);
    assert_memory_equal(f, "PSCLBIN\0", 8);
    const unsigned char version[4] = {PS_CACHE_FORMAT_VERSION & 0xff, 0, 0, 0};
    assert_memory_equal(f + 8, version, 4);
    const unsigned char h1[8] = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
    const unsigned char h2[8] = {0x00, 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99};
    const unsigned char sz[8] = {3, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(f + 12, h1, 8);
    assert_memory_equal(f + 20, h2, 8);
    assert_memory_equal(f + 28, sz, 8);
    assert_memory_equal(f + 36, payload, 3);
    /* The trailer is HMAC-SHA-256 of header and payload under the secret. */
    char secret_path[PATH_CAP];
    join(secret_path, g_secret, PS_CACHE_SECRET_NAME);
    size_t secret_size = 0;
    unsigned char *secret = read_whole(secret_path, &secret_size);
    assert_int_equal(secret_size, PS_CACHE_SECRET_SIZE);
    unsigned char mac[PS_SHA256_SIZE];
    ps_hmac_sha256 h;
    ps_hmac_sha256_init(&h, secret, secret_size);
    ps_hmac_sha256_update(&h, f, 39);
    ps_hmac_sha256_final(&h, mac);
    assert_memory_equal(f + 39, mac, sizeof mac);
    free(secret);
    free(f);
}

static void test_overwrite(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key = key_of("overwrite");
    unsigned char *a = make_payload(4000, 5), *b = make_payload(17, 6);
    assert_int_equal(store_in(dir, key, a, 4000), PS_OK);
    assert_int_equal(store_in(dir, key, b, 17), PS_OK);
    expect_hit(dir, key, b, 17);
    assert_int_equal(count_entries(dir), 1);
    free(a);
    free(b);
}

static void test_miss(void **state)
{
    const char *dir = root_of(state);
    expect_miss(dir, key_of("never stored"));
    char missing[PATH_CAP];
    join(missing, dir, "no/such/dir");
    expect_miss(missing, key_of("never stored"));
    /* A stored entry does not answer for another key. */
    const unsigned char one = 1;
    assert_int_equal(store_in(dir, key_of("stored"), &one, 1), PS_OK);
    expect_miss(dir, key_of("never stored"));
}

static void test_invalid_arguments(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key = key_of("args");
    unsigned char *bin = NULL;
    size_t size = 0;
    const unsigned char byte = 0;
    assert_int_equal(load_in(NULL, key, &bin, &size), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(load_in(dir, key, NULL, &size), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(load_in(dir, key, &bin, NULL), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(store_in(NULL, key, &byte, 1), PS_ERR_INVALID_ARGUMENT);
    assert_int_equal(store_in(dir, key, NULL, 1), PS_ERR_INVALID_ARGUMENT);
    /* Nothing worth caching, or more than a load would accept. */
    assert_int_equal(store_in(dir, key, &byte, 0), PS_ERR_IO);
    assert_int_equal(store_in(dir, key, &byte, (size_t)PS_CACHE_MAX_PAYLOAD + 1),
                     PS_ERR_IO);
    assert_int_equal(store_in("", key, &byte, 1), PS_ERR_IO);
    assert_int_equal(count_entries(dir), 0);
}

/* ---------------------------------------------------------- damaged entries */

#define CORRUPT_N 257

/* Stores a valid entry, hands its bytes to @p edit, writes the result back and
 * checks that the load is a clean miss. */
static void corrupt_case(const char *dir, const char *label,
                         void (*edit)(unsigned char *file, size_t *size))
{
    ps_cache_key key = key_of(label);
    unsigned char *p = make_payload(CORRUPT_N, 42);
    assert_int_equal(store_in(dir, key, p, CORRUPT_N), PS_OK);
    expect_hit(dir, key, p, CORRUPT_N);

    char path[PATH_CAP];
    entry_path(path, dir, key);
    size_t n = 0;
    unsigned char *f = read_whole(path, &n);
    assert_int_equal(n, 36 + CORRUPT_N + PS_CACHE_TRAILER_SIZE);
    unsigned char *g = realloc(f, n + 16); /* room for edits that append */
    assert_non_null(g);
    edit(g, &n);
    write_whole(path, g, n);
    expect_miss(dir, key);
    /* Counted once, as damage or as failed authentication. */
    unsigned refused[PS_CACHE_REFUSAL_COUNT];
    unsigned char *bin = NULL;
    size_t got = 0;
    assert_int_equal(load_counted(dir, key, &bin, &got, refused), PS_ERR_IO);
    assert_int_equal(refused[PS_CACHE_REFUSED_FORMAT] + refused[PS_CACHE_REFUSED_MAC], 1);
    free(g);
    free(p);
}

static void put_size(unsigned char *f, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        f[28 + i] = (unsigned char)(v >> (8 * i));
}

static void edit_truncate_one(unsigned char *f, size_t *n) { (void)f; *n -= 1; }
static void edit_truncate_half(unsigned char *f, size_t *n) { (void)f; *n /= 2; }
static void edit_truncate_header(unsigned char *f, size_t *n) { (void)f; *n = 20; }
static void edit_truncate_payload(unsigned char *f, size_t *n) { (void)f; *n = 36 + 10; }
static void edit_empty(unsigned char *f, size_t *n) { (void)f; *n = 0; }
static void edit_append(unsigned char *f, size_t *n) { f[*n] = 0; *n += 1; }
static void edit_payload_byte(unsigned char *f, size_t *n) { (void)n; f[36 + 100] ^= 0x01; }
static void edit_payload_last(unsigned char *f, size_t *n)
{
    f[*n - PS_CACHE_TRAILER_SIZE - 1] ^= 0x80;
}
static void edit_checksum(unsigned char *f, size_t *n) { f[*n - 1] ^= 0x10; }
static void edit_magic(unsigned char *f, size_t *n) { (void)n; f[0] ^= 0x20; }
static void edit_magic_nul(unsigned char *f, size_t *n) { (void)n; f[7] = 'X'; }
static void edit_version(unsigned char *f, size_t *n) { (void)n; f[8] += 1; }
static void edit_key(unsigned char *f, size_t *n) { (void)n; f[15] ^= 0xff; }
static void edit_size_huge(unsigned char *f, size_t *n) { (void)n; put_size(f, UINT64_MAX); }
static void edit_size_over_cap(unsigned char *f, size_t *n)
{
    (void)n;
    put_size(f, PS_CACHE_MAX_PAYLOAD + 1);
}
static void edit_size_under_cap(unsigned char *f, size_t *n)
{
    (void)n;
    put_size(f, PS_CACHE_MAX_PAYLOAD - 1); /* allowed by the cap, not by the file */
}
static void edit_size_high_bits(unsigned char *f, size_t *n)
{
    (void)n; /* equal to the real size in the low 32 bits: no truncation anywhere */
    put_size(f, (UINT64_C(1) << 32) + CORRUPT_N);
}
static void edit_size_top_bit(unsigned char *f, size_t *n)
{
    (void)n;
    put_size(f, (UINT64_C(1) << 63) + CORRUPT_N);
}
static void edit_size_smaller(unsigned char *f, size_t *n) { (void)n; put_size(f, CORRUPT_N - 1); }
static void edit_size_zero(unsigned char *f, size_t *n) { (void)n; put_size(f, 0); }
static void edit_garbage(unsigned char *f, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        f[i] = (unsigned char)(i * 131 + 7);
}

static void test_corrupt_entries(void **state)
{
    const char *dir = root_of(state);
    corrupt_case(dir, "truncated by one", edit_truncate_one);
    corrupt_case(dir, "truncated by half", edit_truncate_half);
    corrupt_case(dir, "truncated in header", edit_truncate_header);
    corrupt_case(dir, "truncated in payload", edit_truncate_payload);
    corrupt_case(dir, "zero-length file", edit_empty);
    corrupt_case(dir, "trailing byte", edit_append);
    corrupt_case(dir, "flipped payload byte", edit_payload_byte);
    corrupt_case(dir, "flipped last payload byte", edit_payload_last);
    corrupt_case(dir, "flipped checksum", edit_checksum);
    corrupt_case(dir, "flipped magic", edit_magic);
    corrupt_case(dir, "magic without NUL", edit_magic_nul);
    corrupt_case(dir, "wrong version", edit_version);
    corrupt_case(dir, "key field changed", edit_key);
    corrupt_case(dir, "huge size field", edit_size_huge);
    corrupt_case(dir, "size over the cap", edit_size_over_cap);
    corrupt_case(dir, "size beyond the file", edit_size_under_cap);
    corrupt_case(dir, "size with high bits", edit_size_high_bits);
    corrupt_case(dir, "size with top bit", edit_size_top_bit);
    corrupt_case(dir, "size too small", edit_size_smaller);
    corrupt_case(dir, "size zero", edit_size_zero);
    corrupt_case(dir, "garbage", edit_garbage);
}

static void test_key_mismatch(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key a = key_of("key A"), b = key_of("key B");
    unsigned char *p = make_payload(64, 9);
    assert_int_equal(store_in(dir, a, p, 64), PS_OK);
    char pa[PATH_CAP], pb[PATH_CAP];
    entry_path(pa, dir, a);
    entry_path(pb, dir, b);
    assert_int_equal(rename(pa, pb), 0);
    expect_miss(dir, a);
    expect_miss(dir, b);
    free(p);
}

static void test_entry_not_a_file(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key = key_of("a directory");
    char path[PATH_CAP];
    entry_path(path, dir, key);
    assert_int_equal(mkdir(path, 0700), 0);
    expect_refused(dir, key, PS_CACHE_REFUSED_NOT_FILE);
}

/* ------------------------------------------------------------------- trust */

/* A blocking open() would hang the suite: a 5 s alarm with the default action
 * kills the test instead, a failure meson reports. */
static void arm_hang_guard(void)
{
    signal(SIGALRM, SIG_DFL);
    alarm(5);
}

static void test_entry_of_another_secret(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key = key_of("planted");
    unsigned char *p = make_payload(400, 11);
    /* Written by someone else's library: same layout, same key, their secret. */
    char other[64] = "/tmp/ps_cache_other_XXXXXX";
    assert_non_null(mkdtemp(other));
    char mine[64];
    strcpy(mine, g_secret);
    strcpy(g_secret, other);
    assert_int_equal(store_in(dir, key, p, 400), PS_OK);
    expect_hit(dir, key, p, 400);
    strcpy(g_secret, mine);
    expect_refused(dir, key, PS_CACHE_REFUSED_MAC);
    /* Our own store replaces it and is trusted. */
    assert_int_equal(store_in(dir, key, p, 400), PS_OK);
    expect_hit(dir, key, p, 400);
    remove_tree(other);
    free(p);
}

static void test_secret_created_private_and_kept(void **state)
{
    const char *dir = root_of(state);
    char path[PATH_CAP];
    join(path, g_secret, "fresh");
    strcat(g_secret, "/fresh"); /* a directory the cache must create */
    ps_cache_key key = key_of("secret kept");
    const unsigned char byte = 7;
    assert_int_equal(store_in(dir, key, &byte, 1), PS_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    join(path, g_secret, PS_CACHE_SECRET_NAME);
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, PS_CACHE_SECRET_SIZE);
    assert_int_equal(count_entries(g_secret), 1); /* no temporary left */
    /* Later opens read the same secret: the entry stays valid. */
    expect_hit(dir, key, &byte, 1);
    *strrchr(g_secret, '/') = '\0';
}

static void test_unsafe_directories_refused(void **state)
{
    const char *root = root_of(state);
    ps_cache_key key = key_of("unsafe dir");
    const unsigned char byte = 1;
    static const mode_t unsafe[] = {0777, 0770, 0702, 01777};
    char dir[PATH_CAP];
    join(dir, root, "shared");
    assert_int_equal(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < sizeof unsafe / sizeof unsafe[0]; i++) {
        assert_int_equal(chmod(dir, unsafe[i]), 0);
        ps_cache c;
        assert_int_equal(ps_cache_open(&c, dir, g_secret, 0), PS_ERR_IO);
        assert_int_equal(c.refused[PS_CACHE_REFUSED_DIRECTORY], 1);
        assert_int_equal(ps_cache_store(&c, key, &byte, 1), PS_ERR_IO);
        ps_cache_close(&c);
        assert_int_equal(count_entries(dir), 0); /* nothing written there */
        /* The same rules for the secret's directory. */
        assert_int_equal(chmod(dir, 0700), 0);
        assert_int_equal(chmod(g_secret, unsafe[i]), 0);
        assert_int_equal(ps_cache_open(&c, dir, g_secret, 0), PS_ERR_IO);
        assert_int_equal(c.refused[PS_CACHE_REFUSED_DIRECTORY], 1);
        ps_cache_close(&c);
        assert_int_equal(chmod(g_secret, 0700), 0);
    }
    /* Readable by the group is fine; so is a directory reached through a link. */
    assert_int_equal(chmod(dir, 0750), 0);
    assert_int_equal(store_in(dir, key, &byte, 1), PS_OK);
    char link_path[PATH_CAP];
    join(link_path, root, "link-to-shared");
    assert_int_equal(symlink(dir, link_path), 0);
    expect_hit(link_path, key, &byte, 1);
    /* A file where the directory should be. */
    char file[PATH_CAP];
    join(file, root, "a-file");
    write_whole(file, &byte, 1);
    ps_cache c;
    assert_int_equal(ps_cache_open(&c, file, g_secret, 0), PS_ERR_IO);
    assert_int_equal(c.refused[PS_CACHE_REFUSED_DIRECTORY], 1);
    ps_cache_close(&c);
    assert_int_equal(ps_cache_open(&c, dir, file, 0), PS_ERR_IO); /* secret side */
    assert_int_equal(c.refused[PS_CACHE_REFUSED_DIRECTORY], 1);
    ps_cache_close(&c);
}

/* Replaces the secret file with @p make's result and checks it is refused. */
static void expect_secret_refused(const char *dir, int (*make)(const char *path))
{
    char path[PATH_CAP];
    join(path, g_secret, PS_CACHE_SECRET_NAME);
    unlink(path);
    assert_int_equal(make(path), 0);
    arm_hang_guard();
    ps_cache c;
    assert_int_equal(ps_cache_open(&c, dir, g_secret, 0), PS_ERR_IO);
    alarm(0);
    assert_int_equal(c.refused[PS_CACHE_REFUSED_SECRET], 1);
    ps_cache_close(&c);
    unlink(path);
}

static int make_secret_readable(const char *path)
{
    unsigned char key[PS_CACHE_SECRET_SIZE] = {1};
    write_whole(path, key, sizeof key);
    return chmod(path, 0644);
}
static int make_secret_short(const char *path)
{
    unsigned char key[PS_CACHE_SECRET_SIZE - 1] = {1};
    write_whole(path, key, sizeof key);
    return chmod(path, 0600);
}
static int make_secret_fifo(const char *path) { return mkfifo(path, 0600); }
static int make_secret_link(const char *path)
{
    char target[PATH_CAP];
    snprintf(target, sizeof target, "%s.target", path);
    unsigned char key[PS_CACHE_SECRET_SIZE] = {1};
    write_whole(target, key, sizeof key);
    chmod(target, 0600);
    return symlink(target, path);
}

static void test_unsafe_secret_refused(void **state)
{
    const char *dir = root_of(state);
    expect_secret_refused(dir, make_secret_readable);
    expect_secret_refused(dir, make_secret_short);
    expect_secret_refused(dir, make_secret_fifo);
    expect_secret_refused(dir, make_secret_link);
    /* With the unsafe file gone a fresh secret is made. */
    const unsigned char byte = 3;
    assert_int_equal(store_in(dir, key_of("after"), &byte, 1), PS_OK);
}

static void test_unsafe_entries_refused(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key = key_of("unsafe entry");
    unsigned char *p = make_payload(64, 12);
    char path[PATH_CAP], target[PATH_CAP];
    entry_path(path, dir, key);

    /* Writable by others: anyone could have swapped the payload. */
    assert_int_equal(store_in(dir, key, p, 64), PS_OK);
    assert_int_equal(chmod(path, 0666), 0);
    expect_refused(dir, key, PS_CACHE_REFUSED_OWNER);
    assert_int_equal(chmod(path, 0620), 0);
    expect_refused(dir, key, PS_CACHE_REFUSED_OWNER);
    assert_int_equal(chmod(path, 0644), 0); /* readable by others is fine */
    expect_hit(dir, key, p, 64);
    if (geteuid() == 0) {
        /* Owned by another user (only root can give a file away). */
        assert_int_equal(chown(path, 65534, 65534), 0);
        expect_refused(dir, key, PS_CACHE_REFUSED_OWNER);
    } else {
        print_message("  (not root: the other-owner case is not testable)\n");
    }

    /* A link to a valid entry, even our own: never followed. */
    ps_cache_key real = key_of("link target");
    assert_int_equal(store_in(dir, real, p, 64), PS_OK);
    entry_path(target, dir, real);
    unlink(path);
    assert_int_equal(symlink(target, path), 0);
    expect_refused(dir, key, PS_CACHE_REFUSED_NOT_FILE);

    /* A FIFO: refused at once, open() never waits for a writer. */
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    arm_hang_guard();
    expect_refused(dir, key, PS_CACHE_REFUSED_NOT_FILE);
    alarm(0);
    /* A store replaces the FIFO with an entry. */
    assert_int_equal(store_in(dir, key, p, 64), PS_OK);
    expect_hit(dir, key, p, 64);
    free(p);
}

static void test_discard(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key = key_of("discarded");
    const unsigned char byte = 9;
    assert_int_equal(store_in(dir, key, &byte, 1), PS_OK);
    ps_cache c;
    assert_int_equal(ps_cache_open(&c, dir, g_secret, 0), PS_OK);
    ps_cache_discard(&c, key, PS_CACHE_REFUSED_PROGRAM, "test");
    assert_int_equal(c.refused[PS_CACHE_REFUSED_PROGRAM], 1);
    ps_cache_close(&c);
    assert_int_equal(count_entries(dir), 0);
    expect_miss(dir, key);
}

/* ------------------------------------------------------------------ storing */

static void test_store_creates_nested_dirs(void **state)
{
    const char *root = root_of(state);
    char nested[PATH_CAP], level[PATH_CAP];
    join(nested, root, "a/b//c/cache/");
    ps_cache_key key = key_of("nested");
    unsigned char *p = make_payload(123, 3);
    assert_int_equal(store_in(nested, key, p, 123), PS_OK);
    expect_hit(nested, key, p, 123);

    static const char *const levels[] = {"a", "a/b", "a/b/c", "a/b/c/cache"};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        join(level, root, levels[i]);
        struct stat sb;
        assert_int_equal(stat(level, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
        assert_int_equal(sb.st_mode & 077, 0); /* 0700 */
        assert_int_equal(sb.st_mode & 0700, 0700);
    }
    /* An existing directory is reused as is. */
    assert_int_equal(store_in(nested, key_of("second"), p, 123), PS_OK);
    join(level, root, "a/b/c/cache");
    assert_int_equal(count_entries(level), 2);
    free(p);
}

static void test_store_unwritable(void **state)
{
    const char *root = root_of(state);
    char plain[PATH_CAP], under[PATH_CAP];
    join(plain, root, "plain-file");
    const unsigned char text[4] = {'t', 'e', 'x', 't'};
    write_whole(plain, text, sizeof text);
    join(under, plain, "sub/dir");
    ps_cache_key key = key_of("unwritable");
    unsigned char *p = make_payload(50, 4);

    assert_int_equal(store_in(under, key, p, 50), PS_ERR_IO);
    assert_int_equal(store_in(plain, key, p, 50), PS_ERR_IO);
    expect_miss(under, key);
    assert_int_equal(count_entries(root), 1);

    /* Permission bits do not bind root; test them only when they apply. */
    if (geteuid() != 0) {
        char ro[PATH_CAP];
        join(ro, root, "read-only");
        assert_int_equal(mkdir(ro, 0500), 0);
        assert_int_equal(store_in(ro, key, p, 50), PS_ERR_IO);
        char ro_sub[PATH_CAP];
        join(ro_sub, ro, "sub");
        assert_int_equal(store_in(ro_sub, key, p, 50), PS_ERR_IO);
        assert_int_equal(chmod(ro, 0700), 0);
        assert_int_equal(count_entries(ro), 0);
    } else {
        print_message("  (running as root: read-only directory case not testable)\n");
    }
    free(p);
}

static void test_failed_rename_removes_temp(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key = key_of("blocked");
    char path[PATH_CAP], inner[PATH_CAP];
    entry_path(path, dir, key);
    assert_int_equal(mkdir(path, 0700), 0); /* rename() onto a non-empty dir fails */
    join(inner, path, "occupant");
    write_whole(inner, (const unsigned char *)"x", 1);

    unsigned char *p = make_payload(99, 8);
    assert_int_equal(store_in(dir, key, p, 99), PS_ERR_IO);
    assert_int_equal(count_entries(dir), 1); /* only the blocking directory */
    free(p);
}

/* Writers race on one key while the parent reads: every read is a miss (before
 * the first rename) or one writer's complete payload, never a mix. */
#define WRITERS 4
#define WRITES_EACH 40

static int payload_is_whole(const unsigned char *bin, size_t size)
{
    if (size < 1000 || (size - 1000) % 100 != 0 || (size - 1000) / 100 >= WRITERS)
        return 0;
    const unsigned char id = (unsigned char)((size - 1000) / 100);
    for (size_t i = 0; i < size; i++)
        if (bin[i] != (unsigned char)(id + i * 7))
            return 0;
    return 1;
}

static void test_concurrent_writers(void **state)
{
    const char *dir = root_of(state);
    ps_cache_key key = key_of("contended");
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            const size_t n = 1000 + 100 * (size_t)w;
            unsigned char *buf = malloc(n);
            int ok = buf != NULL;
            for (size_t i = 0; ok && i < n; i++)
                buf[i] = (unsigned char)(w + i * 7);
            for (int r = 0; ok && r < WRITES_EACH; r++)
                ok = store_in(dir, key, buf, n) == PS_OK;
            free(buf);
            _exit(ok ? 0 : 1);
        }
    }
    /* Failures are counted, not asserted, until every writer has been reaped:
     * an early assert would leave writers recreating the directory. */
    int reads = 0, hits = 0, torn = 0, vanished = 0, bad_status = 0, writer_failed = 0;
    for (;;) {
        int running = 0;
        for (int w = 0; w < WRITERS; w++)
            if (pids[w] > 0) {
                int status = 0;
                const pid_t r = waitpid(pids[w], &status, WNOHANG);
                if (r == 0) {
                    running = 1;
                } else {
                    if (r != pids[w] || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        writer_failed++;
                    pids[w] = 0;
                }
            }
        unsigned char *bin = NULL;
        size_t size = 0;
        const ps_status st = load_in(dir, key, &bin, &size);
        reads++;
        if (st == PS_OK) {
            hits++;
            torn += !payload_is_whole(bin, size);
            free(bin);
        } else if (st != PS_ERR_IO) {
            bad_status++;
        } else if (hits > 0) {
            vanished++; /* once an entry exists it never disappears */
        }
        if (!running)
            break;
    }
    assert_int_equal(writer_failed, 0);
    assert_int_equal(bad_status, 0);
    assert_int_equal(torn, 0);
    assert_int_equal(vanished, 0);
    unsigned char *bin = NULL;
    size_t size = 0;
    assert_int_equal(load_in(dir, key, &bin, &size), PS_OK);
    assert_true(payload_is_whole(bin, size));
    free(bin);
    assert_int_equal(count_entries(dir), 1);
    assert_true(reads > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_deterministic),
        cmocka_unit_test(test_key_part_boundaries),
        cmocka_unit_test(test_file_name),
        cmocka_unit_test(test_env_switch),
        cmocka_unit_test(test_dir_default),
        cmocka_unit_test(test_secret_dir_default),
        cmocka_unit_test_setup_teardown(test_restored_cache_tree_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_different_keys_different_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout_is_little_endian, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_not_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_of_another_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_created_private_and_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsafe_directories_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsafe_secret_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsafe_entries_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_creates_nested_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_unwritable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_rename_removes_temp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
    };
    return cmocka_run_group_tests_name("program_cache", tests, NULL, NULL);
}
