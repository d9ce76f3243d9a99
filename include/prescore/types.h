/* libprescore-cl public types that need no OpenCL: statuses, the attention
 * descriptor and its validation. prescore.h (the device API) and
 * prescore_ref.h (the plain-C reference) both build on it, so the reference
 * can be used, and the library's pure-C core compiled, without OpenCL
 * headers. */
#ifndef PRESCORE_TYPES_H
#define PRESCORE_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "prescore/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(PS_BUILDING_SHARED)
#define PS_API __declspec(dllexport)
#elif defined(__GNUC__)
#define PS_API __attribute__((visibility("default")))
#else
#define PS_API
#endif

/* One list yields the enum and its strings (see ps_status_string). */
#define PS_STATUS_LIST(X)                                                      \
    X(PS_OK, 0, "success")                                                     \
    X(PS_ERR_INVALID_ARGUMENT, -1, "invalid argument")                         \
    X(PS_ERR_UNSUPPORTED, -2, "unsupported configuration")                     \
    X(PS_ERR_NO_DEVICE, -3, "no OpenCL device available")                      \
    X(PS_ERR_DEVICE_NOT_FOUND, -4, "no OpenCL device matches the selector")    \
    X(PS_ERR_OPENCL, -5, "an OpenCL call failed")                              \
    X(PS_ERR_BUILD, -6, "kernel build failed")                                 \
    X(PS_ERR_OUT_OF_HOST_MEMORY, -7, "out of host memory")                     \
    X(PS_ERR_OUT_OF_DEVICE_MEMORY, -8, "out of device memory")                 \
    X(PS_ERR_BUFFER_TOO_SMALL, -9, "buffer smaller than the shape needs")      \
    X(PS_ERR_CONTEXT_MISMATCH, -10, "object belongs to another context")       \
    X(PS_ERR_NON_FINITE, -11, "input holds NaN or Inf")                        \
    X(PS_ERR_NOT_IMPLEMENTED, -12, "not implemented yet")                      \
    X(PS_ERR_IO, -13, "file input/output failed")                              \
    X(PS_ERR_INTERNAL, -14, "internal error")

typedef enum ps_status {
#define PS_STATUS_ENUM_(name, code, text) name = code,
    PS_STATUS_LIST(PS_STATUS_ENUM_)
#undef PS_STATUS_ENUM_
} ps_status;

/** @return a short static description of @p status ("unknown status" if none). */
PS_API const char *ps_status_string(ps_status status);

/** @return the library version string, e.g. "0.1.0". */
PS_API const char *ps_version_string(void);

/** @return the SHA-256 (64 hex digits) of the kernel sources embedded at build
 * time, to trace a result to its kernels; PRESCORE_KERNEL_DIR, which replaces
 * them at run time, is not reflected. */
PS_API const char *ps_kernel_source_hash(void);

/* ---------------------------------------------------------------- attention */

typedef enum ps_method {
    PS_METHOD_EXACT = 0,   /* flash-style exact attention */
    PS_METHOD_HYPER = 1,   /* HyperAttention over all keys */
    PS_METHOD_PRESCORE = 2 /* score, select m keys, HyperAttention over them */
} ps_method;

typedef enum ps_score {
    PS_SCORE_AUTO = -1,    /* global_score only: the plan's score (NORM for HYPER) */
    PS_SCORE_KMEANS = 0,   /* clustering (default): ||c(i) - mean||^2 + ||k - c(i)||^2 */
    PS_SCORE_LEVERAGE = 1, /* ridge leverage k^T (K^T K + lambda I)^-1 k */
    PS_SCORE_NORM = 2,     /* squared key norm */
    PS_SCORE_NONE = 3      /* every key */
} ps_score;

/** How PRESCORE keeps its budget of keys (docs/SELECT.md). */
typedef enum ps_selection {
    PS_SELECTION_AUTO = -1,   /* set by ps_attention_desc_default: STRATIFIED where the
                                 plan can take it (PRESCORE, score KMEANS, global_score
                                 AUTO or KMEANS, at most PS_STRATA_MAX_CLUSTERS
                                 clusters, not a key cache), else TOP */
    PS_SELECTION_TOP = 0,     /* the m top-scored keys, each standing for itself */
    PS_SELECTION_WEIGHTED = 1, /* the global_keys top-scored keys, plus the rest of
                                  the budget drawn uniformly from the other keys,
                                  each drawn key carrying the log-weight of the
                                  keys it stands for */
    PS_SELECTION_STRATIFIED = 2 /* WEIGHTED with the draw shared out over the k-means
                                   clusters in proportion to their sizes, a
                                   systematic sample in each (score KMEANS) */
} ps_selection;

/** Most k-means clusters a stratified selection shares its draw over. */
#define PS_STRATA_MAX_CLUSTERS 256

/** Element type of a tensor in its buffer. Storage only: the kernels load
 * fp16 with vload_half (core OpenCL 1.2, no cl_khr_fp16 needed), compute in
 * fp32 and store O rounded to nearest even; LSE is always fp32. */
typedef enum ps_dtype {
    PS_DTYPE_F32 = 0, /* IEEE binary32 */
    PS_DTYPE_F16 = 1  /* IEEE binary16 */
} ps_dtype;

/** Where one tensor's elements lie in its buffer, in elements of its dtype:
 * element [b][h][t][c] is at offset + b*stride[0] + h*stride[1] + t*stride[2]
 * + c*stride[3]. All strides 0: dense row-major [batch, head, token, dim]
 * (the default). Otherwise stride[3] must be 1 (rows are contiguous) and
 * stride 0 is allowed only for a dimension of size 1. The highest element
 * addressed must lie below 2^32 elements. An output must not address one
 * element twice. docs/API.md "Tensors". */
typedef struct ps_tensor_layout {
    ps_dtype dtype;
    size_t offset;
    size_t stride[4]; /* batch, head, token, dim */
} ps_tensor_layout;

/** Standard layouts for ps_attention_desc_set_layout. */
typedef enum ps_layout {
    PS_LAYOUT_BHTD = 0, /* [batch, head, token, dim] (dense default) */
    PS_LAYOUT_BTHD = 1  /* [batch, token, head, dim] (PyTorch/transformers' q.view) */
} ps_layout;

/** Shapes and parameters of one attention computation. Sizes are size_t;
 * zero in an "auto" field picks the documented default. */
typedef struct ps_attention_desc {
    size_t batch;
    size_t heads;    /* query heads */
    size_t kv_heads; /* key/value heads; heads % kv_heads == 0 (GQA) */
    size_t n_q, n_k; /* query and key tokens */
    size_t d, d_v;   /* head dims of Q/K and of V/O */
    int causal;      /* query i sees key j iff j <= i + (n_k - n_q) (bottom-right);
                        HYPER/PRESCORE: HyperAttention's recursion, every
                        non-causal part scoring, selecting and hashing only
                        earlier keys (docs/HYPER.md "Causal") */
    float scale;     /* 0: 1/sqrt(d) */
    int want_lse;    /* 1: also write the natural-log log-sum-exp per query row */

    ps_method method;
    ps_score score;
    size_t budget;       /* m: keys kept by pre-scoring (> n_k: all); 0: keep_ratio */
    size_t clusters;     /* k-means clusters (0: min(16, m/4), docs/QUALITY.md) */
    size_t kmeans_iters; /* Lloyd iterations (0: 10) */
    size_t sink;         /* always keep the first `sink` keys */
    size_t window;       /* always keep the last `window` keys */
    size_t global_keys;  /* g top-scored keys attended exactly by every query and left
                            out of blocks and sampling (docs/GLOBAL.md); 0: none;
                            PS_GLOBAL_KEYS_AUTO (set by ps_attention_desc_default):
                            min(64, candidates / 8), docs/QUALITY.md; causal:
                            min(g, candidates - 1) per recursion node, among
                            the node's own earlier keys */
    size_t block;        /* b: LSH block size (0: 256) */
    size_t samples;      /* s: residual samples (0: 256); a PRESCORE plan whose kept keys
                            (less g) fit in one block draws them from the keys its
                            selection dropped (docs/HYPER.md) */
    unsigned lsh_bits;   /* r: LSH hyperplanes (0: 7) */
    size_t min_seq_len;  /* below this, exact attention (0: 4096) */
    uint64_t seed;
    float leverage_lambda; /* relative ridge: lambda = this * trace(K^T K) / d; 0: 1e-3 */
    ps_score global_score; /* score that picks the global keys (PS_SCORE_AUTO, the
                              default: the plan's score; NORM for HYPER) */
    int check_finite; /* 1: ps_attention scans Q, K, V on the device first and refuses
                       * Inf/NaN with PS_ERR_NON_FINITE, and after the run scans O
                       * (Inf/NaN) and LSE (NaN/+Inf; -Inf is a row with no key):
                       * finite inputs beyond the fp32 range of the method also
                       * give PS_ERR_NON_FINITE, naming the output (O and LSE then
                       * hold what the run wrote); 0: such inputs give unspecified
                       * outputs (the kernels assume finite math) */
    /* Element type, offset and strides of each tensor (zeroed by
     * ps_attention_desc_default: dense fp32 [batch, head, token, dim]). */
    ps_tensor_layout q_layout, k_layout, v_layout, o_layout;
    /* Variable-length batch (FlashAttention's cu_seqlens): NULL for both, or
     * `batch + 1` ascending offsets each, from 0 to n_q and to n_k. The
     * `batch` sequences are packed along the token dimension of tensors of
     * batch 1: sequence b has query rows [cu_seqlens_q[b], cu_seqlens_q[b+1])
     * and key rows [cu_seqlens_k[b], cu_seqlens_k[b+1]) of every head (the
     * layouts describe [1, heads, n_q | n_k, dim]; LSE is [heads, n_q]).
     * Each sequence runs on its own: exact below min_seq_len keys, causal
     * within itself. A sequence with queries must have keys. The plan keeps
     * its own copy of the arrays. docs/API.md "Variable-length batches". */
    const uint32_t *cu_seqlens_q, *cu_seqlens_k;
    /* PRESCORE's budget as a share of the keys: with budget 0, m =
     * ceil(keep_ratio * n_k) (for a key cache, of its current length); 0
     * with budget 0: PS_KEEP_RATIO_DEFAULT. In [0, 1]; budget and keep_ratio
     * are not both set. */
    float keep_ratio;
    /* Key cache (ps_kv_cache) only: the drift criterion. The keys are scored
     * afresh (clusters, leverage statistics) once the cache has grown by this
     * share of its length at the last full scoring (0: 1.0, i.e. when it has
     * doubled); between full scorings new keys are scored against the
     * statistics of the last one. Finite and >= 0. */
    float rescore_growth;
    /* PRESCORE: PS_SELECTION_AUTO (the default), top-m or a weighted
     * selection (docs/SELECT.md); WEIGHTED and
     * STRATIFIED need a score (not NONE) whose global keys use it,
     * STRATIFIED the KMEANS score with at most PS_STRATA_MAX_CLUSTERS. */
    ps_selection selection;
    /* Selection WEIGHTED or STRATIFIED: 0 ranks the heavy keys by the score;
     * s > 0 ranks them by the attention mass of a Philox sample of
     * min(s, n_q) queries per query head, one per stratum of the sequence
     * (docs/SELECT.md "Query sketch"). At most PS_SKETCH_MAX_QUERIES; needs
     * global_keys (the heavy keys are min(global_keys, budget)) and the
     * queries of the call: prepared keys refuse it. PS_SKETCH_AUTO (the
     * default) resolves per plan (see PS_SKETCH_AUTO). */
    uint32_t sketch_queries;
    /* Error estimate (docs/API.md "Error estimate"): 0 (default) none; p > 0:
     * every ps_attention of an approximate plan also attends min(p, n_q)
     * probe rows per query head exactly and compares them with what it
     * wrote: ps_plan_error_estimate returns, per query head, the relative
     * output error and the mean |LSE error| over the probes. At most
     * PS_ERROR_MAX_PROBES; not for variable-length batches. */
    uint32_t error_probes;
    /* With error_probes: 0 (default) only estimate; t > 0: a head whose
     * estimated relative error exceeds t is recomputed exactly in the same
     * call (ps_plan_error_estimate then reports 0 for it). */
    float error_tolerance;
    uint32_t reserved[10];
} ps_attention_desc;

/** Most probe rows per query head of the error estimate (error_probes). */
#define PS_ERROR_MAX_PROBES 256

/** Most queries per query head a query sketch samples (sketch_queries). */
#define PS_SKETCH_MAX_QUERIES 256

/** sketch_queries value set by ps_attention_desc_default: a sketch of
 * PS_SKETCH_AUTO_QUERIES rows where the resolved selection is weighted, the
 * plan has global keys (on causal plans: in every recursion node that has
 * some, over the node's own query rows), else none; prepared keys, which
 * have no queries, rank the heavy keys by the score instead (an explicit
 * sketch refuses them). */
#define PS_SKETCH_AUTO UINT32_MAX
#define PS_SKETCH_AUTO_QUERIES 32

/** Share of the keys PRESCORE keeps when neither budget nor keep_ratio is
 * set (docs/API.md "Budget"). */
#define PS_KEEP_RATIO_DEFAULT 0.25f

/** global_keys value that picks the measured default: min(64, C / 8) global keys,
 * C = the keys the approximate part sees (n_k for HYPER, the kept keys for PRESCORE). */
#define PS_GLOBAL_KEYS_AUTO ((size_t)-1)

/** Fills @p desc with defaults: batch = heads = kv_heads = 1, method EXACT,
 * score KMEANS, global_keys PS_GLOBAL_KEYS_AUTO, global_score PS_SCORE_AUTO,
 * selection PS_SELECTION_AUTO, sketch_queries PS_SKETCH_AUTO, every other
 * "auto" field zero. Shapes (n_q, n_k, d, d_v) stay 0. */
PS_API void ps_attention_desc_default(ps_attention_desc *desc);

/** The four tensors of a call. */
typedef enum ps_tensor_kind {
    PS_TENSOR_Q = 0,
    PS_TENSOR_K = 1,
    PS_TENSOR_V = 2,
    PS_TENSOR_O = 3
} ps_tensor_kind;

/** Bytes a buffer must hold for tensor @p t of @p desc as its layout says
 * (from the buffer's start to one past the last element addressed); 0 when
 * @p desc does not validate or @p t is not a ps_tensor_kind. */
PS_API size_t ps_tensor_bytes(const ps_attention_desc *desc, ps_tensor_kind t);

/** Host conversions between a dense fp32 [batch, head, token, dim] array and
 * tensor @p t laid out in a buffer of ps_tensor_bytes bytes as @p desc says
 * (fp16 rounded to nearest even when packing, widened exactly when
 * unpacking). Packing writes only the elements the layout addresses.
 * @return PS_OK, the descriptor's validation status, or
 *         PS_ERR_INVALID_ARGUMENT for a NULL array or an unknown @p t */
PS_API ps_status ps_tensor_pack(const ps_attention_desc *desc, ps_tensor_kind t,
                                const float *dense, void *buffer);
PS_API ps_status ps_tensor_unpack(const ps_attention_desc *desc, ps_tensor_kind t,
                                  const void *buffer, float *dense);

/** Sets the strides of all four tensors of @p desc to the dense @p layout
 * of its shapes (set batch, heads, kv_heads, n_q, n_k, d, d_v first); keeps
 * their dtypes and offsets.
 * @return PS_OK, or PS_ERR_INVALID_ARGUMENT for a NULL desc or an unknown layout */
PS_API ps_status ps_attention_desc_set_layout(ps_attention_desc *desc, ps_layout layout);

/** What a decode call attends. */
typedef enum ps_decode_mode {
    PS_DECODE_CACHE = 0, /* the cache's method: PRESCORE the sinks, kept keys and
                            window; EXACT every key */
    PS_DECODE_EXACT = 1  /* every key of the cache, whatever its method */
} ps_decode_mode;

/** Largest head dim (d and d_v) the kernels take; head dims must also be a
 * multiple of PS_HEAD_DIM_MULTIPLE. Others get PS_ERR_UNSUPPORTED. */
#define PS_MAX_HEAD_DIM 128
#define PS_HEAD_DIM_MULTIPLE 16

/** Checks a descriptor without a device: PS_OK or the first problem, with a
 * message naming the field written to @p message (may be NULL). */
PS_API ps_status ps_attention_desc_validate(const ps_attention_desc *desc,
                                            char *message, size_t message_size);

#ifdef __cplusplus
}
#endif

#endif
