/* libprescore-cl public API: long-context attention on any OpenCL 1.2+ device.
 *
 * Objects: a ps_context (device, queue, compiled kernels) and a ps_plan (shapes,
 * parameters, pre-allocated workspace). Every call returns a ps_status; the
 * context keeps a detailed message of the last failure (with the OpenCL build
 * log when a build failed). Tensors are [batch, head, token, dim], dense fp32
 * unless the descriptor's layouts say otherwise (fp16, offsets, strides;
 * docs/API.md "Tensors"). */
#ifndef PRESCORE_PRESCORE_H
#define PRESCORE_PRESCORE_H

#include <stddef.h>
#include <stdint.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/cl.h>
#else
#include <CL/cl.h>
#endif

#include "prescore/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ devices */

typedef enum ps_device_type {
    PS_DEVICE_OTHER = 0,
    PS_DEVICE_CPU = 1,
    PS_DEVICE_GPU = 2,
    PS_DEVICE_ACCELERATOR = 3
} ps_device_type;

/** @return "cpu", "gpu", "accelerator" or "other". */
PS_API const char *ps_device_type_string(ps_device_type type);

/** Kernel shapes (docs/ARCHITECTURE.md, "The context"). AUTO picks from the device. */
typedef enum ps_kernel_shape {
    PS_SHAPE_AUTO = 0,
    PS_SHAPE_CPU = 1, /* few work-items, register blocks of queries, vector types */
    PS_SHAPE_GPU = 2  /* one work-item per query, local-memory tiles, barriers */
} ps_kernel_shape;

#define PS_INFO_STRING_MAX 256

typedef struct ps_device_info {
    unsigned platform_index; /* position in clGetPlatformIDs */
    unsigned device_index;   /* position within that platform */
    ps_device_type type;
    char name[PS_INFO_STRING_MAX];
    char vendor[PS_INFO_STRING_MAX];
    char platform_name[PS_INFO_STRING_MAX];
    char driver_version[PS_INFO_STRING_MAX];
    char device_version[PS_INFO_STRING_MAX]; /* "OpenCL 3.0 ..." */
    char opencl_c_version[PS_INFO_STRING_MAX];
    unsigned compute_units;
    size_t max_work_group_size;
    uint64_t local_mem_size;
    int local_mem_is_global; /* CL_GLOBAL local memory: __local tiles buy nothing */
    uint64_t global_mem_size;
    uint64_t max_mem_alloc_size;
    unsigned preferred_vector_width_float;
    int has_fp64;
    int has_fp16;
} ps_device_info;

/** Lists every OpenCL device on every platform.
 * @param infos   array of @p capacity entries, may be NULL when capacity is 0
 * @param count   receives the number of devices present (may exceed capacity)
 * @return PS_OK (also with zero devices), PS_ERR_INVALID_ARGUMENT, PS_ERR_OPENCL */
PS_API ps_status ps_device_list(ps_device_info *infos, size_t capacity, size_t *count);

/* ------------------------------------------------------------------ context */

typedef struct ps_context ps_context;

typedef struct ps_context_options {
    /** Device selector: "gpu", "cpu", "P:D" (platform:device indices) or a
     * case-insensitive substring of the device name. NULL: the environment
     * variable PRESCORE_DEVICE, else the first GPU, else the first device. */
    const char *device;
    ps_kernel_shape shape; /* PS_SHAPE_AUTO: CPU shape on CPU devices, GPU shape elsewhere */
    int disable_cache;     /* 1: never read or write the program-binary cache */
    const char *cache_dir; /* NULL: PRESCORE_CACHE_DIR, else XDG cache dir */
    const char *build_options; /* appended to the derived options (after PRESCORE_BUILD_OPTIONS) */
    int verbose;               /* 1: report cache and build decisions on stderr */
    int profiling;             /* 1: create the queue with profiling (needed for stage times) */
    uint32_t reserved[8];      /* zero: room for later fields */
} ps_context_options;

/** Fills @p options with defaults (everything automatic). */
PS_API void ps_context_options_default(ps_context_options *options);

/** Creates a context on the selected device, with its own cl_context and queue,
 * and compiles every kernel for that device (using the binary cache).
 * @param options NULL for defaults
 * @return PS_OK, PS_ERR_NO_DEVICE, PS_ERR_DEVICE_NOT_FOUND, PS_ERR_BUILD, ... */
PS_API ps_status ps_context_create(ps_context **out, const ps_context_options *options);

/** Creates a context around an application's own OpenCL objects (retained, not
 * owned). The queue must belong to @p cl_ctx and @p device. */
PS_API ps_status ps_context_create_from_cl(ps_context **out, cl_context cl_ctx,
                                           cl_device_id device, cl_command_queue queue,
                                           const ps_context_options *options);

/** Releases everything the context holds. Accepts NULL (PS_OK).
 * @return PS_OK; PS_ERR_INVALID_ARGUMENT when plans of it are still live
 *         (the context is kept, the message says how many) or when @p ctx is
 *         not a live context (destroyed twice, or never created: message in
 *         ps_context_last_error(NULL)) */
PS_API ps_status ps_context_destroy(ps_context *ctx);

/** @return the detailed message of the calling thread's last failed
 * context-level call on @p ctx (ps_plan_create, context queries, ...; "" if
 * none, if a later such call succeeded, or if the thread's last failure was
 * on another context). A call on a plan (ps_attention, prepared keys,
 * score/select, diagnostics) never writes or clears it: its message is the
 * plan's, ps_plan_last_error. Messages are per thread, like errno: threads
 * sharing a context never see each other's. Valid until this thread's next
 * call into the library. With NULL: the message of this thread's last failed
 * ps_context_create / ps_context_create_from_cl, or of its last call refused
 * for a handle that is not live. Never dereferences @p ctx. */
PS_API const char *ps_context_last_error(const ps_context *ctx);

/** Copies the context's device description into @p info. */
PS_API ps_status ps_context_device_info(const ps_context *ctx, ps_device_info *info);

/** The kernel shape the context compiled for (never PS_SHAPE_AUTO). */
PS_API ps_kernel_shape ps_context_kernel_shape(const ps_context *ctx);

/** The OpenCL objects under the context (not retained for the caller), for interop. */
PS_API ps_status ps_context_cl_handles(const ps_context *ctx, cl_context *cl_ctx,
                                       cl_device_id *device, cl_command_queue *queue);

/** Whether the last program build of this context came from the binary cache:
 * 1 all programs loaded from cache, 0 otherwise. For tests and diagnostics. */
PS_API int ps_context_programs_from_cache(const ps_context *ctx);

/** What the program-binary cache did while the context was created. Entries
 * are authenticated with this user's secret; anything refused is rebuilt
 * (docs/RELIABILITY.md). */
typedef struct ps_cache_stats {
    unsigned loaded;           /* entries used: programs and the kernel-shape record */
    unsigned stored;           /* entries written */
    unsigned refused_unsafe;   /* a directory, the secret key or an entry with the wrong
                                  owner, permissions or file type (FIFO, link, ...) */
    unsigned refused_foreign;  /* entries failing authentication: not written by this
                                  user's library with its secret */
    unsigned refused_damaged;  /* entries with a wrong magic, version, key or length */
    unsigned refused_unusable; /* authentic entries the driver rejected or that lacked a
                                  kernel: deleted and rebuilt */
    unsigned reserved[6];
} ps_cache_stats;

/** Copies the cache statistics of the context's creation into @p stats. */
PS_API ps_status ps_context_cache_stats(const ps_context *ctx, ps_cache_stats *stats);

/* ---------------------------------------------------------------- attention */
/* The descriptor (ps_attention_desc) and its validation: prescore/types.h. */

typedef struct ps_plan ps_plan;

/** Creates a plan: validates @p desc, and allocates all device workspace, so
 * that ps_attention neither allocates nor builds. */
PS_API ps_status ps_plan_create(ps_context *ctx, const ps_attention_desc *desc,
                                ps_plan **out);

/** Releases the plan. Accepts NULL (PS_OK).
 * @return PS_OK, or PS_ERR_INVALID_ARGUMENT when @p plan is not a live plan
 *         (destroyed twice, or never created: message in
 *         ps_context_last_error(NULL)) */
PS_API ps_status ps_plan_destroy(ps_plan *plan);

/** Bytes of device memory the plan's workspace holds (every buffer it
 * created, its causal recursion's nodes included; not the caller's tensors).
 * 0 for a handle that is not a live plan. */
PS_API size_t ps_plan_device_bytes(const ps_plan *plan);

/** The descriptor the plan runs, with every automatic field resolved. */
PS_API ps_status ps_plan_desc(const ps_plan *plan, ps_attention_desc *desc);

/** Attention on device buffers of the plan's context. Enqueues the work on the
 * context's queue and waits for it.
 * @param q   [batch, heads, n_q, d]      @param k [batch, kv_heads, n_k, d]
 * @param v   [batch, kv_heads, n_k, d_v] @param o [batch, heads, n_q, d_v]
 *            each as the descriptor's layout says (dtype, offset, strides),
 *            in a buffer holding the layout's extent
 * @param lse [batch, heads, n_q] or NULL; required when the plan wants LSE.
 * Rows with no visible key (causal, n_q > n_k) get O = 0 and LSE = -inf. */
PS_API ps_status ps_attention(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                              cl_mem lse);

/** The same on host arrays: copies in, runs, copies out. Allocates transfer
 * buffers per call; for repeated calls use ps_attention with device buffers.
 * The arrays are laid out as the plan's tensor layouts say (float or fp16
 * bits as uint16_t) and hold each layout's extent; elements of o's array that
 * the layout does not address are left as they were. */
PS_API ps_status ps_attention_host(ps_plan *plan, const void *q, const void *k,
                                   const void *v, void *o, float *lse);

#define PS_MAX_STAGES 12

/** Device milliseconds per stage of the last ps_attention call, in order
 * (e.g. "score", "select", "lsh_keys", "lsh_queries", "hyper"; "exact" on the exact
 * path; "causal" for the recursion as a whole). Needs a profiling context
 * (ps_context_options.profiling or PRESCORE_PROFILE=1); count 0 otherwise. */
typedef struct ps_stage_times {
    size_t count;
    const char *names[PS_MAX_STAGES]; /* static strings */
    double ms[PS_MAX_STAGES];
} ps_stage_times;

PS_API ps_status ps_plan_stage_times(const ps_plan *plan, ps_stage_times *times);

/** The method a ps_attention call on this plan runs: the plan's method, or
 * PS_METHOD_EXACT when n_k < min_seq_len (exact is faster there) or the
 * method is EXACT. PS_METHOD_EXACT for NULL. */
PS_API ps_method ps_plan_path(const ps_plan *plan);

/** Key reuse (decode, or many query batches against one context): computes
 * the query-independent half for k and v once (scores, selection, global
 * keys, LSH of the keys) and keeps it in the plan; ps_attention_prepared then
 * runs only the query half. k and v are retained and must not change while
 * they are in use. ps_attention (which recomputes everything) and the next
 * prepare replace the prepared keys. Causal plans on the approximate path
 * run the key half of every recursion node (its own scores, selection,
 * global keys and LSH) and keep k, v for the exact leaves; on the exact path
 * the keys are simply kept. */
PS_API ps_status ps_attention_prepare_keys(ps_plan *plan, cl_mem k, cl_mem v);

/** Attention of q against the keys of the last ps_attention_prepare_keys;
 * same outputs as ps_attention(plan, q, k, v, o, lse) would give. */
PS_API ps_status ps_attention_prepared(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse);

/** The enqueue forms of ps_attention, ps_attention_prepare_keys and
 * ps_attention_prepared (CLBlast's convention): after the same checks they
 * enqueue the computation on the context's queue behind the @p num_wait
 * events of @p wait_list (NULL when 0) and return without waiting. @p done
 * (may be NULL) receives an event, to be released by the caller, that
 * completes when the outputs are written. Until then the buffers must stay
 * alive and unchanged, and the plan must not run another call whose outputs
 * the caller still needs (calls on one plan run in queue order). Stage times
 * and ps_plan_last_time_ms are collected when asked for (that waits for the
 * call). A failure returns a status with nothing of the call left running.
 * @return as the waiting forms; PS_ERR_UNSUPPORTED for plans with
 *         desc.check_finite (the check reads data back, so it waits) */
PS_API ps_status ps_attention_enqueue(ps_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                      cl_mem lse, cl_uint num_wait, const cl_event *wait_list,
                                      cl_event *done);
PS_API ps_status ps_attention_prepare_keys_enqueue(ps_plan *plan, cl_mem k, cl_mem v,
                                                   cl_uint num_wait,
                                                   const cl_event *wait_list, cl_event *done);
PS_API ps_status ps_attention_prepared_enqueue(ps_plan *plan, cl_mem q, cl_mem o, cl_mem lse,
                                               cl_uint num_wait, const cl_event *wait_list,
                                               cl_event *done);

/** Milliseconds of device time of the last ps_attention call, from event
 * profiling (context created with profiling = 1); -1 when not measured. */
PS_API double ps_plan_last_time_ms(const ps_plan *plan);

/** @return the message of the plan's last call (attention, prepared keys,
 * score/select, diagnostics): "" after a success, else what failed, naming
 * the argument or the OpenCL call. The only place a plan call's message is
 * kept: another thread's or another plan's calls never replace it; "" for a
 * handle that is not a live plan (whose refusal is in
 * ps_context_last_error(NULL)). */
PS_API const char *ps_plan_last_error(const ps_plan *plan);

/* ------------------------------------------------------------------- stages
 * The query-independent half of the pipeline, callable on its own so that a
 * key index computed once (e.g. at prefill) serves many later query batches.
 * The plan must have method PS_METHOD_PRESCORE. Calls wait for completion. */

/** Scores every key of every KV head with the plan's score method.
 * @param k      [batch, kv_heads, n_k, d] as desc.k_layout says
 * @param scores [batch, kv_heads, n_k] floats (higher = more informative) */
PS_API ps_status ps_score_keys(ps_plan *plan, cl_mem k, cl_mem scores);

/** Number of key slots per KV head that ps_select_keys writes:
 * min(n_k, max(budget, sink + window)); 0 for a NULL plan. */
PS_API size_t ps_plan_selected_capacity(const ps_plan *plan);

/** Keeps the top-`budget` keys per KV head by score (ties: lower position),
 * always including the first `sink` and last `window` positions (they count
 * toward the capacity). +0.0 and -0.0 tie; NaN ranks below -inf (docs/SELECT.md).
 * A plan with selection PS_SELECTION_WEIGHTED keeps its weighted selection's
 * keys instead (ps_select_keys_weighted also returns their weights).
 * @param indices [batch, kv_heads, capacity] uint32, ascending positions;
 *                slots past the head's count hold n_k
 * @param counts  [batch, kv_heads] uint32, keys kept per head */
PS_API ps_status ps_select_keys(ps_plan *plan, cl_mem scores, cl_mem indices, cl_mem counts);

/** ps_select_keys with the kept keys' log-weights: for a plan with selection
 * PS_SELECTION_WEIGHTED the keys it keeps (docs/SELECT.md), each drawn key
 * carrying ln(keys it stands for), forced and heavy keys 0; for a top-m plan
 * the same keys as ps_select_keys, every weight 0.
 * @param log_weights [batch, kv_heads, capacity] float, natural log; 0 past
 *                    a head's count */
PS_API ps_status ps_select_keys_weighted(ps_plan *plan, cl_mem scores, cl_mem indices,
                                         cl_mem counts, cl_mem log_weights);

/** ps_score_keys on host arrays: @p k as desc.k_layout says (fp32, or fp16
 * bits), @p scores [batch, kv_heads, n_k] floats. Copies through temporary
 * device buffers; waits for completion. */
PS_API ps_status ps_score_keys_host(ps_plan *plan, const void *k, float *scores);

/** ps_select_keys on host arrays (@p log_weights NULL), or
 * ps_select_keys_weighted (@p log_weights [batch, kv_heads, capacity]).
 * @p scores [batch, kv_heads, n_k], @p indices [batch, kv_heads, capacity],
 * @p counts [batch, kv_heads]; capacity = ps_plan_selected_capacity. */
PS_API ps_status ps_select_keys_host(ps_plan *plan, const float *scores, uint32_t *indices,
                                     uint32_t *counts, float *log_weights);

/** The error estimate of the plan's last attention call (desc.error_probes
 * > 0; docs/API.md "Error estimate"), per query head (flat batch * heads
 * index): @p rel_error the relative output error ||O - O_exact|| / ||O_exact||
 * and @p lse_error the mean |LSE - LSE_exact| over the head's probe rows,
 * measured against exact attention of those rows (0 on the exact path);
 * @p recomputed 1 for a head that error_tolerance made the call recompute
 * exactly (its estimate is the approximation's, before that). Any pointer
 * may be NULL; each holds @p count >= batch * heads values. Blocks until the
 * call's commands finished. */
PS_API ps_status ps_plan_error_estimate(ps_plan *plan, float *rel_error, float *lse_error,
                                        int *recomputed, size_t count);

/** The query sketch of a plan with sketch_queries > 0 (docs/SELECT.md "Query
 * sketch"): per key, the attention mass min(sketch_queries, n_q) Philox-
 * sampled query rows of each query head of the KV head put on it (the sum of
 * their softmax probabilities). ps_attention ranks the heavy and global keys
 * of its weighted selection by it; a caller composing the stages passes it
 * to ps_select_keys_weighted in place of the scores.
 * @param q    the plan's Q layout
 * @param k    the plan's K layout
 * @param mass [batch, kv_heads, n_k] float */
PS_API ps_status ps_sketch_keys(ps_plan *plan, cl_mem q, cl_mem k, cl_mem mass);

/* ------------------------------------------------------------------ decode
 * A key/value cache that grows token by token (generation): prefill appends
 * many rows, each decode step appends one and attends a few queries to
 * everything so far. With PS_METHOD_PRESCORE the cache keeps, per KV head,
 * the first `sink` keys, the last `window` keys and `m` keys chosen by score
 * among the others (budget, or keep_ratio of the current length); a decode
 * step attends those exactly. docs/API.md "Decode". */

typedef struct ps_kv_cache ps_kv_cache;

/* ps_decode_mode: prescore/types.h (the reference twin uses it too). */

/** A cache's state (ps_kv_cache_get_info). */
typedef struct ps_kv_cache_info {
    size_t length;        /* keys per KV head now cached */
    size_t capacity;      /* most keys per KV head (desc.n_k at creation) */
    size_t kept;          /* keys kept by score per KV head (PRESCORE; 0 for EXACT) */
    size_t kept_capacity; /* slots for them */
    size_t scored_length; /* length at the last full scoring; 0: none yet */
    size_t rescores;      /* full scorings so far */
    size_t device_bytes;  /* device memory the cache holds */
    size_t reserved[4];
} ps_kv_cache_info;

/** Creates an empty cache. From @p desc: batch, heads, kv_heads, d, d_v,
 * scale; n_k is the capacity (keys per KV head), n_q the most queries per
 * decode call; k_layout / v_layout: the storage type of the cache (and of
 * appended rows) and the strides of appended rows (0: dense [batch,
 * kv_heads, rows, dim]); q_layout / o_layout: the decode queries and
 * outputs (0: dense for the call's query count). method EXACT or PRESCORE
 * (HYPER: PS_ERR_UNSUPPORTED); PRESCORE reads score, budget or keep_ratio,
 * clusters, kmeans_iters, leverage_lambda, sink, window, seed and
 * rescore_growth. causal, block, samples, lsh_bits, global_keys,
 * min_seq_len and cu_seqlens do not apply (decode is causal by
 * construction and attends its keys exactly). */
PS_API ps_status ps_kv_cache_create(ps_context *ctx, const ps_attention_desc *desc,
                                    ps_kv_cache **out);
/** Releases the cache. Accepts NULL (PS_OK). */
PS_API ps_status ps_kv_cache_destroy(ps_kv_cache *cache);

/** Appends @p n_new key and value rows to every KV head: k [batch, kv_heads,
 * n_new, d], v [batch, kv_heads, n_new, d_v] as the cache's k_layout and
 * v_layout say. PRESCORE: new rows are scored against the statistics of the
 * last full scoring; a row leaving the window joins the kept set if it
 * ranks above the weakest kept key (or while the set is below its budget);
 * a full scoring runs first when none has run and the eligible keys exceed
 * the budget, and whenever the drift criterion (desc.rescore_growth) says.
 * Waits for completion.
 * @return PS_OK; PS_ERR_INVALID_ARGUMENT past the capacity (the cache is
 *         left as it was) */
PS_API ps_status ps_kv_cache_append(ps_kv_cache *cache, cl_mem k, cl_mem v, size_t n_new);
/** The same from host arrays (float, or fp16 bits as uint16_t). */
PS_API ps_status ps_kv_cache_append_host(ps_kv_cache *cache, const void *k, const void *v,
                                         size_t n_new);

/** Scores every cached key afresh and selects the kept set again (PRESCORE;
 * PS_OK and nothing to do for EXACT or an empty cache). */
PS_API ps_status ps_kv_cache_rescore(ps_kv_cache *cache);

/** Empties the cache (length 0, no scoring) without releasing memory. */
PS_API ps_status ps_kv_cache_reset(ps_kv_cache *cache);

/** Attention of @p n_q queries (1 <= n_q <= desc.n_q), the last n_q
 * positions of the sequence, against the cache: query i sees keys up to
 * position length - n_q + i. q [batch, heads, n_q, d], o [batch, heads,
 * n_q, d_v] as the cache's q_layout and o_layout say; lse [batch, heads,
 * n_q] fp32 or NULL. Split-K: each query's keys are spread over many
 * work-groups and the partial results merged in log-sum-exp space. Waits
 * for completion. */
PS_API ps_status ps_kv_cache_decode(ps_kv_cache *cache, cl_mem q, size_t n_q, cl_mem o,
                                    cl_mem lse, ps_decode_mode mode);
/** The same on host arrays. */
PS_API ps_status ps_kv_cache_decode_host(ps_kv_cache *cache, const void *q, size_t n_q,
                                         void *o, float *lse, ps_decode_mode mode);

/** Fills @p info. */
PS_API ps_status ps_kv_cache_get_info(const ps_kv_cache *cache, ps_kv_cache_info *info);

/** The kept positions of every KV head, ascending: @p positions holds
 * [batch * kv_heads][kept_capacity] uint32 (slots past the head's count:
 * UINT32_MAX), @p counts [batch * kv_heads] (may be NULL). Sinks and the
 * window are not listed. */
PS_API ps_status ps_kv_cache_kept(ps_kv_cache *cache, uint32_t *positions, uint32_t *counts);

/** The message of the cache's last failed call ("" after a success). */
PS_API const char *ps_kv_cache_last_error(const ps_kv_cache *cache);

/* -------------------------------------------------------------- diagnostics
 * Switches for measurement (prescore-bench --check), not for production:
 * they change what ps_attention computes. Off (0) by default. */

typedef enum ps_diagnostic {
    /** 1: the residual samples enter with weight 1 instead of n_sel / s, so
     * the LSE of a call is log sum_{j reached} exp(s_qj) over the keys the
     * method reached (global keys, diagonal LSH block, residual samples; a key
     * sampled twice counts twice). exp(LSE - LSE_exact) is then the share of
     * the exact attention mass the method reached (heavy_recall). */
    PS_DIAG_UNIT_RESIDUAL_WEIGHT = 1
} ps_diagnostic;

/** Sets diagnostic @p what of @p plan to @p value (0 or 1); applies to the
 * following ps_attention calls.
 * @return PS_OK, or PS_ERR_INVALID_ARGUMENT for a NULL plan, an unknown
 * @p what or a value other than 0 and 1 */
PS_API ps_status ps_plan_set_diagnostic(ps_plan *plan, ps_diagnostic what, int value);

#ifdef __cplusplus
}
#endif

#endif
