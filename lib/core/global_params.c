/* Global keys' parameter checks: see global_params.h. */
#include "global_params.h"

#include <stdio.h>

int ps_global_own_scores(const ps_attention_desc *desc)
{
    return desc->method == PS_METHOD_PRESCORE && desc->global_score == desc->score;
}

ps_status ps_global_check(const ps_attention_desc *desc, size_t n_cand, char *message,
                          size_t message_size)
{
    const size_t g = desc->global_keys;
    if (g == 0)
        return PS_OK;
    if (g >= n_cand) {
        if (message && message_size)
            snprintf(message, message_size,
                     "global_keys (%zu) must be below the keys the approximate part sees "
                     "(%zu: %s)",
                     g, n_cand, desc->method == PS_METHOD_PRESCORE ? "the keys kept" : "n_k");
        return PS_ERR_INVALID_ARGUMENT;
    }
    if (!ps_global_own_scores(desc) && desc->global_score != PS_SCORE_NORM) {
        if (message && message_size)
            snprintf(message, message_size,
                     "global_score %d: global keys are picked by the plan's own score "
                     "(PRESCORE) or by PS_SCORE_NORM; other scores are not available yet",
                     (int)desc->global_score);
        return PS_ERR_NOT_IMPLEMENTED;
    }
    return PS_OK;
}
