/* --check: the method's output against exact attention on the same device. */
#ifndef PRESCORE_BENCH_CHECK_H
#define PRESCORE_BENCH_CHECK_H

#include "prescore/prescore.h"

typedef struct bench_check_result {
    double rel_error; /* ||O - O_exact||_F / ||O_exact||_F */
    double lse_error; /* mean |LSE - LSE_exact| over rows that see a key */
} bench_check_result;

/** Runs @p plan and an exact plan of the same shapes on q, k, v (device
 * buffers of @p ctx), reads both outputs back and compares them.
 * @return PS_OK or the failing call's status (message on the context) */
ps_status bench_check(ps_context *ctx, ps_plan *plan, const ps_attention_desc *desc,
                      cl_mem q, cl_mem k, cl_mem v, bench_check_result *result);

#endif
