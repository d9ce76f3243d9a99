/* Host allocations of the library go through these wrappers so that tests can
 * make the n-th one fail (fault injection, docs/RELIABILITY.md). Release with
 * free(). */
#ifndef PS_HOST_ALLOC_H
#define PS_HOST_ALLOC_H

#include <stddef.h>

void *ps_malloc(size_t size);
void *ps_calloc(size_t count, size_t size);
void *ps_realloc(void *ptr, size_t size);
/* malloc'd "a" + "b" (either may be empty), NULL when out of memory. */
char *ps_str_concat(const char *a, const char *b);

/* Test hook, per thread: after `ok` more successful allocations, every later
 * one on this thread fails (returns NULL) until the hook is reset with -1. */
void ps_host_alloc_fail_after(long ok);
/* Allocations made on this thread since the last ps_host_alloc_fail_after. */
long ps_host_alloc_count(void);

#endif
