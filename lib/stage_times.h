/* Per-stage device times of the last ps_attention call: profiled markers
 * between the stages of the in-order queue (ps_plan_stage_times). */
#ifndef PRESCORE_STAGE_TIMES_H
#define PRESCORE_STAGE_TIMES_H

#include "internal.h"

/* Releases the marks of the previous call. */
void ps_marks_reset(ps_plan *plan);
/* Marks the start of stage `name` (a static string); no-op without profiling. */
void ps_mark(ps_plan *plan, const char *name);
/* After the queue has finished: marks the end and turns the marks into
 * per-stage milliseconds (plan->stage_*), releasing the events. */
void ps_marks_finish(ps_plan *plan);

#endif
