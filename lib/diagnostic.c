/* Diagnostic switches of a plan (prescore.h, "diagnostics"): measurement aids
 * for prescore-bench, e.g. the unit residual weight behind heavy_recall. */
#include "internal.h"

#include "handles.h"

static ps_status plan_set_diagnostic_checked(ps_plan *plan, ps_diagnostic what, int value)
{
    if (value != 0 && value != 1)
        return ps_fail(plan->ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_plan_set_diagnostic: value must be 0 or 1, got %d", value);
    switch (what) {
    case PS_DIAG_UNIT_RESIDUAL_WEIGHT:
        plan->diag_unit_residual_weight = value;
        break;
    default:
        return ps_fail(plan->ctx, PS_ERR_INVALID_ARGUMENT,
                       "ps_plan_set_diagnostic: what (%d) is not a known ps_diagnostic",
                       (int)what);
    }
    return PS_OK;
}

ps_status ps_plan_set_diagnostic(ps_plan *plan, ps_diagnostic what, int value)
{
    if (ps_plan_enter(plan, "ps_plan_set_diagnostic") != PS_OK)
        return PS_ERR_INVALID_ARGUMENT;
    return ps_plan_result(plan, plan_set_diagnostic_checked(plan, what, value));
}
