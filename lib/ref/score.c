/* Reference key scores (not implemented yet). */
#include "prescore/prescore_ref.h"

ps_status ps_ref_score_keys(const ps_attention_desc *desc, const float *k, float *scores)
{
    (void)desc;
    (void)k;
    (void)scores;
    return PS_ERR_NOT_IMPLEMENTED;
}
