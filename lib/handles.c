/* Live-handle registry: a mutex-guarded array of (pointer, kind, context)
 * records. Linear search: a process holds a few contexts and tens of plans
 * (a causal plan adds a few child plans), and the lock is taken once per
 * public call, next to OpenCL calls that cost far more. */
#include "handles.h"

#include "core/host_alloc.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef _WIN32
#include <windows.h>
static SRWLOCK lock = SRWLOCK_INIT;
static void registry_lock(void) { AcquireSRWLockExclusive(&lock); }
static void registry_unlock(void) { ReleaseSRWLockExclusive(&lock); }
#else
#include <pthread.h>
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void registry_lock(void) { pthread_mutex_lock(&lock); }
static void registry_unlock(void) { pthread_mutex_unlock(&lock); }
#endif

typedef enum handle_kind { HANDLE_CONTEXT = 1, HANDLE_PLAN = 2 } handle_kind;

typedef struct handle {
    const void *ptr;
    handle_kind kind;
    const ps_context *owner; /* plans: their context */
    size_t live_plans;       /* contexts: registered plans of it */
} handle;

static handle *table;
static size_t used, capacity;

/* Index of the record of (ptr, kind), or `used` when absent. Lock held. */
static size_t find(const void *ptr, handle_kind kind)
{
    size_t i = 0;
    while (i < used && !(table[i].ptr == ptr && table[i].kind == kind))
        i++;
    return i;
}

/* Appends a record. Lock held. */
static ps_status append(const void *ptr, handle_kind kind, const ps_context *owner)
{
    if (used == capacity) {
        const size_t grown = capacity ? 2 * capacity : 16;
        handle *t = ps_realloc(table, grown * sizeof *t);
        if (!t)
            return PS_ERR_OUT_OF_HOST_MEMORY;
        table = t;
        capacity = grown;
    }
    table[used].ptr = ptr;
    table[used].kind = kind;
    table[used].owner = owner;
    table[used].live_plans = 0;
    used++;
    return PS_OK;
}

/* Removes record i, keeping the others (order does not matter). Lock held;
 * the table is freed when empty so that no allocation outlives the last
 * handle (leak checkers see none at exit). */
static void drop(size_t i)
{
    table[i] = table[--used];
    if (used == 0) {
        free(table);
        table = NULL;
        capacity = 0;
    }
}

ps_status ps_handles_add_context(const ps_context *ctx)
{
    registry_lock();
    const ps_status st = append(ctx, HANDLE_CONTEXT, NULL);
    registry_unlock();
    return st;
}

ps_status ps_handles_add_plan(const ps_plan *plan, const ps_context *ctx)
{
    registry_lock();
    const size_t c = find(ctx, HANDLE_CONTEXT);
    ps_status st = c < used ? append(plan, HANDLE_PLAN, ctx) : PS_ERR_INVALID_ARGUMENT;
    if (st == PS_OK)
        table[c].live_plans++;
    registry_unlock();
    return st;
}

int ps_handles_context_live(const ps_context *ctx)
{
    registry_lock();
    const int live = ctx && find(ctx, HANDLE_CONTEXT) < used;
    registry_unlock();
    return live;
}

int ps_handles_plan_live(const ps_plan *plan)
{
    registry_lock();
    const int live = plan && find(plan, HANDLE_PLAN) < used;
    registry_unlock();
    return live;
}

int ps_handles_remove_plan(const ps_plan *plan)
{
    registry_lock();
    const size_t i = find(plan, HANDLE_PLAN);
    const int found = i < used;
    if (found) {
        const size_t c = find(table[i].owner, HANDLE_CONTEXT);
        if (c < used)
            table[c].live_plans--;
        drop(i);
    }
    registry_unlock();
    return found;
}

int ps_handles_remove_context(const ps_context *ctx, size_t *live_plans)
{
    int rc = 0;
    *live_plans = 0;
    registry_lock();
    const size_t i = find(ctx, HANDLE_CONTEXT);
    if (i < used && table[i].live_plans > 0) {
        *live_plans = table[i].live_plans;
        rc = -1;
    } else if (i < used) {
        drop(i);
        rc = 1;
    }
    registry_unlock();
    return rc;
}

ps_status ps_plan_check(const ps_plan *plan, const char *fn)
{
    char msg[160];
    if (!plan) {
        snprintf(msg, sizeof msg, "%s: plan is NULL", fn);
    } else if (!ps_handles_plan_live(plan)) {
        snprintf(msg, sizeof msg,
                 "%s: plan %p is not a live plan (destroyed, or never created)", fn,
                 (const void *)plan);
    } else {
        return PS_OK;
    }
    ps_keep_create_message(msg);
    return PS_ERR_INVALID_ARGUMENT;
}

ps_status ps_context_check(const ps_context *ctx, const char *fn)
{
    char msg[160];
    if (!ctx) {
        snprintf(msg, sizeof msg, "%s: context is NULL", fn);
    } else if (!ps_handles_context_live(ctx)) {
        snprintf(msg, sizeof msg,
                 "%s: context %p is not a live context (destroyed, or never created)", fn,
                 (const void *)ctx);
    } else {
        return PS_OK;
    }
    ps_keep_create_message(msg);
    return PS_ERR_INVALID_ARGUMENT;
}
