/* Status strings, the version and kernel-source hash, the context's detailed
 * last-error message, and OpenCL error names. */
#include "internal.h"

#include "cl_sources.h"
#include "handles.h"

#include <stdio.h>
#include <string.h>

const char *ps_status_string(ps_status status)
{
    switch (status) {
#define PS_STATUS_CASE_(name, code, text)                                      \
    case name:                                                                 \
        return text;
        PS_STATUS_LIST(PS_STATUS_CASE_)
#undef PS_STATUS_CASE_
    }
    return "unknown status";
}

const char *ps_version_string(void) { return PS_VERSION_STRING; }

const char *ps_kernel_source_hash(void) { return ps_cl_source_hash; }

/* Messages are kept per thread, like errno: two threads with their own plans
 * on one context never see each other's message, nor a torn one. `owner` is
 * the context of the thread's last recorded failure; it is compared, never
 * dereferenced, so asking after a destroy is safe. */
static PS_THREAD_LOCAL const ps_context *owner;
static PS_THREAD_LOCAL char message[PS_ERROR_MESSAGE_MAX];
/* Failed constructors and refused handles leave no context to ask: their
 * message is returned by ps_context_last_error(NULL). */
static PS_THREAD_LOCAL char handle_message[PS_ERROR_MESSAGE_MAX];
/* The plan whose public call this thread is inside (ps_plan_enter, nested
 * calls on it counted): failures on its context go to the plan's message,
 * so the context's message only ever holds context-level calls' failures. */
static PS_THREAD_LOCAL ps_plan *active_plan;
static PS_THREAD_LOCAL unsigned active_depth;

ps_status ps_fail(ps_context *ctx, ps_status status, const char *fmt, ...)
{
    if (ctx) {
        const int to_plan = active_plan && active_plan->ctx == ctx;
        char *dst = to_plan ? active_plan->last_error : message;
        const size_t size = to_plan ? sizeof active_plan->last_error : sizeof message;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(dst, size, fmt, ap);
        va_end(ap);
        if (!to_plan)
            owner = ctx;
    }
    return status;
}

void ps_clear_error(ps_context *ctx)
{
    if (ctx && owner == ctx)
        message[0] = '\0';
}

void ps_keep_create_error(const ps_context *ctx, ps_status status)
{
    if (ctx && owner == ctx && message[0])
        snprintf(handle_message, sizeof handle_message, "%s", message);
    else
        snprintf(handle_message, sizeof handle_message, "%s", ps_status_string(status));
    if (ctx && owner == ctx) {
        owner = NULL;
        message[0] = '\0';
    }
}

void ps_keep_create_message(const char *text)
{
    snprintf(handle_message, sizeof handle_message, "%s", text);
}

/* A plan handle is either a plan or a key cache (lib/kv_cache.c): each
 * family of calls refuses the other. */
static ps_status enter(ps_plan *plan, const char *fn, int kv)
{
    if (ps_plan_check(plan, fn) != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    if ((plan->kv != NULL) != kv) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: the handle is %s", fn,
                 kv ? "a plan, not a key cache" : "a key cache (ps_kv_cache), not a plan");
        ps_keep_create_message(msg);
        return PS_ERR_INVALID_ARGUMENT;
    }
    if (active_plan != plan) {
        active_plan = plan;
        active_depth = 0;
    }
    if (active_depth++ == 0)
        plan->last_error[0] = '\0';
    return PS_OK;
}

ps_status ps_plan_enter(ps_plan *plan, const char *fn)
{
    return enter(plan, fn, 0);
}

ps_status ps_kv_enter(ps_plan *plan, const char *fn)
{
    return enter(plan, fn, 1);
}

ps_status ps_plan_result(ps_plan *plan, ps_status st)
{
    if (st == PS_OK)
        plan->last_error[0] = '\0';
    else if (!plan->last_error[0])
        snprintf(plan->last_error, sizeof plan->last_error, "%s", ps_status_string(st));
    if (active_plan == plan && --active_depth == 0)
        active_plan = NULL;
    return st;
}

const char *ps_plan_last_error(const ps_plan *plan)
{
    return ps_handles_plan_live(plan) ? plan->last_error : "";
}

void ps_forget_errors(const ps_context *ctx)
{
    if (ctx && owner == ctx) {
        owner = NULL;
        message[0] = '\0';
    }
}

const char *ps_context_last_error(const ps_context *ctx)
{
    if (!ctx)
        return handle_message;
    return owner == ctx ? message : "";
}

const char *ps_cl_error_name(cl_int err)
{
    switch (err) {
#define PS_CL_NAME_(e)                                                         \
    case e:                                                                    \
        return #e;
        PS_CL_NAME_(CL_SUCCESS)
        PS_CL_NAME_(CL_DEVICE_NOT_FOUND)
        PS_CL_NAME_(CL_DEVICE_NOT_AVAILABLE)
        PS_CL_NAME_(CL_COMPILER_NOT_AVAILABLE)
        PS_CL_NAME_(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        PS_CL_NAME_(CL_OUT_OF_RESOURCES)
        PS_CL_NAME_(CL_OUT_OF_HOST_MEMORY)
        PS_CL_NAME_(CL_PROFILING_INFO_NOT_AVAILABLE)
        PS_CL_NAME_(CL_BUILD_PROGRAM_FAILURE)
        PS_CL_NAME_(CL_INVALID_VALUE)
        PS_CL_NAME_(CL_INVALID_DEVICE)
        PS_CL_NAME_(CL_INVALID_CONTEXT)
        PS_CL_NAME_(CL_INVALID_COMMAND_QUEUE)
        PS_CL_NAME_(CL_INVALID_MEM_OBJECT)
        PS_CL_NAME_(CL_INVALID_BINARY)
        PS_CL_NAME_(CL_INVALID_BUILD_OPTIONS)
        PS_CL_NAME_(CL_INVALID_PROGRAM)
        PS_CL_NAME_(CL_INVALID_PROGRAM_EXECUTABLE)
        PS_CL_NAME_(CL_INVALID_KERNEL_NAME)
        PS_CL_NAME_(CL_INVALID_KERNEL)
        PS_CL_NAME_(CL_INVALID_ARG_INDEX)
        PS_CL_NAME_(CL_INVALID_ARG_VALUE)
        PS_CL_NAME_(CL_INVALID_ARG_SIZE)
        PS_CL_NAME_(CL_INVALID_KERNEL_ARGS)
        PS_CL_NAME_(CL_INVALID_WORK_DIMENSION)
        PS_CL_NAME_(CL_INVALID_WORK_GROUP_SIZE)
        PS_CL_NAME_(CL_INVALID_WORK_ITEM_SIZE)
        PS_CL_NAME_(CL_INVALID_GLOBAL_OFFSET)
        PS_CL_NAME_(CL_INVALID_EVENT_WAIT_LIST)
        PS_CL_NAME_(CL_INVALID_EVENT)
        PS_CL_NAME_(CL_INVALID_BUFFER_SIZE)
        PS_CL_NAME_(CL_INVALID_GLOBAL_WORK_SIZE)
        PS_CL_NAME_(CL_INVALID_PLATFORM)
#undef PS_CL_NAME_
    }
    return "unknown OpenCL error";
}

ps_status ps_fail_cl(ps_context *ctx, cl_int err, const char *what)
{
    ps_status st = PS_ERR_OPENCL;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_INVALID_BUFFER_SIZE)
        st = PS_ERR_OUT_OF_DEVICE_MEMORY;
    else if (err == CL_OUT_OF_HOST_MEMORY)
        st = PS_ERR_OUT_OF_HOST_MEMORY;
    return ps_fail(ctx, st, "%s failed: %s (%d)", what, ps_cl_error_name(err), (int)err);
}
