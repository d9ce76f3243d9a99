/* The query sketch on the host, twin of lib/sketch.c (cl/select.cl
 * sketch_*): the same sampled rows (ps_sketch_row, cl/select_common.h), the
 * mass each key gets from them, in double. */
#include "prescore/prescore_ref.h"

#include "core/desc.h"
#include "core/host_alloc.h"
#include "core/select_params.h"
#include "core/tensor_layout.h"
#include "core/varlen.h"
#include "layout_ref.h"
#include "sketch_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ps_status ps_ref_sketch_dense(const ps_attention_desc *d, const float *q, const float *k,
                              float *mass)
{
    const size_t n_q = d->n_q, n_k = d->n_k, dim = d->d, group = d->heads / d->kv_heads;
    const size_t kvh = d->batch * d->kv_heads;
    const uint32_t rows = ps_sketch_rows((uint32_t)n_q, d->sketch_queries);
    double *x = ps_malloc((n_k ? n_k : 1) * sizeof *x), *acc = ps_malloc((n_k ? n_k : 1) * sizeof *acc);
    if (!x || !acc) {
        free(x);
        free(acc);
        return PS_ERR_OUT_OF_HOST_MEMORY;
    }
    for (size_t hk = 0; hk < kvh; hk++) {
        const float *kh = k + hk * n_k * dim;
        memset(acc, 0, n_k * sizeof *acc);
        for (size_t g = 0; g < group; g++) {
            const size_t qh = hk * group + g; /* batch-major: b * heads + h */
            for (uint32_t i = 0; i < rows; i++) {
                const uint32_t t =
                    ps_sketch_row(d->seed, (uint32_t)qh, i, (uint32_t)n_q, d->sketch_queries);
                const float *qi = q + (qh * n_q + t) * dim;
                double top = -INFINITY, sum = 0.0;
                for (size_t j = 0; j < n_k; j++) {
                    double dot = 0.0;
                    for (size_t c = 0; c < dim; c++)
                        dot += (double)qi[c] * kh[j * dim + c];
                    x[j] = dot * d->scale;
                    top = x[j] > top ? x[j] : top;
                }
                for (size_t j = 0; j < n_k; j++)
                    sum += exp(x[j] - top);
                for (size_t j = 0; j < n_k; j++)
                    acc[j] += exp(x[j] - top) / sum;
            }
        }
        for (size_t j = 0; j < n_k; j++)
            mass[hk * n_k + j] = (float)acc[j];
    }
    free(x);
    free(acc);
    return PS_OK;
}

ps_status ps_ref_sketch_keys(const ps_attention_desc *desc, const void *q, const void *k,
                             float *mass)
{
    ps_attention_desc r;
    ps_status st = ps_attention_desc_resolve(desc, &r, NULL, 0);
    if (st != PS_OK)
        return st;
    if (!q || !k || !mass || r.sketch_queries == 0 || ps_desc_is_varlen(&r))
        return PS_ERR_INVALID_ARGUMENT;
    if (ps_layout_is_default(&r, PS_TENSOR_Q) && ps_layout_is_default(&r, PS_TENSOR_K))
        return ps_ref_sketch_dense(&r, q, k, mass);
    /* The device widens fp16 exactly: dense fp32 copies hold its numbers. */
    float *qd = ps_malloc(ps_desc_q_elems(&r) * sizeof *qd);
    float *kd = ps_malloc(ps_desc_k_elems(&r) * sizeof *kd);
    if (qd && kd) {
        ps_layout_to_f32(&r, PS_TENSOR_Q, q, qd);
        ps_layout_to_f32(&r, PS_TENSOR_K, k, kd);
        ps_ref_plain_layouts(&r);
        st = ps_ref_sketch_dense(&r, qd, kd, mass);
    } else {
        st = PS_ERR_OUT_OF_HOST_MEMORY;
    }
    free(qd);
    free(kd);
    return st;
}
