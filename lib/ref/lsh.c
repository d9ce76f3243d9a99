/* Host reference of the Hamming-sort LSH stage (see lsh_ref.h). */
#include "ref/lsh_ref.h"

#include "core/desc.h"
#include "core/host_alloc.h"

#include <stdlib.h>
#include <string.h>

static ps_status resolve(const ps_attention_desc *desc, const ps_lsh_rows *layout,
                         ps_attention_desc *out)
{
    char msg[256];
    if (!desc || !layout)
        return PS_ERR_INVALID_ARGUMENT;
    ps_status st = ps_attention_desc_resolve(desc, out, msg, sizeof msg);
    if (st != PS_OK)
        return st;
    if (layout->heads == 0 || layout->heads % out->kv_heads != 0 ||
        layout->n > PS_MAX_TOKENS)
        return PS_ERR_INVALID_ARGUMENT;
    return PS_OK;
}

ps_status ps_ref_lsh_projections(const ps_attention_desc *desc, float *proj)
{
    char msg[256];
    ps_attention_desc d;
    if (!desc || !proj)
        return PS_ERR_INVALID_ARGUMENT;
    ps_status st = ps_attention_desc_resolve(desc, &d, msg, sizeof msg);
    if (st != PS_OK)
        return st;
    const size_t per_head = (size_t)d.lsh_bits * d.d;
    for (size_t bk = 0; bk < d.batch * d.kv_heads; bk++)
        for (size_t e = 0; e < per_head; e++)
            proj[bk * per_head + e] = ps_lsh_projection(d.seed, (ps_u32)bk, (ps_u32)e);
    return PS_OK;
}

ps_status ps_ref_lsh_codes(const ps_attention_desc *desc, const ps_lsh_rows *layout,
                           const float *x, const uint32_t *rows, const uint32_t *counts,
                           int order, uint32_t *codes)
{
    ps_attention_desc d;
    ps_status st = resolve(desc, layout, &d);
    if (st != PS_OK)
        return st;
    if (!x || !codes)
        return PS_ERR_INVALID_ARGUMENT;
    const size_t r = d.lsh_bits, dim = d.d, n = layout->n;
    const size_t group = layout->heads / d.kv_heads;
    const size_t total = d.batch * layout->heads;
    float *proj = ps_malloc(d.batch * d.kv_heads * r * dim * sizeof *proj);
    if (!proj)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    ps_ref_lsh_projections(&d, proj);
    for (size_t hx = 0; hx < total; hx++) {
        /* b * heads + h over group = b * kv_heads + h / group */
        const float *w = proj + (hx / group) * r * dim;
        const size_t count = counts && counts[hx] < n ? counts[hx] : n;
        for (size_t i = 0; i < n; i++) {
            if (i >= count) {
                codes[hx * n + i] = PS_LSH_CODE_NONE;
                continue;
            }
            const size_t src = rows ? rows[hx * n + i] : layout->row0 + i;
            if (src >= layout->x_rows) {
                free(proj);
                return PS_ERR_INVALID_ARGUMENT;
            }
            const float *xr = x + (hx * layout->x_rows + src) * dim;
            ps_u32 pattern = 0;
            for (size_t j = 0; j < r; j++) {
                double dot = 0.0;
                for (size_t c = 0; c < dim; c++)
                    dot += (double)xr[c] * (double)w[j * dim + c];
                pattern |= (ps_u32)(dot > 0.0) << j;
            }
            codes[hx * n + i] = ps_lsh_code(pattern, order);
        }
    }
    free(proj);
    return PS_OK;
}

ps_status ps_ref_lsh_sort(const ps_attention_desc *desc, const ps_lsh_rows *layout,
                          const uint32_t *codes, const uint32_t *counts, uint32_t *perm,
                          uint32_t *perm_inv)
{
    ps_attention_desc d;
    ps_status st = resolve(desc, layout, &d);
    if (st != PS_OK)
        return st;
    if (!codes || !perm || !perm_inv)
        return PS_ERR_INVALID_ARGUMENT;
    const size_t buckets = (size_t)1 << d.lsh_bits, n = layout->n;
    const size_t total = d.batch * layout->heads;
    size_t *start = ps_malloc((buckets + 1) * sizeof *start);
    if (!start)
        return PS_ERR_OUT_OF_HOST_MEMORY;
    for (size_t hx = 0; hx < total; hx++) {
        const uint32_t *c = codes + hx * n;
        const size_t count = counts && counts[hx] < n ? counts[hx] : n;
        memset(start, 0, (buckets + 1) * sizeof *start);
        for (size_t i = 0; i < count; i++) {
            if (c[i] >= buckets) {
                free(start);
                return PS_ERR_INVALID_ARGUMENT;
            }
            start[c[i] + 1]++;
        }
        for (size_t b = 0; b < buckets; b++)
            start[b + 1] += start[b];
        for (size_t i = 0; i < n; i++) {
            const size_t p = i < count ? start[c[i]]++ : i;
            perm[hx * n + p] = (uint32_t)i;
            perm_inv[hx * n + i] = (uint32_t)p;
        }
    }
    free(start);
    return PS_OK;
}
