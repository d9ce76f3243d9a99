/* On-disk cache of compiled OpenCL program binaries, free of OpenCL calls: the
 * caller gets the binary with clGetProgramInfo and hands it back to
 * clCreateProgramWithBinary. Entries are keyed by a 128-bit hash of whatever
 * the caller says identifies a build (source, options, device, driver, ...);
 * a miss or a damaged entry is reported as PS_ERR_IO so that the caller falls
 * back to compiling.
 *
 * Directory: one file per key, named "<h1 as 16 hex><h2 as 16 hex>.bin".
 *
 * File layout (all integers little-endian, written byte by byte whatever the
 * host's byte order, so a cache directory is portable between hosts):
 *
 *   offset  size  field
 *        0     8  magic "PSCLBIN\0"
 *        8     4  u32 format version (PS_CACHE_FORMAT_VERSION)
 *       12     8  u64 key.h1
 *       20     8  u64 key.h2
 *       28     8  u64 payload size N (1 <= N <= PS_CACHE_MAX_PAYLOAD)
 *       36     N  payload (the program binary)
 *     36+N     8  u64 checksum of the payload (ps_cache_checksum)
 *
 * The file is exactly 44 + N bytes long; anything else is rejected.
 *
 * Writers create a unique temporary file ".<name>.XXXXXX" in the cache
 * directory and rename it over "<name>", so readers only ever see complete
 * files and concurrent writers of the same key simply replace each other.
 *
 * On Windows (_WIN32) loading and storing are disabled: they return
 * PS_ERR_IO, which callers already treat as "no cache". */
#ifndef PRESCORE_PROGRAM_CACHE_H
#define PRESCORE_PROGRAM_CACHE_H

#include "prescore/prescore.h"

#include <stddef.h>
#include <stdint.h>

/* Bump whenever the file layout or the key/checksum hashes change. It is part
 * of every key too, so library versions with different formats sharing one
 * directory use different file names instead of evicting each other. */
#define PS_CACHE_FORMAT_VERSION 1u

#define PS_CACHE_MAGIC "PSCLBIN" /* 7 characters plus the terminating NUL: 8 bytes */
#define PS_CACHE_MAGIC_SIZE 8
#define PS_CACHE_HEADER_SIZE 36  /* magic, version, key, payload size */
#define PS_CACHE_TRAILER_SIZE 8  /* payload checksum */
/* Largest payload accepted on load and store: a corrupt size field never
 * leads to a larger allocation (and never past the file's real size). */
#define PS_CACHE_MAX_PAYLOAD ((uint64_t)256 * 1024 * 1024)
/* Length of a file name from ps_cache_file_name, terminating NUL included. */
#define PS_CACHE_FILE_NAME_SIZE 37

typedef struct ps_cache_key {
    uint64_t h1, h2;
} ps_cache_key;

/** Cache directory: PRESCORE_CACHE_DIR if set and non-empty; else
 * $XDG_CACHE_HOME/prescore-cl (only when absolute, as the XDG spec asks); else
 * $HOME/.cache/prescore-cl; else NULL (no cache).
 * @return a malloc'd string for the caller to free, or NULL */
char *ps_cache_dir_default(void);

/** @return 0 when PRESCORE_CACHE is "0", "off", "no" or "false" (any case),
 * 1 otherwise (also when unset or empty). */
int ps_cache_enabled_by_env(void);

/** Hashes @p count parts into a key. Each part is hashed together with its
 * length (and the count first), so ("ab","c") and ("a","bc") differ. A NULL
 * part counts as empty whatever its length. h1 is FNV-1a 64; h2 is an
 * independent multiply/xor-shift hash with its own finaliser. Both also take
 * in PS_CACHE_FORMAT_VERSION.
 * @param parts   @p count pointers (the array may be NULL when count is 0)
 * @param lengths byte length of each part (NUL bytes inside are fine) */
ps_cache_key ps_cache_key_make(const char *const *parts, const size_t *lengths,
                               size_t count);

/** Writes the entry's file name: 32 lowercase hex digits then ".bin" and a
 * NUL (37 bytes used of the 40). */
void ps_cache_file_name(ps_cache_key key, char out[40]);

/** 64-bit checksum of a payload, as stored in the trailer. */
uint64_t ps_cache_checksum(const unsigned char *data, size_t size);

/** Loads the entry for @p key from @p dir.
 * @param binary receives a malloc'd copy of the payload on PS_OK (the caller
 *               frees it); NULL otherwise
 * @param size   receives the payload size on PS_OK; 0 otherwise
 * @return PS_OK on a valid hit; PS_ERR_IO on a miss or an unreadable,
 *         truncated, oversized or corrupt file (magic, version, key, size or
 *         checksum wrong); PS_ERR_OUT_OF_HOST_MEMORY if the payload cannot be
 *         allocated; PS_ERR_INVALID_ARGUMENT for NULL pointers */
ps_status ps_cache_load(const char *dir, ps_cache_key key, unsigned char **binary,
                        size_t *size);

/** Stores @p binary under @p key in @p dir, creating @p dir and its missing
 * parents with mode 0700. Writes a unique temporary file in @p dir and renames
 * it into place; the temporary file is removed on any failure.
 * @return PS_OK; PS_ERR_IO when anything fails, also for an empty binary or
 *         one over PS_CACHE_MAX_PAYLOAD; PS_ERR_OUT_OF_HOST_MEMORY if a path
 *         cannot be allocated; PS_ERR_INVALID_ARGUMENT for NULL pointers */
ps_status ps_cache_store(const char *dir, ps_cache_key key, const unsigned char *binary,
                         size_t size);

#endif
