/* The Hamming-sort LSH stage on the device (cl/lsh.cl, pipeline step 4):
 * plan state, setup and enqueue. The host twins are in ref/lsh_ref.h; both
 * take the row layout ps_lsh_rows described there, and docs/LSH.md holds the
 * definitions.
 *
 * Every enqueue call only enqueues on the context's (in-order) queue: buffers
 * may be read once the queue reaches the returned events. `first` and `done`
 * may be NULL; when given they receive the first and the last kernel's event
 * (release both), NULL when nothing was enqueued (n = 0). */
#ifndef PRESCORE_LSH_H
#define PRESCORE_LSH_H

#include "internal.h"
#include "core/lsh_rows.h"
#include "lsh_common.h" /* cl/: shared with the kernels */

/* Creates plan->lsh for the plan's resolved descriptor: kernels, the
 * projections [batch * kv_heads][lsh_bits][d] (generated on the device here,
 * waited for), and the sort workspace sized for batch * heads (query heads)
 * flat heads of max(n_q, n_k) slots. Called by ps_plan_create for the HYPER
 * and PRESCORE methods. Ordering: PS_LSH_ORDER_GRAY_RANK, or the environment
 * variable PRESCORE_LSH_ORDER = gray-rank | gray-code | binary. */
ps_status ps_lsh_setup(ps_plan *plan);
/* Releases plan->lsh; safe when setup failed half-way or never ran. */
void ps_lsh_release(ps_plan *plan);

/* Ordering of the codes (PS_LSH_ORDER_*), for measuring the two Gray
 * indexings; applies to later enqueues. */
ps_status ps_lsh_set_order(ps_plan *plan, int order);
int ps_lsh_order(const ps_plan *plan);

/* The plan's projections, [batch * kv_heads][lsh_bits][d] floats (owned by
 * the plan; NULL before setup). */
cl_mem ps_lsh_projections(const ps_plan *plan);

/* Largest layout->n the workspace sorts for layout->heads flat heads
 * (batch * heads); 0 for a plan without the stage. */
size_t ps_lsh_max_slots(const ps_plan *plan, size_t heads);

/* The enqueues below validate nothing: their callers (lib/pipeline.c,
 * lib/causal.c) pass buffers sized from the plan and layouts whose heads are
 * a multiple of kv_heads and whose n is at most ps_lsh_max_slots.
 *
 * Hashes the rows of x selected by layout/rows/counts (ref/lsh_ref.h).
 * @param x      [batch, layout->heads, layout->x_rows, d], any view
 * @param rows   NULL or [batch * layout->heads][layout->n] uint32
 * @param counts NULL or [batch * layout->heads] uint32
 * @param codes  [batch * layout->heads][layout->n] uint32 (written) */
ps_status ps_lsh_enqueue_hash(ps_plan *plan, const ps_lsh_rows *layout, const ps_tensor *x,
                              cl_mem rows, cl_mem counts, cl_mem codes);

/* Stable counting sort of codes (values < 2^lsh_bits below each count; larger
 * ones are clamped to the last bucket) into
 * @param perm     [batch * layout->heads][layout->n] uint32: slot at position p
 * @param perm_inv [batch * layout->heads][layout->n] uint32: position of slot i
 * Slots past the count stay in place. Uses the plan's workspace: calls on one
 * plan must not run concurrently (one in-order queue guarantees it). */
ps_status ps_lsh_enqueue_sort(ps_plan *plan, const ps_lsh_rows *layout, cl_mem codes,
                              cl_mem counts, cl_mem perm, cl_mem perm_inv);

/* Hash then sort (the two calls above). */
ps_status ps_lsh_enqueue(ps_plan *plan, const ps_lsh_rows *layout, const ps_tensor *x,
                         cl_mem rows, cl_mem counts, cl_mem codes, cl_mem perm,
                         cl_mem perm_inv);

#endif
