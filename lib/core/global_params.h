/* Global keys' parameter checks (docs/GLOBAL.md), pure C: shared by the
 * device stage (lib/global.c) and the host reference (lib/ref/global.c). */
#ifndef PRESCORE_CORE_GLOBAL_PARAMS_H
#define PRESCORE_CORE_GLOBAL_PARAMS_H

#include "prescore/types.h"

#include <stddef.h>

/* 1 when the global keys are picked by the plan's own selection scores
 * (PRESCORE with global_score == score), 0 when by NORM of the candidates. */
int ps_global_own_scores(const ps_attention_desc *desc);

/* Checks the global keys of a resolved, non-causal descriptor whose
 * approximate part sees n_cand candidates per KV head (shared by
 * ps_plan_create and ps_ref_attention): PS_OK when g = 0 or supported;
 * PS_ERR_INVALID_ARGUMENT unless g < n_cand; PS_ERR_NOT_IMPLEMENTED for a
 * global_score other than the plan's own (PRESCORE) or NORM. A message naming
 * the field goes to `message` (may be NULL). */
ps_status ps_global_check(const ps_attention_desc *desc, size_t n_cand, char *message,
                          size_t message_size);

#endif
