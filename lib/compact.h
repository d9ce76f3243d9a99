/* Compact copies of strided inputs: a stage that re-reads a caller's tensor
 * many times (the CPU-shaped exact kernel V, key scoring K, the pipeline's
 * query half Q) copies it once per call into a dense buffer of the same
 * storage type when its rows are not adjacent ([B, T, H, D] with several
 * heads: rows heads * dim apart cost a page walk every few rows,
 * docs/PERFORMANCE.md "Storage types and layouts"). */
#ifndef PRESCORE_COMPACT_H
#define PRESCORE_COMPACT_H

#include "internal.h"

typedef struct ps_compaction {
    cl_mem buf;          /* NULL: the plan's layout keeps rows adjacent */
    cl_kernel copy_rows; /* cl/merge.cl */
    size_t heads, dim;   /* flat heads and row width of the tensor */
} ps_compaction;

/* Prepares the copy of tensor `id` of the plan (nothing when its layout keeps
 * rows adjacent); `what` names the buffer in messages. */
ps_status ps_compaction_setup(ps_plan *plan, int id, const char *what, ps_compaction *c);
void ps_compaction_release(ps_compaction *c);

/* *out = t when t's rows are adjacent (or there is no buffer), else a dense
 * copy of its first `rows` rows per head, enqueued here. */
ps_status ps_compaction_enqueue(ps_plan *plan, const ps_compaction *c, const ps_tensor *t,
                                size_t rows, ps_tensor *out);

#endif
