/* The reference twins on tensors in any layout (ps_tensor_layout): convert
 * to dense fp32 on the host, run the dense reference, convert O back. The
 * device reads the same fp16 values widened exactly, so both compute on the
 * same numbers. */
#ifndef PRESCORE_REF_LAYOUT_REF_H
#define PRESCORE_REF_LAYOUT_REF_H

#include "prescore/types.h"

/* A reference on dense fp32 [batch, head, token, dim] arrays of a resolved
 * descriptor whose layouts are all the default. */
typedef ps_status (*ps_ref_dense_fn)(const ps_attention_desc *d, const float *q,
                                     const float *k, const float *v, float *o, float *lse);

/* Sets every tensor layout of `d` to the default (dense fp32), for a dense
 * reference run on host copies. */
void ps_ref_plain_layouts(ps_attention_desc *d);

/* Runs `fn` for the resolved descriptor `d` on q, k, v, o as its layouts say
 * (no copy when they are all dense fp32); fn sees `d` with default layouts.
 * Elements of o outside its layout are left as they were. */
ps_status ps_ref_through_layouts(const ps_attention_desc *d, const void *q, const void *k,
                                 const void *v, void *o, float *lse, ps_ref_dense_fn fn);

#endif
