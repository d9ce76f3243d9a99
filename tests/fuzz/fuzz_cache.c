/* Fuzz harness of the program cache's entry reader (lib/program_cache.c): an
 * entry file is untrusted input (docs/RELIABILITY.md). The first input byte
 * picks how the rest becomes the file:
 *   0: the bytes are the whole file;
 *   1: the bytes are XORed into a valid entry (beyond its end: appended);
 *   2: the bytes are the payload of an entry written with the right secret.
 * Properties: a load never crashes, leaks or blocks; it hits exactly when
 * the file is a valid entry made with this process's secret (modes 0 and 1
 * can only get there by reproducing the valid entry byte for byte, which the
 * harness checks by comparing with it), and then returns the payload; every
 * miss is counted as exactly one refusal, of kind FORMAT or MAC. */
#define _POSIX_C_SOURCE 200809L

#include "fuzz_cache.h"

#include "program_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char entries[64], secret[64];
static ps_cache_key key = {UINT64_C(0x0123456789abcdef), UINT64_C(0xfedcba9876543210)};
static const unsigned char seed_payload[] = "seed payload: a program binary";
static unsigned char *valid;
static size_t valid_size;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_cache: property failed: %s (line %d)\n",     \
                    #cond, __LINE__);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

static void remove_dirs(void)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", secret, PS_CACHE_SECRET_NAME);
    unlink(path);
    ps_cache_file_name(key, path + snprintf(path, sizeof path, "%s/", entries));
    unlink(path);
    rmdir(entries);
    rmdir(secret);
    free(valid);
}

static char *entry_path(char out[160])
{
    const int n = snprintf(out, 160, "%s/", entries);
    ps_cache_file_name(key, out + n);
    return out;
}

static unsigned char *read_entry(size_t *size)
{
    char path[160];
    FILE *f = fopen(entry_path(path), "rb");
    CHECK(f != NULL);
    unsigned char *buf = malloc(PS_CACHE_HEADER_SIZE + sizeof seed_payload + 64);
    CHECK(buf != NULL);
    *size = fread(buf, 1, PS_CACHE_HEADER_SIZE + sizeof seed_payload + 64, f);
    fclose(f);
    return buf;
}

/* Temporary directories, the secret, and the valid entry of seed_payload. */
static void setup_once(void)
{
    if (valid)
        return;
    strcpy(entries, "/tmp/ps_fuzz_cache_XXXXXX");
    strcpy(secret, "/tmp/ps_fuzz_secret_XXXXXX");
    CHECK(mkdtemp(entries) != NULL);
    CHECK(mkdtemp(secret) != NULL);
    ps_cache c;
    CHECK(ps_cache_open(&c, entries, secret, 0) == PS_OK);
    CHECK(ps_cache_store(&c, key, seed_payload, sizeof seed_payload) == PS_OK);
    ps_cache_close(&c);
    valid = read_entry(&valid_size);
    CHECK(valid_size == PS_CACHE_HEADER_SIZE + sizeof seed_payload + PS_CACHE_TRAILER_SIZE);
    atexit(remove_dirs);
}

static void write_entry(const unsigned char *bytes, size_t size)
{
    char path[160];
    FILE *f = fopen(entry_path(path), "wb");
    CHECK(f != NULL);
    CHECK(size == 0 || fwrite(bytes, 1, size, f) == size);
    CHECK(fclose(f) == 0);
}

int ps_fuzz_cache_one(const uint8_t *data, size_t size)
{
    setup_once();
    const int mode = size ? data[0] % 3 : 0;
    const uint8_t *rest = size ? data + 1 : data;
    const size_t n = size ? size - 1 : 0;
    ps_cache c;
    CHECK(ps_cache_open(&c, entries, secret, 0) == PS_OK);

    const unsigned char *want = NULL; /* the payload a hit must return */
    size_t want_size = 0;
    if (mode == 2 && n >= 1 && n <= 4096) {
        CHECK(ps_cache_store(&c, key, rest, n) == PS_OK);
        want = rest;
        want_size = n;
    } else {
        const size_t file_size = mode == 1 && n < valid_size ? valid_size : n;
        unsigned char *file = calloc(file_size ? file_size : 1, 1);
        CHECK(file != NULL);
        if (mode == 1)
            memcpy(file, valid, valid_size);
        for (size_t i = 0; i < n; i++)
            file[i] ^= rest[i];
        write_entry(file, file_size);
        if (file_size == valid_size && memcmp(file, valid, valid_size) == 0) {
            want = seed_payload;
            want_size = sizeof seed_payload;
        }
        free(file);
    }

    unsigned char *bin = NULL;
    size_t got = 0;
    const ps_status st = ps_cache_load(&c, key, &bin, &got);
    unsigned refused = 0;
    for (int r = 0; r < PS_CACHE_REFUSAL_COUNT; r++)
        refused += c.refused[r];
    if (want) {
        CHECK(st == PS_OK);
        CHECK(got == want_size && memcmp(bin, want, got) == 0);
        CHECK(refused == 0 && c.loaded == 1);
    } else {
        CHECK(st == PS_ERR_IO && bin == NULL && got == 0);
        CHECK(refused == 1);
        CHECK(c.refused[PS_CACHE_REFUSED_FORMAT] + c.refused[PS_CACHE_REFUSED_MAC] == 1);
    }
    free(bin);
    ps_cache_close(&c);
    return want != NULL;
}

#ifdef PS_FUZZ_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ps_fuzz_cache_one(data, size);
    return 0;
}
#endif
