/* What prescore-bench.c and table.c share: the run's context and handles,
 * seeded inputs on the device, the timed attention loop, the equal
 * interaction budget and the exit codes. */
#ifndef PRESCORE_BENCH_RUN_H
#define PRESCORE_BENCH_RUN_H

#include "prescore/prescore.h"

#include "bandwidth.h"
#include "options.h"
#include "peak.h"
#include "report.h"

/* EXIT_NON_FINITE: --check measured an error metric that is NaN or infinite
 * (the rows are still reported; the first such metric is named on stderr). */
enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_UNSUPPORTED = 2, EXIT_NON_FINITE = 3 };

typedef struct bench_run {
    ps_context *ctx;
    cl_context cl_ctx;
    cl_device_id cl_dev;
    cl_command_queue cl_queue;
    const char *device_name;
    const char *shape_name;
    const bench_options *opt;
    bench_report *report;
    const bench_peak_result *peak; /* NULL when --peak is off */
    const bench_bandwidth_result *bandwidth; /* --decode's measurement, or NULL */
    /* --data: this row's recorded inputs, [heads][n][d] each; NULL: seeded */
    const float *data_q, *data_k, *data_v;
    size_t data_rows;      /* --data: tokens per head of those arrays */
    const char *data_name; /* file basename */
    long data_layer;       /* model layer */
    const char *data_heads; /* model heads, "0,1,2" */
    int quiet;              /* table mode: no per-step progress lines */
} bench_run;

/* Q, K, V of one row on the device. */
typedef struct bench_inputs {
    cl_mem q, k, v;
} bench_inputs;

/** @return the exit code for a library status */
int bench_exit_code(ps_status st);

/** Reports a failed library call with the status and its message: the
 * plan's (ps_plan_last_error) for a call on @p plan, else the context's.
 * @return the exit code */
int bench_library_failure(const char *what, ps_status st, const ps_context *ctx,
                          const ps_plan *plan);

/** Uploads the inputs of @p desc: --data rows of @p run, else @p workload
 * seeded by opt->data_seed. @return an exit code (inputs NULL on failure) */
int bench_inputs_upload(const bench_run *run, const ps_attention_desc *desc,
                        bench_workload workload, bench_inputs *in);

void bench_inputs_release(bench_inputs *in);

/** A warm-up call (when @p warmup) and @p repeat timed ps_attention calls of
 * @p plan on @p in; fills the times and stages_ms of @p row.
 * @return an exit code */
int bench_time_attention(const bench_run *run, ps_plan *plan, const ps_attention_desc *desc,
                         const bench_inputs *in, int repeat, int warmup, bench_row *row);

/** Equal interaction budget: block, samples, global_keys and lsh_bits of the
 * resolved default `prescore` plan (ps_attention_desc_default, method
 * PRESCORE, budget min(n, 4096)) of @p desc's shapes, copied into the
 * fields of @p desc that are 0 (explicit options win) when its method is
 * HYPER or PRESCORE. @return an exit code */
int bench_equal_budget(const bench_run *run, ps_attention_desc *desc);

#endif
