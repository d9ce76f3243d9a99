/* Score-stage parameters: see score_params.h. */
#include "score_params.h"

float ps_score_lambda_rel(const ps_attention_desc *desc)
{
    const float l = desc->leverage_lambda > 0.0f ? desc->leverage_lambda
                                                 : PS_LEVERAGE_LAMBDA_DEFAULT;
    /* Below this the device's float Cholesky of a rank-deficient Gram
     * overflows (NaN scores); the reference uses the same floor. */
    return l > PS_LEVERAGE_LAMBDA_MIN ? l : PS_LEVERAGE_LAMBDA_MIN;
}

size_t ps_score_chunk(size_t n)
{
    const size_t by_count = (n + 63) / 64; /* at most 64 chunks */
    return by_count > 1024 ? by_count : 1024;
}
