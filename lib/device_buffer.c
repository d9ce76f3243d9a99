/* The one way stages create device buffers: every workspace is checked
 * against the device's per-buffer limit first (a refusal names the buffer,
 * its size and the limit), and an OpenCL failure names the buffer too; the
 * bytes of a plan's buffers are counted for ps_plan_device_bytes. */
#include "internal.h"

#include <stdio.h>

/* Where this thread's buffer bytes are counted (plan creation). */
static PS_THREAD_LOCAL size_t *byte_counter;

size_t *ps_buffer_bytes_count_into(size_t *counter)
{
    size_t *previous = byte_counter;
    byte_counter = counter;
    return previous;
}

ps_status ps_buffer_create(ps_context *ctx, size_t bytes, const char *what, cl_mem *out)
{
    cl_int err = CL_SUCCESS;
    *out = NULL;
    if (bytes > ctx->info.max_mem_alloc_size)
        return ps_fail(ctx, PS_ERR_OUT_OF_DEVICE_MEMORY,
                       "%s needs %zu bytes, CL_DEVICE_MAX_MEM_ALLOC_SIZE is %llu%s", what, bytes,
                       (unsigned long long)ctx->info.max_mem_alloc_size,
                       ctx->tuning.limits_narrowed ? " (narrowed by PRESCORE_LIMITS)" : "");
    /* A zero-sized buffer is invalid in OpenCL; an empty workspace gets one word. */
    *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        char call[160];
        snprintf(call, sizeof call, "clCreateBuffer (%s)", what);
        return ps_fail_cl(ctx, err, call);
    }
    if (byte_counter)
        *byte_counter += bytes ? bytes : 4;
    return PS_OK;
}
