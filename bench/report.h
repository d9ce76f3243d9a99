/* Output of prescore-bench: a human-readable table, JSON lines or CSV, for
 * benchmark rows and for the device list. Only this file writes stdout. */
#ifndef PRESCORE_BENCH_REPORT_H
#define PRESCORE_BENCH_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "options.h"
#include "prescore/prescore.h"

#define BENCH_MAX_STAGES 12
#define BENCH_MAX_EST_HEADS 128 /* query heads (batch * heads) of a row's error estimate */

/** One benchmark result. Optional parts are flagged by *_measured. */
typedef struct bench_row {
    const char *method;
    const char *workload; /* --workload name, or "data" */
    const char *data;     /* --data file name (basename), or NULL */
    long layer;           /* --data: the model layer of the row; -1 otherwise */
    const char *data_heads; /* --data: the model heads run, e.g. "0,1,2" */
    const char *device;
    const char *shape; /* kernel shape the context runs: "cpu" or "gpu" */
    const char *dtype;  /* --dtype: "f32", "f16" or "f16kv" */
    const char *layout; /* --layout: "bhtd" or "bthd" */
    size_t device_bytes; /* the plan's workspace plus Q, K, V, O; 0: not measured */
    size_t varlen_count;       /* --varlen: sequences (0: none) */
    const uint32_t *varlen_cu; /* their offsets, varlen_count + 1 */
    size_t n, d, heads, kv_heads, batch;
    int causal;
    double time_ms, time_min_ms, time_max_ms;
    double gflops; /* exact-equivalent work / median time */
    uint64_t seed;
    uint64_t data_seed; /* seed of the seeded inputs */
    int params_known;   /* hyper/prescore: the resolved parameters below */
    size_t budget, block, samples, global_keys; /* budget: prescore only */
    unsigned lsh_bits;
    int repeat;

    int roof_measured;       /* --gemm-roof asked */
    int roof_available;      /* roof_gflops valid */
    double roof_gflops;
    const char *roof_layout; /* "row-major" / "column-major" */
    const char *roof_error;  /* why unavailable (or a partial failure), or "" */

    int check_measured;      /* --check: errors against exact on the device */
    double rel_error, lse_error;
    double heavy_recall, floor_error; /* --check; NaN: not measured (null) */
    const char *selection;   /* prescore rows: "top", "weighted" or "stratified" */
    unsigned sketch_queries; /* prescore rows: the query sketch's rows per head (0: none) */
    double oracle_floor_error, random_floor_error; /* beside floor_error; NaN: not */
    double heavy_mass;       /* --check on the heavy workload; NaN otherwise */
    size_t est_heads;        /* --check with --probes: per-head errors and estimates */
    double head_rel_error[BENCH_MAX_EST_HEADS], head_lse_error[BENCH_MAX_EST_HEADS];
    double est_rel_error[BENCH_MAX_EST_HEADS], est_lse_error[BENCH_MAX_EST_HEADS];
    const char *non_finite;  /* --check: the first measured metric that is NaN or
                                infinite ("rel_error", ...), or NULL */
    int keys_kept_measured;  /* score-* methods; prescore and hyper with --check */
    double keys_kept;        /* mean keys kept per KV head */
    size_t stage_count;      /* entries of stages_ms */
    const char *stage_names[BENCH_MAX_STAGES];
    double stage_ms[BENCH_MAX_STAGES]; /* median per stage */

    int peak_measured;       /* --peak asked */
    int peak_available;
    double peak_gflops;
    const char *peak_variant;
    const char *peak_error;
} bench_row;

/* One method seed of a table row. */
typedef struct bench_seed_result {
    uint64_t seed;
    double time_ms; /* median of the timed runs */
    double rel_error, lse_error, heavy_recall, floor_error, keys_kept; /* NaN: none */
    double oracle_floor_error, random_floor_error;                    /* NaN: none */
    double stage_ms[BENCH_MAX_STAGES];
} bench_seed_result;

#define BENCH_MAX_SEEDS 8

/** One row of the built-in workload table: a method at one (workload, n),
 * over its seeds (bench/README.md, "Table mode"). */
typedef struct bench_table_row {
    const char *workload, *method, *device, *shape;
    size_t n, d, heads, kv_heads, batch;
    int causal, repeat;
    uint64_t data_seed;
    size_t budget, block, samples, global_keys; /* resolved; 0 for exact */
    unsigned lsh_bits;
    double exact_time_ms; /* exact at the same (workload, n): speedup */
    double heavy_mass;    /* heavy workload: measured planted mass share */
    size_t seed_count;
    bench_seed_result seeds[BENCH_MAX_SEEDS];
    size_t stage_count;
    const char *stage_names[BENCH_MAX_STAGES];
} bench_table_row;

/** One --decode row (bench/README.md, "Decode"): a key cache prefilled
 * with n keys, then `steps` decode steps; times in ms, medians unless named. */
typedef struct bench_decode_row {
    const char *method, *score, *workload, *device, *shape, *dtype;
    const char *data;       /* --data file name, or NULL */
    long layer;             /* --data: the model layer */
    const char *data_heads; /* --data: the model heads run */
    size_t n, steps, decode_queries, capacity, d, heads, kv_heads, batch;
    uint64_t seed, data_seed;
    size_t budget;          /* keys kept by score; 0: keep_ratio */
    double keep_ratio, rescore_growth;
    size_t sink, window;
    double prefill_ms;
    double append_ms, append_ms_p90, append_ms_max;
    double decode_ms, decode_ms_p90, decode_ms_max;
    double exact_decode_ms, exact_decode_ms_p90, exact_decode_ms_max;
    double tokens_per_s, exact_tokens_per_s, speedup;
    size_t device_bytes, length, kept, attended, rescores;
    double exact_bytes;     /* K and V bytes one exact decode reads */
    double bandwidth_gbs;   /* exact_bytes / exact_decode_ms */
    int bandwidth_measured; /* the microbenchmark ran (bandwidth.c) */
    double peak_bandwidth_gbs, exact_decode_bandwidth_ratio;
    const char *peak_bandwidth_variant, *bandwidth_error;
    int check_measured;     /* --check */
    double rel_error, rel_error_max, lse_error;
    const char *non_finite; /* --check: the first metric that is NaN or infinite */
    int peak_measured, peak_available; /* --peak: fp32 FMA peak, as bench_row */
    double peak_gflops;
    const char *peak_variant, *peak_error;
} bench_decode_row;

typedef struct bench_report {
    FILE *out;
    bench_format format;
    int table; /* rows are bench_table_row (set after bench_report_begin) */
    int with_roof, with_peak;
    int rows;
    const ps_device_info *device;
    const char *shape;
} bench_report;

/** Starts a report. The CSV header, or the table's device line and header,
 * come with the first row, so a run that fails before any result writes
 * nothing to @p out. @p device and @p shape must outlive the report. */
void bench_report_begin(bench_report *r, FILE *out, bench_format format, int with_roof,
                        int with_peak, const ps_device_info *device, const char *shape);

void bench_report_row(bench_report *r, const bench_row *row);

/** A table-mode row (mean and spread over the seeds; JSON adds per_seed). */
void bench_report_table_row(bench_report *r, const bench_table_row *row);

/** A --decode row: one JSON object, or one readable line. */
void bench_report_decode_row(bench_report *r, const bench_decode_row *row);

void bench_report_end(bench_report *r);

/** --version: library version, kernel-source hash and the chosen device with
 * its driver (@p device NULL: @p no_device says why there is none). */
void bench_report_version(FILE *out, bench_format format, const ps_device_info *device,
                          const char *shape, const char *no_device);

/** --list-devices in the chosen format. */
void bench_report_devices(FILE *out, bench_format format, const ps_device_info *infos,
                          size_t count);

/** Writes @p s as a JSON string literal (quotes included); invalid UTF-8
 * bytes become U+FFFD. */
void bench_json_string(FILE *out, const char *s);

#endif
