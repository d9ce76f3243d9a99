/* The one softmax row of the reference's exact attention
 * (lib/ref/exact_attention.c), shared with the key cache's decode
 * (lib/ref/kv_cache.c), which attends a chosen list of cached rows. */
#ifndef PRESCORE_REF_EXACT_REF_H
#define PRESCORE_REF_EXACT_REF_H

#include <stddef.h>
#include <stdint.h>

/* Attention of one query q [d] over n keys in double, two passes (row
 * maximum, then weights): key j is row idx[j] (idx NULL: row j) of k [][d]
 * and v [][d_v]. Writes o [d_v] (zeros for n == 0) and returns the
 * natural-log LSE (-inf for n == 0). scores [n] and acc [d_v] are scratch. */
float ps_ref_attend_row(const float *q, const float *k, const float *v, const uint32_t *idx,
                        size_t n, size_t d, size_t d_v, double scale, double *scores,
                        double *acc, float *o);

#endif
