/* Key-cache parameters (decode, docs/API.md "Decode"), pure C: which keys a
 * cache of a given length attends and keeps, and when it scores afresh.
 * Shared by the device cache (lib/kv_cache.c) and its host twin
 * (lib/ref/kv_cache.c), so both make the same decisions.
 *
 * Per KV head of a cache of length n, with S = min(sink, n) and
 * w0 = max(S, n - window):
 *  - sinks  [0, S) and window [w0, n) are always attended;
 *  - eligible keys [S, w0) compete for the kept set by score;
 *  - the kept set holds at most target(n) of them: budget, or
 *    ceil(keep_ratio * n) (ps_keep_ratio_count), at most kept_capacity.
 * A key enters the competition when it leaves the window, at length
 * p + window + 1 for position p: it is admitted while the set is below
 * target(p + window + 1), else it replaces the weakest kept key if it ranks
 * above it (score order of ps_select_key_bits; a tie keeps the earlier key,
 * as the selection does). */
#ifndef PRESCORE_CORE_KV_PARAMS_H
#define PRESCORE_CORE_KV_PARAMS_H

#include "desc.h"

#include <stddef.h>

typedef struct ps_kv_params {
    size_t rows;          /* flat KV heads: batch * kv_heads */
    size_t capacity;      /* keys per KV head */
    size_t max_queries;   /* queries per decode call */
    size_t sink, window;
    size_t budget;        /* keys kept by score; 0: keep_ratio */
    float keep_ratio;     /* share of the length, when budget is 0 */
    double rescore_growth;
    size_t kept_capacity; /* slots of the kept set */
    int scored;           /* 1: PRESCORE (a kept set), 0: EXACT */
} ps_kv_params;

/* Keys a cache of length n attends outright and lets compete. */
typedef struct ps_kv_span {
    size_t sink_len;  /* [0, sink_len): sinks */
    size_t win_start; /* [win_start, n): the window; [sink_len, win_start): eligible */
} ps_kv_span;

static inline ps_kv_span ps_kv_span_at(const ps_kv_params *p, size_t n)
{
    ps_kv_span s;
    s.sink_len = p->sink < n ? p->sink : n;
    const size_t w = p->window < n ? n - p->window : 0;
    s.win_start = w > s.sink_len ? w : s.sink_len;
    return s;
}

/* Most keys the kept set may hold at length n. */
static inline size_t ps_kv_target(const ps_kv_params *p, size_t n)
{
    size_t t = p->budget ? p->budget : ps_keep_ratio_count(p->keep_ratio, n);
    return t < p->kept_capacity ? t : p->kept_capacity;
}

/* Length at which position p leaves the window (and its target applies). */
static inline size_t ps_kv_leave_length(const ps_kv_params *p, size_t pos)
{
    return pos + p->window + 1;
}

/* Whether an append that brings the length to n (the last full scoring at
 * n_scored, 0 for none) scores every key afresh: the first time the eligible
 * keys exceed the target, and once the cache has grown by rescore_growth of
 * its length at the last scoring. */
static inline int ps_kv_rescore_due(const ps_kv_params *p, size_t n, size_t n_scored)
{
    if (!p->scored)
        return 0;
    if (n_scored == 0) {
        const ps_kv_span s = ps_kv_span_at(p, n);
        return s.win_start - s.sink_len > ps_kv_target(p, n);
    }
    return (double)n >= (1.0 + p->rescore_growth) * (double)n_scored;
}

/* Derives the parameters from a validated descriptor (its budget and
 * keep_ratio as the caller set them, before resolution); PS_ERR_UNSUPPORTED
 * for HYPER, with a message. */
ps_status ps_kv_params_from_desc(const ps_attention_desc *desc, ps_kv_params *p,
                                 char *message, size_t message_size);

#endif
