/* Host reference of the Hamming-sort LSH stage (pipeline step 4): the same
 * projections (same Philox stream), codes and stable counting sort as
 * lib/lsh.c on the device, in plain C. Internal: the pipeline's reference and
 * the tests use it; layouts are documented in docs/LSH.md. */
#ifndef PRESCORE_REF_LSH_REF_H
#define PRESCORE_REF_LSH_REF_H

#include "prescore/types.h"

#include "core/lsh_rows.h"

#include "lsh_common.h"

#include <stddef.h>
#include <stdint.h>

/* The Gaussian hyperplanes of every KV head:
 * proj [batch * kv_heads][lsh_bits][d], element (j, c) of KV head bk from
 * ps_lsh_projection(seed, bk, j * d + c) (lsh_common.h). Host libm: may
 * differ from the device's values in the last ulps (philox.h).
 * @return PS_OK or the descriptor's validation status */
ps_status ps_ref_lsh_projections(const ps_attention_desc *desc, float *proj);

/* Codes [batch * heads][n] (uint32) of the rows described by @p layout, with
 * the projections of ps_ref_lsh_projections (dot products in double).
 * @param rows   NULL or [batch * heads][n] row indices into x
 * @param counts NULL or [batch * heads] rows per head
 * @param order  PS_LSH_ORDER_* */
ps_status ps_ref_lsh_codes(const ps_attention_desc *desc, const ps_lsh_rows *layout,
                           const float *x, const uint32_t *rows, const uint32_t *counts,
                           int order, uint32_t *codes);

/* Stable counting sort of each head's codes: perm[hx * n + p] = slot at sorted
 * position p, perm_inv[hx * n + i] = sorted position of slot i; equal codes
 * keep ascending slot order; slots past the count stay in place.
 * @param codes [batch * heads][n] with values < 2^lsh_bits below the count */
ps_status ps_ref_lsh_sort(const ps_attention_desc *desc, const ps_lsh_rows *layout,
                          const uint32_t *codes, const uint32_t *counts, uint32_t *perm,
                          uint32_t *perm_inv);

#endif
