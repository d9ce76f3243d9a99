/* On-disk program-binary cache: key hashing, cache-directory choice, and the
 * authenticated load/store of one entry file (layout and trust rules in
 * program_cache.h). POSIX only for the file operations; Windows builds get a
 * cache that is never usable. */
#define _POSIX_C_SOURCE 200809L

#include "program_cache.h"

#include "internal.h" /* PS_GOTO_IF */
#include "core/host_alloc.h"
#include "sha256.h"

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

/* SHA-256 of the format version, the part count, then each part's length
 * and bytes; the key is the digest's first 16 bytes. */
ps_cache_key ps_cache_key_make(const char *const *parts, const size_t *lengths,
                               size_t count)
{
    ps_sha256 h;
    unsigned char word[8], digest[PS_SHA256_SIZE];
    ps_sha256_init(&h);
    put_u32(word, PS_CACHE_FORMAT_VERSION);
    ps_sha256_update(&h, word, 4);
    if (!parts || !lengths)
        count = 0;
    put_u64(word, (uint64_t)count);
    ps_sha256_update(&h, word, 8);
    for (size_t i = 0; i < count; i++) {
        const size_t n = parts[i] ? lengths[i] : 0;
        put_u64(word, (uint64_t)n);
        ps_sha256_update(&h, word, 8);
        ps_sha256_update(&h, parts[i], n);
    }
    ps_sha256_final(&h, digest);
    ps_cache_key key;
    key.h1 = 0;
    key.h2 = 0;
    for (int i = 0; i < 8; i++) {
        key.h1 = key.h1 << 8 | digest[i];
        key.h2 = key.h2 << 8 | digest[8 + i];
    }
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

const char *ps_cache_refusal_string(ps_cache_refusal why)
{
    switch (why) {
    case PS_CACHE_REFUSED_DIRECTORY:
        return "directory not a directory owned by this user and closed to writes by others";
    case PS_CACHE_REFUSED_SECRET:
        return "secret key unsafe (owner, mode, type or size)";
    case PS_CACHE_REFUSED_NOT_FILE:
        return "not a regular file";
    case PS_CACHE_REFUSED_OWNER:
        return "owned by another user or writable by group or others";
    case PS_CACHE_REFUSED_FORMAT:
        return "damaged (magic, version, key or size)";
    case PS_CACHE_REFUSED_MAC:
        return "authentication failed (damaged, or not written with this user's secret)";
    case PS_CACHE_REFUSED_PROGRAM:
        return "rejected by the driver or missing kernels";
    case PS_CACHE_REFUSAL_COUNT:
        break;
    }
    return "unknown reason";
}

static void refuse(ps_cache *cache, ps_cache_refusal why, const char *what)
{
    cache->refused[why]++;
    if (cache->verbose)
        fprintf(stderr, "prescore: cache %s in %s refused: %s\n", what,
                cache->dir ? cache->dir : "(none)", ps_cache_refusal_string(why));
}

/* MAC of an entry's header and payload under the cache's secret. */
static void entry_mac(const ps_cache *cache, const unsigned char *header,
                      const unsigned char *payload, size_t size,
                      unsigned char out[PS_CACHE_TRAILER_SIZE])
{
    ps_hmac_sha256 h;
    ps_hmac_sha256_init(&h, cache->secret, sizeof cache->secret);
    ps_hmac_sha256_update(&h, header, PS_CACHE_HEADER_SIZE);
    ps_hmac_sha256_update(&h, payload, size);
    ps_hmac_sha256_final(&h, out);
}

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* -------------------------------------------------------------- entry files */

#ifdef _WIN32

ps_status ps_cache_open(ps_cache *cache, const char *dir, const char *secret_dir,
                        int verbose)
{
    if (!cache)
        return PS_ERR_INVALID_ARGUMENT;
    memset(cache, 0, sizeof *cache);
    cache->dir_fd = -1;
    cache->verbose = verbose;
    return dir && secret_dir ? PS_ERR_IO : PS_ERR_INVALID_ARGUMENT;
}

void ps_cache_close(ps_cache *cache)
{
    if (cache) {
        free(cache->dir);
        cache->dir = NULL;
    }
}

ps_status ps_cache_load(ps_cache *cache, ps_cache_key key, unsigned char **binary,
                        size_t *size)
{
    (void)cache;
    (void)key;
    if (binary)
        *binary = NULL;
    if (size)
        *size = 0;
    return binary && size ? PS_ERR_IO : PS_ERR_INVALID_ARGUMENT;
}

ps_status ps_cache_store(ps_cache *cache, ps_cache_key key, const unsigned char *binary,
                         size_t size)
{
    (void)cache;
    (void)key;
    (void)size;
    return binary ? PS_ERR_IO : PS_ERR_INVALID_ARGUMENT;
}

void ps_cache_discard(ps_cache *cache, ps_cache_key key, ps_cache_refusal why,
                      const char *detail)
{
    (void)key;
    (void)detail;
    if (cache && why < PS_CACHE_REFUSAL_COUNT)
        cache->refused[why]++;
}

#else

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
 * fine whatever mkdir says (EEXIST, or EACCES/EROFS on some systems); its
 * owner and mode are checked by open_checked_dir, not changed. */
static int make_dirs(const char *dir)
{
    if (*dir == '\0')
        return -1;
    if (is_directory(dir))
        return 0;
    char *path = ps_str_concat(dir, "");
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

/* Owned by the effective user and closed to writes by group and others. */
static int owned_and_private(const struct stat *sb)
{
    return sb->st_uid == geteuid() && (sb->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

static int open_retry(int dir_fd, const char *name, int flags, mode_t mode)
{
    int fd;
    do
        fd = openat(dir_fd, name, flags, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* Creates @p dir if missing, opens it, and checks it: -1 (refusal counted)
 * unless it is a directory owned by us that others may not write. */
static int open_checked_dir(ps_cache *cache, const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        cache->refused[PS_CACHE_REFUSED_DIRECTORY]++;
        if (cache->verbose)
            fprintf(stderr, "prescore: cache directory %s refused: not a directory\n", dir);
        return -1;
    }
    if (make_dirs(dir) != 0) {
        if (cache->verbose)
            fprintf(stderr, "prescore: cache directory %s cannot be created\n", dir);
        return -1;
    }
    const int fd = open_retry(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) {
        if (cache->verbose)
            fprintf(stderr, "prescore: cache directory %s cannot be opened\n", dir);
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISDIR(sb.st_mode) || !owned_and_private(&sb)) {
        close(fd);
        cache->refused[PS_CACHE_REFUSED_DIRECTORY]++;
        if (cache->verbose)
            fprintf(stderr, "prescore: cache directory %s refused: %s\n", dir,
                    ps_cache_refusal_string(PS_CACHE_REFUSED_DIRECTORY));
        return -1;
    }
    return fd;
}

static int read_random(unsigned char *out, size_t n)
{
    const int fd = open_retry(AT_FDCWD, "/dev/urandom", O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0);
    struct stat sb;
    int rc = -1;
    if (fd < 0)
        return -1;
    if (fstat(fd, &sb) == 0 && S_ISCHR(sb.st_mode) && read_full(fd, out, n) == 0)
        rc = 0;
    close(fd);
    return rc;
}

/* A hidden temporary name in the directory of @p dir_fd, created exclusively
 * (mode 0600); "" in @p name and -1 when 16 tries collide or fail. */
static int create_temp(int dir_fd, const char *base, char name[96])
{
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned char r[6];
        if (read_random(r, sizeof r) != 0)
            break;
        snprintf(name, 96, ".%s.%02x%02x%02x%02x%02x%02x", base, r[0], r[1], r[2], r[3],
                 r[4], r[5]);
        const int fd = open_retry(dir_fd, name,
                                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                  0600);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            break;
    }
    name[0] = '\0';
    return -1;
}

/* Writes a fresh secret and links it into place; a concurrent creator that
 * links first wins (link never replaces), and both then read its secret. */
static int create_secret(int dir_fd)
{
    unsigned char secret[PS_CACHE_SECRET_SIZE];
    char temp[96];
    if (read_random(secret, sizeof secret) != 0)
        return -1;
    const int fd = create_temp(dir_fd, PS_CACHE_SECRET_NAME, temp);
    if (fd < 0) {
        wipe(secret, sizeof secret);
        return -1;
    }
    int rc = write_full(fd, secret, sizeof secret) == 0 &&
                     (fsync(fd) == 0 || errno == EINVAL)
                 ? 0
                 : -1;
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0 && linkat(dir_fd, temp, dir_fd, PS_CACHE_SECRET_NAME, 0) != 0 &&
        errno != EEXIST) {
        /* No hard links here (vfat, some network file systems): create the
         * name exclusively and write it in place. A reader racing this sees a
         * short file and refuses it once; it never sees another secret. */
        const int direct = open_retry(dir_fd, PS_CACHE_SECRET_NAME,
                                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                      0600);
        if (direct >= 0) {
            rc = write_full(direct, secret, sizeof secret);
            if (close(direct) != 0)
                rc = -1;
        } else if (errno != EEXIST) {
            rc = -1;
        }
    }
    wipe(secret, sizeof secret);
    unlinkat(dir_fd, temp, 0);
    return rc;
}

/* Reads the secret, creating it when missing: 0, or -1 (refusal counted when
 * a file is there but unsafe). */
static int load_secret(ps_cache *cache, int dir_fd)
{
    const int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    int fd = open_retry(dir_fd, PS_CACHE_SECRET_NAME, flags, 0);
    if (fd < 0 && errno == ENOENT && create_secret(dir_fd) == 0)
        fd = open_retry(dir_fd, PS_CACHE_SECRET_NAME, flags, 0);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENXIO)
            refuse(cache, PS_CACHE_REFUSED_SECRET, "secret key");
        else if (cache->verbose)
            fprintf(stderr, "prescore: cache secret key cannot be read or created\n");
        return -1;
    }
    struct stat sb;
    int rc = -1;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == geteuid() &&
        (sb.st_mode & 077) == 0 && sb.st_size == PS_CACHE_SECRET_SIZE &&
        read_full(fd, cache->secret, sizeof cache->secret) == 0)
        rc = 0;
    close(fd);
    if (rc != 0)
        refuse(cache, PS_CACHE_REFUSED_SECRET, "secret key");
    return rc;
}

ps_status ps_cache_open(ps_cache *cache, const char *dir, const char *secret_dir,
                        int verbose)
{
    if (!cache)
        return PS_ERR_INVALID_ARGUMENT;
    memset(cache, 0, sizeof *cache);
    cache->dir_fd = -1;
    cache->verbose = verbose;
    if (!dir || !secret_dir)
        return PS_ERR_INVALID_ARGUMENT;
    cache->dir = ps_str_concat(dir, "");
    if (!cache->dir)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    const int secret_fd = open_checked_dir(cache, secret_dir);
    if (secret_fd < 0)
        return PS_ERR_IO;
    const int got_secret = load_secret(cache, secret_fd) == 0;
    close(secret_fd);
    if (!got_secret)
        return PS_ERR_IO;
    cache->dir_fd = open_checked_dir(cache, dir);
    if (cache->dir_fd < 0) {
        wipe(cache->secret, sizeof cache->secret);
        return PS_ERR_IO;
    }
    return PS_OK;
}

void ps_cache_close(ps_cache *cache)
{
    if (!cache)
        return;
    if (cache->dir_fd >= 0)
        close(cache->dir_fd);
    cache->dir_fd = -1;
    wipe(cache->secret, sizeof cache->secret);
    free(cache->dir);
    cache->dir = NULL;
}

/* Opens the entry without following links or blocking and checks what it is:
 * the descriptor, or -1 on a miss or a refusal (counted). */
static int open_entry(ps_cache *cache, const char *name, struct stat *sb)
{
    const int fd = open_retry(cache->dir_fd, name,
                              O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENXIO || errno == EISDIR)
            refuse(cache, PS_CACHE_REFUSED_NOT_FILE, name);
        return -1;
    }
    if (fstat(fd, sb) != 0 || !S_ISREG(sb->st_mode)) {
        close(fd);
        refuse(cache, PS_CACHE_REFUSED_NOT_FILE, name);
        return -1;
    }
    if (!owned_and_private(sb)) {
        close(fd);
        refuse(cache, PS_CACHE_REFUSED_OWNER, name);
        return -1;
    }
    return fd;
}

ps_status ps_cache_load(ps_cache *cache, ps_cache_key key, unsigned char **binary,
                        size_t *size)
{
    ps_status st = PS_OK;
    unsigned char *payload = NULL;
    int fd = -1;
    unsigned char header[PS_CACHE_HEADER_SIZE];
    unsigned char trailer[PS_CACHE_TRAILER_SIZE], mac[PS_CACHE_TRAILER_SIZE];
    unsigned char extra;
    char name[40];
    struct stat sb;
    ps_cache_refusal why = PS_CACHE_REFUSED_FORMAT;

    if (binary)
        *binary = NULL;
    if (size)
        *size = 0;
    PS_GOTO_IF(!cache || !binary || !size, PS_ERR_INVALID_ARGUMENT);
    PS_GOTO_IF(cache->dir_fd < 0, PS_ERR_IO);
    ps_cache_file_name(key, name);
    fd = open_entry(cache, name, &sb);
    if (fd < 0)
        return PS_ERR_IO;
    const uint64_t file_size = (uint64_t)sb.st_size;
    PS_GOTO_IF(file_size < PS_CACHE_HEADER_SIZE + PS_CACHE_TRAILER_SIZE, PS_ERR_IO);

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
    entry_mac(cache, header, payload, (size_t)n, mac);
    why = PS_CACHE_REFUSED_MAC;
    PS_GOTO_IF(!ps_equal_constant_time(mac, trailer, sizeof mac), PS_ERR_IO);

    cache->loaded++;
    *binary = payload;
    *size = (size_t)n;
    payload = NULL;
cleanup:
    if (fd >= 0)
        close(fd);
    if (st == PS_ERR_IO && fd >= 0)
        refuse(cache, why, name);
    free(payload);
    return st;
}

ps_status ps_cache_store(ps_cache *cache, ps_cache_key key, const unsigned char *binary,
                         size_t size)
{
    ps_status st = PS_OK;
    int fd = -1;
    char name[40], temp[96] = "";
    unsigned char header[PS_CACHE_HEADER_SIZE];
    unsigned char trailer[PS_CACHE_TRAILER_SIZE];

    PS_GOTO_IF(!cache || !binary, PS_ERR_INVALID_ARGUMENT);
    PS_GOTO_IF(cache->dir_fd < 0, PS_ERR_IO);
    PS_GOTO_IF(size == 0 || (uint64_t)size > PS_CACHE_MAX_PAYLOAD, PS_ERR_IO);
    ps_cache_file_name(key, name);
    /* Hidden, and never ending in ".bin": no reader can mistake it for an entry. */
    fd = create_temp(cache->dir_fd, name, temp);
    PS_GOTO_IF(fd < 0, PS_ERR_IO);

    memcpy(header, PS_CACHE_MAGIC, PS_CACHE_MAGIC_SIZE);
    put_u32(header + 8, PS_CACHE_FORMAT_VERSION);
    put_u64(header + 12, key.h1);
    put_u64(header + 20, key.h2);
    put_u64(header + 28, (uint64_t)size);
    entry_mac(cache, header, binary, size, trailer);
    PS_GOTO_IF(write_full(fd, header, sizeof header) != 0, PS_ERR_IO);
    PS_GOTO_IF(write_full(fd, binary, size) != 0, PS_ERR_IO);
    PS_GOTO_IF(write_full(fd, trailer, sizeof trailer) != 0, PS_ERR_IO);
    /* Data on disk before the rename makes it visible; file systems that
     * cannot sync (EINVAL) are accepted, the MAC still guards the reader. */
    PS_GOTO_IF(fsync(fd) != 0 && errno != EINVAL, PS_ERR_IO);
    {
        const int rc = close(fd);
        fd = -1;
        PS_GOTO_IF(rc != 0, PS_ERR_IO);
    }
    PS_GOTO_IF(renameat(cache->dir_fd, temp, cache->dir_fd, name) != 0, PS_ERR_IO);
    temp[0] = '\0';
    cache->stored++;
cleanup:
    if (fd >= 0)
        close(fd);
    if (temp[0])
        unlinkat(cache->dir_fd, temp, 0);
    return st;
}

void ps_cache_discard(ps_cache *cache, ps_cache_key key, ps_cache_refusal why,
                      const char *detail)
{
    char name[40];
    if (!cache || why >= PS_CACHE_REFUSAL_COUNT)
        return;
    ps_cache_file_name(key, name);
    cache->refused[why]++;
    if (cache->loaded > 0)
        cache->loaded--; /* it was counted as used when it loaded */
    if (cache->verbose)
        fprintf(stderr, "prescore: cache %s in %s refused: %s (%s); deleted\n", name,
                cache->dir ? cache->dir : "(none)", ps_cache_refusal_string(why),
                detail ? detail : "");
    if (cache->dir_fd >= 0)
        unlinkat(cache->dir_fd, name, 0);
}

#endif /* _WIN32 */
