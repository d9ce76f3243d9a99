/* On-disk cache of compiled OpenCL program binaries, free of OpenCL calls: the
 * caller gets the binary with clGetProgramInfo and hands it back to
 * clCreateProgramWithBinary. Entries are keyed by a 128-bit hash of whatever
 * the caller says identifies a build (source, options, device, driver, ...).
 *
 * Trust. A binary is native code the driver runs (PoCL dlopens it), so the
 * cache only ever returns what this user stored:
 *   - every entry carries an HMAC-SHA-256 over its header and payload, keyed
 *     by a per-user secret (32 random bytes in "<secret dir>/secret-key",
 *     created 0600 in a 0700 directory, refused unless it is a regular file of
 *     exactly 32 bytes owned by the effective user with no group/other access);
 *   - the cache directory and the secret directory are refused unless they are
 *     directories owned by the effective user that neither group nor others
 *     may write;
 *   - entries are opened relative to the checked directory with O_NOFOLLOW and
 *     O_NONBLOCK (a FIFO never blocks) and refused unless they are regular
 *     files owned by the user that neither group nor others may write.
 * The secret lives in the user's state directory (ps_cache_secret_dir_default),
 * never in the cache tree, so entries made under another secret (another
 * user's, a copied or restored cache directory) are refused and rebuilt.
 * Every refusal is counted in the ps_cache object and, when verbose, reported
 * on stderr with its reason; a miss (no file) is not a refusal.
 *
 * Directory: one file per key, "<h1 as 16 hex><h2 as 16 hex>.bin".
 *
 * File layout (all integers little-endian, written byte by byte whatever the
 * host's byte order):
 *
 *   offset  size  field
 *        0     8  magic "PSCLBIN\0"
 *        8     4  u32 format version (PS_CACHE_FORMAT_VERSION)
 *       12     8  u64 key.h1
 *       20     8  u64 key.h2
 *       28     8  u64 payload size N (1 <= N <= PS_CACHE_MAX_PAYLOAD)
 *       36     N  payload (the program binary)
 *     36+N    32  HMAC-SHA-256(secret, bytes 0 .. 36+N-1)
 *
 * The file is exactly 68 + N bytes long; anything else is refused.
 *
 * Writers create a unique temporary file ".<name>.<random>" in the cache
 * directory and rename it over "<name>", so readers only ever see complete
 * files and concurrent writers of the same key simply replace each other.
 *
 * On Windows (_WIN32) the cache is never usable: loads miss, stores fail. */
#ifndef PRESCORE_PROGRAM_CACHE_H
#define PRESCORE_PROGRAM_CACHE_H

#include "prescore/prescore.h"

#include <stddef.h>
#include <stdint.h>

/* Bump whenever the file layout or the key hash changes. It is part of every
 * key too, so library versions with different formats sharing one directory
 * use different file names instead of evicting each other. */
#define PS_CACHE_FORMAT_VERSION 3u

#define PS_CACHE_MAGIC "PSCLBIN" /* 7 characters plus the terminating NUL: 8 bytes */
#define PS_CACHE_MAGIC_SIZE 8
#define PS_CACHE_HEADER_SIZE 36  /* magic, version, key, payload size */
#define PS_CACHE_TRAILER_SIZE 32 /* HMAC-SHA-256 */
#define PS_CACHE_SECRET_SIZE 32
#define PS_CACHE_SECRET_NAME "secret-key"
/* Largest payload accepted on load and store: a corrupt size field never
 * leads to a larger allocation (and never past the file's real size). */
#define PS_CACHE_MAX_PAYLOAD ((uint64_t)256 * 1024 * 1024)
/* Length of a file name from ps_cache_file_name, terminating NUL included. */
#define PS_CACHE_FILE_NAME_SIZE 37

typedef struct ps_cache_key {
    uint64_t h1, h2;
} ps_cache_key;

/* Why something in the cache was not used. */
typedef enum ps_cache_refusal {
    PS_CACHE_REFUSED_DIRECTORY = 0, /* cache or secret directory: owner, mode or type */
    PS_CACHE_REFUSED_SECRET,        /* secret-key file: owner, mode, type or size */
    PS_CACHE_REFUSED_NOT_FILE,      /* entry is a FIFO, socket, device, link, directory */
    PS_CACHE_REFUSED_OWNER,         /* entry owned by another user or group/other-writable */
    PS_CACHE_REFUSED_FORMAT,        /* magic, version, key, size or length wrong */
    PS_CACHE_REFUSED_MAC,           /* authentication failed: not made with our secret */
    PS_CACHE_REFUSED_PROGRAM,       /* the driver rejected it or it lacked kernels */
    PS_CACHE_REFUSAL_COUNT
} ps_cache_refusal;

/* An opened cache directory. After a failed ps_cache_open it is unusable:
 * loads miss and stores fail, so callers need no special case. */
typedef struct ps_cache {
    int dir_fd; /* -1: unusable */
    char *dir;  /* for messages */
    int verbose;
    unsigned char secret[PS_CACHE_SECRET_SIZE];
    unsigned refused[PS_CACHE_REFUSAL_COUNT];
    unsigned loaded, stored;
} ps_cache;

/* Where the cache and its secret live, and whether it is on: lib/settings.h. */

/** Hashes @p count parts into a key. Each part is hashed together with its
 * length (and the count first), so ("ab","c") and ("a","bc") differ. A NULL
 * part counts as empty whatever its length. The key is the first 128 bits of
 * SHA-256 over PS_CACHE_FORMAT_VERSION and the parts: collisions are not a
 * practical concern, but the name is public and no security boundary (the
 * MAC is).
 * @param parts   @p count pointers (the array may be NULL when count is 0)
 * @param lengths byte length of each part (NUL bytes inside are fine) */
ps_cache_key ps_cache_key_make(const char *const *parts, const size_t *lengths,
                               size_t count);

/** Writes the entry's file name: 32 lowercase hex digits then ".bin" and a
 * NUL (37 bytes used of the 40). */
void ps_cache_file_name(ps_cache_key key, char out[40]);

/** Opens @p dir (created with its missing parents, mode 0700) and the secret
 * in @p secret_dir (created likewise, and the secret with it, when missing).
 * Either directory refused, or the secret refused or unobtainable, leaves the
 * cache unusable with the refusal counted (and reported when @p verbose).
 * @p cache is initialised whatever the answer: ps_cache_close it.
 * @return PS_OK when usable; PS_ERR_IO when not; PS_ERR_OUT_OF_HOST_MEMORY;
 *         PS_ERR_INVALID_ARGUMENT for NULL pointers */
ps_status ps_cache_open(ps_cache *cache, const char *dir, const char *secret_dir,
                        int verbose);

/** Closes the directory and wipes the secret; the counters stay readable. */
void ps_cache_close(ps_cache *cache);

/** Loads the entry for @p key.
 * @param binary receives a malloc'd copy of the payload on PS_OK (the caller
 *               frees it); NULL otherwise
 * @param size   receives the payload size on PS_OK; 0 otherwise
 * @return PS_OK on an authenticated hit; PS_ERR_IO on a miss, an unusable
 *         cache or a refused entry (counted); PS_ERR_OUT_OF_HOST_MEMORY if the
 *         payload cannot be allocated; PS_ERR_INVALID_ARGUMENT for NULLs */
ps_status ps_cache_load(ps_cache *cache, ps_cache_key key, unsigned char **binary,
                        size_t *size);

/** Stores @p binary under @p key: a unique temporary file renamed into place,
 * removed on any failure.
 * @return PS_OK; PS_ERR_IO when anything fails or the cache is unusable, also
 *         for an empty binary or one over PS_CACHE_MAX_PAYLOAD;
 *         PS_ERR_INVALID_ARGUMENT for NULL pointers */
ps_status ps_cache_store(ps_cache *cache, ps_cache_key key, const unsigned char *binary,
                         size_t size);

/** Counts a refusal of @p key's entry decided by the caller (@p why, e.g. the
 * driver rejected the binary), reports it when verbose, and deletes the
 * entry so that the rebuilt one replaces it. */
void ps_cache_discard(ps_cache *cache, ps_cache_key key, ps_cache_refusal why,
                      const char *detail);

/** Short text of a refusal reason, for messages. */
const char *ps_cache_refusal_string(ps_cache_refusal why);

#endif
