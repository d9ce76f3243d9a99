/* Buffer-argument checks shared by every public entry point: one buffer
 * (NULL, validity, context, size) and overlap between outputs and inputs,
 * resolved through sub-buffers to the memory underneath. */
#include "buffer_check.h"

#include "core/tensor_layout.h"

#include <stdint.h>

ps_status ps_check_buffer(ps_context *ctx, cl_mem mem, size_t bytes, const char *what)
{
    size_t size = 0;
    cl_context owner = NULL;
    if (!mem)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    if (clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof owner, &owner, NULL) != CL_SUCCESS)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "%s is not a valid cl_mem", what);
    if (owner != ctx->cl_ctx)
        return ps_fail(ctx, PS_ERR_CONTEXT_MISMATCH, "%s belongs to another cl_context", what);
    if (size < bytes)
        return ps_fail(ctx, PS_ERR_BUFFER_TOO_SMALL,
                       "%s holds %zu bytes, the shape needs %zu", what, size, bytes);
    return PS_OK;
}

ps_buffer_use ps_tensor_use(const ps_attention_desc *d, int id, cl_mem mem)
{
    const ps_tensor_layout *l = ps_desc_layout(d, (ps_tensor_id)id);
    const ps_buffer_use u = {ps_tensor_name((ps_tensor_id)id), mem,
                             ps_layout_bytes(d, (ps_tensor_id)id),
                             l->offset * ps_dtype_size(l->dtype)};
    return u;
}

/* Where a buffer argument's bytes lie: [begin, end) of `root`, the buffer
 * with no parent; and, when the root wraps host memory (CL_MEM_USE_HOST_PTR),
 * the same bytes as host addresses. */
typedef struct span {
    const ps_buffer_use *use;
    cl_mem root;
    size_t begin, end;
    uintptr_t host; /* 0: no host memory of the caller's */
} span;

/* OpenCL forbids sub-buffers of sub-buffers, but the chain is followed to
 * its end all the same; the bound only guards against a broken driver. */
#define PS_PARENT_CHAIN_MAX 64

static ps_status resolve(ps_context *ctx, const char *fn, const ps_buffer_use *use, span *s)
{
    cl_mem mem = use->mem;
    size_t offset = 0;
    for (int depth = 0;; depth++) {
        cl_mem parent = NULL;
        size_t origin = 0;
        if (clGetMemObjectInfo(mem, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent,
                               NULL) != CL_SUCCESS)
            return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                           "%s: %s: CL_MEM_ASSOCIATED_MEMOBJECT cannot be queried", fn,
                           use->name);
        if (!parent)
            break;
        if (depth == PS_PARENT_CHAIN_MAX ||
            clGetMemObjectInfo(mem, CL_MEM_OFFSET, sizeof origin, &origin, NULL) != CL_SUCCESS)
            return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                           "%s: %s: its sub-buffer chain cannot be followed", fn, use->name);
        offset += origin;
        mem = parent;
    }
    s->use = use;
    s->root = mem;
    s->begin = offset + use->first;
    s->end = offset + use->bytes;
    s->host = 0;
    cl_mem_flags flags = 0;
    void *host = NULL;
    if (clGetMemObjectInfo(mem, CL_MEM_FLAGS, sizeof flags, &flags, NULL) == CL_SUCCESS &&
        (flags & CL_MEM_USE_HOST_PTR) &&
        clGetMemObjectInfo(mem, CL_MEM_HOST_PTR, sizeof host, &host, NULL) == CL_SUCCESS &&
        host)
        s->host = (uintptr_t)host + offset;
    return PS_OK;
}

/* PS_OK when a (an output) and b share no byte, else the refusal. */
static ps_status disjoint(ps_context *ctx, const char *fn, const span *a, const span *b)
{
    /* One buffer may hold an output beside an input (a tensor layout's
     * offset), never over it. */
    if (a->use->mem == b->use->mem && a->begin < b->end && b->begin < a->end)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                       "%s: %s and %s are the same buffer (an output must not alias an input "
                       "or another output)",
                       fn, a->use->name, b->use->name);
    if (a->root == b->root) {
        const size_t lo = a->begin > b->begin ? a->begin : b->begin;
        const size_t hi = a->end < b->end ? a->end : b->end;
        if (lo < hi)
            return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                           "%s: %s overlaps %s (bytes [%zu, %zu) of the same buffer)", fn,
                           a->use->name, b->use->name, lo, hi);
        return PS_OK;
    }
    if (a->host && b->host) {
        const uintptr_t lo = a->host > b->host ? a->host : b->host;
        const uintptr_t a_end = a->host + a->use->bytes, b_end = b->host + b->use->bytes;
        const uintptr_t hi = a_end < b_end ? a_end : b_end;
        if (lo < hi)
            return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT,
                           "%s: %s overlaps %s (%zu bytes of the same host memory, "
                           "CL_MEM_USE_HOST_PTR)",
                           fn, a->use->name, b->use->name, (size_t)(hi - lo));
    }
    return PS_OK;
}

#define PS_OVERLAP_MAX 8 /* buffer arguments of the widest call */

ps_status ps_check_overlaps(ps_context *ctx, const char *fn, const ps_buffer_use *inputs,
                            size_t n_inputs, const ps_buffer_use *outputs, size_t n_outputs)
{
    span in[PS_OVERLAP_MAX], out[PS_OVERLAP_MAX];
    size_t ni = 0, no = 0;
    ps_status st = PS_OK;
    if (n_inputs > PS_OVERLAP_MAX || n_outputs > PS_OVERLAP_MAX)
        return ps_fail(ctx, PS_ERR_INVALID_ARGUMENT, "%s: too many buffers to check", fn);
    for (size_t i = 0; i < n_outputs; i++)
        if (outputs[i].mem && outputs[i].bytes &&
            (st = resolve(ctx, fn, &outputs[i], &out[no++])) != PS_OK)
            return st;
    if (no == 0)
        return PS_OK;
    for (size_t i = 0; i < n_inputs; i++)
        if (inputs[i].mem && inputs[i].bytes &&
            (st = resolve(ctx, fn, &inputs[i], &in[ni++])) != PS_OK)
            return st;
    for (size_t i = 0; i < no; i++) {
        for (size_t j = 0; j < ni; j++)
            if ((st = disjoint(ctx, fn, &out[i], &in[j])) != PS_OK)
                return st;
        for (size_t j = i + 1; j < no; j++)
            if ((st = disjoint(ctx, fn, &out[i], &out[j])) != PS_OK)
                return st;
    }
    return PS_OK;
}
