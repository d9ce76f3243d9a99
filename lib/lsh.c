/* The lsh stage on the device (not implemented yet). */
#include "lsh.h"

ps_status ps_lsh_setup(ps_plan *plan)
{
    (void)plan;
    return PS_OK;
}

void ps_lsh_release(ps_plan *plan) { (void)plan; }
