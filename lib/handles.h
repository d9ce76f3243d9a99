/* Registry of live handles (contexts and plans), so that a handle used after
 * its destroy, destroyed twice, or never created is refused with a message
 * instead of touching freed memory: the check compares pointer values and
 * never dereferences a handle that is not registered. A handle whose memory
 * was reused by a later create of the same kind is indistinguishable from
 * that new handle (documented limit). The registry also counts each context's
 * live plans, so a context is not destroyed under them. Thread safe. */
#ifndef PRESCORE_HANDLES_H
#define PRESCORE_HANDLES_H

#include "internal.h"

/** Registers a new context: PS_OK or PS_ERR_OUT_OF_HOST_MEMORY. */
ps_status ps_handles_add_context(const ps_context *ctx);
/** Registers a new plan of @p ctx (a live context) and counts it there. */
ps_status ps_handles_add_plan(const ps_plan *plan, const ps_context *ctx);

/** 1 when @p ctx / @p plan is registered (created and not yet destroyed). */
int ps_handles_context_live(const ps_context *ctx);
int ps_handles_plan_live(const ps_plan *plan);

/** Unregisters a plan (and uncounts it from its context): 1, or 0 when it
 * was not registered (nothing changed). */
int ps_handles_remove_plan(const ps_plan *plan);

/** Unregisters a context that has no live plans: 1; 0 when it is not
 * registered; -1 when plans of it are still live (nothing changed), with
 * their number in @p live_plans. */
int ps_handles_remove_context(const ps_context *ctx, size_t *live_plans);

/** Checks a plan handle at a public entry point: PS_OK, or
 * PS_ERR_INVALID_ARGUMENT with a message for ps_context_last_error(NULL)
 * naming @p fn (NULL plan, destroyed or never created). */
ps_status ps_plan_check(const ps_plan *plan, const char *fn);
/** The same for a context handle. */
ps_status ps_context_check(const ps_context *ctx, const char *fn);

#endif
