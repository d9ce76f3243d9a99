/* The key cache (ps_kv_cache, docs/API.md "Decode") inside the library: a
 * plan handle whose plan->kv holds the cached rows, the kept set and the
 * statistics of the last full scoring. lib/kv_cache.c owns the object and
 * the public calls, lib/kv_index.c keeps the kept set, lib/decode.c runs
 * the split-K decode. */
#ifndef PRESCORE_KV_CACHE_H
#define PRESCORE_KV_CACHE_H

#include "internal.h"

#include "core/kv_params.h"

struct ps_kv_state {
    ps_kv_params p;
    ps_attention_desc user; /* as the caller passed it (budget or keep_ratio) */
    size_t length;          /* keys cached per KV head */
    size_t kept;            /* kept keys per KV head (the same on every head) */
    size_t n_scored;        /* length at the last full scoring; 0: none */
    size_t rescores;
    size_t clusters;        /* k-means clusters of the statistics held */
    int have_stats;         /* a full scoring has run since creation or reset */
    int f16;                /* cached K and V are fp16 */
    cl_mem k, v;            /* [rows][capacity][d | d_v] */
    cl_mem kept_k, kept_v;  /* [rows][kept_rows][d | d_v]: the kept keys' rows */
    cl_mem scores;          /* [rows][capacity] fp32 */
    cl_mem kept_pos, kept_key; /* [rows][kept_rows] uint: position, score order */
    cl_mem kept_count;      /* [rows] uint */
    cl_mem targets;         /* [capacity] uint: kv_admit's target per candidate */
    uint32_t *targets_host;
    cl_mem cent, cterm, minv; /* statistics (KMEANS, LEVERAGE) */
    cl_mem part_o, part_ml;   /* split-K partials */
    size_t kept_rows;       /* slots per KV head (at least 1) */
    size_t max_splits;      /* partials per query row the buffers hold */
    size_t max_rows;        /* query rows per KV head: group * max queries */
    cl_kernel copy_rows, score_rows, admit, fill, merge;
    /* decode_partial variants: [0] the shape's kernel (CPU shape: PS_CPU_QB
     * rows per work-item; GPU shape: row_block per work-group), [1..3] CPU
     * shape 1, 2 and 4 rows (NULL in the GPU shape) */
    cl_kernel partial[4];
    size_t partial_rows[4];
    size_t admit_group, partial_group;
};

/* Creates plan->kv for the caller's descriptor (plan->desc is its
 * resolution); called by ps_kv_cache_create through lib/plan.c. */
ps_status ps_kv_setup(ps_plan *plan, const ps_attention_desc *user);
/* Releases plan->kv; safe when setup failed half-way or never ran. */
void ps_kv_release(ps_plan *plan);

/* Dense views of the cache and of the kept copy (storage type of the cache). */
ps_tensor ps_kv_cache_tensor(const ps_kv_state *s, cl_mem mem, size_t dim);
ps_tensor ps_kv_kept_tensor(const ps_kv_state *s, cl_mem mem, size_t dim);

/* lib/kv_index.c: after rows [n0, n1) were written, brings the kept set to
 * length n1 (a full scoring when due, else scores and admissions). */
ps_status ps_kv_index_append(ps_plan *plan, size_t n0, size_t n1);
/* lib/kv_index.c: scores every cached key afresh and selects again. */
ps_status ps_kv_index_rescore(ps_plan *plan);

/* lib/decode.c: enqueues the decode of n_q queries (q, o: the call's views)
 * against the cache; exact: every key, else sinks + kept + window. */
ps_status ps_decode_enqueue(ps_plan *plan, const ps_tensor *q, size_t n_q, const ps_tensor *o,
                            cl_mem lse, int exact);
/* lib/decode.c: kernels and partial buffers of the decode, at creation. */
ps_status ps_decode_setup(ps_plan *plan);

#endif
