/* The row layout hashed and sorted by pipeline step 4 (docs/LSH.md), pure C:
 * shared by the device stage (lib/lsh.c, lib/pipeline.c) and the host
 * reference (lib/ref/lsh.c). */
#ifndef PRESCORE_CORE_LSH_ROWS_H
#define PRESCORE_CORE_LSH_ROWS_H

#include <stddef.h>

/* Which rows of a tensor x = [batch, heads, x_rows, d] are hashed: per flat
 * head hx = b * heads + h, slot i in [0, n) hashes row
 *     rows ? rows[hx * n + i] : row0 + i
 * of x, for i < count(hx) = counts ? min(counts[hx], n) : n. Slots past the
 * count get code PS_LSH_CODE_NONE and map to themselves in perm/perm_inv.
 * heads is desc->heads for queries (each query head uses the projections of
 * its KV head h / (heads / kv_heads)) or desc->kv_heads for keys. */
typedef struct ps_lsh_rows {
    size_t heads;  /* heads of x; a multiple of desc->kv_heads */
    size_t x_rows; /* rows per head of x (its row stride); >= row0 + n without rows */
    size_t row0;   /* first row hashed when there is no rows list */
    size_t n;      /* slots per head of codes, perm and perm_inv */
} ps_lsh_rows;

#endif
