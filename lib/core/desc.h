/* Descriptor logic shared by the device plan and the host reference. */
#ifndef PRESCORE_CORE_DESC_H
#define PRESCORE_CORE_DESC_H

#include "prescore/types.h"

#include <stdarg.h>

/* Kernels index tokens with int; keep every count well inside it. */
#define PS_MAX_TOKENS (1 << 30)
#define PS_MAX_LSH_BITS 16
/* Lloyd iterations: far beyond convergence, keeps the inertia log small. */
#define PS_MAX_KMEANS_ITERS (1 << 16)
/* |scale| bound: scale * log2(e) and moderate logits stay finite in fp32. */
#define PS_MAX_SCALE 1e30

/* Writes the printf-style message (when @p message is not NULL) and returns
 * @p st: the validators' one way to report a problem. */
ps_status ps_say(char *message, size_t size, ps_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Validates @p desc and fills @p out with every automatic field resolved
 * (scale, block, samples, lsh_bits, min_seq_len, iterations, budget clamped
 * to n_k, clusters). */
ps_status ps_attention_desc_resolve(const ps_attention_desc *desc, ps_attention_desc *out,
                                    char *message, size_t message_size);

/* Keys kept of n under a keep_ratio (0: PS_KEEP_RATIO_DEFAULT):
 * ceil(ratio * n), at least 1; the one rounding rule of plans and the key
 * cache. The float's own rounding (0.1f is 0.1000000015) is taken off
 * first, so 0.1 of 1000 keys is 100, not 101. */
static inline size_t ps_keep_ratio_count(float keep_ratio, size_t n)
{
    const double r = keep_ratio > 0.0f ? (double)keep_ratio : (double)PS_KEEP_RATIO_DEFAULT;
    double m = r * (double)n;
    m -= m * 0x1p-23;
    size_t c = (size_t)m;
    if ((double)c < m)
        c++;
    return c < 1 ? 1 : (c > n && n > 0 ? n : c);
}

/* Whether a selection keeps a weighted key set (WEIGHTED, STRATIFIED; AUTO
 * is neither until resolved). */
static inline int ps_selection_weighted(ps_selection s)
{
    return s == PS_SELECTION_WEIGHTED || s == PS_SELECTION_STRATIFIED;
}

/* A descriptor copy for a part run by another method (an exact leaf,
 * HyperAttention over keys already selected): sets the method and drops
 * the key selection's fields, which only PRESCORE takes, and the error
 * estimate's, which belong to the whole call. */
static inline void ps_desc_part_method(ps_attention_desc *d, ps_method method)
{
    d->method = method;
    d->selection = PS_SELECTION_TOP;
    d->sketch_queries = 0;
    d->error_probes = 0; /* a part is never estimated on its own */
    d->error_tolerance = 0.0f;
}

/* The selection @p d runs: its own, or what PS_SELECTION_AUTO resolves to
 * (STRATIFIED for PRESCORE with the KMEANS score and its global keys, at
 * most PS_STRATA_MAX_CLUSTERS clusters; TOP otherwise). */
ps_selection ps_desc_selection(const ps_attention_desc *d);

/* A key cache and its scoring plans keep top-scored keys: the automatic
 * selection and sketch become top-m and none there (explicit weighted
 * selections stay, to be refused). */
static inline void ps_desc_auto_selection_top(ps_attention_desc *d)
{
    if (d->selection == PS_SELECTION_AUTO)
        d->selection = PS_SELECTION_TOP;
    if (d->sketch_queries == PS_SKETCH_AUTO)
        d->sketch_queries = 0;
}

/* 1 when no element is Inf or NaN (desc.check_finite on the host). */
int ps_all_finite(const float *x, size_t n);
/* The reference's check of its outputs (desc.check_finite), the twin of
 * ps_finite_check_outputs: PS_ERR_NON_FINITE when o holds Inf or NaN or lse
 * (NULL: skipped) NaN or +Inf, else PS_OK. */
ps_status ps_outputs_finite(const ps_attention_desc *d, const float *o, const float *lse);

/* Element counts of the tensors a descriptor describes. */
size_t ps_desc_q_elems(const ps_attention_desc *d);
size_t ps_desc_k_elems(const ps_attention_desc *d);
size_t ps_desc_v_elems(const ps_attention_desc *d);
size_t ps_desc_o_elems(const ps_attention_desc *d);
size_t ps_desc_lse_elems(const ps_attention_desc *d);

#endif
