/* How a kernel finds the elements of a caller's tensor (or of a workspace
 * copy of one): offset, strides and storage type, shared by the host (C99)
 * and the kernels (OpenCL C 1.2) like attention_params.h. lib/program.c
 * prepends this file to every program; lib/core/tensor_layout.c fills it
 * from a ps_tensor_layout (include/prescore/types.h).
 *
 * A kernel takes a tensor as two arguments, `__global const void *x` and
 * `const ps_view xv`, finds row t of head bh with ps_row and loads with
 * ps_ld / ps_ld4 / ps_ld16, which read fp16 with vload_half (core OpenCL
 * 1.2: no cl_khr_fp16 needed) and fp32 as floats. The storage type is a
 * run-time member, the same for every work-item, so the branch never
 * diverges; arithmetic is fp32 either way. Members are 32-bit: the host
 * refuses views that address 2^32 elements or more. */
#ifndef PS_TENSOR_VIEW_H
#define PS_TENSOR_VIEW_H

#ifndef __OPENCL_VERSION__
#include "philox.h" /* ps_u32 */
#endif

typedef struct ps_view {
    ps_u32 offset;                   /* elements before element [0][0][0][0] */
    ps_u32 s_batch, s_head, s_token; /* strides in elements; the dim stride is 1 */
    ps_u32 heads;                    /* heads per batch entry: splits a flat b*heads+h */
    ps_u32 f16;                      /* 1: IEEE binary16 elements, 0: binary32 */
} ps_view;
#define PS_VIEW_WORDS 6

typedef char ps_view_size_check[sizeof(ps_view) == 4 * PS_VIEW_WORDS ? 1 : -1];

#ifdef __OPENCL_VERSION__
/* Element index of row t of head bh (flattened batch * heads + head). */
static inline size_t ps_row(const ps_view v, const size_t bh, const size_t t)
{
    return (size_t)v.offset + (bh / v.heads) * v.s_batch + (bh % v.heads) * v.s_head +
           t * v.s_token;
}

static inline float ps_ld(__global const void *x, const ps_view v, const size_t i)
{
    return v.f16 ? vload_half(i, (__global const half *)x) : ((__global const float *)x)[i];
}

/* Four (sixteen) consecutive elements from element i: any element alignment. */
static inline float4 ps_ld4(__global const void *x, const ps_view v, const size_t i)
{
    return v.f16 ? vload_half4(0, (__global const half *)x + i)
                  : vload4(0, (__global const float *)x + i);
}

static inline float16 ps_ld16(__global const void *x, const ps_view v, const size_t i)
{
    return v.f16 ? vload_half16(0, (__global const half *)x + i)
                  : vload16(0, (__global const float *)x + i);
}

/* Stores rounded to nearest even in fp16 (the host's rounding, lib/core/half.c). */
static inline void ps_st(__global void *x, const ps_view v, const size_t i, const float value)
{
    if (v.f16)
        vstore_half_rte(value, i, (__global half *)x);
    else
        ((__global float *)x)[i] = value;
}

static inline void ps_st4(__global void *x, const ps_view v, const size_t i, const float4 value)
{
    if (v.f16)
        vstore_half4_rte(value, 0, (__global half *)x + i);
    else
        vstore4(value, 0, (__global float *)x + i);
}

static inline void ps_st16(__global void *x, const ps_view v, const size_t i,
                           const float16 value)
{
    if (v.f16)
        vstore_half16_rte(value, 0, (__global half *)x + i);
    else
        vstore16(value, 0, (__global float *)x + i);
}

/* A view that only carries a storage type: for flat element indices into a
 * workspace copy (ps_row is not used on it). */
static inline ps_view ps_view_flat(const uint f16)
{
    const ps_view v = {0u, 0u, 0u, 0u, 1u, f16};
    return v;
}
#endif

#endif /* PS_TENSOR_VIEW_H */
