/* Command-line parsing of prescore-bench (getopt_long). Numbers are checked
 * in full (no sign, no trailing characters, no overflow), so that a typo is an
 * error rather than a silently different benchmark. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_method_entry {
    const char *name;
    ps_method method;
    ps_score score;
    int score_only;
} bench_method_entry;

static const bench_method_entry bench_methods[] = {
    {"exact", PS_METHOD_EXACT, PS_SCORE_KMEANS, 0},
    {"hyper", PS_METHOD_HYPER, PS_SCORE_NONE, 0},
    {"prescore", PS_METHOD_PRESCORE, PS_SCORE_KMEANS, 0},
    {"prescore-kmeans", PS_METHOD_PRESCORE, PS_SCORE_KMEANS, 0},
    {"prescore-leverage", PS_METHOD_PRESCORE, PS_SCORE_LEVERAGE, 0},
    {"prescore-norm", PS_METHOD_PRESCORE, PS_SCORE_NORM, 0},
    {"score-kmeans", PS_METHOD_PRESCORE, PS_SCORE_KMEANS, 1},
    {"score-leverage", PS_METHOD_PRESCORE, PS_SCORE_LEVERAGE, 1},
    {"score-norm", PS_METHOD_PRESCORE, PS_SCORE_NORM, 1},
};
#define BENCH_NUM_METHODS (sizeof bench_methods / sizeof bench_methods[0])

enum {
    OPT_LIST_DEVICES = 256,
    OPT_DEVICE,
    OPT_METHOD,
    OPT_N,
    OPT_D,
    OPT_HEADS,
    OPT_KV_HEADS,
    OPT_BATCH,
    OPT_CAUSAL,
    OPT_REPEAT,
    OPT_SEED,
    OPT_JSON,
    OPT_CSV,
    OPT_GEMM_ROOF,
    OPT_PEAK,
    OPT_SHAPE,
    OPT_BUDGET,
    OPT_CLUSTERS,
    OPT_ITERS,
    OPT_BLOCK,
    OPT_SAMPLES,
    OPT_LSH_BITS,
    OPT_MIN_SEQ_LEN,
    OPT_GLOBAL,
    OPT_CHECK,
    OPT_WORKLOAD,
    OPT_DATA,
    OPT_LAYER,
    OPT_HEAD,
    OPT_DATA_SEED,
    OPT_TABLE,
    OPT_EQUAL_BUDGET,
    OPT_DTYPE,
    OPT_LAYOUT,
    OPT_VARLEN,
    OPT_DECODE,
    OPT_STEPS,
    OPT_DECODE_QUERIES,
    OPT_SINK,
    OPT_WINDOW,
    OPT_KEEP_RATIO,
    OPT_SELECTION,
    OPT_SKETCH,
    OPT_PROBES,
    OPT_TOLERANCE,
    OPT_RESCORE_GROWTH,
    OPT_VERSION
};

static const struct option bench_long_options[] = {
    {"help", no_argument, NULL, 'h'},
    {"verbose", no_argument, NULL, 'v'},
    {"list-devices", no_argument, NULL, OPT_LIST_DEVICES},
    {"version", no_argument, NULL, OPT_VERSION},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"method", required_argument, NULL, OPT_METHOD},
    {"n", required_argument, NULL, OPT_N},
    {"d", required_argument, NULL, OPT_D},
    {"heads", required_argument, NULL, OPT_HEADS},
    {"kv-heads", required_argument, NULL, OPT_KV_HEADS},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"causal", no_argument, NULL, OPT_CAUSAL},
    {"repeat", required_argument, NULL, OPT_REPEAT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", no_argument, NULL, OPT_JSON},
    {"csv", no_argument, NULL, OPT_CSV},
    {"gemm-roof", no_argument, NULL, OPT_GEMM_ROOF},
    {"peak", no_argument, NULL, OPT_PEAK},
    {"shape", required_argument, NULL, OPT_SHAPE},
    {"budget", required_argument, NULL, OPT_BUDGET},
    {"clusters", required_argument, NULL, OPT_CLUSTERS},
    {"iters", required_argument, NULL, OPT_ITERS},
    {"block", required_argument, NULL, OPT_BLOCK},
    {"samples", required_argument, NULL, OPT_SAMPLES},
    {"lsh-bits", required_argument, NULL, OPT_LSH_BITS},
    {"min-seq-len", required_argument, NULL, OPT_MIN_SEQ_LEN},
    {"global", required_argument, NULL, OPT_GLOBAL},
    {"check", no_argument, NULL, OPT_CHECK},
    {"workload", required_argument, NULL, OPT_WORKLOAD},
    {"data", required_argument, NULL, OPT_DATA},
    {"layer", required_argument, NULL, OPT_LAYER},
    {"head", required_argument, NULL, OPT_HEAD},
    {"data-seed", required_argument, NULL, OPT_DATA_SEED},
    {"table", no_argument, NULL, OPT_TABLE},
    {"equal-budget", no_argument, NULL, OPT_EQUAL_BUDGET},
    {"dtype", required_argument, NULL, OPT_DTYPE},
    {"layout", required_argument, NULL, OPT_LAYOUT},
    {"varlen", required_argument, NULL, OPT_VARLEN},
    {"decode", no_argument, NULL, OPT_DECODE},
    {"steps", required_argument, NULL, OPT_STEPS},
    {"decode-queries", required_argument, NULL, OPT_DECODE_QUERIES},
    {"sink", required_argument, NULL, OPT_SINK},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"keep-ratio", required_argument, NULL, OPT_KEEP_RATIO},
    {"selection", required_argument, NULL, OPT_SELECTION},
    {"sketch", required_argument, NULL, OPT_SKETCH},
    {"probes", required_argument, NULL, OPT_PROBES},
    {"tolerance", required_argument, NULL, OPT_TOLERANCE},
    {"rescore-growth", required_argument, NULL, OPT_RESCORE_GROWTH},
    {NULL, 0, NULL, 0},
};

void bench_options_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options]\n"
            "Without options (or with only --device, --shape, --json, --csv, -v, or\n"
            "--table): the built-in workload table, workloads heavy and gaussian,\n"
            "n = 4096..32768, d = 64, exact and every method at an equal interaction\n"
            "budget, 3 seeds each, with errors against exact (bench/README.md).\n"
            "With other options: one method and shape per row (default: exact, n = %d,\n"
            "d = %d, 1 head, batch 1, %d timed runs after a warm-up). Results go to\n"
            "stdout, progress to stderr.\n"
            "\n"
            "Table:\n"
            "  --table             the table; takes only --n, --d, --repeat (default 3),\n"
            "                      --seed (first method seed), --data-seed and the\n"
            "                      device and output options\n"
            "\n"
            "Device:\n"
            "  --list-devices      list every OpenCL device and exit\n"
            "  --version           library version, kernel-source hash, the chosen\n"
            "                      device and its driver (--json: one object); exit\n"
            "  --device S          gpu, cpu, P:D or a name substring (default:\n"
            "                      PRESCORE_DEVICE, else first GPU, else first device)\n"
            "  --shape S           kernel shape: auto (default), cpu or gpu\n"
            "Method:\n"
            "  --method M          exact (default), hyper, prescore, prescore-kmeans,\n"
            "                      prescore-leverage, prescore-norm, score-kmeans,\n"
            "                      score-leverage, score-norm\n"
            "Shape:\n"
            "  --n N[,N...]        tokens, n_q = n_k; a list gives one row each\n"
            "  --d D               head dim, d = d_v (default %d)\n"
            "  --heads H           query heads (default 1)\n"
            "  --kv-heads H        key/value heads (default: heads)\n"
            "  --batch B           batch size (default 1)\n"
            "  --causal            causal mask\n"
            "Budgets (0 or absent: the library default):\n"
            "  --budget M          keys kept by pre-scoring (default min(n, 4096))\n"
            "  --clusters C --iters I --block B --samples S\n"
            "  --lsh-bits R --min-seq-len L --global G (global keys; default: the library's\n"
            "                      automatic min(64, kept/8); 0: none)\n"
            "  --sink S --window W always keep the first S and last W keys (decode: W 256)\n"
            "  --keep-ratio R      keep this share of the keys instead of a budget\n"
            "  --selection S       auto (default: the library's, stratified for k-means),\n"
            "                      top (the top-scored keys), weighted (the global keys\n"
            "                      plus keys drawn uniformly, each with the log-weight of\n"
            "                      the keys it stands for) or stratified (weighted, the\n"
            "                      draw shared out over the k-means clusters)\n"
            "  --sketch Q          weighted: heavy and global keys by the attention mass of\n"
            "                      Q sampled queries per head (0: by the score; default:\n"
            "                      the library's, 32 where the plan can take it)\n"
            "  --probes P          error estimate from P probe rows per head (with --check:\n"
            "                      per-head estimates beside the measured errors in JSON)\n"
            "  --tolerance T       with --probes: recompute heads estimated above T exactly\n"
            "  --rescore-growth G  key cache: score afresh after growing by G (default 1)\n"
            "Measurement:\n"
            "  --repeat R          timed runs, median reported (default %d)\n"
            "  --seed X            method seed (default %d)\n"
            "  --dtype T           storage of Q, K, V, O: f32 (default), f16, or f16kv\n"
            "                      (fp16 K and V, fp32 Q and O)\n"
            "  --layout L          bhtd (default, [batch, head, token, dim]) or bthd\n"
            "  --varlen L1,L2,...  a variable-length batch: sequences of these lengths\n"
            "                      packed along the tokens (n = their sum; no --n, --batch)\n"
            "  --data-seed X       seed of the inputs (default 42, independent of --seed)\n"
            "  --equal-budget      hyper and prescore-*: block, samples, global keys and\n"
            "                      LSH bits of the default prescore plan (as the table)\n"
            "  --peak              also measure the device's fp32 FMA peak\n"
            "  --gemm-roof         also time CLBlast SGEMM Q*K^T for the same n, d\n"
            "  --check             also run exact attention on the device and report\n"
            "                      rel_error, lse_error, heavy_recall, floor_error\n"
            "Decode (the key cache; bench/README.md \"Decode\"):\n"
            "  --decode            prefill --n keys into a ps_kv_cache, then --steps times\n"
            "                      append one key and decode against the cache and exact;\n"
            "                      defaults: method prescore, budget min(n, 4096), window\n"
            "                      256, 8 KV heads (heads = KV heads), text or --json\n"
            "  --steps T           decode steps (default %d)\n"
            "  --decode-queries Q  queries per decode call (default 1)\n"
            "Inputs:\n"
            "  --workload W        gaussian (iid N(0,1), default), clusters (Q and K\n"
            "                      rows near shared centres, 64 rows per centre) or\n"
            "                      heavy (16 planted keys per KV head with ~65%% of\n"
            "                      each query's softmax mass)\n"
            "  --data F            recorded Q/K/V (docs/DATA.md) instead: a PSQKV file, an\n"
            "                      .npy [layers, heads, 3, n, d], q.npy,k.npy,v.npy, or a\n"
            "                      .safetensors file with tensors q, k, v;\n"
            "                      n and d from the file, one row per layer, the\n"
            "                      layer's stored heads as heads (no --n/--d/--heads)\n"
            "  --layer L           with --data: only model layer L (default: all)\n"
            "  --head H            with --data: only model head H (default: all)\n"
            "Output:\n"
            "  --json              one JSON object per line\n"
            "  --csv               a header and one row per result\n"
            "  -v, --verbose       library build and cache messages on stderr\n"
            "  -h, --help          this text\n"
            "\n"
            "Exit status: 0 success, 1 error, 2 method or shape not supported by\n"
            "this library or device.\n",
            prog, BENCH_DEFAULT_N, BENCH_DEFAULT_D, BENCH_DEFAULT_REPEAT, BENCH_DEFAULT_D,
            BENCH_DEFAULT_REPEAT, BENCH_DEFAULT_SEED, BENCH_DECODE_STEPS);
}

/* Parses a whole decimal number; a sign, an empty string or trailing
 * characters are errors. */
static int parse_u64(const char *text, uint64_t *value)
{
    char *end = NULL;
    unsigned long long v;

    if (!text || *text < '0' || *text > '9')
        return 1;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return 1;
    *value = (uint64_t)v;
    return 0;
}

static int parse_size(const char *opt, const char *text, int allow_zero, size_t *out)
{
    uint64_t v;

    if (parse_u64(text, &v) || v > (uint64_t)(size_t)-1 || (!allow_zero && v == 0)) {
        fprintf(stderr, "prescore-bench: --%s expects a %s integer, got '%s'\n", opt,
                allow_zero ? "non-negative" : "positive", text);
        return 1;
    }
    *out = (size_t)v;
    return 0;
}

/* A finite number in [0, @p max] for --name. */
static int parse_share(const char *opt, const char *text, double max, float *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v) || v < 0.0 || v > max) {
        fprintf(stderr, "prescore-bench: --%s expects a number in [0, %g], got '%s'\n", opt,
                max, text);
        return 1;
    }
    *out = (float)v;
    return 0;
}

/* A comma list of positive sizes for --name into values (at most
 * BENCH_MAX_SIZES); zero allowed with allow_zero. */
static int parse_size_list(const char *name, const char *text, int allow_zero, size_t *values,
                           size_t *count)
{
    const char *p = text;

    *count = 0;
    for (;;) {
        char item[32];
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);

        if (*count == BENCH_MAX_SIZES) {
            fprintf(stderr, "prescore-bench: --%s takes at most %d values\n", name,
                    BENCH_MAX_SIZES);
            return 1;
        }
        if (len >= sizeof item) {
            fprintf(stderr, "prescore-bench: --%s value too long in '%s'\n", name, text);
            return 1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (parse_size(name, item, allow_zero, &values[*count]))
            return 1;
        ++*count;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

/* --varlen L1,L2,...: the offsets of the packed sequences (n_q = n_k). */
static int parse_varlen(const char *text, bench_options *opt)
{
    size_t lens[BENCH_MAX_SIZES], count = 0, total = 0;
    if (parse_size_list("varlen", text, 1, lens, &count))
        return 1;
    opt->varlen_cu[0] = 0;
    for (size_t i = 0; i < count; i++) {
        total += lens[i];
        if (total > 0xFFFFFFFFu) {
            fprintf(stderr, "prescore-bench: --varlen: the lengths add up past 2^32\n");
            return 1;
        }
        opt->varlen_cu[i + 1] = (uint32_t)total;
    }
    if (total == 0) {
        fprintf(stderr, "prescore-bench: --varlen: every sequence is empty\n");
        return 1;
    }
    opt->varlen_count = count;
    opt->n[0] = total;
    opt->n_count = 1;
    return 0;
}

static int parse_method(const char *text, bench_options *opt)
{
    size_t i;

    for (i = 0; i < BENCH_NUM_METHODS; ++i) {
        if (strcmp(text, bench_methods[i].name) == 0) {
            opt->method_name = bench_methods[i].name;
            opt->method = bench_methods[i].method;
            opt->score = bench_methods[i].score;
            opt->score_only = bench_methods[i].score_only;
            return 0;
        }
    }
    fprintf(stderr, "prescore-bench: unknown method '%s'; one of:", text);
    for (i = 0; i < BENCH_NUM_METHODS; ++i)
        fprintf(stderr, " %s", bench_methods[i].name);
    fprintf(stderr, "\n");
    return 1;
}

static int parse_shape(const char *text, ps_kernel_shape *shape)
{
    if (strcmp(text, "auto") == 0)
        *shape = PS_SHAPE_AUTO;
    else if (strcmp(text, "cpu") == 0)
        *shape = PS_SHAPE_CPU;
    else if (strcmp(text, "gpu") == 0)
        *shape = PS_SHAPE_GPU;
    else {
        fprintf(stderr, "prescore-bench: --shape expects auto, cpu or gpu, got '%s'\n", text);
        return 1;
    }
    return 0;
}

const char *bench_shape_name(ps_kernel_shape shape)
{
    switch (shape) {
    case PS_SHAPE_CPU:
        return "cpu";
    case PS_SHAPE_GPU:
        return "gpu";
    default:
        return "auto";
    }
}

/* How option @p c relates to the table mode: 0 keeps it (device and output
 * options), 2 applies to it but alone means the single-run mode (--n, --d,
 * --repeat, --seed, --data-seed), 1 means the single-run mode. */
static int table_role(int c)
{
    switch (c) {
    case 'h':
    case 'v':
    case ':':
    case '?':
    case OPT_DEVICE:
    case OPT_SHAPE:
    case OPT_JSON:
    case OPT_CSV:
    case OPT_TABLE:
        return 0;
    case OPT_N:
    case OPT_D:
    case OPT_REPEAT:
    case OPT_SEED:
    case OPT_DATA_SEED:
        return 2;
    default:
        return 1;
    }
}

/* Options of the attention plan that a key cache has no use for (--decode
 * refuses them), and options that only --decode reads. */
static int plan_only(int c)
{
    switch (c) {
    case OPT_TABLE:
    case OPT_VARLEN:
    case OPT_CAUSAL:
    case OPT_LAYOUT:
    case OPT_EQUAL_BUDGET:
    case OPT_GEMM_ROOF:
    case OPT_CSV:
    case OPT_REPEAT:
    case OPT_BLOCK:
    case OPT_SAMPLES:
    case OPT_LSH_BITS:
    case OPT_MIN_SEQ_LEN:
    case OPT_GLOBAL:
    case OPT_SELECTION:
    case OPT_SKETCH:
    case OPT_PROBES:
    case OPT_TOLERANCE:
        return 1;
    default:
        return 0;
    }
}

static int decode_only(int c)
{
    return c == OPT_STEPS || c == OPT_DECODE_QUERIES || c == OPT_RESCORE_GROWTH;
}

/* --decode's defaults (bench/README.md, "Decode") and its refusals. */
static int decode_finish(bench_options *opt, const char *not_decode, const char *prog)
{
    if (not_decode) {
        fprintf(stderr, "prescore-bench: --decode takes no --%s; try '%s --help'\n",
                not_decode, prog);
        return 1;
    }
    if (opt->score_only) {
        fprintf(stderr, "prescore-bench: --decode runs exact or prescore*, not %s\n",
                opt->method_name);
        return 1;
    }
    if (!opt->method_given)
        parse_method("prescore", opt);
    /* --heads alone means as many KV heads, as in the other modes. */
    if (!opt->kv_heads_given)
        opt->kv_heads = opt->heads_given ? opt->heads : BENCH_DECODE_KV_HEADS;
    if (!opt->heads_given)
        opt->heads = opt->kv_heads;
    if (!opt->window_given)
        opt->window = BENCH_DECODE_WINDOW;
    if (opt->data_file && opt->n_count > 1) {
        fprintf(stderr, "prescore-bench: --decode --data takes one --n\n");
        return 1;
    }
    return 0;
}

static void bench_options_default(bench_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->shape = PS_SHAPE_AUTO;
    opt->method_name = bench_methods[0].name;
    opt->method = bench_methods[0].method;
    opt->score = bench_methods[0].score;
    opt->n[0] = BENCH_DEFAULT_N;
    opt->n_count = 1;
    opt->d = BENCH_DEFAULT_D;
    opt->heads = 1;
    opt->batch = 1;
    opt->repeat = BENCH_DEFAULT_REPEAT;
    opt->seed = BENCH_DEFAULT_SEED;
    opt->data_seed = BENCH_DEFAULT_SEED;
    opt->global_keys = PS_GLOBAL_KEYS_AUTO; /* the library's default unless --global */
    opt->selection = PS_SELECTION_AUTO;     /* likewise --selection and --sketch */
    opt->sketch_queries = PS_SKETCH_AUTO;
    opt->workload = BENCH_WORKLOAD_GAUSSIAN;
    opt->workload_name = "gaussian";
    opt->dtype_name = "f32";
    opt->layout = PS_LAYOUT_BHTD;
    opt->layout_name = "bhtd";
    opt->format = BENCH_FORMAT_TABLE;
    opt->data_layer = -1;
    opt->data_head = -1;
    opt->steps = BENCH_DECODE_STEPS;
    opt->decode_queries = 1;
}

int bench_options_parse(int argc, char **argv, bench_options *opt)
{
    int json = 0, csv = 0;
    const char *not_decode = NULL, *needs_decode = NULL;
    int c;

    bench_options_default(opt);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hv", bench_long_options, NULL)) != -1) {
        const char *name = "";
        size_t v = 0;
        int bad = 0;

        if (c >= OPT_LIST_DEVICES) {
            const struct option *o;
            for (o = bench_long_options; o->name; ++o)
                if (o->val == c)
                    name = o->name;
        }
        opt->single_option |= table_role(c);
        if (plan_only(c) && !not_decode)
            not_decode = name;
        if (decode_only(c) && !needs_decode)
            needs_decode = name;
        switch (c) {
        case 'h':
            opt->help = 1;
            return 0;
        case 'v':
            opt->verbose = 1;
            break;
        case OPT_LIST_DEVICES:
            opt->list_devices = 1;
            break;
        case OPT_VERSION:
            opt->version = 1;
            break;
        case OPT_DEVICE:
            opt->device = optarg;
            break;
        case OPT_METHOD:
            bad = parse_method(optarg, opt);
            opt->method_given = 1;
            break;
        case OPT_N:
            opt->n_given = 1;
            bad = parse_size_list("n", optarg, 0, opt->n, &opt->n_count);
            break;
        case OPT_D:
            opt->shape_given = 1;
            bad = parse_size(name, optarg, 0, &opt->d);
            break;
        case OPT_HEADS:
            opt->shape_given = 1;
            opt->heads_given = 1;
            bad = parse_size(name, optarg, 0, &opt->heads);
            break;
        case OPT_KV_HEADS:
            opt->shape_given = 1;
            opt->kv_heads_given = 1;
            bad = parse_size(name, optarg, 0, &opt->kv_heads);
            break;
        case OPT_BATCH:
            opt->shape_given = 1;
            bad = parse_size(name, optarg, 0, &opt->batch);
            break;
        case OPT_CAUSAL:
            opt->causal = 1;
            break;
        case OPT_REPEAT:
            bad = parse_size(name, optarg, 0, &v);
            if (!bad && v > 1000000) {
                fprintf(stderr, "prescore-bench: --repeat at most 1000000\n");
                bad = 1;
            }
            opt->repeat = (int)v;
            opt->repeat_given = 1;
            break;
        case OPT_DATA_SEED:
            bad = parse_u64(optarg, &opt->data_seed);
            if (bad)
                fprintf(stderr,
                        "prescore-bench: --data-seed expects an unsigned integer, got '%s'\n",
                        optarg);
            break;
        case OPT_TABLE:
            opt->table = 1;
            break;
        case OPT_EQUAL_BUDGET:
            opt->equal_budget = 1;
            break;
        case OPT_DTYPE:
            if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "f16") == 0 ||
                strcmp(optarg, "f16kv") == 0) {
                opt->dtype_name = optarg;
            } else {
                fprintf(stderr, "prescore-bench: --dtype: f32, f16 or f16kv\n");
                bad = 1;
            }
            break;
        case OPT_VARLEN:
            bad = parse_varlen(optarg, opt);
            break;
        case OPT_LAYOUT:
            if (strcmp(optarg, "bhtd") == 0 || strcmp(optarg, "bthd") == 0) {
                opt->layout_name = optarg;
                opt->layout = optarg[1] == 'h' ? PS_LAYOUT_BHTD : PS_LAYOUT_BTHD;
            } else {
                fprintf(stderr, "prescore-bench: --layout: bhtd or bthd\n");
                bad = 1;
            }
            break;
        case OPT_SEED:
            bad = parse_u64(optarg, &opt->seed);
            if (bad)
                fprintf(stderr, "prescore-bench: --seed expects an unsigned integer, got '%s'\n",
                        optarg);
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_CSV:
            csv = 1;
            break;
        case OPT_GEMM_ROOF:
            opt->gemm_roof = 1;
            break;
        case OPT_PEAK:
            opt->peak = 1;
            break;
        case OPT_SHAPE:
            bad = parse_shape(optarg, &opt->shape);
            break;
        case OPT_BUDGET:
            bad = parse_size(name, optarg, 1, &opt->budget);
            break;
        case OPT_CLUSTERS:
            bad = parse_size(name, optarg, 1, &opt->clusters);
            break;
        case OPT_ITERS:
            bad = parse_size(name, optarg, 1, &opt->iters);
            break;
        case OPT_BLOCK:
            bad = parse_size(name, optarg, 1, &opt->block);
            break;
        case OPT_SAMPLES:
            bad = parse_size(name, optarg, 1, &opt->samples);
            break;
        case OPT_LSH_BITS:
            bad = parse_size(name, optarg, 1, &v);
            if (!bad && v > 64) {
                fprintf(stderr, "prescore-bench: --lsh-bits at most 64\n");
                bad = 1;
            }
            opt->lsh_bits = (unsigned)v;
            break;
        case OPT_MIN_SEQ_LEN:
            bad = parse_size(name, optarg, 1, &opt->min_seq_len);
            break;
        case OPT_GLOBAL:
            bad = parse_size(name, optarg, 1, &opt->global_keys);
            break;
        case OPT_CHECK:
            opt->check = 1;
            break;
        case OPT_DECODE:
            opt->decode = 1;
            break;
        case OPT_STEPS:
            bad = parse_size(name, optarg, 0, &opt->steps);
            break;
        case OPT_DECODE_QUERIES:
            bad = parse_size(name, optarg, 0, &opt->decode_queries);
            break;
        case OPT_SINK:
            bad = parse_size(name, optarg, 1, &opt->sink);
            break;
        case OPT_WINDOW:
            bad = parse_size(name, optarg, 1, &opt->window);
            opt->window_given = 1;
            break;
        case OPT_KEEP_RATIO:
            bad = parse_share(name, optarg, 1.0, &opt->keep_ratio);
            break;
        case OPT_SELECTION:
            if (strcmp(optarg, "auto") == 0) {
                opt->selection = PS_SELECTION_AUTO;
            } else if (strcmp(optarg, "top") == 0) {
                opt->selection = PS_SELECTION_TOP;
            } else if (strcmp(optarg, "weighted") == 0) {
                opt->selection = PS_SELECTION_WEIGHTED;
            } else if (strcmp(optarg, "stratified") == 0) {
                opt->selection = PS_SELECTION_STRATIFIED;
            } else {
                fprintf(stderr, "prescore-bench: --selection %s: auto, top, weighted or stratified\n",
                        optarg);
                bad = 1;
            }
            break;
        case OPT_PROBES:
            bad = parse_size(name, optarg, 1, &opt->error_probes);
            break;
        case OPT_TOLERANCE:
            bad = parse_share(name, optarg, 1e6, &opt->error_tolerance);
            break;
        case OPT_SKETCH:
            bad = parse_size(name, optarg, 1, &opt->sketch_queries);
            if (!bad && opt->sketch_queries >= PS_SKETCH_AUTO) /* not the automatic value */
                opt->sketch_queries = PS_SKETCH_AUTO - 1;
            break;
        case OPT_RESCORE_GROWTH:
            bad = parse_share(name, optarg, 1e6, &opt->rescore_growth);
            break;
        case OPT_WORKLOAD:
            if (strcmp(optarg, "gaussian") == 0) {
                opt->workload = BENCH_WORKLOAD_GAUSSIAN;
                opt->workload_name = "gaussian";
            } else if (strcmp(optarg, "clusters") == 0) {
                opt->workload = BENCH_WORKLOAD_CLUSTERS;
                opt->workload_name = "clusters";
            } else if (strcmp(optarg, "heavy") == 0) {
                opt->workload = BENCH_WORKLOAD_HEAVY;
                opt->workload_name = "heavy";
            } else {
                fprintf(stderr, "prescore-bench: --workload: gaussian, clusters or heavy\n");
                bad = 1;
            }
            break;
        case OPT_DATA:
            opt->data_file = optarg;
            break;
        case OPT_LAYER:
        case OPT_HEAD:
            bad = parse_size(name, optarg, 1, &v);
            if (!bad && v > 1000000) {
                fprintf(stderr, "prescore-bench: --%s at most 1000000\n", name);
                bad = 1;
            }
            if (c == OPT_LAYER)
                opt->data_layer = (long)v;
            else
                opt->data_head = (long)v;
            break;
        case ':':
            fprintf(stderr, "prescore-bench: option '%s' needs a value\n", argv[optind - 1]);
            bad = 1;
            break;
        default:
            fprintf(stderr, "prescore-bench: unknown option '%s'\n", argv[optind - 1]);
            bad = 1;
            break;
        }
        if (bad) {
            fprintf(stderr, "try '%s --help'\n", argv[0]);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "prescore-bench: unexpected argument '%s'; try '%s --help'\n",
                argv[optind], argv[0]);
        return 1;
    }
    if (json && csv) {
        fprintf(stderr, "prescore-bench: choose one of --json and --csv\n");
        return 1;
    }
    if (opt->data_file && (opt->shape_given || (opt->n_given && !opt->decode))) {
        fprintf(stderr, "prescore-bench: --data takes n, d and the heads from the file; "
                        "drop --n, --d, --heads, --kv-heads and --batch (--decode takes --n)\n");
        return 1;
    }
    if (opt->budget && opt->keep_ratio > 0.0f) {
        fprintf(stderr, "prescore-bench: set one of --budget and --keep-ratio\n");
        return 1;
    }
    if (needs_decode && !opt->decode) {
        fprintf(stderr, "prescore-bench: --%s needs --decode\n", needs_decode);
        return 1;
    }
    if (opt->decode && decode_finish(opt, not_decode, argv[0]))
        return 1;
    if (opt->varlen_count && (opt->n_given || opt->batch != 1 || opt->data_file ||
                              opt->score_only)) {
        fprintf(stderr, "prescore-bench: --varlen takes the tokens and the batch from its "
                        "lengths: drop --n, --batch and --data; score-* methods take no "
                        "--varlen\n");
        return 1;
    }
    if (!opt->data_file && (opt->data_layer >= 0 || opt->data_head >= 0)) {
        fprintf(stderr, "prescore-bench: --layer and --head need --data\n");
        return 1;
    }
    if (opt->table && (opt->single_option & 1)) {
        fprintf(stderr, "prescore-bench: --table takes only --n, --d, --repeat, --seed, "
                        "--data-seed, --device, --shape, --json, --csv and -v\n");
        return 1;
    }
    if (!opt->single_option && !opt->list_devices && !opt->version)
        opt->table = 1; /* no arguments: the built-in workload table */
    opt->format = json ? BENCH_FORMAT_JSON : csv ? BENCH_FORMAT_CSV : BENCH_FORMAT_TABLE;
    return 0;
}

void bench_options_to_desc(const bench_options *opt, size_t n, ps_attention_desc *desc)
{
    ps_attention_desc_default(desc);
    desc->batch = opt->batch;
    desc->heads = opt->heads;
    desc->kv_heads = opt->kv_heads ? opt->kv_heads : opt->heads;
    desc->n_q = desc->n_k = n;
    desc->d = desc->d_v = opt->d;
    desc->causal = opt->causal;
    desc->method = opt->method;
    desc->score = opt->score;
    /* The library has no automatic budget for pre-scoring; the bench's
     * default is 4096 kept keys (all of them below that), as in the paper. */
    desc->budget = opt->budget;
    desc->keep_ratio = opt->keep_ratio;
    if (desc->method == PS_METHOD_PRESCORE) { /* the other methods select nothing */
        desc->selection = opt->selection;
        desc->sketch_queries = (uint32_t)opt->sketch_queries;
    }
    if (desc->budget == 0 && desc->keep_ratio == 0.0f && desc->method == PS_METHOD_PRESCORE)
        desc->budget = n < BENCH_DEFAULT_BUDGET ? n : BENCH_DEFAULT_BUDGET;
    desc->clusters = opt->clusters;
    desc->kmeans_iters = opt->iters;
    desc->global_keys = opt->global_keys;
    desc->block = opt->block;
    desc->samples = opt->samples;
    desc->lsh_bits = opt->lsh_bits;
    desc->min_seq_len = opt->min_seq_len;
    desc->sink = opt->sink;
    desc->window = opt->window;
    desc->rescore_growth = opt->rescore_growth;
    if (desc->method != PS_METHOD_EXACT) { /* the approximate methods' estimate */
        desc->error_probes = (uint32_t)(opt->error_probes > UINT32_MAX ? UINT32_MAX
                                                                      : opt->error_probes);
        desc->error_tolerance = opt->error_tolerance;
    }
    desc->seed = opt->seed;
    if (opt->varlen_count) { /* n is the sum of the lengths (parse_varlen) */
        desc->batch = opt->varlen_count;
        desc->cu_seqlens_q = desc->cu_seqlens_k = opt->varlen_cu;
    }
    /* --dtype f16: every tensor fp16; f16kv: K and V only. */
    const int f16 = strcmp(opt->dtype_name, "f16") == 0, kv16 = f16 || strcmp(opt->dtype_name,
                                                                              "f16kv") == 0;
    desc->q_layout.dtype = desc->o_layout.dtype = f16 ? PS_DTYPE_F16 : PS_DTYPE_F32;
    desc->k_layout.dtype = desc->v_layout.dtype = kv16 ? PS_DTYPE_F16 : PS_DTYPE_F32;
    if (opt->layout != PS_LAYOUT_BHTD)
        ps_attention_desc_set_layout(desc, opt->layout);
}
