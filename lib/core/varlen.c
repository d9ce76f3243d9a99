/* Variable-length batches (lib/core/varlen.h). */
#include "varlen.h"

#include "desc.h"
#include "tensor_layout.h"

ps_status ps_varlen_check(const ps_attention_desc *d, char *message, size_t message_size)
{
    if (!d->cu_seqlens_q || !d->cu_seqlens_k)
        return ps_say(message, message_size, PS_ERR_INVALID_ARGUMENT,
                      "cu_seqlens_q and cu_seqlens_k must both be set or both NULL");
    const uint32_t *cq = d->cu_seqlens_q, *ck = d->cu_seqlens_k;
    if (cq[0] != 0 || ck[0] != 0)
        return ps_say(message, message_size, PS_ERR_INVALID_ARGUMENT,
                      "cu_seqlens_q[0] and cu_seqlens_k[0] must be 0");
    for (size_t b = 0; b < d->batch; b++) {
        if (cq[b + 1] < cq[b] || ck[b + 1] < ck[b])
            return ps_say(message, message_size, PS_ERR_INVALID_ARGUMENT,
                          "cu_seqlens must ascend: sequence %zu has q [%u, %u), k [%u, %u)", b,
                          (unsigned)cq[b], (unsigned)cq[b + 1], (unsigned)ck[b],
                          (unsigned)ck[b + 1]);
        if (cq[b + 1] > cq[b] && ck[b + 1] == ck[b])
            return ps_say(message, message_size, PS_ERR_INVALID_ARGUMENT,
                          "sequence %zu has %u queries and no key", b,
                          (unsigned)(cq[b + 1] - cq[b]));
    }
    if (cq[d->batch] != d->n_q || ck[d->batch] != d->n_k)
        return ps_say(message, message_size, PS_ERR_INVALID_ARGUMENT,
                      "cu_seqlens_q[batch] = %u and cu_seqlens_k[batch] = %u must equal n_q "
                      "(%zu) and n_k (%zu), the packed token counts",
                      (unsigned)cq[d->batch], (unsigned)ck[d->batch], d->n_q, d->n_k);
    return PS_OK;
}

size_t ps_varlen_len_q(const ps_attention_desc *d, size_t b)
{
    return d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
}

size_t ps_varlen_len_k(const ps_attention_desc *d, size_t b)
{
    return d->cu_seqlens_k[b + 1] - d->cu_seqlens_k[b];
}

/* The layout of a sequence's rows: the packed tensor's strides, its offset
 * advanced by `row0` token rows. */
static ps_tensor_layout seq_layout(const ps_attention_desc *d, ps_tensor_id id, size_t row0)
{
    ps_tensor_layout l = *ps_desc_layout(d, id);
    size_t dims[4];
    ps_desc_dims(d, id, dims);
    ps_layout_strides(&l, dims, l.stride);
    l.offset += row0 * l.stride[2];
    return l;
}

void ps_varlen_seq_desc(const ps_attention_desc *d, size_t b, ps_attention_desc *out)
{
    *out = *d;
    out->batch = 1;
    out->n_q = ps_varlen_len_q(d, b);
    out->n_k = ps_varlen_len_k(d, b);
    out->cu_seqlens_q = out->cu_seqlens_k = NULL;
    out->q_layout = seq_layout(d, PS_TENSOR_Q, d->cu_seqlens_q[b]);
    out->o_layout = seq_layout(d, PS_TENSOR_O, d->cu_seqlens_q[b]);
    out->k_layout = seq_layout(d, PS_TENSOR_K, d->cu_seqlens_k[b]);
    out->v_layout = seq_layout(d, PS_TENSOR_V, d->cu_seqlens_k[b]);
}
