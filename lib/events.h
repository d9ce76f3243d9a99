/* Event bookkeeping of a run made of several stages (the pipeline, the global
 * keys, the causal recursion): the run keeps its first command's event (the
 * start of ps_plan_last_time_ms) and the last one seen so far (its end). */
#ifndef PRESCORE_EVENTS_H
#define PRESCORE_EVENTS_H

#include "internal.h"

/* Takes a stage's first and last events (each owned by the caller, either
 * NULL): stage_first becomes the run's first if it has none (else it is
 * released), stage_last replaces the run's last. */
static inline void ps_events_join(cl_event *first, cl_event *last, cl_event stage_first,
                                  cl_event stage_last)
{
    if (stage_first && !*first) {
        *first = stage_first;
        clRetainEvent(stage_first);
    }
    if (stage_first)
        clReleaseEvent(stage_first);
    if (stage_last) {
        if (*last)
            clReleaseEvent(*last);
        *last = stage_last;
    }
}

/* Takes the event of a single launch: the run's last, and its first too if
 * it has none. */
static inline void ps_events_add(cl_event *first, cl_event *last, cl_event ev)
{
    if (ev && !*first) {
        *first = ev;
        clRetainEvent(ev);
    }
    ps_events_join(first, last, NULL, ev);
}

/* Releases the run's events (a failed run: lib/attention.c waits for what was
 * enqueued). */
static inline void ps_events_drop(cl_event *first, cl_event *last)
{
    if (*first)
        clReleaseEvent(*first);
    if (*last)
        clReleaseEvent(*last);
    *first = *last = NULL;
}

/* ps_events_add where the caller may want only one of the two (first or
 * last may be NULL): the unwanted one is released. */
static inline void ps_events_take(cl_event *first, cl_event *last, cl_event ev)
{
    cl_event own_first = NULL, own_last = NULL;
    ps_events_add(first ? first : &own_first, last ? last : &own_last, ev);
    ps_events_drop(&own_first, &own_last);
}

#endif
