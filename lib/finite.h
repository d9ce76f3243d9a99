/* The optional check of attention inputs for Inf and NaN (desc.check_finite). */
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

#endif
