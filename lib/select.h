/* The select stage on the device: plan state, setup and enqueue. */
#ifndef PRESCORE_SELECT_H
#define PRESCORE_SELECT_H

#include "internal.h"

/* Creates plan->select (kernels, workspace) for the plan's resolved descriptor;
 * called by ps_plan_create when the method needs the stage. */
ps_status ps_select_setup(ps_plan *plan);
/* Releases plan->select; safe when setup failed half-way or never ran. */
void ps_select_release(ps_plan *plan);

#endif
