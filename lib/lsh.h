/* The lsh stage on the device: plan state, setup and enqueue. */
#ifndef PRESCORE_LSH_H
#define PRESCORE_LSH_H

#include "internal.h"

/* Creates plan->lsh (kernels, workspace) for the plan's resolved descriptor;
 * called by ps_plan_create when the method needs the stage. */
ps_status ps_lsh_setup(ps_plan *plan);
/* Releases plan->lsh; safe when setup failed half-way or never ran. */
void ps_lsh_release(ps_plan *plan);

#endif
