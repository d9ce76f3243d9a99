/* Plan creation inside the library (lib/plan.c). */
#ifndef PRESCORE_PLAN_H
#define PRESCORE_PLAN_H

#include "internal.h"

/* ps_plan_create for a node of the causal recursion (lib/causal.c): a
 * non-causal plan (min_seq_len 1, so on PS_PATH_PIPELINE) that skips the
 * exact-attention workspace when it has no global keys (it never runs exact
 * attention otherwise). */
ps_status ps_plan_create_node(ps_context *ctx, const ps_attention_desc *desc, ps_plan **out);

/* A plan with only the score and select stages (steps 1 and 2), for the
 * key cache's full scorings (lib/kv_index.c). */
ps_status ps_plan_create_scoring(ps_context *ctx, const ps_attention_desc *desc, ps_plan **out);

#endif
