/* The select stage on the device (not implemented yet). */
#include "select.h"

ps_status ps_select_setup(ps_plan *plan)
{
    (void)plan;
    return PS_OK;
}

void ps_select_release(ps_plan *plan) { (void)plan; }

size_t ps_plan_selected_capacity(const ps_plan *plan)
{
    if (!plan)
        return 0;
    const ps_attention_desc *d = &plan->desc;
    size_t want = d->budget > d->sink + d->window ? d->budget : d->sink + d->window;
    return want < d->n_k ? want : d->n_k;
}

ps_status ps_select_keys(ps_plan *plan, cl_mem scores, cl_mem indices, cl_mem counts)
{
    (void)scores;
    (void)indices;
    (void)counts;
    if (!plan)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_fail(plan->ctx, PS_ERR_NOT_IMPLEMENTED, "ps_select_keys: not implemented yet");
}
