/* The optional checks for Inf and NaN (desc.check_finite): of the inputs
 * before a run, of the outputs after it. */
#ifndef PRESCORE_FINITE_H
#define PRESCORE_FINITE_H

#include "internal.h"

/* Creates the plan's check kernel and flag buffer when desc.check_finite. */
ps_status ps_finite_setup(ps_plan *plan);
void ps_finite_release(ps_plan *plan);

/* Scans q, k and v (any may be NULL: skipped) on the device and waits for the answer: PS_OK, or
 * PS_ERR_NON_FINITE naming the first tensor that holds Inf or NaN. Does
 * nothing (PS_OK) when the plan does not check. */
ps_status ps_finite_check(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v);

/* After a run: PS_ERR_NON_FINITE when o holds Inf or NaN, or lse (NULL:
 * skipped) NaN or +Inf (-Inf is a row that sees no key), in a message
 * starting with `fn` that names the output. Finite inputs give such outputs
 * only beyond the fp32 range of the method (docs/RELIABILITY.md). Does
 * nothing (PS_OK) when the plan does not check. */
ps_status ps_finite_check_outputs(ps_plan *plan, const char *fn, cl_mem o, cl_mem lse);

#endif
