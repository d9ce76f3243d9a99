/* The program-cache entry harness (tests/fuzz/fuzz_cache.c), shared by its
 * libFuzzer target and the replay test. */
#ifndef PRESCORE_FUZZ_CACHE_H
#define PRESCORE_FUZZ_CACHE_H

#include <stddef.h>
#include <stdint.h>

/* Writes one input as a cache entry file and loads it. Aborts when a
 * property fails. @return 1 when the load was a hit, 0 otherwise. */
int ps_fuzz_cache_one(const uint8_t *data, size_t size);

#endif
