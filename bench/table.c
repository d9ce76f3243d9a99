/* Table mode: for each workload and n, upload the inputs once, time exact
 * and keep its output as the reference, then time and check every
 * approximate method for each seed with the b, s, g, r of the default
 * prescore plan (equal interaction budget). Progress on stderr, rows through
 * report.c. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "table.h"

#include "check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct table_method {
    const char *name;
    ps_method method;
    ps_score score; /* PS_SCORE_AUTO: the library's default score */
} table_method;

static const table_method table_methods[] = {
    {"hyper", PS_METHOD_HYPER, PS_SCORE_NONE},
    {"prescore", PS_METHOD_PRESCORE, PS_SCORE_AUTO},
    {"prescore-kmeans", PS_METHOD_PRESCORE, PS_SCORE_KMEANS},
    {"prescore-leverage", PS_METHOD_PRESCORE, PS_SCORE_LEVERAGE},
    {"prescore-norm", PS_METHOD_PRESCORE, PS_SCORE_NORM},
};
#define TABLE_METHODS (sizeof table_methods / sizeof table_methods[0])

static const struct {
    const char *name;
    bench_workload workload;
} table_workloads[] = {{"heavy", BENCH_WORKLOAD_HEAVY}, {"gaussian", BENCH_WORKLOAD_GAUSSIAN}};
#define TABLE_WORKLOADS (sizeof table_workloads / sizeof table_workloads[0])

static const size_t table_sizes[] = {4096, 8192, 16384, 32768};

/* Progress through the whole table, for the "[i/total]" lines. */
typedef struct table_state {
    bench_run *run;
    size_t step, total;
    int repeat;
    const char *workload_name;
    bench_workload workload;
    bench_inputs in;
    bench_reference ref;
    int non_finite; /* a measured error metric was NaN or infinite */
} table_state;

static void base_desc(const bench_options *opt, size_t n, ps_attention_desc *desc)
{
    ps_attention_desc_default(desc);
    desc->n_q = desc->n_k = n;
    desc->d = desc->d_v = opt->d;
}

static void row_start(const table_state *ts, bench_table_row *row, const char *method,
                      const ps_attention_desc *desc)
{
    memset(row, 0, sizeof *row);
    row->workload = ts->workload_name;
    row->method = method;
    row->device = ts->run->device_name;
    row->shape = ts->run->shape_name;
    row->n = desc->n_q;
    row->d = desc->d;
    row->heads = desc->heads;
    row->kv_heads = desc->kv_heads;
    row->batch = desc->batch;
    row->causal = desc->causal;
    row->repeat = ts->repeat;
    row->data_seed = ts->run->opt->data_seed;
    row->heavy_mass = ts->ref.heavy_mass;
}

/* Times one plan of @p desc and checks it against the reference into
 * seed slot @p slot of @p row. @return an exit code */
static int run_seed(table_state *ts, ps_attention_desc *desc, bench_table_row *row,
                    size_t slot)
{
    bench_run *run = ts->run;
    bench_seed_result *sr = &row->seeds[slot];
    bench_check_result c;
    bench_row timing;
    ps_plan *plan = NULL;
    ps_status st;
    int code;

    fprintf(stderr, "[%zu/%zu] %s n=%zu %s seed %llu ...", ++ts->step, ts->total,
            ts->workload_name, desc->n_q, row->method, (unsigned long long)desc->seed);
    st = ps_plan_create(run->ctx, desc, &plan);
    if (st == PS_OK)
        st = ps_plan_desc(plan, desc);
    if (st != PS_OK) {
        fputc('\n', stderr);
        ps_plan_destroy(plan);
        return bench_library_failure("ps_plan_create", st, run->ctx, NULL);
    }
    memset(&timing, 0, sizeof timing);
    /* Exact follows the reference run of the same kernel: no warm-up. */
    code = bench_time_attention(run, plan, desc, &ts->in, ts->repeat,
                                desc->method != PS_METHOD_EXACT, &timing);
    if (code == EXIT_OK && desc->method != PS_METHOD_EXACT) {
        st = bench_check(run->ctx, plan, desc, ts->in.q, ts->in.k, ts->in.v, &ts->ref, &c);
        if (st != PS_OK)
            code = bench_library_failure("--check", st, run->ctx, plan);
    } else if (code == EXIT_OK) { /* exact is the reference: errors by definition */
        c.rel_error = c.lse_error = c.floor_error = 0.0;
        c.oracle_floor_error = c.random_floor_error = NAN; /* no selection */
        c.heavy_recall = 1.0;
        c.keys_kept = (double)desc->n_k;
        c.measured = BENCH_METRIC_ALL & ~(BENCH_METRIC_ORACLE_FLOOR | BENCH_METRIC_RANDOM_FLOOR);
    }
    ps_plan_destroy(plan);
    if (code != EXIT_OK) {
        fputc('\n', stderr);
        return code;
    }
    sr->seed = desc->seed;
    sr->time_ms = timing.time_ms;
    sr->rel_error = c.rel_error;
    sr->lse_error = c.lse_error;
    sr->heavy_recall = c.heavy_recall;
    sr->floor_error = c.floor_error;
    sr->oracle_floor_error = c.oracle_floor_error;
    sr->random_floor_error = c.random_floor_error;
    sr->keys_kept = c.keys_kept;
    row->stage_count = timing.stage_count;
    for (size_t i = 0; i < timing.stage_count; i++) {
        row->stage_names[i] = timing.stage_names[i];
        sr->stage_ms[i] = timing.stage_ms[i];
    }
    row->seed_count = slot + 1;
    row->budget = desc->method == PS_METHOD_PRESCORE ? desc->budget : 0;
    row->block = desc->method != PS_METHOD_EXACT ? desc->block : 0;
    row->samples = desc->method != PS_METHOD_EXACT ? desc->samples : 0;
    row->global_keys = desc->method != PS_METHOD_EXACT ? desc->global_keys : 0;
    row->lsh_bits = desc->method != PS_METHOD_EXACT ? desc->lsh_bits : 0;
    fprintf(stderr, " %.1f ms, rel_error %.3f, heavy_recall %.3f\n", sr->time_ms,
            sr->rel_error, sr->heavy_recall);
    {
        const char *bad = bench_check_non_finite(&c);
        if (bad) {
            fprintf(stderr,
                    "prescore-bench: %s is not finite in the table row %s n=%zu %s seed %llu: "
                    "non-finite error metric (the table goes on, exit %d)\n",
                    bad, ts->workload_name, desc->n_q, row->method,
                    (unsigned long long)desc->seed, EXIT_NON_FINITE);
            ts->non_finite = 1;
        }
    }
    return EXIT_OK;
}

/* Exact (the reference and the speedup's numerator), then every method and
 * seed, at one (workload, n). @return an exit code */
static int table_size(table_state *ts, size_t n)
{
    const bench_options *opt = ts->run->opt;
    ps_attention_desc desc;
    bench_table_row row;
    double exact_ms;
    int code;
    ps_status st;

    base_desc(opt, n, &desc);
    code = bench_inputs_upload(ts->run, &desc, ts->workload, &ts->in);
    if (code != EXIT_OK)
        return code;
    st = bench_reference_make(ts->run->ctx, &desc, ts->in.q, ts->in.k, ts->in.v, ts->workload,
                              opt->data_seed, &ts->ref);
    if (st != PS_OK) {
        bench_inputs_release(&ts->in);
        return bench_library_failure("the exact reference", st, ts->run->ctx, NULL);
    }
    if (isfinite(ts->ref.heavy_mass))
        fprintf(stderr, "%s n=%zu: measured mean heavy mass share %.4f (target %.2f)\n",
                ts->workload_name, n, ts->ref.heavy_mass, BENCH_HEAVY_MASS);
    else if (ts->ref.heavy_mass_measured) {
        fprintf(stderr, "prescore-bench: heavy_mass is not finite in the table rows %s n=%zu: "
                        "non-finite metric (the table goes on, exit %d)\n",
                ts->workload_name, n, EXIT_NON_FINITE);
        ts->non_finite = 1;
    }
    desc.seed = opt->seed;
    row_start(ts, &row, "exact", &desc);
    code = run_seed(ts, &desc, &row, 0);
    exact_ms = row.seeds[0].time_ms;
    row.exact_time_ms = exact_ms;
    if (code == EXIT_OK)
        bench_report_table_row(ts->run->report, &row);
    for (size_t m = 0; m < TABLE_METHODS && code == EXIT_OK; m++) {
        const table_method *tm = &table_methods[m];
        for (size_t s = 0; s < BENCH_TABLE_SEEDS && code == EXIT_OK; s++) {
            base_desc(opt, n, &desc);
            desc.method = tm->method;
            if (tm->score != PS_SCORE_AUTO)
                desc.score = tm->score;
            if (tm->method == PS_METHOD_PRESCORE)
                desc.budget = n < BENCH_DEFAULT_BUDGET ? n : BENCH_DEFAULT_BUDGET;
            desc.seed = opt->seed + s;
            code = bench_equal_budget(ts->run, &desc);
            if (code == EXIT_OK && s == 0)
                row_start(ts, &row, tm->name, &desc);
            if (code == EXIT_OK)
                code = run_seed(ts, &desc, &row, s);
        }
        row.exact_time_ms = exact_ms;
        if (code == EXIT_OK)
            bench_report_table_row(ts->run->report, &row);
    }
    bench_reference_free(&ts->ref);
    bench_inputs_release(&ts->in);
    return code;
}

int bench_table_run(bench_run *run)
{
    const bench_options *opt = run->opt;
    const size_t *sizes = opt->n_given ? opt->n : table_sizes;
    const size_t n_count =
        opt->n_given ? opt->n_count : sizeof table_sizes / sizeof table_sizes[0];
    table_state ts;
    int code = EXIT_OK;

    memset(&ts, 0, sizeof ts);
    ts.run = run;
    ts.repeat = opt->repeat_given ? opt->repeat : BENCH_TABLE_REPEAT;
    ts.total = TABLE_WORKLOADS * n_count * (1 + TABLE_METHODS * BENCH_TABLE_SEEDS);
    run->quiet = 1;
    run->report->table = 1;
    fprintf(stderr, "prescore-bench: built-in workload table, %zu runs "
                    "(prescore-bench --help for single runs)\n", ts.total);
    for (size_t w = 0; w < TABLE_WORKLOADS && code == EXIT_OK; w++) {
        ts.workload_name = table_workloads[w].name;
        ts.workload = table_workloads[w].workload;
        for (size_t i = 0; i < n_count && code == EXIT_OK; i++)
            code = table_size(&ts, sizes[i]);
    }
    return code == EXIT_OK && ts.non_finite ? EXIT_NON_FINITE : code;
}
