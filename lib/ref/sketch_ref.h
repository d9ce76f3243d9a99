/* The query sketch's host twin on dense arrays (lib/ref/sketch.c), for the
 * full-pipeline reference. */
#ifndef PRESCORE_REF_SKETCH_REF_H
#define PRESCORE_REF_SKETCH_REF_H

#include "prescore/types.h"

/* ps_ref_sketch_keys on dense fp32 q [batch * heads][n_q][d] and k
 * [batch * kv_heads][n_k][d] of a resolved descriptor with sketch_queries > 0. */
ps_status ps_ref_sketch_dense(const ps_attention_desc *d, const float *q, const float *k,
                              float *mass);

#endif
