/* Reference key selection (not implemented yet). */
#include "prescore/prescore_ref.h"

ps_status ps_ref_select_keys(const ps_attention_desc *desc, const float *scores,
                             uint32_t *indices, uint32_t *counts)
{
    (void)desc;
    (void)scores;
    (void)indices;
    (void)counts;
    return PS_ERR_NOT_IMPLEMENTED;
}
