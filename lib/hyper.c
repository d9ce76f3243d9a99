/* The hyper stage on the device (not implemented yet). */
#include "hyper.h"

ps_status ps_hyper_setup(ps_plan *plan)
{
    (void)plan;
    return PS_OK;
}

void ps_hyper_release(ps_plan *plan) { (void)plan; }
