/* IEEE binary16 <-> binary32 on the host, pure C99 (no _Float16): the
 * reference twins, ps_attention_host's checks and the tests round exactly
 * as the kernels' vstore_half_rte and widen as vload_half. */
#ifndef PRESCORE_CORE_HALF_H
#define PRESCORE_CORE_HALF_H

#include <stdint.h>

/* Exact: every binary16 value, subnormals, infinities and NaN included. */
float ps_half_to_float(uint16_t h);

/* Rounded to nearest, ties to even; beyond the half range: +-Inf; NaN stays NaN. */
uint16_t ps_float_to_half(float f);

#endif
