/* Tensor layouts of a descriptor (lib/core/tensor_layout.h). */
#include "tensor_layout.h"

#include "desc.h"
#include "half.h"
#include "varlen.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

const char *ps_tensor_name(ps_tensor_id id)
{
    static const char *const names[4] = {"q", "k", "v", "o"};
    return names[id];
}

const ps_tensor_layout *ps_desc_layout(const ps_attention_desc *d, ps_tensor_id id)
{
    switch (id) {
    case PS_TENSOR_Q:
        return &d->q_layout;
    case PS_TENSOR_K:
        return &d->k_layout;
    case PS_TENSOR_V:
        return &d->v_layout;
    default:
        return &d->o_layout;
    }
}

void ps_desc_dims(const ps_attention_desc *d, ps_tensor_id id, size_t dims[4])
{
    const int keys = id == PS_TENSOR_K || id == PS_TENSOR_V;
    dims[0] = ps_desc_batch_dim(d);
    dims[1] = keys ? d->kv_heads : d->heads;
    dims[2] = keys ? d->n_k : d->n_q;
    dims[3] = id == PS_TENSOR_Q || id == PS_TENSOR_K ? d->d : d->d_v;
}

size_t ps_dtype_size(ps_dtype t) { return t == PS_DTYPE_F16 ? 2 : 4; }

void ps_layout_strides(const ps_tensor_layout *l, const size_t dims[4], size_t stride[4])
{
    if (l->stride[0] || l->stride[1] || l->stride[2] || l->stride[3]) {
        memcpy(stride, l->stride, 4 * sizeof stride[0]);
        return;
    }
    stride[3] = 1;
    stride[2] = dims[3];
    stride[1] = dims[2] * dims[3];
    stride[0] = dims[1] * dims[2] * dims[3];
}

/* The highest element index addressed, or SIZE_MAX when it overflows:
 * offset + sum (dims[i] - 1) * stride[i]. */
static size_t last_element(const ps_tensor_layout *l, const size_t dims[4])
{
    size_t stride[4], last = l->offset;
    ps_layout_strides(l, dims, stride);
    for (int i = 0; i < 4; i++) {
        if (dims[i] > 1 && stride[i] > (SIZE_MAX - last) / (dims[i] - 1))
            return SIZE_MAX;
        last += (dims[i] - 1) * stride[i];
    }
    return last;
}

/* 1 when no two index tuples reach one element: with the dimensions of size
 * above 1 ordered by stride, each stride is at least the span of the ones
 * below it (a sufficient test, exact for every permuted dense layout). */
static int addresses_unique(const size_t stride_in[4], const size_t dims[4])
{
    size_t stride[4], extent[4];
    int n = 0;
    for (int i = 0; i < 4; i++)
        if (dims[i] > 1) {
            stride[n] = stride_in[i];
            extent[n++] = dims[i];
        }
    for (int i = 1; i < n; i++) /* insertion sort by stride */
        for (int j = i; j > 0 && stride[j] < stride[j - 1]; j--) {
            size_t t = stride[j];
            stride[j] = stride[j - 1];
            stride[j - 1] = t;
            t = extent[j];
            extent[j] = extent[j - 1];
            extent[j - 1] = t;
        }
    size_t span = 1; /* elements one step of the next dimension must clear */
    for (int i = 0; i < n; i++) {
        if (stride[i] < span)
            return 0;
        span = stride[i] * (extent[i] - 1) + span;
    }
    return 1;
}

ps_status ps_layout_check(const ps_attention_desc *d, ps_tensor_id id, char *message,
                          size_t message_size)
{
    const ps_tensor_layout *l = ps_desc_layout(d, id);
    const char *name = ps_tensor_name(id);
    size_t dims[4], stride[4];
    ps_desc_dims(d, id, dims);
    ps_layout_strides(l, dims, stride);
    static const char *const dim_name[4] = {"batch", "head", "token", "dim"};
    if (l->dtype != PS_DTYPE_F32 && l->dtype != PS_DTYPE_F16)
        return ps_say(message, message_size, PS_ERR_INVALID_ARGUMENT,
                   "%s_layout.dtype %d is not a ps_dtype", name, (int)l->dtype);
    if (stride[3] != 1)
        return ps_say(message, message_size, PS_ERR_UNSUPPORTED,
                   "%s_layout.stride[3] = %zu: rows must be contiguous (dim stride 1)", name,
                   stride[3]);
    for (int i = 0; i < 3; i++)
        if (stride[i] == 0 && dims[i] > 1)
            return ps_say(message, message_size, PS_ERR_INVALID_ARGUMENT,
                       "%s_layout.stride[%d] (%s) = 0 with %zu %ss: a stride may be 0 only "
                       "for a dimension of size 1",
                       name, i, dim_name[i], dims[i], dim_name[i]);
    const size_t last = last_element(l, dims);
    if (last == SIZE_MAX || last >= ((size_t)1 << 31 << 1))
        return ps_say(message, message_size, PS_ERR_UNSUPPORTED,
                   "%s_layout: the tensor reaches past element 2^32 of its buffer (offset "
                   "%zu, strides %zu, %zu, %zu)",
                   name, l->offset, stride[0], stride[1], stride[2]);
    if (id == PS_TENSOR_O && !addresses_unique(stride, dims))
        return ps_say(message, message_size, PS_ERR_INVALID_ARGUMENT,
                   "o_layout: strides %zu, %zu, %zu, %zu address some element of o twice",
                   stride[0], stride[1], stride[2], stride[3]);
    return PS_OK;
}

size_t ps_layout_extent(const ps_attention_desc *d, ps_tensor_id id)
{
    size_t dims[4];
    ps_desc_dims(d, id, dims);
    return last_element(ps_desc_layout(d, id), dims) + 1;
}

size_t ps_layout_bytes(const ps_attention_desc *d, ps_tensor_id id)
{
    return ps_layout_extent(d, id) * ps_dtype_size(ps_desc_layout(d, id)->dtype);
}

int ps_layout_is_dense(const ps_attention_desc *d, ps_tensor_id id)
{
    const ps_tensor_layout *l = ps_desc_layout(d, id);
    size_t dims[4], dense[4], stride[4];
    ps_desc_dims(d, id, dims);
    const ps_tensor_layout zero = {PS_DTYPE_F32, 0, {0, 0, 0, 0}};
    ps_layout_strides(&zero, dims, dense);
    ps_layout_strides(l, dims, stride);
    for (int i = 0; i < 4; i++)
        if (dims[i] > 1 && stride[i] != dense[i])
            return 0;
    return l->offset == 0;
}

int ps_layout_is_default(const ps_attention_desc *d, ps_tensor_id id)
{
    return ps_desc_layout(d, id)->dtype == PS_DTYPE_F32 && ps_layout_is_dense(d, id);
}

int ps_layout_rows_adjacent(const ps_attention_desc *d, ps_tensor_id id)
{
    size_t dims[4], stride[4];
    ps_desc_dims(d, id, dims);
    ps_layout_strides(ps_desc_layout(d, id), dims, stride);
    return dims[2] <= 1 || stride[2] == dims[3];
}

ps_view ps_layout_view(const ps_attention_desc *d, ps_tensor_id id)
{
    const ps_tensor_layout *l = ps_desc_layout(d, id);
    size_t dims[4], stride[4];
    ps_desc_dims(d, id, dims);
    ps_layout_strides(l, dims, stride);
    ps_view v;
    v.offset = (ps_u32)l->offset;
    v.s_batch = (ps_u32)(dims[0] > 1 ? stride[0] : 0);
    v.s_head = (ps_u32)(dims[1] > 1 ? stride[1] : 0);
    v.s_token = (ps_u32)(dims[2] > 1 ? stride[2] : 0);
    v.heads = (ps_u32)dims[1];
    v.f16 = l->dtype == PS_DTYPE_F16;
    return v;
}

ps_view ps_view_dense(size_t rows_per_head, size_t dim, int half)
{
    ps_view v;
    v.offset = 0;
    v.s_batch = v.s_head = (ps_u32)(rows_per_head * dim);
    v.s_token = (ps_u32)dim;
    v.heads = 1; /* the flat head index counts in the batch term */
    v.f16 = half ? 1u : 0u;
    return v;
}

/* Element index of [b][h][t][0]. */
static size_t row_index(const ps_tensor_layout *l, const size_t stride[4], size_t b, size_t h,
                        size_t t)
{
    return l->offset + b * stride[0] + h * stride[1] + t * stride[2];
}

/* Copies between the tensor in its buffer and dense fp32, either way. */
static void copy_tensor(const ps_attention_desc *d, ps_tensor_id id, void *buffer, float *dense,
                        int to_dense)
{
    const ps_tensor_layout *l = ps_desc_layout(d, id);
    const int f16 = l->dtype == PS_DTYPE_F16;
    size_t dims[4], stride[4];
    ps_desc_dims(d, id, dims);
    ps_layout_strides(l, dims, stride);
    for (size_t b = 0; b < dims[0]; b++)
        for (size_t h = 0; h < dims[1]; h++)
            for (size_t t = 0; t < dims[2]; t++) {
                const size_t at = row_index(l, stride, b, h, t);
                float *row = dense + ((b * dims[1] + h) * dims[2] + t) * dims[3];
                for (size_t c = 0; c < dims[3]; c++) {
                    if (f16 && to_dense)
                        row[c] = ps_half_to_float(((const uint16_t *)buffer)[at + c]);
                    else if (f16)
                        ((uint16_t *)buffer)[at + c] = ps_float_to_half(row[c]);
                    else if (to_dense)
                        row[c] = ((const float *)buffer)[at + c];
                    else
                        ((float *)buffer)[at + c] = row[c];
                }
            }
}

void ps_layout_to_f32(const ps_attention_desc *d, ps_tensor_id id, const void *buffer,
                      float *dense)
{
    copy_tensor(d, id, (void *)buffer, dense, 1);
}

void ps_layout_from_f32(const ps_attention_desc *d, ps_tensor_id id, const float *dense,
                        void *buffer)
{
    copy_tensor(d, id, buffer, (float *)dense, 0);
}

size_t ps_tensor_bytes(const ps_attention_desc *desc, ps_tensor_kind t)
{
    if (t < PS_TENSOR_Q || t > PS_TENSOR_O ||
        ps_attention_desc_validate(desc, NULL, 0) != PS_OK)
        return 0;
    return ps_layout_bytes(desc, t);
}

/* The checks of ps_tensor_pack and ps_tensor_unpack. */
static ps_status conversion_check(const ps_attention_desc *desc, ps_tensor_kind t,
                                  const void *a, const void *b)
{
    if (t < PS_TENSOR_Q || t > PS_TENSOR_O || !a || !b)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_attention_desc_validate(desc, NULL, 0);
}

ps_status ps_tensor_pack(const ps_attention_desc *desc, ps_tensor_kind t, const float *dense,
                         void *buffer)
{
    const ps_status st = conversion_check(desc, t, dense, buffer);
    if (st == PS_OK)
        ps_layout_from_f32(desc, t, dense, buffer);
    return st;
}

ps_status ps_tensor_unpack(const ps_attention_desc *desc, ps_tensor_kind t, const void *buffer,
                           float *dense)
{
    const ps_status st = conversion_check(desc, t, buffer, dense);
    if (st == PS_OK)
        ps_layout_to_f32(desc, t, buffer, dense);
    return st;
}
