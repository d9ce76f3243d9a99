/* Per-stage timings from profiled markers. A marker in an in-order queue
 * completes when everything before it has, so the time between two markers'
 * completions is the device time of the stage between them; stages need no
 * events of their own. */
#include "stage_times.h"
#include "handles.h"

void ps_marks_reset(ps_plan *plan)
{
    for (size_t i = 0; i < plan->mark_count; i++)
        if (plan->marks[i])
            clReleaseEvent(plan->marks[i]);
    plan->mark_count = 0;
    plan->stage_count = 0;
    if (plan->run_first)
        clReleaseEvent(plan->run_first);
    if (plan->run_done)
        clReleaseEvent(plan->run_done);
    plan->run_first = plan->run_done = NULL;
    plan->times_pending = 0;
}

/* Time between the completions of two markers. */
static double event_span_ms(cl_event first, cl_event last)
{
    cl_ulong start = 0, end = 0;
    if (clWaitForEvents(1, &last) != CL_SUCCESS ||
        clGetEventProfilingInfo(first, CL_PROFILING_COMMAND_END, sizeof start, &start,
                                NULL) != CL_SUCCESS ||
        clGetEventProfilingInfo(last, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL) !=
            CL_SUCCESS)
        return -1.0;
    return (double)(end - start) * 1e-6;
}

/* A profiled marker, or NULL (timing is best effort). */
static cl_event run_marker(ps_plan *plan)
{
    cl_event ev = NULL;
    if (plan->ctx->profiling &&
        clEnqueueMarkerWithWaitList(plan->ctx->queue, 0, NULL, &ev) != CL_SUCCESS)
        ev = NULL;
    return ev;
}

void ps_run_begin(ps_plan *plan)
{
    ps_marks_reset(plan); /* the previous call's uncollected times */
    plan->last_time_ms = -1.0;
    plan->run_first = run_marker(plan);
}

void ps_run_end(ps_plan *plan)
{
    ps_mark(plan, NULL); /* closes the last stage */
    plan->run_done = run_marker(plan);
    plan->times_pending = plan->run_first && plan->run_done;
}

static void marks_finish(ps_plan *plan)
{
    cl_ulong prev = 0;
    plan->stage_count = 0;
    for (size_t i = 0; i < plan->mark_count; i++) {
        cl_ulong end = 0;
        if (clWaitForEvents(1, &plan->marks[i]) != CL_SUCCESS ||
            clGetEventProfilingInfo(plan->marks[i], CL_PROFILING_COMMAND_END, sizeof end, &end,
                                    NULL) != CL_SUCCESS) {
            plan->stage_count = 0;
            break;
        }
        if (i > 0 && plan->stage_count < PS_MAX_STAGES) {
            plan->stage_names[plan->stage_count] = plan->mark_names[i - 1];
            plan->stage_ms[plan->stage_count++] = (double)(end - prev) * 1e-6;
        }
        prev = end;
    }
    const size_t stages = plan->stage_count;
    const double last = plan->last_time_ms;
    ps_marks_reset(plan);
    plan->stage_count = stages;
    plan->last_time_ms = last;
}

void ps_times_collect(ps_plan *plan)
{
    if (!plan->times_pending)
        return;
    plan->times_pending = 0;
    plan->last_time_ms = event_span_ms(plan->run_first, plan->run_done);
    marks_finish(plan);
}

void ps_mark(ps_plan *plan, const char *name)
{
    if (!plan->ctx->profiling || plan->mark_count >= PS_MAX_STAGES + 1)
        return;
    cl_event ev = NULL;
    if (clEnqueueMarkerWithWaitList(plan->ctx->queue, 0, NULL, &ev) != CL_SUCCESS)
        return; /* timing is best effort; the computation is unaffected */
    plan->mark_names[plan->mark_count] = name;
    plan->marks[plan->mark_count++] = ev;
}

ps_status ps_plan_stage_times(const ps_plan *plan, ps_stage_times *times)
{
    if (ps_plan_check(plan, "ps_plan_stage_times") != PS_OK || !times)
        return PS_ERR_INVALID_ARGUMENT;
    ps_times_collect((ps_plan *)plan); /* plans are used by one thread at a time */
    times->count = plan->stage_count;
    for (size_t i = 0; i < plan->stage_count; i++) {
        times->names[i] = plan->stage_names[i];
        times->ms[i] = plan->stage_ms[i];
    }
    return PS_OK;
}
