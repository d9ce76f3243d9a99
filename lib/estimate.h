/* The per-call error estimate (desc.error_probes > 0; docs/API.md "Error
 * estimate"): probe rows attended exactly (cl/estimate.cl) and compared with
 * what the call wrote, per query head; with desc.error_tolerance, the heads
 * above it recomputed exactly. */
#ifndef PRESCORE_ESTIMATE_H
#define PRESCORE_ESTIMATE_H

#include "internal.h"

/* Creates plan->estimate for a resolved descriptor with error_probes > 0;
 * called by ps_plan_create after the path is known. */
ps_status ps_estimate_setup(ps_plan *plan);
void ps_estimate_release(ps_plan *plan);

/* The LSE buffer an estimating call runs with: the caller's, or the stage's
 * own when the caller wants none (the probes compare LSE too). */
cl_mem ps_estimate_row_lse(const ps_plan *plan, cl_mem lse);

/* Marks the last estimate stale (a new call begins); no-op without one. */
void ps_estimate_forget(ps_plan *plan);

/* After the call's halves were enqueued into o and lse (ps_estimate_row_lse):
 * the estimate, and with a tolerance the exact recomputation of the heads
 * above it (which waits for the estimate). q, k, v, o are the caller's
 * buffers in the plan's layouts. On the exact path: estimates of 0. */
ps_status ps_estimate_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                              cl_mem lse);

#endif
