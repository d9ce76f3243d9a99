/* The query sketch on the device (cl/select.cl sketch_*): the attention mass
 * a Philox sample of queries puts on every key, which ranks the heavy keys
 * of a weighted selection (desc.sketch_queries > 0; docs/SELECT.md "Query
 * sketch"). The sampled rows are ps_sketch_row of cl/select_common.h, shared
 * with the twin ps_ref_sketch_keys. */
#ifndef PRESCORE_SKETCH_H
#define PRESCORE_SKETCH_H

#include "internal.h"

/* Creates plan->sketch (kernels, workspace) for a resolved descriptor with
 * sketch_queries > 0; called by ps_plan_create. */
ps_status ps_sketch_setup(ps_plan *plan);
/* Releases plan->sketch; safe when setup failed half-way or never ran. */
void ps_sketch_release(ps_plan *plan);

/* Enqueues the sketch without waiting: q and k as the plan's views, mass
 * [batch * kv_heads][n_k] float out (NULL: the stage's own buffer). Returns
 * the buffer written in *out. Nothing is validated here. */
ps_status ps_sketch_enqueue(ps_plan *plan, const ps_tensor *q, const ps_tensor *k, cl_mem mass,
                            cl_mem *out);

#endif
