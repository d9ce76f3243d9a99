/* Device times of the last call of a plan: profiled markers on the in-order
 * queue around the whole call (ps_plan_last_time_ms) and between its stages
 * (ps_plan_stage_times). Stages hand back no events; these markers are the
 * only timing. */
#ifndef PRESCORE_STAGE_TIMES_H
#define PRESCORE_STAGE_TIMES_H

#include "internal.h"

/* Releases the marks of the previous call. */
void ps_marks_reset(ps_plan *plan);
/* Marks the start of stage `name` (a static string); no-op without profiling. */
void ps_mark(ps_plan *plan, const char *name);
/* Starts a call: drops the previous call's uncollected times and marks the
 * start of the run. */
void ps_run_begin(ps_plan *plan);
/* Ends a call that enqueued successfully: closes the last stage and marks
 * the end of the run; its times become pending. */
void ps_run_end(ps_plan *plan);
/* Turns the pending times of the plan's last call, if any, into
 * plan->last_time_ms and plan->stage_* (waiting for that call to end):
 * enqueued calls are timed when the times are asked for (lib/attention.c). */
void ps_times_collect(ps_plan *plan);

#endif
