/* The score stage on the device: plan state, setup and enqueue. */
#ifndef PRESCORE_SCORE_H
#define PRESCORE_SCORE_H

#include "internal.h"

/* Creates plan->score (kernels, workspace) for the plan's resolved descriptor;
 * called by ps_plan_create when the method needs the stage. */
ps_status ps_score_setup(ps_plan *plan);
/* Releases plan->score; safe when setup failed half-way or never ran. */
void ps_score_release(ps_plan *plan);

#endif
