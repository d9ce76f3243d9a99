/* Reference runs on laid-out tensors (lib/ref/layout_ref.h). */
#include "layout_ref.h"

#include "core/desc.h"
#include "core/host_alloc.h"
#include "core/tensor_layout.h"

#include <stdlib.h>
#include <string.h>

void ps_ref_plain_layouts(ps_attention_desc *d)
{
    memset(&d->q_layout, 0, sizeof d->q_layout);
    d->k_layout = d->v_layout = d->o_layout = d->q_layout;
}

ps_status ps_ref_through_layouts(const ps_attention_desc *d, const void *q, const void *k,
                                 const void *v, void *o, float *lse, ps_ref_dense_fn fn)
{
    int dense = 1;
    for (int id = PS_TENSOR_Q; id <= PS_TENSOR_O; id++)
        dense &= ps_layout_is_default(d, (ps_tensor_id)id);
    /* The stages derive descriptors of other shapes (kept keys, blocks) from
     * this one, so explicit strides, even dense ones, must not reach them. */
    ps_attention_desc plain = *d;
    ps_ref_plain_layouts(&plain);
    if (dense)
        return fn(&plain, q, k, v, o, lse);

    float *qd = ps_malloc(ps_desc_q_elems(d) * sizeof(float));
    float *kd = ps_malloc(ps_desc_k_elems(d) * sizeof(float));
    float *vd = ps_malloc(ps_desc_v_elems(d) * sizeof(float));
    float *od = ps_malloc(ps_desc_o_elems(d) * sizeof(float));
    ps_status st = PS_ERR_OUT_OF_HOST_MEMORY;
    if (qd && kd && vd && od) {
        ps_layout_to_f32(d, PS_TENSOR_Q, q, qd);
        ps_layout_to_f32(d, PS_TENSOR_K, k, kd);
        ps_layout_to_f32(d, PS_TENSOR_V, v, vd);
        st = fn(&plain, qd, kd, vd, od, lse);
        /* Also after PS_ERR_NON_FINITE of the outputs: O then holds the run's. */
        if (st == PS_OK || st == PS_ERR_NON_FINITE)
            ps_layout_from_f32(d, PS_TENSOR_O, od, o);
    }
    free(qd);
    free(kd);
    free(vd);
    free(od);
    return st;
}
