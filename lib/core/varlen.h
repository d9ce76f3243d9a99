/* Variable-length batches (desc.cu_seqlens_q / cu_seqlens_k), pure C: the
 * checks of the offsets and the descriptor of each sequence, shared by the
 * device plan (lib/varlen.c) and the reference (lib/ref/attention.c), so both
 * run every sequence with the same parameters. */
#ifndef PRESCORE_CORE_VARLEN_H
#define PRESCORE_CORE_VARLEN_H

#include "prescore/types.h"

#include <stddef.h>

/* 1 when @p d describes a variable-length batch. */
static inline int ps_desc_is_varlen(const ps_attention_desc *d)
{
    return d->cu_seqlens_q != NULL || d->cu_seqlens_k != NULL;
}

/* The batch dimension of the tensors: 1 for a variable-length batch (the
 * sequences are packed along the tokens), else desc.batch. */
static inline size_t ps_desc_batch_dim(const ps_attention_desc *d)
{
    return ps_desc_is_varlen(d) ? 1 : d->batch;
}

/* Checks the offsets of a variable-length descriptor whose shapes passed:
 * both arrays or neither, starting at 0, ascending, ending at n_q and n_k,
 * keys for every sequence that has queries. PS_OK or the problem. */
ps_status ps_varlen_check(const ps_attention_desc *d, char *message, size_t message_size);

/* Query and key rows of sequence b. */
size_t ps_varlen_len_q(const ps_attention_desc *d, size_t b);
size_t ps_varlen_len_k(const ps_attention_desc *d, size_t b);

/* The descriptor of sequence b (its queries must be > 0) of the variable-
 * length descriptor @p d as the caller gave it (not resolved): batch 1, its
 * lengths, no offsets arrays, every other field as d (seed included: a
 * sequence computes what a batch-1 call on it alone would), and layouts
 * addressing its rows in the packed tensors (same strides, offset advanced
 * by its first row). */
void ps_varlen_seq_desc(const ps_attention_desc *d, size_t b, ps_attention_desc *out);

#endif
