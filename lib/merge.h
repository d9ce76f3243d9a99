/* The host side of cl/merge.cl: row copies between [heads][rows][width]
 * tensors, the log-sum-exp merge of a partial attention result into O/LSE and
 * the rows that see no key. Shared by the causal recursion (lib/causal.c) and
 * the global keys (lib/global.c); each passes its own kernel object (kernels
 * belong to the plan's stage state, ps_kernel_create(PS_PROGRAM_MERGE, ...)).
 * Every call only sets arguments and enqueues. */
#ifndef PRESCORE_MERGE_H
#define PRESCORE_MERGE_H

#include "internal.h"

/* copy_rows: row src_row0 + i of every head of src to row dst_row0 + i of
 * dst, `width` elements, for i < count (views of [heads][rows][width]). */
ps_status ps_copy_rows_enqueue(ps_plan *plan, cl_kernel copy_rows, const ps_tensor *src,
                               const ps_tensor *dst, size_t heads, size_t src_row0,
                               size_t dst_row0, size_t count, size_t width);

/* merge_rows: merges a part (o2, any view, and lse2: `count` compact rows
 * per query head)
 * into rows [row0, row0 + count) of (o, lse) [batch * heads][n_q][d_v | 1] in
 * log-sum-exp space (o any view); both parts cover disjoint, non-empty key
 * sets. */
ps_status ps_merge_rows_enqueue(ps_plan *plan, cl_kernel merge_rows, const ps_tensor *o,
                                cl_mem lse, const ps_tensor *o2, cl_mem lse2, size_t row0,
                                size_t count);

/* empty_rows: O = 0, LSE = -inf for rows [0, count) of every query head of
 * (o, lse) [batch * heads][n_q][d_v | 1] (rows that see no key). */
ps_status ps_empty_rows_enqueue(ps_plan *plan, cl_kernel empty_rows, const ps_tensor *o,
                                cl_mem lse,
                                size_t count);

#endif
