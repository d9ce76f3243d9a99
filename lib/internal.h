/* Internal definitions shared by the runtime files: the context and plan
 * structs, error reporting and the cleanup-path macros. */
#ifndef PRESCORE_INTERNAL_H
#define PRESCORE_INTERNAL_H

#include "prescore/prescore.h"
#include "tensor_view.h" /* cl/: ps_view, shared with the kernels */

#include <stdarg.h>
#include <stddef.h>

#if defined(_MSC_VER)
#define PS_THREAD_LOCAL __declspec(thread)
#elif defined(__GNUC__) || defined(__clang__)
#define PS_THREAD_LOCAL __thread
#else
#error "a thread-local storage class is needed (per-thread messages, lib/status.c)"
#endif

#define PS_ERROR_MESSAGE_MAX 8192

/* Programs compiled at context creation: one per cl/ stage file. */
typedef enum ps_program_id {
    PS_PROGRAM_UTIL = 0,      /* cl/util.cl: transpose, RNG fill, driver probes */
    PS_PROGRAM_EXACT = 1,     /* cl/exact.cl: flash-style exact attention */
    PS_PROGRAM_SCORE = 2,     /* cl/score.cl: k-means, leverage, norm scores */
    PS_PROGRAM_SELECT = 3,    /* cl/select.cl: top-m selection, gather */
    PS_PROGRAM_LSH = 4,       /* cl/lsh.cl: angular LSH, Gray rank, sort */
    PS_PROGRAM_HYPER = 5,     /* cl/hyper.cl: blocks, residual, merge */
    PS_PROGRAM_FINITE = 6,    /* cl/finite.cl: Inf/NaN checks */
    PS_PROGRAM_GLOBAL = 7,    /* cl/global.cl: global keys' scores, pick, split */
    PS_PROGRAM_MERGE = 8,     /* cl/merge.cl: row copies, log-sum-exp merge */
    PS_PROGRAM_DECODE = 9,    /* cl/decode.cl: split-K decode, the key cache's index */
    PS_PROGRAM_ESTIMATE = 10, /* cl/estimate.cl: the per-call error estimate's probes */
    PS_PROGRAM_COUNT
} ps_program_id;

/* Per-stage plan state, defined by each stage's own file. */
typedef struct ps_exact_state ps_exact_state;
typedef struct ps_score_state ps_score_state;
typedef struct ps_select_state ps_select_state;
typedef struct ps_weighted_state ps_weighted_state;
typedef struct ps_sketch_state ps_sketch_state;
typedef struct ps_estimate_state ps_estimate_state;
typedef struct ps_lsh_state ps_lsh_state;
typedef struct ps_hyper_state ps_hyper_state;
typedef struct ps_pipeline_state ps_pipeline_state;
typedef struct ps_global_state ps_global_state;
typedef struct ps_causal_state ps_causal_state;
typedef struct ps_varlen_state ps_varlen_state;
typedef struct ps_finite_state ps_finite_state;
typedef struct ps_kv_state ps_kv_state;

#define PS_LOOP_BUDGET_PROBE 0xffffffffu

/* What every call of a plan runs, decided once at plan creation (lib/plan.c)
 * and dispatched on once (lib/attention.c); ps_plan_path reports it. */
typedef enum ps_path {
    PS_PATH_EXACT = 0,    /* exact attention (lib/exact.c): EXACT, or n_k < min_seq_len */
    PS_PATH_PIPELINE = 1, /* non-causal HYPER / PRESCORE: steps 1-7 (lib/pipeline.c) */
    PS_PATH_CAUSAL = 2,   /* causal HYPER / PRESCORE: the recursion (lib/causal.c) */
    PS_PATH_VARLEN = 3    /* cu_seqlens: one plan per sequence (lib/varlen.c) */
} ps_path;

/* Tile parameters derived from the device limits (see lib/tuning.c). */
typedef struct ps_tuning {
    ps_kernel_shape shape;    /* PS_SHAPE_AUTO until lib/shape_choice.c decides */
    unsigned cpu_query_block; /* queries per work-item, CPU shape */
    unsigned gpu_group;       /* work-items (queries) per group, GPU shape */
    unsigned gpu_key_tile;    /* keys per __local tile, GPU shape */
    unsigned group_cap;       /* work-items per group of reduction and scan kernels */
    unsigned lsh_group;       /* work-item cap of the LSH sort kernels */
    unsigned select_group;    /* work-item cap of the selection's GPU tile and scan kernels */
    unsigned select_gpu_items; /* candidates per work-item of a GPU-shaped selection tile */
    unsigned select_cpu_tile; /* candidates per work-item, CPU-shaped selection */
    unsigned select_max_tiles; /* selection tiles per head: bounds histograms and scans */
    unsigned loop_budget;     /* loop back-edges a work-item may take (0: no limit,
                                 PS_LOOP_BUDGET_PROBE: not yet probed) */
    unsigned local_mem_report_scale; /* driver's CL_KERNEL_LOCAL_MEM_SIZE / declared */
    int limits_narrowed;      /* PRESCORE_LIMITS applied to ctx->info */
} ps_tuning;

struct ps_context {
    cl_platform_id platform;
    cl_device_id device;
    cl_context cl_ctx;
    cl_command_queue queue;
    int owns_cl; /* 0 when wrapping the application's objects (retained anyway) */
    int profiling;
    ps_device_info info;
    ps_tuning tuning;
    cl_program programs[PS_PROGRAM_COUNT];
    int programs_from_cache;
    ps_cache_stats cache_stats; /* of the context's creation */
};

struct ps_plan {
    ps_context *ctx;
    ps_attention_desc desc; /* resolved */
    ps_path path;           /* decided at creation */
    double last_time_ms;
    /* The last call's first and last commands, kept until its times are
     * collected (lib/stage_times.c) or the next call replaces them. */
    cl_event run_first, run_done;
    int times_pending;
    ps_exact_state *exact;   /* lib/exact.c (every path but a node without global keys) */
    ps_score_state *score;   /* lib/score.c */
    ps_select_state *select; /* lib/select.c */
    ps_weighted_state *weighted; /* lib/select_weighted.c: selection WEIGHTED */
    ps_sketch_state *sketch; /* lib/sketch.c: sketch_queries > 0 */
    int sketch_optional;     /* the sketch was PS_SKETCH_AUTO: prepared keys run without */
    ps_estimate_state *estimate; /* lib/estimate.c: error_probes > 0 */
    ps_lsh_state *lsh;       /* lib/lsh.c */
    ps_hyper_state *hyper;   /* lib/hyper.c */
    ps_pipeline_state *pipeline; /* lib/pipeline.c: buffers between stages */
    ps_global_state *global;     /* lib/global.c: global keys (pipeline path, g > 0) */
    ps_causal_state *causal;     /* lib/causal.c: the recursion (causal path) */
    ps_varlen_state *varlen;     /* lib/varlen.c: the sequences (varlen path) */
    ps_finite_state *finite;     /* lib/finite.c: desc.check_finite */
    ps_kv_state *kv;             /* lib/kv_cache.c: a key cache's plan (ps_kv_cache) */
    cl_mem prepared_k, prepared_v; /* retained by ps_attention_prepare_keys */
    /* lib/stage_times.c: markers of the running call, times of the last one */
    cl_event marks[PS_MAX_STAGES + 1];
    const char *mark_names[PS_MAX_STAGES + 1];
    size_t mark_count;
    const char *stage_names[PS_MAX_STAGES];
    double stage_ms[PS_MAX_STAGES];
    size_t stage_count;
    int diag_unit_residual_weight; /* lib/diagnostic.c: residual weight 1 */
    size_t device_bytes; /* workspace created for it, its causal nodes' included */
    char last_error[PS_ERROR_MESSAGE_MAX]; /* of the plan's last call (ps_plan_last_error) */
};

/* Checks a buffer argument: non-NULL, a cl_mem of the context's cl_context,
 * at least `bytes` long. `what` names it in the message ("ps_score_keys: k"). */
ps_status ps_check_buffer(ps_context *ctx, cl_mem mem, size_t bytes, const char *what);

/* Records a formatted message and returns status: inside a public call on a
 * plan of ctx (ps_plan_enter .. ps_plan_result) as the plan's last error,
 * else for ps_context_last_error(ctx) in the calling thread; nothing when ctx
 * is NULL. */
ps_status ps_fail(ps_context *ctx, ps_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Starts a public call on a plan: PS_ERR_INVALID_ARGUMENT (message for
 * ps_context_last_error(NULL)) unless the plan is live; then the call's
 * failures are recorded on the plan until ... */
ps_status ps_plan_enter(ps_plan *plan, const char *fn);
/* The same for a key cache's public calls (a plan handle holding plan->kv). */
ps_status ps_kv_enter(ps_plan *plan, const char *fn);
/* ... the call ends here: the plan's last error becomes "" on success (the
 * status string when a failure left no message); returns st. */
ps_status ps_plan_result(ps_plan *plan, ps_status st);
/* Keeps a failed constructor's (or a refused handle's) message for
 * ps_context_last_error(NULL). */
void ps_keep_create_error(const ps_context *ctx, ps_status status);
void ps_keep_create_message(const char *message);
/* Forgets the calling thread's message of a context being destroyed, so that
 * a later context at the same address starts without it. */
void ps_forget_errors(const ps_context *ctx);
/* Clears the calling thread's message of ctx (public calls start with it). */
void ps_clear_error(ps_context *ctx);

/* Maps an OpenCL error to a status, recording what failed. */
ps_status ps_fail_cl(ps_context *ctx, cl_int err, const char *what);
const char *ps_cl_error_name(cl_int err);

/* Single cleanup path: set `st` and jump to `cleanup` when `cond` holds. */
#define PS_GOTO_IF(cond, expr)                                                 \
    do {                                                                       \
        if (cond) {                                                            \
            st = (expr);                                                       \
            goto cleanup;                                                      \
        }                                                                      \
    } while (0)

#define PS_CL_GOTO(ctx, call, what)                                            \
    do {                                                                       \
        cl_int ps_err_ = (call);                                               \
        if (ps_err_ != CL_SUCCESS) {                                           \
            st = ps_fail_cl((ctx), ps_err_, (what));                           \
            goto cleanup;                                                      \
        }                                                                      \
    } while (0)

/* Sets consecutive kernel arguments, keeping the first failure:
 *   ps_arg_setter a = {kernel, 0, CL_SUCCESS}; ps_arg(&a, sizeof x, &x); ...
 *   if (a.err != CL_SUCCESS) ... */
typedef struct ps_arg_setter {
    cl_kernel kernel;
    cl_uint index;
    cl_int err;
} ps_arg_setter;

static inline void ps_arg(ps_arg_setter *a, size_t size, const void *value)
{
    if (a->err == CL_SUCCESS)
        a->err = clSetKernelArg(a->kernel, a->index, size, value);
    a->index++;
}

/* A tensor argument of a stage: a buffer and how the tensor lies in it
 * (cl/tensor_view.h). The caller's tensors carry the plan's layouts
 * (ps_layout_view), workspace copies dense views (ps_view_dense). */
typedef struct ps_tensor {
    cl_mem mem;
    ps_view view;
} ps_tensor;

static inline ps_tensor ps_tensor_make(cl_mem mem, ps_view view)
{
    ps_tensor t;
    t.mem = mem;
    t.view = view;
    return t;
}

/* The caller's tensor `id` (a ps_tensor_id, lib/core/tensor_layout.h) of
 * the plan in buffer mem, with the plan's layout (lib/plan.c). */
ps_tensor ps_plan_tensor(const ps_plan *plan, int id, cl_mem mem);

/* A dense workspace tensor: rows_per_head rows of dim elements per flat
 * head, fp16 when half. */
ps_tensor ps_dense_tensor(cl_mem mem, size_t rows_per_head, size_t dim, int half);

/* Sets the two kernel arguments of a tensor: its buffer, then its view. */
static inline void ps_arg_tensor(ps_arg_setter *a, const ps_tensor *t)
{
    ps_arg(a, sizeof t->mem, &t->mem);
    ps_arg(a, sizeof t->view, &t->view);
}

/* Device description of one cl_device_id (lib/device_info.c). */
ps_status ps_device_info_query(cl_platform_id platform, cl_device_id device,
                               unsigned platform_index, unsigned device_index,
                               ps_device_info *info);

/* Finds the cl ids behind a (platform_index, device_index) pair. */
ps_status ps_device_ids(unsigned platform_index, unsigned device_index,
                        cl_platform_id *platform, cl_device_id *device);

/* Tuning derived from device limits and the requested shape (lib/tuning.c). */
void ps_tuning_from_device(const ps_device_info *info, ps_kernel_shape requested,
                           ps_tuning *tuning);
/* Applies PRESCORE_LIMITS to ctx->info, then derives ctx->tuning. */
ps_status ps_tuning_init(ps_context *ctx, ps_kernel_shape requested);
/* __local bytes of the GPU shape's K and V tiles of key_tile rows. */
uint64_t ps_gpu_tile_local_bytes(unsigned key_tile);

/* Builds the programs the context lacks (lib/program.c), through @p cache (an
 * unusable cache simply misses). Programs with a kernel variant per shape are
 * built for ctx->tuning.shape, so while it is PS_SHAPE_AUTO only the others
 * are; every build that compiles clears ctx->programs_from_cache. */
struct ps_cache;
ps_status ps_programs_build(ps_context *ctx, const ps_context_options *options,
                            struct ps_cache *cache);
/* Builds program @p id, which the context lacks, for ctx->tuning.shape. */
ps_status ps_program_build(ps_context *ctx, const ps_context_options *options,
                           struct ps_cache *cache, ps_program_id id);
void ps_programs_release(ps_context *ctx);
/* Opens the program cache the options and environment ask for: PS_OK, or
 * PS_ERR_IO with @p cache unusable (off, refused, no secret); never fatal. */
ps_status ps_programs_open_cache(const ps_context_options *options, struct ps_cache *cache);
/* Whether build and cache decisions are reported on stderr. */
int ps_programs_verbose(const ps_context_options *options);
/* Creates a kernel object owned by the caller (plans own theirs: thread safety). */
ps_status ps_kernel_create(ps_context *ctx, ps_program_id program, const char *name,
                           cl_kernel *out);
/* The same for a kernel with a variant per shape: "<base>_cpu" or
 * "<base>_gpu" by ctx->tuning.shape, the only variant its program holds. */
ps_status ps_kernel_create_shaped(ps_context *ctx, ps_program_id program, const char *base,
                                  cl_kernel *out);
/* That variant's name, for messages and ps_kernel_fit: written to @p name
 * (PS_KERNEL_NAME_MAX bytes suffice) and returned. */
#define PS_KERNEL_NAME_MAX 64
const char *ps_kernel_shaped_name(const ps_context *ctx, const char *base, char *name,
                                  size_t size);
/* Creates a read-write device buffer of `bytes` (lib/device_buffer.c): refused
 * with PS_ERR_OUT_OF_DEVICE_MEMORY above the per-buffer limit; messages name
 * `what` ("hyper sorted keys"). *out is NULL on failure. */
ps_status ps_buffer_create(ps_context *ctx, size_t bytes, const char *what, cl_mem *out);
/* Buffers created by this thread until the next call add their bytes to
 * *counter (NULL: to nothing); returns the counter it replaces. Plan creation
 * counts its workspace this way (ps_plan_device_bytes). */
size_t *ps_buffer_bytes_count_into(size_t *counter);
/* The same for a list of buffers: does nothing and returns NULL when *st is
 * already a failure, so a setup allocates them all and checks *st once. */
static inline cl_mem ps_workspace_buffer(ps_context *ctx, size_t bytes, const char *what,
                                         ps_status *st)
{
    cl_mem m = NULL;
    if (*st == PS_OK)
        *st = ps_buffer_create(ctx, bytes, what, &m);
    return m;
}
/* PS_OK when every argument the setter `a` set took; otherwise its first
 * failure, reported as "clSetKernelArg (<kernel>)". */
ps_status ps_args_done(ps_context *ctx, const ps_arg_setter *a, const char *kernel);

/* Enqueues `kernel` (arguments already set) on the context's in-order queue;
 * a failure names the kernel. `local` may be NULL. The one launch path of
 * every stage: no event comes back (timing is the plan's markers). */
ps_status ps_launch(ps_context *ctx, cl_kernel kernel, const char *name, cl_uint dims,
                    const size_t *global, const size_t *local);

/* Waits for everything enqueued on the context's queue so far: a marker and a
 * wait on it, never clFinish (which would also wait for work other threads of
 * the application enqueue afterwards). A failed command is reported, with a
 * message naming `what` (NULL: no message, for error paths that keep theirs). */
ps_status ps_wait_enqueued(ps_context *ctx, const char *what);


#endif
