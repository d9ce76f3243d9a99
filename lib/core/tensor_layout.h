/* The tensors of a descriptor as they lie in their buffers (ps_tensor_layout,
 * include/prescore/types.h), pure C: validation, the bytes a buffer must
 * hold, the kernels' ps_view (cl/tensor_view.h), and host copies between a
 * layout and dense fp32 (the reference twins and ps_attention_host). */
#ifndef PRESCORE_CORE_TENSOR_LAYOUT_H
#define PRESCORE_CORE_TENSOR_LAYOUT_H

#include "prescore/types.h"

#include "tensor_view.h" /* cl/: ps_view, shared with the kernels */

#include <stddef.h>

/* PS_TENSOR_Q, _K, _V, _O (the public ps_tensor_kind). */
typedef ps_tensor_kind ps_tensor_id;

/* "q", "k", "v" or "o". */
const char *ps_tensor_name(ps_tensor_id id);

/* The tensor's layout in @p d and its dims [batch, heads, tokens, dim]. */
const ps_tensor_layout *ps_desc_layout(const ps_attention_desc *d, ps_tensor_id id);
void ps_desc_dims(const ps_attention_desc *d, ps_tensor_id id, size_t dims[4]);

/* Bytes of one element. */
size_t ps_dtype_size(ps_dtype t);

/* The strides in effect (the dense default for all-zero strides). */
void ps_layout_strides(const ps_tensor_layout *l, const size_t dims[4], size_t stride[4]);

/* Checks one tensor of a validated-shape descriptor: dtype, dim stride 1,
 * no zero stride on a dimension above 1, extent below 2^32 elements, and for
 * an output no element addressed twice. PS_OK or the problem in @p message. */
ps_status ps_layout_check(const ps_attention_desc *d, ps_tensor_id id, char *message,
                          size_t message_size);

/* Elements from the buffer start to one past the highest element addressed. */
size_t ps_layout_extent(const ps_attention_desc *d, ps_tensor_id id);
/* Bytes the buffer must hold (the extent in the tensor's dtype). */
size_t ps_layout_bytes(const ps_attention_desc *d, ps_tensor_id id);

/* 1 when the tensor is dense [batch, head, token, dim] at offset 0 (strides
 * of dimensions of size 1 do not matter); _default: and fp32. */
int ps_layout_is_dense(const ps_attention_desc *d, ps_tensor_id id);
int ps_layout_is_default(const ps_attention_desc *d, ps_tensor_id id);

/* 1 when consecutive tokens of the tensor lie next to each other (each
 * head's rows form one block, as in [B, H, T, D] or a view of a KV cache);
 * 0 for [B, T, H, D] with several heads. Stages that re-read a tensor many
 * times copy it compact when 0. */
int ps_layout_rows_adjacent(const ps_attention_desc *d, ps_tensor_id id);

/* The view the kernels take for the tensor (a checked layout). */
ps_view ps_layout_view(const ps_attention_desc *d, ps_tensor_id id);

/* Dense views of workspace copies: [rows_per_head] rows of `dim` elements
 * per flat head, fp16 when `half`. */
ps_view ps_view_dense(size_t rows_per_head, size_t dim, int half);

/* Host copies between the tensor in its buffer and dense fp32
 * [batch, head, token, dim] (fp16 widened exactly / rounded to nearest even). */
void ps_layout_to_f32(const ps_attention_desc *d, ps_tensor_id id, const void *buffer,
                      float *dense);
void ps_layout_from_f32(const ps_attention_desc *d, ps_tensor_id id, const float *dense,
                        void *buffer);

#endif
