/* Per-stage device times of the last ps_attention call: profiled markers
 * between the stages of the in-order queue (ps_plan_stage_times). */
#ifndef PRESCORE_STAGE_TIMES_H
#define PRESCORE_STAGE_TIMES_H

#include "internal.h"

/* Releases the marks of the previous call. */
void ps_marks_reset(ps_plan *plan);
/* Marks the start of stage `name` (a static string); no-op without profiling. */
void ps_mark(ps_plan *plan, const char *name);
/* Marks the end of the last stage (at the end of an enqueue). */
void ps_marks_close(ps_plan *plan);
/* Waits for the marks and turns them into per-stage milliseconds
 * (plan->stage_*), releasing the events. */
void ps_marks_finish(ps_plan *plan);
/* Turns the pending times of the plan's last call, if any, into
 * plan->last_time_ms and plan->stage_* (waiting for that call to end):
 * enqueued calls are timed when the times are asked for (lib/attention.c). */
void ps_times_collect(ps_plan *plan);

#endif
