/* Score-stage parameters (pipeline step 1, docs/SCORING.md), pure C: shared
 * by the device stage (lib/score.c) and the host reference (lib/ref/score.c),
 * so both use the same ridge and sum in the same chunks. */
#ifndef PRESCORE_CORE_SCORE_PARAMS_H
#define PRESCORE_CORE_SCORE_PARAMS_H

#include "prescore/types.h"
#include "score_common.h" /* cl/: PS_KPP_CHUNK and the score helpers, shared with the kernels */

#include <stddef.h>

/* Default relative ridge: lambda = PS_LEVERAGE_LAMBDA_DEFAULT * trace(K^T K) / d
 * (docs/SCORING.md). */
#define PS_LEVERAGE_LAMBDA_DEFAULT 1.0e-3f
/* Smallest relative ridge used: smaller leverage_lambda values are raised to
 * it (docs/SCORING.md: below ~1e-7 the device's float factor of a
 * rank-deficient K overflowed to NaN). */
#define PS_LEVERAGE_LAMBDA_MIN 1.0e-6f

/* The relative ridge a resolved descriptor asks for (leverage_lambda, or the
 * default when it is 0), at least PS_LEVERAGE_LAMBDA_MIN. */
float ps_score_lambda_rel(const ps_attention_desc *desc);

/* Keys per chunk of the chunked deterministic reductions (k-means centroid
 * and score sums, Gram partials): a function of n alone, so every device
 * and run sums in the same order. */
size_t ps_score_chunk(size_t n);
#endif
