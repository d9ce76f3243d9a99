/* Plan workspace buffers of the pipeline, the global keys and the causal
 * recursion, allocated at plan creation. */
#ifndef PRESCORE_WORKSPACE_H
#define PRESCORE_WORKSPACE_H

#include "internal.h"

/* A read-write buffer of `bytes` (at least 4), refused above the device's
 * CL_DEVICE_MAX_MEM_ALLOC_SIZE with a message naming `what`. Does nothing
 * and returns NULL when *st is already a failure, so a setup can allocate a
 * list of buffers and check *st once. */
static inline cl_mem ps_workspace_buffer(ps_context *ctx, size_t bytes, const char *what,
                                         ps_status *st)
{
    cl_int err = CL_SUCCESS;
    if (*st != PS_OK)
        return NULL;
    if (bytes > ctx->info.max_mem_alloc_size) {
        *st = ps_fail(ctx, PS_ERR_OUT_OF_DEVICE_MEMORY,
                      "%s needs %zu bytes, CL_DEVICE_MAX_MEM_ALLOC_SIZE is %llu", what, bytes,
                      (unsigned long long)ctx->info.max_mem_alloc_size);
        return NULL;
    }
    cl_mem m = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (err != CL_SUCCESS)
        *st = ps_fail_cl(ctx, err, what);
    return m;
}

#endif
