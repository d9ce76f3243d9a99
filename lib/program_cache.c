/* On-disk program-binary cache: key hashing, cache-directory choice, and the
 * load/store of one entry file (layout and guarantees in program_cache.h).
 * POSIX only for the file operations; Windows builds get a disabled cache. */
#define _POSIX_C_SOURCE 200809L

#include "program_cache.h"

#include "internal.h" /* PS_GOTO_IF */
#include "host_alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#endif

/* ------------------------------------------------------------------ hashing */

#define FNV64_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV64_PRIME UINT64_C(0x00000100000001b3)
#define MIX_SEED UINT64_C(0x9e3779b97f4a7c15)
#define MIX_MUL UINT64_C(0xff51afd7ed558ccd)
#define SUM_SEED UINT64_C(0x6a09e667f3bcc909)
#define SUM_MUL UINT64_C(0xc4ceb9fe1a85ec53)

/* Two hashes fed the same bytes: FNV-1a and a multiply/xor-shift chain whose
 * every step is a bijection of the state, finalised separately. Different
 * constructions, so a collision of one says nothing about the other. */
typedef struct hash2 {
    uint64_t a, b;
} hash2;

static void hash2_bytes(hash2 *h, const unsigned char *p, size_t n)
{
    uint64_t a = h->a, b = h->b;
    for (size_t i = 0; i < n; i++) {
        a = (a ^ p[i]) * FNV64_PRIME;
        b = (b ^ p[i]) * MIX_MUL;
        b ^= b >> 29;
    }
    h->a = a;
    h->b = b;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void hash2_u64(hash2 *h, uint64_t v)
{
    unsigned char buf[8];
    put_u64(buf, v);
    hash2_bytes(h, buf, sizeof buf);
}

/* SplitMix64's finaliser: spreads every input bit over the whole word. */
static uint64_t fmix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

ps_cache_key ps_cache_key_make(const char *const *parts, const size_t *lengths,
                               size_t count)
{
    hash2 h = {FNV64_OFFSET, MIX_SEED};
    unsigned char version[4];
    put_u32(version, PS_CACHE_FORMAT_VERSION);
    hash2_bytes(&h, version, sizeof version);
    if (!parts || !lengths)
        count = 0;
    hash2_u64(&h, (uint64_t)count);
    for (size_t i = 0; i < count; i++) {
        const size_t n = parts[i] ? lengths[i] : 0;
        hash2_u64(&h, (uint64_t)n);
        hash2_bytes(&h, (const unsigned char *)parts[i], n);
    }
    ps_cache_key key;
    key.h1 = h.a;
    key.h2 = fmix64(h.b);
    return key;
}

void ps_cache_file_name(ps_cache_key key, char out[40])
{
    static const char hex[] = "0123456789abcdef";
    const uint64_t words[2] = {key.h1, key.h2};
    char *p = out;
    for (int w = 0; w < 2; w++)
        for (int shift = 60; shift >= 0; shift -= 4)
            *p++ = hex[(words[w] >> shift) & 0xf];
    memcpy(p, ".bin", 5);
}

/* Word at a time (little-endian words, so the value does not depend on the
 * host), then the tail, the length and a finaliser. */
uint64_t ps_cache_checksum(const unsigned char *data, size_t size)
{
    uint64_t h = SUM_SEED;
    size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        h = (h ^ get_u64(data + i)) * SUM_MUL;
        h ^= h >> 32;
    }
    for (; i < size; i++) {
        h = (h ^ data[i]) * SUM_MUL;
        h ^= h >> 32;
    }
    return fmix64(h ^ (uint64_t)size);
}

/* -------------------------------------------------------------- environment */

static int ascii_equal_nocase(const char *s, const char *lower)
{
    for (; *s && *lower; s++, lower++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != *lower)
            return 0;
    }
    return *s == '\0' && *lower == '\0';
}

int ps_cache_enabled_by_env(void)
{
    static const char *const off[] = {"0", "off", "no", "false"};
    const char *v = getenv("PRESCORE_CACHE");
    if (!v)
        return 1;
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        if (ascii_equal_nocase(v, off[i]))
            return 0;
    return 1;
}

/* malloc'd "a" + "b" (b may be empty), or NULL when out of memory. */
static char *concat(const char *a, const char *b)
{
    const size_t la = strlen(a), lb = strlen(b);
    char *s = ps_malloc(la + lb + 1);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

char *ps_cache_dir_default(void)
{
    const char *v = getenv("PRESCORE_CACHE_DIR");
    if (v && *v)
        return concat(v, "");
    v = getenv("XDG_CACHE_HOME");
    if (v && v[0] == '/')
        return concat(v, "/prescore-cl");
    v = getenv("HOME");
    if (v && *v)
        return concat(v, "/.cache/prescore-cl");
    return NULL;
}

/* -------------------------------------------------------------- entry files */

#ifdef _WIN32

ps_status ps_cache_load(const char *dir, ps_cache_key key, unsigned char **binary,
                        size_t *size)
{
    (void)dir;
    (void)key;
    if (binary)
        *binary = NULL;
    if (size)
        *size = 0;
    return PS_ERR_IO;
}

ps_status ps_cache_store(const char *dir, ps_cache_key key, const unsigned char *binary,
                         size_t size)
{
    (void)dir;
    (void)key;
    (void)binary;
    (void)size;
    return PS_ERR_IO;
}

#else

/* "<dir>/<prefix><entry name><suffix>", malloc'd. */
static char *entry_path(const char *dir, ps_cache_key key, const char *prefix,
                        const char *suffix)
{
    char name[40];
    ps_cache_file_name(key, name);
    const size_t n = strlen(dir) + 1 + strlen(prefix) + strlen(name) + strlen(suffix) + 1;
    char *path = ps_malloc(n);
    if (!path)
        return NULL;
    strcpy(path, dir);
    strcat(path, "/");
    strcat(path, prefix);
    strcat(path, name);
    strcat(path, suffix);
    return path;
}

/* 0 when all n bytes were read; -1 on an error or an early end of file. */
static int read_full(int fd, void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int is_directory(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* mkdir -p with mode 0700. A component that already exists as a directory is
 * fine whatever mkdir says (EEXIST, or EACCES/EROFS on some systems). */
static int make_dirs(const char *dir)
{
    if (*dir == '\0')
        return -1;
    if (is_directory(dir))
        return 0;
    char *path = concat(dir, "");
    if (!path)
        return -1;
    int rc = 0;
    for (char *p = path + 1; rc == 0; p++) {
        const int last = *p == '\0';
        if (!last && *p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && !is_directory(path))
            rc = -1;
        if (last)
            break;
        *p = '/';
    }
    free(path);
    return rc;
}

ps_status ps_cache_load(const char *dir, ps_cache_key key, unsigned char **binary,
                        size_t *size)
{
    ps_status st = PS_OK;
    char *path = NULL;
    unsigned char *payload = NULL;
    int fd = -1;
    unsigned char header[PS_CACHE_HEADER_SIZE];
    unsigned char trailer[PS_CACHE_TRAILER_SIZE];
    unsigned char extra;
    struct stat sb;

    if (binary)
        *binary = NULL;
    if (size)
        *size = 0;
    PS_GOTO_IF(!dir || !binary || !size, PS_ERR_INVALID_ARGUMENT);

    path = entry_path(dir, key, "", "");
    PS_GOTO_IF(!path, PS_ERR_OUT_OF_HOST_MEMORY);
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    PS_GOTO_IF(fd < 0, PS_ERR_IO);
    PS_GOTO_IF(fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode), PS_ERR_IO);
    PS_GOTO_IF(sb.st_size < PS_CACHE_HEADER_SIZE + PS_CACHE_TRAILER_SIZE, PS_ERR_IO);
    const uint64_t file_size = (uint64_t)sb.st_size;

    PS_GOTO_IF(read_full(fd, header, sizeof header) != 0, PS_ERR_IO);
    PS_GOTO_IF(memcmp(header, PS_CACHE_MAGIC, PS_CACHE_MAGIC_SIZE) != 0, PS_ERR_IO);
    PS_GOTO_IF(get_u32(header + 8) != PS_CACHE_FORMAT_VERSION, PS_ERR_IO);
    PS_GOTO_IF(get_u64(header + 12) != key.h1 || get_u64(header + 20) != key.h2, PS_ERR_IO);
    const uint64_t n = get_u64(header + 28);
    /* Bounded before any arithmetic or allocation: a corrupt field cannot
     * overflow the sum below nor ask for more than the file holds. */
    PS_GOTO_IF(n == 0 || n > PS_CACHE_MAX_PAYLOAD || n > (uint64_t)SIZE_MAX, PS_ERR_IO);
    PS_GOTO_IF(file_size != PS_CACHE_HEADER_SIZE + n + PS_CACHE_TRAILER_SIZE, PS_ERR_IO);

    payload = ps_malloc((size_t)n);
    PS_GOTO_IF(!payload, PS_ERR_OUT_OF_HOST_MEMORY);
    PS_GOTO_IF(read_full(fd, payload, (size_t)n) != 0, PS_ERR_IO);
    PS_GOTO_IF(read_full(fd, trailer, sizeof trailer) != 0, PS_ERR_IO);
    /* The file must end here (it may have changed since fstat). */
    PS_GOTO_IF(read_full(fd, &extra, 1) == 0, PS_ERR_IO);
    PS_GOTO_IF(get_u64(trailer) != ps_cache_checksum(payload, (size_t)n), PS_ERR_IO);

    *binary = payload;
    *size = (size_t)n;
    payload = NULL;
cleanup:
    if (fd >= 0)
        close(fd);
    free(payload);
    free(path);
    return st;
}

ps_status ps_cache_store(const char *dir, ps_cache_key key, const unsigned char *binary,
                         size_t size)
{
    ps_status st = PS_OK;
    char *final_path = NULL, *temp_path = NULL;
    int fd = -1, temp_exists = 0;
    unsigned char header[PS_CACHE_HEADER_SIZE];
    unsigned char trailer[PS_CACHE_TRAILER_SIZE];

    PS_GOTO_IF(!dir || !binary, PS_ERR_INVALID_ARGUMENT);
    PS_GOTO_IF(size == 0 || (uint64_t)size > PS_CACHE_MAX_PAYLOAD, PS_ERR_IO);
    PS_GOTO_IF(make_dirs(dir) != 0, PS_ERR_IO);

    final_path = entry_path(dir, key, "", "");
    /* Hidden, and never ending in ".bin": no reader can mistake it for an entry. */
    temp_path = entry_path(dir, key, ".", ".XXXXXX");
    PS_GOTO_IF(!final_path || !temp_path, PS_ERR_OUT_OF_HOST_MEMORY);

    fd = mkstemp(temp_path); /* mode 0600 */
    PS_GOTO_IF(fd < 0, PS_ERR_IO);
    temp_exists = 1;
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);

    memcpy(header, PS_CACHE_MAGIC, PS_CACHE_MAGIC_SIZE);
    put_u32(header + 8, PS_CACHE_FORMAT_VERSION);
    put_u64(header + 12, key.h1);
    put_u64(header + 20, key.h2);
    put_u64(header + 28, (uint64_t)size);
    put_u64(trailer, ps_cache_checksum(binary, size));
    PS_GOTO_IF(write_full(fd, header, sizeof header) != 0, PS_ERR_IO);
    PS_GOTO_IF(write_full(fd, binary, size) != 0, PS_ERR_IO);
    PS_GOTO_IF(write_full(fd, trailer, sizeof trailer) != 0, PS_ERR_IO);
    /* Data on disk before the rename makes it visible; file systems that
     * cannot sync (EINVAL) are accepted, the checksum still guards the reader. */
    PS_GOTO_IF(fsync(fd) != 0 && errno != EINVAL, PS_ERR_IO);
    {
        const int rc = close(fd);
        fd = -1;
        PS_GOTO_IF(rc != 0, PS_ERR_IO);
    }
    PS_GOTO_IF(rename(temp_path, final_path) != 0, PS_ERR_IO);
    temp_exists = 0;
cleanup:
    if (fd >= 0)
        close(fd);
    if (temp_exists)
        unlink(temp_path);
    free(temp_path);
    free(final_path);
    return st;
}

#endif /* _WIN32 */
