/* The approximate attention pipelines (HYPER, PRESCORE) behind ps_attention. */
#ifndef PRESCORE_PIPELINE_H
#define PRESCORE_PIPELINE_H

#include "internal.h"

/* Workspace between the stages, allocated at plan creation. */
ps_status ps_pipeline_setup(ps_plan *plan);
void ps_pipeline_release(ps_plan *plan);

/* Enqueues the plan's pipeline (buffers already validated); `first` and
 * `done` receive the first and last events of the run. */
ps_status ps_pipeline_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                              cl_mem lse, cl_event *first, cl_event *done);

/* The two halves of the non-causal pipeline, for key reuse: the key half
 * (scores, selection, global keys, LSH of the keys) and the query half
 * against the key set the last key half left in the plan. */
ps_status ps_pipeline_enqueue_keys(ps_plan *plan, cl_mem k, cl_mem v, cl_event *first,
                                   cl_event *done);
ps_status ps_pipeline_enqueue_queries(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse,
                                      cl_event *first, cl_event *done);

/* ps_plan_create for a node of the causal recursion (lib/plan.c): a
 * non-causal plan with min_seq_len 1 that skips the exact-attention
 * workspace when it has no global keys (it never runs exact attention). */
ps_status ps_plan_create_node(ps_context *ctx, const ps_attention_desc *desc, ps_plan **out);

#endif
