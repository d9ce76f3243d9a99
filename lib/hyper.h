/* The hyper stage on the device: plan state, setup and enqueue. */
#ifndef PRESCORE_HYPER_H
#define PRESCORE_HYPER_H

#include "internal.h"

/* Creates plan->hyper (kernels, workspace) for the plan's resolved descriptor;
 * called by ps_plan_create when the method needs the stage. */
ps_status ps_hyper_setup(ps_plan *plan);
/* Releases plan->hyper; safe when setup failed half-way or never ran. */
void ps_hyper_release(ps_plan *plan);

#endif
