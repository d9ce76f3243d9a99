/* Variable-length batches on the device (desc.cu_seqlens_q / _k): a plan on
 * PS_PATH_VARLEN holds one batch-1 plan per sequence with queries, each
 * reading and writing its rows of the packed tensors through views offset to
 * them (ps_varlen_seq_desc, lib/core/varlen.c) and taking its own path by
 * its own length; each writes its LSE into its own buffer, copied into rows
 * [cu_seqlens_q[b], cu_seqlens_q[b+1]) of the caller's [heads, n_q] LSE. */
#ifndef PRESCORE_VARLEN_H
#define PRESCORE_VARLEN_H

#include "internal.h"

/* Creates plan->varlen: a copy of the offsets (plan->desc points at it), the
 * sequences' plans from @p user, the descriptor the caller gave (the
 * sequences resolve their automatic fields from it, as the reference does). */
ps_status ps_varlen_setup(ps_plan *plan, const ps_attention_desc *user);
void ps_varlen_release(ps_plan *plan);

/* Enqueues, for every sequence, `path` on its plan (call kind as
 * lib/attention.c's), then the copy of its LSE into lse (NULL: none). */
typedef ps_status (*ps_varlen_path_fn)(ps_plan *seq, int kind, cl_mem q, cl_mem k, cl_mem v,
                                       cl_mem o, cl_mem lse);
ps_status ps_varlen_enqueue(ps_plan *plan, int kind, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                            cl_mem lse, ps_varlen_path_fn path);

#endif
