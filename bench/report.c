/* Table, JSON-lines and CSV output of prescore-bench. The JSON and CSV columns
 * are the benchmark contract of bench/README.md; the table is for people. */
#include "report.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at @p s, or 0 if it is not one. */
static size_t utf8_sequence(const unsigned char *s)
{
    size_t len, i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4;
    else
        return 0;
    for (i = 1; i < len; ++i)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

void bench_json_string(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");

    fputc('"', out);
    while (*p) {
        size_t len;
        switch (*p) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            if (*p < 0x20 || *p == 0x7F) {
                fprintf(out, "\\u%04x", (unsigned)*p);
            } else if ((len = utf8_sequence(p)) == 0) {
                fputs("\\ufffd", out);
            } else {
                fwrite(p, 1, len, out);
                p += len;
                continue;
            }
        }
        ++p;
    }
    fputc('"', out);
}

/* A field quoted when it holds a separator, a quote or a line break. */
static void csv_string(FILE *out, const char *s)
{
    const char *p;

    s = s ? s : "";
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (p = s; *p; ++p) {
        if (*p == '"')
            fputc('"', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

/* JSON has no NaN or infinity. */
static void json_number(FILE *out, double v, int decimals)
{
    if (isfinite(v))
        fprintf(out, "%.*f", decimals, v);
    else
        fputs("null", out);
}

static void csv_number(FILE *out, double v, int decimals)
{
    if (isfinite(v))
        fprintf(out, "%.*f", decimals, v);
}

/* --peak's fields (attention and decode rows). */
static void json_peak(FILE *out, int available, double gflops, const char *variant,
                      const char *error)
{
    fputs(",\"peak_gflops\":", out);
    if (available) {
        json_number(out, gflops, 3);
        fputs(",\"peak_variant\":", out);
        bench_json_string(out, variant);
    } else {
        fputs("null,\"peak_error\":", out);
        bench_json_string(out, error);
    }
}

static const char *const csv_columns =
    "method,device,n,d,heads,kv_heads,batch,causal,time_ms,time_min_ms,time_max_ms,"
    "gflops,seed,repeat,shape,roof_gflops,peak_gflops,keys_kept,rel_error,lse_error,layer,"
    "heavy_recall,floor_error,dtype,layout,device_bytes,oracle_floor_error,random_floor_error";

/* What traces a row to its build and driver: every JSON row carries it. */
static void json_build_fields(FILE *out, const ps_device_info *device)
{
    fputs(",\"version\":", out);
    bench_json_string(out, ps_version_string());
    fputs(",\"kernel_hash\":", out);
    bench_json_string(out, ps_kernel_source_hash());
    fputs(",\"driver\":", out);
    bench_json_string(out, device ? device->driver_version : "");
}

/* The text header's first line: library, kernels, device, driver, shape. */
static void text_build_line(const bench_report *r)
{
    fprintf(r->out, "prescore-cl %s (kernels %.12s), device %u:%u %s (%s, %s), %s kernels\n",
            ps_version_string(), ps_kernel_source_hash(), r->device->platform_index,
            r->device->device_index, r->device->name, r->device->vendor,
            r->device->driver_version, r->shape);
}

void bench_report_begin(bench_report *r, FILE *out, bench_format format, int with_roof,
                        int with_peak, const ps_device_info *device, const char *shape)
{
    r->out = out;
    r->format = format;
    r->with_roof = with_roof;
    r->with_peak = with_peak;
    r->rows = 0;
    r->table = 0;
    r->device = device;
    r->shape = shape;
}

static void report_header(const bench_report *r)
{
    FILE *out = r->out;

    if (r->format == BENCH_FORMAT_CSV) {
        fprintf(out, "%s\n", csv_columns);
    } else if (r->format == BENCH_FORMAT_TABLE) {
        text_build_line(r);
        fprintf(out, "%-17s %7s %4s %5s %5s %5s %6s %10s %10s %10s %9s", "method", "n", "d",
                "heads", "kv", "batch", "causal", "median_ms", "min_ms", "max_ms", "GFLOP/s");
        if (r->with_roof)
            fprintf(out, " %9s", "roof");
        if (r->with_peak)
            fprintf(out, " %9s", "peak");
        fputc('\n', out);
    }
}

static void report_json_row(FILE *out, const bench_row *row, const ps_device_info *device)
{
    fputs("{\"method\":", out);
    bench_json_string(out, row->method);
    fputs(",\"device\":", out);
    bench_json_string(out, row->device);
    fprintf(out, ",\"n\":%zu,\"d\":%zu,\"heads\":%zu,\"kv_heads\":%zu,\"batch\":%zu,\"causal\":%s",
            row->n, row->d, row->heads, row->kv_heads, row->batch,
            row->causal ? "true" : "false");
    fputs(",\"time_ms\":", out);
    json_number(out, row->time_ms, 4);
    fputs(",\"time_min_ms\":", out);
    json_number(out, row->time_min_ms, 4);
    fputs(",\"time_max_ms\":", out);
    json_number(out, row->time_max_ms, 4);
    fputs(",\"gflops\":", out);
    json_number(out, row->gflops, 3);
    fprintf(out, ",\"seed\":%llu,\"repeat\":%d,\"shape\":", (unsigned long long)row->seed,
            row->repeat);
    bench_json_string(out, row->shape);
    fputs(",\"dtype\":", out);
    bench_json_string(out, row->dtype ? row->dtype : "f32");
    fputs(",\"layout\":", out);
    bench_json_string(out, row->layout ? row->layout : "bhtd");
    if (row->device_bytes)
        fprintf(out, ",\"device_bytes\":%zu", row->device_bytes);
    for (size_t i = 0; i < row->varlen_count; i++) /* the sequence lengths */
        fprintf(out, "%s%u", i ? "," : ",\"varlen\":[",
                (unsigned)(row->varlen_cu[i + 1] - row->varlen_cu[i]));
    if (row->varlen_count)
        fputc(']', out);
    if (row->roof_measured) {
        fputs(",\"roof_gflops\":", out);
        if (row->roof_available) {
            json_number(out, row->roof_gflops, 3);
            fputs(",\"roof_layout\":", out);
            bench_json_string(out, row->roof_layout);
        } else {
            fputs("null", out);
        }
        if (row->roof_error && *row->roof_error) {
            fputs(",\"roof_error\":", out);
            bench_json_string(out, row->roof_error);
        }
    }
    if (row->workload) {
        fputs(",\"workload\":", out);
        bench_json_string(out, row->workload);
    }
    if (row->data) {
        fputs(",\"data\":", out);
        bench_json_string(out, row->data);
        fprintf(out, ",\"layer\":%ld,\"data_heads\":", row->layer);
        bench_json_string(out, row->data_heads ? row->data_heads : "");
    }
    if (row->check_measured) {
        fputs(",\"rel_error\":", out);
        json_number(out, row->rel_error, 6);
        fputs(",\"lse_error\":", out);
        json_number(out, row->lse_error, 6);
        fputs(",\"heavy_recall\":", out);
        json_number(out, row->heavy_recall, 6);
        fputs(",\"floor_error\":", out);
        json_number(out, row->floor_error, 6);
        fputs(",\"oracle_floor_error\":", out);
        json_number(out, row->oracle_floor_error, 6);
        fputs(",\"random_floor_error\":", out);
        json_number(out, row->random_floor_error, 6);
        if (isfinite(row->heavy_mass)) {
            fputs(",\"heavy_mass\":", out);
            json_number(out, row->heavy_mass, 6);
        }
        if (row->est_heads) {
            const char *names[4] = {"head_rel_error", "head_lse_error", "est_rel_error",
                                    "est_lse_error"};
            const double *arrays[4] = {row->head_rel_error, row->head_lse_error,
                                       row->est_rel_error, row->est_lse_error};
            for (int a = 0; a < 4; a++) {
                fprintf(out, ",\"%s\":[", names[a]);
                for (size_t h = 0; h < row->est_heads; h++) {
                    if (h)
                        fputc(',', out);
                    json_number(out, arrays[a][h], 6);
                }
                fputc(']', out);
            }
        }
    }
    if (!row->data)
        fprintf(out, ",\"data_seed\":%llu", (unsigned long long)row->data_seed);
    if (row->params_known) {
        if (row->budget)
            fprintf(out, ",\"budget\":%zu,\"selection\":\"%s\",\"sketch_queries\":%u",
                    row->budget, row->selection ? row->selection : "top", row->sketch_queries);
        fprintf(out, ",\"block\":%zu,\"samples\":%zu,\"global_keys\":%zu,\"lsh_bits\":%u",
                row->block, row->samples, row->global_keys, row->lsh_bits);
    }
    if (row->keys_kept_measured) {
        fputs(",\"keys_kept\":", out);
        json_number(out, row->keys_kept, 1);
    }
    if (row->stage_count) {
        size_t i;
        fputs(",\"stages_ms\":{", out);
        for (i = 0; i < row->stage_count && i < BENCH_MAX_STAGES; ++i) {
            if (i)
                fputc(',', out);
            bench_json_string(out, row->stage_names[i]);
            fputc(':', out);
            json_number(out, row->stage_ms[i], 4);
        }
        fputc('}', out);
    }
    if (row->peak_measured)
        json_peak(out, row->peak_available, row->peak_gflops, row->peak_variant,
                  row->peak_error);
    json_build_fields(out, device);
    fputs("}\n", out);
}

static void report_csv_row(FILE *out, const bench_row *row)
{
    csv_string(out, row->method);
    fputc(',', out);
    csv_string(out, row->device);
    fprintf(out, ",%zu,%zu,%zu,%zu,%zu,%d,", row->n, row->d, row->heads, row->kv_heads,
            row->batch, row->causal);
    csv_number(out, row->time_ms, 4);
    fputc(',', out);
    csv_number(out, row->time_min_ms, 4);
    fputc(',', out);
    csv_number(out, row->time_max_ms, 4);
    fputc(',', out);
    csv_number(out, row->gflops, 3);
    fprintf(out, ",%llu,%d,", (unsigned long long)row->seed, row->repeat);
    csv_string(out, row->shape);
    fputc(',', out);
    if (row->roof_measured && row->roof_available)
        csv_number(out, row->roof_gflops, 3);
    fputc(',', out);
    if (row->peak_measured && row->peak_available)
        csv_number(out, row->peak_gflops, 3);
    fputc(',', out);
    if (row->keys_kept_measured)
        csv_number(out, row->keys_kept, 1);
    fputc(',', out);
    if (row->check_measured)
        csv_number(out, row->rel_error, 6);
    fputc(',', out);
    if (row->check_measured)
        csv_number(out, row->lse_error, 6);
    fputc(',', out);
    if (row->data)
        fprintf(out, "%ld", row->layer);
    fputc(',', out);
    if (row->check_measured)
        csv_number(out, row->heavy_recall, 6);
    fputc(',', out);
    if (row->check_measured)
        csv_number(out, row->floor_error, 6);
    fputc(',', out);
    csv_string(out, row->dtype ? row->dtype : "f32");
    fputc(',', out);
    csv_string(out, row->layout ? row->layout : "bhtd");
    fputc(',', out);
    if (row->device_bytes)
        fprintf(out, "%zu", row->device_bytes);
    fputc(',', out);
    if (row->check_measured)
        csv_number(out, row->oracle_floor_error, 6);
    fputc(',', out);
    if (row->check_measured)
        csv_number(out, row->random_floor_error, 6);
    fputc('\n', out);
}

static void report_table_row(const bench_report *r, const bench_row *row)
{
    FILE *out = r->out;

    fprintf(out, "%-17s %7zu %4zu %5zu %5zu %5zu %6s %10.3f %10.3f %10.3f %9.2f", row->method,
            row->n, row->d, row->heads, row->kv_heads, row->batch, row->causal ? "yes" : "no",
            row->time_ms, row->time_min_ms, row->time_max_ms, row->gflops);
    if (r->with_roof) {
        if (row->roof_measured && row->roof_available)
            fprintf(out, " %9.2f", row->roof_gflops);
        else
            fprintf(out, " %9s", "n/a");
    }
    if (r->with_peak) {
        if (row->peak_measured && row->peak_available)
            fprintf(out, " %9.2f", row->peak_gflops);
        else
            fprintf(out, " %9s", "n/a");
    }
    if (row->data)
        fprintf(out, "  layer %ld heads %s", row->layer, row->data_heads ? row->data_heads : "");
    if (row->keys_kept_measured)
        fprintf(out, "  kept %.1f", row->keys_kept);
    if (row->dtype && row->layout &&
        (strcmp(row->dtype, "f32") != 0 || strcmp(row->layout, "bhtd") != 0))
        fprintf(out, "  %s %s", row->dtype, row->layout);
    if (row->check_measured)
        fprintf(out, "  rel_error %.4f lse_error %.4f heavy_recall %.4f floor_error %.4f "
                     "(oracle %.4f, random %.4f)",
                row->rel_error, row->lse_error, row->heavy_recall, row->floor_error,
                row->oracle_floor_error, row->random_floor_error);
    {
        size_t i;
        for (i = 0; i < row->stage_count && i < BENCH_MAX_STAGES; ++i)
            fprintf(out, "%s%s %.3f ms", i ? ", " : "; ", row->stage_names[i],
                    row->stage_ms[i]);
    }
    fputc('\n', out);
}

void bench_report_row(bench_report *r, const bench_row *row)
{
    if (r->rows == 0)
        report_header(r);
    switch (r->format) {
    case BENCH_FORMAT_JSON:
        report_json_row(r->out, row, r->device);
        break;
    case BENCH_FORMAT_CSV:
        report_csv_row(r->out, row);
        break;
    default:
        report_table_row(r, row);
        break;
    }
    r->rows++;
    fflush(r->out);
}

/* ---------------------------------------------------------- table mode */

/* Mean, min and max of the finite values among @p count (stride-spaced)
 * doubles; all NaN when none is finite. */
typedef struct seed_stats {
    double mean, min, max;
} seed_stats;

static seed_stats stats_over(const bench_table_row *row, size_t offset)
{
    seed_stats st = {NAN, NAN, NAN};
    double sum = 0.0;
    size_t used = 0;
    for (size_t i = 0; i < row->seed_count; i++) {
        const double v = *(const double *)((const char *)&row->seeds[i] + offset);
        if (!isfinite(v))
            continue;
        st.min = used == 0 || v < st.min ? v : st.min;
        st.max = used == 0 || v > st.max ? v : st.max;
        sum += v;
        used++;
    }
    if (used)
        st.mean = sum / (double)used;
    return st;
}

#define SEED_STATS(row, field) stats_over((row), offsetof(bench_seed_result, field))

static double table_speedup(const bench_table_row *row)
{
    const seed_stats t = SEED_STATS(row, time_ms);
    return t.mean > 0.0 ? row->exact_time_ms / t.mean : NAN;
}

static double table_gflops(const bench_table_row *row)
{
    const seed_stats t = SEED_STATS(row, time_ms);
    double f = 4.0 * (double)row->n * (double)row->n * (double)row->d * (double)row->heads *
               (double)row->batch;
    if (row->causal)
        f /= 2.0;
    return t.mean > 0.0 ? f / (t.mean * 1e6) : NAN;
}

static const char *const table_metrics[] = {"rel_error",          "lse_error",
                                            "heavy_recall",       "floor_error",
                                            "oracle_floor_error", "random_floor_error"};
static const size_t table_metric_offsets[] = {
    offsetof(bench_seed_result, rel_error),          offsetof(bench_seed_result, lse_error),
    offsetof(bench_seed_result, heavy_recall),       offsetof(bench_seed_result, floor_error),
    offsetof(bench_seed_result, oracle_floor_error), offsetof(bench_seed_result, random_floor_error)};
#define TABLE_METRICS 6

static const char *const table_csv_columns =
    "workload,method,device,n,d,heads,kv_heads,batch,causal,seeds,repeat,time_ms,"
    "time_min_ms,time_max_ms,speedup,gflops,keys_kept,rel_error,rel_error_min,"
    "rel_error_max,lse_error,lse_error_min,lse_error_max,heavy_recall,heavy_recall_min,"
    "heavy_recall_max,floor_error,floor_error_min,floor_error_max,oracle_floor_error,"
    "oracle_floor_error_min,oracle_floor_error_max,random_floor_error,"
    "random_floor_error_min,random_floor_error_max,heavy_mass,budget,block,"
    "samples,global_keys,lsh_bits,data_seed";

static void table_header(const bench_report *r)
{
    FILE *out = r->out;

    if (r->format == BENCH_FORMAT_CSV) {
        fprintf(out, "%s\n", table_csv_columns);
    } else if (r->format == BENCH_FORMAT_TABLE) {
        text_build_line(r);
        fprintf(out, "mean [min..max] over the method seeds; speedup = exact time / time; "
                     "errors against exact on the same inputs\n");
        fprintf(out, "%-8s %6s %-17s %-24s %7s %6s %-24s %-9s %-24s %-9s\n", "workload", "n",
                "method", "time_ms", "speedup", "kept", "rel_error", "lse_error",
                "heavy_recall", "floor_err");
    }
}

/* "mean [min..max]", or just the mean when the seeds agree. */
static void format_spread(char *buf, size_t size, seed_stats st, int decimals)
{
    if (!isfinite(st.mean))
        snprintf(buf, size, "-");
    else if (st.max - st.min <= 0.5 * pow(10.0, -decimals))
        snprintf(buf, size, "%.*f", decimals, st.mean);
    else
        snprintf(buf, size, "%.*f [%.*f..%.*f]", decimals, st.mean, decimals, st.min, decimals,
                 st.max);
}

static void table_text_row(FILE *out, const bench_table_row *row)
{
    char time_s[64], rel_s[64], lse_s[32], recall_s[64], floor_s[32], kept_s[16];
    const seed_stats kept = SEED_STATS(row, keys_kept);
    const seed_stats lse = SEED_STATS(row, lse_error), fl = SEED_STATS(row, floor_error);

    format_spread(time_s, sizeof time_s, SEED_STATS(row, time_ms), 1);
    format_spread(rel_s, sizeof rel_s, SEED_STATS(row, rel_error), 3);
    format_spread(recall_s, sizeof recall_s, SEED_STATS(row, heavy_recall), 3);
    snprintf(lse_s, sizeof lse_s, isfinite(lse.mean) ? "%.3f" : "-", lse.mean);
    snprintf(floor_s, sizeof floor_s, isfinite(fl.mean) ? "%.3f" : "-", fl.mean);
    snprintf(kept_s, sizeof kept_s, isfinite(kept.mean) ? "%.0f" : "-", kept.mean);
    fprintf(out, "%-8s %6zu %-17s %-24s %7.2f %6s %-24s %-9s %-24s %-9s\n", row->workload,
            row->n, row->method, time_s, table_speedup(row), kept_s, rel_s, lse_s, recall_s,
            floor_s);
}

static void json_field(FILE *out, const char *name, double v, int decimals)
{
    fprintf(out, ",\"%s\":", name);
    json_number(out, v, decimals);
}

static void table_json_row(FILE *out, const bench_table_row *row, const ps_device_info *device)
{
    const seed_stats t = SEED_STATS(row, time_ms);
    size_t i, m;

    fputs("{\"mode\":\"table\",\"workload\":", out);
    bench_json_string(out, row->workload);
    fputs(",\"method\":", out);
    bench_json_string(out, row->method);
    fputs(",\"device\":", out);
    bench_json_string(out, row->device);
    fprintf(out, ",\"n\":%zu,\"d\":%zu,\"heads\":%zu,\"kv_heads\":%zu,\"batch\":%zu,\"causal\":%s",
            row->n, row->d, row->heads, row->kv_heads, row->batch,
            row->causal ? "true" : "false");
    fprintf(out, ",\"budget\":%zu,\"block\":%zu,\"samples\":%zu,\"global_keys\":%zu,"
                 "\"lsh_bits\":%u,\"repeat\":%d,\"data_seed\":%llu",
            row->budget, row->block, row->samples, row->global_keys, row->lsh_bits,
            row->repeat, (unsigned long long)row->data_seed);
    fprintf(out, ",\"seed\":%llu,\"seeds\":[",
            (unsigned long long)(row->seed_count ? row->seeds[0].seed : 0));
    for (i = 0; i < row->seed_count; i++)
        fprintf(out, "%s%llu", i ? "," : "", (unsigned long long)row->seeds[i].seed);
    fputc(']', out);
    json_field(out, "time_ms", t.mean, 4);
    json_field(out, "time_min_ms", t.min, 4);
    json_field(out, "time_max_ms", t.max, 4);
    json_field(out, "speedup", table_speedup(row), 4);
    json_field(out, "gflops", table_gflops(row), 3);
    json_field(out, "keys_kept", SEED_STATS(row, keys_kept).mean, 1);
    for (m = 0; m < TABLE_METRICS; m++) {
        const seed_stats st = stats_over(row, table_metric_offsets[m]);
        char name[48];
        json_field(out, table_metrics[m], st.mean, 6);
        snprintf(name, sizeof name, "%s_min", table_metrics[m]);
        json_field(out, name, st.min, 6);
        snprintf(name, sizeof name, "%s_max", table_metrics[m]);
        json_field(out, name, st.max, 6);
    }
    if (isfinite(row->heavy_mass))
        json_field(out, "heavy_mass", row->heavy_mass, 6);
    if (row->stage_count) {
        fputs(",\"stages_ms\":{", out);
        for (i = 0; i < row->stage_count && i < BENCH_MAX_STAGES; i++) {
            double sum = 0.0;
            for (size_t k = 0; k < row->seed_count; k++)
                sum += row->seeds[k].stage_ms[i];
            if (i)
                fputc(',', out);
            bench_json_string(out, row->stage_names[i]);
            fputc(':', out);
            json_number(out, row->seed_count ? sum / (double)row->seed_count : NAN, 4);
        }
        fputc('}', out);
    }
    fputs(",\"per_seed\":[", out);
    for (i = 0; i < row->seed_count; i++) {
        const bench_seed_result *sr = &row->seeds[i];
        fprintf(out, "%s{\"seed\":%llu", i ? "," : "", (unsigned long long)sr->seed);
        json_field(out, "time_ms", sr->time_ms, 4);
        json_field(out, "keys_kept", sr->keys_kept, 1);
        for (m = 0; m < TABLE_METRICS; m++)
            json_field(out, table_metrics[m],
                       *(const double *)((const char *)sr + table_metric_offsets[m]), 6);
        fputc('}', out);
    }
    fputs("],\"shape\":", out);
    bench_json_string(out, row->shape);
    json_build_fields(out, device);
    fputs("}\n", out);
}

static void table_csv_row(FILE *out, const bench_table_row *row)
{
    const seed_stats t = SEED_STATS(row, time_ms);
    size_t i, m;

    csv_string(out, row->workload);
    fputc(',', out);
    csv_string(out, row->method);
    fputc(',', out);
    csv_string(out, row->device);
    fprintf(out, ",%zu,%zu,%zu,%zu,%zu,%d,", row->n, row->d, row->heads, row->kv_heads,
            row->batch, row->causal);
    for (i = 0; i < row->seed_count; i++)
        fprintf(out, "%s%llu", i ? ";" : "", (unsigned long long)row->seeds[i].seed);
    fprintf(out, ",%d,", row->repeat);
    csv_number(out, t.mean, 4);
    fputc(',', out);
    csv_number(out, t.min, 4);
    fputc(',', out);
    csv_number(out, t.max, 4);
    fputc(',', out);
    csv_number(out, table_speedup(row), 4);
    fputc(',', out);
    csv_number(out, table_gflops(row), 3);
    fputc(',', out);
    csv_number(out, SEED_STATS(row, keys_kept).mean, 1);
    for (m = 0; m < TABLE_METRICS; m++) {
        const seed_stats st = stats_over(row, table_metric_offsets[m]);
        fputc(',', out);
        csv_number(out, st.mean, 6);
        fputc(',', out);
        csv_number(out, st.min, 6);
        fputc(',', out);
        csv_number(out, st.max, 6);
    }
    fputc(',', out);
    csv_number(out, row->heavy_mass, 6);
    fprintf(out, ",%zu,%zu,%zu,%zu,%u,%llu\n", row->budget, row->block, row->samples,
            row->global_keys, row->lsh_bits, (unsigned long long)row->data_seed);
}

void bench_report_table_row(bench_report *r, const bench_table_row *row)
{
    if (r->rows == 0)
        table_header(r);
    switch (r->format) {
    case BENCH_FORMAT_JSON:
        table_json_row(r->out, row, r->device);
        break;
    case BENCH_FORMAT_CSV:
        table_csv_row(r->out, row);
        break;
    default:
        table_text_row(r->out, row);
        break;
    }
    r->rows++;
    fflush(r->out);
}

/* ---------------------------------------------------------------- decode */

static void json_string_field(FILE *out, const char *name, const char *v)
{
    fprintf(out, ",\"%s\":", name);
    bench_json_string(out, v);
}

static void decode_json_row(FILE *out, const bench_decode_row *row, const ps_device_info *device)
{
    fputs("{\"mode\":\"decode\",\"method\":", out);
    bench_json_string(out, row->method);
    json_string_field(out, "score", row->score);
    json_string_field(out, "device", row->device);
    fprintf(out,
            ",\"n\":%zu,\"steps\":%zu,\"decode_queries\":%zu,\"capacity\":%zu,\"d\":%zu,"
            "\"heads\":%zu,\"kv_heads\":%zu,\"batch\":%zu",
            row->n, row->steps, row->decode_queries, row->capacity, row->d, row->heads,
            row->kv_heads, row->batch);
    json_string_field(out, "dtype", row->dtype);
    json_string_field(out, "shape", row->shape);
    json_string_field(out, "workload", row->workload);
    if (row->data) {
        json_string_field(out, "data", row->data);
        fprintf(out, ",\"layer\":%ld", row->layer);
        json_string_field(out, "data_heads", row->data_heads ? row->data_heads : "");
    } else {
        fprintf(out, ",\"data_seed\":%llu", (unsigned long long)row->data_seed);
    }
    fprintf(out, ",\"seed\":%llu", (unsigned long long)row->seed);
    if (row->budget)
        fprintf(out, ",\"budget\":%zu", row->budget);
    else
        fputs(",\"budget\":null", out);
    json_field(out, "keep_ratio", row->budget ? NAN : row->keep_ratio, 6);
    fprintf(out, ",\"sink\":%zu,\"window\":%zu", row->sink, row->window);
    json_field(out, "rescore_growth", row->rescore_growth, 4);
    json_field(out, "prefill_ms", row->prefill_ms, 4);
    json_field(out, "append_ms", row->append_ms, 4);
    json_field(out, "append_ms_p90", row->append_ms_p90, 4);
    json_field(out, "append_ms_max", row->append_ms_max, 4);
    json_field(out, "decode_ms", row->decode_ms, 4);
    json_field(out, "decode_ms_p90", row->decode_ms_p90, 4);
    json_field(out, "decode_ms_max", row->decode_ms_max, 4);
    json_field(out, "exact_decode_ms", row->exact_decode_ms, 4);
    json_field(out, "exact_decode_ms_p90", row->exact_decode_ms_p90, 4);
    json_field(out, "exact_decode_ms_max", row->exact_decode_ms_max, 4);
    json_field(out, "tokens_per_s", row->tokens_per_s, 2);
    json_field(out, "exact_tokens_per_s", row->exact_tokens_per_s, 2);
    json_field(out, "speedup", row->speedup, 4);
    fprintf(out, ",\"device_bytes\":%zu,\"length\":%zu,\"kept\":%zu,\"attended\":%zu,"
                 "\"rescores\":%zu",
            row->device_bytes, row->length, row->kept, row->attended, row->rescores);
    json_field(out, "exact_bytes", row->exact_bytes, 0);
    json_field(out, "bandwidth_gbs", row->bandwidth_gbs, 3);
    if (row->bandwidth_measured) {
        json_field(out, "peak_bandwidth_gbs", row->peak_bandwidth_gbs, 3);
        if (row->peak_bandwidth_variant && *row->peak_bandwidth_variant)
            json_string_field(out, "peak_bandwidth_variant", row->peak_bandwidth_variant);
        else
            json_string_field(out, "bandwidth_error", row->bandwidth_error);
        json_field(out, "exact_decode_bandwidth_ratio", row->exact_decode_bandwidth_ratio, 4);
    }
    if (row->check_measured) {
        json_field(out, "rel_error", row->rel_error, 6);
        json_field(out, "rel_error_max", row->rel_error_max, 6);
        json_field(out, "lse_error", row->lse_error, 6);
    }
    if (row->peak_measured)
        json_peak(out, row->peak_available, row->peak_gflops, row->peak_variant,
                  row->peak_error);
    json_build_fields(out, device);
    fputs("}\n", out);
}

static void decode_text_row(FILE *out, const bench_decode_row *row)
{
    fprintf(out, "decode %s n=%zu steps=%zu q=%zu heads=%zu/%zu d=%zu %s", row->method, row->n,
            row->steps, row->decode_queries, row->heads, row->kv_heads, row->d, row->dtype);
    if (row->data)
        fprintf(out, " %s layer %ld", row->data, row->layer);
    else
        fprintf(out, " %s", row->workload);
    fprintf(out, ": prefill %.2f ms; append %.3f [p90 %.3f] ms; decode %.3f [p90 %.3f] ms, "
                 "exact %.3f [p90 %.3f] ms, speedup %.2f; %.1f tokens/s; kept %zu, "
                 "attended %zu of %zu; rescores %zu; %.1f MiB",
            row->prefill_ms, row->append_ms, row->append_ms_p90, row->decode_ms,
            row->decode_ms_p90, row->exact_decode_ms, row->exact_decode_ms_p90, row->speedup,
            row->tokens_per_s, row->kept, row->attended, row->length, row->rescores,
            (double)row->device_bytes / (1024.0 * 1024.0));
    fprintf(out, "; exact reads %.2f GB/s", row->bandwidth_gbs);
    if (row->bandwidth_measured && row->peak_bandwidth_gbs > 0.0)
        fprintf(out, " (measured %.2f GB/s, %s; exact takes %.2fx the read time)",
                row->peak_bandwidth_gbs, row->peak_bandwidth_variant,
                row->exact_decode_bandwidth_ratio);
    if (row->check_measured)
        fprintf(out, "; rel_error %.4g [max %.4g] lse_error %.4g", row->rel_error,
                row->rel_error_max, row->lse_error);
    if (row->peak_measured && row->peak_available)
        fprintf(out, "; peak %.1f GFLOP/s", row->peak_gflops);
    fputc('\n', out);
}

void bench_report_decode_row(bench_report *r, const bench_decode_row *row)
{
    if (r->rows == 0 && r->format == BENCH_FORMAT_TABLE)
        text_build_line(r);
    if (r->format == BENCH_FORMAT_JSON)
        decode_json_row(r->out, row, r->device);
    else
        decode_text_row(r->out, row);
    r->rows++;
    fflush(r->out);
}

void bench_report_end(bench_report *r)
{
    fflush(r->out);
}

/* Sizes for people: the largest binary unit that keeps an integer part. */
static void human_bytes(char *buf, size_t size, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;

    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    if (u == 0 || v == (double)(uint64_t)v)
        snprintf(buf, size, "%.0f %s", v, units[u]);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
}

void bench_report_devices(FILE *out, bench_format format, const ps_device_info *infos,
                          size_t count)
{
    size_t i;

    if (format == BENCH_FORMAT_CSV)
        fputs("index,type,name,vendor,platform,driver_version,device_version,"
              "compute_units,local_mem_size,local_mem_is_global,max_work_group_size,"
              "max_mem_alloc_size,global_mem_size\n",
              out);
    if (format == BENCH_FORMAT_TABLE && count == 0)
        fputs("no OpenCL devices\n", out);
    for (i = 0; i < count; ++i) {
        const ps_device_info *di = &infos[i];
        if (format == BENCH_FORMAT_JSON) {
            fprintf(out, "{\"index\":\"%u:%u\",\"type\":\"%s\",\"name\":", di->platform_index,
                    di->device_index, ps_device_type_string(di->type));
            bench_json_string(out, di->name);
            fputs(",\"vendor\":", out);
            bench_json_string(out, di->vendor);
            fputs(",\"platform\":", out);
            bench_json_string(out, di->platform_name);
            fputs(",\"driver_version\":", out);
            bench_json_string(out, di->driver_version);
            fputs(",\"device_version\":", out);
            bench_json_string(out, di->device_version);
            fprintf(out,
                    ",\"compute_units\":%u,\"local_mem_size\":%llu,\"local_mem_is_global\":%s,"
                    "\"max_work_group_size\":%zu,\"max_mem_alloc_size\":%llu,"
                    "\"global_mem_size\":%llu}\n",
                    di->compute_units, (unsigned long long)di->local_mem_size,
                    di->local_mem_is_global ? "true" : "false", di->max_work_group_size,
                    (unsigned long long)di->max_mem_alloc_size,
                    (unsigned long long)di->global_mem_size);
        } else if (format == BENCH_FORMAT_CSV) {
            fprintf(out, "%u:%u,%s,", di->platform_index, di->device_index,
                    ps_device_type_string(di->type));
            csv_string(out, di->name);
            fputc(',', out);
            csv_string(out, di->vendor);
            fputc(',', out);
            csv_string(out, di->platform_name);
            fputc(',', out);
            csv_string(out, di->driver_version);
            fputc(',', out);
            csv_string(out, di->device_version);
            fprintf(out, ",%u,%llu,%d,%zu,%llu,%llu\n", di->compute_units,
                    (unsigned long long)di->local_mem_size, di->local_mem_is_global ? 1 : 0,
                    di->max_work_group_size, (unsigned long long)di->max_mem_alloc_size,
                    (unsigned long long)di->global_mem_size);
        } else {
            char local[32], alloc[32], global[32];
            human_bytes(local, sizeof local, di->local_mem_size);
            human_bytes(alloc, sizeof alloc, di->max_mem_alloc_size);
            human_bytes(global, sizeof global, di->global_mem_size);
            fprintf(out, "%u:%u  %-11s %s\n", di->platform_index, di->device_index,
                    ps_device_type_string(di->type), di->name);
            fprintf(out, "      vendor %s; platform %s; driver %s; %s\n", di->vendor,
                    di->platform_name, di->driver_version, di->device_version);
            fprintf(out,
                    "      %u compute units; local memory %s (%s); max work-group %zu; "
                    "max alloc %s; global memory %s\n",
                    di->compute_units, local,
                    di->local_mem_is_global ? "emulated in global memory" : "dedicated",
                    di->max_work_group_size, alloc, global);
        }
    }
    fflush(out);
}

void bench_report_version(FILE *out, bench_format format, const ps_device_info *device,
                          const char *shape, const char *no_device)
{
    if (format == BENCH_FORMAT_JSON) {
        fputs("{\"version\":", out);
        bench_json_string(out, ps_version_string());
        json_string_field(out, "kernel_hash", ps_kernel_source_hash());
        if (device) {
            fprintf(out, ",\"device_index\":\"%u:%u\"", device->platform_index,
                    device->device_index);
            json_string_field(out, "device", device->name);
            json_string_field(out, "vendor", device->vendor);
            json_string_field(out, "driver", device->driver_version);
            json_string_field(out, "device_version", device->device_version);
            json_string_field(out, "shape", shape);
        } else {
            json_string_field(out, "no_device", no_device);
        }
        fputs("}\n", out);
        return;
    }
    fprintf(out, "prescore-cl %s\nkernel sources sha256 %s\n", ps_version_string(),
            ps_kernel_source_hash());
    if (device)
        fprintf(out, "device %u:%u %s (%s), driver %s, %s, %s kernels\n",
                device->platform_index, device->device_index, device->name, device->vendor,
                device->driver_version, device->device_version, shape);
    else
        fprintf(out, "no device: %s\n", no_device);
}
