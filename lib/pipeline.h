/* The non-causal approximate pipeline (HYPER, PRESCORE) behind ps_attention:
 * pipeline steps 1-7 and the global keys (docs/ARCHITECTURE.md). */
#ifndef PRESCORE_PIPELINE_H
#define PRESCORE_PIPELINE_H

#include "internal.h"

/* Workspace between the stages (and the global keys' setup), allocated at
 * creation of a plan on PS_PATH_PIPELINE. */
ps_status ps_pipeline_setup(ps_plan *plan);
void ps_pipeline_release(ps_plan *plan);

/* Enqueues the key half, then the query half (buffers validated by the public
 * entry point). */
ps_status ps_pipeline_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                              cl_mem lse);

/* The two halves, for key reuse (and the causal recursion's nodes): the key
 * half (scores, selection, gather, global split, LSH of the keys) and the
 * query half against the key set the last key half left in the plan. q is
 * NULL for key reuse; a plan with a query sketch needs it (refused without). */
ps_status ps_pipeline_enqueue_keys(ps_plan *plan, cl_mem k, cl_mem v, cl_mem q);
ps_status ps_pipeline_enqueue_queries(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse);

#endif
