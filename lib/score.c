/* The score stage on the device (not implemented yet). */
#include "score.h"

ps_status ps_score_setup(ps_plan *plan)
{
    (void)plan;
    return PS_OK;
}

void ps_score_release(ps_plan *plan) { (void)plan; }

ps_status ps_score_keys(ps_plan *plan, cl_mem k, cl_mem scores)
{
    (void)k;
    (void)scores;
    if (!plan)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_fail(plan->ctx, PS_ERR_NOT_IMPLEMENTED, "ps_score_keys: not implemented yet");
}
