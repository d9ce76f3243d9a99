/* Buffer arguments of the public calls: validity, size and context
 * (ps_check_buffer, declared in internal.h), and overlap of an output with
 * an input or another output, seen through sub-buffers (ps_check_overlaps). */
#ifndef PRESCORE_BUFFER_CHECK_H
#define PRESCORE_BUFFER_CHECK_H

#include "internal.h"

/* One buffer argument of a call: its name in messages ("o"), the handle
 * (NULL: not part of this call, skipped) and the bytes [first, bytes) of it,
 * from the handle's start, that the call may read or write (a strided
 * tensor: from its first element to one past its last). */
typedef struct ps_buffer_use {
    const char *name;
    cl_mem mem;
    size_t bytes;
    size_t first;
} ps_buffer_use;

/* The use of buffer mem by the descriptor's tensor `id` (a ps_tensor_id,
 * lib/core/tensor_layout.h), named "q", "k", "v" or "o": from its first
 * element (the layout's offset) to one past its last. */
ps_buffer_use ps_tensor_use(const ps_attention_desc *d, int id, cl_mem mem);

/* Refuses with PS_ERR_INVALID_ARGUMENT, in a message starting with `fn`
 * and naming both tensors, any output whose bytes share memory with an
 * input or with another output. Each buffer is followed to its root through
 * CL_MEM_ASSOCIATED_MEMOBJECT (adding up CL_MEM_OFFSET), so two sub-buffers
 * of one parent overlap when their byte ranges do, and disjoint ones pass;
 * root buffers made with CL_MEM_USE_HOST_PTR are compared by host address.
 * Inputs may share memory with each other (they are only read). Every
 * buffer must have passed ps_check_buffer. */
ps_status ps_check_overlaps(ps_context *ctx, const char *fn, const ps_buffer_use *inputs,
                            size_t n_inputs, const ps_buffer_use *outputs, size_t n_outputs);

#endif
