/* Host allocation wrappers with a per-thread failure hook for tests. */
#include "host_alloc.h"

#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER)
#define PS_ALLOC_THREAD_LOCAL __declspec(thread)
#else
#define PS_ALLOC_THREAD_LOCAL __thread
#endif

static PS_ALLOC_THREAD_LOCAL long fail_after = -1; /* -1: never fail */
static PS_ALLOC_THREAD_LOCAL long made;

static int should_fail(void)
{
    made++;
    if (fail_after < 0)
        return 0;
    if (fail_after == 0)
        return 1;
    fail_after--;
    return 0;
}

void ps_host_alloc_fail_after(long ok)
{
    fail_after = ok;
    made = 0;
}

long ps_host_alloc_count(void) { return made; }

void *ps_malloc(size_t size) { return should_fail() ? NULL : malloc(size); }

void *ps_calloc(size_t count, size_t size) { return should_fail() ? NULL : calloc(count, size); }

void *ps_realloc(void *ptr, size_t size) { return should_fail() ? NULL : realloc(ptr, size); }

char *ps_str_concat(const char *a, const char *b)
{
    const size_t la = strlen(a), lb = strlen(b);
    char *s = ps_malloc(la + lb + 1);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}
