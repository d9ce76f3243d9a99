/* Device suite: the program cache runs only what this user built. An attacker
 * builds the attention program from modified source (every output 42) in
 * their own cache, re-keys the entry under the name of the victim's real
 * entry and authenticates it with their own secret: the victim refuses it,
 * rebuilds, computes correct outputs and rewrites the entry. The same entry
 * authenticated with the victim's secret is loaded and gives 42 (so the test
 * would fail if authentication were skipped); an authentic entry of another
 * program under that name is deleted and rebuilt; a world-writable cache
 * directory is not used. Counts come from ps_context_cache_stats. A FIFO in
 * PRESCORE_KERNEL_DIR is refused without blocking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cl_sources.h"
#include "program_cache.h"
#include "sha256.h"
#include "prescore/prescore.h"
#include "prescore/prescore_ref.h"
#include "support.h"

#define PATH_CAP 1024
#define NAME_LEN 32 /* hex digits of an entry name */

static char root[256];
/* The victim's cache of test_planted_entry_refused, for the next test. */
static char kept_cache[PATH_CAP], kept_secret[PATH_CAP], kept_home[PATH_CAP], kept_name[40];
static size_t kept_entries;

static void path_join(char *out, const char *a, const char *b)
{
    const int n = snprintf(out, PATH_CAP, "%s/%s", a, b);
    assert_true(n > 0 && n < PATH_CAP);
}

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    const long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_all(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

/* Every embedded kernel source into @p dir; exact.cl with every
 * output row overwritten by 42 (the attacker's change, after ps_write_row's
 * definition: both shapes' kernels call it). */
static void write_evil_sources(const char *dir)
{
    static const char evil[] =
        "#define ps_write_row(o, ov, o_row, lse, li, acc, m, l, vis, dv) "
        "for (int c_ = 0; c_ < (dv); c_++) ps_st((o), (ov), (o_row) + c_, 42.0f)\n";
    char path[PATH_CAP];
    assert_int_equal(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < ps_cl_source_count; i++) {
        const ps_cl_source *src = &ps_cl_sources[i];
        path_join(path, dir, src->name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        const char *text = (const char *)src->bytes;
        const char *cut = NULL;
        if (strcmp(src->name, "exact.cl") == 0) {
            const char *row = strstr(text, "inline void ps_write_row");
            assert_non_null(row);
            cut = strstr(row, "\n}\n"); /* the end of its body */
            assert_non_null(cut);
            cut += 3;
        }
        if (cut) {
            fwrite(text, 1, (size_t)(cut - text), f);
            fputs(evil, f);
            fputs(cut, f);
        } else {
            fwrite(text, 1, src->length, f);
        }
        fclose(f);
    }
}

/* A context of one fixed shape: the caches then hold one attention program
 * each (measuring the shape builds it in both). */
static ps_context *context_in(const char *cache_dir, ps_cache_stats *stats)
{
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.cache_dir = cache_dir;
    opt.shape = ts_first_shape();
    ps_context *ctx = NULL;
    const ps_status st = ps_context_create(&ctx, &opt);
    if (st != PS_OK)
        fail_msg("context: %s: %s", ps_status_string(st), ps_context_last_error(NULL));
    if (stats)
        assert_int_equal(ps_context_cache_stats(ctx, stats), PS_OK);
    return ctx;
}

/* Exact attention on a small seeded case: 1 when every output is 42, 0 when
 * the output matches the reference, fails otherwise. */
static int outputs_are_42(ps_context *ctx)
{
    ps_attention_desc d;
    ps_attention_desc_default(&d);
    d.batch = 1;
    d.heads = d.kv_heads = 2;
    d.n_q = d.n_k = 96;
    d.d = d.d_v = 32;
    d.method = PS_METHOD_EXACT;
    ts_tensors t;
    assert_int_equal(ts_tensors_make(&t, &d, 70), 0);
    ps_plan *plan = NULL;
    assert_int_equal(ps_plan_create(ctx, &d, &plan), PS_OK);
    assert_int_equal(ps_attention_host(plan, t.q, t.k, t.v, t.o, NULL), PS_OK);
    assert_int_equal(ps_ref_exact_attention(&d, t.q, t.k, t.v, t.o_ref, NULL), PS_OK);
    const size_t n = d.heads * d.n_q * d.d_v;
    size_t fours = 0;
    for (size_t i = 0; i < n; i++)
        fours += t.o[i] == 42.0f;
    const double err = ts_rel_error(t.o, t.o_ref, n);
    ps_plan_destroy(plan);
    ts_tensors_free(&t);
    if (fours == n)
        return 1;
    if (err > 1e-4)
        fail_msg("neither 42 nor the reference: rel. error %.3g, %zu of %zu are 42", err,
                 fours, n);
    return 0;
}

/* Entry names of @p dir (sorted, at most 32). */
static size_t entry_names(const char *dir, char names[32][40])
{
    size_t n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const size_t len = strlen(e->d_name);
        if (len == NAME_LEN + 4 && strcmp(e->d_name + NAME_LEN, ".bin") == 0 && n < 32)
            strcpy(names[n++], e->d_name);
    }
    closedir(d);
    return n;
}

/* The one entry of @p a that @p b lacks. */
static void only_in(const char *a, const char *b, char out[40])
{
    char na[32][40], nb[32][40];
    const size_t ca = entry_names(a, na), cb = entry_names(b, nb);
    size_t found = 0;
    for (size_t i = 0; i < ca; i++) {
        int shared = 0;
        for (size_t j = 0; j < cb; j++)
            shared |= strcmp(na[i], nb[j]) == 0;
        if (!shared) {
            strcpy(out, na[i]);
            found++;
        }
    }
    assert_int_equal(found, 1);
}

static uint64_t hex64(const char *s)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++)
        v = v << 4 | (uint64_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
    return v;
}

/* Copies entry @p from_path to "<to_dir>/<to_name>" with the header's key
 * rewritten to that name and the MAC recomputed under @p secret_dir's key:
 * exactly what someone holding that secret could write. */
static void rekey(const char *from_path, const char *to_dir, const char *to_name,
                  const char *secret_dir)
{
    size_t n = 0, sn = 0;
    unsigned char *f = read_all(from_path, &n);
    assert_true(n > PS_CACHE_HEADER_SIZE + PS_CACHE_TRAILER_SIZE);
    const uint64_t h[2] = {hex64(to_name), hex64(to_name + 16)};
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 8; i++)
            f[12 + 8 * w + i] = (unsigned char)(h[w] >> (8 * i));
    char path[PATH_CAP];
    path_join(path, secret_dir, PS_CACHE_SECRET_NAME);
    unsigned char *secret = read_all(path, &sn);
    ps_hmac_sha256 mac;
    ps_hmac_sha256_init(&mac, secret, sn);
    ps_hmac_sha256_update(&mac, f, n - PS_CACHE_TRAILER_SIZE);
    ps_hmac_sha256_final(&mac, f + n - PS_CACHE_TRAILER_SIZE);
    path_join(path, to_dir, to_name);
    unlink(path);
    write_all(path, f, n);
    free(secret);
    free(f);
}

/* XDG_STATE_HOME chooses whose secret a context uses. */
static void as_user(const char *home, char *secret_dir)
{
    setenv("XDG_STATE_HOME", home, 1);
    path_join(secret_dir, home, "prescore-cl");
}

static void test_planted_entry_refused(void **state)
{
    (void)state;
    char evil_src[PATH_CAP], evil_cache[PATH_CAP], victim_cache[PATH_CAP];
    char attacker_home[PATH_CAP], victim_home[PATH_CAP];
    char attacker_secret[PATH_CAP], victim_secret[PATH_CAP];
    path_join(evil_src, root, "evil-src");
    path_join(evil_cache, root, "evil-cache");
    path_join(victim_cache, root, "victim-cache");
    path_join(attacker_home, root, "attacker-home");
    path_join(victim_home, root, "victim-home");
    strcpy(kept_home, victim_home);
    ps_cache_stats s;

    /* The attacker's build: their secret, modified source. */
    write_evil_sources(evil_src);
    as_user(attacker_home, attacker_secret);
    setenv("PRESCORE_KERNEL_DIR", evil_src, 1);
    ps_context *ctx = context_in(evil_cache, NULL);
    assert_int_equal(outputs_are_42(ctx), 1);
    ps_context_destroy(ctx);
    unsetenv("PRESCORE_KERNEL_DIR");

    /* The victim's cache, then the attacker's entry under the real name. */
    as_user(victim_home, victim_secret);
    ctx = context_in(victim_cache, NULL);
    assert_int_equal(outputs_are_42(ctx), 0);
    ps_context_destroy(ctx);
    char evil_name[40], real_name[40], evil_path[PATH_CAP];
    only_in(evil_cache, victim_cache, evil_name);
    only_in(victim_cache, evil_cache, real_name);
    path_join(evil_path, evil_cache, evil_name);
    rekey(evil_path, victim_cache, real_name, attacker_secret);

    /* Refused, rebuilt, correct, and the real entry written back. */
    ctx = context_in(victim_cache, &s);
    assert_int_equal(s.refused_foreign, 1);
    assert_int_equal(s.refused_unsafe + s.refused_damaged + s.refused_unusable, 0);
    assert_int_equal(s.stored, 1);
    assert_int_equal(ps_context_programs_from_cache(ctx), 0);
    assert_int_equal(outputs_are_42(ctx), 0);
    ps_context_destroy(ctx);
    ctx = context_in(victim_cache, &s);
    assert_int_equal(s.refused_foreign + s.stored, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 1);
    ps_context_destroy(ctx);

    /* Control: with the victim's own secret the same entry is trusted and
     * runs, so the refusal above is the MAC's doing. */
    rekey(evil_path, victim_cache, real_name, victim_secret);
    ctx = context_in(victim_cache, &s);
    assert_int_equal(s.refused_foreign, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 1);
    assert_int_equal(outputs_are_42(ctx), 1);
    ps_context_destroy(ctx);

    /* An authentic entry of another program under the attention name: it
     * loads but lacks the kernels, so it is deleted and rebuilt. */
    char other_path[PATH_CAP];
    char names[32][40];
    const size_t count = entry_names(victim_cache, names);
    size_t other = count;
    for (size_t i = 0; i < count; i++) {
        path_join(other_path, victim_cache, names[i]);
        struct stat sb;
        assert_int_equal(stat(other_path, &sb), 0);
        /* any other program binary will do */
        if (strcmp(names[i], real_name) != 0 && sb.st_size > 4096)
            other = i;
    }
    assert_true(other < count);
    path_join(other_path, victim_cache, names[other]);
    rekey(other_path, victim_cache, real_name, victim_secret);
    ctx = context_in(victim_cache, &s);
    assert_int_equal(s.refused_unusable, 1);
    assert_int_equal(s.refused_foreign, 0);
    assert_int_equal(s.stored, 1);
    assert_int_equal(outputs_are_42(ctx), 0);
    ps_context_destroy(ctx);
    ctx = context_in(victim_cache, &s);
    assert_int_equal(s.refused_unusable + s.stored, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 1);
    ps_context_destroy(ctx);

    /* For test_authentic_junk_entry. */
    strcpy(kept_cache, victim_cache);
    strcpy(kept_secret, victim_secret);
    strcpy(kept_name, real_name);
    kept_entries = count;
}

/* An authentic entry holding bytes no driver accepts as a binary (say,
 * written by a buggy build): the driver rejects it, it is deleted and
 * rebuilt, and it does not count as used. Runs on the victim cache of
 * test_planted_entry_refused. Mesa rusticl aborts the process on such bytes
 * instead of returning CL_INVALID_BINARY (docs/DEVICES.md), so CI skips this
 * test there by name. */
static void test_authentic_junk_entry(void **state)
{
    (void)state;
    if (ts_skip_by_name("test_authentic_junk_entry"))
        return;
    assert_true(kept_name[0] != '\0');
    as_user(kept_home, kept_secret);
    ps_cache c;
    ps_cache_key key = {hex64(kept_name), hex64(kept_name + 16)};
    static const unsigned char junk[] = "this is not a program binary";
    assert_int_equal(ps_cache_open(&c, kept_cache, kept_secret, 0), PS_OK);
    assert_int_equal(ps_cache_store(&c, key, junk, sizeof junk), PS_OK);
    ps_cache_close(&c);
    ps_cache_stats s;
    ps_context *ctx = context_in(kept_cache, &s);
    assert_int_equal(s.refused_unusable, 1);
    assert_int_equal(s.stored, 1);
    assert_int_equal(s.loaded, kept_entries - 1); /* every other entry */
    assert_int_equal(outputs_are_42(ctx), 0);
    ps_context_destroy(ctx);
}

static void test_world_writable_dir_unused(void **state)
{
    (void)state;
    char dir[PATH_CAP], home[PATH_CAP], secret[PATH_CAP];
    path_join(dir, root, "shared-cache");
    path_join(home, root, "user-home");
    as_user(home, secret);
    ps_cache_stats s;
    ps_context *ctx = context_in(dir, &s);
    ps_context_destroy(ctx);
    char names[32][40];
    const size_t entries = entry_names(dir, names);
    assert_true(entries >= 2);

    assert_int_equal(chmod(dir, 0777), 0);
    ctx = context_in(dir, &s);
    assert_true(s.refused_unsafe >= 1);
    assert_int_equal(s.loaded + s.stored, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 0);
    assert_int_equal(outputs_are_42(ctx), 0);
    ps_context_destroy(ctx);
    assert_int_equal(entry_names(dir, names), entries);

    /* Closed again, it is used again. */
    assert_int_equal(chmod(dir, 0700), 0);
    ctx = context_in(dir, &s);
    assert_int_equal(s.refused_unsafe, 0);
    assert_int_equal(ps_context_programs_from_cache(ctx), 1);
    ps_context_destroy(ctx);
}

/* PRESCORE_KERNEL_DIR holding a FIFO or a directory where a source should
 * be: a clear PS_ERR_IO at once, never an open() that waits for a writer
 * (a 5 s alarm kills the test instead of letting it hang). */
static void test_kernel_dir_special_files_refused(void **state)
{
    (void)state;
    char dir[PATH_CAP], path[PATH_CAP];
    path_join(dir, root, "fifo-src");
    write_evil_sources(dir);
    path_join(path, dir, "philox.h");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    setenv("PRESCORE_KERNEL_DIR", dir, 1);
    ps_context_options opt;
    ps_context_options_default(&opt);
    opt.disable_cache = 1;
    ps_context *ctx = NULL;
    alarm(5);
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_IO);
    alarm(0);
    assert_null(ctx);
    assert_non_null(strstr(ps_context_last_error(NULL), "philox.h (not a regular file)"));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_IO);
    assert_non_null(strstr(ps_context_last_error(NULL), "philox.h (not a regular file)"));
    assert_int_equal(rmdir(path), 0);
    /* A listening socket (open() cannot open one at all). */
    const int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(sock >= 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof addr.sun_path);
    strcpy(addr.sun_path, path);
    assert_int_equal(bind(sock, (const struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(sock, 1), 0);
    alarm(5);
    assert_int_equal(ps_context_create(&ctx, &opt), PS_ERR_IO);
    alarm(0);
    assert_non_null(strstr(ps_context_last_error(NULL), "cannot read philox.h"));
    close(sock);
    unsetenv("PRESCORE_KERNEL_DIR");
}

int main(void)
{
    if (!ts_have_device("cache_trust_device"))
        return 77;
    snprintf(root, sizeof root, "/tmp/prescore-trust-XXXXXX");
    if (!mkdtemp(root))
        return 1;
    unsetenv("PRESCORE_SECRET_DIR"); /* XDG_STATE_HOME decides below */
    const char *old_home = getenv("XDG_STATE_HOME");
    char *saved_home = old_home ? strdup(old_home) : NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_entry_refused),
        cmocka_unit_test(test_authentic_junk_entry),
        cmocka_unit_test(test_world_writable_dir_unused),
        cmocka_unit_test(test_kernel_dir_special_files_refused),
    };
    const int rc = cmocka_run_group_tests_name("cache_trust_device", tests, NULL, NULL);
    if (saved_home)
        setenv("XDG_STATE_HOME", saved_home, 1);
    free(saved_home);
    char cmd[PATH_CAP];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return rc;
}
