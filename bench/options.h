/* prescore-bench command line: the options of the benchmark contract in
 * bench/README.md, parsed with getopt_long into one struct. */
#ifndef PRESCORE_BENCH_OPTIONS_H
#define PRESCORE_BENCH_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "prescore/prescore.h"
#include "workload.h"

#define BENCH_MAX_SIZES 64
#define BENCH_DEFAULT_N 4096
#define BENCH_DEFAULT_D 64
#define BENCH_DEFAULT_REPEAT 5
#define BENCH_DEFAULT_SEED 42
#define BENCH_TABLE_REPEAT 3 /* timed runs per table row and seed */

/* Keys kept by pre-scoring when --budget is absent. */
#define BENCH_DEFAULT_BUDGET 4096

/* --decode defaults (bench/README.md, "Decode"): steps, KV heads, window. */
#define BENCH_DECODE_STEPS 32
#define BENCH_DECODE_KV_HEADS 8
#define BENCH_DECODE_WINDOW 256

typedef enum bench_format {
    BENCH_FORMAT_TABLE = 0,
    BENCH_FORMAT_JSON = 1,
    BENCH_FORMAT_CSV = 2
} bench_format;

typedef struct bench_options {
    int help;
    int list_devices;
    int version; /* --version */
    int verbose;
    const char *device; /* NULL: the library's default choice */
    ps_kernel_shape shape;

    const char *method_name; /* contract name, as reported */
    ps_method method;
    ps_score score;
    int score_only; /* score-* methods: time scoring and selection alone */

    size_t n[BENCH_MAX_SIZES]; /* n_q = n_k, one row per value */
    size_t n_count;
    size_t d; /* d = d_v */
    size_t heads;
    size_t kv_heads; /* 0: same as heads */
    size_t batch;
    int causal;

    /* Budgets, stored in the descriptor (0 keeps the library default). */
    size_t budget, clusters, iters, block, samples, min_seq_len, global_keys;
    unsigned lsh_bits;
    size_t sink, window;  /* --sink, --window (decode: window 256 unless given) */
    float keep_ratio;     /* --keep-ratio: budget as a share of the keys (budget 0) */
    ps_selection selection; /* --selection */
    size_t sketch_queries;  /* --sketch: query rows per head ranking the heavy keys */
    size_t error_probes;    /* --probes: the error estimate's probe rows per head */
    float error_tolerance;  /* --tolerance: recompute heads estimated above it */
    float rescore_growth; /* --rescore-growth: the key cache's drift criterion */

    int repeat;
    uint64_t seed;
    bench_format format;
    int gemm_roof;
    int peak;

    uint64_t data_seed;    /* --data-seed: seed of the inputs (default 42, whatever --seed) */
    int table;             /* the built-in workload table (no arguments, or --table) */
    int single_option;     /* an option of the single-run mode was given */
    int repeat_given, n_given;
    int equal_budget;      /* --equal-budget: b, s, g, r of the default prescore plan */
    int check;             /* --check: errors against exact on the device */
    bench_workload workload; /* --workload */
    const char *workload_name;
    const char *data_file; /* --data FILE: recorded Q/K/V (PSQKV, docs/DATA.md) */
    long data_layer;       /* --layer L: model layer (-1: every stored layer) */
    long data_head;        /* --head H: model head (-1: every stored head) */
    int shape_given;       /* --d, --heads, --kv-heads or --batch given (--n: n_given) */
    const char *dtype_name;  /* --dtype: "f32" (default), "f16" or "f16kv" */
    ps_layout layout;        /* --layout */
    const char *layout_name; /* "bhtd" (default) or "bthd" */
    int method_given, heads_given, kv_heads_given, window_given;
    int decode;              /* --decode: the key cache (decode.c) */
    size_t steps;            /* --steps: decode steps */
    size_t decode_queries;   /* --decode-queries: queries per step */
    size_t varlen_count;     /* --varlen: sequences (0: a plain batch) */
    uint32_t varlen_cu[BENCH_MAX_SIZES + 1]; /* their offsets (cu_seqlens, q = k) */
} bench_options;

/** Parses @p argv into @p opt (defaults first). Messages go to stderr.
 * @return 0 on success (also for --help: opt->help is set), 1 on a bad option. */
int bench_options_parse(int argc, char **argv, bench_options *opt);

/** Prints the option summary. */
void bench_options_usage(FILE *out, const char *prog);

/** Fills @p desc for one row: the shape with n_q = n_k = @p n, and every
 * method and budget option. */
void bench_options_to_desc(const bench_options *opt, size_t n, ps_attention_desc *desc);

/** @return "cpu", "gpu" or "auto". */
const char *bench_shape_name(ps_kernel_shape shape);

#endif
